#pragma once

#include <ckpt/detail/config.hpp>
#include <ckpt/format/dtype.hpp>

#include <cstddef>
#include <cstdint>

namespace ckpt::detail {

/// How a tensor stored as one floating-point dtype loads into another.
enum class conversion : std::uint8_t {
    same,      ///< the same dtype: a copy
    widening,  ///< every value is exact: F16 or BF16 to F32 or F64, F32 to F64
    narrowing, ///< values round to nearest, ties to even: the other pairs of F16, BF16, F32, F64
    none,      ///< no conversion (integers, bools, F8)
};

/// The conversion from `from` to `to`.
[[nodiscard]] conversion classify_conversion(dtype from, dtype to) noexcept;

/// Converts `count` elements of `from` at `src` to `to` at `dst` (both unaligned, not
/// overlapping; the pair is widening or narrowing). NaN stays NaN and keeps its sign; a finite
/// value beyond the target's range becomes an infinity of its sign.
/// @returns how many values changed: finite values that rounded or overflowed
std::uint64_t convert_elements(dtype from, const std::byte* src, dtype to, std::byte* dst,
                               std::uint64_t count) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/format/convert-inl.hpp>
#endif
