// The bit-exact contract of ckpt::nn::train_state: 2N steps straight and N steps, save, load into
// a fresh state, N more, give the same parameters, moments, step count, random engine, sampler
// cursor and logged losses, byte for byte, in one process and across processes. And what goes
// wrong when a resume leaves out the optimizer, the sampler or the random engine.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace nn = ckpt::nn;

constexpr std::int64_t batch_size = 16;

/// A training problem: its data set and the net that fits it.
template <class S>
struct problem {
    const char* name;
    nn::dataset<S> data;
    std::vector<std::int64_t> sizes;
    nn::activation hidden;
};

/// two_spirals: 200 points, 13 batches an epoch (the last of 8), cross-entropy.
/// noisy_sine: 150 points, 10 batches an epoch (the last of 6), MSE.
template <class S>
std::vector<problem<S>> problems() {
    return {{"two_spirals", nn::two_spirals<S>(100, 0.05, 1), {2, 16, 16, 2}, nn::activation::relu},
            {"noisy_sine", nn::noisy_sine<S>(150, 0.1, 2), {1, 16, 16, 1}, nn::activation::tanh}};
}

template <class S, class Optimizer>
using make_optimizer = std::function<Optimizer(const nn::mlp<S>&)>;

template <class S, class Optimizer>
nn::train_state<S, Optimizer> start(const problem<S>& p, const make_optimizer<S, Optimizer>& make) {
    nn::train_state<S, Optimizer> s;
    s.model = nn::mlp<S>(p.sizes, p.hidden, 7);
    s.optimizer = make(s.model);
    s.sampler = nn::sampler(p.data.size(), batch_size, 11);
    s.rng.seed(13);
    return s;
}

template <class S, class Optimizer>
void train(nn::train_state<S, Optimizer>& s, const nn::dataset<S>& data, std::int64_t steps) {
    for (std::int64_t i = 0; i < steps; ++i) nn::train_step(s, data);
}

/// The checkpoint bytes of a state with a fixed time, so equal states give equal bytes.
ckpt::metadata fixed_metadata() {
    ckpt::metadata m;
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1));
    return m;
}

template <class S>
void check_bits(const std::vector<nn::linear<S>>& a, const std::vector<nn::linear<S>>& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(test::bits_equal(a[i].weight, b[i].weight));
        CHECK(test::bits_equal(a[i].bias, b[i].bias));
    }
}

/// Equal as train_state's operator== says, and every tensor and loss equal byte for byte.
template <class S, class Optimizer>
void check_identical(const nn::train_state<S, Optimizer>& a,
                     const nn::train_state<S, Optimizer>& b) {
    CHECK(a == b);
    check_bits(a.model.layers(), b.model.layers());
    CHECK(a.optimizer.steps() == b.optimizer.steps());
    if constexpr (std::is_same_v<Optimizer, nn::adam<S>>) {
        check_bits(a.optimizer.exp_avg(), b.optimizer.exp_avg());
        check_bits(a.optimizer.exp_avg_sq(), b.optimizer.exp_avg_sq());
        check_bits(a.optimizer.max_exp_avg_sq(), b.optimizer.max_exp_avg_sq());
    } else {
        check_bits(a.optimizer.momentum_buffer(), b.optimizer.momentum_buffer());
    }
    CHECK(a.rng == b.rng);
    CHECK(a.sampler == b.sampler);
    CHECK(a.sampler.epoch() == b.sampler.epoch());
    CHECK(a.sampler.cursor() == b.sampler.cursor());
    CHECK(a.step == b.step);
    CHECK(a.epoch == b.epoch);
    REQUIRE(a.losses.size() == b.losses.size());
    CHECK(std::memcmp(a.losses.data(), b.losses.data(), a.losses.size() * sizeof(double)) == 0);
    CHECK(ckpt::save_to_memory(a, fixed_metadata()) == ckpt::save_to_memory(b, fixed_metadata()));
}

