// ckpt::mpi::manager: the policies and retention of ckpt::manager, decided once for every rank;
// restores that fall back together; the directory's debris removed at start.

#include "mpi_util.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct run_state {
    Eigen::MatrixXf w;
    Eigen::VectorXf m; // sharded: 2 rows per rank
    std::int64_t step = 0;
    ckpt::rows place;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step), ckpt::sharded("m", m, place));
    }
};

run_state make_run_state(std::int64_t step) {
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    run_state s;
    s.w = Eigen::MatrixXf::Constant(4, 3, static_cast<float>(step));
    s.place = {2 * static_cast<std::uint64_t>(me), 2 * static_cast<std::uint64_t>(n)};
    s.m = Eigen::VectorXf::Constant(2, static_cast<float>(step * 10 + me));
    s.step = step;
    return s;
}

std::vector<std::int64_t> steps_of(const std::vector<ckpt::checkpoint_entry>& list) {
    std::vector<std::int64_t> out;
    for (const auto& e : list) out.push_back(e.step);
    return out;
}

/// The step of a distributed checkpoint's directory, "ckpt-000000000004": 4.
std::int64_t step_of_path(const std::filesystem::path& p) {
    return std::stoll(p.filename().string().substr(5));
}

std::uint64_t bytes_in(const std::filesystem::path& dir) {
    std::uint64_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) total += e.file_size();
    return total;
}

} // namespace

TEST_CASE("mpi manager: every_steps and keep_last decide once for every rank") {
    const auto dir = mpitest::shared_scratch("manager-steps");
    const int me = mpitest::world_rank();
    {
        ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(2), ckpt::keep_last(2));
        std::vector<std::int64_t> saved;
        std::vector<std::string> deleted;
        for (std::int64_t step = 1; step <= 7; ++step) {
            const ckpt::save_result r = m.step(make_run_state(step), {.step = step});
            if (r.saved) saved.push_back(step);
            for (const auto& p : r.deleted) deleted.push_back(p.filename().string());
        }
        CHECK(saved == std::vector<std::int64_t>{2, 4, 6});
        CHECK(deleted == std::vector<std::string>{"ckpt-000000000002"});
        CHECK(steps_of(m.list()) == std::vector<std::int64_t>{4, 6});
        CHECK(m.list().back().latest);
        CHECK(m.list().back().distributed);
        const ckpt::manager_stats stats = m.stats();
        CHECK(stats.checkpoints_written == 3);
        CHECK(stats.checkpoints_on_disk == 2);
        CHECK(stats.steps_at_risk == 1);
        MPI_Barrier(MPI_COMM_WORLD);
        CHECK(stats.bytes_on_disk == bytes_in(m.path_of(4)) + bytes_in(m.path_of(6)));
        CHECK(mpitest::gather(static_cast<long long>(stats.bytes_on_disk)) ==
              std::vector<long long>(static_cast<std::size_t>(mpitest::world_size()),
                                     static_cast<long long>(stats.bytes_on_disk)));
        CHECK(!std::filesystem::exists(m.path_of(2)));
    }
    MPI_Barrier(MPI_COMM_WORLD);

    // A new run resumes from the newest, and its policy continues from it.
    ckpt::mpi::manager again(MPI_COMM_WORLD, dir, ckpt::every_steps(2), ckpt::keep_last(2));
    run_state s = make_run_state(0);
    const auto meta = again.restore_latest(s);
    REQUIRE(meta.has_value());
    CHECK(meta->step == 6);
    CHECK(s.step == 6);
    CHECK(s.m[0] == static_cast<float>(60 + me));
    CHECK(!again.step(make_run_state(7), {.step = 7}).saved);
    CHECK(again.step(make_run_state(8), {.step = 8}).saved);
}

