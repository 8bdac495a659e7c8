#pragma once

#include <ckpt/policy/retention.hpp>

#include <string>
#include <utility>

namespace ckpt {

CKPT_INLINE retention keep_last(std::size_t k) {
    return retention(detail::keep_last_rule{k});
}

CKPT_INLINE retention keep_best(std::size_t k, std::string name, goal direction) {
    return retention(detail::keep_best_rule{k, std::move(name), direction});
}

CKPT_INLINE retention keep_every_steps(std::int64_t n) {
    if (n <= 0) {
        detail::throw_error<usage_error>(
            errc::usage_argument, "keep_every_steps(" + std::to_string(n) + "): n must be > 0");
    }
    return retention(detail::keep_every_steps_rule{n});
}

CKPT_INLINE retention keep_all() {
    return retention(detail::keep_all_rule{});
}

} // namespace ckpt
