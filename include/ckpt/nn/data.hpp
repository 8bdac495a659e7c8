#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/error.hpp>
#include <ckpt/nn/mlp.hpp>

#include <cereal/cereal.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace ckpt::nn {

/// Inputs [n, features] and either class labels or regression targets [n, outputs].
template <class Scalar>
struct dataset {
    matrix<Scalar> inputs;
    std::vector<std::int32_t> labels; ///< classification
    matrix<Scalar> targets;           ///< regression

    [[nodiscard]] std::int64_t size() const noexcept { return inputs.rows(); }

    /// The rows `idx` as a batch.
    [[nodiscard]] dataset batch(const std::vector<std::int64_t>& idx) const {
        dataset b;
        b.inputs.resize(static_cast<Eigen::Index>(idx.size()), inputs.cols());
        if (!labels.empty()) b.labels.resize(idx.size());
        if (targets.size() > 0)
            b.targets.resize(static_cast<Eigen::Index>(idx.size()), targets.cols());
        for (std::size_t i = 0; i < idx.size(); ++i) {
            const auto r = static_cast<Eigen::Index>(idx[i]);
            const auto k = static_cast<Eigen::Index>(i);
            b.inputs.row(k) = inputs.row(r);
            if (!labels.empty()) b.labels[i] = labels[static_cast<std::size_t>(r)];
            if (targets.size() > 0) b.targets.row(k) = targets.row(r);
        }
        return b;
    }
};

/// Two interleaved spirals, `per_class` points each, labels 0 and 1, with Gaussian noise:
/// a small problem an MLP needs a few thousand steps to learn.
template <class Scalar>
dataset<Scalar> two_spirals(std::int64_t per_class, double noise, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> jitter(0.0, noise);
    dataset<Scalar> d;
    d.inputs.resize(static_cast<Eigen::Index>(2 * per_class), 2);
    d.labels.resize(static_cast<std::size_t>(2 * per_class));
    constexpr double pi = 3.14159265358979323846;
    for (std::int64_t c = 0; c < 2; ++c) {
        for (std::int64_t i = 0; i < per_class; ++i) {
            const double r = static_cast<double>(i) / static_cast<double>(per_class) * 5.0 + 0.25;
            const double angle = 1.75 * r + static_cast<double>(c) * pi;
            const auto row = static_cast<Eigen::Index>(c * per_class + i);
            d.inputs(row, 0) = static_cast<Scalar>(r * std::cos(angle) / 5.25 + jitter(rng));
            d.inputs(row, 1) = static_cast<Scalar>(r * std::sin(angle) / 5.25 + jitter(rng));
            d.labels[static_cast<std::size_t>(row)] = static_cast<std::int32_t>(c);
        }
    }
    return d;
}

/// y = sin(x) + noise for `n` points with x uniform in [-pi, pi].
template <class Scalar>
dataset<Scalar> noisy_sine(std::int64_t n, double noise, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    constexpr double pi = 3.14159265358979323846;
    std::uniform_real_distribution<double> x(-pi, pi);
    std::normal_distribution<double> jitter(0.0, noise);
    dataset<Scalar> d;
    d.inputs.resize(static_cast<Eigen::Index>(n), 1);
    d.targets.resize(static_cast<Eigen::Index>(n), 1);
    for (Eigen::Index i = 0; i < static_cast<Eigen::Index>(n); ++i) {
        const double v = x(rng);
        d.inputs(i, 0) = static_cast<Scalar>(v);
        d.targets(i, 0) = static_cast<Scalar>(std::sin(v) + jitter(rng));
    }
    return d;
}

/// Mini-batches in an order that depends only on (seed, epoch), with a cursor that is part of
/// the checkpoint: a run resumed in the middle of an epoch continues with the very next batch,
/// without replaying or skipping any. The last batch of an epoch may be short.
class sampler {
public:
    sampler() = default;
    /// @throws usage_error
    sampler(std::int64_t size, std::int64_t batch_size, std::uint64_t seed);

    /// The indices of the next batch; moves to the next epoch after the last one.
    std::vector<std::int64_t> next();

    [[nodiscard]] std::int64_t epoch() const noexcept { return epoch_; }
    [[nodiscard]] std::int64_t cursor() const noexcept { return cursor_; }
    [[nodiscard]] std::int64_t batches_per_epoch() const noexcept {
        return (size_ + batch_size_ - 1) / batch_size_;
    }

    /// The order is derived from (seed, epoch), so only those and the cursor are stored.
    template <class Archive>
    void save(Archive& ar) const {
        ar(cereal::make_nvp("size", size_), cereal::make_nvp("batch_size", batch_size_),
           cereal::make_nvp("seed", seed_), cereal::make_nvp("epoch", epoch_),
           cereal::make_nvp("cursor", cursor_));
    }
    template <class Archive>
    void load(Archive& ar) {
        sampler s;
        ar(cereal::make_nvp("size", s.size_), cereal::make_nvp("batch_size", s.batch_size_),
           cereal::make_nvp("seed", s.seed_), cereal::make_nvp("epoch", s.epoch_),
           cereal::make_nvp("cursor", s.cursor_));
        if (s.size_ < 0 || s.batch_size_ <= 0 || s.cursor_ < 0 || s.cursor_ > s.size_ ||
            s.size_ > (std::int64_t{1} << 31)) { // the order is rebuilt: bound what it allocates
            detail::throw_error<corrupt_error>(
                errc::corrupt_values, "sampler: stored size, batch size or cursor is invalid");
        }
        *this = std::move(s);
    }
    friend bool operator==(const sampler& a, const sampler& b) {
        return a.size_ == b.size_ && a.batch_size_ == b.batch_size_ && a.seed_ == b.seed_ &&
               a.epoch_ == b.epoch_ && a.cursor_ == b.cursor_;
    }

private:
    /// Fisher-Yates with its own integer draws, so the order is the same on every standard
    /// library (std::shuffle's is not specified).
    void shuffle();

    std::int64_t size_ = 0;
    std::int64_t batch_size_ = 1;
    std::uint64_t seed_ = 0;
    std::int64_t epoch_ = 0;
    std::int64_t cursor_ = 0;
    std::vector<std::int64_t> order_;
};

} // namespace ckpt::nn

#ifdef CKPT_DEFINITIONS
#include <ckpt/nn/data-inl.hpp>
#endif
