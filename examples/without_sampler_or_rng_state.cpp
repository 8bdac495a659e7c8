// Why the data position and the random engine belong in the checkpoint.
//
// A run that resumes with the right weights and optimizer but a fresh data sampler starts the
// epoch over: it trains on batches it has already seen this epoch and never reaches the rest.
// A fresh random engine repeats the noise (augmentation, dropout) of the run's first steps.
// Neither shows up as an error; the run is just quietly not the one that was interrupted.
// ckpt::nn::train_state holds both, so ckpt::save/load resume them with everything else.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <vector>

namespace without_sampler_or_rng_state {

using state = ckpt::nn::train_state<double>;

state fresh(const ckpt::nn::dataset<double>& data) {
    state s;
    s.model = ckpt::nn::mlp<double>({2, 16, 2}, ckpt::nn::activation::tanh, 1);
    s.optimizer = ckpt::nn::adam<double>(s.model, {});
    s.sampler = ckpt::nn::sampler(data.size(), 16, 2); // 13 batches an epoch
    s.rng.seed(3);
    return s;
}

TEST_CASE("resuming without the sampler's position replays the epoch's first batches") {
    const auto data = ckpt::nn::two_spirals<double>(100, 0.05, 7);
    state run = fresh(data);
    for (int i = 0; i < 7; ++i) ckpt::nn::train_step(run, data); // 7 of 13 batches of epoch 0
    const auto bytes = ckpt::save_to_memory(run);

    // The whole state: the next batch is batch 8 of the same shuffled order.
    state resumed;
    ckpt::load_from_memory(bytes, resumed);
    ckpt::nn::sampler expected = run.sampler;
    CHECK(resumed.sampler.next() == expected.next());
    CHECK(resumed.sampler.cursor() == 8 * 16);

    // Weights and optimizer restored, sampler not: the "next" batches are the first ones again.
    ckpt::nn::sampler forgot(data.size(), 16, 2);
    ckpt::nn::sampler original(data.size(), 16, 2);
    std::set<std::int64_t> seen;
    for (int i = 0; i < 7; ++i) {
        for (auto k : original.next()) seen.insert(k);
    }
    std::size_t repeated = 0;
    for (int i = 0; i < 7; ++i) {
        for (auto k : forgot.next()) repeated += seen.count(k);
    }
    CHECK(repeated == 7 * 16); // every sample of the next 7 batches was already trained on
    MESSAGE("without the sampler state, " << repeated
                                          << " of the next 112 samples repeat this epoch's");
}

TEST_CASE("resuming without the random engine repeats the first steps' noise") {
    const auto data = ckpt::nn::two_spirals<double>(100, 0.05, 7);
    state run = fresh(data);
    for (int i = 0; i < 7; ++i) ckpt::nn::train_step(run, data);
    const auto bytes = ckpt::save_to_memory(run);

    state exact;
    ckpt::load_from_memory(bytes, exact);
    state no_rng;
    ckpt::load_from_memory(bytes, no_rng);
    no_rng.rng.seed(3); // as if the engine had not been saved: back to the run's first draws

    state reference = run;
    ckpt::nn::train_step(reference, data);
    ckpt::nn::train_step(exact, data);
    ckpt::nn::train_step(no_rng, data);
    CHECK(exact.losses.back() == reference.losses.back());  // the same step, to the bit
    CHECK(no_rng.losses.back() != reference.losses.back()); // other noise: another run
    CHECK(exact == reference);
    CHECK_FALSE(no_rng == reference);
}

} // namespace without_sampler_or_rng_state
