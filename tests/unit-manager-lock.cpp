// The directory lock (ckpt/manager/lock.hpp): one holder at a time, the holder's pid in the file
// while held and nothing after, the directory created through the backend, every failure of the
// backend's mkdir/lock/truncate a clear io_error that leaves no lock behind; a child of fork()
// that outlives its parent holds no lock, and its copy of a manager releases nothing and never
// waits for the parent's saves.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace lock_test {

std::string lock_text(const fs::path& file) {
    const std::vector<std::byte> b = test::read_file(file);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// Counts the directory calls, and fails the one named in `fail` with `err`.
class directory_calls final : public test::posix_forwarding {
public:
    std::string fail;
    int err = EIO;
    std::vector<std::string> mkdirs;
    int locks = 0;
    int unlocks = 0;
    int truncates = 0;

    int mkdir(const char* path, ::mode_t mode) override {
        mkdirs.emplace_back(path);
        if (fail == "mkdir") return failed();
        return backend::mkdir(path, mode);
    }
    int lock(int fd) override {
        ++locks;
        if (fail == "lock") return failed();
        return backend::lock(fd);
    }
    int unlock(int fd) override {
        ++unlocks;
        return backend::unlock(fd);
    }
    int truncate(int fd, std::uint64_t size) override {
        ++truncates;
        if (fail == "truncate") return failed();
        return backend::truncate(fd, size);
    }

private:
    int failed() const {
        errno = err;
        return -1;
    }
};

/// A pid no process has: a child's, after it was reaped.
::pid_t dead_pid() {
    const ::pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    return child;
}

/// The threads of this process.
std::size_t threads() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/task")) ++n;
    return n;
}

/// The descriptor of this process open on `file`, or -1.
int descriptor_of(const fs::path& file) {
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        if (fs::read_symlink(e.path(), ec) == file) return std::stoi(e.path().filename().string());
    }
    return -1;
}

