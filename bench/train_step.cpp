// bench/train_step: the time of one training step of the built-in MLP with Adam, and what
// checkpointing with a ckpt::manager adds to a training run.
//
// 1. ckpt::nn::train_step (batch, input noise, forward, cross-entropy, backward, Adam) in float:
//      small  2-64-64-2        batch 64   two spirals
//      large  256-1024-1024-10 batch 128  random inputs, 10 classes
//    each as min/median/max over several runs of many steps, in microseconds per step.
// 2. The overhead of a demo-like policy: a manager with
//      every_steps(N) | on_best("val_loss"),  keep_last(3) | keep_best(1, "val_loss")
//    called on every step of a run of S steps (validation every V steps), against the same run
//    without it. Runs are interleaved, in alternating order, from the same initial state, so
//    that drift hits both alike; the baseline is the run without the manager, in the same
//    process. Saves fsync, so the share depends on the disk under --dir. A checkpoint holds the
//    model, Adam's two moments, and the state's loss history (one double per step so far).
// The program always exits 0 unless it cannot run at all: it is a benchmark, not a test.
//
// Usage: train_step [--runs N] [--dir PATH]

#include "bench_stats.hpp"

#include <ckpt/ckpt.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;
using state_t = ckpt::nn::train_state<float>;
using dataset_t = ckpt::nn::dataset<float>;

double seconds_since(bench_clock::time_point t0) {
    return std::chrono::duration<double>(bench_clock::now() - t0).count();
}

using bench::stats;
using bench::stats_of;

/// A model and its data.
struct problem {
    const char* name;
    std::vector<std::int64_t> sizes;
    std::int64_t batch;
    dataset_t train;
    dataset_t validation;
};

/// `n` points of `features` standard-normal inputs, labelled by the nearest of `classes` random
/// centres (drawn from `task_seed`; the points from `seed`): a task with structure, so that the
/// loss falls as a real one would, and a validation set of the same task.
dataset_t random_classes(std::int64_t n, std::int64_t features, std::int64_t classes,
                         std::uint64_t task_seed, std::uint64_t seed) {
    std::mt19937_64 task(task_seed);
    std::normal_distribution<float> normal(0.0F, 1.0F);
    ckpt::nn::matrix<float> centres(static_cast<Eigen::Index>(classes),
                                    static_cast<Eigen::Index>(features));
    for (Eigen::Index i = 0; i < centres.size(); ++i) centres.data()[i] = normal(task);
    std::mt19937_64 rng(seed);
    dataset_t d;
    d.inputs.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(features));
    for (Eigen::Index i = 0; i < d.inputs.size(); ++i) d.inputs.data()[i] = normal(rng);
    d.labels.resize(static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < d.inputs.rows(); ++i) {
        Eigen::Index nearest = 0;
        (centres.rowwise() - d.inputs.row(i)).rowwise().squaredNorm().minCoeff(&nearest);
        d.labels[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(nearest);
    }
    return d;
}

state_t initial_state(const problem& p) {
    state_t s;
    s.model = ckpt::nn::mlp<float>(p.sizes, ckpt::nn::activation::relu, 1);
    s.optimizer = ckpt::nn::adam<float>(s.model, {});
    s.sampler = ckpt::nn::sampler(p.train.size(), p.batch, 2);
    s.rng.seed(3);
    return s;
}

/// Seconds per step of each of `runs` runs of `steps` steps (after one untimed warm-up run).
std::vector<double> time_steps(const problem& p, int runs, int steps) {
    state_t s = initial_state(p);
    std::vector<double> per_step;
    for (int r = -1; r < runs; ++r) {
        const auto t0 = bench_clock::now();
        for (int i = 0; i < steps; ++i) ckpt::nn::train_step(s, p.train);
        if (r >= 0) per_step.push_back(seconds_since(t0) / steps);
    }
    return per_step;
}

struct overhead_setup {
    std::int64_t steps;      ///< S: steps of one run
    std::int64_t every;      ///< N: every_steps(N)
    std::int64_t validation; ///< V: validation every V steps
};

struct run_result {
    double seconds = 0;
    ckpt::manager_stats manager{};
    std::uint64_t last_file_bytes = 0;
};

/// One training run of `setup.steps` steps from `start`; with a manager on `dir` when not empty.
run_result training_run(const problem& p, const state_t& start, const overhead_setup& setup,
                        const fs::path& dir) {
    state_t s = start;
    run_result out;
    if (!dir.empty()) {
        std::error_code ec;
        fs::remove_all(dir, ec); // a fresh directory per run: no earlier checkpoint counts
    }
    std::optional<ckpt::manager> m;
    const auto t0 = bench_clock::now();
    if (!dir.empty()) {
        m.emplace(dir, ckpt::every_steps(setup.every) | ckpt::on_best("val_loss"),
                  ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss"));
    }
    double val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, p.validation));
    for (std::int64_t step = 1; step <= setup.steps; ++step) {
        ckpt::nn::train_step(s, p.train);
        if (step % setup.validation == 0) {
            val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, p.validation));
        }
        if (m) {
            m->step(s, {.step = s.step, .epoch = s.epoch, .metrics = {{"val_loss", val_loss}}});
        }
    }
    out.seconds = seconds_since(t0);
    if (m) {
        out.manager = m->stats();
        const auto listed = m->list();
        if (!listed.empty()) out.last_file_bytes = listed.back().bytes;
    }
    return out;
}

std::string sizes_text(const std::vector<std::int64_t>& sizes) {
    std::string s;
    for (std::size_t i = 0; i < sizes.size(); ++i)
        s += (i > 0 ? "-" : "") + std::to_string(sizes[i]);
    return s;
}

