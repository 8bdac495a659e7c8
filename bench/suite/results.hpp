#pragma once
// What is measured at one size: every timed operation's seconds and minor page faults per run,
// the tensor granularity layouts, the peak RSS rows, the file sizes and the torch peer's
// description; ratios are taken per run.

#include "../bench_stats.hpp"
#include "rss.hpp"
#include "state.hpp"
#include "torch_peer.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

/// One timed operation: its seconds in each run, and the baseline it is compared with.
struct series {
    std::string key;         ///< for --json
    std::string label;       ///< for the table
    std::string baseline;    ///< key of the baseline, empty for a baseline or an absolute figure
    std::uint64_t bytes = 0; ///< moved per operation, for GB/s; 0: no throughput shown
    bool absolute = false;   ///< no baseline and none itself: printed "(absolute)"
    std::vector<double> seconds;
    std::vector<double> faults; ///< minor page faults of the process during it, per run
};

/// A series that `op` fills in, compared with `baseline` (a key; "" for none).
series make_series(std::string key, std::string label, std::string baseline, std::uint64_t bytes);
/// A series that is neither compared nor a baseline.
series absolute_series(std::string key, std::string label, std::uint64_t bytes = 0);

struct rss_row {
    std::string key;
    std::string label;
    rss_result r;
};

/// The same bytes as tensors of one size (layouts.hpp): a verified read of the file, and ckpt's
/// load of it into a shaped and into an empty state, each run.
struct layout_result {
    std::string key;                ///< "big", "mid", "64k", "small"
    std::uint64_t tensor_bytes = 0; ///< of each tensor
    std::size_t tensors = 0;
    bool target = false; ///< issue 17's targets apply (tensors >= 64 KiB)
    std::uint64_t file_bytes = 0;
    series pread_xxh3; ///< the baseline of both loads
    series shaped;
    series empty;
};

struct size_result {
    std::uint64_t target_mib = 0;
    state_shape shape;
    std::uint64_t params = 0;
    std::size_t tensors = 0;
    std::uint64_t state_bytes = 0;
    std::uint64_t file_bytes = 0;   ///< ckpt
    std::uint64_t cereal_bytes = 0; ///< cereal peer
    std::uint64_t torch_bytes = 0;  ///< torch peer (0: not run)
    torch_info torch;
    bool ckpt_exact = false;
    bool cereal_exact = false;
    bool layouts_exact = true; ///< every load of the layouts gave back the saved tensors
    double cold_stall = 0;     ///< first async save: its staging buffers fault in
    double cold_background = 0;
    double reserve_seconds = 0; ///< async_saver::reserve on a new saver: its buffers fault in
    double reserved_stall = 0;  ///< the first save after it: only the copy
    std::vector<series> ops;
    std::vector<layout_result> layouts; ///< empty with --no-layouts
    std::vector<rss_row> rss;

    /// The series `key`; the program dies when there is none.
    series& op(const std::string& key);
    const series* find(const std::string& key) const;
    const rss_row* find_rss(const std::string& key) const;
    const layout_result* find_layout(const std::string& key) const;
};

/// a[i] / b[i] for each run that has both.
std::vector<double> per_run_ratio(const series& a, const series& b);

/// Per run: the slowest shaped load of the layouts with a target / the fastest one.
std::vector<double> layout_spread(const size_result& r);

} // namespace bench
