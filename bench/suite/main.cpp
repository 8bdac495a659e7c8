// bench/suite: ckpt against the limits of the machine and against what a user would otherwise
// write, on a training state of 1, 64 and 256 MiB (1 GiB with --big).
//
// The state is what a training run checkpoints: a model (an embedding and a projection matrix,
// and 64 to 512 small Linear layers holding about 10% of the parameters), Adam's exp_avg and
// exp_avg_sq shaped like every parameter, an mt19937_64 and a few scalars; float32, so the
// bytes are 3 x 4 x the parameter count. The torch peer (bench/torch_peer.py) builds the same
// tensors as an nn.Module and a torch.optim.Adam after one step.
//
// Each figure is min / median / max over --runs runs. In every run each operation is timed
// once, in an order that rotates from run to run, and the main baselines run right before or
// right after (alternately) the ckpt operation they are compared with, so drift hits both
// alike; a ratio is taken between two operations of the *same* run, then summarised. The minor
// page faults of the process during each operation are counted too (getrusage).
//   baselines  memcpy of the tensor bytes into a pre-faulted buffer; open/write/fsync/close of
//              the checkpoint's byte count from one buffer, plain and the way ckpt writes
//              (posix_fallocate, 4 MiB writes, sync_file_range every 32 MiB); a pread loop of
//              the checkpoint into a pre-faulted buffer (warm page cache); XXH3_64bits over
//              those bytes, as xxHash builds it for this target; pread + XXH3_64bits (a
//              verified read).
//   ckpt       save to a fresh path (vs both writes) and over the existing file (vs the
//              fresh save); a manager's step without and with a retention delete; load, warm
//              cache, into a pre-shaped state (vs pread, and vs pread + XXH3: ckpt verifies the
//              checksum before it decodes) and into an empty one (vs pread + XXH3); a resume
//              (build a zeroed state, then load); inspect, header only (absolute); inspect
//              with verify (vs pread + XXH3); async_saver: the stall of save() (vs memcpy) and
//              the background time from save() returning to wait() returning (vs write+fsync),
//              in the steady state after a first (cold) save, whose figures are printed once.
//   layouts    tensor granularity, at each size >= 64 MiB: the same bytes as 2, 64, 64 KiB
//              and 4 KiB tensors, each file saved anew, then pread + XXH3 against a load into
//              a shaped and into an empty state (layouts.cpp).
//   peers      cereal's BinaryOutputArchive/BinaryInputArchive through std::ofstream/ifstream,
//              Eigen matrices hand-written as rows, cols, binary_data, the file fsynced after;
//              torch.save (then fsync) and torch.load of {"model", "optimizer"} state dicts
//              holding as many float32 parameters, and a resume (a new model and Adam, then
//              torch.load and load_state_dict), interleaved with the C++ runs through a server
//              process (skipped, with a note, when the Python has no torch).
// A "time / baseline" ratio below 1 is faster than the baseline. Peak RSS of each operation
// is measured in a fresh process (a fork, or the Python process) whose VmHWM is reset just
// before it; "peak - state" includes that process's own baseline (a few MiB for C++, the
// interpreter and torch for Python), "peak - before" is what the operation itself added.
// The targets of issues 6 and 17 are printed with PASS/MISS marks; they are informational: the
// program exits 0 unless it cannot run at all. It is built by default and never run by the
// tests. bench/README.md explains every row and column.
//
// Usage: bench-suite [--runs N] [--sizes 1,64,256 | --big] [--in-flight N] [--dir PATH]
//                    [--python PATH] [--torch-peer PATH] [--no-torch] [--no-rss]
//                    [--no-layouts] [--json FILE] [--markdown]
//
// The files of bench/suite/: main.cpp (this: the work directory, the order of the
// measurements, the summary); options (the command line); state (the training state and its
// shapes); baselines (memcpy, write+fsync, pread, XXH3); cereal_peer; torch_peer and
// python_process (the torch peer script as a child process); rss (peak RSS in a forked child);
// measure (the timed runs and the RSS measurements of one size); layouts (tensor granularity);
// results (what they give); targets (issues 6 and 17's targets and verdicts); report (the
// tables) and report_json (--json); machine (the environment printed with the results);
// format, clock (and minor faults), cleanup (helpers).

#include "cleanup.hpp"
#include "clock.hpp"
#include "format.hpp"
#include "layouts.hpp"
#include "machine.hpp"
#include "measure.hpp"
#include "options.hpp"
#include "report.hpp"
#include "report_json.hpp"
#include "results.hpp"
#include "state.hpp"

#include <ckpt/version.hpp>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#ifndef CKPT_BENCH_WORK_DIR
#define CKPT_BENCH_WORK_DIR "."
#endif

namespace fs = std::filesystem;
using namespace bench; // NOLINT: main uses the suite's names unqualified

