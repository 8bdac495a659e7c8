// ckpt ls DIR: a manager's directory, read only (no lock taken, nothing deleted).

#include "tool.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <system_error>

namespace ckpt_tool {

namespace {

/// The prefix of a manager's name: "<prefix>-<digits>" (+ ".ckpt", or a directory).
std::optional<std::string> prefix_of_stem(std::string_view stem) {
    const auto dash = stem.rfind('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 == stem.size()) return {};
    const std::string_view digits = stem.substr(dash + 1);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return {};
    }
    return std::string(stem.substr(0, dash));
}

/// The prefixes whose names the directory holds, sorted.
std::set<std::string> find_prefixes(const std::filesystem::path& dir) {
    std::set<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        std::error_code ec;
        std::optional<std::string> p;
        if (entry.is_symlink(ec)) continue;
        if (entry.is_directory(ec)) {
            p = prefix_of_stem(name);
        } else if (const auto at = name.find(".ckpt.tmp-"); at != std::string::npos) {
            p = prefix_of_stem(std::string_view(name).substr(0, at));
        } else if (name.ends_with(".ckpt")) {
            p = prefix_of_stem(std::string_view(name).substr(0, name.size() - 5));
        } else if (name.ends_with(".lock") && name.size() > 5) {
            p = name.substr(0, name.size() - 5);
        }
        if (p && p->find('/') == std::string::npos) out.insert(*p);
    }
    return out;
}

/// Which metric ranks "best": `--best NAME[:max]`, or the on_best rule whose state the newest
/// checkpoint carries in its tags ("ckpt.policy.on_best(loss,min,0)").
struct ranking {
    std::string metric;
    bool maximize = false;
    std::string source; ///< "--best" or "policy"
};

std::optional<ranking> ranking_of(const ls_args& args, const ckpt::directory_listing& listing) {
    if (!args.best_metric.empty()) {
        ranking r;
        r.metric = args.best_metric;
        r.source = "--best";
        if (const auto colon = r.metric.rfind(':'); colon != std::string::npos) {
            const std::string dir = r.metric.substr(colon + 1);
            if (dir != "max" && dir != "min") {
                throw std::invalid_argument("--best " + args.best_metric +
                                            ": the direction after ':' is min or max");
            }
            r.maximize = dir == "max";
            r.metric.resize(colon);
        }
        return r;
    }
    if (listing.checkpoints.empty()) return {};
    ckpt::metadata meta;
    try {
        meta = ckpt::reader(listing.checkpoints.back().path, {.verify = false}).info().meta;
    } catch (const ckpt::error&) {
        return {};
    }
    constexpr std::string_view key = "ckpt.policy.on_best(";
    for (const auto& [k, v] : meta.tags) {
        if (!k.starts_with(key)) continue;
        const std::string args_text = k.substr(key.size());
        const auto c1 = args_text.find(',');
        if (c1 == std::string::npos) continue;
        const auto c2 = args_text.find(',', c1 + 1);
        ranking r;
        r.metric = args_text.substr(0, c1);
        r.maximize = args_text.substr(c1 + 1, c2 - c1 - 1) == "max";
        r.source = "policy";
        return r;
    }
    return {};
}

void mark_best(ckpt::directory_listing& listing, const ranking& r) {
    ckpt::checkpoint_entry* best = nullptr;
    double best_value = 0;
    for (ckpt::checkpoint_entry& e : listing.checkpoints) {
        const auto it = e.metrics.find(r.metric);
        if (it == e.metrics.end() || std::isnan(it->second)) continue;
        // Ties go to the newer checkpoint, as the manager's ranking does.
        if (best == nullptr || (r.maximize ? it->second >= best_value : it->second <= best_value)) {
            best = &e;
            best_value = it->second;
        }
    }
    if (best != nullptr) best->best = true;
}

struct prefix_report {
    std::string prefix;
    ckpt::directory_listing listing;
    std::optional<ranking> rank;
};

std::string name_in(const std::filesystem::path& p) {
    return p.filename().string();
}

std::string lock_text(const prefix_report& r) {
    if (!r.listing.lock) return "not held";
    const ckpt::lock_holder& h = *r.listing.lock;
    return h.running ? "held by pid " + std::to_string(h.pid) + " (running)"
                     : "left by pid " + std::to_string(h.pid) +
                           ", which is no longer running (the lock is free)";
}

void print_text(const std::filesystem::path& dir, const std::vector<prefix_report>& reports,
                const std::vector<std::filesystem::path>& others, const terminal& term) {
    if (reports.empty()) std::printf("%s: no checkpoints\n", dir.c_str());
    for (const prefix_report& r : reports) {
        const auto& l = r.listing;
        std::printf("%s prefix \"%s\": %zu checkpoint%s, %s\n", term.bold(dir.string()).c_str(),
                    r.prefix.c_str(), l.checkpoints.size(), l.checkpoints.size() == 1 ? "" : "s",
                    human_bytes(l.checkpoint_bytes()).c_str());
        std::printf("  lock: %s\n", lock_text(r).c_str());
        if (r.rank) {
            std::printf("  best: by %s (%s, from %s)\n", r.rank->metric.c_str(),
                        r.rank->maximize ? "max" : "min", r.rank->source.c_str());
        }
        std::set<std::string> metric_names;
        for (const auto& e : l.checkpoints) {
            for (const auto& [k, v] : e.metrics) metric_names.insert(k);
        }
        std::vector<std::vector<std::string>> rows;
        std::vector<std::string> head = {"name", "step", "epoch", "time", "size"};
        head.insert(head.end(), metric_names.begin(), metric_names.end());
        head.push_back("");
        rows.push_back(head);
        for (const auto& e : l.checkpoints) {
            std::vector<std::string> row = {name_in(e.path) + (e.distributed ? "/" : ""),
                                            std::to_string(e.step), std::to_string(e.epoch),
                                            iso_time(e.time), human_bytes(e.bytes)};
            for (const std::string& m : metric_names) {
                const auto it = e.metrics.find(m);
                row.push_back(it == e.metrics.end() ? "-" : number_text(it->second));
            }
            std::string marks;
            if (e.latest) marks += "latest";
            if (e.best) marks += marks.empty() ? "best" : " best";
            if (e.distributed) marks += marks.empty() ? "distributed" : " distributed";
            row.push_back(marks);
            rows.push_back(row);
        }
        if (!l.checkpoints.empty()) {
            std::vector<std::size_t> width;
            for (const auto& row : rows) {
                width.resize(std::max(width.size(), row.size()));
                for (std::size_t c = 0; c < row.size(); ++c) {
                    width[c] = std::max(width[c], row[c].size());
                }
            }
            for (const auto& row : rows) {
                std::string line = " ";
                for (std::size_t c = 0; c < row.size(); ++c) {
                    line += " " + row[c];
                    if (c + 1 < row.size()) line += std::string(width[c] - row[c].size(), ' ');
                }
                while (!line.empty() && line.back() == ' ') line.pop_back();
                std::printf("%s\n", line.c_str());
            }
        }
        // Damaged checkpoints and foreign files, by name.
        std::vector<const ckpt::skipped_checkpoint*> damaged;
        for (const auto& s : l.unreadable) damaged.push_back(&s);
        auto d = damaged.begin();
        auto f = l.foreign.begin();
        while (d != damaged.end() || f != l.foreign.end()) {
            if (f == l.foreign.end() || (d != damaged.end() && (*d)->path < *f)) {
                std::printf("  %s   %s: %s\n", term.red("damaged").c_str(),
                            name_in((*d)->path).c_str(), (*d)->reason.c_str());
                ++d;
            } else {
                std::printf("  %s   %s: not a ckpt file; a manager skips it and never touches it\n",
                            term.yellow("foreign").c_str(), name_in(*f).c_str());
                ++f;
            }
        }
        for (const auto& p : l.temporaries) {
            std::printf("  temporary %s: left by a save that died; a manager removes it when it "
                        "starts\n",
                        name_in(p).c_str());
        }
        for (const auto& p : l.incomplete) {
            std::printf("  incomplete %s/: a distributed save that died before its commit; a "
                        "distributed manager removes it when it starts\n",
                        name_in(p).c_str());
        }
    }
    if (!others.empty()) {
        std::printf("not the manager's:\n");
        for (const auto& p : others) std::printf("  %s\n", name_in(p).c_str());
    }
}

void print_json_report(const std::filesystem::path& dir, const std::vector<prefix_report>& reports,
                       const std::vector<std::filesystem::path>& others) {
    rapidjson::StringBuffer buffer;
    json_writer w(buffer);
    w.StartObject();
    w.Key("directory");
    write_string(w, dir.string());
    w.Key("prefixes");
    w.StartArray();
    for (const prefix_report& r : reports) {
        const auto& l = r.listing;
        w.StartObject();
        w.Key("prefix");
        write_string(w, r.prefix);
        w.Key("checkpoint_bytes");
        w.Uint64(l.checkpoint_bytes());
        w.Key("best_metric");
        if (r.rank) {
            w.StartObject();
            w.Key("name");
            write_string(w, r.rank->metric);
            w.Key("goal");
            write_string(w, r.rank->maximize ? "max" : "min");
            w.Key("from");
            write_string(w, r.rank->source);
            w.EndObject();
        } else {
            w.Null();
        }
        w.Key("checkpoints");
        w.StartArray();
        for (const auto& e : l.checkpoints) {
            w.StartObject();
            w.Key("name");
            write_string(w, name_in(e.path));
            w.Key("path");
            write_string(w, e.path.string());
            w.Key("step");
            w.Int64(e.step);
            w.Key("epoch");
            w.Int64(e.epoch);
            w.Key("time");
            write_string(w, iso_time(e.time));
            w.Key("bytes");
            w.Uint64(e.bytes);
            w.Key("metrics");
            write_metrics(w, e.metrics);
            w.Key("latest");
            w.Bool(e.latest);
            w.Key("best");
            w.Bool(e.best);
            w.Key("distributed");
            w.Bool(e.distributed);
            w.EndObject();
        }
        w.EndArray();
        w.Key("damaged");
        w.StartArray();
        for (const auto& s : l.unreadable) {
            w.StartObject();
            w.Key("name");
            write_string(w, name_in(s.path));
            w.Key("error_id");
            w.Int(s.error_id);
            w.Key("error");
            write_string(w, s.reason);
            w.EndObject();
        }
        w.EndArray();
        const auto names = [&](const char* key, const std::vector<std::filesystem::path>& v) {
            w.Key(key);
            w.StartArray();
            for (const auto& p : v) write_string(w, name_in(p));
            w.EndArray();
        };
        names("foreign", l.foreign);
        names("temporaries", l.temporaries);
        names("incomplete", l.incomplete);
        w.Key("lock");
        if (l.lock) {
            w.StartObject();
            w.Key("pid");
            w.Int64(l.lock->pid);
            w.Key("running");
            w.Bool(l.lock->running);
            w.EndObject();
        } else {
            w.Null();
        }
        w.EndObject();
    }
    w.EndArray();
    w.Key("others");
    w.StartArray();
    for (const auto& p : others) write_string(w, name_in(p));
    w.EndArray();
    w.EndObject();
    print_json(buffer);
}

} // namespace