/// 2N straight against N, save, load into a default-constructed state, N more.
template <class S, class Optimizer>
void check_resume(const problem<S>& p, const make_optimizer<S, Optimizer>& make, std::int64_t n) {
    const auto dir = test::scratch(std::string("nn-resume-") + p.name);
    auto straight = start(p, make);
    train(straight, p.data, 2 * n);
    CHECK(straight.step == 2 * n);
    CHECK(straight.losses.size() == static_cast<std::size_t>(2 * n));

    auto first = start(p, make);
    train(first, p.data, n);
    ckpt::metadata meta;
    meta.step = first.step;
    meta.epoch = first.epoch;
    ckpt::save(dir / "half.ckpt", first, meta);

    nn::train_state<S, Optimizer> resumed;
    const ckpt::metadata read = ckpt::load(dir / "half.ckpt", resumed);
    CHECK(read.step == n);
    check_identical(first, resumed);
    train(resumed, p.data, n);
    check_identical(straight, resumed);
}

template <class S>
make_optimizer<S, nn::adam<S>> adam_with(nn::adam_options o) {
    return [o](const nn::mlp<S>& m) { return nn::adam<S>(m, o); };
}

template <class S>
make_optimizer<S, nn::sgd<S>> sgd_with(nn::sgd_options o) {
    return [o](const nn::mlp<S>& m) { return nn::sgd<S>(m, o); };
}

const nn::adam_options adam_options{.lr = 0.01};
const nn::adam_options adamw_options{.lr = 0.01, .weight_decay = 0.01, .decoupled = true};
const nn::adam_options amsgrad_options{.lr = 0.01, .amsgrad = true};
const nn::sgd_options nesterov_options{.lr = 0.05, .momentum = 0.9, .nesterov = true};

/// 37 steps: mid-epoch for both data sets (37 = 2 * 13 + 11 = 3 * 10 + 7).
constexpr std::int64_t n_mid = 37;

} // namespace

// ---------------------------------------------------------------------------------------------
// The contract, in one process

TEST_CASE_TEMPLATE("resume is bit-exact: Adam, AdamW, AMSGrad, SGD Nesterov; both data sets", S,
                   float, double) {
    for (const auto& p : problems<S>()) {
        CAPTURE(std::string(p.name));
        {
            // N mid-epoch: the save is inside an epoch, not at its end.
            auto probe = start(p, adam_with<S>(adam_options));
            train(probe, p.data, n_mid);
            CHECK(probe.sampler.cursor() > 0);
            CHECK(probe.sampler.cursor() < p.data.size());
            CHECK(n_mid % probe.sampler.batches_per_epoch() != 0);
        }
        INFO("Adam");
        check_resume(p, adam_with<S>(adam_options), n_mid);
        INFO("AdamW");
        check_resume(p, adam_with<S>(adamw_options), n_mid);
        INFO("AMSGrad");
        check_resume(p, adam_with<S>(amsgrad_options), n_mid);
        INFO("SGD, Nesterov momentum");
        check_resume(p, sgd_with<S>(nesterov_options), n_mid);
    }
}

TEST_CASE_TEMPLATE("resume is bit-exact at an epoch's end and after one step", S, float, double) {
    const auto p = problems<S>()[0];
    check_resume(p, adam_with<S>(amsgrad_options), 13); // the cursor is at the end: 13 batches
    check_resume(p, adam_with<S>(amsgrad_options), 1);
    check_resume(p, sgd_with<S>(nesterov_options), 26);
}

TEST_CASE("the straight run trains: the losses fall") {
    // Not part of the contract, but a resume test over a run that does nothing would prove little.
    for (const auto& p : problems<double>()) {
        CAPTURE(std::string(p.name));
        auto s = start(p, adam_with<double>(adam_options));
        const double before = nn::evaluate(s.model, p.data);
        train(s, p.data, 300);
        CHECK(nn::evaluate(s.model, p.data) < 0.8 * before);
    }
}

// ---------------------------------------------------------------------------------------------
// The contract, across processes

