#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/error.hpp>
#include <ckpt/policy/save_policy.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

namespace detail {
struct keep_last_rule {
    std::size_t k;
};
struct keep_best_rule {
    std::size_t k;
    std::string metric;
    goal direction;
};
struct keep_every_steps_rule {
    std::int64_t n;
};
struct keep_every_time_rule {
    std::chrono::nanoseconds period;
};
struct keep_all_rule {};
using keep_rule = std::variant<keep_last_rule, keep_best_rule, keep_every_steps_rule,
                               keep_every_time_rule, keep_all_rule>;
} // namespace detail

/// What to keep: a union of rules; a checkpoint that no rule keeps is deleted once a newer one
/// is committed. The newest checkpoint and the best one are always kept as well.
class retention {
public:
    retention() = default;
    explicit retention(detail::keep_rule r) { rules_.push_back(std::move(r)); }

    /// Keeps what either keeps.
    friend retention operator|(retention a, const retention& b) {
        a.rules_.insert(a.rules_.end(), b.rules_.begin(), b.rules_.end());
        return a;
    }

    [[nodiscard]] const std::vector<detail::keep_rule>& rules() const noexcept { return rules_; }

private:
    std::vector<detail::keep_rule> rules_;
};

/// The `k` newest checkpoints (by the step recorded in them).
retention keep_last(std::size_t k);

/// The `k` best by metric `name`; checkpoints without it, or with NaN, never rank.
retention keep_best(std::size_t k, std::string name, goal direction = goal::minimize);

/// One checkpoint per `n` steps: the earliest in each span [i*n, (i+1)*n). @throws usage_error
retention keep_every_steps(std::int64_t n);

/// One checkpoint per `period` of wall-clock time: the earliest in each span. @throws usage_error
template <class Rep, class Period>
retention keep_every(std::chrono::duration<Rep, Period> period) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(period);
    if (ns.count() <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "keep_every(): the period must be > 0");
    }
    return retention(detail::keep_every_time_rule{ns});
}

/// Every checkpoint.
retention keep_all();

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/policy/retention-inl.hpp>
#endif
