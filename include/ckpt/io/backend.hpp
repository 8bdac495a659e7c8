#pragma once

#include <ckpt/detail/config.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace ckpt::io {

/// One name in a directory, as backend::list gives it.
struct dir_entry {
    enum class kind { regular, directory, symlink, other };
    std::string name; ///< the file name, never "." or ".."
    kind type = kind::other;

    friend bool operator==(const dir_entry&, const dir_entry&) = default;
};

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
    /// Lets go of an open file whose name is gone (the checkpoint a save replaced, one that
    /// retention deleted): the file system frees a file's blocks when its last descriptor
    /// closes, which for a large file takes as long as writing a good part of it. ckpt holds
    /// such a file open across the rename or unlink, then calls this. Default: close(fd) now.
    /// posix_backend closes it on a background thread instead (see flush_releases).
    virtual void release(int fd) { close(fd); }
    /// Lets go of an open file whose cached pages will not be read again: the checkpoint a save
    /// is about to replace, or one that retention will delete once the save is committed. The
    /// file and its name stay as they are; only its pages leave the page cache, so that the new
    /// file's pages can reuse that memory, as they do when the old file was removed before the
    /// save. Without it the save takes other free memory, which in a virtual machine that hands
    /// free memory back to its host costs far more than reused memory (the writes of a 256 MiB
    /// save took 3 to 6 times as long on the CI machine). Advice: nothing fails. Default:
    /// close(fd) now. posix_backend drops the pages (posix_fadvise POSIX_FADV_DONTNEED) and
    /// closes fd on its background thread; flush_releases() waits for that too.
    virtual void evict(int fd) { close(fd); }
    /// Returns once every file given to release() so far is closed. ckpt calls it when a save
    /// finds the disk full (then retries), and in wait() and the destructors of its managers
    /// and async saver. Default: nothing.
    virtual void flush_releases() {}

    // The directory calls of ckpt::manager and scan_directory. Their defaults are the POSIX
    // calls, so a backend written before them keeps compiling and keeps working.

    /// Creates one directory (its parent must exist); EEXIST when it does. Default: ::mkdir.
    virtual int mkdir(const char* path, ::mode_t mode);
    /// Replaces `out` with the names in a directory, in no particular order, without "." and
    /// "..". Default: opendir/readdir (a type readdir does not know is read with lstat).
    virtual int list(const char* path, std::vector<dir_entry>& out);
    /// Takes an exclusive lock on an open file without waiting: -1 with EWOULDBLOCK when
    /// another open file description holds it. The kernel releases it when its holder dies.
    /// Default: flock(LOCK_EX | LOCK_NB).
    virtual int lock(int fd);
    /// Releases lock(). Default: flock(LOCK_UN).
    virtual int unlock(int fd);
    /// Sets an open file's size. Default: ::ftruncate.
    virtual int truncate(int fd, std::uint64_t size);
    /// Removes an empty directory. Default: ::rmdir.
    virtual int rmdir(const char* path);
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
    int file_size(int fd, std::uint64_t& size) override;
    const void* map(int fd, std::size_t size) override;
    void unmap(const void* data, std::size_t size) override {
        ::munmap(const_cast<void*>(data), size);
    }
    int allocate(int fd, std::uint64_t size) override;
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override;
    /// Closes `fd` on a background thread, one per process, started on first use: the
    /// caller does not wait for a large file's blocks to be freed. A child of fork() starts
    /// with nothing queued (the parent closes what it queued); process exit closes the rest.
    void release(int fd) override;
    void evict(int fd) override;
    void flush_releases() override;

private:
    /// Whether every page of the file's first `size` bytes is in the page cache: 1 or 0, or -1
    /// when the kernel cannot tell (cachestat missing or refused).
    static int all_cached(int fd, std::size_t size);
    static bool all_resident(void* p, std::size_t size);
};

/// The backend ckpt uses when none is given.
backend& default_backend();

} // namespace ckpt::io

#ifdef CKPT_DEFINITIONS
#include <ckpt/io/backend-inl.hpp>
#endif
