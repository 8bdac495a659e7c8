// Asynchronous save: ckpt::async_saver and the manager's async mode. The snapshot is taken before
// save() returns (the state may change at once), at most max_in_flight saves and
// max_staging_bytes of staging are held (a save beyond waits or is skipped, and says why), a
// background error is raised by the next call or the destructor, and the manager's retention
// and bookkeeping see a checkpoint only once it is committed.
//
// The background is made deterministic with a gate on the backend's writes: while it is shut,
// no save can finish, so "in flight" and "not yet written" are facts, not timing.

#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

namespace async_test {

namespace fs = std::filesystem;

/// The real POSIX calls, with writes held at a gate while it is shut, and fsync failures on
/// demand. Thread-safe: the background thread and the test thread both call it.
class gated_backend final : public test::posix_forwarding {
public:
    void shut() {
        std::lock_guard lock(mutex_);
        open_ = false;
    }
    void open_gate() {
        {
            std::lock_guard lock(mutex_);
            open_ = true;
        }
        changed_.notify_all();
    }
    /// The next `n` fsyncs of a file fail with `err` (without syncing).
    void fail_fsyncs(int n, int err = EIO) {
        fsync_failures_ = n;
        fsync_errno_ = err;
    }
    /// Blocks until a write is waiting at the shut gate.
    void wait_for_blocked_write() {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return blocked_ > 0; });
    }

    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        {
            std::unique_lock lock(mutex_);
            ++blocked_;
            changed_.notify_all();
            changed_.wait(lock, [&] { return open_; });
            --blocked_;
        }
        return real_.write(fd, data, n);
    }
    int fsync(int fd) override {
        if (fsync_failures_.load() > 0) {
            fsync_failures_.fetch_sub(1);
            errno = fsync_errno_.load();
            return -1;
        }
        return real_.fsync(fd);
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool open_ = true;
    int blocked_ = 0;
    std::atomic<int> fsync_failures_{0};
    std::atomic<int> fsync_errno_{0};
};

/// A state with a large tensor (several of the saver's write slices), a small one and values.
struct big_state {
    Eigen::MatrixXf weights = Eigen::MatrixXf::Zero(1024, 1536); // 6 MiB
    Eigen::VectorXd bias = Eigen::VectorXd::LinSpaced(7, -3.0, 3.0);
    std::vector<std::int64_t> history{1, 2, 3};
    std::string note = "before";

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weights), CEREAL_NVP(bias), CEREAL_NVP(history), CEREAL_NVP(note));
    }
};

inline big_state filled(float seed) {
    big_state s;
    for (Eigen::Index i = 0; i < s.weights.size(); ++i) {
        s.weights.data()[i] = seed + static_cast<float>(i % 4099) * 0.25F;
    }
    return s;
}

inline ckpt::metadata fixed(std::int64_t step) {
    ckpt::metadata m;
    m.step = step;
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    return m;
}

inline std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
}

/// The staging buffer the saver sizes for snapshots of `state`: the file's data section (the
/// file less its u64 length and JSON header) and 1/256 spare, in whole 4 KiB pages.
template <class T>
std::uint64_t buffer_for(const T& state) {
    const std::vector<std::byte> file = ckpt::save_to_memory(state);
    std::uint64_t header = 0;
    std::memcpy(&header, file.data(), sizeof header);
    const std::uint64_t data = file.size() - sizeof header - header;
    return (data + data / 256 + 4095) / 4096 * 4096;
}

TEST_CASE("async_saver writes the same bytes as ckpt::save") {
    const fs::path dir = test::scratch("async-bytes");
    const big_state s = filled(1.5F);
    ckpt::async_saver saver;
    const ckpt::async_ticket t = saver.save(dir / "a.ckpt", s, fixed(7));
    REQUIRE(t);
    CHECK(t.id == 1);
    CHECK(t.skipped.empty());
    saver.wait();
    CHECK(saver.in_flight() == 0);
    const std::vector<std::byte> expected = ckpt::save_to_memory(s, fixed(7));
    CHECK(t.bytes == expected.size());
    CHECK(test::read_file(dir / "a.ckpt") == expected);
    CHECK(files_in(dir) == std::vector<fs::path>{"a.ckpt"});
}

