// A second translation unit that includes ckpt: in the compiled mode both files see
// declarations only, and the built-in nn comes from the library's explicit instantiations.
#include <ckpt/ckpt.hpp>

#include <iostream>

/// Trains the built-in MLP a few steps, round-trips its state in memory, and checks it.
int nn_round_trip() {
    ckpt::nn::mlp<float> model({2, 8, 2}, ckpt::nn::activation::tanh, 1);
    ckpt::nn::adam<float> opt(model, ckpt::nn::adam_options{});
    ckpt::nn::train_state<float> state{std::move(model), std::move(opt),
                                       ckpt::nn::sampler(64, 16, 2), std::mt19937_64(3), 0, 0,
                                       {}};
    const auto data = ckpt::nn::two_spirals<float>(32, 0.1, 4);
    for (int i = 0; i < 3; ++i) ckpt::nn::train_step(state, data);
    const std::vector<std::byte> bytes = ckpt::save_to_memory(state);
    ckpt::nn::train_state<float> loaded;
    ckpt::load_from_memory(bytes, loaded);
    if (!(loaded == state)) {
        std::cerr << "mismatch: nn::train_state<float>\n";
        return 1;
    }
    return 0;
}
