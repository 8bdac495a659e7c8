// What the README's fragments (<!-- snippet: fragment -->, see tools/readme_snippets.py) find in
// scope: the README's includes (<ckpt/ckpt.hpp>, <filesystem>) and the names its sketches leave to
// the reader, a training state and the steps around a save. A fragment runs with
// `using namespace readme;`, in a fresh empty folder of its own.
#pragma once

#include <ckpt/ckpt.hpp>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

namespace readme {

/// The state of the README's first example, small.
struct train_state {
    Eigen::MatrixXf weight = Eigen::MatrixXf::Random(8, 4);
    Eigen::VectorXf bias = Eigen::VectorXf::Zero(8);
    std::mt19937_64 rng{1};
    std::int64_t step = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(rng), CEREAL_NVP(step));
    }
};

inline train_state state;          ///< what a fragment saves and restores
inline std::int64_t steps = 1000;  ///< the length of a training loop
inline double last_val_loss = 0.5; ///< the metric a manager ranks by

/// One step of training: changes every tensor and value of the state.
inline void train_one_step(train_state& s) {
    s.weight.array() += std::uniform_real_distribution<float>(-0.01F, 0.01F)(s.rng);
    s.bias.array() += 0.001F;
    ++s.step;
}

inline void optimizer_step(train_state& s) {
    train_one_step(s);
}

inline void log(const std::vector<std::string>& lines) {
    for (const std::string& line : lines) std::cout << line << '\n';
}

} // namespace readme
