#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/error.hpp>
#include <ckpt/types/containers.hpp>

#include <Eigen/Core>
#include <cereal/cereal.hpp>
#include <cereal/types/common.hpp>
#include <cereal/types/vector.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::nn {

/// Row-major matrices throughout: a weight is stored [out, in], as torch.nn.Linear's, so a
/// checkpoint's tensors load into torch with no transpose.
template <class Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// The nonlinearity after a hidden layer (the output layer has none).
enum class activation : std::uint8_t { relu, tanh, identity };

/// One fully connected layer: y = x W^T + b.
template <class Scalar>
struct linear {
    matrix<Scalar> weight; ///< [out, in]
    vector<Scalar> bias;   ///< [out]

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
    friend bool operator==(const linear& a, const linear& b) {
        return a.weight == b.weight && a.bias == b.bias;
    }
};

/// What forward() keeps for backward(): each layer's input and pre-activation.
template <class Scalar>
struct forward_cache {
    std::vector<matrix<Scalar>> inputs; ///< [batch, in] per layer
    std::vector<matrix<Scalar>> pre;    ///< [batch, out] per layer, before the activation
};

/// A multilayer perceptron: layer sizes, one activation for the hidden layers, He or Xavier
/// initialization from a seeded std::mt19937_64, batched forward and backward.
template <class Scalar>
class mlp {
public:
    static_assert(std::is_floating_point_v<Scalar>,
                  "ckpt::nn::mlp: Scalar must be float or double");

    mlp() = default;

    /// Layers of `sizes` (input first), `hidden` after each hidden layer. He initialization for
    /// relu, Xavier (Glorot uniform) otherwise; biases start at zero.
    /// @throws usage_error
    mlp(std::vector<std::int64_t> sizes, activation hidden, std::uint64_t seed)
        : sizes_(std::move(sizes)), hidden_(hidden) {
        if (sizes_.size() < 2) {
            detail::throw_error<usage_error>(errc::usage_argument,
                                             "mlp: give at least an input and an output size");
        }
        std::mt19937_64 rng(seed);
        for (std::size_t i = 0; i + 1 < sizes_.size(); ++i) {
            const auto in = static_cast<Eigen::Index>(sizes_[i]);
            const auto out = static_cast<Eigen::Index>(sizes_[i + 1]);
            if (in <= 0 || out <= 0) {
                detail::throw_error<usage_error>(errc::usage_argument,
                                                 "mlp: layer sizes must be > 0");
            }
            linear<Scalar> l;
            l.weight.resize(out, in);
            l.bias = vector<Scalar>::Zero(out);
            if (hidden_ == activation::relu) {
                std::normal_distribution<double> he(0.0, std::sqrt(2.0 / static_cast<double>(in)));
                for (Eigen::Index k = 0; k < l.weight.size(); ++k) {
                    l.weight.data()[k] = static_cast<Scalar>(he(rng));
                }
            } else {
                const double a = std::sqrt(6.0 / static_cast<double>(in + out));
                std::uniform_real_distribution<double> glorot(-a, a);
                for (Eigen::Index k = 0; k < l.weight.size(); ++k) {
                    l.weight.data()[k] = static_cast<Scalar>(glorot(rng));
                }
            }
            layers_.push_back(std::move(l));
        }
    }

