#pragma once
// The state: {model, optimizer} as a training run holds it, its shapes for a size in MiB, and
// what the suite counts and compares of it.

#include <Eigen/Core>
#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace bench {

constexpr double mib = 1024.0 * 1024.0;

struct linear_layer {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
};

struct model_params {
    Eigen::MatrixXf embedding;
    std::vector<linear_layer> layers;
    Eigen::MatrixXf projection;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(embedding), CEREAL_NVP(layers), CEREAL_NVP(projection));
    }
};

struct adam_state {
    std::int64_t step = 0;
    double lr = 3e-4;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    model_params exp_avg;
    model_params exp_avg_sq;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(step), CEREAL_NVP(lr), CEREAL_NVP(beta1), CEREAL_NVP(beta2), CEREAL_NVP(eps),
           CEREAL_NVP(exp_avg), CEREAL_NVP(exp_avg_sq));
    }
};

struct train_state {
    model_params model;
    adam_state optimizer;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    float loss = 0.0f;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(optimizer), CEREAL_NVP(rng), CEREAL_NVP(step),
           CEREAL_NVP(loss));
    }
};

/// The shapes of a state of about `target_mib` MiB (torch_peer.py takes the same four numbers).
struct state_shape {
    Eigen::Index rows = 1; ///< embedding and projection: rows x cols
    Eigen::Index cols = 512;
    std::size_t layers = 64; ///< small layers: weight dim x dim, bias dim
    Eigen::Index dim = 1;
};

state_shape shape_for(std::uint64_t target_mib);

/// Calls f(tensor) for every tensor of the model, in order.
template <class Model, class F>
void for_each_tensor(Model& m, F&& f) {
    f(m.embedding);
    for (auto& l : m.layers) {
        f(l.weight);
        f(l.bias);
    }
    f(m.projection);
}

/// Calls f(tensor) for every tensor of the state: model, exp_avg, exp_avg_sq.
template <class State, class F>
void for_each_state_tensor(State& st, F&& f) {
    for_each_tensor(st.model, f);
    for_each_tensor(st.optimizer.exp_avg, f);
    for_each_tensor(st.optimizer.exp_avg_sq, f);
}

/// Fills with incompressible values (xorshift64 from `s`, which it advances), fast enough for
/// 1 GiB.
void fill_random(float* p, Eigen::Index n, std::uint64_t& s);

/// A state of the given shape: random values when `with_values`, zeros (every page touched)
/// otherwise, as a resuming run has before it loads.
train_state make_state(const state_shape& s, bool with_values);

std::uint64_t param_count(const train_state& st);
std::uint64_t tensor_bytes(const train_state& st);
std::size_t tensor_count(const train_state& st);

/// Whether two states are equal, every tensor and scalar and the engine.
bool same_state(const train_state& a, const train_state& b);

} // namespace bench
