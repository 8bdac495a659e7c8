#pragma once

#include <ckpt/error.hpp>
#include <ckpt/manager/selection.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::vector<std::size_t> ranked(const std::vector<checkpoint_entry>& entries,
                                            const std::string& metric, goal direction) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto it = entries[i].metrics.find(metric);
        if (it != entries[i].metrics.end() && !std::isnan(it->second)) idx.push_back(i);
    }
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
        const double va = entries[a].metrics.at(metric);
        const double vb = entries[b].metrics.at(metric);
        if (va != vb) return direction == goal::minimize ? va < vb : va > vb;
        return entries[a].step > entries[b].step; // a tie goes to the newer
    });
    return idx;
}

CKPT_INLINE std::vector<std::size_t> newest_first(const std::vector<checkpoint_entry>& entries) {
    std::vector<std::size_t> order(entries.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return entries[a].step > entries[b].step;
    });
    return order;
}

CKPT_INLINE std::vector<bool> select_kept(const std::vector<checkpoint_entry>& entries,
                                          const retention& keep,
                                          const ranked_metrics& always_best) {
    std::vector<bool> kept(entries.size(), false);
    if (entries.empty()) return kept;
    const std::vector<std::size_t> by_step = newest_first(entries);
    kept[by_step.front()] = true; // the newest, always
    for (const auto& [metric, direction] : always_best) {
        const auto order = ranked(entries, metric, direction);
        if (!order.empty()) kept[order.front()] = true; // the best, always
    }
    const auto earliest_per_bucket = [&](auto bucket_of) {
        std::map<std::int64_t, std::size_t> first;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const std::int64_t b = bucket_of(entries[i]);
            const auto it = first.find(b);
            if (it == first.end() || entries[i].step < entries[it->second].step) first[b] = i;
        }
        for (const auto& [b, i] : first) kept[i] = true;
    };
    for (const auto& rule : keep.rules()) {
        std::visit(
            [&](const auto& r) {
                using R = std::decay_t<decltype(r)>;
                if constexpr (std::is_same_v<R, keep_last_rule>) {
                    for (std::size_t i = 0; i < r.k && i < by_step.size(); ++i)
                        kept[by_step[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_best_rule>) {
                    const auto order = ranked(entries, r.metric, r.direction);
                    for (std::size_t i = 0; i < r.k && i < order.size(); ++i) kept[order[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_every_steps_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) { return e.step / r.n; });
                } else if constexpr (std::is_same_v<R, keep_every_time_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) {
                        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            e.time.time_since_epoch());
                        const auto q = ns.count() / r.period.count();
                        return ns.count() < 0 && ns.count() % r.period.count() != 0 ? q - 1 : q;
                    });
                } else {
                    std::fill(kept.begin(), kept.end(), true);
                }
            },
            rule);
    }
    return kept;
}

CKPT_INLINE void add_ranked(ranked_metrics& metrics, const std::string& metric, goal direction) {
    for (const auto& [m, d] : metrics) {
        if (m == metric) {
            if (d != direction) {
                throw_error<usage_error>(errc::usage_argument,
                                         "manager: metric '" + metric +
                                             "' is ranked both ways (minimize and maximize)");
            }
            return;
        }
    }
    metrics.emplace_back(metric, direction);
}

CKPT_INLINE ranked_metrics ranked_by(const save_policy& policy, const retention& keep) {
    ranked_metrics out;
    for (const auto& rule : policy.rules()) {
        if (const auto* b = std::get_if<rule_on_best>(&rule))
            add_ranked(out, b->metric, b->direction);
    }
    for (const auto& rule : keep.rules()) {
        if (const auto* b = std::get_if<keep_best_rule>(&rule))
            add_ranked(out, b->metric, b->direction);
    }
    return out;
}

CKPT_INLINE std::vector<checkpoint_entry> listed(std::vector<checkpoint_entry> entries,
                                                 const ranked_metrics& metrics) {
    std::sort(entries.begin(), entries.end(),
              [](const checkpoint_entry& a, const checkpoint_entry& b) { return a.step < b.step; });
    if (!entries.empty()) entries.back().latest = true;
    for (const auto& [metric, direction] : metrics) {
        const auto order = ranked(entries, metric, direction);
        if (!order.empty()) entries[order.front()].best = true;
    }
    return entries;
}

} // namespace ckpt::detail
