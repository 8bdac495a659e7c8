#pragma once

#include <ckpt/detail/config.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/manager/directory.hpp>
#include <ckpt/manager/selection.hpp>
#include <ckpt/metadata.hpp>
#include <ckpt/policy/save_policy.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt::detail {

/// Tags of a checkpoint that hold its policy's state: ckpt.policy.<rule_key>.
inline constexpr std::string_view policy_tag_prefix = "ckpt.policy.";

/// The state a rule carries from one run to the next, as text; empty for none.
std::string encode_rule_state(const save_rule& r);

/// Applies a rule's saved state; false when the text does not parse (the rule is left alone).
bool decode_rule_state(save_rule& r, std::string_view text);

/// Whether `rule` fires at `meta` (time `t`). An on_best rule's metric must be in `meta`.
bool fires(const save_rule& rule, const metadata& meta, std::chrono::system_clock::time_point t);

/// What `rule` remembers of a save at `meta` (time `t`).
void advance(save_rule& rule, const metadata& meta, std::chrono::system_clock::time_point t);

/// What a cost-aware rule (every_optimal, overhead_at_most) learns from a save taken, whichever
/// rule fired: it cost the training loop `seconds`, and ended at `end`. Others ignore it.
void measured(save_rule& rule, double seconds, std::chrono::system_clock::time_point end);

/// The compute time between saves a cost-aware rule aims for, in seconds; nullopt for another
/// rule, or before its first save is measured.
std::optional<double> target_interval(const save_rule& rule);

/// A save policy as a manager runs it: which rules fire on a step, what they remember of the
/// saves taken, and how that memory travels in a checkpoint's tags to the next run.
class policy_state {
public:
    /// The rules, and which fired on the last step asked, to put back when a save fails.
    struct snapshot {
        std::vector<save_rule> rules;
        std::vector<char> fired;
    };

    explicit policy_state(save_policy policy);

    [[nodiscard]] const save_policy& policy() const noexcept { return policy_; }
    /// Some rule reads the wall clock (every()).
    [[nodiscard]] bool uses_clock() const noexcept { return uses_clock_; }

    /// Every time rule counts from `t`.
    void start(std::chrono::system_clock::time_point t);
    /// A save was taken: see detail::measured.
    void measured(double seconds, std::chrono::system_clock::time_point end);
    /// The smallest target_interval of the rules; nullopt when none has one.
    [[nodiscard]] std::optional<double> target_interval() const;
    /// Asks every rule about this step. @returns whether one fires
    bool ask(const metadata& meta, std::chrono::system_clock::time_point t);
    /// As if no rule fired (a forced save).
    void clear_fired();
    /// The rules as they will be after a save at `meta`: the fired ones advanced, their keys
    /// appended to `reasons`.
    [[nodiscard]] std::vector<save_rule> advanced(const metadata& meta,
                                                  std::chrono::system_clock::time_point t,
                                                  std::vector<std::string>& reasons) const;
    /// Writes the state of the rules `after` into the tags of the checkpoint they describe.
    static void write_tags(const std::vector<save_rule>& after, metadata& stored);
    /// The save is taken: the rules become `after`; an on_request flag is cleared unless the
    /// save was forced (then no rule fired).
    void commit(std::vector<save_rule>&& after, bool forced);

    [[nodiscard]] snapshot save() const { return {policy_.rules(), fired_}; }
    /// A save taken at `before` failed: the rules go back, so that they ask again, and the
    /// on_request flags that fired are set again.
    void roll_back(snapshot&& before);

    /// Puts the rules where they were when `meta` was saved; a rule the checkpoint holds no
    /// state for (the policy changed) starts from the checkpoint's step and time, and an on_best
    /// rule from the best of `index`. A cost-aware rule takes the checkpoint's measured cost only
    /// while it has measured none itself (the cost is the machine's, not the training state's),
    /// and counts its interval from its own start or last save, not the checkpoint's: the work
    /// since the checkpoint was lost with the run that did it.
    void restore(const metadata& meta, const std::vector<checkpoint_entry>& index);

private:
    save_policy policy_;
    std::vector<char> fired_;
    bool uses_clock_ = false;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/manager/policy_state-inl.hpp>
#endif
