#pragma once

#include <ckpt/error.hpp>
#include <ckpt/io/backend.hpp>

#include <ckpt/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Writes all of `n` bytes at the file position, retrying short writes and EINTR.
/// @returns 0, or the errno of the failure
int write_all(io::backend& io, int fd, const std::byte* p, std::size_t n);

/// Reads exactly `n` bytes at `offset`, retrying short reads and EINTR.
/// @returns 0, or the errno of the failure (EIO for an early end of file)
int read_all(io::backend& io, int fd, std::byte* p, std::size_t n, std::uint64_t offset);

/// An open descriptor, closed on destruction (the close result only matters on the write path,
/// where it is checked explicitly).
class fd_guard {
public:
    fd_guard(io::backend& io, int fd) noexcept : io_(&io), fd_(fd) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() { reset(); }
    [[nodiscard]] int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) io_->close(std::exchange(fd_, -1));
    }

private:
    io::backend* io_;
    int fd_;
};

/// Opens a file for reading. @throws io_error
int open_for_reading(io::backend& io, const std::string& path);

/// The whole content of a file: mapped when every page is in memory, read otherwise.
class file_bytes {
public:
    file_bytes(io::backend& io, const std::string& path);
    file_bytes(const file_bytes&) = delete;
    file_bytes& operator=(const file_bytes&) = delete;
    ~file_bytes();
    [[nodiscard]] const std::byte* data() const noexcept {
        return mapped_ != nullptr ? mapped_ : buffer_.get();
    }
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

private:
    io::backend* io_;
    std::uint64_t size_ = 0;
    const std::byte* mapped_ = nullptr;
    std::unique_ptr<std::byte[]> buffer_;
};

/// A read-only descriptor of the file at `path`, held so that its blocks are freed by
/// backend::release rather than by the rename or unlink that removes its name; -1 when there
/// is none (errno is left as it was).
int open_to_release(io::backend& io, const char* path);

/// unlink(path), with the file's blocks freed by backend::release. @returns 0, or -1 with
/// errno set by unlink
int unlink_and_release(io::backend& io, const char* path);

/// Writes a new file beside `target` and, on commit(), puts it in place atomically and durably:
/// write all, fsync, close (both checked), rename, fsync the directory. Until commit() succeeds
/// the target is untouched, and a failed or abandoned attempt removes its temporary file.
class atomic_file {
public:
    static constexpr std::size_t buffer_bytes = std::size_t{2} << 20;
    static constexpr std::size_t slice_bytes = std::size_t{4} << 20;
    static constexpr std::uint64_t writeback_bytes = std::uint64_t{32} << 20;

    atomic_file(io::backend& io, const std::filesystem::path& target);

    /// "<target>.tmp-<pid>-<n>", with the target's name shortened so that the temporary name
    /// still fits in NAME_MAX.
    static std::string temp_name(const std::filesystem::path& target, std::uint64_t n);
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() { abandon(); }

    void write(const void* data, std::size_t n);

    /// Reserves the file's final size: a full disk fails here, before a byte is written. First
    /// hands the file it will replace, if any, to backend::evict.
    void allocate(std::uint64_t bytes);

    /// Overwrites bytes already written.
    void patch(std::uint64_t offset, const void* data, std::size_t n);

    [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_ + buffer_.size(); }

    /// Makes the file the target. A failed fsync ends the attempt: the file is never renamed.
    /// @throws io_error
    void commit();

private:
    /// Why `dir` cannot hold a new file, "the directory 'run' does not exist" or "'a' is not a
    /// directory" (asked through `io`), or "" when it is a directory.
    static std::string missing_directory(io::backend& io, const std::string& dir);
    std::string unchanged() const;
    [[noreturn]] void fail(int id, const char* operation, int err);
    void abandon() noexcept;
    void put(const std::byte* p, std::size_t n);
    void flush();
    void sync_directory();

    io::backend* io_;
    std::string target_;
    std::string dir_;
    std::string temp_;
    int fd_ = -1;
    std::vector<std::byte> buffer_;
    std::uint64_t written_ = 0;
    std::uint64_t written_back_ = 0;
};

/// Collects a checkpoint in memory (the same bytes as a file).
class memory_sink {
public:
    explicit memory_sink(std::size_t expected_bytes) { bytes_.reserve(expected_bytes); }
    void write(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::byte*>(data);
        bytes_.insert(bytes_.end(), p, p + n);
    }
    void patch(std::uint64_t offset, const void* data, std::size_t n) {
        std::memcpy(bytes_.data() + offset, data, n);
    }
    std::vector<std::byte> take() noexcept { return std::move(bytes_); }

private:
    std::vector<std::byte> bytes_;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/io/file-inl.hpp>
#endif