/// Waits for `pid`: its exit status, or 1000 + the signal that ended it.
int wait_for(::pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

/// Reads exactly `n` bytes, or fewer at end of file.
std::size_t read_all(int fd, void* out, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const ::ssize_t r = ::read(fd, static_cast<char*>(out) + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += static_cast<std::size_t>(r);
    }
    return got;
}

/// fsync of a checkpoint's temporary file waits until `open` (the background save stays in
/// flight for as long as the test wants).
class held_fsync final : public test::posix_forwarding {
public:
    std::atomic<bool> open{false};
    std::atomic<int> waiting{0};
    int fsync(int fd) override {
        ++waiting;
        while (!open.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return real_.fsync(fd);
    }
};

} // namespace lock_test

using lock_test::directory_calls;
using lock_test::lock_text;

TEST_CASE("directory_lock creates the directory and its parents, and holds its pid in the file") {
    const auto root = test::scratch("lock-create");
    const auto dir = root / "a" / "b" / "c";
    directory_calls io;
    {
        ckpt::directory_lock lock(dir, "run", io);
        CHECK(lock.held());
        CHECK(fs::is_directory(dir));
        CHECK(lock.path() == dir / "run.lock");
        CHECK(lock_text(dir / "run.lock") == std::to_string(::getpid()));
        // c failed (ENOENT), then b, a made, then b and c again.
        CHECK(io.mkdirs == std::vector<std::string>{dir.string(), (root / "a" / "b").string(),
                                                    (root / "a").string(),
                                                    (root / "a" / "b").string(), dir.string()});
        CHECK(io.locks == 1);
        CHECK(io.unlocks == 0);
    }
    CHECK(io.unlocks == 1);
    CHECK(lock_text(dir / "run.lock").empty()); // released: emptied while still held
}

TEST_CASE("a second directory_lock on the same directory and prefix is usage_error 603") {
    const auto dir = test::scratch("lock-twice");
    ckpt::directory_lock first(dir, "ckpt", ckpt::io::default_backend());
    const std::string text =
        test::error_text([&] { ckpt::directory_lock(dir, "ckpt", ckpt::io::default_backend()); });
    CHECK(test::error_id([&] { ckpt::directory_lock(dir, "ckpt", ckpt::io::default_backend()); }) ==
          ckpt::errc::usage_directory_locked);
    CHECK(text == "[ckpt.usage.603] directory '" + dir.string() +
                      "' is in use by another ckpt::manager (pid " + std::to_string(::getpid()) +
                      ", this process); two managers on one directory would delete each "
                      "other's checkpoints");
    // Another prefix is another lock.
    ckpt::directory_lock other(dir, "other", ckpt::io::default_backend());
    CHECK(other.held());
    // The failed attempt left the holder's pid in place.
    CHECK(lock_text(dir / "ckpt.lock") == std::to_string(::getpid()));
    first.release();
    CHECK_FALSE(first.held());
    first.release(); // a second release does nothing
    ckpt::directory_lock again(dir, "ckpt", ckpt::io::default_backend());
    CHECK(again.held());
}

TEST_CASE("directory_lock moves: one holder, one release") {
    const auto dir = test::scratch("lock-move");
    directory_calls io;
    ckpt::directory_lock a(dir, "ckpt", io);
    ckpt::directory_lock b(std::move(a));
    CHECK_FALSE(a.held()); // NOLINT(bugprone-use-after-move): moved-from is documented empty
    CHECK(b.held());
    ckpt::directory_lock c(dir, "other", io);
    c = std::move(b); // releases "other", takes "ckpt"
    CHECK(io.unlocks == 1);
    CHECK(lock_text(dir / "other.lock").empty());
    CHECK(lock_text(dir / "ckpt.lock") == std::to_string(::getpid()));
    c.release();
    CHECK(io.unlocks == 2);
}

TEST_CASE("read_lock_holder: none, this process, a dead holder, and no lock taken to read") {
    const auto dir = test::scratch("lock-holder");
    CHECK_FALSE(ckpt::read_lock_holder(dir, "ckpt", ckpt::io::default_backend()).has_value());
    {
        directory_calls io;
        ckpt::directory_lock lock(dir, "ckpt", io);
        const auto h = ckpt::read_lock_holder(dir, "ckpt", io);
        REQUIRE(h.has_value());
        CHECK(*h == ckpt::lock_holder{::getpid(), true, true});
        CHECK(io.locks == 1); // reading took none
    }
    CHECK_FALSE(ckpt::read_lock_holder(dir, "ckpt", ckpt::io::default_backend()).has_value());
    const ::pid_t dead = lock_test::dead_pid();
    const std::string text = std::to_string(dead);
    test::write_file(dir / "ckpt.lock",
                     {reinterpret_cast<const std::byte*>(text.data()),
                      reinterpret_cast<const std::byte*>(text.data()) + text.size()});
    const auto h = ckpt::read_lock_holder(dir, "ckpt", ckpt::io::default_backend());
    REQUIRE(h.has_value());
    CHECK(*h == ckpt::lock_holder{dead, false, false});
    // A crashed holder's file is no obstacle: the kernel released its lock.
    ckpt::directory_lock lock(dir, "ckpt", ckpt::io::default_backend());
    CHECK(lock.held());
}

TEST_CASE("a failing mkdir, lock or truncate is an io_error naming the call and the path") {
    const auto root = test::scratch("lock-faults");
    SUBCASE("mkdir") {
        directory_calls io;
        io.fail = "mkdir";
        io.err = EACCES;
        const auto dir = root / "new";
        try {
            ckpt::directory_lock lock(dir, "ckpt", io);
            FAIL("no error");
        } catch (const ckpt::io_error& e) {
            CHECK(e.id() == ckpt::errc::io_open);
            CHECK(e.operation() == "create directory");
            CHECK(e.path() == dir.string());
            CHECK(e.code().value() == EACCES);
        }
        CHECK_FALSE(fs::exists(dir));
    }
    SUBCASE("lock: not another holder, so not 603") {
        directory_calls io;
        io.fail = "lock";
        io.err = ENOLCK;
        try {
            ckpt::directory_lock lock(root, "ckpt", io);
            FAIL("no error");
        } catch (const ckpt::io_error& e) {
            CHECK(e.id() == ckpt::errc::io_open);
            CHECK(e.operation() == "lock");
            CHECK(e.path() == (root / "ckpt.lock").string());
            CHECK(e.code().value() == ENOLCK);
        }
    }
    SUBCASE("truncate: the lock taken is given back") {
        directory_calls io;
        io.fail = "truncate";
        io.err = EROFS;
        try {
            ckpt::directory_lock lock(root, "ckpt", io);
            FAIL("no error");
        } catch (const ckpt::io_error& e) {
            CHECK(e.id() == ckpt::errc::io_write);
            CHECK(e.operation() == "write lock file");
            CHECK(e.code().value() == EROFS);
        }
        CHECK(io.unlocks == 1);
        ckpt::directory_lock lock(root, "ckpt", ckpt::io::default_backend());
        CHECK(lock.held());
    }
    SUBCASE("a file where the directory should be") {
        test::write_file(root / "file", {std::byte{1}});
        const std::string text = test::error_text(
            [&] { ckpt::directory_lock(root / "file", "ckpt", ckpt::io::default_backend()); });
        CHECK(text.find("create directory") != std::string::npos);
        CHECK(text.find((root / "file").string()) != std::string::npos);
        CHECK(text.find("a file that is not a directory has its name") != std::string::npos);
    }
}

TEST_CASE("the manager takes its lock and creates its directory through its backend") {
    const auto root = test::scratch("lock-manager");
    directory_calls io;
    ckpt::manager_options o;
    o.backend = &io;
    {
        ckpt::manager m(root / "run", ckpt::every_steps(1), ckpt::keep_all(), o);
        CHECK(io.mkdirs == std::vector<std::string>{(root / "run").string()});
        CHECK(io.locks == 1);
        CHECK(io.unlocks == 0);
    }
    CHECK(io.unlocks == 1);
    io.fail = "mkdir";
    io.err = ENOSPC;
    CHECK(test::error_id([&] {
              ckpt::manager m(root / "full", ckpt::every_steps(1), ckpt::keep_all(), o);
          }) == ckpt::errc::io_open);
    io.fail = "lock";
    io.err = ENOLCK;
    CHECK(test::error_id([&] {
              ckpt::manager m(root / "run", ckpt::every_steps(1), ckpt::keep_all(), o);
          }) == ckpt::errc::io_open);
}

TEST_CASE("a child forked without exec that outlives its trainer does not keep the lock") {
    const auto dir = test::scratch("lock-fork-orphan");
    // The trainer is a child of this process, which has one thread here (nothing has started
    // the release thread), so the trainer may do more than async-signal-safe calls.
    REQUIRE(lock_test::threads() == 1);
    // Orphans of the trainer become this process's children, to be waited for.
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int report[2];
    int release[2];
    REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(release, O_CLOEXEC) == 0);
    std::fflush(nullptr);
    const ::pid_t trainer = ::fork();
    REQUIRE(trainer >= 0);
    if (trainer == 0) {
        ::close(report[0]);
        ::close(release[1]);
        int started[2];
        if (::pipe2(started, O_CLOEXEC) != 0) ::_exit(2);
        try {
            ckpt::manager m(dir, ckpt::every_steps(1));
            const ::pid_t worker = ::fork(); // a data-loader worker: no exec
            if (worker == 0) {
                // Only async-signal-safe calls: write, read, _exit.
                ::close(started[0]);
                const char c = 'w';
                (void)::write(started[1], &c, 1);
                ::close(started[1]);
                char x = 0;
                while (::read(release[0], &x, 1) < 0 && errno == EINTR) {
                }
                ::_exit(0); // the test closed its end: the worker ends
            }
            ::close(started[1]);
            char c = 0;
            if (worker < 0 || lock_test::read_all(started[0], &c, 1) != 1) ::_exit(3);
            (void)::write(report[1], &worker, sizeof worker);
            ::raise(SIGKILL); // the trainer dies holding its lock, its manager never destroyed
        } catch (...) {
            ::_exit(4);
        }
        ::_exit(5);
    }
    ::close(report[1]);
    ::close(release[0]);
    ::pid_t worker = -1;
    const std::size_t got = lock_test::read_all(report[0], &worker, sizeof worker);
    ::close(report[0]);
    CHECK(lock_test::wait_for(trainer) == 1000 + SIGKILL);
    const bool worker_alive = got == sizeof worker && ::kill(worker, 0) == 0;

    // The restarted trainer, while the dead trainer's worker still runs.
    const auto holder = ckpt::read_lock_holder(dir, "ckpt", ckpt::io::default_backend());
    std::optional<ckpt::manager> again;
    const std::string refused = test::error_text([&] { again.emplace(dir, ckpt::every_steps(1)); });
    const bool still_alive = worker_alive && ::kill(worker, 0) == 0;
    ::close(release[1]); // the worker may end now
    const int worker_status = got == sizeof worker ? lock_test::wait_for(worker) : -1;
    (void)::prctl(PR_SET_CHILD_SUBREAPER, 0);

    REQUIRE(got == sizeof worker);
    CHECK(worker_alive);
    CHECK(still_alive);
    CHECK(worker_status == 0);
    REQUIRE(holder.has_value());
    CHECK(*holder == ckpt::lock_holder{trainer, false, false}); // the dead trainer's pid
    CHECK(refused.empty());                                     // not 603: the worker holds no lock
    REQUIRE(again.has_value());
    CHECK(lock_text(dir / "ckpt.lock") == std::to_string(::getpid()));
}

