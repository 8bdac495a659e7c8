#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/header.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/manifest.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/manager/lock.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// One checkpoint in a manager's directory.
struct checkpoint_entry {
    std::filesystem::path path{};
    std::int64_t step = 0;
    std::int64_t epoch = 0;
    std::chrono::system_clock::time_point time{};
    std::map<std::string, double> metrics{};
    std::uint64_t bytes = 0;
    bool latest = false; ///< the newest, by the step recorded in it
    bool best = false;   ///< the best by a metric a policy or retention ranks
    /// A distributed checkpoint: `path` is a directory of rank files and a manifest (bytes:
    /// all of them), written by ckpt::mpi.
    bool distributed = false;

    friend bool operator==(const checkpoint_entry&, const checkpoint_entry&) = default;
};

/// A checkpoint restore passed over, and why.
struct skipped_checkpoint {
    std::filesystem::path path{};
    int error_id = 0;   ///< the ckpt error id loading it gave
    std::string reason; ///< the error's message

    friend bool operator==(const skipped_checkpoint&, const skipped_checkpoint&) = default;
};

/// How scan_directory reads a directory: the names a manager with these options writes.
struct directory_options {
    std::string prefix = "ckpt";    ///< checkpoints are <prefix>-<step>.ckpt
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    ckpt::limits limits{};          ///< caps on what a header may declare
};

/// What a directory of checkpoints holds, as a manager with the same prefix sees it.
struct directory_listing {
    std::filesystem::path directory{};
    /// The checkpoints that read (header and metadata; the tensors are not verified), oldest
    /// step first; the newest is marked `latest`. `best` is left false: which metric ranks
    /// them is the manager's to say.
    std::vector<checkpoint_entry> checkpoints{};
    /// Damaged checkpoints: files of this prefix's names that start like every file ckpt
    /// writes (or whose first bytes cannot be read at all) but whose header does not read, with
    /// the error. A manager skips them, never deletes them, and restore reports them in
    /// skipped(); a new save of the same step may replace one.
    std::vector<skipped_checkpoint> unreadable{};
    /// Foreign files: files of this prefix's names that are not ckpt files at all (a text file,
    /// a safetensors file ckpt did not write, a file too short to start like one). Not in
    /// `unreadable`: a manager ignores them (manager::foreign()), never deletes them and never
    /// writes over them (a save of such a step is usage error 604).
    std::vector<std::filesystem::path> foreign{};
    /// Temporary files a save that died left (<prefix>-<step>.ckpt.tmp-<pid>-<n>): a manager
    /// removes them when it starts.
    std::vector<std::filesystem::path> temporaries{};
    /// Distributed checkpoint directories (<prefix>-<step>/) without a committed manifest: a
    /// distributed save died before its commit point, so they are no checkpoint. The
    /// distributed manager removes them when it starts.
    std::vector<std::filesystem::path> incomplete{};
    /// Every other name: other prefixes, other files, subdirectories, symbolic links (a manager
    /// never follows one). The lock file is not among them.
    std::vector<std::filesystem::path> others{};
    /// Who holds the directory's lock (or held it and died), from the lock file.
    std::optional<lock_holder> lock{};
    /// The checkpoints' bytes, together.
    [[nodiscard]] std::uint64_t checkpoint_bytes() const noexcept;
};

/// Reads a manager's directory: every list is sorted by name, except the checkpoints (by step).
/// Takes no lock and changes nothing, so it can run beside a manager that holds the directory
/// (what that manager commits or deletes meanwhile may or may not show).
/// @throws io_error (the directory does not exist or cannot be listed), usage_error (an empty
/// prefix or one with '/')
directory_listing scan_directory(const std::filesystem::path& dir,
                                 const directory_options& options = {});

namespace detail {

/// "<prefix>-<step, 12 digits at least>.ckpt": the name a manager gives a checkpoint.
std::string checkpoint_file_name(std::string_view prefix, std::int64_t step);

/// "<prefix>-<step, 12 digits at least>": the directory a distributed manager gives one.
std::string checkpoint_dir_name(std::string_view prefix, std::int64_t step);

/// The entry of a committed distributed checkpoint, from its manifest.
/// @throws io_error, corrupt_error, limit_error, version_error
checkpoint_entry read_distributed_entry(const std::filesystem::path& dir, io::backend& io,
                                        const limits& lim);

/// Step of a file named <prefix>-<digits><suffix>, or nothing.
std::optional<std::int64_t> step_of_name(std::string_view name, std::string_view prefix,
                                         std::string_view suffix);

/// "<pid>-<n>", the tail of atomic_file's temporary names.
bool is_temp_suffix(std::string_view s);

/// Whether the file starts like every file ckpt writes (a length, then ckpt's checksum key);
/// nothing when its first bytes cannot be read (open or pread failed).
std::optional<bool> has_ckpt_prefix(const std::filesystem::path& p, io::backend& io);

/// Throws usage_error when `prefix` cannot name files.
void check_prefix(const std::string& prefix, std::string_view who);

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/manager/directory-inl.hpp>
#endif