TEST_CASE("async_saver: changing the state right after save() returns does not change the file") {
    // The bug of PyTorch issue 144657: an async save that still reads the live tensors writes
    // whatever the next training steps put there.
    const fs::path dir = test::scratch("async-snapshot");
    gated_backend io;
    io.shut();
    ckpt::async_saver saver({.backend = &io});
    big_state s = filled(2.0F);
    const std::vector<std::byte> expected = ckpt::save_to_memory(s, fixed(1));
    REQUIRE(saver.save(dir / "s.ckpt", s, fixed(1)));
    io.wait_for_blocked_write(); // the background is writing, and cannot get on

    s.weights.setConstant(-1.0F); // the next training step...
    s.bias.setZero();
    s.history.push_back(4);
    s.note = "after";
    io.open_gate();
    saver.wait();
    CHECK(test::read_file(dir / "s.ckpt") == expected);

    big_state back;
    back.weights.resize(0, 0);
    ckpt::load(dir / "s.ckpt", back);
    const big_state original = filled(2.0F);
    CHECK(test::bits_equal(back.weights, original.weights));
    CHECK(test::bits_equal(back.bias, original.bias));
    CHECK(back.history == std::vector<std::int64_t>{1, 2, 3});
    CHECK(back.note == "before");
}

/// Parameters in one arena the state does not own as a tensor: two ckpt::tensor views into it.
struct arena_views {
    std::vector<float> arena = std::vector<float>(6 + 4);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::tensor("w", arena.data(), {2, 3}),
           ckpt::tensor("b", std::span<float>(arena).subspan(6), {4}));
    }
};

TEST_CASE("async_saver: a view's memory is in the snapshot too, not read later") {
    const fs::path dir = test::scratch("async-view");
    gated_backend io;
    io.shut();
    ckpt::async_saver saver({.backend = &io});
    arena_views s;
    for (std::size_t i = 0; i < s.arena.size(); ++i) s.arena[i] = static_cast<float>(i) + 0.5F;
    const std::vector<float> at_save = s.arena;
    const std::vector<std::byte> expected = ckpt::save_to_memory(s, fixed(1));
    REQUIRE(saver.save(dir / "v.ckpt", s, fixed(1)));
    io.wait_for_blocked_write(); // the background is writing, and cannot get on

    std::fill(s.arena.begin(), s.arena.end(), -1.0F); // the next training step
    io.open_gate();
    saver.wait();
    CHECK(test::read_file(dir / "v.ckpt") == expected);
    ckpt::load(dir / "v.ckpt", s); // in place, into the memory the views see
    CHECK(s.arena == at_save);
}

TEST_CASE("async_saver: at most max_in_flight saves; when_full::skip says why") {
    const fs::path dir = test::scratch("async-skip");
    gated_backend io;
    io.shut();
    ckpt::async_saver saver({.max_in_flight = 1, .on_full = ckpt::when_full::skip, .backend = &io});
    const big_state s = filled(3.0F);
    const auto first = saver.save(dir / "1.ckpt", s, fixed(1));
    REQUIRE(first);
    CHECK(saver.in_flight() == 1);

    const auto second = saver.save(dir / "2.ckpt", s, fixed(2));
    CHECK_FALSE(second);
    CHECK(second.id == 0);
    CHECK(second.bytes == 0);
    CHECK(second.skipped == "1 save is in flight (async_options::max_in_flight = 1)");

    io.open_gate();
    saver.wait();
    const auto third = saver.save(dir / "3.ckpt", s, fixed(3));
    CHECK(third);
    CHECK(third.id == 2); // a skipped save takes no id
    saver.wait();
    CHECK(files_in(dir) == std::vector<fs::path>{"1.ckpt", "3.ckpt"});
}

