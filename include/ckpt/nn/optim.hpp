#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/error.hpp>
#include <ckpt/nn/mlp.hpp>

#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace ckpt::nn {

/// Adam's settings, with torch.optim.Adam's defaults.
struct adam_options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0; ///< L2 (added to the gradient), or decoupled when `decoupled`
    bool decoupled = false;  ///< AdamW: decay the weights directly, lr * weight_decay * p
    bool amsgrad = false;    ///< keep the running maximum of the second moment

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(lr), CEREAL_NVP(beta1), CEREAL_NVP(beta2), CEREAL_NVP(eps),
           CEREAL_NVP(weight_decay), CEREAL_NVP(decoupled), CEREAL_NVP(amsgrad));
    }
    friend bool operator==(const adam_options&, const adam_options&) = default;
};

/// Adam (and AdamW, and AMSGrad) with torch.optim.Adam's update, step for step. For each
/// parameter p with gradient g, at step t (counted from 1):
///
///     g  = g + weight_decay * p                 (L2: Adam)   or
///     p  = p * (1 - lr * weight_decay)          (decoupled: AdamW)
///     m  = m + (1 - beta1) * (g - m)            (torch: exp_avg.lerp_(g, 1 - beta1))
///     v  = beta2 * v + (1 - beta2) * g * g      (exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2))
///     vmax = max(vmax, v)                       (amsgrad only; then v below is vmax)
///     denom = sqrt(v) / sqrt(1 - beta2^t) + eps (eps after the bias correction, as torch)
///     p  = p - (lr / (1 - beta1^t)) * m / denom
///
/// Its state is everything that update reads: m (exp_avg), v (exp_avg_sq), vmax
/// (max_exp_avg_sq, only with amsgrad) per parameter, and the step count.
template <class Scalar>
class adam {
public:
    adam() = default;
    /// State shaped like `model`'s parameters, at zero.
    adam(const mlp<Scalar>& model, adam_options options) : options_(options) {
        for (const auto& l : model.layers()) {
            exp_avg_.push_back(zeros_like(l));
            exp_avg_sq_.push_back(zeros_like(l));
            if (options_.amsgrad) max_exp_avg_sq_.push_back(zeros_like(l));
        }
    }

    /// One update of every parameter of `model` from `grads` (as mlp::backward gives them).
    void step(mlp<Scalar>& model, const std::vector<linear<Scalar>>& grads) {
        ++step_;
        // In double, then rounded once, as torch computes its Python-float scalars.
        const auto t = static_cast<double>(step_);
        const auto step_size = Scalar(options_.lr / (1 - std::pow(options_.beta1, t)));
        const auto bias_correction2_sqrt = Scalar(std::sqrt(1 - std::pow(options_.beta2, t)));
        auto& layers = model.layers();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            update(layers[i].weight, grads[i].weight, exp_avg_[i].weight, exp_avg_sq_[i].weight,
                   options_.amsgrad ? &max_exp_avg_sq_[i].weight : nullptr, step_size,
                   bias_correction2_sqrt);
            update(layers[i].bias, grads[i].bias, exp_avg_[i].bias, exp_avg_sq_[i].bias,
                   options_.amsgrad ? &max_exp_avg_sq_[i].bias : nullptr, step_size,
                   bias_correction2_sqrt);
        }
    }

    [[nodiscard]] std::int64_t steps() const noexcept { return step_; }
    [[nodiscard]] const adam_options& options() const noexcept { return options_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& exp_avg() const noexcept { return exp_avg_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& exp_avg_sq() const noexcept {
        return exp_avg_sq_;
    }
    [[nodiscard]] const std::vector<linear<Scalar>>& max_exp_avg_sq() const noexcept {
        return max_exp_avg_sq_;
    }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("options", options_), cereal::make_nvp("step", step_),
           cereal::make_nvp("exp_avg", exp_avg_), cereal::make_nvp("exp_avg_sq", exp_avg_sq_),
           cereal::make_nvp("max_exp_avg_sq", max_exp_avg_sq_));
    }
    friend bool operator==(const adam& a, const adam& b) {
        return a.options_ == b.options_ && a.step_ == b.step_ && a.exp_avg_ == b.exp_avg_ &&
               a.exp_avg_sq_ == b.exp_avg_sq_ && a.max_exp_avg_sq_ == b.max_exp_avg_sq_;
    }

