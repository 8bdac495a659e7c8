#include "report_json.hpp"

#include "cleanup.hpp"
#include "targets.hpp"

#include <ckpt/version.hpp>

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <fstream>
#include <vector>

namespace bench {

namespace {

template <class Writer>
void write_stats(Writer& w, const stats& s) {
    w.StartObject();
    w.Key("min");
    w.Double(s.min);
    w.Key("median");
    w.Double(s.median);
    w.Key("max");
    w.Double(s.max);
    w.EndObject();
}

template <class Writer>
void write_rss(Writer& w, const rss_result& r) {
    w.StartObject();
    w.Key("ok");
    w.Bool(r.ok != 0);
    if (r.ok == 0) {
        w.Key("error");
        w.String(r.error);
    } else {
        w.Key("reset_works");
        w.Bool(r.reset_works != 0);
        w.Key("state_mib");
        w.Double(r.state_mib);
        w.Key("rss_before_mib");
        w.Double(r.rss_before_mib);
        w.Key("peak_mib");
        w.Double(r.peak_mib);
    }
    w.EndObject();
}

/// One series: its label, bytes, seconds and minor faults per run and their stats, and the
/// ratio to `baseline` per run when there is one.
template <class Writer>
void write_series(Writer& w, const series& s, const series* baseline) {
    const auto array = [&w](const char* key, const std::vector<double>& v) {
        w.Key(key);
        w.StartArray();
        for (const double x : v) w.Double(x);
        w.EndArray();
    };
    w.StartObject();
    w.Key("label");
    w.String(s.label.c_str());
    w.Key("bytes");
    w.Uint64(s.bytes);
    if (s.absolute) {
        w.Key("absolute");
        w.Bool(true);
    }
    array("seconds", s.seconds);
    w.Key("seconds_stats");
    write_stats(w, stats_of(s.seconds));
    if (!s.faults.empty()) {
        array("minor_faults", s.faults);
        w.Key("minor_faults_stats");
        write_stats(w, stats_of(s.faults));
    }
    if (baseline != nullptr) {
        w.Key("baseline");
        w.String(s.baseline.c_str());
        w.Key("time_ratio_stats");
        write_stats(w, stats_of(per_run_ratio(s, *baseline)));
    }
    w.EndObject();
}

} // namespace

void write_json(const std::string& path, const std::vector<size_result>& results,
                const options& opt, const std::vector<std::pair<std::string, std::string>>& env) {
    rapidjson::StringBuffer buf;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
    w.SetIndent(' ', 2);
    w.StartObject();
    w.Key("program");
    w.String("bench-suite");
    w.Key("ckpt_version");
    w.String(CKPT_VERSION_STRING);
    w.Key("runs");
    w.Int(opt.runs);
    w.Key("max_in_flight");
    w.Uint64(opt.in_flight);
    w.Key("environment");
    w.StartObject();
    for (const auto& [k, v] : env) {
        w.Key(k.c_str());
        w.String(v.c_str());
    }
    w.EndObject();
    w.Key("sizes");
    w.StartArray();
    const std::vector<target> targets = targets_for(opt);
    for (const size_result& r : results) {
        w.StartObject();
        w.Key("target_mib");
        w.Uint64(r.target_mib);
        w.Key("shape");
        w.StartObject();
        w.Key("rows");
        w.Int64(r.shape.rows);
        w.Key("cols");
        w.Int64(r.shape.cols);
        w.Key("layers");
        w.Uint64(r.shape.layers);
        w.Key("dim");
        w.Int64(r.shape.dim);
        w.EndObject();
        w.Key("params");
        w.Uint64(r.params);
        w.Key("tensors");
        w.Uint64(r.tensors);
        w.Key("state_bytes");
        w.Uint64(r.state_bytes);
        w.Key("file_bytes");
        w.Uint64(r.file_bytes);
        w.Key("cereal_file_bytes");
        w.Uint64(r.cereal_bytes);
        w.Key("ckpt_load_exact");
        w.Bool(r.ckpt_exact);
        w.Key("cereal_load_exact");
        w.Bool(r.cereal_exact);
        w.Key("async_cold_stall_s");
        w.Double(r.cold_stall);
        w.Key("async_cold_background_s");
        w.Double(r.cold_background);
        w.Key("async_reserve_s");
        w.Double(r.reserve_seconds);
        w.Key("async_reserved_first_stall_s");
        w.Double(r.reserved_stall);
        w.Key("torch");
        w.StartObject();
        if (!r.torch.error.empty() || r.torch.version.empty()) {
            w.Key("skipped");
            w.String(r.torch.error.empty() ? "--no-torch" : r.torch.error.c_str());
        } else {
            w.Key("version");
            w.String(r.torch.version.c_str());
            w.Key("python");
            w.String(r.torch.python.c_str());
            w.Key("threads");
            w.Int(r.torch.threads);
            w.Key("params");
            w.Uint64(r.torch.params);
            w.Key("tensors");
            w.Uint64(r.torch.tensors);
            w.Key("tensor_bytes");
            w.Uint64(r.torch.tensor_bytes);
            w.Key("file_bytes");
            w.Uint64(r.torch_bytes);
        }
        w.EndObject();
        w.Key("operations");
        w.StartObject();
        for (const series& s : r.ops) {
            if (s.seconds.empty()) continue;
            w.Key(s.key.c_str());
            write_series(w, s, s.baseline.empty() ? nullptr : r.find(s.baseline));
        }
        w.EndObject();
        w.Key("layouts_load_exact");
        w.Bool(r.layouts_exact);
        w.Key("layouts");
        w.StartObject();
        for (const layout_result& l : r.layouts) {
            w.Key(l.key.c_str());
            w.StartObject();
            w.Key("tensors");
            w.Uint64(l.tensors);
            w.Key("tensor_bytes");
            w.Uint64(l.tensor_bytes);
            w.Key("file_bytes");
            w.Uint64(l.file_bytes);
            w.Key("target");
            w.Bool(l.target);
            w.Key("operations");
            w.StartObject();
            for (const series* x : {&l.pread_xxh3, &l.shaped, &l.empty}) {
                w.Key(x->key.c_str());
                write_series(w, *x, x == &l.pread_xxh3 ? nullptr : &l.pread_xxh3);
            }
            w.EndObject();
            w.EndObject();
        }
        w.EndObject();
        if (const std::vector<double> spread = layout_spread(r); !spread.empty()) {
            w.Key("layout_spread");
            w.StartArray();
            for (const double x : spread) w.Double(x);
            w.EndArray();
            w.Key("layout_spread_stats");
            write_stats(w, stats_of(spread));
        }
        w.Key("peak_rss");
        w.StartObject();
        for (const rss_row& x : r.rss) {
            w.Key(x.key.c_str());
            write_rss(w, x.r);
        }
        w.EndObject();
        w.Key("targets");
        w.StartObject();
        for (const target& g : targets) {
            const verdict v = g.check(r);
            if (!v.measured) continue;
            w.Key(g.key.c_str());
            w.StartObject();
            w.Key("issue");
            w.String(g.issue.c_str());
            w.Key("label");
            w.String(g.label.c_str());
            w.Key("stated_at");
            w.String(g.stated_at.c_str());
            w.Key("value");
            w.String(v.value.c_str());
            w.Key("pass");
            w.Bool(v.pass);
            w.EndObject();
        }
        w.EndObject();
        w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    std::ofstream out(path, std::ios::trunc);
    out << buf.GetString() << '\n';
    if (!out) die("cannot write '" + path + "'");
}

} // namespace bench
