#pragma once

#include <ckpt/nn/data.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace ckpt::nn {

CKPT_INLINE sampler::sampler(std::int64_t size, std::int64_t batch_size, std::uint64_t seed)
    : size_(size), batch_size_(batch_size), seed_(seed) {
    if (size <= 0 || batch_size <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "sampler: size and batch size must be > 0");
    }
}

CKPT_INLINE std::vector<std::int64_t> sampler::next() {
    if (cursor_ >= size_) {
        ++epoch_;
        cursor_ = 0;
        order_.clear();
    }
    // Built when first needed, never by load(): a stored size allocates nothing until the
    // data set it describes is really being sampled.
    if (static_cast<std::int64_t>(order_.size()) != size_) shuffle();
    const std::int64_t end = std::min(size_, cursor_ + batch_size_);
    std::vector<std::int64_t> idx(order_.begin() + cursor_, order_.begin() + end);
    cursor_ = end;
    return idx;
}

CKPT_INLINE void sampler::shuffle() {
    order_.resize(static_cast<std::size_t>(size_));
    std::iota(order_.begin(), order_.end(), std::int64_t{0});
    std::mt19937_64 rng(seed_ ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(epoch_ + 1)));
    for (std::size_t i = order_.size(); i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng() % i);
        std::swap(order_[i - 1], order_[j]);
    }
}

} // namespace ckpt::nn