TEST_CASE("mpi manager: a damaged checkpoint makes every rank fall back together") {
    const auto dir = mpitest::shared_scratch("manager-fallback");
    const int n = mpitest::world_size();
    {
        ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(1));
        for (std::int64_t step = 1; step <= 3; ++step) m.step(make_run_state(step), {.step = step});
    }
    // The last rank's file of step 3 loses its last byte; a save of step 4 died before its
    // commit, leaving a directory without a manifest.
    if (mpitest::world_rank() == 0) {
        const auto file = dir / "ckpt-000000000003" /
                          ckpt::detail::rank_file_name(static_cast<std::uint64_t>(n - 1),
                                                       static_cast<std::uint64_t>(n));
        std::filesystem::resize_file(file, std::filesystem::file_size(file) - 1);
        std::filesystem::create_directories(dir / "ckpt-000000000004");
        std::ofstream(dir / "ckpt-000000000004" / "rank-00000-of-00002.ckpt") << "partial";
    }
    MPI_Barrier(MPI_COMM_WORLD);
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(1));
    REQUIRE(m.cleaned().size() == 1);
    CHECK(m.cleaned()[0].filename() == "ckpt-000000000004");
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(!std::filesystem::exists(dir / "ckpt-000000000004"));
    run_state s = make_run_state(0);
    const auto meta = m.restore_latest(s);
    REQUIRE(meta.has_value());
    CHECK(meta->step == 2);
    CHECK(s.step == 2);
    REQUIRE(m.skipped().size() == 1);
    CHECK(m.skipped()[0].path.filename() == "ckpt-000000000003");
    CHECK(m.skipped()[0].error_id == 201);
    CHECK(mpitest::contains(m.skipped()[0].reason, "the file was truncated or replaced"));
    CHECK(mpitest::same_everywhere({m.skipped()[0].error_id, m.skipped()[0].reason}));
    CHECK(steps_of(m.list()) == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("mpi manager: rank 0's clock and metrics decide; the ranks must agree on the step") {
    const auto dir = mpitest::shared_scratch("manager-rank0");
    const int me = mpitest::world_rank();
    const auto t0 = std::chrono::system_clock::time_point(std::chrono::hours(500000));
    std::chrono::seconds offset{0};
    ckpt::mpi::manager_options options;
    // Every rank's clock but rank 0's stands still: the time rule fires by rank 0's.
    options.clock = [&] { return t0 + (me == 0 ? offset : std::chrono::seconds(0)); };
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir,
                         ckpt::every(std::chrono::seconds(10)) | ckpt::on_best("loss"),
                         ckpt::keep_last(10), options);
    const auto step = [&](std::int64_t s, double loss) {
        return m.step(make_run_state(s), {.step = s, .metrics = {{"loss", loss}}}).saved;
    };
    // Rank 0's loss improves at step 1 (a first value is the best); the others' never would.
    const double other = 100.0 + me;
    CHECK(step(1, me == 0 ? 1.0 : other));
    CHECK(!step(2, me == 0 ? 2.0 : 0.5)); // only rank 0's loss counts: no improvement
    offset = std::chrono::seconds(11);
    CHECK(step(3, me == 0 ? 3.0 : 0.1)); // rank 0's clock: 11 s since the start
    CHECK(step(4, me == 0 ? 0.5 : 9.0)); // rank 0's loss improved
    const auto list = m.list();
    REQUIRE(list.size() == 3);
    CHECK(list[2].metrics.at("loss") == 0.5); // rank 0's value, on every rank

    if (mpitest::world_size() > 1) {
        const mpitest::outcome got = mpitest::attempt([&] {
            m.step(make_run_state(5), {.step = me == 1 ? 6 : 5, .metrics = {{"loss", 1}}});
        });
        CHECK(got.id == 601);
        CHECK(mpitest::contains(got.text, "rank 0 is at step 5, rank 1 at step 6"));
        CHECK(mpitest::same_everywhere(got));
    }
    // Rank 0 without the metric: every rank throws its error.
    ckpt::metadata meta{.step = 7};
    if (me != 0) meta.metrics["loss"] = 1.0;
    const mpitest::outcome missing = mpitest::attempt([&] { m.step(make_run_state(7), meta); });
    CHECK(missing.id == 602);
    CHECK(mpitest::same_everywhere(missing));
}

