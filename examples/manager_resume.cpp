// Checkpoint every 5 epochs and whenever the validation loss improves, keep the last 3 and the
// best, and resume after a crash: the ckpt::manager example, run by CTest.
//
// The manager decides *when* to save (a save policy) and *what to keep* (a retention), and it
// remembers its own state in each checkpoint: after a restart it saves at the same epochs and
// keeps the same files as a run that never stopped.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <string>
#include <vector>

namespace manager_resume {

namespace fs = std::filesystem;

struct model_state {
    Eigen::VectorXf weights;
    std::mt19937_64 rng;    // shuffling, dropout, ...: must continue exactly
    std::int64_t epoch = 0; // the last epoch completed

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weights), CEREAL_NVP(rng), CEREAL_NVP(epoch));
    }
};

model_state fresh_model() {
    return {Eigen::VectorXf::Zero(16), std::mt19937_64(7), 0};
}

void train_one_epoch(model_state& m) {
    std::normal_distribution<float> noise(0.0F, 0.1F);
    for (Eigen::Index i = 0; i < m.weights.size(); ++i) m.weights[i] += noise(m.rng);
    ++m.epoch;
}

// A synthetic validation loss: it improves until epoch 8, then the model overfits.
double validation_loss(std::int64_t epoch) {
    constexpr std::array<double, 20> loss = {0.90, 0.80, 0.75, 0.78, 0.70, 0.72, 0.71,
                                             0.65, 0.66, 0.67, 0.68, 0.69, 0.70, 0.71,
                                             0.72, 0.73, 0.74, 0.75, 0.76, 0.77};
    return loss[static_cast<std::size_t>(epoch - 1)];
}

constexpr std::int64_t epochs = 20;

// The training program. It resumes from whatever `dir` holds, and "crashes" after epoch
// `crash_after`, if given: it stops at once, without a last save or any cleanup.
void train(const fs::path& dir, model_state& model, std::int64_t crash_after = -1) {
    ckpt::manager checkpoints(dir,
                              ckpt::every_steps(5) | ckpt::on_best("val_loss"),     // when to save
                              ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss")); // what to keep

    // The newest checkpoint that loads cleanly (damaged ones are skipped and reported); with
    // none, `model` is left as it is and training starts from scratch.
    if (const auto meta = checkpoints.restore_latest(model)) CHECK(meta->epoch == model.epoch);

    while (model.epoch < epochs) {
        train_one_epoch(model);
        // The manager counts "steps": here one step is one epoch.
        checkpoints.step(model, {.step = model.epoch,
                                 .epoch = model.epoch,
                                 .metrics = {{"val_loss", validation_loss(model.epoch)}}});
        if (model.epoch == crash_after) return;
    }
}

// The checkpoints in `dir`, by epoch (the manager also keeps its lock file, ckpt.lock, there).
std::vector<std::string> checkpoints_in(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() == ".ckpt") names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

TEST_CASE("checkpoint every 5 epochs, keep the last 3 and the best, resume after a crash") {
    const fs::path dir = "example-manager-resume";
    fs::remove_all(dir);

    // First process: saves at epochs 1, 2, 3 (the loss improves), 5 (five epochs, and a new
    // best), 8 (best) and 10 (five epochs since 5), then crashes after epoch 12.
    model_state crashed = fresh_model();
    train(dir, crashed, 12);
    // Retention kept the 3 newest (5, 8, 10); 8 is also the best.
    CHECK(checkpoints_in(dir) == std::vector<std::string>{"ckpt-000000000005.ckpt",
                                                          "ckpt-000000000008.ckpt",
                                                          "ckpt-000000000010.ckpt"});

    // Second process: a fresh model, restored from epoch 10; epochs 11 and 12 run again.
    model_state resumed = fresh_model();
    train(dir, resumed);

    // The same program, never interrupted.
    const fs::path reference_dir = "example-manager-reference";
    fs::remove_all(reference_dir);
    model_state reference = fresh_model();
    train(reference_dir, reference);

    // Exactly the same final model: weights, random engine, epoch.
    CHECK(resumed.epoch == epochs);
    CHECK(resumed.weights == reference.weights);
    CHECK(resumed.rng == reference.rng);

    // The same files: the 3 newest (10, 15, 20) and the best (8). No epoch 11 "best" (0.68):
    // the restarted manager remembered the best loss saved before the crash, 0.65.
    const std::vector<std::string> expected = {"ckpt-000000000008.ckpt", "ckpt-000000000010.ckpt",
                                               "ckpt-000000000015.ckpt", "ckpt-000000000020.ckpt"};
    CHECK(checkpoints_in(dir) == expected);
    CHECK(checkpoints_in(reference_dir) == expected);

    // Later, for evaluation: the best model by validation loss.
    ckpt::manager checkpoints(dir, ckpt::every_steps(5) | ckpt::on_best("val_loss"),
                              ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss"));
    model_state best = fresh_model();
    const auto meta = checkpoints.load_best(best, "val_loss"); // no training goes on from it
    REQUIRE(meta.has_value());
    CHECK(meta->epoch == 8);
    CHECK(meta->metrics.at("val_loss") == 0.65);
}

} // namespace manager_resume
