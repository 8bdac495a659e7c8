// Shared by the fuzz targets: the states bytes are loaded into, the checksum fix-up, and an
// allocation bound checked on every malloc while an input runs.
#pragma once

#include <ckpt/ckpt.hpp>
#include <ckpt/nn.hpp>

#include <Eigen/Core>
#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <sanitizer/allocator_interface.h>
#include <sanitizer/common_interface_defs.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

namespace fuzz {

/// A state with every dtype and every shape kind ckpt supports (the second load target).
struct kinds_state {
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm;
    Eigen::MatrixXd cm;
    Eigen::Matrix<std::int32_t, 2, 2> fixed;
    Eigen::Matrix<std::int16_t, Eigen::Dynamic, 3> fixed_cols;
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 4> bounded;
    Eigen::VectorXf vec;
    Eigen::RowVectorXd row_vec;
    Eigen::Matrix<double, 3, 1> fixed_vec;
    Eigen::Array<Eigen::half, Eigen::Dynamic, 1> halfs;
    Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, 1> bf16s;
    Eigen::Matrix<bool, Eigen::Dynamic, 1> flags;
    Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1> u8s;
    Eigen::Matrix<std::int8_t, Eigen::Dynamic, 1> i8s;
    Eigen::Matrix<std::uint16_t, Eigen::Dynamic, 1> u16s;
    Eigen::Matrix<std::uint32_t, Eigen::Dynamic, 1> u32s;
    Eigen::Matrix<std::uint64_t, Eigen::Dynamic, 1> u64s;
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic> i64s;
    std::vector<Eigen::VectorXf> list;
    std::vector<std::string> names;
    std::string text;
    bool on = false;
    double x = 0;
    std::mt19937 rng;
    std::normal_distribution<double> noise;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(rm), CEREAL_NVP(cm), CEREAL_NVP(fixed), CEREAL_NVP(fixed_cols),
           CEREAL_NVP(bounded), CEREAL_NVP(vec), CEREAL_NVP(row_vec), CEREAL_NVP(fixed_vec),
           CEREAL_NVP(halfs), CEREAL_NVP(bf16s), CEREAL_NVP(flags), CEREAL_NVP(u8s),
           CEREAL_NVP(i8s), CEREAL_NVP(u16s), CEREAL_NVP(u32s), CEREAL_NVP(u64s), CEREAL_NVP(i64s),
           CEREAL_NVP(list), CEREAL_NVP(names), CEREAL_NVP(text), CEREAL_NVP(on), CEREAL_NVP(x),
           CEREAL_NVP(rng), CEREAL_NVP(noise));
    }
};

/// An element that costs no value bytes: a fixed-size tensor (1 KiB) and a dynamic one.
struct block {
    Eigen::Matrix<float, 16, 16> w = Eigen::Matrix<float, 16, 16>::Zero();
    Eigen::VectorXf b;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(b));
    }
};

/// Containers of tensor-only elements, at several depths and in every standard sequence: the
/// shapes where a count from the file could create memory without costing value bytes (the
/// third load target). It holds two blocks before loading, so the state's own tensors pay for
/// some the file lacks.
struct shapes_state {
    std::vector<block> blocks = std::vector<block>(2);
    std::vector<std::vector<block>> grid;
    std::deque<block> queue;
    std::list<Eigen::Matrix4d> chain;
    std::forward_list<block> links;
    std::map<std::string, Eigen::VectorXf> named;
    std::optional<block> maybe;
    std::vector<std::int32_t> ids;
    std::vector<bool> mask;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(blocks), CEREAL_NVP(grid), CEREAL_NVP(queue), CEREAL_NVP(chain),
           CEREAL_NVP(links), CEREAL_NVP(named), CEREAL_NVP(maybe), CEREAL_NVP(ids),
           CEREAL_NVP(mask));
    }
};

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

/// Every way ckpt reads bytes: load into train_state<float>, kinds_state and shapes_state (fresh
/// each time), and the inspect paths (header only, and verified). Only ckpt::error may escape a
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
