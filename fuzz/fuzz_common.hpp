// Shared by the fuzz targets: the states bytes are loaded into, the checksum fix-up, and an
// allocation bound checked on every malloc while an input runs.
#pragma once

#include "fuzz_states.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/nn.hpp>

#include <sanitizer/allocator_interface.h>
#include <sanitizer/common_interface_defs.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

namespace fuzz {

/// True when the bytes start like a ckpt header (so they carry a checksum to fix).
inline bool has_checksum(const std::uint8_t* data, std::size_t size) {
    const auto prefix = ckpt::detail::checksum_prefix;
    return size >= ckpt::detail::checksum_digits_offset + 16 &&
           std::memcmp(data + 8, prefix.data(), prefix.size()) == 0;
}

/// Stores the checksum ckpt expects (as test::fix_checksum does), when there is one.
inline void fix_checksum(std::uint8_t* data, std::size_t size) {
    if (!has_checksum(data, size)) return;
    const std::size_t at = ckpt::detail::checksum_digits_offset;
    std::memset(data + at, '0', 16);
    const std::string hex = ckpt::detail::to_hex(ckpt::detail::hash_bytes(data, size));
    std::memcpy(data + at, hex.data(), 16);
}

// ---------------------------------------------------------------------------------------------
// Allocation bound: while an input runs, one allocation larger than 2 * input + 1 MiB is a
// finding (a size trusted from the file). The constant covers fixed buffers: rapidjson's 64 KiB
// pool chunk and its DOM (up to ~12 bytes per byte of a 64 KiB header), messages, Eigen temps.
// CKPT_FUZZ_ALLOC_CONST (bytes) overrides the constant.

inline std::size_t alloc_limit = 0; ///< 0: not inside an input
inline bool alloc_reporting = false;

inline void malloc_hook(const volatile void*, std::size_t size) {
    if (alloc_limit == 0 || size <= alloc_limit || alloc_reporting) return;
    alloc_reporting = true;
    char msg[160];
    const int n = std::snprintf(msg, sizeof msg,
                                "==ckpt-fuzz== allocation of %zu bytes exceeds the bound of %zu "
                                "(2 * input + constant)\n",
                                size, alloc_limit);
    if (n > 0) (void)!write(2, msg, static_cast<std::size_t>(n));
    __sanitizer_print_stack_trace();
    std::abort();
}
inline void free_hook(const volatile void*) {}

inline std::size_t alloc_constant() {
    static const std::size_t c = [] {
        const char* env = std::getenv("CKPT_FUZZ_ALLOC_CONST");
        return env != nullptr ? static_cast<std::size_t>(std::strtoull(env, nullptr, 10))
                              : std::size_t{1} << 20;
    }();
    return c;
}

inline void install_hooks() {
    static const bool done = [] {
        __sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
        return true;
    }();
    (void)done;
}

/// Arms the allocation bound for the lifetime of one input.
struct alloc_guard {
    explicit alloc_guard(std::size_t input) {
        install_hooks();
        alloc_limit = 2 * input + alloc_constant();
    }
    ~alloc_guard() { alloc_limit = 0; }
    alloc_guard(const alloc_guard&) = delete;
    alloc_guard& operator=(const alloc_guard&) = delete;
};

// ---------------------------------------------------------------------------------------------

/// Whether the bytes are a ckpt file whose checksum verifies, so a load may reach the state.
inline bool verifies(std::span<const std::byte> bytes) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
    if (!has_checksum(p, bytes.size())) return false;
    const std::size_t at = ckpt::detail::checksum_digits_offset;
    std::vector<std::uint8_t> copy(p, p + bytes.size());
    fix_checksum(copy.data(), copy.size());
    return std::memcmp(copy.data() + at, p + at, 16) == 0;
}

/// Every way ckpt reads bytes: load into train_state<float>, kinds_state, shapes_state,
/// versioned_state and tensor_kinds_state (fresh each time); into a filled shapes_state,
/// pinned_shapes, tensor_kinds_state and pinned_tensor_kinds, which a failed load must leave as
/// they were; and the inspect paths (header only, and verified). Only ckpt::error may escape a
/// call.
inline void run_input(const std::uint8_t* data, std::size_t size) {
    const alloc_guard guard(size);
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        ckpt::nn::train_state<float> state;
        (void)ckpt::load_from_memory(bytes, state);
    } catch (const ckpt::error&) {
    }
    try {
        kinds_state state;
        (void)ckpt::load_from_memory(bytes, state);
    } catch (const ckpt::error&) {
    }
    try {
        shapes_state state;
        (void)ckpt::load_from_memory(bytes, state);
    } catch (const ckpt::error&) {
    }
    try {
        versioned_state state;
        (void)ckpt::load_from_memory(bytes, state);
    } catch (const ckpt::error&) {
    }
    try {
        tensor_kinds_state state;
        (void)ckpt::load_from_memory(bytes, state);
    } catch (const ckpt::error&) {
    }
    if (verifies(bytes)) {
        // The strong guarantee under hostile bytes: a load that fails leaves every byte of a
        // state that held tensors (in a map and an optional too) as it was. Only a file whose
        // checksum verifies can reach the state (most raw inputs of load_fuzzer stop before).
        const auto changed = [] {
            static const char msg[] = "==ckpt-fuzz== a failed load changed the state\n";
            (void)!write(2, msg, sizeof msg - 1);
            std::abort();
        };
        shapes_state state = filled_shapes();
        try {
            (void)ckpt::load_from_memory(bytes, state);
        } catch (const ckpt::error&) {
            if (!same_as_filled(state)) changed();
        }
        pinned_shapes pinned; // the same, decoded in place whatever the file's tensors
        try {
            (void)ckpt::load_from_memory(bytes, pinned);
        } catch (const ckpt::error&) {
            if (!same_as_filled(pinned.shapes)) changed();
        }
        // The views of an arena the state does not own: written only once the load has
        // succeeded, whether it decodes into a copy of the state or in place.
        tensor_kinds_state kinds = filled_tensor_kinds();
        try {
            (void)ckpt::load_from_memory(bytes, kinds);
        } catch (const ckpt::error&) {
            if (!same_as_filled(kinds)) changed();
        }
        pinned_tensor_kinds pinned_kinds;
        try {
            (void)ckpt::load_from_memory(bytes, pinned_kinds);
        } catch (const ckpt::error&) {
            if (!same_as_filled(pinned_kinds.kinds)) changed();
        }
    }
    for (const bool verify : {false, true}) {
        try {
            const ckpt::detail::opened_checkpoint file(bytes.data(), bytes.size(), ckpt::limits{},
                                                       "<fuzz>", verify);
            const ckpt::info info = ckpt::detail::make_info(file, bytes.size());
            if (verify) {
                ckpt::detail::tensor_source src;
                std::span<const std::byte> values;
                file.index(src, values);
            }
            (void)info;
        } catch (const ckpt::error&) {
        }
    }
}

} // namespace fuzz