TEST_CASE("a fork() child's copy of a manager releases nothing and closes nothing of the child's") {
    const auto dir = test::scratch("lock-fork-copy");
    REQUIRE(lock_test::threads() == 1); // the child may run the manager's destructor
    ckpt::manager m(dir, ckpt::every_steps(1));
    const int lock_fd = lock_test::descriptor_of(dir / "ckpt.lock");
    REQUIRE(lock_fd >= 0);
    const fs::path victim = dir / "victim";
    std::fflush(nullptr);
    const ::pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The lock's descriptor was closed as fork() returned: its number is free, and a file
        // of the child's takes it.
        if (::fcntl(lock_fd, F_GETFD) != -1 || errno != EBADF) ::_exit(2);
        const int fd = ::open(victim.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) ::_exit(3);
        if (fd != lock_fd && (::dup2(fd, lock_fd) != lock_fd || ::close(fd) != 0)) ::_exit(4);
        if (::write(lock_fd, "mine", 4) != 4) ::_exit(5);
        try {
            m.~manager(); // the child's copy, destroyed; the parent's lives on
        } catch (...) {
            ::_exit(6);
        }
        struct ::stat st {};
        if (::fcntl(lock_fd, F_GETFD) == -1) ::_exit(7);               // closed by the copy
        if (::fstat(lock_fd, &st) != 0 || st.st_size != 4) ::_exit(8); // truncated by the copy
        ::_exit(0);
    }
    CHECK(lock_test::wait_for(child) == 0);
    // The parent's lock is whole: held, with its pid.
    CHECK(lock_text(dir / "ckpt.lock") == std::to_string(::getpid()));
    CHECK(test::error_id([&] { ckpt::manager other(dir, ckpt::every_steps(1)); }) ==
          ckpt::errc::usage_directory_locked);
    test::train_state st;
    CHECK(m.step(st, test::at(1)).saved);
}