TEST_CASE("async_saver: max_in_flight = 2 takes two snapshots and writes them in order") {
    const fs::path dir = test::scratch("async-two");
    gated_backend io;
    io.shut();
    std::mutex m;
    std::vector<std::uint64_t> order;
    ckpt::async_options o;
    o.max_in_flight = 2;
    o.on_full = ckpt::when_full::skip;
    o.backend = &io;
    o.on_done = [&](const ckpt::async_done& d) {
        std::lock_guard lock(m);
        order.push_back(d.id);
        CHECK(d.error == nullptr);
    };
    ckpt::async_saver saver(o);
    big_state s = filled(4.0F);
    const auto a = saver.save(dir / "same.ckpt", s, fixed(1));
    s.weights(0, 0) = 42.0F;
    const auto b = saver.save(dir / "same.ckpt", s, fixed(2));
    const auto c = saver.save(dir / "other.ckpt", s, fixed(3));
    CHECK(a);
    CHECK(b);
    CHECK_FALSE(c);
    CHECK(c.skipped == "2 saves are in flight (async_options::max_in_flight = 2)");
    CHECK(saver.in_flight() == 2);
    io.open_gate();
    saver.wait();
    CHECK(order == std::vector<std::uint64_t>{1, 2});
    // The later save replaced the earlier one: it is what the file holds.
    CHECK(test::read_file(dir / "same.ckpt") == ckpt::save_to_memory(s, fixed(2)));
}

TEST_CASE("async_saver: when_full::wait blocks until the save in flight is committed") {
    const fs::path dir = test::scratch("async-wait");
    gated_backend io;
    io.shut();
    ckpt::async_saver saver({.max_in_flight = 1, .on_full = ckpt::when_full::wait, .backend = &io});
    const big_state s = filled(5.0F);
    REQUIRE(saver.save(dir / "1.ckpt", s, fixed(1)));

    std::atomic<bool> returned{false};
    ckpt::async_ticket second;
    std::thread caller([&] {
        second = saver.save(dir / "2.ckpt", s, fixed(2));
        returned = true;
    });
    io.wait_for_blocked_write();
    // The gate is shut: the first save cannot finish, so the second cannot have started.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_FALSE(returned.load());
    CHECK_FALSE(fs::exists(dir / "1.ckpt"));
    io.open_gate();
    caller.join();
    CHECK(second);
    CHECK(second.id == 2);
    CHECK(second.waited_seconds > 0.0);
    CHECK(second.stall_seconds >= second.waited_seconds);
    saver.wait();
    CHECK(test::read_file(dir / "2.ckpt") == ckpt::save_to_memory(s, fixed(2)));
}

TEST_CASE("async_saver: the staging cap") {
    const fs::path dir = test::scratch("async-cap");
    const big_state s = filled(6.0F);
    const std::uint64_t snapshot = ckpt::save_to_memory(s, fixed(1)).size();

    SUBCASE("a snapshot that cannot fit is a usage error, 605, before anything is written") {
        ckpt::async_saver saver({.max_staging_bytes = snapshot / 2});
        const std::string text = test::error_text([&] { saver.save(dir / "x.ckpt", s, fixed(1)); });
        CHECK(test::error_id([&] { saver.save(dir / "x.ckpt", s, fixed(1)); }) ==
              ckpt::errc::usage_staging_cap);
        CHECK(text.find("needs 6.0 MiB of staging memory, more than "
                        "async_options::max_staging_bytes = 3.0 MiB") != std::string::npos);
        CHECK(text.find("x.ckpt") != std::string::npos);
        CHECK(saver.in_flight() == 0);
        CHECK(files_in(dir).empty());
    }
    SUBCASE("at the cap, a second snapshot is skipped even with a slot free") {
        gated_backend io;
        io.shut();
        ckpt::async_saver saver({.max_in_flight = 3,
                                 .max_staging_bytes = snapshot + snapshot / 2,
                                 .on_full = ckpt::when_full::skip,
                                 .backend = &io});
        REQUIRE(saver.save(dir / "1.ckpt", s, fixed(1)));
        const auto second = saver.save(dir / "2.ckpt", s, fixed(2));
        CHECK_FALSE(second);
        CHECK(second.skipped.find("the snapshot needs 6.0 MiB of staging memory and 6.0 MiB are "
                                  "held by the 1 save in flight") != std::string::npos);
        CHECK(second.skipped.find("async_options::max_staging_bytes = 9.0 MiB") !=
              std::string::npos);
        io.open_gate();
        saver.wait();
        // The buffer is kept for the next snapshot: no new memory, no page faults.
        const std::uint64_t held = saver.staging_bytes();
        CHECK(held == buffer_for(s)); // whole pages, 1/256 to spare
        REQUIRE(saver.save(dir / "3.ckpt", s, fixed(3)));
        saver.wait();
        CHECK(saver.staging_bytes() == held);
    }
}

