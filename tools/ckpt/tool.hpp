#pragma once

// The `ckpt` command: what its subcommands share. Written on ckpt's public API only
// (ckpt::reader, ckpt::inspect, ckpt::scan_directory, ckpt::save_safetensors); CLI11 parses the
// command line in main.cpp and nowhere else.

#include <ckpt/ckpt.hpp>

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt_tool {

/// Exit statuses: 0 all good (or identical), 1 a checkpoint is bad (or they differ), 2 the
/// command could not do its job (a usage error, an unreadable input).
inline constexpr int exit_ok = 0;
inline constexpr int exit_differ = 1;
inline constexpr int exit_error = 2;

/// Where the output goes and how it looks.
struct terminal {
    bool color = false;         ///< stdout is a terminal and NO_COLOR is unset or empty
    bool stderr_is_tty = false; ///< progress bars go there, and only then
    /// "\x1b[32m" + s + "\x1b[0m" when coloring, else s.
    [[nodiscard]] std::string green(std::string_view s) const;
    [[nodiscard]] std::string red(std::string_view s) const;
    [[nodiscard]] std::string yellow(std::string_view s) const;
    [[nodiscard]] std::string bold(std::string_view s) const;
    static terminal detect();
};

/// When verify shows a progress bar.
enum class progress_mode { automatic, always, never };

struct inspect_args {
    std::filesystem::path path;
    bool json = false;
    bool verify = false;
};

struct verify_args {
    std::vector<std::filesystem::path> paths;
    progress_mode progress = progress_mode::automatic;
    bool json = false;
};

struct ls_args {
    std::filesystem::path directory;
    std::string prefix;      ///< empty: every prefix found
    std::string best_metric; ///< "loss" or "acc:max"; empty: from the policy's on_best
    bool json = false;
};

struct diff_args {
    std::filesystem::path a;
    std::filesystem::path b;
    bool metadata = false; ///< metadata differences count
    double atol = -1;      ///< < 0: not given
    double rtol = -1;
    double ulps = -1;
    bool json = false;
    bool no_verify = false;
};

struct export_args {
    std::filesystem::path path;
    std::filesystem::path to;
    bool npy = false;
    bool plain = false;
    bool upcast = false;
    bool no_verify = false;
};

/// `path` itself, or for a manager's directory (one prefix in it) its newest checkpoint.
/// @throws std::runtime_error (no checkpoint, or several prefixes)
std::filesystem::path checkpoint_in(const std::filesystem::path& path);

int run_inspect(const inspect_args& args, const terminal& term);
int run_verify(const verify_args& args, const terminal& term);
int run_ls(const ls_args& args, const terminal& term);
int run_diff(const diff_args& args, const terminal& term);
int run_export(const export_args& args, const terminal& term);

// ---- shared formatting ----------------------------------------------------------------------

using json_writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

/// "2026-12-07T01:23:45.123456789Z"; "-" for the epoch (no time recorded).
std::string iso_time(std::chrono::system_clock::time_point t);
/// "12.0 MiB (12582912 bytes)" style, short: "12.0 MiB", "512 B".
std::string human_bytes(std::uint64_t n);
/// "[3, 5]".
std::string shape_text(const std::vector<std::uint64_t>& shape);
/// The shape as the state's C++ type held it: "3x5 column-major" for a column-major matrix
/// stored as [5, 3], "3x5 row-major", "[7]" for a vector, "scalar" for rank 0.
std::string eigen_shape_text(const ckpt::tensor_info& t);
/// A double as the shortest text that reads back the same ("nan", "inf" as such).
std::string number_text(double v);
/// 'R' "row-major", 'C' "column-major", else "-".
std::string_view order_text(char order);
/// "replicated", "sharded", "rank_local".
std::string_view placement_text(ckpt::placement_kind k);

/// Writes a double; JSON has no NaN or infinity, so those are written as null.
void write_number(json_writer& w, double v);
void write_string(json_writer& w, std::string_view s);
/// An array of unsigned numbers (a shape, an index).
void write_uints(json_writer& w, const std::vector<std::uint64_t>& v);
/// An object of metric names to values.
void write_metrics(json_writer& w, const std::map<std::string, double>& metrics);
/// "step", "epoch", "time", "metrics", "tags" members of the current object.
void write_metadata_members(json_writer& w, const ckpt::metadata& m);
/// Writes `buffer` and a newline to stdout.
void print_json(const rapidjson::StringBuffer& buffer);

/// The value of a floating-point element of `exponent` and `mantissa` bits (F16: 5 and 10,
/// BF16: 8 and 7, F8_E5M2: 5 and 2, F8_E4M3: 4 and 3 with `finite_only`, its variant without
/// infinities whose all-ones pattern is NaN).
double decode_float(std::uint32_t bits, int exponent, int mantissa, bool finite_only);

/// Prints an error once, on stderr, as "ckpt <command>: <what>".
void print_error(std::string_view command, std::string_view what);

} // namespace ckpt_tool