TEST_CASE("a fork() child's copy of an async manager with a save in flight does not hang" *
          doctest::skip(test::under_tsan)) {
    const auto dir = test::scratch("lock-fork-async");
    lock_test::held_fsync io;
    ckpt::manager_options o;
    o.backend = &io;
    o.async.emplace();
    test::train_state st;
    {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_all(), o);
        REQUIRE(m.step(st, test::at(1)).pending);
        while (io.waiting.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::fflush(nullptr);
        const ::pid_t child = ::fork(); // the background save waits in its fsync
        REQUIRE(child >= 0);
        if (child == 0) {
            ::alarm(20); // a hang ends the child with SIGALRM, which fails the test
            try {
                m.~manager();
            } catch (...) {
                ::_exit(2);
            }
            ::_exit(0);
        }
        CHECK(lock_test::wait_for(child) == 0);
        CHECK(lock_text(dir / "ckpt.lock") == std::to_string(::getpid()));
        CHECK(fs::exists(dir / "ckpt.lock"));
        CHECK_FALSE(fs::exists(m.path_of(1))); // the parent's save, still in flight
        io.open = true;
        const ckpt::save_result r = m.wait();
        CHECK(r.committed == std::vector<fs::path>{m.path_of(1)});
    }
    test::train_state back;
    back.step = -1;
    CHECK(ckpt::load(dir / ckpt::detail::checkpoint_file_name("ckpt", 1), back).step == 1);
}
