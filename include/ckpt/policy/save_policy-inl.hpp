#pragma once

#include <ckpt/policy/save_policy.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

namespace detail {

CKPT_INLINE void add_sample(save_cost& c, double seconds) noexcept {
    c.seconds = c.samples == 0 ? seconds : c.seconds + (seconds - c.seconds) * save_cost_weight;
    c.last = seconds;
    c.samples += 1;
}

CKPT_INLINE double daly_interval(double cost, double mtbf) noexcept {
    if (cost >= 2 * mtbf) return mtbf;
    const double x = cost / (2 * mtbf);
    return std::sqrt(2 * cost * mtbf) * (1 + std::sqrt(x) / 3 + x / 9) - cost;
}

CKPT_INLINE double budget_interval(double cost, double fraction) noexcept {
    return cost * (1 - fraction) / fraction;
}

CKPT_INLINE std::string rule_key(const save_rule& r) {
    return std::visit(
        [](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, rule_every_steps>) {
                return "every_steps(" + std::to_string(x.n) + ")";
            } else if constexpr (std::is_same_v<T, rule_every_time>) {
                return "every(" + std::to_string(x.period.count()) + "ns)";
            } else if constexpr (std::is_same_v<T, rule_on_best>) {
                return "on_best(" + x.metric + "," +
                       (x.direction == goal::minimize ? "min" : "max") + "," +
                       format_double(x.min_delta) + ")";
            } else if constexpr (std::is_same_v<T, rule_at_steps>) {
                return "at_steps";
            } else if constexpr (std::is_same_v<T, rule_every_optimal>) {
                return "every_optimal(" + format_double(x.mtbf) + "s)";
            } else if constexpr (std::is_same_v<T, rule_overhead_at_most>) {
                return "overhead_at_most(" + format_double(x.fraction) + ")";
            } else {
                return "on_request";
            }
        },
        r);
}

} // namespace detail

CKPT_INLINE save_policy every_steps(std::int64_t n) {
    if (n <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "every_steps(" + std::to_string(n) + "): n must be > 0");
    }
    return save_policy(detail::rule_every_steps{n});
}

CKPT_INLINE save_policy overhead_at_most(double fraction) {
    if (!(fraction > 0 && fraction < 1)) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "overhead_at_most(" + detail::format_double(fraction) +
                                             "): the fraction must be in (0, 1)");
    }
    return save_policy(detail::rule_overhead_at_most{fraction});
}

CKPT_INLINE save_policy on_best(std::string name, goal direction, double min_delta) {
    return save_policy(detail::rule_on_best{std::move(name), direction, min_delta});
}

CKPT_INLINE save_policy at_steps(std::vector<std::int64_t> steps) {
    std::sort(steps.begin(), steps.end());
    return save_policy(detail::rule_at_steps{std::move(steps)});
}

CKPT_INLINE save_policy on_request(std::atomic<bool>& flag) {
    return save_policy(detail::rule_on_request{&flag});
}

} // namespace ckpt