/// Prints the step time, and returns its median in seconds.
double print_step_times(const problem& p, int runs, int steps) {
    const stats t = stats_of(time_steps(p, runs, steps));
    std::printf("  %-6s %-17s batch %4lld %10.1f %10.1f %10.1f   (%d runs of %d steps)\n", p.name,
                sizes_text(p.sizes).c_str(), static_cast<long long>(p.batch), t.min * 1e6,
                t.median * 1e6, t.max * 1e6, runs, steps);
    return t.median;
}

/// `step_seconds`: the median step time measured above, to express a save in steps.
void print_overhead(const problem& p, const overhead_setup& setup, int runs, const fs::path& dir,
                    double step_seconds) {
    const state_t start = initial_state(p);
    training_run(p, start, setup, dir); // warm-up: caches, the page cache, the directory
    std::vector<double> with;
    std::vector<double> without;
    std::vector<double> share;
    std::vector<double> per_save;
    std::vector<double> in_saves;
    run_result last;
    for (int r = 0; r < runs; ++r) {
        // Alternate which goes first, so that neither always runs on a warmer machine.
        run_result a;
        run_result b;
        if (r % 2 == 0) {
            a = training_run(p, start, setup, dir);
            b = training_run(p, start, setup, {});
        } else {
            b = training_run(p, start, setup, {});
            a = training_run(p, start, setup, dir);
        }
        with.push_back(a.seconds);
        without.push_back(b.seconds);
        share.push_back(100.0 * (a.seconds - b.seconds) / b.seconds);
        in_saves.push_back(100.0 * a.manager.total_save_seconds / b.seconds);
        if (a.manager.checkpoints_written > 0) {
            per_save.push_back(a.manager.total_save_seconds /
                               static_cast<double>(a.manager.checkpoints_written));
        }
        last = a;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    const stats tw = stats_of(with);
    const stats to = stats_of(without);
    const stats sh = stats_of(share);
    const stats ps = stats_of(per_save);
    const stats is = stats_of(in_saves);
    std::printf("  %s: %lld steps, every_steps(%lld) | on_best(val_loss), validation every %lld "
                "steps; %llu saves a run, %llu kept\n",
                p.name, static_cast<long long>(setup.steps), static_cast<long long>(setup.every),
                static_cast<long long>(setup.validation),
                static_cast<unsigned long long>(last.manager.checkpoints_written),
                static_cast<unsigned long long>(last.manager.checkpoints_on_disk));
    std::printf("    run without manager %10.1f %10.1f %10.1f ms (the baseline)\n", to.min * 1e3,
                to.median * 1e3, to.max * 1e3);
    std::printf("    run with manager    %10.1f %10.1f %10.1f ms\n", tw.min * 1e3, tw.median * 1e3,
                tw.max * 1e3);
    std::printf("    overhead            %10.2f %10.2f %10.2f %%  of the baseline, per run pair\n",
                sh.min, sh.median, sh.max);
    std::printf("    time per save       %10.3f %10.3f %10.3f ms (median: %.1f training steps)\n",
                ps.min * 1e3, ps.median * 1e3, ps.max * 1e3, ps.median / step_seconds);
    std::printf("    time in saves       %10.2f %10.2f %10.2f %%  of the baseline (manager_stats: "
                "less noisy, leaves out retention's deletions)\n",
                is.min, is.median, is.max);
    std::printf("    file size           %10.1f KiB (%llu bytes, the last checkpoint)\n",
                static_cast<double>(last.last_file_bytes) / 1024.0,
                static_cast<unsigned long long>(last.last_file_bytes));
}

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: train_step [--runs N] [--dir PATH]\n"
                 "  --runs N    timed runs of each measurement (default 5)\n"
                 "  --dir PATH  where the manager writes (default: a new folder in the system's\n"
                 "              temporary directory); a folder inside it is removed at the end\n");
    std::exit(status);
}

} // namespace

int main(int argc, char** argv) {
    int runs = 5;
    fs::path base;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") usage(0);
        if (i + 1 >= argc) usage(2);
        if (arg == "--runs") {
            runs = std::atoi(argv[++i]);
            if (runs < 1) usage(2);
        } else if (arg == "--dir") {
            base = argv[++i];
        } else {
            usage(2);
        }
    }
    try {
        if (base.empty()) base = fs::temp_directory_path();
        const fs::path dir = base / ("ckpt-bench-train_step-" + std::to_string(::getpid()));

        problem small{"small",
                      {2, 64, 64, 2},
                      64,
                      ckpt::nn::two_spirals<float>(1000, 0.02, 1),
                      ckpt::nn::two_spirals<float>(250, 0.02, 2)};
        problem large{"large",
                      {256, 1024, 1024, 10},
                      128,
                      random_classes(4096, 256, 10, 7, 1),
                      random_classes(512, 256, 10, 7, 2)};

        std::printf("ckpt::nn::train_step, float, mlp + adam, us/step     min     median"
                    "        max\n");
        const double small_step = print_step_times(small, runs, 2000);
        const double large_step = print_step_times(large, runs, 10);

        std::printf("\nckpt::manager on every step, keep_last(3) | keep_best(1, val_loss), in %s\n",
                    base.string().c_str());
        std::printf("                              min     median        max\n");
        print_overhead(small, {.steps = 3000, .every = 500, .validation = 100}, runs, dir,
                       small_step);
        print_overhead(large, {.steps = 40, .every = 20, .validation = 10}, runs, dir, large_step);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "train_step: %s\n", e.what());
        return 2;
    }
    return 0;
}
