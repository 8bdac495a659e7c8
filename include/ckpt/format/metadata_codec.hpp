#pragma once

#include <ckpt/error.hpp>
#include <ckpt/metadata.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

// __metadata__ keys. Metrics are "metric.<name>", tags "tag.<name>"; "ckpt." is the library's.
inline constexpr std::string_view key_format_version = "ckpt.format_version";
inline constexpr std::string_view key_library_version = "ckpt.library_version";
inline constexpr std::string_view key_step = "ckpt.step";
inline constexpr std::string_view key_epoch = "ckpt.epoch";
inline constexpr std::string_view key_time = "ckpt.time";
inline constexpr std::string_view key_fingerprint = "ckpt.fingerprint";
inline constexpr std::string_view key_layout = "ckpt.layout";
/// One placement_kind character per entry, written only when a tensor is not replicated.
inline constexpr std::string_view key_placement = "ckpt.placement";
/// "offset/global_rows" of each sharded entry, in header order, comma-separated.
inline constexpr std::string_view key_shards = "ckpt.shards";
inline constexpr std::string_view metric_prefix = "metric.";
inline constexpr std::string_view tag_prefix = "tag.";

/// Shortest text that reads back as the same double ("nan", "inf" and "-inf" included).
std::string format_double(double v);

/// A double written by format_double (or any from_chars reads whole), or nothing.
std::optional<double> parse_double(std::string_view s);

/// A whole decimal int64, or nothing.
std::optional<std::int64_t> parse_int(std::string_view s);

/// "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", UTC, to the nanosecond.
std::string format_time(std::chrono::system_clock::time_point t);

/// What format_time writes, for the times system_clock holds, or nothing.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s);

/// The user's part of the metadata as __metadata__ pairs, in a fixed order.
void encode_user_metadata(const metadata& m, std::vector<std::pair<std::string, std::string>>& out);

/// The metadata of a ckpt file. @throws corrupt_error
metadata decode_metadata(const std::map<std::string, std::string>& raw, const std::string& where);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/format/metadata_codec-inl.hpp>
#endif