    /// Outputs for a batch of inputs [batch, in]; fills `cache` for backward().
    matrix<Scalar> forward(const matrix<Scalar>& x, forward_cache<Scalar>& cache) const {
        cache.inputs.resize(layers_.size());
        cache.pre.resize(layers_.size());
        matrix<Scalar> a = x;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            cache.inputs[i] = a;
            matrix<Scalar> z = a * layers_[i].weight.transpose();
            z.rowwise() += layers_[i].bias.transpose();
            cache.pre[i] = z;
            a = i + 1 < layers_.size() ? activate(z) : z;
        }
        return a;
    }

    /// Outputs without keeping a cache.
    matrix<Scalar> predict(const matrix<Scalar>& x) const {
        forward_cache<Scalar> cache;
        return forward(x, cache);
    }

    /// Gradients of the loss with respect to every parameter, given d loss / d output.
    std::vector<linear<Scalar>> backward(const forward_cache<Scalar>& cache,
                                         const matrix<Scalar>& d_out) const {
        std::vector<linear<Scalar>> grads(layers_.size());
        matrix<Scalar> d = d_out;
        for (std::size_t j = layers_.size(); j-- > 0;) {
            if (j + 1 < layers_.size()) d = d.cwiseProduct(activate_derivative(cache.pre[j]));
            grads[j].weight = d.transpose() * cache.inputs[j];
            grads[j].bias = d.colwise().sum().transpose();
            if (j > 0) d = d * layers_[j].weight;
        }
        return grads;
    }

    [[nodiscard]] std::vector<linear<Scalar>>& layers() noexcept { return layers_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& layers() const noexcept { return layers_; }
    [[nodiscard]] const std::vector<std::int64_t>& sizes() const noexcept { return sizes_; }
    [[nodiscard]] activation hidden_activation() const noexcept { return hidden_; }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("sizes", ckpt::as_value(sizes_)),
           cereal::make_nvp("activation", hidden_), cereal::make_nvp("layers", layers_));
    }
    friend bool operator==(const mlp& a, const mlp& b) {
        return a.sizes_ == b.sizes_ && a.hidden_ == b.hidden_ && a.layers_ == b.layers_;
    }

private:
    matrix<Scalar> activate(const matrix<Scalar>& z) const {
        switch (hidden_) {
        case activation::relu: return z.cwiseMax(Scalar(0));
        case activation::tanh: return z.array().tanh().matrix();
        case activation::identity: break;
        }
        return z;
    }
    matrix<Scalar> activate_derivative(const matrix<Scalar>& z) const {
        switch (hidden_) {
        case activation::relu: return (z.array() > Scalar(0)).template cast<Scalar>().matrix();
        case activation::tanh: return (Scalar(1) - z.array().tanh().square()).matrix();
        case activation::identity: break;
        }
        return matrix<Scalar>::Ones(z.rows(), z.cols());
    }

    std::vector<std::int64_t> sizes_;
    activation hidden_ = activation::relu;
    std::vector<linear<Scalar>> layers_;
};

/// Mean squared error over a batch, and its gradient with respect to the predictions.
template <class Scalar>
std::pair<Scalar, matrix<Scalar>> mse_loss(const matrix<Scalar>& pred,
                                           const matrix<Scalar>& target) {
    const matrix<Scalar> diff = pred - target;
    const auto n = static_cast<Scalar>(diff.size());
    return {diff.squaredNorm() / n, diff * (Scalar(2) / n)};
}

/// Softmax cross-entropy of logits [batch, classes] against class labels, averaged over the
/// batch (torch.nn.CrossEntropyLoss), and its gradient with respect to the logits.
template <class Scalar>
std::pair<Scalar, matrix<Scalar>> cross_entropy_loss(const matrix<Scalar>& logits,
                                                     const std::vector<std::int32_t>& labels) {
    const Eigen::Index batch = logits.rows();
    matrix<Scalar> grad(batch, logits.cols());
    Scalar loss = 0;
    for (Eigen::Index i = 0; i < batch; ++i) {
        const Scalar m = logits.row(i).maxCoeff(); // subtract the max: no overflow in exp
        const auto e = (logits.row(i).array() - m).exp();
        const Scalar sum = e.sum();
        const auto label = static_cast<Eigen::Index>(labels[static_cast<std::size_t>(i)]);
        loss += std::log(sum) - (logits(i, label) - m);
        grad.row(i) = (e / sum).matrix();
        grad(i, label) -= Scalar(1);
    }
    const auto n = static_cast<Scalar>(batch);
    return {loss / n, grad / n};
}

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
CKPT_NN_INSTANTIATE class mlp<float>;
CKPT_NN_INSTANTIATE class mlp<double>;
#undef CKPT_NN_INSTANTIATE
} // namespace ckpt::nn
#endif
