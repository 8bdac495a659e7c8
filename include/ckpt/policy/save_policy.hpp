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

/// What a save costs the training loop, smoothed over recent saves: an exponentially weighted
/// mean, C_1 = c_1, C_k = C_(k-1) + (c_k - C_(k-1)) / 4. A lasting change (a larger state, a
/// slower disk) is mostly taken in within 4 saves; one slow save moves C by a quarter of the
/// difference.
struct save_cost {
    double seconds = 0;       ///< C, the smoothed cost
    double last = 0;          ///< the cost of the last save measured
    std::int64_t samples = 0; ///< saves measured; 0: C is not known yet
};
inline constexpr double save_cost_weight = 0.25;

/// Adds the cost of one save (seconds >= 0) to `c`.
void add_sample(save_cost& c, double seconds) noexcept;

/// Daly's (2006) interval of compute between saves that minimises the expected total time, for
/// a save costing `cost` and a mean time between failures `mtbf` (seconds): for C < 2M,
/// sqrt(2CM) [1 + sqrt(C/2M)/3 + (C/2M)/9] - C, else M.
[[nodiscard]] double daly_interval(double cost, double mtbf) noexcept;

/// The least compute between saves that keeps the time spent saving at or under `fraction` of
/// the wall time: C / (T + C) <= f when T >= C (1 - f) / f.
[[nodiscard]] double budget_interval(double cost, double fraction) noexcept;

struct rule_every_optimal {
    double mtbf;                                      ///< M, seconds
    save_cost cost{};                                 ///< C as measured
    double interval = 0;                              ///< daly_interval(C, M), seconds
    std::chrono::system_clock::time_point last_end{}; ///< end of the last save (or start)
};
struct rule_overhead_at_most {
    double fraction;                                  ///< f, in (0, 1)
    save_cost cost{};                                 ///< C as measured
    double interval = 0;                              ///< budget_interval(cost.last, f), seconds
    std::chrono::system_clock::time_point last_end{}; ///< end of the last save (or start)
};
using save_rule = std::variant<rule_every_steps, rule_every_time, rule_on_best, rule_at_steps,
                               rule_on_request, rule_every_optimal, rule_overhead_at_most>;

/// A rule's identity in a checkpoint's metadata: its kind and parameters, so that state saved
/// under one configuration is never applied to another.
std::string rule_key(const save_rule& r);

} // namespace detail

/// When to save: a union of rules, each of which can fire on a step. Build one with
/// every_steps(), every(), on_best(), at_steps(), on_request(), every_optimal(),
/// overhead_at_most(), and combine with | or any_of().
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

/// At the interval that minimises the expected total time of a run whose failures come every
/// `mtbf` on average (Daly's; see detail::daly_interval): fires when the time since the end of
/// the last save (of any rule, or since the manager's start) reaches the interval for the
/// measured cost C of a save. C is what the training loop lost per save (sync: the save; async:
/// the stall, including any wait for the save before), smoothed (detail::save_cost), and measured
/// on manager_options::clock when one is given, else on steady_clock. Until a save has been
/// measured, it fires at once, to measure one. C and the interval are kept in the checkpoints'
/// policy state, so a restart does not measure again; the interval then counts from the restart.
/// @throws usage_error (mtbf <= 0)
template <class Rep, class Period>
save_policy every_optimal(std::chrono::duration<Rep, Period> mtbf) {
    const double seconds = std::chrono::duration<double>(mtbf).count();
    if (!(seconds > 0) || !std::isfinite(seconds)) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "every_optimal(): the mean time between failures must "
                                         "be > 0");
    }
    return save_policy(detail::rule_every_optimal{seconds});
}

/// As often as the time spent saving stays at or under `fraction` of the wall time: fires when
/// the time T since the end of the last save reaches c (1 - fraction) / fraction, c the cost of
/// that save, measured as for every_optimal() but not smoothed: each save is paid for by the
/// compute after it, so c / (T + c) <= fraction holds for every save and the compute after it,
/// and so for the whole run, however the cost varies (one slow save is followed by a long
/// interval). Until a save has been measured, it fires at once. The cost survives restarts.
/// @throws usage_error (fraction not in (0, 1))
save_policy overhead_at_most(double fraction);

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
