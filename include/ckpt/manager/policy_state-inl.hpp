#pragma once

#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/manager/policy_state.hpp>
#include <ckpt/manager/selection.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt::detail {

namespace cost_rules {

// A cost-aware rule's state: "none" before a save is measured, else
// "<C> <last save's cost> <saves> <interval>" (seconds). The interval is recomputed from the
// costs when read back; it is written for people reading the tags.
template <class Rule>
std::string encode_cost_state(const Rule& r) {
    if (r.cost.samples == 0) return "none";
    return format_double(r.cost.seconds) + " " + format_double(r.cost.last) + " " +
           std::to_string(r.cost.samples) + " " + format_double(r.interval);
}

template <class Rule>
bool decode_cost_state(Rule& r, std::string_view text) {
    if (text == "none") {
        r.cost = {};
        r.interval = 0;
        return true;
    }
    std::string_view fields[4];
    std::string_view rest = text;
    for (std::size_t i = 0; i < 4; ++i) {
        const auto space = rest.find(' ');
        if ((space == std::string_view::npos) != (i == 3)) return false; // 4 fields, no more
        fields[i] = rest.substr(0, space);
        if (space != std::string_view::npos) rest = rest.substr(space + 1);
    }
    const auto cost = parse_double(fields[0]);
    const auto last = parse_double(fields[1]);
    const auto samples = parse_int(fields[2]);
    const auto interval = parse_double(fields[3]);
    const auto valid = [](std::optional<double> v) { return v && std::isfinite(*v) && *v >= 0; };
    if (!valid(cost) || !valid(last) || !samples || *samples < 1 || !interval) return false;
    r.cost = {*cost, *last, *samples};
    return true;
}

inline double interval_for(const rule_every_optimal& r) {
    return daly_interval(r.cost.seconds, r.mtbf);
}
inline double interval_for(const rule_overhead_at_most& r) {
    return budget_interval(r.cost.last, r.fraction);
}

template <class Rule>
bool cost_rule_fires(const Rule& r, std::chrono::system_clock::time_point t) {
    if (r.cost.samples == 0) return true; // to measure a save
    return std::chrono::duration<double>(t - r.last_end).count() >= r.interval;
}

} // namespace cost_rules

CKPT_INLINE std::string encode_rule_state(const save_rule& r) {
    if (const auto* s = std::get_if<rule_every_steps>(&r)) return std::to_string(s->last);
    if (const auto* t = std::get_if<rule_every_time>(&r)) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t->last.time_since_epoch())
                .count());
    }
    if (const auto* b = std::get_if<rule_on_best>(&r)) {
        return b->best ? format_double(*b->best) + " " + std::to_string(b->best_step) : "none";
    }
    if (const auto* o = std::get_if<rule_every_optimal>(&r))
        return cost_rules::encode_cost_state(*o);
    if (const auto* f = std::get_if<rule_overhead_at_most>(&r))
        return cost_rules::encode_cost_state(*f);
    return {};
}

CKPT_INLINE bool decode_rule_state(save_rule& r, std::string_view text) {
    if (auto* s = std::get_if<rule_every_steps>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        s->last = *v;
        return true;
    }
    if (auto* t = std::get_if<rule_every_time>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        t->last = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::nanoseconds(*v)));
        return true;
    }
    if (auto* b = std::get_if<rule_on_best>(&r)) {
        if (text == "none") {
            b->best.reset();
            return true;
        }
        const auto space = text.find(' ');
        if (space == std::string_view::npos) return false;
        const auto v = parse_double(text.substr(0, space));
        const auto step = parse_int(text.substr(space + 1));
        if (!v || !step) return false;
        b->best = *v;
        b->best_step = *step;
        return true;
    }
    if (auto* o = std::get_if<rule_every_optimal>(&r)) {
        if (!cost_rules::decode_cost_state(*o, text)) return false;
        o->interval = o->cost.samples == 0 ? 0 : cost_rules::interval_for(*o);
        return true;
    }
    if (auto* f = std::get_if<rule_overhead_at_most>(&r)) {
        if (!cost_rules::decode_cost_state(*f, text)) return false;
        f->interval = f->cost.samples == 0 ? 0 : cost_rules::interval_for(*f);
        return true;
    }
    return true;
}

CKPT_INLINE bool fires(const save_rule& rule, const metadata& meta,
                       std::chrono::system_clock::time_point t) {
    if (const auto* s = std::get_if<rule_every_steps>(&rule)) return meta.step - s->last >= s->n;
    if (const auto* e = std::get_if<rule_every_time>(&rule)) return t - e->last >= e->period;
    if (const auto* b = std::get_if<rule_on_best>(&rule)) {
        const double v = meta.metrics.find(b->metric)->second;
        return !std::isnan(v) && (!b->best || improves(v, *b->best, b->direction, b->min_delta));
    }
    if (const auto* a = std::get_if<rule_at_steps>(&rule)) {
        return std::binary_search(a->steps.begin(), a->steps.end(), meta.step);
    }
    if (const auto* o = std::get_if<rule_every_optimal>(&rule))
        return cost_rules::cost_rule_fires(*o, t);
    if (const auto* f = std::get_if<rule_overhead_at_most>(&rule))
        return cost_rules::cost_rule_fires(*f, t);
    return std::get<rule_on_request>(rule).flag->load(std::memory_order_relaxed);
}

