// Data-parallel training on several ranks with ckpt::mpi::manager, resumed bit for bit: the
// distributed example, run by CTest under mpiexec on 2 and 4 ranks (built when MPI is found).
//
//     mpiexec -n 4 ./example-data_parallel
//
// Every rank holds the same model and Adam state and trains on its slice of each global batch
// (examples/data_parallel_trainer.hpp); each rank's input noise generator is its own
// (ckpt::rank_local). One manager per job saves every 20 steps into one directory that every
// rank sees: each replicated tensor is written once, by one rank, and the manifest rank 0
// writes last commits the checkpoint for all of them. A job that stops (here: its manager and
// state are simply dropped, as a crash would) resumes from the newest committed checkpoint and
// ends exactly where the run that never stopped ends, on every rank.
#include "data_parallel_trainer.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <vector>

namespace data_parallel_example {

namespace fs = std::filesystem;

constexpr std::int64_t total_steps = 100;

int rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/// Trains from wherever `dir` says up to `stop` steps, saving every 20. @returns the state
data_parallel::state train(const fs::path& dir, std::int64_t stop) {
    const auto data = data_parallel::make_data();
    data_parallel::state s = data_parallel::fresh(data, rank());
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir, ckpt::every_steps(20), ckpt::keep_last(2));
    if (const auto meta = m.restore_latest(s)) {
        CHECK(meta->step == s.step); // the newest committed checkpoint
    }
    while (s.step < stop) {
        const double loss = data_parallel::train_step(s, data, MPI_COMM_WORLD);
        m.step(s, {.step = s.step, .metrics = {{"loss", loss}}});
    }
    return s;
}

TEST_CASE("data parallel: a run stopped and resumed ends bit for bit where the unbroken run ends") {
    const fs::path root = fs::current_path() / "data_parallel";
    if (rank() == 0) {
        fs::remove_all(root);
        fs::create_directories(root);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    const data_parallel::state unbroken = train(root / "unbroken", total_steps);
    CHECK(unbroken.losses.back() < unbroken.losses.front()); // it learns

    train(root / "stopped", 50); // the job dies after step 50 (its last save: step 40)
    const data_parallel::state resumed = train(root / "stopped", total_steps);

    // Every byte of the state (model, Adam moments, sampler, this rank's noise generator,
    // losses), on every rank; the same metadata (and time) on both sides.
    ckpt::metadata same;
    same.time = std::chrono::system_clock::time_point(std::chrono::seconds(1));
    CHECK(ckpt::save_to_memory(resumed, same) == ckpt::save_to_memory(unbroken, same));
    CHECK(resumed.losses == unbroken.losses);

    // The checkpoints the manager kept: steps 80 and 100, each a directory of one file per
    // rank and a manifest.
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(ckpt::is_distributed_checkpoint(root / "stopped" / "ckpt-000000000100"));
    CHECK(ckpt::is_distributed_checkpoint(root / "stopped" / "ckpt-000000000080"));
    CHECK(!fs::exists(root / "stopped" / "ckpt-000000000060"));
}

} // namespace data_parallel_example
