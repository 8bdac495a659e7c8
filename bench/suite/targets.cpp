#include "targets.hpp"

#include "format.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace bench {

namespace {

/// Median of the per-run ratio a/b, or nothing when either is missing.
std::optional<double> median_ratio(const size_result& r, const char* a, const char* b) {
    const series* x = r.find(a);
    const series* y = r.find(b);
    if (x == nullptr || y == nullptr || x->seconds.empty()) return std::nullopt;
    return stats_of(per_run_ratio(*x, *y)).median;
}

} // namespace

std::vector<target> targets_for(const options& opt) {
    const double n = static_cast<double>(opt.in_flight);
    std::vector<target> t;
    t.push_back({"save_throughput", "6", "sync save throughput >= 0.90x write+fsync", "256 MiB",
                 [](const size_result& r) {
                     verdict v;
                     if (auto q = median_ratio(r, "write", "save")) {
                         v = {true, *q >= 0.9, fmt("%.2fx", *q)};
                     }
                     return v;
                 }});
    t.push_back({"load_throughput", "6", "load (shaped state) throughput >= 0.80x pread", "256 MiB",
                 [](const size_result& r) {
                     verdict v;
                     if (auto q = median_ratio(r, "pread", "load")) {
                         v = {true, *q >= 0.8, fmt("%.2fx", *q)};
                     }
                     return v;
                 }});
    t.push_back(
        {"async_stall", "6", "async stall <= 1.25x memcpy + 1 ms", "every size",
         [](const size_result& r) {
             verdict v;
             const series* s = r.find("async_stall");
             const series* m = r.find("memcpy");
             if (s == nullptr || m == nullptr || s->seconds.empty()) return v;
             // Per run, against that run's memcpy; the median of the margins decides.
             std::vector<double> over;
             for (std::size_t i = 0; i < s->seconds.size() && i < m->seconds.size(); ++i)
                 over.push_back(s->seconds[i] - (1.25 * m->seconds[i] + 1e-3));
             const double stall = stats_of(s->seconds).median * 1e3;
             const double limit = (1.25 * stats_of(m->seconds).median + 1e-3) * 1e3;
             v = {true, stats_of(over).median <= 0, fmt("%.2f", stall) + fmt(" / %.2f ms", limit)};
             return v;
         }});
    // One time against another's (ckpt's against torch's...), median of the per-run ratios.
    const auto at_most = [](const char* ours, const char* theirs, double limit) {
        return [=](const size_result& r) {
            verdict v;
            if (auto q = median_ratio(r, ours, theirs)) v = {true, *q <= limit, fmt("%.2fx", *q)};
            return v;
        };
    };
    t.push_back({"torch_save", "6", "save time <= 0.80x torch.save", "every size",
                 at_most("save", "torch_save", 0.8)});
    t.push_back({"torch_load", "6", "load (shaped state) time <= 0.50x torch.load (new tensors)",
                 "every size", at_most("load", "torch_load", 0.5)});
    t.push_back(
        {"torch_size", "6", "file size <= 1.01x torch", "every size", [](const size_result& r) {
             verdict v;
             if (r.torch_bytes > 0) {
                 const double q =
                     static_cast<double>(r.file_bytes) / static_cast<double>(r.torch_bytes);
                 v = {true, q <= 1.01, fmt("%.4fx", q)};
             }
             return v;
         }});
    t.push_back({"save_rss", "6", "sync save peak RSS <= state + 16 MiB", "every size",
                 [](const size_result& r) {
                     verdict v;
                     const rss_row* x = r.find_rss("save");
                     if (x != nullptr && x->r.ok != 0) {
                         const double over = x->r.peak_mib - x->r.state_mib;
                         v = {true, over <= 16.0, fmt("%+.1f MiB", over)};
                     }
                     return v;
                 }});
    t.push_back(
        {"async_rss", "6",
         "async peak RSS <= state x (1 + " + std::to_string(opt.in_flight) + ") + 16 MiB",
         "every size", [n](const size_result& r) {
             verdict v;
             const rss_row* x = r.find_rss("async_save");
             if (x != nullptr && x->r.ok != 0) {
                 const double over = x->r.peak_mib - x->r.state_mib;
                 const double allowed = x->r.state_mib * n + 16.0;
                 v = {true, over <= allowed, fmt("%+.1f", over) + fmt(" / %+.1f MiB", allowed)};
             }
             return v;
         }});

    // Issue 17: the situations users are really in.
    for (const char* key : {"big", "mid", "64k"}) {
        t.push_back({std::string("layout_") + key, "17",
                     std::string("layout ") + key + ": shaped load <= 1.00x pread + XXH3",
                     "256 MiB", [key](const size_result& r) {
                         verdict v;
                         const layout_result* l = r.find_layout(key);
                         if (l == nullptr || l->shaped.seconds.empty()) return v;
                         const double q = stats_of(per_run_ratio(l->shaped, l->pread_xxh3)).median;
                         v = {true, q <= 1.0, fmt("%.2fx", q)};
                         return v;
                     }});
    }
    t.push_back({"layout_spread", "17", "slowest / fastest layout >= 64 KiB <= 1.20x", "256 MiB",
                 [](const size_result& r) {
                     verdict v;
                     const std::vector<double> spread = layout_spread(r);
                     if (spread.empty()) return v;
                     const double q = stats_of(spread).median;
                     v = {true, q <= 1.2, fmt("%.2fx", q)};
                     return v;
                 }});
    t.push_back({"save_replace", "17", "save replacing the file <= 1.10x save to a fresh path",
                 "256 MiB", at_most("save_replace", "save", 1.1)});
    t.push_back({"manager_delete", "17", "manager step with a retention delete <= 1.10x without",
                 "256 MiB", at_most("manager_delete", "manager_keep", 1.1)});
    t.push_back({"torch_load_empty", "17",
                 "load (empty state) time <= 0.60x torch.load (new tensors)", "256 MiB",
                 at_most("load_empty", "torch_load", 0.6)});
    return t;
}

} // namespace bench