int main(int argc, char** argv) {
    options opt = parse(argc, argv);
    std::signal(SIGPIPE, SIG_IGN); // a torch peer that dies must not take this program with it

    // Where the files go: a new directory (removed at the end), or the given one (only the
    // files this program writes are removed).
    fs::path dir;
    g_cleanup.owner = ::getpid();
    if (opt.dir.empty()) {
        std::error_code ec;
        const fs::path base = fs::is_directory(CKPT_BENCH_WORK_DIR, ec)
                                  ? fs::path(CKPT_BENCH_WORK_DIR)
                                  : fs::current_path();
        std::string templ = (base / "bench-suite-XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) die_errno("mkdtemp", templ);
        dir = templ;
        g_cleanup.own_dir = true;
    } else {
        dir = opt.dir;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) die("cannot create '" + dir.string() + "': " + ec.message());
    }
    std::snprintf(g_cleanup.dir.data(), g_cleanup.dir.size(), "%s", dir.string().c_str());
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    // The names are cleanup.cpp's too, which removes them on an error or a signal.
    const work_paths paths{(dir / "state.ckpt").string(),     (dir / "async.ckpt").string(),
                           (dir / "raw.bin").string(),        (dir / "cereal.bin").string(),
                           (dir / "torch.pt").string(),       (dir / "rss-state.ckpt").string(),
                           (dir / "rss-cereal.bin").string(), (dir / "rss-torch.pt").string(),
                           (dir / "layout.ckpt").string(),    (dir / "manager-keep").string(),
                           (dir / "manager-delete").string()};
    opt.torch.log = (dir / "torch_peer.log").string();
    if (opt.torch.enabled && !fs::exists(opt.torch.script)) {
        progress("no torch peer script at %s: torch skipped", opt.torch.script.c_str());
        opt.torch.enabled = false;
    }
    const auto env = environment(dir, opt);

    std::string torch_skipped = opt.torch.enabled ? "" : "--no-torch, or no peer script";
    std::vector<size_result> results;
    for (const std::uint64_t target : opt.sizes) {
        size_result r;
        r.target_mib = target;
        r.shape = shape_for(target);
        results.push_back(std::move(r));
    }
    try {
        // Peak RSS first, while this process is small: a forked child counts its pages.
        // Once the torch peer fails to start, it is not tried again.
        const auto torch_gone = [&](const size_result& r) {
            if (!opt.torch.enabled || r.torch.error.empty()) return;
            torch_skipped = r.torch.error;
            opt.torch.enabled = false;
        };
        if (opt.rss) {
            for (size_result& r : results) {
                progress("%s: peak RSS of each operation", size_name(r.target_mib).c_str());
                measure_rss(r, opt, paths);
                torch_gone(r);
            }
        }
        for (size_result& r : results) {
            progress("%s: timing, %d runs", size_name(r.target_mib).c_str(), opt.runs);
            measure_times(r, opt, paths);
            torch_gone(r);
            // After the timed runs, whose states are gone by then: the peak stays near 4 x size.
            if (opt.layouts && r.target_mib >= layouts_min_mib) {
                progress("%s: tensor granularity, %d runs", size_name(r.target_mib).c_str(),
                         opt.runs);
                measure_layouts(r, opt, paths.layout);
            }
        }
    } catch (const std::exception& e) {
        die(std::string("failed: ") + e.what());
    }
    std::string torch_log;
    {
        std::ifstream in(opt.torch.log);
        std::stringstream ss;
        ss << in.rdbuf();
        torch_log = ss.str();
    }
    remove_work_files();

    // --- What was measured, where
    const size_result& first = results.front();
    std::vector<std::pair<std::string, std::string>> shown;
    for (const auto& kv : env) {
        if (kv.first != "directory") shown.push_back(kv);
    }
    if (torch_skipped.empty() && !first.torch.version.empty()) {
        shown.emplace_back("torch", first.torch.version + " (Python " + first.torch.python +
                                        ", torch.get_num_threads() = " +
                                        std::to_string(first.torch.threads) + ")");
    } else {
        shown.emplace_back("torch", "skipped: " + torch_skipped);
    }
    std::printf(opt.markdown ? "ckpt `bench-suite` %s, %d runs per size, every figure min / "
                               "median / max:\n\n"
                             : "ckpt bench-suite %s: %d runs per size, every figure min / median "
                               "/ max\n",
                CKPT_VERSION_STRING, opt.runs);
    for (const auto& [k, v] : shown)
        std::printf(opt.markdown ? "- %s: %s\n" : "  %-22s %s\n", k.c_str(), v.c_str());

    for (const size_result& r : results) {
        print_times(r, opt);
        print_layouts(r, opt);
    }
    print_peers(results, opt);
    if (opt.rss) print_rss(results, opt);
    print_targets(results, opt);

    // --- Notes and warnings
    std::printf("\n");
    for (const size_result& r : results) {
        if (!r.ckpt_exact)
            std::printf("WARNING: the %s ckpt load did not give back the saved state\n",
                        size_name(r.target_mib).c_str());
        if (!r.layouts_exact)
            std::printf("WARNING: a %s load of the tensor granularity layouts did not give back "
                        "the saved tensors\n",
                        size_name(r.target_mib).c_str());
        if (!r.cereal_exact)
            std::printf("WARNING: the %s cereal load did not give back the saved state\n",
                        size_name(r.target_mib).c_str());
        if (r.torch_bytes > 0 && r.torch.params != r.params)
            std::printf("WARNING: the %s torch state has %llu parameters, ckpt's %llu\n",
                        size_name(r.target_mib).c_str(),
                        static_cast<unsigned long long>(r.torch.params),
                        static_cast<unsigned long long>(r.params));
    }
    if (!torch_skipped.empty()) {
        std::printf("note: the torch peer was skipped: %s\n", torch_skipped.c_str());
        if (!torch_log.empty()) std::printf("torch_peer.log:\n%s\n", torch_log.c_str());
    }
    const bool tmpfs = std::any_of(env.begin(), env.end(), [](const auto& kv) {
        return kv.first == "filesystem" && kv.second.rfind("tmpfs", 0) == 0;
    });
    if (tmpfs) {
        std::printf("note: the files are on tmpfs: fsync costs nothing there, and the write "
                    "figures say nothing about a disk\n");
    }
    if (!opt.json.empty()) write_json(opt.json, results, opt, env);
    return 0;
}
