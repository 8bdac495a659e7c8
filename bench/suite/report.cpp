#include "report.hpp"

#include "format.hpp"
#include "layouts.hpp"
#include "targets.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>

namespace bench {

namespace {

class table {
public:
    table(std::vector<std::string> head, std::vector<bool> right)
        : head_(std::move(head)), right_(std::move(right)) {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

    void print(bool markdown) const {
        std::vector<std::size_t> w(head_.size(), 0);
        const auto width = [](const std::string& s) { // UTF-8 code points
            std::size_t n = 0;
            for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
            return n;
        };
        for (std::size_t c = 0; c < head_.size(); ++c) {
            w[c] = width(head_[c]);
            for (const auto& row : rows_) {
                if (c < row.size()) w[c] = std::max(w[c], width(row[c]));
            }
        }
        const auto cell = [&](const std::string& s, std::size_t c) {
            const std::string pad(w[c] - width(s), ' ');
            return right_[c] ? pad + s : s + pad;
        };
        const auto line = [&](const std::vector<std::string>& row) {
            std::string out = markdown ? "| " : "  ";
            for (std::size_t c = 0; c < head_.size(); ++c) {
                out += cell(c < row.size() ? row[c] : std::string(), c);
                out += markdown ? " |" : "  ";
                if (markdown && c + 1 < head_.size()) out += " ";
            }
            while (!markdown && !out.empty() && out.back() == ' ') out.pop_back();
            std::printf("%s\n", out.c_str());
        };
        line(head_);
        if (markdown) {
            std::string sep = "|";
            for (std::size_t c = 0; c < head_.size(); ++c)
                sep += (right_[c] ? std::string(w[c] + 1, '-') + ":|"
                                  : ":" + std::string(w[c] + 1, '-') + "|");
            std::printf("%s\n", sep.c_str());
        }
        for (const auto& row : rows_) line(row);
    }

private:
    std::vector<std::string> head_;
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

std::string ms(double seconds) {
    const double v = seconds * 1e3;
    return fmt(v < 10 ? "%.3f" : v < 1000 ? "%.1f" : "%.0f", v);
}

std::string mib_text(double bytes) {
    return fmt("%.2f", bytes / mib);
}

std::string ratio_text(const stats& q) {
    return fmt("%.2f", q.min) + " / " + fmt("%.2f", q.median) + " / " + fmt("%.2f", q.max);
}

/// The median of a series' minor faults, "-" when it has none.
std::string faults_text(const series& s) {
    return s.faults.empty() ? "-" : fmt("%.0f", stats_of(s.faults).median);
}

std::string gbps_text(const series& s, double median_seconds) {
    return s.bytes > 0 && median_seconds > 0
               ? fmt("%.2f", static_cast<double>(s.bytes) / median_seconds / 1e9)
               : "-";
}

void heading(bool markdown, const std::string& title) {
    if (markdown)
        std::printf("\n#### %s\n\n", title.c_str());
    else
        std::printf("\n%s\n", title.c_str());
}

} // namespace

void print_times(const size_result& r, const options& opt) {
    std::string title = size_name(r.target_mib) + " state: " + std::to_string(r.tensors) +
                        " tensors, " + std::to_string(r.params) +
                        " float32 parameters x 3 (model, exp_avg, exp_avg_sq) = " +
                        mib_text(static_cast<double>(r.state_bytes)) + " MiB; ckpt file " +
                        mib_text(static_cast<double>(r.file_bytes)) + " MiB";
    heading(opt.markdown, title);
    table t({"operation", "min ms", "median ms", "max ms", "GB/s",
             "time / baseline (min / median / max)", "baseline", "minor faults"},
            {false, true, true, true, true, true, false, true});
    for (const series& s : r.ops) {
        if (s.seconds.empty()) continue;
        const stats q = stats_of(s.seconds);
        std::string ratio = "-";
        std::string base = s.absolute ? "(absolute)" : s.baseline.empty() ? "(baseline)" : "";
        if (const series* b = s.baseline.empty() ? nullptr : r.find(s.baseline)) {
            ratio = ratio_text(stats_of(per_run_ratio(s, *b)));
            base = b->label;
        }
        t.add({s.label, ms(q.min), ms(q.median), ms(q.max), gbps_text(s, q.median), ratio, base,
               faults_text(s)});
    }
    t.print(opt.markdown);
    std::printf("%sfirst (cold) async save: stall %s ms (its staging buffer faults in), "
                "background %s ms\n",
                opt.markdown ? "\n" : "  ", ms(r.cold_stall).c_str(),
                ms(r.cold_background).c_str());
    std::printf("%sfirst async save after reserve(): stall %s ms (reserve() took %s ms, "
                "before the first save)\n",
                opt.markdown ? "\n" : "  ", ms(r.reserved_stall).c_str(),
                ms(r.reserve_seconds).c_str());
    if (r.torch_bytes > 0) {
        const bool same = r.torch.params == r.params && r.torch.tensor_bytes == r.state_bytes &&
                          r.torch.tensors == r.tensors;
        std::printf("%storch peer: %llu parameters, %llu tensors, %llu tensor bytes; ckpt: %llu, "
                    "%zu, %llu (%s)\n",
                    opt.markdown ? "\n" : "  ", static_cast<unsigned long long>(r.torch.params),
                    static_cast<unsigned long long>(r.torch.tensors),
                    static_cast<unsigned long long>(r.torch.tensor_bytes),
                    static_cast<unsigned long long>(r.params), r.tensors,
                    static_cast<unsigned long long>(r.state_bytes), same ? "equal" : "DIFFERENT");
    }
}

void print_layouts(const size_result& r, const options& opt) {
    if (r.layouts.empty()) return;
    heading(opt.markdown, size_name(r.target_mib) +
                              " tensor granularity: the same float32 bytes as tensors of one "
                              "size (256 rows), each file saved anew, then read warm");
    table t({"layout", "operation", "min ms", "median ms", "max ms", "GB/s",
             "time / (pread + XXH3) (min / median / max)", "minor faults"},
            {false, false, true, true, true, true, true, true});
    for (const layout_result& l : r.layouts) {
        const std::string name = layout_name(l) + (l.target ? "" : " (no target)");
        for (const series* s : {&l.pread_xxh3, &l.shaped, &l.empty}) {
            if (s->seconds.empty()) continue;
            const stats q = stats_of(s->seconds);
            const std::string ratio = s == &l.pread_xxh3
                                          ? "(baseline)"
                                          : ratio_text(stats_of(per_run_ratio(*s, l.pread_xxh3)));
            t.add({s == &l.pread_xxh3 ? name : "", s->label, ms(q.min), ms(q.median), ms(q.max),
                   gbps_text(*s, q.median), ratio, faults_text(*s)});
        }
    }
    t.print(opt.markdown);
    const std::vector<double> spread = layout_spread(r);
    if (!spread.empty())
        std::printf("%sslowest / fastest layout >= 64 KiB (shaped load), per run: %s\n",
                    opt.markdown ? "\n" : "  ", ratio_text(stats_of(spread)).c_str());
}

void print_peers(const std::vector<size_result>& results, const options& opt) {
    heading(opt.markdown,
            "ckpt against the peers: ckpt time / peer time of the same run (min / median / max; "
            "< 1: ckpt is faster), ckpt file size / peer file size");
    table t({"size", "peer", "ckpt", "against", "ckpt time / peer time", "file size",
             "peer file MiB", "parameters (ckpt / peer)"},
            {false, false, false, false, true, true, true, true});
    for (const size_result& r : results) {
        // One comparison; the file columns on the first row of each peer only.
        bool first = true;
        const auto row = [&](const char* peer, const char* ours, const char* theirs,
                             std::uint64_t bytes, std::uint64_t params) {
            const series* a = r.find(ours);
            const series* b = r.find(theirs);
            if (a == nullptr || b == nullptr || a->seconds.empty() || b->seconds.empty()) return;
            const std::string same = "(as above)";
            t.add({size_name(r.target_mib), peer, a->label, b->label,
                   ratio_text(stats_of(per_run_ratio(*a, *b))),
                   first
                       ? fmt("%.4f", static_cast<double>(r.file_bytes) / static_cast<double>(bytes))
                       : same,
                   first ? mib_text(static_cast<double>(bytes)) : same,
                   first ? std::to_string(r.params) + " / " + std::to_string(params) : same});
            first = false;
        };
        // Like with like: both sides write a new file, or both fill a state that exists (a
        // warm target), or both make new memory (a cold one), or both build their state first.
        row("cereal binary", "save", "cereal_save", r.cereal_bytes, r.params);
        row("cereal binary", "load", "cereal_load", r.cereal_bytes, r.params);
        first = true;
        row("torch", "save", "torch_save", r.torch_bytes, r.torch.params);
        row("torch", "load_empty", "torch_load", r.torch_bytes, r.torch.params);
        row("torch", "load", "torch_restore", r.torch_bytes, r.torch.params);
        row("torch", "resume", "torch_resume", r.torch_bytes, r.torch.params);
    }
    t.print(opt.markdown);
    std::printf("%s(torch.load makes new tensors, as ckpt's load into an empty state does; "
                "load_state_dict then copies them into the live model, whose memory is warm, "
                "as ckpt's load into a shaped state fills it directly)\n",
                opt.markdown ? "\n" : "  ");
}

void print_rss(const std::vector<size_result>& results, const options& opt) {
    bool reset_ok = true;
    for (const size_result& r : results) {
        for (const rss_row& x : r.rss) reset_ok = reset_ok && (x.r.ok == 0 || x.r.reset_works);
    }
    heading(opt.markdown,
            std::string("peak RSS in MiB, one operation in a fresh process; VmHWM ") +
                (reset_ok ? "reset (/proc/self/clear_refs) just before it"
                          : "could NOT be reset: absolute figures, building the state included"));
    table t({"size", "operation", "state", "RSS before", "peak", "peak - state", "peak - before"},
            {false, false, true, true, true, true, true});
    for (const size_result& r : results) {
        for (const rss_row& x : r.rss) {
            if (x.r.ok == 0) {
                t.add({size_name(r.target_mib), x.label, "failed: " + std::string(x.r.error)});
                continue;
            }
            t.add({size_name(r.target_mib), x.label, fmt("%.1f", x.r.state_mib),
                   fmt("%.1f", x.r.rss_before_mib), fmt("%.1f", x.r.peak_mib),
                   fmt("%+.1f", x.r.peak_mib - x.r.state_mib),
                   fmt("%+.1f", x.r.peak_mib - x.r.rss_before_mib)});
        }
    }
    t.print(opt.markdown);
    std::printf("%s(a load maps the file when it is in the page cache: those shared, clean pages "
                "count in VmHWM%s)\n",
                opt.markdown ? "\n" : "  ",
                opt.torch.enabled ? (opt.markdown ? ";\ntorch.load allocates a second copy of the "
                                                    "state before load_state_dict copies it in"
                                                  : ";\n   torch.load allocates a second copy of "
                                                    "the state before load_state_dict copies it in")
                                  : "");
}

void print_targets(const std::vector<size_result>& results, const options& opt) {
    heading(opt.markdown,
            "targets of issues 6 and 17 (informational; the exit status is 0 regardless)");
    std::vector<std::string> head{"issue", "target", "stated at"};
    std::vector<bool> right{true, false, false};
    for (const size_result& r : results) {
        head.push_back(size_name(r.target_mib));
        right.push_back(true);
    }
    table t(head, right);
    int passed = 0;
    int missed = 0;
    for (const target& g : targets_for(opt)) {
        std::vector<std::string> row{g.issue, g.label, g.stated_at};
        for (const size_result& r : results) {
            const verdict v = g.check(r);
            const bool counts =
                g.stated_at == "every size" || size_name(r.target_mib) == g.stated_at;
            if (!v.measured) {
                row.push_back("n/a");
                continue;
            }
            row.push_back(v.value + (v.pass ? " PASS" : " MISS") + (counts ? "" : " (info)"));
            if (counts) (v.pass ? passed : missed)++;
        }
        t.add(std::move(row));
    }
    t.print(opt.markdown);
    std::printf("%s%d PASS, %d MISS where the targets are stated; (info): a size the target is "
                "not stated for\n",
                opt.markdown ? "\n" : "  ", passed, missed);
}

} // namespace bench
