// backend::release: the file a save replaces, and the checkpoints retention deletes, are held
// open across the rename or unlink and released afterwards, so that freeing their blocks is
// not paid inside the save (the POSIX backend closes them on a background thread).
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace release_test {

namespace fs = std::filesystem;

struct small_state {
    Eigen::VectorXf v = Eigen::VectorXf::Constant(1024, 1.0f);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};

/// Records the calls that matter here, in order: "open-old" (a read-only open of an existing
/// file), "rename", "unlink", "fsync", "release", "evict", "flush", "allocate".
class recording_backend : public test::posix_forwarding {
public:
    int open(const char* path, int flags, ::mode_t mode) override {
        const int fd = real_.open(path, flags, mode);
        if ((flags & O_ACCMODE) == O_RDONLY && (flags & O_DIRECTORY) == 0 && fd >= 0) {
            log_ += "open-old ";
            held_ = fd;
            names_[fd] = path;
        }
        return fd;
    }
    int rename(const char* from, const char* to) override {
        log_ += "rename ";
        return real_.rename(from, to);
    }
    int unlink(const char* path) override {
        log_ += "unlink ";
        return real_.unlink(path);
    }
    int fsync(int fd) override {
        log_ += "fsync ";
        return real_.fsync(fd);
    }
    void release(int fd) override {
        log_ += "release ";
        released_.push_back(fd);
        real_.close(fd);
    }
    void evict(int fd) override {
        log_ += "evict ";
        evicted_.push_back(names_[fd]);
        real_.close(fd);
    }
    void flush_releases() override { log_ += "flush "; }
    int allocate(int fd, std::uint64_t size) override {
        log_ += "allocate ";
        if (enospc_ > 0) {
            --enospc_;
            errno = ENOSPC;
            return -1;
        }
        return real_.allocate(fd, size);
    }

    std::string log_;
    int held_ = -1;
    std::vector<int> released_;
    std::vector<std::string> evicted_; ///< the paths the evicted descriptors were opened with
    std::map<int, std::string> names_;
    int enospc_ = 0; ///< how many allocate() calls fail with ENOSPC
};

std::size_t fds_open() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

TEST_CASE("release: a replaced file is held across the rename and released after the directory "
          "is synced") {
    const auto dir = test::scratch("release-replace");
    const fs::path path = dir / "last.ckpt";
    recording_backend b;
    ckpt::save(path, small_state{}, {}, {.backend = &b});
    // A fresh path: nothing to hold, nothing to release.
    CHECK(b.log_ == "allocate fsync rename fsync ");
    CHECK(b.released_.empty());

    b.log_.clear();
    small_state second;
    second.v.setConstant(2.0f);
    ckpt::save(path, second, {}, {.backend = &b});
    // Before the new file takes any space, the old one's cached pages are let go (evict); it
    // is opened again before the rename, and released only once the directory is synced.
    CHECK(b.log_ == "open-old evict allocate fsync open-old rename fsync release ");
    REQUIRE(b.released_.size() == 1);
    CHECK(b.released_[0] == b.held_);
    CHECK(b.evicted_ == std::vector<std::string>{path.string()});
    small_state back;
    ckpt::load(path, back);
    CHECK(back.v(0) == 2.0f);
}

TEST_CASE("release: retention's deletions are held across the unlink and released") {
    const auto dir = test::scratch("release-retention");
    recording_backend b;
    ckpt::manager_options options;
    options.backend = &b;
    {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(1), options);
        ckpt::metadata meta;
        meta.step = 1;
        REQUIRE(m.step(small_state{}, meta));
        b.log_.clear();
        meta.step = 2;
        REQUIRE(m.step(small_state{}, meta));
        // Retention will delete step 1 once step 2 is committed: its pages are let go before
        // the new file takes space. Then the new checkpoint, then the old one: opened,
        // unlinked, released.
        CHECK(b.log_.starts_with("open-old evict allocate "));
        const auto at = b.log_.find("open-old unlink release");
        CHECK(at != std::string::npos);
        CHECK(b.log_.find("rename") < at);
        CHECK(b.evicted_ == std::vector<std::string>{(dir / "ckpt-000000000001.ckpt").string()});
        CHECK(!fs::exists(dir / "ckpt-000000000001.ckpt"));
        CHECK(fs::exists(dir / "ckpt-000000000002.ckpt"));
        b.log_.clear();
        (void)m.wait();
        CHECK(b.log_ == "flush ");
        b.log_.clear();
    }
    CHECK(b.log_ == "flush "); // the destructor too
}