// A sanitizer's shadow memory faults in on its own schedule: page-fault counts are only
// asserted without one.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool faults_countable = false;
#else
constexpr bool faults_countable = true;
#endif

/// Page faults this thread has taken so far (minor: memory the kernel had to back).
inline long minor_faults() {
    struct ::rusage u {};
    ::getrusage(RUSAGE_THREAD, &u);
    return u.ru_minflt;
}

TEST_CASE("async_saver::reserve: the staging memory is taken up front, and the first save only "
          "copies") {
    const fs::path dir = test::scratch("async-reserve");
    const big_state s = filled(5.5F);
    const std::uint64_t snapshot = ckpt::save_to_memory(s, fixed(1)).size();
    const std::uint64_t buffer = buffer_for(s);
    REQUIRE(buffer > snapshot - 4096);

    SUBCASE("one buffer per save in flight, whole pages, 1/256 to spare") {
        ckpt::async_saver saver({.max_in_flight = 3});
        CHECK(saver.staging_bytes() == 0);
        const std::uint64_t held = saver.reserve(s);
        CHECK(held == saver.staging_bytes());
        CHECK(held == 3 * buffer);
        CHECK(saver.reserve(s) == held); // held already: nothing new
        CHECK(files_in(dir).empty());    // nothing is written
    }
    SUBCASE("the first save faults (almost) nothing in, and takes no new memory") {
        // Without reserve, the first copy faults in the whole 6 MiB buffer: thousands of 4 KiB
        // faults, or three or more 2 MiB ones.
        long cold = 0;
        {
            ckpt::async_saver saver;
            const long before = minor_faults();
            REQUIRE(saver.save(dir / "cold.ckpt", s, fixed(1)));
            cold = minor_faults() - before;
            saver.wait();
        }
        ckpt::async_saver saver;
        const std::uint64_t held = saver.reserve(s);
        const long before = minor_faults();
        const ckpt::async_ticket t = saver.save(dir / "warm.ckpt", s, fixed(1));
        const long warm = minor_faults() - before;
        REQUIRE(t);
        saver.wait();
        CHECK(saver.staging_bytes() == held);
        if (faults_countable) {
            CHECK(warm < cold);
            CHECK(warm <= 2); // the plan's and the header's small allocations, at most
        }
        CHECK(test::read_file(dir / "warm.ckpt") == ckpt::save_to_memory(s, fixed(1)));
        MESSAGE("minor faults of the first save: " << cold << " cold, " << warm << " reserved");
    }
    SUBCASE("a snapshot that grows a little still fits the reserved buffer") {
        ckpt::async_saver saver;
        const std::uint64_t held = saver.reserve(s);
        big_state grown = s;
        grown.history.resize(2000, 7); // 16 KB more, under the 24 KB to spare
        REQUIRE(saver.save(dir / "grown.ckpt", grown, fixed(2)));
        saver.wait();
        CHECK(saver.staging_bytes() == held);
        CHECK(test::read_file(dir / "grown.ckpt") == ckpt::save_to_memory(grown, fixed(2)));
    }
    SUBCASE("the cap bounds the buffers; a snapshot above it is error 605") {
        const std::uint64_t cap = 2 * (snapshot + snapshot / 256 + 4096);
        ckpt::async_saver two({.max_in_flight = 3, .max_staging_bytes = cap});
        CHECK(two.reserve(s) == 2 * buffer); // two buffers, not three

        ckpt::async_saver small({.max_staging_bytes = snapshot / 2});
        CHECK(test::error_id([&] { small.reserve(s); }) == ckpt::errc::usage_staging_cap);
        const std::string text = test::error_text([&] { small.reserve(s); });
        CHECK(text.find("a snapshot of this state needs 6.0 MiB of staging memory, more than "
                        "async_options::max_staging_bytes = 3.0 MiB") != std::string::npos);
        CHECK(small.staging_bytes() == 0);
    }
    SUBCASE("reserve on one thread while another saves: the caps still hold") {
        // reserve() faults its buffers in without the lock. A save that takes a buffer
        // meanwhile must count against the cap when reserve() comes back to keep its own:
        // three slots, room for two buffers. The saves stay in flight behind the shut gate, so
        // their buffers stay taken. Each round starts both at once; in most rounds the save's
        // buffer lands while reserve() is faulting.
        gated_backend io;
        io.shut();
        for (int round = 0; round < 20; ++round) {
            ckpt::async_saver saver(
                {.max_in_flight = 3, .max_staging_bytes = 2 * buffer + buffer / 2, .backend = &io});
            std::atomic<bool> go{false};
            std::thread saving([&] {
                while (!go.load()) std::this_thread::yield();
                saver.save(dir / "raced.ckpt", s, fixed(round));
            });
            go.store(true);
            saver.reserve(s);
            saving.join();
            CHECK(saver.staging_bytes() == 2 * buffer);
            CHECK(saver.in_flight() == 1);
            io.open_gate();
            saver.wait();
            io.shut();
        }
        io.open_gate();
        CHECK(test::read_file(dir / "raced.ckpt") == ckpt::save_to_memory(s, fixed(19)));
    }
    SUBCASE("a smaller free buffer is given back for a larger state") {
        ckpt::async_saver saver;
        big_state little;
        little.weights.resize(16, 16);
        CHECK(saver.reserve(little) == buffer_for(little));
        CHECK(saver.reserve(s) == buffer); // the small one is not kept beside it
    }
}