CKPT_INLINE void advance(save_rule& rule, const metadata& meta,
                         std::chrono::system_clock::time_point t) {
    if (auto* s = std::get_if<rule_every_steps>(&rule)) s->last = meta.step;
    if (auto* e = std::get_if<rule_every_time>(&rule)) e->last = t;
    if (auto* b = std::get_if<rule_on_best>(&rule)) {
        b->best = meta.metrics.at(b->metric);
        b->best_step = meta.step;
    }
}

CKPT_INLINE void measured(save_rule& rule, double seconds,
                          std::chrono::system_clock::time_point end) {
    const auto learn = [&](auto& r) {
        add_sample(r.cost, seconds);
        r.interval = cost_rules::interval_for(r);
        r.last_end = end;
    };
    if (auto* o = std::get_if<rule_every_optimal>(&rule)) learn(*o);
    if (auto* f = std::get_if<rule_overhead_at_most>(&rule)) learn(*f);
}

CKPT_INLINE std::optional<double> target_interval(const save_rule& rule) {
    if (const auto* o = std::get_if<rule_every_optimal>(&rule); o && o->cost.samples > 0) {
        return o->interval;
    }
    if (const auto* f = std::get_if<rule_overhead_at_most>(&rule); f && f->cost.samples > 0) {
        return f->interval;
    }
    return std::nullopt;
}

CKPT_INLINE policy_state::policy_state(save_policy policy)
    : policy_(std::move(policy)), fired_(policy_.rules().size(), 0) {
    for (const auto& rule : policy_.rules()) {
        uses_clock_ = uses_clock_ || std::holds_alternative<rule_every_time>(rule) ||
                      std::holds_alternative<rule_every_optimal>(rule) ||
                      std::holds_alternative<rule_overhead_at_most>(rule);
    }
}

CKPT_INLINE void policy_state::start(std::chrono::system_clock::time_point t) {
    for (auto& rule : policy_.rules()) {
        if (auto* e = std::get_if<rule_every_time>(&rule)) e->last = t;
        if (auto* o = std::get_if<rule_every_optimal>(&rule)) o->last_end = t;
        if (auto* f = std::get_if<rule_overhead_at_most>(&rule)) f->last_end = t;
    }
}

CKPT_INLINE void policy_state::measured(double seconds, std::chrono::system_clock::time_point end) {
    for (auto& rule : policy_.rules()) detail::measured(rule, seconds, end);
}

CKPT_INLINE std::optional<double> policy_state::target_interval() const {
    std::optional<double> least;
    for (const auto& rule : policy_.rules()) {
        const auto i = detail::target_interval(rule);
        if (i && (!least || *i < *least)) least = i;
    }
    return least;
}

CKPT_INLINE bool policy_state::ask(const metadata& meta, std::chrono::system_clock::time_point t) {
    bool any = false;
    for (std::size_t i = 0; i < fired_.size(); ++i) {
        fired_[i] = fires(policy_.rules()[i], meta, t) ? 1 : 0;
        any = any || fired_[i] != 0;
    }
    return any;
}

CKPT_INLINE void policy_state::clear_fired() {
    std::fill(fired_.begin(), fired_.end(), 0);
}

CKPT_INLINE std::vector<save_rule> policy_state::advanced(const metadata& meta,
                                                          std::chrono::system_clock::time_point t,
                                                          std::vector<std::string>& reasons) const {
    std::vector<save_rule> after = policy_.rules();
    for (std::size_t i = 0; i < after.size(); ++i) {
        if (fired_[i] == 0) continue;
        reasons.push_back(rule_key(after[i]));
        advance(after[i], meta, t);
    }
    return after;
}

CKPT_INLINE void policy_state::write_tags(const std::vector<save_rule>& after, metadata& stored) {
    for (const auto& rule : after) {
        const std::string text = encode_rule_state(rule);
        if (!text.empty()) stored.tags[std::string(policy_tag_prefix) + rule_key(rule)] = text;
    }
}

CKPT_INLINE void policy_state::commit(std::vector<save_rule>&& after, bool forced) {
    policy_.rules() = std::move(after);
    if (forced) return;
    for (auto& rule : policy_.rules()) {
        if (auto* r = std::get_if<rule_on_request>(&rule)) r->flag->store(false);
    }
}

CKPT_INLINE void policy_state::roll_back(snapshot&& before) {
    policy_.rules() = std::move(before.rules);
    for (std::size_t i = 0; i < policy_.rules().size(); ++i) {
        auto* r = std::get_if<rule_on_request>(&policy_.rules()[i]);
        if (r != nullptr && before.fired[i] != 0) r->flag->store(true);
    }
}

CKPT_INLINE void policy_state::restore(const metadata& meta,
                                       const std::vector<checkpoint_entry>& index) {
    for (auto& rule : policy_.rules()) {
        if (detail::target_interval(rule)) continue; // a cost-aware rule that has measured its own
        const auto tag = meta.tags.find(std::string(policy_tag_prefix) + rule_key(rule));
        if (tag != meta.tags.end() && decode_rule_state(rule, tag->second)) continue;
        if (auto* s = std::get_if<rule_every_steps>(&rule)) s->last = meta.step;
        if (auto* t = std::get_if<rule_every_time>(&rule)) t->last = meta.time;
        if (auto* b = std::get_if<rule_on_best>(&rule)) {
            const auto order = ranked(index, b->metric, b->direction);
            if (!order.empty()) {
                b->best = index[order.front()].metrics.at(b->metric);
                b->best_step = index[order.front()].step;
            }
        }
    }
}

} // namespace ckpt::detail