TEST_CASE("evict: a manager lets go of exactly the checkpoints its retention will delete") {
    const auto dir = test::scratch("evict-retention");
    recording_backend b;
    ckpt::manager_options options;
    options.backend = &b;
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2), options);
    ckpt::metadata meta;
    const auto step = [&](std::int64_t s) {
        b.log_.clear();
        b.evicted_.clear();
        meta.step = s;
        REQUIRE(m.step(small_state{}, meta));
    };
    step(1);
    step(2); // keeps 1 and 2: nothing to let go, nothing deleted
    CHECK(b.evicted_.empty());
    CHECK(b.log_.find("unlink") == std::string::npos);
    step(3); // keeps 2 and 3: step 1 is let go before the save, deleted after it
    CHECK(b.log_.starts_with("open-old evict allocate "));
    CHECK(b.evicted_ == std::vector<std::string>{(dir / "ckpt-000000000001.ckpt").string()});
    CHECK(b.log_.find("unlink") != std::string::npos);
    CHECK(!fs::exists(dir / "ckpt-000000000001.ckpt"));
    // Saving step 3 again replaces it (atomic_file lets the old file go), and deletes nothing.
    b.log_.clear();
    b.evicted_.clear();
    REQUIRE(m.save_now(small_state{}, meta));
    CHECK(b.evicted_ == std::vector<std::string>{(dir / "ckpt-000000000003.ckpt").string()});
    CHECK(b.log_.find("unlink") == std::string::npos);
    CHECK(fs::exists(dir / "ckpt-000000000002.ckpt"));
}

TEST_CASE("evict: the POSIX backend drops a file's cached pages and leaves the file whole") {
    const auto dir = test::scratch("evict-posix");
    const fs::path path = dir / "cached.bin";
    const std::vector<char> bytes(std::size_t{4} << 20, 'x');
    {
        std::ofstream out(path, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    const auto resident_pages = [&] {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        void* p = ::mmap(nullptr, bytes.size(), PROT_READ, MAP_SHARED, fd, 0);
        REQUIRE(p != MAP_FAILED);
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        std::vector<unsigned char> flags((bytes.size() + page - 1) / page);
        REQUIRE(::mincore(p, bytes.size(), flags.data()) == 0);
        ::munmap(p, bytes.size());
        ::close(fd);
        return static_cast<std::size_t>(
            std::count_if(flags.begin(), flags.end(), [](unsigned char f) { return f & 1; }));
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::fsync(fd) == 0); // clean pages: dirty ones are written back before they can go
    REQUIRE(resident_pages() == 1024);
    ckpt::io::default_backend().evict(fd);
    ckpt::io::default_backend().flush_releases(); // evictions are waited for like releases
    CHECK(resident_pages() == 0);
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> back((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
    CHECK(back == bytes);
}

TEST_CASE("release: a full disk waits for released blocks and asks once more") {
    const auto dir = test::scratch("release-enospc");
    const fs::path path = dir / "last.ckpt";
    recording_backend b;
    b.enospc_ = 1; // freed by the flush
    ckpt::save(path, small_state{}, {}, {.backend = &b});
    CHECK(b.log_.starts_with("allocate flush allocate fsync"));

    b.log_.clear();
    b.enospc_ = 2; // still full: the save fails, once flushed, and the previous file stays
    small_state other;
    other.v.setConstant(3.0f);
    try {
        ckpt::save(path, other, {}, {.backend = &b});
        FAIL("no error");
    } catch (const ckpt::io_error& e) {
        CHECK(e.id() == 103);
        CHECK(e.operation() == "allocate");
        CHECK(e.code() == std::error_code(ENOSPC, std::generic_category()));
    }
    CHECK(b.log_ == "open-old evict allocate flush allocate unlink "); // the temporary goes
    small_state back;
    ckpt::load(path, back);
    CHECK(back.v(0) == 1.0f);
}

TEST_CASE("release: the POSIX backend closes in the background; flush waits; nothing leaks") {
    const auto dir = test::scratch("release-posix");
    const fs::path path = dir / "last.ckpt";
    ckpt::io::backend& io = ckpt::io::default_backend();
    ckpt::save(path, small_state{}); // starts nothing: no file was replaced
    io.flush_releases();
    const std::size_t before = fds_open();
    for (int i = 0; i < 20; ++i) ckpt::save(path, small_state{});
    io.flush_releases();
    CHECK(fds_open() == before);
    // Without a flush, what is queued is closed all the same.
    for (int i = 0; i < 5; ++i) ckpt::save(path, small_state{});
    for (int tries = 0; tries < 500 && fds_open() != before; ++tries) ::usleep(2000);
    CHECK(fds_open() == before);
}

TEST_CASE("release: a fork() child neither inherits the queue nor waits for the parent's "
          "thread" *
          doctest::skip(test::under_tsan)) {
    const auto dir = test::scratch("release-fork");
    const fs::path path = dir / "last.ckpt";
    ckpt::io::backend& io = ckpt::io::default_backend();
    ckpt::save(path, small_state{});
    ckpt::save(path, small_state{}); // the background thread runs now
    io.flush_releases();
    for (int round = 0; round < 20; ++round) {
        ckpt::save(path, small_state{}); // something may be queued at the fork
        const ::pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            ::alarm(20); // a hang kills the child, which fails the test
            try {
                io.flush_releases();
                ckpt::save(dir / ("child-" + std::to_string(round) + ".ckpt"), small_state{});
                ckpt::save(dir / ("child-" + std::to_string(round) + ".ckpt"), small_state{});
                io.flush_releases();
            } catch (...) {
                std::_Exit(3);
            }
            std::_Exit(0);
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    io.flush_releases();
    small_state back;
    ckpt::load(path, back);
    CHECK(back.v(0) == 1.0f);
}

} // namespace release_test
