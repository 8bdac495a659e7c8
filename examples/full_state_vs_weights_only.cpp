// A full training state against the weights alone: why a checkpoint holds the optimizer too.
//
// The tutorial's pitfall: "Not saving optimizer state: causes learning rate and momentum to
// reset, hurting training", and its symptom: "Loss jumps or training stalls after resuming". In
// PyTorch terms, torch.save(model.state_dict()) is not enough; save {"model": ...,
// "optimizer": optimizer.state_dict(), "epoch": ...}. Here the same run is stopped and resumed
// twice, from (a) the whole ckpt::nn::train_state and (b) only its model.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <sstream>
#include <vector>

namespace full_state_vs_weights_only {

using state_t = ckpt::nn::train_state<float>; // model, Adam, sampler, rng, step, epoch, losses

constexpr int steps_before = 300; // trained, then the process "dies"
constexpr int steps_after = 50;   // trained after the resume

state_t fresh_state() {
    state_t s;
    s.model = ckpt::nn::mlp<float>({2, 64, 64, 2}, ckpt::nn::activation::relu, 7);
    s.optimizer = ckpt::nn::adam<float>(s.model, {.lr = 1e-2});
    s.sampler = ckpt::nn::sampler(512, 32, 11);
    s.rng.seed(13);
    return s;
}

/// The losses of the next `n` steps.
std::vector<double> train(state_t& s, const ckpt::nn::dataset<float>& data, int n) {
    std::vector<double> out;
    for (int i = 0; i < n; ++i) out.push_back(static_cast<double>(ckpt::nn::train_step(s, data)));
    return out;
}

TEST_CASE("a full state resumes exactly; the weights alone, with a fresh Adam, do not") {
    const std::filesystem::path dir = "example-full-state-vs-weights-only";
    std::filesystem::create_directories(dir);
    const auto data = ckpt::nn::two_spirals<float>(256, 0.02, 3);

    state_t reference = fresh_state(); // never interrupted
    train(reference, data, steps_before);
    const std::vector<double> expected = train(reference, data, steps_after);

    state_t run = fresh_state(); // the same run, checkpointed two ways at step 300
    train(run, data, steps_before);
    ckpt::save(dir / "full.ckpt", run, {.step = run.step, .epoch = run.epoch});
    ckpt::save(dir / "weights.ckpt", run.model, {.step = run.step});

    // What each file holds: the model's 3 layers are 6 tensors; the full state adds Adam's two
    // moments of each (optimizer.exp_avg.0.weight, ...), the loss history (a std::vector, so a
    // tensor: losses) and, in its values, the step count t, the sampler's position, the noise
    // engine, the step and the epoch.
    CHECK(ckpt::inspect(dir / "weights.ckpt").tensors.size() == 6);
    CHECK(ckpt::inspect(dir / "full.ckpt").tensors.size() == 19);

    SUBCASE("(a) the full state: the resumed run is the run that never stopped") {
        state_t resumed; // a new process: everything comes from the file
        const ckpt::metadata meta = ckpt::load(dir / "full.ckpt", resumed);
        CHECK(meta.step == steps_before);
        CHECK(resumed.optimizer.steps() == steps_before); // Adam's t, for its bias correction

        CHECK(train(resumed, data, steps_after) == expected); // every loss, bit for bit
        CHECK(resumed == reference);                          // and every weight and moment
    }

    SUBCASE("(b) the weights only: the same weights, a new optimizer, another trajectory") {
        state_t resumed = fresh_state();
        ckpt::load(dir / "weights.ckpt", resumed.model);
        // To blame the optimizer alone, give this run everything else the full checkpoint had:
        // the same data order and position, the same noise engine, the same step count. A real
        // weights-only resume would also restart its data order, and differ even more.
        resumed.sampler = run.sampler;
        resumed.rng = run.rng;
        resumed.step = run.step;
        resumed.epoch = run.epoch;
        // What a weights-only resume has to do: a new Adam. Its moments m and v are zero and its
        // step count t is 0, where the interrupted one had averaged 300 gradients.
        resumed.optimizer = ckpt::nn::adam<float>(resumed.model, {.lr = 1e-2});
        CHECK(resumed.model == run.model);
        CHECK(resumed.optimizer.steps() == 0);

        const std::vector<double> got = train(resumed, data, steps_after);

        // The first loss is measured before the first update: same weights, same batch.
        CHECK(got.front() == expected.front());
        // From the second on, the updates differ. A fresh Adam's first step is
        // lr * m_hat / sqrt(v_hat) with m_hat = g and v_hat = g * g after bias correction
        // (1 - beta1^1 = 0.1, 1 - beta2^1 = 0.001): every parameter moves by the full lr in the
        // direction of its gradient's sign, however small or noisy that gradient is. The old
        // Adam's moments had averaged 300 gradients, and took smaller, steadier steps; the new
        // one needs tens of steps before its estimates (and its bias correction) settle.
        CHECK(got[1] != expected[1]);
        const auto mean_of_next_10 = [](const std::vector<double>& losses) {
            double sum = 0;
            for (std::size_t i = 1; i <= 10; ++i) sum += losses[i];
            return sum / 10;
        };
        const double full = mean_of_next_10(expected);
        const double weights_only = mean_of_next_10(got);
        const auto peak = std::max_element(got.begin() + 1, got.begin() + 11);
        std::ostringstream report;
        report << "mean loss of the 10 steps after the first: " << weights_only
               << " resumed from the weights only, " << full << " from the full state ("
               << weights_only / full << " times as high); peak " << *peak << " at step "
               << steps_before + 1 + (peak - got.begin());
        MESSAGE(report.str());
        CHECK(weights_only > 2 * full); // not a rounding difference: the loss jumps
        CHECK(resumed.model != reference.model);
    }
}

} // namespace full_state_vs_weights_only
