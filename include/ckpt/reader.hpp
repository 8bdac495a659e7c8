#pragma once

// A checkpoint's tensors without its C++ type: what tools, converters and other languages'
// bridges need. A reader opens one ckpt file (or any safetensors file) or a distributed
// checkpoint's directory, and gives each tensor's name, dtype, shape and bytes.

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/manifest.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/io/file.hpp>
#include <ckpt/metadata.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// How a reader opens a checkpoint.
struct reader_options {
    /// Check every checksum before the reader is made: a file's, or every rank file's of a
    /// distributed checkpoint (and that they are the files its manifest names). Without it,
    /// only the header (or the manifest) is read, and a distributed checkpoint's reads are
    /// still checked chunk by chunk.
    bool verify = true;
    ckpt::limits limits{};          ///< caps on what the files may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    progress_callback progress{};   ///< told how far verification has come, over all files
};

/// A checkpoint's tensors, read without knowing the state's type. Its tensors' bytes are the
/// row-major view that safetensors readers see (`tensor_info::order` says whether the state
/// held them column-major). Reads go to the files as they are asked for; the reader holds
/// their descriptors (and a distributed checkpoint's manifest), not their bytes. One thread
/// at a time.
class reader {
public:
    /// Opens a checkpoint file, or a distributed checkpoint's directory (ckpt::mpi).
    /// @throws io_error, corrupt_error, version_error, limit_error
    explicit reader(const std::filesystem::path& path, const reader_options& options = {});
    reader(reader&&) noexcept;
    reader& operator=(reader&&) noexcept;
    ~reader();

    /// Its metadata, tensors and sizes, as inspect() gives them. For a distributed
    /// checkpoint: its global tensors (the rows of every rank together; `place` says how they
    /// were saved), then the rank-local ones, one per rank (`rank` says whose); `file_bytes`
    /// counts every file, `value_bytes` every rank's values, `format_version` is the
    /// manifest's, `header_bytes` the manifest's size, `checksum` is empty.
    [[nodiscard]] const ckpt::info& info() const noexcept;
    [[nodiscard]] const std::filesystem::path& path() const noexcept;
    /// Whether it is a distributed checkpoint's directory.
    [[nodiscard]] bool distributed() const noexcept;
    /// How many value streams it has: the ranks of a distributed checkpoint, else 1.
    [[nodiscard]] std::uint64_t value_streams() const noexcept;

    /// The tensor of that name, or null. A distributed checkpoint's rank-local tensor is
    /// `rank`'s (the lowest rank's when `rank` is negative).
    [[nodiscard]] const tensor_info* find(std::string_view name, std::int64_t rank = -1) const;

    /// A tensor's bytes (one of info().tensors), into `out` of exactly its size.
    /// @throws io_error, corrupt_error (a distributed checkpoint's chunk does not match its
    /// checksum), usage_error (`out` has another size, or `t` is not this reader's)
    void read(const tensor_info& t, std::span<std::byte> out) const;
    [[nodiscard]] std::vector<std::byte> read(const tensor_info& t) const;

    /// The cereal stream of the state's non-tensor values (of rank `stream`'s file for a
    /// distributed checkpoint); empty when the file has none. @throws io_error, corrupt_error
    [[nodiscard]] std::vector<std::byte> values(std::uint64_t stream = 0) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// How save_safetensors() writes.
struct safetensors_options {
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
};

/// Writes every tensor of `from` into a plain safetensors file at `to`: the tensors alone,
/// without ckpt's value stream or __metadata__, for tools that reject unknown U8 entries or
/// metadata (ckpt::load cannot read it back into a state with values). Written atomically, as
/// save() writes, one tensor at a time. A distributed checkpoint's global tensors are written
/// whole, its rank-local ones once per rank, named by display_name().
/// @returns the size of the file written. @throws io_error, corrupt_error, schema_error (two
/// tensors would have the same name)
std::uint64_t save_safetensors(const reader& from, const std::filesystem::path& to,
                               const safetensors_options& options = {});

/// The name save_safetensors() and the `ckpt` tool give a tensor: its name, with `@rank<r>`
/// for a rank-local tensor of a distributed checkpoint.
std::string display_name(const tensor_info& t);

namespace detail {

/// A rank file of a distributed checkpoint, opened, its size checked against the manifest's
/// `bytes`. @throws io_error, corrupt_error (another size: truncated or replaced)
std::unique_ptr<fd_guard> open_rank_file(io::backend& io, const std::string& path,
                                         std::uint64_t bytes);

/// The bytes of a distributed checkpoint's files, each chunk verified before use.
class piece_reader {
public:
    piece_reader(io::backend& io, const std::filesystem::path& dir, const manifest& m)
        : io_(&io), dir_(dir), m_(&m) {}

    /// Bytes [begin, end) of `p` into `out`. @throws io_error, corrupt_error
    void read(const manifest_piece& p, std::uint64_t begin, std::uint64_t end, std::byte* out,
              std::string_view what);
    [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }

private:
    int open(std::uint64_t file);

    io::backend* io_;
    std::filesystem::path dir_;
    const manifest* m_;
    std::map<std::uint64_t, std::unique_ptr<fd_guard>> fds_;
    std::map<std::uint64_t, std::string> paths_;
    std::vector<std::byte> scratch_;
    std::uint64_t bytes_read_ = 0;
};

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/reader-inl.hpp>
#endif
