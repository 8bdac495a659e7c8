#pragma once

#include <ckpt/io/backend.hpp>

#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

namespace ckpt::io {

CKPT_INLINE int backend::mkdir(const char* path, ::mode_t mode) {
    return ::mkdir(path, mode);
}

CKPT_INLINE int backend::list(const char* path, std::vector<dir_entry>& out) {
    out.clear();
    DIR* d = ::opendir(path);
    if (d == nullptr) return -1;
    const int dfd = ::dirfd(d);
    for (;;) {
        errno = 0;
        const ::dirent* de = ::readdir(d);
        if (de == nullptr) break;
        const std::string_view name(de->d_name);
        if (name == "." || name == "..") continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct ::stat st {};
            if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; // gone
            type = S_ISREG(st.st_mode)   ? DT_REG
                   : S_ISDIR(st.st_mode) ? DT_DIR
                   : S_ISLNK(st.st_mode) ? DT_LNK
                                         : DT_UNKNOWN;
        }
        const dir_entry::kind kind = type == DT_REG   ? dir_entry::kind::regular
                                     : type == DT_DIR ? dir_entry::kind::directory
                                     : type == DT_LNK ? dir_entry::kind::symlink
                                                      : dir_entry::kind::other;
        out.push_back({std::string(name), kind});
    }
    const int e = errno;
    ::closedir(d);
    if (e != 0) {
        out.clear();
        errno = e;
        return -1;
    }
    return 0;
}

CKPT_INLINE int backend::lock(int fd) {
    return ::flock(fd, LOCK_EX | LOCK_NB);
}

CKPT_INLINE int backend::unlock(int fd) {
    return ::flock(fd, LOCK_UN);
}

CKPT_INLINE int backend::truncate(int fd, std::uint64_t size) {
    return ::ftruncate(fd, static_cast<::off_t>(size));
}

CKPT_INLINE int backend::rmdir(const char* path) {
    return ::rmdir(path);
}

namespace detail {

/// The background thread of posix_backend::release: closes descriptors of files whose names
/// are gone, so that freeing their blocks costs the caller nothing. One per process.
class background_closer {
public:
    /// The most descriptors it holds; beyond that a release closes in the caller's thread.
    static constexpr std::size_t max_queued = 256;

    static background_closer& instance() {
        // Never destroyed: a thread of a static object would be joined after other statics
        // are gone. Process exit closes what is still queued.
        static background_closer* closer = new background_closer();
        return *closer;
    }

    /// Closes fd; `evict`: drops its cached pages first.
    void release(int fd, bool evict = false) {
        std::unique_lock lock(mutex_);
        if (queue_.size() >= max_queued || !start_locked()) {
            lock.unlock();
            finish(job{fd, evict});
            return;
        }
        queue_.push_back(job{fd, evict});
        ++pending_;
        work_.notify_one();
    }

    void flush() {
        std::unique_lock lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
    }

private:
    background_closer() {
        ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                         [] { instance().after_fork_in_child(); });
    }

    /// Starts the thread if it is not running; false when it cannot be started.
    bool start_locked() {
        if (worker_) return true;
        try {
            worker_ = std::make_unique<std::thread>([this] { run(); });
            worker_->detach();
        } catch (const std::system_error&) {
            worker_.reset();
            return false;
        }
        return true;
    }

    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            work_.wait(lock, [this] { return !queue_.empty(); });
            const job j = queue_.front();
            queue_.pop_front();
            lock.unlock();
            finish(j);
            lock.lock();
            if (--pending_ == 0) done_.notify_all();
        }
    }

    struct job {
        int fd;
        bool evict;
    };

    static void finish(const job& j) {
#if defined(POSIX_FADV_DONTNEED)
        if (j.evict) (void)::posix_fadvise(j.fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
        ::close(j.fd); // a file whose name is gone: its blocks are freed here
    }

    /// The child of fork() has no thread: its copies of the queued descriptors are closed (the
    /// parent's stay open until its own thread closes them), and a release starts a new one.
    /// The fork handlers hold the mutex across fork(), so the queue is whole here; the
    /// condition variables may remember the parent's waiting thread, so they start afresh.
    void after_fork_in_child() {
        new (&work_) std::condition_variable();
        new (&done_) std::condition_variable();
        for (const job& j : queue_) ::close(j.fd);
        queue_.clear();
        pending_ = 0;
        worker_.reset(); // detached: the parent's thread, which does not exist here
        mutex_.unlock();
    }

    std::mutex mutex_;
    std::condition_variable work_;
    std::condition_variable done_;
    std::deque<job> queue_;
    std::size_t pending_ = 0; ///< queued, or being closed
    std::unique_ptr<std::thread> worker_;
};

} // namespace detail

