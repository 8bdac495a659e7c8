#include "results.hpp"

#include "cleanup.hpp"

#include <algorithm>
#include <utility>

namespace bench {

series make_series(std::string key, std::string label, std::string baseline, std::uint64_t bytes) {
    series s;
    s.key = std::move(key);
    s.label = std::move(label);
    s.baseline = std::move(baseline);
    s.bytes = bytes;
    return s;
}

series absolute_series(std::string key, std::string label, std::uint64_t bytes) {
    series s = make_series(std::move(key), std::move(label), "", bytes);
    s.absolute = true;
    return s;
}

series& size_result::op(const std::string& key) {
    for (series& s : ops) {
        if (s.key == key) return s;
    }
    die("no series " + key);
}

const series* size_result::find(const std::string& key) const {
    for (const series& s : ops) {
        if (s.key == key) return &s;
    }
    return nullptr;
}

const rss_row* size_result::find_rss(const std::string& key) const {
    for (const rss_row& r : rss) {
        if (r.key == key) return &r;
    }
    return nullptr;
}

const layout_result* size_result::find_layout(const std::string& key) const {
    for (const layout_result& l : layouts) {
        if (l.key == key) return &l;
    }
    return nullptr;
}

std::vector<double> per_run_ratio(const series& a, const series& b) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.seconds.size() && i < b.seconds.size(); ++i) {
        if (b.seconds[i] > 0) r.push_back(a.seconds[i] / b.seconds[i]);
    }
    return r;
}

std::vector<double> layout_spread(const size_result& r) {
    std::vector<double> spread;
    for (std::size_t run = 0;; ++run) {
        double lo = 0;
        double hi = 0;
        int n = 0;
        for (const layout_result& l : r.layouts) {
            if (!l.target) continue;
            if (run >= l.shaped.seconds.size()) return spread;
            const double t = l.shaped.seconds[run];
            lo = n == 0 ? t : std::min(lo, t);
            hi = n == 0 ? t : std::max(hi, t);
            ++n;
        }
        if (n < 2 || lo <= 0) return spread;
        spread.push_back(hi / lo);
    }
}

} // namespace bench
