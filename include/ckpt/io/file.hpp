#pragma once

#include <ckpt/error.hpp>
#include <ckpt/io/backend.hpp>

#include <atomic>
#include <cerrno>
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
inline int write_all(io::backend& io, int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        const ::ssize_t w = io.write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO; // no progress and no error: do not spin
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return 0;
}

/// Reads exactly `n` bytes at `offset`, retrying short reads and EINTR.
/// @returns 0, or the errno of the failure (EIO for an early end of file)
inline int read_all(io::backend& io, int fd, std::byte* p, std::size_t n, std::uint64_t offset) {
    while (n > 0) {
        const ::ssize_t r = io.pread(fd, p, n, static_cast<::off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return EIO;
        p += r;
        n -= static_cast<std::size_t>(r);
        offset += static_cast<std::uint64_t>(r);
    }
    return 0;
}

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
inline int open_for_reading(io::backend& io, const std::string& path) {
    for (;;) {
        const int fd = io.open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) return fd;
        if (errno != EINTR) throw_io(errc::io_open, "open", path, errno);
    }
}

/// The whole content of a file: mapped when every page is in memory, read otherwise.
class file_bytes {
public:
    file_bytes(io::backend& io, const std::string& path) : io_(&io) {
        fd_guard fd(io, open_for_reading(io, path));
        if (io.file_size(fd.get(), size_) != 0) throw_io(errc::io_stat, "stat", path, errno);
        if (size_ == 0) return;
        if (size_ > static_cast<std::uint64_t>(PTRDIFF_MAX)) {
            throw_io(errc::io_read, "read", path, EFBIG);
        }
        if (const void* m = io.map(fd.get(), static_cast<std::size_t>(size_)); m != nullptr) {
            mapped_ = static_cast<const std::byte*>(m);
            return;
        }
        buffer_ = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(size_));
        if (const int e =
                read_all(io, fd.get(), buffer_.get(), static_cast<std::size_t>(size_), 0)) {
            throw_io(errc::io_read, "read", path, e);
        }
    }
    file_bytes(const file_bytes&) = delete;
    file_bytes& operator=(const file_bytes&) = delete;
    ~file_bytes() {
        if (mapped_ != nullptr) io_->unmap(mapped_, static_cast<std::size_t>(size_));
    }
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

/// Writes a new file beside `target` and, on commit(), puts it in place atomically and durably:
/// write all, fsync, close (both checked), rename, fsync the directory. Until commit() succeeds
/// the target is untouched, and a failed or abandoned attempt removes its temporary file.
class atomic_file {
public:
    static constexpr std::size_t buffer_bytes = std::size_t{1} << 20;
    static constexpr std::size_t slice_bytes = std::size_t{4} << 20;
    static constexpr std::uint64_t writeback_bytes = std::uint64_t{32} << 20;

