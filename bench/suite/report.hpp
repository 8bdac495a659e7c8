#pragma once
// The tables on stdout, as aligned plain text or Markdown (--markdown): the timings of each
// size and its tensor granularity layouts, ckpt against the peers, peak RSS, and the targets
// with their verdicts.

#include "options.hpp"
#include "results.hpp"

#include <vector>

namespace bench {

void print_times(const size_result& r, const options& opt);
void print_layouts(const size_result& r, const options& opt);
void print_peers(const std::vector<size_result>& results, const options& opt);
void print_rss(const std::vector<size_result>& results, const options& opt);
void print_targets(const std::vector<size_result>& results, const options& opt);

} // namespace bench
