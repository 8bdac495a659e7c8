#pragma once

#include <ckpt/error.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/manager/lock.hpp>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pthread.h>

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

namespace ckpt {

namespace detail {

CKPT_INLINE void create_directories(const std::filesystem::path& dir, io::backend& io) {
    if (dir.empty()) return;
    if (io.mkdir(dir.c_str(), 0777) == 0) return;
    int e = errno;
    if (e == ENOENT && dir.has_relative_path() && dir.parent_path() != dir) {
        create_directories(dir.parent_path(), io);
        if (io.mkdir(dir.c_str(), 0777) == 0) return;
        e = errno;
    }
    if (e == EEXIST) {
        std::error_code ec;
        if (std::filesystem::is_directory(dir, ec)) return;
        throw_io(errc::io_open, "create directory", dir.string(), ENOTDIR,
                 "a file that is not a directory has its name");
    }
    throw_io(errc::io_open, "create directory", dir.string(), e);
}

/// The descriptors of the directory locks this process holds, closed in a child of fork() as
/// fork() returns there (see directory_lock). One per process, registered with pthread_atfork
/// on first use and never destroyed: fork handlers cannot be removed.
class fork_closed_descriptors {
public:
    static fork_closed_descriptors& instance() {
        static fork_closed_descriptors* fds = new fork_closed_descriptors();
        return *fds;
    }

    /// fork() waits while this is held: hold it from the open of a descriptor to its add(),
    /// and from its remove() to its close, so that no child sees one unregistered.
    [[nodiscard]] std::unique_lock<std::mutex> hold() { return std::unique_lock(mutex_); }
    /// Under hold(). @throws std::bad_alloc
    void add(int fd) { fds_.push_back(fd); }
    /// Under hold().
    void remove(int fd) noexcept { std::erase(fds_, fd); }

private:
    fork_closed_descriptors() {
        fds_.reserve(8);
        ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                         [] { instance().after_fork_in_child(); });
    }

    /// Only close(), which is async-signal-safe: the child of a multi-threaded process may do
    /// nothing else before it execs. The descriptors are the parent's locks; clear() frees
    /// nothing.
    void after_fork_in_child() noexcept {
        for (const int fd : fds_) ::close(fd);
        fds_.clear();
        mutex_.unlock();
    }

    std::mutex mutex_;
    std::vector<int> fds_;
};

/// Opens the lock file, retrying EINTR.
inline int open_lock_file(io::backend& io, const std::string& path, int flags) {
    int fd = -1;
    do {
        fd = io.open(path.c_str(), flags | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/// The lock file's text: a pid, or nothing. -1 with errno on a read error.
inline int read_lock_text(io::backend& io, int fd, std::string& text) {
    char buf[32] = {};
    const ::ssize_t n = io.pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) return -1;
    text.assign(buf, static_cast<std::size_t>(n));
    return 0;
}

inline std::optional<lock_holder> holder_of(const std::string& text) {
    const auto pid = parse_int(text);
    if (!pid || *pid <= 0) return std::nullopt;
    lock_holder h;
    h.pid = *pid;
    h.this_process = *pid == static_cast<std::int64_t>(::getpid());
    h.running = h.this_process || ::kill(static_cast<::pid_t>(*pid), 0) == 0 || errno == EPERM;
    return h;
}

} // namespace detail

CKPT_INLINE directory_lock::directory_lock(const std::filesystem::path& dir,
                                           const std::string& prefix, io::backend& io)
    : path_(dir / (prefix + ".lock")), io_(&io), owner_(::getpid()) {
    detail::create_directories(dir, io);
    const std::string path = path_.string();
    detail::fork_closed_descriptors& forked = detail::fork_closed_descriptors::instance();
    const std::unique_lock hold = forked.hold(); // no fork() from the open to the add()
    const int fd = detail::open_lock_file(io, path, O_RDWR | O_CREAT);
    if (fd < 0) {
        const int e = errno;
        detail::throw_io(errc::io_open, "create lock file", path, e,
                         "the directory cannot be written");
    }
    if (io.lock(fd) != 0) {
        const int e = errno;
        std::string text;
        const bool read = detail::read_lock_text(io, fd, text) == 0;
        io.close(fd);
        if (e != EWOULDBLOCK && e != EAGAIN) {
            detail::throw_io(errc::io_open, "lock", path, e, "the lock could not be taken");
        }
        const std::optional<lock_holder> h = read ? detail::holder_of(text) : std::nullopt;
        const std::string owner = h ? std::to_string(h->pid) : "?";
        detail::throw_error<usage_error>(
            errc::usage_directory_locked,
            "directory '" + dir.string() + "' is in use by another ckpt::manager (pid " + owner +
                (h && h->this_process ? ", this process" : "") +
                "); two managers on one directory would delete each other's checkpoints");
    }
    const std::string pid = std::to_string(::getpid());
    if (io.truncate(fd, 0) != 0 ||
        io.pwrite(fd, pid.data(), pid.size(), 0) != static_cast<::ssize_t>(pid.size())) {
        const int e = errno;
        io.unlock(fd);
        io.close(fd);
        detail::throw_io(errc::io_write, "write lock file", path, e,
                         "the directory cannot be written");
    }
    try {
        forked.add(fd);
    } catch (...) {
        (void)io.truncate(fd, 0);
        io.unlock(fd);
        io.close(fd);
        throw;
    }
    fd_ = fd;
}

CKPT_INLINE directory_lock::directory_lock(directory_lock&& other) noexcept
    : path_(std::move(other.path_)), io_(other.io_), fd_(std::exchange(other.fd_, -1)),
      owner_(other.owner_) {}

CKPT_INLINE directory_lock& directory_lock::operator=(directory_lock&& other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        io_ = other.io_;
        fd_ = std::exchange(other.fd_, -1);
        owner_ = other.owner_;
    }
    return *this;
}

CKPT_INLINE directory_lock::~directory_lock() {
    release();
}

CKPT_INLINE void directory_lock::release() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    // A copy in a child of fork(): its descriptor was closed at the fork (the number may name
    // another file by now), and the lock, shared with the parent, is the parent's to release.
    if (owner_ != static_cast<std::int64_t>(::getpid())) return;
    detail::fork_closed_descriptors& forked = detail::fork_closed_descriptors::instance();
    const std::unique_lock hold = forked.hold(); // no fork() from the remove() to the close
    forked.remove(fd);
    // Emptied while still held: a reader then never takes a released lock's pid for a holder.
    (void)io_->truncate(fd, 0);
    (void)io_->unlock(fd);
    (void)io_->close(fd);
}

CKPT_INLINE std::optional<lock_holder>
read_lock_holder(const std::filesystem::path& dir, const std::string& prefix, io::backend& io) {
    const std::string path = (dir / (prefix + ".lock")).string();
    const int fd = detail::open_lock_file(io, path, O_RDONLY);
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT) return std::nullopt;
        detail::throw_io(errc::io_open, "open lock file", path, e);
    }
    std::string text;
    const int rc = detail::read_lock_text(io, fd, text);
    const int e = errno;
    io.close(fd);
    if (rc != 0) detail::throw_io(errc::io_read, "read lock file", path, e);
    return detail::holder_of(text);
}

} // namespace ckpt
