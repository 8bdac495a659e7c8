#include "results.hpp"

#include "cleanup.hpp"

namespace bench {

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

std::vector<double> per_run_ratio(const series& a, const series& b) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.seconds.size() && i < b.seconds.size(); ++i) {
        if (b.seconds[i] > 0) r.push_back(a.seconds[i] / b.seconds[i]);
    }
    return r;
}

} // namespace bench
