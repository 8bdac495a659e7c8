#pragma once

/// ckpt's version; the single source of truth read by CMake.
#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0
#define CKPT_VERSION_STRING "0.1.0"

namespace ckpt {
/// The on-disk format version this build writes; files with a newer one are refused, older ones
/// load. 1: the first format. 2: cereal class versions in the values have a tag of their own.
/// 3: standard containers of numbers (std::vector, std::array, C arrays) are tensors, and
/// tensors of rank 0 to 8 carry a storage order from rank 2 on.
inline constexpr int format_version = 3;
} // namespace ckpt