TEST_CASE("async_saver: a background error is raised by the next save, wait or destructor") {
    const fs::path dir = test::scratch("async-error");
    const big_state good = filled(7.0F);
    ckpt::save(dir / "kept.ckpt", good, fixed(1));
    const std::vector<std::byte> before = test::read_file(dir / "kept.ckpt");
    gated_backend io;
    const big_state next = filled(8.0F);

    SUBCASE("wait()") {
        ckpt::async_saver saver({.backend = &io});
        io.fail_fsyncs(1);
        REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(2))); // the failure is not known yet
        try {
            saver.wait();
            FAIL("wait() did not raise the background error");
        } catch (const ckpt::io_error& e) {
            CHECK(e.id() == ckpt::errc::io_fsync);
            CHECK(std::string(e.what()).find("kept.ckpt.tmp-") != std::string::npos);
            CHECK(std::string(e.what()).find("was not changed") != std::string::npos);
        }
        saver.wait(); // raised once, not twice
        REQUIRE(saver.save(dir / "later.ckpt", next, fixed(3)));
        saver.wait();
    }
    SUBCASE("the next save(), which is then not taken") {
        ckpt::async_saver saver({.backend = &io});
        io.fail_fsyncs(1);
        REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(2)));
        while (saver.in_flight() > 0) std::this_thread::yield();
        CHECK(test::error_id([&] { saver.save(dir / "later.ckpt", next, fixed(3)); }) ==
              ckpt::errc::io_fsync);
        CHECK_FALSE(fs::exists(dir / "later.ckpt"));
        CHECK(saver.save(dir / "later.ckpt", next, fixed(3)));
    }
    SUBCASE("the destructor") {
        io.fail_fsyncs(1);
        const auto scope = [&] {
            ckpt::async_saver saver({.backend = &io});
            REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(2)));
        };
        CHECK(test::error_id(scope) == ckpt::errc::io_fsync);
    }
    SUBCASE("the destructor during unwinding does not throw: the first exception wins") {
        io.fail_fsyncs(1);
        const auto scope = [&] {
            ckpt::async_saver saver({.backend = &io});
            REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(2)));
            throw std::runtime_error("training failed");
        };
        CHECK_THROWS_WITH_AS(scope(), "training failed", std::runtime_error);
    }
    SUBCASE("two failures are both raised, in order") {
        std::vector<int> ids;
        ckpt::async_saver saver({.max_in_flight = 2, .backend = &io});
        io.fail_fsyncs(2);
        REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(2)));
        REQUIRE(saver.save(dir / "kept.ckpt", next, fixed(3)));
        CHECK(test::error_id([&] { saver.wait(); }) == ckpt::errc::io_fsync);
        CHECK(test::error_id([&] { saver.wait(); }) == ckpt::errc::io_fsync);
        CHECK(test::error_id([&] { saver.wait(); }) == 0);
    }
    // Whatever failed, the good checkpoint is untouched and no temporary file is left.
    CHECK(test::read_file(dir / "kept.ckpt") == before);
    for (const auto& name : files_in(dir)) {
        CHECK(name.string().find(".tmp-") == std::string::npos);
    }
}

