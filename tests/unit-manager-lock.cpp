// The directory lock (ckpt/manager/lock.hpp): one holder at a time, the holder's pid in the file
// while held and nothing after, the directory created through the backend, every failure of the
// backend's mkdir/lock/truncate a clear io_error that leaves no lock behind.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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
