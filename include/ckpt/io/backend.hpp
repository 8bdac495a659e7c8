#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace ckpt::io {

/// The file-system calls ckpt makes, POSIX-style: a failure returns -1 (or nullptr) and sets
/// errno. Every byte ckpt reads or writes goes through one of these, so a test can replace the
/// backend to fail any call, shorten a write, or simulate a crash.
class backend {
public:
    virtual ~backend() = default;
    virtual int open(const char* path, int flags, ::mode_t mode) = 0;
    virtual ::ssize_t write(int fd, const void* data, std::size_t n) = 0;
    virtual ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) = 0;
    virtual ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) = 0;
    virtual int fsync(int fd) = 0;
    virtual int close(int fd) = 0;
    virtual int rename(const char* from, const char* to) = 0;
    virtual int unlink(const char* path) = 0;
    /// Size of an open file in bytes.
    virtual int file_size(int fd, std::uint64_t& size) = 0;
    /// A read-only view of a whole file, or nullptr (errno set) when mapping is not possible;
    /// ckpt then reads the file with pread instead.
    virtual const void* map(int fd, std::size_t size) = 0;
    virtual void unmap(const void* data, std::size_t size) = 0;
    /// Reserves `size` bytes for a new file, so a full disk shows before anything is written;
    /// a file system that cannot (EOPNOTSUPP, EINVAL) is no error. Default: nothing.
    virtual int allocate(int /*fd*/, std::uint64_t /*size*/) { return 0; }
    /// Starts writing a range back to the disk without waiting, so the final fsync has less to
    /// do; advisory, errors are ignored (fsync reports them). Default: nothing.
    virtual void start_writeback(int /*fd*/, std::uint64_t /*offset*/, std::uint64_t /*size*/) {}
};

/// The real thing: direct POSIX calls.
class posix_backend final : public backend {
public:
    int open(const char* path, int flags, ::mode_t mode) override {
        return ::open(path, flags, mode);
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        return ::write(fd, data, n);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        return ::pwrite(fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        return ::pread(fd, data, n, offset);
    }
    int fsync(int fd) override { return ::fsync(fd); }
    int close(int fd) override { return ::close(fd); }
    int rename(const char* from, const char* to) override { return ::rename(from, to); }
    int unlink(const char* path) override { return ::unlink(path); }
    int file_size(int fd, std::uint64_t& size) override {
        struct ::stat st {};
        if (::fstat(fd, &st) != 0) return -1;
        if (!S_ISREG(st.st_mode)) {
            errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
            return -1;
        }
        size = static_cast<std::uint64_t>(st.st_size);
        return 0;
    }
    const void* map(int fd, std::size_t size) override {
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) return nullptr;
        // A page that is not resident would be read on first touch, and a read error there is
        // a SIGBUS, not an errno: use the mapping only when every page is already in memory.
        if (!all_resident(p, size)) {
            ::munmap(p, size);
            errno = EAGAIN;
            return nullptr;
        }
        return p;
    }
    void unmap(const void* data, std::size_t size) override {
        ::munmap(const_cast<void*>(data), size);
    }
    int allocate(int fd, std::uint64_t size) override {
        const int e = ::posix_fallocate(fd, 0, static_cast<::off_t>(size));
        if (e == 0 || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) return 0;
        errno = e;
        return -1;
    }
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override {
#if defined(__linux__)
        ::sync_file_range(fd, static_cast<::off_t>(offset), static_cast<::off_t>(size),
                          SYNC_FILE_RANGE_WRITE);
#else
        (void)fd;
        (void)offset;
        (void)size;
#endif
    }

private:
    static bool all_resident(void* p, std::size_t size) {
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t pages = (size + page - 1) / page;
        constexpr std::size_t batch = 4096;
        unsigned char flags[batch];
        for (std::size_t first = 0; first < pages; first += batch) {
            const std::size_t n = pages - first < batch ? pages - first : batch;
            auto* start = static_cast<char*>(p) + first * page;
            const std::size_t len = first + n == pages ? size - first * page : n * page;
            if (::mincore(start, len, flags) != 0) return false;
            for (std::size_t i = 0; i < n; ++i) {
                if ((flags[i] & 1U) == 0) return false;
            }
        }
        return true;
    }
};

/// The backend ckpt uses when none is given.
inline backend& default_backend() {
    static posix_backend instance;
    return instance;
}

} // namespace ckpt::io