TEST_CASE("mpi manager: one manager per directory") {
    const auto dir = mpitest::shared_scratch("manager-lock");
    ckpt::mpi::manager first(MPI_COMM_WORLD, dir, ckpt::every_steps(1));
    const mpitest::outcome got = mpitest::attempt(
        [&] { ckpt::mpi::manager second(MPI_COMM_WORLD, dir, ckpt::every_steps(1)); });
    CHECK(got.id == 603);
    CHECK(mpitest::contains(got.text, "rank 0 of "));
    CHECK(mpitest::same_everywhere(got));
}

TEST_CASE("mpi manager: ranks that call ckpt differently get an error, not a hang") {
    if (mpitest::world_size() < 2) return;
    const auto dir = mpitest::shared_scratch("manager-desync");
    const int me = mpitest::world_rank();
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(1000));
    mpitest::outcome got;
    if (me == 0) {
        // Rank 0 saves at step 1 while the others go on to step 2.
        got = mpitest::attempt([&] { m.save_now(make_run_state(1), {.step = 1}); });
    } else {
        CHECK(!m.step(make_run_state(1), {.step = 1}).saved);
        got = mpitest::attempt([&] { m.step(make_run_state(2), {.step = 2}); });
    }
    CHECK(got.id == 601);
    CHECK(mpitest::contains(got.text, "a save's first step (agreeing on the values)"));
    CHECK(mpitest::contains(got.text, "a manager's step()"));
    CHECK(mpitest::contains(got.text, "every rank must make the same ckpt calls"));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(!std::filesystem::exists(m.path_of(1)));
}

namespace {

/// Fails the first pwrite (a rank file's data) with ENOSPC, once armed.
class failing_write final : public test::posix_forwarding {
public:
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        if (armed && !fired) {
            fired = true;
            errno = ENOSPC;
            return -1;
        }
        return real_.pwrite(fd, data, n, offset);
    }
    bool armed = false;
    bool fired = false;
};

int thread_level() {
    int level = 0;
    MPI_Query_thread(&level);
    return level;
}

} // namespace

TEST_CASE("mpi manager async: each rank writes in the background; the commit comes later") {
    // Under CKPT_TEST_MPI_THREAD=funneled (the test mpi-np2-funneled) MPI granted no more than
    // MPI_THREAD_FUNNELED: the background writes make no MPI call, so this must work there too.
    const char* level = std::getenv("CKPT_TEST_MPI_THREAD");
    if (level != nullptr && std::string(level) == "funneled") {
        CHECK(thread_level() == MPI_THREAD_FUNNELED);
    }
    const auto dir = mpitest::shared_scratch("manager-async");
    ckpt::mpi::manager_options options;
    options.async = true;
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(2), ckpt::keep_all(), options);
    std::vector<std::int64_t> saved;
    std::vector<std::int64_t> committed;
    run_state s = make_run_state(0);
    for (std::int64_t step = 1; step <= 7; ++step) {
        s = make_run_state(step);
        const ckpt::save_result r = m.step(s, {.step = step});
        if (r.saved) {
            CHECK(r.pending);
            saved.push_back(step);
        }
        for (const auto& p : r.committed) committed.push_back(step_of_path(p));
        // The snapshot is taken: what the state becomes now is not in the checkpoint.
        s.w.setConstant(-1.0f);
        s.m.setConstant(-1.0f);
    }
    CHECK(saved == std::vector<std::int64_t>{2, 4, 6});
    CHECK(m.stats().saves_in_flight == 1);
    for (const auto& p : m.wait().committed) committed.push_back(step_of_path(p));
    CHECK(committed == std::vector<std::int64_t>{2, 4, 6});
    CHECK(m.stats().saves_in_flight == 0);
    CHECK(steps_of(m.list()) == std::vector<std::int64_t>{2, 4, 6});
    run_state back = make_run_state(0);
    CHECK(ckpt::mpi::load(MPI_COMM_WORLD, m.path_of(4), back).step == 4);
    CHECK(back.w(0, 0) == 4.0f);
    CHECK(back.m[0] == static_cast<float>(40 + mpitest::world_rank()));
}