private:
    static linear<Scalar> zeros_like(const linear<Scalar>& l) {
        return {matrix<Scalar>::Zero(l.weight.rows(), l.weight.cols()),
                vector<Scalar>::Zero(l.bias.size())};
    }

    template <class P>
    void update(P& p, const P& grad, P& m, P& v, P* vmax, Scalar step_size,
                Scalar bias_correction2_sqrt) const {
        const auto lr = Scalar(options_.lr);
        const auto wd = Scalar(options_.weight_decay);
        P g = grad;
        if (options_.weight_decay != 0) {
            if (options_.decoupled) {
                p *= Scalar(1) - lr * wd;
            } else {
                g += wd * p;
            }
        }
        // Products grouped left to right, as the formula above and torch's addcmul_/addcdiv_.
        m += Scalar(1 - options_.beta1) * (g - m);
        v = Scalar(options_.beta2) * v + (Scalar(1 - options_.beta2) * g).cwiseProduct(g);
        const P& second = vmax != nullptr ? (*vmax = vmax->cwiseMax(v)) : v;
        // std::sqrt, correctly rounded: Eigen's vectorized float sqrt is an approximation
        // (rsqrtps and a Newton step) that differs between CPUs and between a tensor's elements.
        const P root = second.unaryExpr([](Scalar x) { return std::sqrt(x); });
        const P denom = (root / bias_correction2_sqrt).array() + Scalar(options_.eps);
        p -= (step_size * m).cwiseQuotient(denom);
    }

    adam_options options_;
    std::int64_t step_ = 0;
    std::vector<linear<Scalar>> exp_avg_;
    std::vector<linear<Scalar>> exp_avg_sq_;
    std::vector<linear<Scalar>> max_exp_avg_sq_;
};

/// SGD's settings, with torch.optim.SGD's meaning.
struct sgd_options {
    double lr = 1e-2;
    double momentum = 0;
    double dampening = 0;
    double weight_decay = 0;
    bool nesterov = false;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(lr), CEREAL_NVP(momentum), CEREAL_NVP(dampening), CEREAL_NVP(weight_decay),
           CEREAL_NVP(nesterov));
    }
    friend bool operator==(const sgd_options&, const sgd_options&) = default;
};

/// SGD with momentum (and Nesterov), torch.optim.SGD's update:
///
///     g = g + weight_decay * p
///     b = g                                   (first step)
///     b = momentum * b + (1 - dampening) * g  (after)
///     g = g + momentum * b  (nesterov)   or   g = b
///     p = p - lr * g
///
/// Its state is the momentum buffer b per parameter and whether it has started.
template <class Scalar>
class sgd {
public:
    sgd() = default;
    sgd(const mlp<Scalar>& model, sgd_options options) : options_(options) {
        if (options_.nesterov && (options_.momentum <= 0 || options_.dampening != 0)) {
            detail::throw_error<usage_error>(
                errc::usage_argument, "sgd: Nesterov momentum needs momentum > 0 and no dampening");
        }
        for (const auto& l : model.layers()) {
            momentum_buffer_.push_back({matrix<Scalar>::Zero(l.weight.rows(), l.weight.cols()),
                                        vector<Scalar>::Zero(l.bias.size())});
        }
    }

    void step(mlp<Scalar>& model, const std::vector<linear<Scalar>>& grads) {
        auto& layers = model.layers();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            update(layers[i].weight, grads[i].weight, momentum_buffer_[i].weight);
            update(layers[i].bias, grads[i].bias, momentum_buffer_[i].bias);
        }
        ++step_;
    }

    [[nodiscard]] std::int64_t steps() const noexcept { return step_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& momentum_buffer() const noexcept {
        return momentum_buffer_;
    }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("options", options_), cereal::make_nvp("step", step_),
           cereal::make_nvp("momentum_buffer", momentum_buffer_));
    }
    friend bool operator==(const sgd& a, const sgd& b) {
        return a.options_ == b.options_ && a.step_ == b.step_ &&
               a.momentum_buffer_ == b.momentum_buffer_;
    }

private:
    template <class P>
    void update(P& p, const P& grad, P& buf) const {
        P g = grad;
        if (options_.weight_decay != 0) g += Scalar(options_.weight_decay) * p;
        if (options_.momentum != 0) {
            if (step_ == 0) {
                buf = g;
            } else {
                buf = Scalar(options_.momentum) * buf + Scalar(1 - options_.dampening) * g;
            }
            if (options_.nesterov) {
                g += Scalar(options_.momentum) * buf;
            } else {
                g = buf;
            }
        }
        p -= Scalar(options_.lr) * g;
    }

    sgd_options options_;
    std::int64_t step_ = 0;
    std::vector<linear<Scalar>> momentum_buffer_;
};

} // namespace ckpt::nn

// The compiled mode instantiates the built-in model and optimizers for float and double once,
// in the implementation file; other files use those instantiations.
#if defined(CKPT_COMPILED)
namespace ckpt::nn {
#if defined(CKPT_IMPLEMENTATION)
#define CKPT_NN_INSTANTIATE template
#else
#define CKPT_NN_INSTANTIATE extern template
#endif
CKPT_NN_INSTANTIATE class adam<float>;
CKPT_NN_INSTANTIATE class adam<double>;
CKPT_NN_INSTANTIATE class sgd<float>;
CKPT_NN_INSTANTIATE class sgd<double>;
#undef CKPT_NN_INSTANTIATE
} // namespace ckpt::nn
#endif