TEST_CASE("async_saver: an exception from on_done is raised like a failed save") {
    const fs::path dir = test::scratch("async-on-done");
    ckpt::async_saver saver(
        {.on_done = [](const ckpt::async_done&) { throw std::runtime_error("observer broke"); }});
    REQUIRE(saver.save(dir / "a.ckpt", filled(1.0F), fixed(1)));
    CHECK_THROWS_WITH_AS(saver.wait(), "observer broke", std::runtime_error);
    CHECK(fs::exists(dir / "a.ckpt")); // the save itself was committed
}

// ---------------------------------------------------------------------------------------------
// The manager's async mode

inline ckpt::manager_options async_options(test::fake_clock& clock, gated_backend& io,
                                           ckpt::when_full full = ckpt::when_full::wait) {
    ckpt::manager_options o = test::with_clock(clock);
    o.backend = &io;
    o.async = ckpt::async_options{.max_in_flight = 1, .on_full = full};
    return o;
}

TEST_CASE("manager async: retention, list and the newest see a checkpoint once committed") {
    const fs::path dir = test::scratch("async-manager-retention");
    test::fake_clock clock;
    gated_backend io;
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(1), async_options(clock, io));
    test::train_state s;
    const auto first = m.step(s, test::at(1));
    CHECK(first.saved);
    CHECK(first.pending);
    CHECK(first.committed.empty());
    m.wait();
    REQUIRE(m.list().size() == 1);

    io.shut();
    s.step = 2;
    const auto r = m.step(s, test::at(2));
    CHECK(r.saved);
    CHECK(r.pending);
    CHECK(r.reasons == std::vector<std::string>{"every_steps(1)"});
    CHECK(r.path == m.path_of(2));
    CHECK(r.deleted.empty());
    // In flight: not listed, not counted, and retention has not removed step 1.
    REQUIRE(m.list().size() == 1);
    CHECK(m.list().front().step == 1);
    CHECK(fs::exists(m.path_of(1)));
    CHECK(m.stats().saves_in_flight == 1);
    CHECK(m.stats().steps_at_risk == 1);
    CHECK(m.stats().checkpoints_written == 1);

    io.open_gate();
    const auto done = m.wait();
    CHECK(done.committed == std::vector<fs::path>{m.path_of(2)});
    CHECK(done.deleted == std::vector<fs::path>{m.path_of(1)});
    REQUIRE(m.list().size() == 1);
    CHECK(m.list().front().step == 2);
    CHECK(m.list().front().latest);
    CHECK(m.stats().saves_in_flight == 0);
    CHECK(m.stats().steps_at_risk == 0);
    CHECK(m.stats().checkpoints_written == 2);
    CHECK(m.stats().total_background_seconds > 0.0);
    CHECK_FALSE(fs::exists(m.path_of(1)));
}

