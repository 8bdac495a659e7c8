#pragma once

#include <ckpt/detail/config.hpp>
#include <ckpt/manager/directory.hpp>
#include <ckpt/policy/retention.hpp>
#include <ckpt/policy/save_policy.hpp>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Metrics checkpoints are ranked by, each with the way it improves.
using ranked_metrics = std::vector<std::pair<std::string, goal>>;

/// Indices of `entries` sorted best first by `metric` (a tie goes to the newer step); entries
/// without it, or with NaN, left out.
std::vector<std::size_t> ranked(const std::vector<checkpoint_entry>& entries,
                                const std::string& metric, goal direction);

/// Indices of `entries`, newest step first.
std::vector<std::size_t> newest_first(const std::vector<checkpoint_entry>& entries);

/// Which entries retention keeps: the union of its rules, the newest, and the best by every
/// metric in `always_best`. Pure: the same files give the same answer, before and after a
/// restart.
std::vector<bool> select_kept(const std::vector<checkpoint_entry>& entries, const retention& keep,
                              const ranked_metrics& always_best);

/// Adds `metric` to `metrics` once. @throws usage_error (it is there, ranked the other way)
void add_ranked(ranked_metrics& metrics, const std::string& metric, goal direction);

/// A manager's index as list() shows it: oldest step first, the newest marked `latest`, the
/// best by each of `metrics` marked `best`.
std::vector<checkpoint_entry> listed(std::vector<checkpoint_entry> entries,
                                     const ranked_metrics& metrics);

/// The metrics a policy and a retention rank checkpoints by, in that order.
ranked_metrics ranked_by(const save_policy& policy, const retention& keep);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/manager/selection-inl.hpp>
#endif
