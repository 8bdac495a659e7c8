// libFuzzer target: arbitrary bytes into import_safetensors, which reads files that carry no
// checksum, so every mutation reaches the JSON parser, the validation and the tensor copy with
// its dtype conversions. An input that starts like a ckpt header gets its checksum recomputed
// first (a ckpt file's is verified on import), so mutations of ckpt files get through too.
//
// Each input is imported into fresh states (train_state, kinds_state, shapes_state,
// versioned_state, tensor_kinds_state), into an mlp under torch's names with every conversion
// and partial option on, and into a filled shapes_state, pinned_shapes, tensor_kinds_state and
// pinned_tensor_kinds, which a failed import must leave exactly as they were (the views' arena
// too). Only ckpt::error may escape.
#include "fuzz_common.hpp"

namespace {

template <class T>
void import_into(std::span<const std::byte> bytes, T& state, const ckpt::import_options& o) {
    try {
        (void)ckpt::import_safetensors_from_memory(bytes, state, o);
    } catch (const ckpt::error&) {
    }
}

[[noreturn]] void changed() {
    static const char msg[] = "==ckpt-fuzz== a failed import changed the state\n";
    (void)!write(2, msg, sizeof msg - 1);
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const fuzz::alloc_guard guard(size);
    std::vector<std::uint8_t> copy(data, data + size);
    fuzz::fix_checksum(copy.data(), copy.size());
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(copy.data()),
                                           copy.size());
    ckpt::import_options strict;
    ckpt::import_options loose;
    loose.allow_missing = true;
    loose.ignore_unexpected = true;
    loose.widen = true;
    loose.narrow = true;
    for (const ckpt::import_options* o : {&strict, &loose}) {
        ckpt::nn::train_state<float> train;
        import_into(bytes, train, *o);
        fuzz::kinds_state kinds;
        import_into(bytes, kinds, *o);
        fuzz::shapes_state shapes;
        import_into(bytes, shapes, *o);
        fuzz::versioned_state versioned;
        import_into(bytes, versioned, *o);
        fuzz::tensor_kinds_state tensor_kinds;
        import_into(bytes, tensor_kinds, *o);
    }
    // torch's names for an mlp (write_torch_mlp.py's files are in the corpus).
    ckpt::import_options torch = loose;
    torch.renames = {{"0", "layers.0"}, {"2", "layers.1"}};
    ckpt::nn::mlp<float> mlp({4, 8, 3}, ckpt::nn::activation::relu, 1);
    import_into(bytes, mlp, torch);
    ckpt::nn::mlp<double> mlp64({4, 8, 3}, ckpt::nn::activation::relu, 1);
    import_into(bytes, mlp64, torch);

    // The strong guarantee: a failed import leaves every byte of the state as it was.
    for (const ckpt::import_options* o : {&strict, &loose}) {
        fuzz::shapes_state state = fuzz::filled_shapes();
        try {
            (void)ckpt::import_safetensors_from_memory(bytes, state, *o);
        } catch (const ckpt::error&) {
            if (!fuzz::same_as_filled(state)) changed();
        }
        fuzz::pinned_shapes pinned;
        try {
            (void)ckpt::import_safetensors_from_memory(bytes, pinned, *o);
        } catch (const ckpt::error&) {
            if (!fuzz::same_as_filled(pinned.shapes)) changed();
        }
        fuzz::tensor_kinds_state kinds = fuzz::filled_tensor_kinds();
        try {
            (void)ckpt::import_safetensors_from_memory(bytes, kinds, *o);
        } catch (const ckpt::error&) {
            if (!fuzz::same_as_filled(kinds)) changed();
        }
        fuzz::pinned_tensor_kinds pinned_kinds;
        try {
            (void)ckpt::import_safetensors_from_memory(bytes, pinned_kinds, *o);
        } catch (const ckpt::error&) {
            if (!fuzz::same_as_filled(pinned_kinds.kinds)) changed();
        }
    }
    return 0;
}
