#pragma once

#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/io/backend.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace ckpt {

/// Who holds, or last held, a manager's lock: the pid its lock file holds.
struct lock_holder {
    std::int64_t pid = 0;
    /// A process with that pid exists now (a holder that died released its lock with it, and a
    /// new process may have its pid since).
    bool running = false;
    bool this_process = false; ///< the pid is this process's own

    friend bool operator==(const lock_holder&, const lock_holder&) = default;
};

/// The exclusive lock of a manager on a directory: `<dir>/<prefix>.lock`, held with the
/// backend's lock() (flock by default, which the kernel releases when its holder dies, so a
/// lock file left by a crash is no obstacle). The file holds the holder's pid while it is held,
/// for the message another manager gets, and nothing once it is released.
///
/// Only the process that took it holds it. Its descriptor is closed on exec (O_CLOEXEC), and in
/// a child of fork() that does not exec (a data-loader worker) it is closed as fork() returns
/// there (a pthread_atfork handler), so the lock ends with its holder, not with the last of
/// its children: a flock lock belongs to the open file description, which fork() shares, and
/// the kernel releases it at the last close of it. Closing the child's copy leaves the
/// parent's lock as it is. A child's copy of a directory_lock is not a holder: its release()
/// and destructor do nothing. (POSIX fcntl() record locks are not inherited by fork(), but any
/// close of the file by the process drops them, scan_directory's read of the lock file
/// included, and two managers of one process would not exclude each other: not used.)
/// fork() alone runs the handler; a child made by a raw clone() or _Fork() keeps the
/// descriptor until it exits or execs.
class directory_lock {
public:
    /// Creates the directory (and its parents) when it does not exist, then takes the lock.
    /// @throws io_error (the directory cannot be created, or the lock file created or
    /// written), usage_error 603 (another holder has it; the message names its pid)
    directory_lock(const std::filesystem::path& dir, const std::string& prefix, io::backend& io);
    directory_lock(const directory_lock&) = delete;
    directory_lock& operator=(const directory_lock&) = delete;
    directory_lock(directory_lock&& other) noexcept;
    directory_lock& operator=(directory_lock&& other) noexcept;
    /// Empties the lock file, then releases the lock.
    ~directory_lock();

    /// Releases the lock now (see the destructor); a second call does nothing.
    void release() noexcept;

    [[nodiscard]] bool held() const noexcept { return fd_ >= 0; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
    io::backend* io_;
    int fd_ = -1;
    std::int64_t owner_ = 0; ///< the pid of the process that took it
};

/// The lock file of `prefix` in `dir`: nothing when there is none or it is empty (no manager
/// holds the directory, or the last one released it). Reads only: takes no lock.
/// @throws io_error (the file exists and cannot be read)
std::optional<lock_holder> read_lock_holder(const std::filesystem::path& dir,
                                            const std::string& prefix, io::backend& io);

namespace detail {

/// Creates `dir` and its missing parents with io.mkdir. @throws io_error
void create_directories(const std::filesystem::path& dir, io::backend& io);

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/manager/lock-inl.hpp>
#endif
