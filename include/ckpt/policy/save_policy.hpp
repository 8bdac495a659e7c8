#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/error.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/metadata.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

/// Which way a metric improves.
enum class goal { minimize, maximize };

/// True when `v` is better than `than` by more than `min_delta`; NaN is never better.
[[nodiscard]] inline bool improves(double v, double than, goal g, double min_delta = 0.0) noexcept {
    if (std::isnan(v)) return false;
    if (std::isnan(than)) return true;
    return g == goal::minimize ? v < than - min_delta : v > than + min_delta;
}

namespace detail {

struct rule_every_steps {
    std::int64_t n;
    std::int64_t last = 0; ///< step of this rule's last save
};
struct rule_every_time {
    std::chrono::nanoseconds period;
    std::chrono::system_clock::time_point last{}; ///< time of this rule's last save (or start)
};
struct rule_on_best {
    std::string metric;
    goal direction;
    double min_delta;
    std::optional<double> best{}; ///< best value saved so far
    std::int64_t best_step = 0;
};
struct rule_at_steps {
    std::vector<std::int64_t> steps; ///< sorted
};
struct rule_on_request {
    std::atomic<bool>* flag;
};
using save_rule =
    std::variant<rule_every_steps, rule_every_time, rule_on_best, rule_at_steps, rule_on_request>;

/// A rule's identity in a checkpoint's metadata: its kind and parameters, so that state saved
/// under one configuration is never applied to another.
std::string rule_key(const save_rule& r);

} // namespace detail

/// When to save: a union of rules, each of which can fire on a step. Build one with
/// every_steps(), every(), on_best(), at_steps(), on_request(), and combine with | or any_of().
class save_policy {
public:
    save_policy() = default;
    explicit save_policy(detail::save_rule r) { rules_.push_back(std::move(r)); }

    /// Fires when either fires.
    friend save_policy operator|(save_policy a, const save_policy& b) {
        a.rules_.insert(a.rules_.end(), b.rules_.begin(), b.rules_.end());
        return a;
    }

    [[nodiscard]] const std::vector<detail::save_rule>& rules() const noexcept { return rules_; }
    [[nodiscard]] std::vector<detail::save_rule>& rules() noexcept { return rules_; }

private:
    std::vector<detail::save_rule> rules_;
};

/// Every `n` steps: at steps n, 2n, ... counted from this rule's last save (n > 0).
/// @throws usage_error
save_policy every_steps(std::int64_t n);

/// Every `period` of wall-clock time since this rule's last save (or the manager's start).
/// @throws usage_error
template <class Rep, class Period>
save_policy every(std::chrono::duration<Rep, Period> period) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(period);
    if (ns.count() <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument, "every(): the period must be > 0");
    }
    return save_policy(detail::rule_every_time{ns});
}

/// When metric `name` improves on the best value saved so far by more than `min_delta`
/// ("best loss"). NaN never improves. The best value survives restarts.
save_policy on_best(std::string name, goal direction = goal::minimize, double min_delta = 0.0);

/// At exactly these steps.
save_policy at_steps(std::vector<std::int64_t> steps);

/// When `flag` is set (say, by a SIGTERM or SIGUSR1 handler before preemption); the manager
/// clears it when it saves. The flag must outlive the manager.
save_policy on_request(std::atomic<bool>& flag);

/// Fires when any of `policies` fires.
template <class... Policies>
save_policy any_of(save_policy first, const Policies&... rest) {
    ((first = first | rest), ...);
    return first;
}

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/policy/save_policy-inl.hpp>
#endif
