#pragma once

#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/placement.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Name of the entry that holds every non-tensor value of the state.
inline constexpr std::string_view values_entry = "__ckpt_values__";
/// Every ckpt file's JSON header starts with these bytes, then 16 hex digits and a quote.
inline constexpr std::string_view checksum_prefix = R"({"__metadata__":{"ckpt.checksum":"xxh3-64:)";
/// Offset of the checksum's hex digits in the file.
inline constexpr std::uint64_t checksum_digits_offset = 8 + checksum_prefix.size();

/// One tensor entry of a safetensors header.
struct file_tensor {
    std::string name;
    dtype type = dtype::u8;
    std::vector<std::uint64_t> shape;
    std::uint64_t begin = 0; ///< offset in the data section
    std::uint64_t end = 0;
    char order = '-';  ///< from ckpt.layout: 'R', 'C', or '-'
    placement place{}; ///< from ckpt.placement and ckpt.shards
};

/// A validated safetensors header.
struct parsed_header {
    std::map<std::string, std::string> meta;
    std::vector<file_tensor> entries; ///< every entry (values entry included), header order
    std::uint64_t data_bytes = 0;
};

/// Overflow-checked a * b; false when it does not fit.
[[nodiscard]] inline bool checked_mul(std::uint64_t a, std::uint64_t b,
                                      std::uint64_t& out) noexcept {
    return !__builtin_mul_overflow(a, b, &out);
}

/// "[a, b, c]".
std::string shape_string(const std::vector<std::uint64_t>& shape);

/// Serializes a header: metadata first (its first pair must be the checksum; no __metadata__ at
/// all when `meta` is empty), then the entries.
/// The result is padded with spaces so that the data section starts 8-byte aligned.
std::string build_header(const std::vector<std::pair<std::string, std::string>>& meta,
                         const std::vector<file_tensor>& entries);

/// Parses and validates a safetensors JSON header against the data section's size: closed dtype
/// set, caps, overflow-checked sizes, offsets contiguous and covering the data exactly.
/// @throws corrupt_error, limit_error
parsed_header parse_header(std::string_view json, std::uint64_t data_bytes, const limits& lim,
                           const std::string& where);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/format/header-inl.hpp>
#endif