TEST_CASE("mpi manager async: a background write failing on one rank fails every rank's commit") {
    const auto dir = mpitest::shared_scratch("manager-async-fault");
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    failing_write faulty;
    ckpt::mpi::manager_options options;
    options.async = true;
    if (me == n - 1) options.backend = &faulty;
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(1), ckpt::keep_last(5), options);
    faulty.armed = true; // after the start (which writes the lock file)
    CHECK(m.step(make_run_state(1), {.step = 1}).pending);
    // Step 2 commits save 1 (or, when not every write is done yet, waits for it because the
    // policy fires again): every rank learns the last rank's ENOSPC.
    const mpitest::outcome got = mpitest::attempt([&] { m.step(make_run_state(2), {.step = 2}); });
    CHECK(got.id == 103);
    CHECK(
        mpitest::contains(got.text, "rank " + std::to_string(n - 1) + " of " + std::to_string(n)));
    CHECK(mpitest::same_everywhere(got));
    CHECK(m.stats().saves_failed == 1);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(!std::filesystem::exists(m.path_of(1)));
    // The policy asks again: step 3 saves, and commits.
    CHECK(m.step(make_run_state(3), {.step = 3}).saved);
    m.wait();
    CHECK(steps_of(m.list()) == std::vector<std::int64_t>{3});
}

namespace {

/// Syncs as POSIX does, after sleeping `delay` on every fsync: a rank whose saves are slow.
class slow_sync final : public test::posix_forwarding {
public:
    int fsync(int fd) override {
        std::this_thread::sleep_for(delay);
        return real_.fsync(fd);
    }
    std::chrono::milliseconds delay{0};
};

long long bits_of(double v) {
    long long b = 0;
    std::memcpy(&b, &v, sizeof b);
    return b;
}

} // namespace

TEST_CASE("mpi manager: every_optimal decides once for every rank, on the largest cost of any") {
    const auto dir = mpitest::shared_scratch("manager-optimal");
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    const auto t0 = std::chrono::system_clock::time_point(std::chrono::hours(500000));
    std::chrono::seconds offset{0};
    slow_sync slow;
    slow.delay = std::chrono::milliseconds(me == n - 1 ? 150 : 0); // the last rank's disk is slow
    ckpt::mpi::manager_options options;
    options.clock = [&] { return t0 + offset; };
    options.backend = &slow;
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_optimal(std::chrono::seconds(1000)),
                         ckpt::keep_last(2), options);
    // Nothing measured: the first step saves, to measure.
    CHECK(m.step(make_run_state(1), {.step = 1}).saved);
    // The next step agrees on the cost: every rank has the same C, at least the slow rank's.
    CHECK(!m.step(make_run_state(2), {.step = 2}).saved);
    const ckpt::manager_stats s = m.stats();
    CHECK(s.save_cost_seconds >= 0.15);
    CHECK(s.interval_seconds == ckpt::detail::daly_interval(s.save_cost_seconds, 1000));
    CHECK(mpitest::gather(bits_of(s.save_cost_seconds)) ==
          std::vector<long long>(static_cast<std::size_t>(n), bits_of(s.save_cost_seconds)));
    // Rank 0's clock decides when, the same on every rank: just before the interval, no save;
    // at it, a save.
    const auto interval = std::chrono::duration<double>(s.interval_seconds);
    offset = std::chrono::duration_cast<std::chrono::seconds>(interval); // floor: C < 1 s
    const bool early = m.step(make_run_state(3), {.step = 3}).saved;
    offset += std::chrono::seconds(5);
    const bool due = m.step(make_run_state(4), {.step = 4}).saved;
    CHECK(!early);
    CHECK(due);
}
