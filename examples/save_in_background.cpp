// Save in the background: the training loop pays for a memory copy, not for the disk.
//
// A checkpoint costs training time twice: the stall while it is taken, and the work lost when it
// is taken too rarely. With manager_options::async, step() copies the state into a staging
// buffer and returns; a background thread writes, syncs and commits the file. The next
// optimizer step may change the state at once: what is written is the copy. Retention, list()
// and the "steps at risk" count a checkpoint only once it is committed.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

namespace save_in_background {

namespace fs = std::filesystem;
using state_t = ckpt::nn::train_state<float>;

state_t make_state() {
    state_t s;
    s.model = ckpt::nn::mlp<float>({2, 64, 64, 2}, ckpt::nn::activation::relu, 1);
    s.optimizer = ckpt::nn::adam<float>(s.model, {.lr = 0.01});
    s.sampler = ckpt::nn::sampler(400, 32, 2);
    s.rng.seed(3);
    return s;
}

TEST_CASE("a manager that saves in the background resumes bit for bit") {
    const fs::path dir = "example-save-in-background";
    fs::remove_all(dir);
    const auto data = ckpt::nn::two_spirals<float>(200, 0.02, 4);

    state_t state = make_state();
    {
        ckpt::manager checkpoints(
            dir, ckpt::every_steps(25), ckpt::keep_last(2),
            {.async = ckpt::async_options{.max_in_flight = 1,                  // the default
                                          .on_full = ckpt::when_full::wait}}); // the default
        // Take the staging memory now, so that even the first save only copies the state.
        CHECK(checkpoints.reserve(state) >= ckpt::save_to_memory(state).size() - 4096);
        for (int i = 0; i < 100; ++i) {
            ckpt::nn::train_step(state, data); // changes the state right after each save
            const ckpt::save_result r = checkpoints.step(state, {.step = state.step});
            if (r.saved) {
                CHECK(r.pending); // the snapshot is taken; the file is not written yet
            }
        }
        // Make sure everything is on disk (the destructor would also wait).
        checkpoints.wait();
        const ckpt::manager_stats stats = checkpoints.stats();
        CHECK(stats.checkpoints_written == 4); // steps 25, 50, 75, 100
        CHECK(stats.steps_at_risk == 0);
        MESSAGE("time the loop spent in saves (the copies): "
                << stats.total_save_seconds
                << " s; in the background: " << stats.total_background_seconds << " s");
        CHECK(checkpoints.list().size() == 2); // keep_last(2), after the commits
    }

    // A new process: resume from the newest checkpoint, and train to step 150 ...
    state_t resumed = make_state();
    {
        ckpt::manager checkpoints(dir, ckpt::every_steps(25), ckpt::keep_last(2),
                                  {.async = ckpt::async_options{}});
        const auto meta = checkpoints.restore_latest(resumed);
        REQUIRE(meta);
        CHECK(meta->step == 100);
        while (resumed.step < 150) {
            ckpt::nn::train_step(resumed, data);
            checkpoints.step(resumed, {.step = resumed.step});
        }
    }
    // ... and it is the run that never stopped, to the last bit.
    state_t straight = make_state();
    while (straight.step < 150) ckpt::nn::train_step(straight, data);
    CHECK(resumed == straight);
}

TEST_CASE("the lower-level async_saver: a snapshot, then the state is free to change") {
    const fs::path dir = "example-async-saver";
    fs::create_directories(dir);
    const auto data = ckpt::nn::two_spirals<float>(200, 0.02, 4);
    state_t state = make_state();
    for (int i = 0; i < 10; ++i) ckpt::nn::train_step(state, data);
    const state_t at_step_10 = state;

    ckpt::async_saver saver; // one save in flight; a second save() waits for it
    const ckpt::async_ticket ticket = saver.save(dir / "step-10.ckpt", state, {.step = 10});
    CHECK(ticket.staged);
    for (int i = 0; i < 10; ++i) ckpt::nn::train_step(state, data); // no need to wait
    saver.wait(); // committed; a background error would be thrown here

    state_t back = make_state();
    ckpt::load(dir / "step-10.ckpt", back);
    CHECK(back == at_step_10); // the snapshot, not the state as it was when written
    CHECK(ticket.bytes == fs::file_size(dir / "step-10.ckpt"));
}

} // namespace save_in_background
