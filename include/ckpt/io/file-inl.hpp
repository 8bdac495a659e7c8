#pragma once

#include <ckpt/io/file.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE int write_all(io::backend& io, int fd, const std::byte* p, std::size_t n) {
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

CKPT_INLINE int read_all(io::backend& io, int fd, std::byte* p, std::size_t n,
                         std::uint64_t offset) {
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

CKPT_INLINE int open_for_reading(io::backend& io, const std::string& path) {
    for (;;) {
        const int fd = io.open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) return fd;
        if (errno != EINTR) throw_io(errc::io_open, "open", path, errno);
    }
}

CKPT_INLINE file_bytes::file_bytes(io::backend& io, const std::string& path) : io_(&io) {
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
    if (const int e = read_all(io, fd.get(), buffer_.get(), static_cast<std::size_t>(size_), 0)) {
        throw_io(errc::io_read, "read", path, e);
    }
}

CKPT_INLINE file_bytes::~file_bytes() {
    if (mapped_ != nullptr) io_->unmap(mapped_, static_cast<std::size_t>(size_));
}

CKPT_INLINE atomic_file::atomic_file(io::backend& io, const std::filesystem::path& target)
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
        if (e == ENOENT || e == ENOTDIR) {
            // The usual cause is a folder that was never made: say so, with the OS's reason.
            if (const std::string why = missing_directory(io, dir_); !why.empty()) {
                const std::string temp = target_ + ".tmp-*";
                throw_error<io_error>(errc::io_open,
                                      "cannot save '" + target_ + "': " + why + " (create '" +
                                          temp + "' failed: " + std::strerror(e) + ", errno " +
                                          std::to_string(e) + ")",
                                      "create", temp, std::error_code(e, std::generic_category()));
            }
        }
        throw_io(errc::io_open, "create", target_ + ".tmp-*", e, unchanged());
    }
}

CKPT_INLINE std::string atomic_file::missing_directory(io::backend& io, const std::string& dir) {
    const auto probe = [&io](const std::string& path) {
        int fd = -1;
        do {
            fd = io.open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) return errno;
        io.close(fd);
        return 0;
    };
    const int e = probe(dir);
    if (e == ENOENT) return "the directory '" + dir + "' does not exist";
    if (e != ENOTDIR) return {};
    // Name the first part of the path that is not a directory.
    std::filesystem::path p(dir);
    while (p.has_relative_path() && p.parent_path() != p && !p.parent_path().empty() &&
           probe(p.parent_path().string()) == ENOTDIR) {
        p = p.parent_path();
    }
    return "'" + p.string() + "' is not a directory";
}

CKPT_INLINE std::string atomic_file::temp_name(const std::filesystem::path& target,
                                               std::uint64_t n) {
    const std::string suffix = ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
    constexpr std::size_t name_max = 255;
    std::string name = target.filename().string();
    if (name.size() + suffix.size() > name_max) name.resize(name_max - suffix.size());
    return (target.parent_path() / (name + suffix)).string();
}

CKPT_INLINE void atomic_file::write(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    // Buffered bytes are written in blocks that end on multiples of buffer_bytes in the file
    // (after the first): like the slices below, aligned writes leave large page-cache folios.
    // Written at arbitrary offsets, a file of 64 KiB tensors was cached in small folios and
    // took 1.2x the time to load just after its save as after being read back.
    const auto end = written_ + buffer_.size();
    const std::size_t to_boundary = buffer_bytes - static_cast<std::size_t>(end % buffer_bytes);
    if (n < to_boundary) {
        buffer_.insert(buffer_.end(), p, p + n);
        return;
    }
    if (n <= buffer_bytes) {
        buffer_.insert(buffer_.end(), p, p + to_boundary);
        flush(); // ends on a multiple of buffer_bytes
        buffer_.insert(buffer_.end(), p + to_boundary, p + n);
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

CKPT_INLINE void atomic_file::allocate(std::uint64_t bytes) {
    // The file this save replaces will not be read again: its cached pages can make room for
    // this one's (backend::evict). It stays whole on disk until the rename.
    if (const int old = open_to_release(*io_, target_.c_str()); old >= 0) io_->evict(old);
    if (io_->allocate(fd_, bytes) == 0) return;
    int e = errno;
    if (e == ENOSPC) {
        // Files replaced or deleted before may still hold their blocks (backend::release):
        // wait until they are freed, then ask once more.
        io_->flush_releases();
        if (io_->allocate(fd_, bytes) == 0) return;
        e = errno;
    }
    fail(errc::io_write, "allocate", e);
}

CKPT_INLINE void atomic_file::patch(std::uint64_t offset, const void* data, std::size_t n) {
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

CKPT_INLINE void atomic_file::commit() {
    flush();
    if (io_->fsync(fd_) != 0) fail(errc::io_fsync, "fsync", errno);
    const int fd = std::exchange(fd_, -1);
    if (io_->close(fd) != 0) fail(errc::io_close, "close", errno);
    // The file this one replaces stays open across the rename: its blocks are then freed when
    // that descriptor is released (on a background thread, with the POSIX backend), not inside
    // rename(), which frees a large file's blocks when it removes its last name.
    const int replaced = open_to_release(*io_, target_.c_str());
    if (io_->rename(temp_.c_str(), target_.c_str()) != 0) {
        const int e = errno;
        if (replaced >= 0) io_->close(replaced);
        fail(errc::io_rename, "rename", e);
    }
    temp_.clear();
    // Released once the new name is durable, whatever sync_directory() says.
    try {
        sync_directory();
    } catch (...) {
        if (replaced >= 0) io_->release(replaced);
        throw;
    }
    if (replaced >= 0) io_->release(replaced);
}

CKPT_INLINE std::string atomic_file::unchanged() const {
    return "the file at '" + target_ + "' was not changed";
}

CKPT_INLINE void atomic_file::fail(int id, const char* operation, int err) {
    const std::string where = temp_;
    abandon();
    throw_io(id, operation, where, err, unchanged());
}

CKPT_INLINE void atomic_file::abandon() noexcept {
    if (fd_ >= 0) io_->close(std::exchange(fd_, -1));
    if (!temp_.empty()) io_->unlink(std::exchange(temp_, std::string()).c_str());
}

CKPT_INLINE void atomic_file::put(const std::byte* p, std::size_t n) {
    if (const int e = write_all(*io_, fd_, p, n)) fail(errc::io_write, "write", e);
}

CKPT_INLINE void atomic_file::flush() {
    if (buffer_.empty()) return;
    put(buffer_.data(), buffer_.size());
    written_ += buffer_.size();
    buffer_.clear();
    // A file of small tensors is all buffered writes: start write-back for them too.
    if (written_ - written_back_ >= writeback_bytes) {
        io_->start_writeback(fd_, written_back_, written_ - written_back_);
        written_back_ = written_;
    }
}

CKPT_INLINE void atomic_file::sync_directory() {
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

CKPT_INLINE int open_to_release(io::backend& io, const char* path) {
    // O_NONBLOCK: a FIFO at that name must not block; O_NOFOLLOW: a symbolic link is replaced
    // itself, so there is nothing of its target to hold.
    const int saved = errno;
    const int fd = io.open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    errno = saved;
    return fd;
}

CKPT_INLINE int unlink_and_release(io::backend& io, const char* path) {
    const int fd = open_to_release(io, path);
    if (io.unlink(path) != 0) {
        const int e = errno;
        if (fd >= 0) io.close(fd);
        errno = e;
        return -1;
    }
    if (fd >= 0) io.release(fd);
    return 0;
}

} // namespace ckpt::detail
