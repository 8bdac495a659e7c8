#pragma once

#include <ckpt/nn/data.hpp>
#include <ckpt/nn/mlp.hpp>
#include <ckpt/nn/optim.hpp>
#include <ckpt/types/random.hpp>

#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace ckpt::nn {

/// Everything a training run needs to continue exactly: the model, the optimizer's moments and
/// step count, the data order and position, the random engine (input noise), the step and epoch,
/// and every logged loss. Its tensors read well in ckpt::inspect and in Python:
/// model.layers.0.weight, optimizer.exp_avg.0.weight, ...
template <class Scalar, class Optimizer = adam<Scalar>>
struct train_state {
    mlp<Scalar> model;
    Optimizer optimizer;
    nn::sampler sampler;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    std::int64_t epoch = 0;
    std::vector<double> losses; ///< training loss of every step so far

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(optimizer), CEREAL_NVP(sampler), CEREAL_NVP(rng),
           CEREAL_NVP(step), CEREAL_NVP(epoch), CEREAL_NVP(losses));
    }
    friend bool operator==(const train_state& a, const train_state& b) {
        return a.model == b.model && a.optimizer == b.optimizer && a.sampler == b.sampler &&
               a.rng == b.rng && a.step == b.step && a.epoch == b.epoch && a.losses == b.losses;
    }
};

/// The loss of `model` on `data`: cross-entropy when it has labels, MSE otherwise.
template <class Scalar>
Scalar evaluate(const mlp<Scalar>& model, const dataset<Scalar>& data) {
    const matrix<Scalar> out = model.predict(data.inputs);
    return data.labels.empty() ? mse_loss(out, data.targets).first
                               : cross_entropy_loss(out, data.labels).first;
}

/// The share of `data` a classifier gets right.
template <class Scalar>
double accuracy(const mlp<Scalar>& model, const dataset<Scalar>& data) {
    const matrix<Scalar> out = model.predict(data.inputs);
    std::int64_t right = 0;
    for (Eigen::Index i = 0; i < out.rows(); ++i) {
        Eigen::Index k = 0;
        out.row(i).maxCoeff(&k);
        right += k == data.labels[static_cast<std::size_t>(i)] ? 1 : 0;
    }
    return static_cast<double>(right) / static_cast<double>(out.rows());
}

/// One step: the sampler's next batch, Gaussian input noise from the state's engine, forward,
/// loss, backward, optimizer update. Returns the batch's loss (also appended to `losses`).
template <class Scalar, class Optimizer>
Scalar train_step(train_state<Scalar, Optimizer>& s, const dataset<Scalar>& data,
                  double input_noise = 0.01) {
    dataset<Scalar> b = data.batch(s.sampler.next());
    if (input_noise > 0) {
        std::normal_distribution<double> noise(0.0, input_noise);
        for (Eigen::Index i = 0; i < b.inputs.size(); ++i) {
            b.inputs.data()[i] += static_cast<Scalar>(noise(s.rng));
        }
    }
    forward_cache<Scalar> cache;
    const matrix<Scalar> out = s.model.forward(b.inputs, cache);
    const auto [loss, d_out] =
        b.labels.empty() ? mse_loss(out, b.targets) : cross_entropy_loss(out, b.labels);
    s.optimizer.step(s.model, s.model.backward(cache, d_out));
    ++s.step;
    s.epoch = s.sampler.epoch();
    s.losses.push_back(static_cast<double>(loss));
    return loss;
}

} // namespace ckpt::nn