namespace {

/// Runs `work` in a fork()ed child and returns its exit status; the child never returns.
template <class F>
int in_child(F&& work) {
    const pid_t pid = fork();
    if (pid == 0) {
        int rc = 0;
        try {
            rc = work() ? 0 : 2;
        } catch (...) {
            rc = 3;
        }
        _exit(rc);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

template <class S, class Optimizer>
void check_resume_across_processes(const problem<S>& p, const make_optimizer<S, Optimizer>& make,
                                   const std::string& tag) {
    const auto dir = test::scratch("nn-fork-" + tag);
    const fs::path half = dir / "half.ckpt";
    const fs::path final_path = dir / "final.ckpt";

    // Process 1: N steps and a save, then it is gone.
    CHECK(in_child([&] {
              auto s = start(p, make);
              train(s, p.data, n_mid);
              ckpt::save(half, s, fixed_metadata());
              return true;
          }) == 0);
    // Process 2: a fresh state, the load, N more steps, a save.
    CHECK(in_child([&] {
              nn::train_state<S, Optimizer> s;
              ckpt::load(half, s);
              if (s.step != n_mid) return false;
              train(s, p.data, n_mid);
              ckpt::save(final_path, s, fixed_metadata());
              return true;
          }) == 0);

    // This process never trained the resumed run: it compares with a straight one.
    auto straight = start(p, make);
    train(straight, p.data, 2 * n_mid);
    REQUIRE(fs::exists(final_path));
    nn::train_state<S, Optimizer> resumed;
    ckpt::load(final_path, resumed);
    check_identical(straight, resumed);
    CHECK(test::read_file(final_path) == ckpt::save_to_memory(straight, fixed_metadata()));
}

} // namespace

TEST_CASE_TEMPLATE("resume is bit-exact across processes", S, float, double) {
    const auto ps = problems<S>();
    const std::string type = std::is_same_v<S, float> ? "f32" : "f64";
    check_resume_across_processes(ps[0], adam_with<S>(amsgrad_options), "amsgrad-" + type);
    check_resume_across_processes(ps[0], adam_with<S>(adamw_options), "adamw-" + type);
    check_resume_across_processes(ps[1], sgd_with<S>(nesterov_options), "sgd-" + type);
}

// ---------------------------------------------------------------------------------------------
// Counter-examples: a resume that leaves part of the state out

TEST_CASE("resuming with the weights only (a fresh optimizer) changes the trajectory") {
    // Why it matters: Adam's moments and step count are its memory of the run; a fresh Adam
    // restarts bias correction, and its first step moves every parameter by about lr, whatever it
    // learned.
    const auto p = problems<double>()[0];
    const auto make = adam_with<double>(adam_options);
    auto straight = start(p, make);
    train(straight, p.data, 2 * n_mid);

    auto first = start(p, make);
    train(first, p.data, n_mid);
    auto weights_only = first;
    weights_only.optimizer = nn::adam<double>(first.model, adam_options); // step 0, zero moments
    CHECK(weights_only.optimizer.steps() == 0);

    // Step N+1: the same weights, batch and noise give the same loss, but not the same update.
    auto resumed = first;
    nn::train_step(resumed, p.data);
    nn::train_step(weights_only, p.data);
    CHECK(weights_only.losses.back() == straight.losses[n_mid]);
    double fresh_move = 0;
    double kept_move = 0;
    for (std::size_t i = 0; i < first.model.layers().size(); ++i) {
        const auto& w0 = first.model.layers()[i].weight;
        fresh_move = std::max(fresh_move,
                              (weights_only.model.layers()[i].weight - w0).cwiseAbs().maxCoeff());
        kept_move =
            std::max(kept_move, (resumed.model.layers()[i].weight - w0).cwiseAbs().maxCoeff());
    }
    // A fresh Adam's first step is lr * g / (|g| + eps): lr, to 1e-6, for every non-tiny g.
    INFO("largest weight change at step N+1: fresh optimizer ", fresh_move, ", resumed ",
         kept_move);
    CHECK(fresh_move == doctest::Approx(adam_options.lr).epsilon(1e-6));
    CHECK(kept_move < 0.75 * fresh_move); // 0.0045 here: the moments damp the step

    train(weights_only, p.data, n_mid - 1);
    REQUIRE(weights_only.losses.size() == straight.losses.size());
    // The first loss that can differ is step N+2's: it is the first computed after an update.
    const auto at = static_cast<std::size_t>(n_mid + 1);
    const double first_gap = std::abs(weights_only.losses[at] - straight.losses[at]);
    INFO("loss at step N+2: straight ", straight.losses[at], ", weights only ",
         weights_only.losses[at]);
    CHECK(first_gap > 1e-3); // 0.722 against 0.697 here: 0.026, 3.5% of the loss
    for (std::size_t i = at; i < straight.losses.size(); ++i) {
        CHECK(weights_only.losses[i] != straight.losses[i]);
    }
    CHECK_FALSE(weights_only.model == straight.model);
}

namespace {

/// The indices of the next `count` batches a state will train on (probed on a copy).
std::vector<std::vector<std::int64_t>> next_batches(nn::sampler s, int count) {
    std::vector<std::vector<std::int64_t>> out;
    for (int i = 0; i < count; ++i) out.push_back(s.next());
    return out;
}

/// The input noise train_step draws for a batch of `count` values, from a copy of `rng`.
std::vector<double> next_noise(std::mt19937_64 rng, std::size_t count, double sd = 0.01) {
    std::normal_distribution<double> noise(0.0, sd);
    std::vector<double> out(count);
    for (auto& v : out) v = noise(rng);
    return out;
}

} // namespace

TEST_CASE("resuming without the sampler's state replays the epoch's first batches") {
    // Why it matters: a fresh sampler starts its epoch again, so the batches already trained on
    // in this epoch are seen twice and the rest of the epoch is skipped: not the data order the
    // straight run had.
    const auto p = problems<double>()[0]; // 13 batches an epoch
    const auto make = adam_with<double>(adam_options);
    constexpr int n = 7; // mid-epoch 0
    auto first = start(p, make);
    const auto trained = next_batches(first.sampler, n);
    train(first, p.data, n);

    auto straight = first;
    auto no_sampler = first;
    no_sampler.sampler = nn::sampler(p.data.size(), batch_size, 11); // as at the start
    // The batches left in epoch 0.
    const int rest = 13 - n;
    const auto straight_next = next_batches(straight.sampler, rest);
    const auto replayed = next_batches(no_sampler.sampler, n);

    // The batches after the resume are the epoch's first batches again, in the same order.
    CHECK(replayed == trained);
    std::set<std::int64_t> seen;
    for (const auto& b : trained) seen.insert(b.begin(), b.end());
    CHECK(seen.size() == static_cast<std::size_t>(n * batch_size));
    const auto overlap = [&](const std::vector<std::vector<std::int64_t>>& batches) {
        std::size_t k = 0;
        for (const auto& b : batches)
            for (const auto i : b) k += seen.count(i);
        return k;
    };
    CHECK(overlap(replayed) == 112); // all 7 x 16 indices seen twice in one epoch
    // The straight run finishes the epoch with the 88 indices it has not seen yet.
    CHECK(overlap(straight_next) == 0);
    std::set<std::int64_t> epoch = seen;
    for (const auto& b : straight_next) epoch.insert(b.begin(), b.end());
    CHECK(epoch.size() == 200);
    // The replay's first 6 batches leave those 88 out: 96 indices, none of them new.
    std::set<std::int64_t> replay_epoch = seen;
    for (int i = 0; i < rest; ++i)
        replay_epoch.insert(replayed[static_cast<std::size_t>(i)].begin(),
                            replayed[static_cast<std::size_t>(i)].end());
    CHECK(replay_epoch.size() == 112);

    train(straight, p.data, n);
    train(no_sampler, p.data, n);
    CHECK(no_sampler.losses != straight.losses);
    CHECK_FALSE(no_sampler.model == straight.model);
}

TEST_CASE("resuming without the random engine repeats the input noise") {
    // Why it matters: a re-seeded engine draws the noise of step 1 again at step N+1, so the
    // augmentation the resumed run sees is a replay, and it diverges from the straight run.
    const auto p = problems<double>()[0];
    const auto make = adam_with<double>(adam_options);
    constexpr int n = 7;
    const std::size_t values = batch_size * 2; // a full batch of two inputs
    auto first = start(p, make);
    const std::mt19937_64 initial = first.rng;
    const auto noise_step1 = next_noise(first.rng, values);
    train(first, p.data, n);

    auto straight = first;
    auto no_rng = first;
    no_rng.rng.seed(13); // as at the start
    CHECK(no_rng.rng == initial);
    CHECK_FALSE(straight.rng == initial);
    // The noise of step N+1: the straight run draws new values, the re-seeded one step 1's.
    CHECK(next_noise(no_rng.rng, values) == noise_step1);
    const auto fresh = next_noise(straight.rng, values);
    std::size_t repeated = 0;
    for (std::size_t i = 0; i < values; ++i) repeated += fresh[i] == noise_step1[i] ? 1U : 0U;
    CHECK(repeated == 0);

    train(straight, p.data, n);
    train(no_rng, p.data, n);
    // Same batches and weights at step N+1, different noise: the losses already differ there.
    CHECK(no_rng.losses[n] != straight.losses[n]);
    CHECK(no_rng.sampler == straight.sampler);
    CHECK_FALSE(no_rng.model == straight.model);
}
