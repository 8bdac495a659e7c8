#pragma once
// The files and directories this program writes in its work directory, their removal (at the
// end, on a failure, and on SIGINT/SIGTERM), and the way out on a failure.

#include <array>
#include <string>

#include <sys/types.h>

namespace bench {

/// Where the work files are, set by main before anything is written.
struct cleanup_paths {
    std::array<char, 4096> dir{};
    bool own_dir = false; ///< this program created the directory: remove it too
    ::pid_t owner = 0;
};
extern cleanup_paths g_cleanup;

/// Removes every file and directory this program creates in the work directory (see
/// cleanup.cpp), and the directory when it created it; nothing in a forked child.
/// Async-signal-safe.
void remove_work_files() noexcept;

/// The SIGINT/SIGTERM handler: removes the work files, then dies of the signal.
extern "C" void on_signal(int sig);

/// Prints "bench-suite: <what>", removes the work files and exits with status 2.
[[noreturn]] void die(const std::string& what);
[[noreturn]] void die_errno(const std::string& what, const std::string& path);

} // namespace bench