TEST_CASE("manager async: a commit is reported by the step that sees it") {
    const fs::path dir = test::scratch("async-manager-report");
    test::fake_clock clock;
    gated_backend io;
    ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_last(1), async_options(clock, io));
    test::train_state s;
    REQUIRE(m.step(s, test::at(2)).pending);
    m.wait();
    REQUIRE(m.step(s, test::at(4)).pending);
    while (m.stats().saves_in_flight > 0) std::this_thread::yield();
    const auto r = m.step(s, test::at(5)); // no save of its own
    CHECK_FALSE(r.saved);
    CHECK(r.committed == std::vector<fs::path>{m.path_of(4)});
    CHECK(r.deleted == std::vector<fs::path>{m.path_of(2)});
    CHECK(m.step(s, test::at(5)).committed.empty()); // reported once
}

TEST_CASE("manager::reserve takes the staging memory in async mode and nothing in sync mode") {
    const fs::path dir = test::scratch("async-manager-reserve");
    test::fake_clock clock;
    test::train_state s;
    {
        ckpt::manager m(dir / "sync", ckpt::every_steps(1), ckpt::keep_last(1),
                        test::with_clock(clock));
        CHECK(m.reserve(s) == 0);
    }
    gated_backend io;
    ckpt::manager m(dir / "async", ckpt::every_steps(1), ckpt::keep_last(1),
                    async_options(clock, io));
    const std::uint64_t held = m.reserve(s);
    CHECK(held == buffer_for(s));
    CHECK(m.reserve(s) == held);
    CHECK(m.list().empty()); // nothing is written
    REQUIRE(m.step(s, test::at(1)).pending);
    CHECK(m.wait().committed == std::vector<fs::path>{m.path_of(1)});
    CHECK(m.reserve(s) == held); // the save used the reserved buffer
}

TEST_CASE("manager async: the files are byte for byte those of the sync manager") {
    const fs::path sync_dir = test::scratch("async-manager-sync");
    const fs::path async_dir = test::scratch("async-manager-async");
    test::fake_clock c1;
    test::fake_clock c2;
    gated_backend io;
    {
        ckpt::manager a(sync_dir, ckpt::every_steps(3) | ckpt::on_best("loss"),
                        ckpt::keep_last(2) | ckpt::keep_best(1, "loss"), test::with_clock(c1));
        ckpt::manager b(async_dir, ckpt::every_steps(3) | ckpt::on_best("loss"),
                        ckpt::keep_last(2) | ckpt::keep_best(1, "loss"), async_options(c2, io));
        test::train_state s;
        for (std::int64_t step = 1; step <= 12; ++step) {
            s.step = step;
            s.weights[0] = static_cast<float>(step);
            const double loss = 1.0 / static_cast<double>(step % 5 + 1);
            c1.now += std::chrono::seconds(1);
            c2.now += std::chrono::seconds(1);
            const auto ra = a.step(s, test::at(step, {{"loss", loss}}));
            const auto rb = b.step(s, test::at(step, {{"loss", loss}}));
            CHECK(ra.saved == rb.saved);
            CHECK(ra.reasons == rb.reasons);
            b.wait(); // one save in flight at a time: the same retention decisions
        }
    }
    const auto names = files_in(sync_dir);
    REQUIRE(names == files_in(async_dir));
    REQUIRE(names.size() >= 3);
    for (const auto& n : names) {
        if (n.extension() != ".ckpt") continue;
        CHECK(test::read_file(sync_dir / n) == test::read_file(async_dir / n));
    }
}

