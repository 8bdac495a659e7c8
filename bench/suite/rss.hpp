#pragma once
// Peak RSS, in a fresh process per measurement: a forked child builds the state, resets VmHWM
// (/proc/self/clear_refs), runs one operation and reports VmHWM through a pipe.

#include "cleanup.hpp"
#include "state.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace bench {

/// A field of /proc/self/status in MiB (kB in the file), or -1.
double status_mib(const char* field);

/// Resets VmHWM to VmRSS (Linux >= 4.0). @returns whether the write was accepted
bool reset_hwm();

/// Whether resetting VmHWM works here: raise it by 64 MiB, reset, and see it drop.
bool hwm_reset_works();

struct rss_result {
    int ok = 0;
    int reset_works = 0;
    double state_mib = 0;      ///< tensor bytes of the state
    double rss_before_mib = 0; ///< VmRSS just before the operation, state built
    double peak_mib = 0;       ///< VmHWM after it (since the reset, or absolute)
    char error[256] = {};
};

/// Runs `body` in a forked child and returns what it measured. Call it while this process is
/// small: the child inherits (and counts) the parent's resident pages.
template <class Body>
rss_result in_child(Body body) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe: " + std::string(std::strerror(errno)));
    std::fflush(stdout);
    std::fflush(stderr);
    const ::pid_t pid = ::fork();
    if (pid < 0) die("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
        ::close(fds[0]);
        rss_result r;
        try {
            r = body();
            r.ok = 1;
        } catch (const std::exception& e) {
            std::snprintf(r.error, sizeof r.error, "%s", e.what());
        }
        const ::ssize_t w = ::write(fds[1], &r, sizeof r);
        ::_exit(w == static_cast<::ssize_t>(sizeof r) ? 0 : 1);
    }
    ::close(fds[1]);
    rss_result r;
    std::size_t got = 0;
    auto* out = reinterpret_cast<char*>(&r);
    while (got < sizeof r) {
        const ::ssize_t n = ::read(fds[0], out + got, sizeof r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (got != sizeof r) {
        r = rss_result{};
        std::snprintf(r.error, sizeof r.error, "the child died (status %d)", status);
    }
    return r;
}

/// The peak of one operation on a state of `shape`: the child builds the state (with values,
/// or zeros for a load), resets VmHWM, runs `op`, and reads VmHWM.
template <class Op>
rss_result measure_peak(const state_shape& shape, bool with_values, Op op) {
    return in_child([&]() {
        rss_result r;
        r.reset_works = hwm_reset_works() ? 1 : 0;
        train_state st = make_state(shape, with_values);
        r.state_mib = static_cast<double>(tensor_bytes(st)) / mib;
        if (r.reset_works != 0) reset_hwm();
        r.rss_before_mib = status_mib("VmRSS");
        op(st);
        r.peak_mib = status_mib("VmHWM");
        return r;
    });
}

} // namespace bench
