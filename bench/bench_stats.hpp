#pragma once
// What every bench program reports of its runs: min, median and max.

#include <algorithm>
#include <cstddef>
#include <vector>

namespace bench {

struct stats {
    double min = 0;
    double median = 0;
    double max = 0;
};

/// min / median / max of `v` (all zero when empty).
inline stats stats_of(std::vector<double> v) {
    stats s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    s.min = v.front();
    s.max = v.back();
    s.median = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return s;
}

} // namespace bench
