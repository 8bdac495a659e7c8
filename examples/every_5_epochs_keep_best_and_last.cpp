// Checkpoint every 5 epochs, and whenever validation improves; keep the best and the last.
//
// The tutorial's question 5: "checkpoint your training every 5 epochs to avoid losing progress",
// and its tradeoff: saving often costs disk, saving rarely risks work. Two checkpoints answer two
// different questions, so a run keeps both:
//   - the last one is where to resume: the newest weights, optimizer moments, data position;
//   - the best one (lowest validation loss) is the model to use, since the run may overfit
//     after it and the last one is then worse.
// This example walks 20 epochs of a validation loss that improves, then gets worse, and checks
// after every epoch which files are on disk, and why.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <string>
#include <vector>

namespace every_5_epochs_keep_best_and_last {

namespace fs = std::filesystem;
using state_t = ckpt::nn::train_state<float>;

constexpr std::int64_t steps_per_epoch = 8; // 400 points, batches of 50

// Validation loss after each epoch (index 0 is epoch 1): it improves up to epoch 7, gets worse,
// reaches a new best at epoch 12, then overfits for good.
constexpr std::array<double, 20> val_loss = {0.90, 0.70, 0.55, 0.48, 0.45, 0.43, 0.41,
                                             0.42, 0.44, 0.47, 0.43, 0.40, 0.44, 0.49,
                                             0.52, 0.55, 0.57, 0.60, 0.62, 0.65};

/// The checkpoint files in `dir`, sorted (the manager's lock file is not one).
std::vector<std::string> ckpt_files(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() == ".ckpt") names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

TEST_CASE("every 5 epochs and on the best val_loss; the best and the last stay on disk") {
    const fs::path dir = "example-every-5-epochs";
    fs::remove_all(dir); // a fresh run: files of an earlier one would count as checkpoints

    // The manager sees the training step: 5 epochs are 5 * steps_per_epoch steps. It is called
    // once an epoch, after validation, so its rules are checked at epoch ends only.
    ckpt::manager m(dir,
                    ckpt::every_steps(5 * steps_per_epoch) | ckpt::on_best("val_loss"), // when
                    ckpt::keep_last(1) | ckpt::keep_best(1, "val_loss"),                // what
                    {.prefix = "spirals"});
    const auto file_of = [&](std::int64_t epoch) {
        return m.path_of(epoch * steps_per_epoch).filename().string(); // spirals-000000000040.ckpt
    };

    // What is on disk after each epoch, and why.
    const std::array<std::vector<std::int64_t>, 20> expected = {{
        {1},      // 1: the first value is the best so far: saved
        {2},      // 2-4: better each time: saved, and the previous one is neither best nor last
        {3},      //
        {4},      //
        {5},      // 5: every 5 epochs, and best: one checkpoint, two reasons
        {6},      // 6-7: better: saved
        {7},      //
        {7},      // 8-9: worse: nothing saved; epoch 7 is both best and last
        {7},      //
        {7, 10},  // 10: every 5 epochs; 7 stays as the best, 10 is the last
        {7, 10},  // 11: better than 10 but not than 7: not saved
        {12},     // 12: a new best: saved; 7 and 10 are neither best nor last any more
        {12},     // 13-14: worse
        {12},     //
        {12, 15}, // 15: every 5 epochs
        {12, 15}, // 16-19: worse
        {12, 15}, //
        {12, 15}, //
        {12, 15}, //
        {12, 20}, // 20: every 5 epochs; 15 goes, 12 stays as the best
    }};

    const auto data = ckpt::nn::two_spirals<float>(200, 0.02, 4);
    state_t state;
    state.model = ckpt::nn::mlp<float>({2, 32, 2}, ckpt::nn::activation::tanh, 1);
    state.optimizer = ckpt::nn::adam<float>(state.model, {.lr = 1e-2});
    state.sampler = ckpt::nn::sampler(400, 50, 2);
    state.rng.seed(3);

    for (std::int64_t epoch = 1; epoch <= 20; ++epoch) {
        CAPTURE(epoch);
        for (std::int64_t b = 0; b < steps_per_epoch; ++b) ckpt::nn::train_step(state, data);
        const double loss = val_loss[static_cast<std::size_t>(epoch - 1)];

        const ckpt::save_result saved =
            m.step(state, {.step = state.step, .epoch = epoch, .metrics = {{"val_loss", loss}}});

        std::vector<std::string> want;
        for (const std::int64_t e : expected[static_cast<std::size_t>(epoch - 1)]) {
            want.push_back(file_of(e));
        }
        CHECK(ckpt_files(dir) == want);

        // The manager's own view agrees, and marks the best and the last.
        const std::vector<ckpt::checkpoint_entry> listed = m.list();
        REQUIRE(!listed.empty());
        CHECK(listed.back().latest);
        const auto best = std::find_if(listed.begin(), listed.end(),
                                       [](const ckpt::checkpoint_entry& c) { return c.best; });
        REQUIRE(best != listed.end());
        CHECK(best->epoch == expected[static_cast<std::size_t>(epoch - 1)].front()); // the older
        CHECK(best->metrics.at("val_loss") <= loss);

        // Why each save happened, and what it removed.
        if (epoch == 5) {
            CHECK(saved.reasons ==
                  std::vector<std::string>{"every_steps(40)", "on_best(val_loss,min,0)"});
        }
        if (epoch == 8) CHECK_FALSE(saved); // worse, and not a fifth epoch
        if (epoch == 10) CHECK(saved.reasons == std::vector<std::string>{"every_steps(40)"});
        if (epoch == 12) {
            CHECK(saved.reasons == std::vector<std::string>{"on_best(val_loss,min,0)"});
            CHECK(saved.deleted == std::vector<fs::path>{m.path_of(7 * steps_per_epoch),
                                                         m.path_of(10 * steps_per_epoch)});
        }
    }

    // Two files, each for its own use.
    const ckpt::info last = ckpt::inspect(dir / file_of(20));
    CHECK(last.meta.epoch == 20); // resume here: continue with epoch 21
    CHECK(last.meta.step == 20 * steps_per_epoch);

    state_t best_model; // deploy this: the lowest validation loss of the run
    const auto best = m.load_best(best_model, "val_loss"); // read-only: training goes on
    REQUIRE(best.has_value());
    CHECK(best->epoch == 12);
    CHECK(best->metrics.at("val_loss") == 0.40);
    CHECK(best_model.step == 12 * steps_per_epoch);

    const ckpt::manager_stats stats = m.stats();
    CHECK(stats.checkpoints_written == 11); // epochs 1-7, 10, 12, 15 and 20
    CHECK(stats.checkpoints_on_disk == 2);
    MESSAGE(stats.checkpoints_written << " checkpoints written in 20 epochs, "
                                      << stats.checkpoints_on_disk << " on disk ("
                                      << stats.bytes_on_disk << " bytes)");
}

} // namespace every_5_epochs_keep_best_and_last
