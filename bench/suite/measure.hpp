#pragma once
// The measurements at one size: peak RSS of each operation in a fresh process, then the timed
// runs, every operation once per run in a rotating order.

#include "options.hpp"
#include "results.hpp"

#include <string>

namespace bench {

/// The files of the work directory, by what writes them, and the managers' directories.
struct work_paths {
    std::string ckpt, async, raw, cereal, torch, rss_ckpt, rss_cereal, rss_torch, layout;
    std::string manager_keep, manager_delete;
};

/// Peak RSS of every operation at one size, each in a fresh process.
void measure_rss(size_result& r, const options& opt, const work_paths& p);

/// The timed runs at one size: fills r's counts, file sizes and series.
void measure_times(size_result& r, const options& opt, const work_paths& p);

} // namespace bench