TEST_CASE("manager async: a failed background save is raised and the policy asks again") {
    const fs::path dir = test::scratch("async-manager-error");
    test::fake_clock clock;
    gated_backend io;
    ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_all(), async_options(clock, io));
    test::train_state s;
    io.fail_fsyncs(1);
    REQUIRE(m.step(s, test::at(2)).pending);
    while (m.stats().saves_in_flight > 0) std::this_thread::yield();
    try {
        m.step(s, test::at(3));
        FAIL("step() did not raise the background error");
    } catch (const ckpt::io_error& e) {
        CHECK(e.id() == ckpt::errc::io_fsync);
        CHECK(std::string(e.what()).find("ckpt-000000000002.ckpt.tmp-") != std::string::npos);
    }
    CHECK(m.stats().saves_failed == 1);
    CHECK(m.list().empty());
    // every_steps(2) was put back: step 3 is due, as if step 2 had never been saved.
    const auto again = m.step(s, test::at(3));
    CHECK(again.saved);
    CHECK(again.reasons == std::vector<std::string>{"every_steps(2)"});
    m.wait();
    REQUIRE(m.list().size() == 1);
    CHECK(m.list().front().step == 3);
    CHECK(files_in(dir) == std::vector<fs::path>{"ckpt-000000000003.ckpt", "ckpt.lock"});
}

TEST_CASE("manager async: when_full::skip reports the skip and fires again next step") {
    const fs::path dir = test::scratch("async-manager-skip");
    test::fake_clock clock;
    gated_backend io;
    ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_all(),
                    async_options(clock, io, ckpt::when_full::skip));
    test::train_state s;
    io.shut();
    REQUIRE(m.step(s, test::at(2)).pending);
    CHECK_FALSE(m.step(s, test::at(3)));
    const auto skipped = m.step(s, test::at(4));
    CHECK_FALSE(skipped.saved);
    CHECK_FALSE(skipped.pending);
    CHECK(skipped.reasons == std::vector<std::string>{"every_steps(2)"});
    CHECK(skipped.skipped == "1 save is in flight (async_options::max_in_flight = 1)");
    CHECK(m.step(s, test::at(5)).skipped.size() > 0); // still due
    CHECK(m.stats().saves_skipped == 2);
    io.open_gate();
    m.wait();
    const auto later = m.step(s, test::at(6));
    CHECK(later.saved);
    m.wait();
    std::vector<std::int64_t> steps;
    for (const auto& e : m.list()) steps.push_back(e.step);
    CHECK(steps == std::vector<std::int64_t>{2, 6});
}

TEST_CASE("manager async: restore and the destructor wait for the saves in flight") {
    const fs::path dir = test::scratch("async-manager-restore");
    test::fake_clock clock;
    gated_backend io;
    test::train_state s;
    s.weights.setConstant(3.0F);
    {
        ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(1), async_options(clock, io));
        REQUIRE(m.step(s, test::at(5)).pending);
        test::train_state back;
        back.weights.setZero();
        const auto meta = m.restore_latest(back); // waits for step 5 first
        REQUIRE(meta);
        CHECK(meta->step == 5);
        CHECK(test::bits_equal(back.weights, s.weights));
        s.weights.setConstant(4.0F);
        REQUIRE(m.step(s, test::at(10)).pending);
    } // the destructor commits step 10 and applies retention
    CHECK(files_in(dir) == std::vector<fs::path>{"ckpt-000000000010.ckpt", "ckpt.lock"});
    ckpt::manager reopened(dir, ckpt::every_steps(5), ckpt::keep_last(1));
    test::train_state back;
    REQUIRE(reopened.restore_latest(back));
    CHECK(back.weights[0] == 4.0F);
}

TEST_CASE("manager async: a failure the destructor finds is raised by it") {
    const fs::path dir = test::scratch("async-manager-dtor");
    test::fake_clock clock;
    gated_backend io;
    io.fail_fsyncs(1);
    const auto scope = [&] {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_all(), async_options(clock, io));
        test::train_state s;
        REQUIRE(m.step(s, test::at(1)).pending);
    };
    CHECK(test::error_id(scope) == ckpt::errc::io_fsync);
    // The lock was released all the same.
    ckpt::manager again(dir, ckpt::every_steps(1));
    CHECK(again.list().empty());
}

} // namespace async_test