CKPT_INLINE void posix_backend::release(int fd) {
    detail::background_closer::instance().release(fd);
}

CKPT_INLINE void posix_backend::evict(int fd) {
    detail::background_closer::instance().release(fd, true);
}

CKPT_INLINE void posix_backend::flush_releases() {
    detail::background_closer::instance().flush();
}

CKPT_INLINE backend& default_backend() {
    static posix_backend instance;
    return instance;
}

CKPT_INLINE int posix_backend::file_size(int fd, std::uint64_t& size) {
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    size = static_cast<std::uint64_t>(st.st_size);
    return 0;
}

CKPT_INLINE const void* posix_backend::map(int fd, std::size_t size) {
    // No MAP_POPULATE: when the file is in the page cache, the first touch of each page maps it
    // and its neighbours (the kernel's fault-around), a quarter cheaper than populating the
    // whole range up front (21 ms against 16 ms for 256 MiB hashed through the mapping, on the
    // CI machine).
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    // A page that is not resident would be read on first touch, and a read error there is
    // a SIGBUS, not an errno: use the mapping only when every page is already in memory.
    if (all_cached(fd, size) == 1) return p;
    // mincore() tells that only for a file the process owns or may write (for any other, it
    // says every page is resident); for the others, and for pages that are not resident yet,
    // MADV_POPULATE_READ (Linux 5.14) reads and maps them all, and reports a read error as an
    // error. Where it is not known, the caller reads the file instead.
    struct ::stat st {};
    const bool mincore_tells =
        ::fstat(fd, &st) == 0 && (st.st_uid == ::geteuid() || ::geteuid() == 0);
    if (mincore_tells && all_resident(p, size)) return p;
    constexpr int populate_read = 22; // MADV_POPULATE_READ, missing from older headers
    if (::madvise(p, size, populate_read) == 0 && (!mincore_tells || all_resident(p, size))) {
        return p;
    }
    ::munmap(p, size);
    errno = EAGAIN;
    return nullptr;
}

CKPT_INLINE int posix_backend::allocate(int fd, std::uint64_t size) {
    const int e = ::posix_fallocate(fd, 0, static_cast<::off_t>(size));
    if (e == 0 || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) return 0;
    errno = e;
    return -1;
}

CKPT_INLINE void posix_backend::start_writeback(int fd, std::uint64_t offset, std::uint64_t size) {
#if defined(__linux__)
    ::sync_file_range(fd, static_cast<::off_t>(offset), static_cast<::off_t>(size),
                      SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    (void)offset;
    (void)size;
#endif
}

CKPT_INLINE int posix_backend::all_cached(int fd, std::size_t size) {
#if defined(__linux__)
    // cachestat() (Linux 6.5) counts a range's cached pages in one walk over the page cache's
    // folios: 0.2 ms for 256 MiB on the CI machine, where mincore() on the mapping takes 3.8 ms,
    // one lookup per page. Kernels that restrict it (to files the process owns or may write,
    // like mincore) refuse with EPERM instead of answering, and older ones have no such call.
#if defined(SYS_cachestat)
    constexpr long cachestat_call = SYS_cachestat;
#else
    constexpr long cachestat_call = 451; // the same number on every architecture Linux has
#endif
    struct {
        std::uint64_t offset, length;
    } range{0, size};
    struct {
        std::uint64_t cache, dirty, writeback, evicted, recently_evicted;
    } counts{};
    if (::syscall(cachestat_call, fd, &range, &counts, 0U) != 0) return -1;
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return counts.cache >= (size + page - 1) / page ? 1 : 0;
#else
    (void)fd;
    (void)size;
    return -1;
#endif
}

CKPT_INLINE bool posix_backend::all_resident(void* p, std::size_t size) {
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

} // namespace ckpt::io
