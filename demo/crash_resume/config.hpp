#pragma once
// What a training run trains, and how it checkpoints: the same in the trainer child (which gets
// it as flags) and in the parent's in-process reference.

#include <ckpt/ckpt.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace demo {

/// What the run trains, and how it checkpoints. The child gets these as flags.
struct config {
    std::int64_t steps = 8000;
    std::int64_t hidden = 128;
    std::int64_t batch = 32;
    double lr = 1e-3;
    std::int64_t per_class = 500; ///< points per spiral arm, in the training and validation sets
    double noise = 0.05;
    std::int64_t eval_every = 200;  ///< validation loss every this many steps
    std::int64_t save_every = 1000; ///< every_steps(n) of the save policy
    std::int64_t smooth = 50;       ///< the picture's training loss: mean of this many steps
};

inline constexpr const char* checkpoint_prefix = "spirals";

ckpt::save_policy save_policy(const config& c);
ckpt::retention retention();

std::string architecture(const config& c);

/// The flags that give the trainer child `c` (main reads them back).
std::vector<std::string> config_flags(const config& c);

} // namespace demo
