#pragma once

#include <ckpt/detail/config.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt {

/// Base of every exception ckpt throws; what() starts with "[ckpt.<kind>.<id>]".
class error : public std::runtime_error {
public:
    error(int id, std::string_view kind, const std::string& message);
    error(const error&) = default;
    error& operator=(const error&) = default;
    ~error() override;

    /// The numeric id listed in the README's table of errors.
    [[nodiscard]] int id() const noexcept { return id_; }
    /// "io", "corrupt", "version", "schema", "limit" or "usage".
    [[nodiscard]] std::string_view kind() const noexcept { return kind_; }

private:
    int id_;
    std::string_view kind_;
};

/// A file-system call failed; the OS error is kept.
class io_error : public error {
public:
    io_error(int id, const std::string& message, std::string operation, std::string path,
             std::error_code code);

    /// The call that failed: "open", "write", "fsync", "close", "rename", ...
    [[nodiscard]] const std::string& operation() const noexcept { return operation_; }
    /// The path the call was made on.
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// The OS error (errno) the call returned.
    [[nodiscard]] std::error_code code() const noexcept { return code_; }

private:
    std::string operation_;
    std::string path_;
    std::error_code code_;
};

/// The file is damaged or is not a ckpt checkpoint: checksum, structure or encoding is wrong.
class corrupt_error : public error {
public:
    corrupt_error(int id, const std::string& message) : error(id, "corrupt", message) {}
};

/// The file was written in a format version this build does not read.
class version_error : public error {
public:
    version_error(int id, const std::string& message) : error(id, "version", message) {}
};

/// One difference between the checkpoint and the state it is loaded into.
struct schema_problem {
    int id;           ///< the schema error id of this problem
    std::string path; ///< field path, e.g. "model.layers.1.weight"
    std::string text; ///< the problem with both sides, without the path
};

/// The checkpoint does not fit the state: missing, unexpected or mismatched fields.
/// id() is that of the first problem; the message lists the first 10 and counts the rest.
class schema_error : public error {
public:
    /// `total`: how many problems there were, when `problems` holds only the first of them.
    explicit schema_error(std::vector<schema_problem> problems, std::size_t total = 0);

    /// The differences found, in the state's order: all of them, or on load the first as many
    /// as the checkpoint and the state have tensors (problem_count() tells how many in all).
    [[nodiscard]] const std::vector<schema_problem>& problems() const noexcept { return problems_; }
    /// How many differences there were in all.
    [[nodiscard]] std::size_t problem_count() const noexcept { return total_; }

    /// The most problems the message lists.
    static constexpr std::size_t listed = 10;

private:
    static std::string describe(const std::vector<schema_problem>& problems, std::size_t total);
    std::vector<schema_problem> problems_;
    std::size_t total_;
};

/// A size in the file is beyond what ckpt accepts; nothing of that size was allocated.
class limit_error : public error {
public:
    limit_error(int id, const std::string& message) : error(id, "limit", message) {}
};

/// The library was called wrongly (a bad argument, a name ckpt reserves, ...).
class usage_error : public error {
public:
    usage_error(int id, const std::string& message) : error(id, "usage", message) {}
};

/// Error ids, one per distinct failure; the README lists them.
namespace errc {
// io: a file-system call failed
inline constexpr int io_open = 101;
inline constexpr int io_read = 102;
inline constexpr int io_write = 103;
inline constexpr int io_fsync = 104;
inline constexpr int io_close = 105;
inline constexpr int io_rename = 106;
inline constexpr int io_sync_directory = 107;
inline constexpr int io_stat = 108;
inline constexpr int io_remove = 109;
// corrupt: the bytes are not a valid checkpoint
inline constexpr int corrupt_too_small = 201;
inline constexpr int corrupt_truncated_header = 202;
inline constexpr int corrupt_not_ckpt = 203;
inline constexpr int corrupt_checksum = 204;
inline constexpr int corrupt_json = 205;
inline constexpr int corrupt_header = 206;
inline constexpr int corrupt_offsets = 207;
inline constexpr int corrupt_values = 208;
// schema: the checkpoint does not fit the state
inline constexpr int schema_missing = 301;
inline constexpr int schema_mismatch = 302;
inline constexpr int schema_unexpected = 303;
inline constexpr int schema_storage_order = 304;
inline constexpr int schema_value_type = 305;
inline constexpr int schema_value_count = 306;
inline constexpr int schema_duplicate = 307;
inline constexpr int schema_reserved = 308;
inline constexpr int schema_class_version = 309;
inline constexpr int schema_rename_unmatched = 310;
inline constexpr int schema_rename_collision = 311;
inline constexpr int schema_placement = 312;
inline constexpr int schema_replica_divergence = 313;
inline constexpr int schema_rank_values = 314;
// version
inline constexpr int version_newer = 401;
inline constexpr int version_invalid = 402;
// limit: a declared size is too large
inline constexpr int limit_header = 501;
inline constexpr int limit_tensor_count = 502;
inline constexpr int limit_rank = 503;
inline constexpr int limit_tensor_bytes = 504;
inline constexpr int limit_value_size = 505;
inline constexpr int limit_name = 506;
// usage
inline constexpr int usage_argument = 601;
inline constexpr int usage_missing_metric = 602;
inline constexpr int usage_directory_locked = 603;
inline constexpr int usage_foreign_file = 604;
inline constexpr int usage_staging_cap = 605;
inline constexpr int usage_checkpoint_exists = 606;
/// A rank of a collective call failed with an exception that is not a ckpt::error.
inline constexpr int usage_rank_exception = 607;
} // namespace errc

namespace detail {

/// The one place ckpt throws from.
template <class Error, class... Args>
[[noreturn]] void throw_error(Args&&... args) {
    throw Error(std::forward<Args>(args)...);
}

/// Throws io_error for a failed call, with the OS error's name and text.
[[noreturn]] void throw_io(int id, std::string_view operation, const std::string& path, int err,
                           std::string_view consequence = {});

} // namespace detail
} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/error-inl.hpp>
#endif
