#pragma once

#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/manager/policy_state.hpp>
#include <ckpt/manager/selection.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt::detail {

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

CKPT_INLINE policy_state::policy_state(save_policy policy)
    : policy_(std::move(policy)), fired_(policy_.rules().size(), 0) {
    for (const auto& rule : policy_.rules()) {
        uses_clock_ = uses_clock_ || std::holds_alternative<rule_every_time>(rule);
    }
}

CKPT_INLINE void policy_state::start(std::chrono::system_clock::time_point t) {
    for (auto& rule : policy_.rules()) {
        if (auto* e = std::get_if<rule_every_time>(&rule)) e->last = t;
    }
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