    atomic_file(io::backend& io, const std::filesystem::path& target)
        : io_(&io), target_(target.string()) {
        const std::filesystem::path dir = target.parent_path();
        dir_ = dir.empty() ? std::string(".") : dir.string();
        buffer_.reserve(buffer_bytes);
        static std::atomic<std::uint64_t> counter{0};
        for (int attempt = 0;; ++attempt) {
            temp_ = temp_name(target, counter.fetch_add(1));
            fd_ = io.open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ >= 0) break;
            const int e = errno;
            if (e == EINTR || (e == EEXIST && attempt < 64)) continue;
            temp_.clear();
            throw_io(errc::io_open, "create", target_ + ".tmp-*", e, unchanged());
        }
    }

    /// "<target>.tmp-<pid>-<n>", with the target's name shortened so that the temporary name
    /// still fits in NAME_MAX.
    static std::string temp_name(const std::filesystem::path& target, std::uint64_t n) {
        const std::string suffix = ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
        constexpr std::size_t name_max = 255;
        std::string name = target.filename().string();
        if (name.size() + suffix.size() > name_max) name.resize(name_max - suffix.size());
        return (target.parent_path() / (name + suffix)).string();
    }
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() { abandon(); }

    void write(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::byte*>(data);
        if (buffer_.size() + n <= buffer_bytes) {
            buffer_.insert(buffer_.end(), p, p + n);
            return;
        }
        flush();
        // Large blocks go straight from the caller's memory, in slices that end on multiples of
        // the slice size in the file: large aligned writes leave large page-cache folios, which
        // makes mapping the file cheap when it is loaded.
        while (n > 0) {
            const std::size_t room = slice_bytes - static_cast<std::size_t>(written_ % slice_bytes);
            const std::size_t k = n < room ? n : room;
            put(p, k);
            written_ += k;
            p += k;
            n -= k;
            // Let the disk start on what is written while the rest is copied in.
            if (written_ - written_back_ >= writeback_bytes) {
                io_->start_writeback(fd_, written_back_, written_ - written_back_);
                written_back_ = written_;
            }
        }
    }

    /// Reserves the file's final size: a full disk fails here, before a byte is written.
    void allocate(std::uint64_t bytes) {
        if (io_->allocate(fd_, bytes) != 0) fail(errc::io_write, "allocate", errno);
    }

    /// Overwrites bytes already written.
    void patch(std::uint64_t offset, const void* data, std::size_t n) {
        flush();
        const auto* p = static_cast<const std::byte*>(data);
        while (n > 0) {
            const ::ssize_t w = io_->pwrite(fd_, p, n, static_cast<::off_t>(offset));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail(errc::io_write, "write", w < 0 ? errno : EIO);
            p += w;
            n -= static_cast<std::size_t>(w);
            offset += static_cast<std::uint64_t>(w);
        }
    }

    [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_ + buffer_.size(); }

    /// Makes the file the target. A failed fsync ends the attempt: the file is never renamed.
    /// @throws io_error
    void commit() {
        flush();
        if (io_->fsync(fd_) != 0) fail(errc::io_fsync, "fsync", errno);
        const int fd = std::exchange(fd_, -1);
        if (io_->close(fd) != 0) fail(errc::io_close, "close", errno);
        if (io_->rename(temp_.c_str(), target_.c_str()) != 0)
            fail(errc::io_rename, "rename", errno);
        temp_.clear();
        sync_directory();
    }

private:
    std::string unchanged() const { return "the file at '" + target_ + "' was not changed"; }
    [[noreturn]] void fail(int id, const char* operation, int err) {
        const std::string where = temp_;
        abandon();
        throw_io(id, operation, where, err, unchanged());
    }
    void abandon() noexcept {
        if (fd_ >= 0) io_->close(std::exchange(fd_, -1));
        if (!temp_.empty()) io_->unlink(std::exchange(temp_, std::string()).c_str());
    }
    void put(const std::byte* p, std::size_t n) {
        if (const int e = write_all(*io_, fd_, p, n)) fail(errc::io_write, "write", e);
    }
    void flush() {
        if (buffer_.empty()) return;
        put(buffer_.data(), buffer_.size());
        written_ += buffer_.size();
        buffer_.clear();
    }
    void sync_directory() {
        int fd = -1;
        do {
            fd = io_->open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } while (fd < 0 && errno == EINTR);
        const int open_errno = errno; // before anything that allocates can change it
        const std::string done = "the file is in place at '" + target_ +
                                 "', but its directory entry may not survive a power loss";
        if (fd < 0) throw_io(errc::io_sync_directory, "open directory", dir_, open_errno, done);
        fd_guard guard(*io_, fd);
        // Some file systems cannot sync a directory (EINVAL): there is nothing more to do there.
        if (io_->fsync(fd) != 0 && errno != EINVAL) {
            const int sync_errno = errno;
            throw_io(errc::io_sync_directory, "fsync directory", dir_, sync_errno, done);
        }
    }

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
