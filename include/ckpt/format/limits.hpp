#pragma once

#include <cstdint>

namespace ckpt {

/// Caps applied to a file before anything it declares is allocated.
struct limits {
    /// JSON header bytes (safetensors' own cap).
    std::uint64_t max_header_bytes = 100'000'000;
    /// Number of tensors in one file.
    std::uint64_t max_tensors = 1'000'000;
    /// Dimensions of one tensor.
    std::uint64_t max_rank = 8;
    /// Bytes of one tensor or field name.
    std::uint64_t max_name_bytes = 4096;
};

} // namespace ckpt