std::filesystem::path checkpoint_in(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec) || ckpt::is_distributed_checkpoint(path)) {
        return path;
    }
    const std::set<std::string> prefixes = find_prefixes(path);
    if (prefixes.size() != 1) {
        throw std::runtime_error("'" + path.string() + "' is a directory with " +
                                 (prefixes.empty()
                                      ? std::string("no checkpoints")
                                      : std::to_string(prefixes.size()) +
                                            " prefixes of checkpoints: name a checkpoint in it"));
    }
    const ckpt::directory_listing l = ckpt::scan_directory(path, {.prefix = *prefixes.begin()});
    if (l.checkpoints.empty()) {
        throw std::runtime_error("'" + path.string() + "' holds no readable checkpoint");
    }
    return l.checkpoints.back().path;
}

int run_ls(const ls_args& args, const terminal& term) {
    std::error_code ec;
    if (!std::filesystem::is_directory(args.directory, ec)) {
        print_error("ls", "'" + args.directory.string() + "' is not a directory");
        return exit_error;
    }
    std::set<std::string> prefixes;
    if (!args.prefix.empty()) {
        prefixes.insert(args.prefix);
    } else {
        prefixes = find_prefixes(args.directory);
    }
    std::vector<prefix_report> reports;
    std::optional<std::set<std::filesystem::path>> others;
    for (const std::string& p : prefixes) {
        prefix_report r;
        r.prefix = p;
        r.listing = ckpt::scan_directory(args.directory, {.prefix = p});
        r.rank = ranking_of(args, r.listing);
        if (r.rank) mark_best(r.listing, *r.rank);
        // A name is the manager's when any prefix claims it.
        std::set<std::filesystem::path> mine(r.listing.others.begin(), r.listing.others.end());
        if (!others) {
            others = std::move(mine);
        } else {
            std::set<std::filesystem::path> both;
            std::set_intersection(others->begin(), others->end(), mine.begin(), mine.end(),
                                  std::inserter(both, both.begin()));
            others = std::move(both);
        }
        reports.push_back(std::move(r));
    }
    std::vector<std::filesystem::path> rest;
    if (others) {
        for (const auto& p : *others) {
            const std::string name = name_in(p);
            const bool lock_file =
                name.ends_with(".lock") && prefixes.count(name.substr(0, name.size() - 5)) != 0;
            if (!lock_file) rest.push_back(p);
        }
    } else {
        for (const auto& entry : std::filesystem::directory_iterator(args.directory)) {
            rest.push_back(entry.path());
        }
        std::sort(rest.begin(), rest.end());
    }
    if (args.json) {
        print_json_report(args.directory, reports, rest);
    } else {
        print_text(args.directory, reports, rest, term);
    }
    return exit_ok;
}

} // namespace ckpt_tool
