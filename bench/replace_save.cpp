// bench-replace_save: what replacing a checkpoint costs, against writing a fresh path.
//
//   bench-replace_save [--mib 256] [--saves 10] [--runs 5] [--gap-ms 0] [--dir DIR]
//
// --gap-ms N puts N ms of computation (a stand-in for training steps) before every save of
// every loop, untimed, as a training run has between its saves.
//
// Each run, in this order (the same state, the same memory, already touched):
//   raw      write + fsync of the same bytes to a new file, with posix_fallocate and
//            sync_file_range as ckpt's save uses them; the file removed outside the timing
//   fresh    ckpt::save to a path whose previous file was removed outside the timing
//   replace  ckpt::save over the previous save's file (the README's `last.ckpt` loop)
//   step0    a manager step whose retention deletes nothing (keep_last(1000))
//   step1    a manager step whose retention deletes the previous checkpoint (keep_last(1))
// Per call: the median of `saves` calls in a loop. Per loop: the total of the loop with the
// deletions included (fresh: its untimed removals; replace and step1: a flush of the released
// files at the end). Printed: min, median and max over the runs, and the ratios replace/fresh
// and step1/step0 per run. Where the freeing of the old blocks lands is printed too: the
// flush after the replace loop is the part the saves did not wait for.

#include "bench_stats.hpp"

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct big_state {
    Eigen::VectorXf a;
    Eigen::VectorXf b;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(a), CEREAL_NVP(b));
    }
};

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int gap_ms = 0;

/// `gap_ms` of computation on this thread: what training does between two saves.
void train_between_saves() {
    if (gap_ms <= 0) return;
    const auto until = clock_type::now() + std::chrono::milliseconds(gap_ms);
    volatile double x = 1.0;
    while (clock_type::now() < until) {
        for (int i = 0; i < 1000; ++i) x = x * 1.0000001 + 1e-9;
    }
}

/// write + fsync of `bytes` from `data` into a new file, as ckpt writes: reserved first, written
/// in 4 MiB slices with writeback started every 32 MiB.
double raw_write(const fs::path& path, const char* data, std::size_t bytes) {
    const auto t0 = clock_type::now();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) std::abort();
    (void)::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    constexpr std::size_t slice = std::size_t{4} << 20;
    constexpr std::size_t writeback = std::size_t{32} << 20;
    std::size_t done = 0;
    std::size_t synced = 0;
    while (done < bytes) {
        const ssize_t w = ::write(fd, data + done, std::min(slice, bytes - done));
        if (w <= 0) std::abort();
        done += static_cast<std::size_t>(w);
        if (done - synced >= writeback) {
            (void)::sync_file_range(fd, static_cast<off_t>(synced),
                                    static_cast<off_t>(done - synced), SYNC_FILE_RANGE_WRITE);
            synced = done;
        }
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) std::abort();
    return seconds_since(t0);
}

struct run_result {
    double raw = 0, fresh = 0, replace = 0, step0 = 0, step1 = 0; // per call, median
    double fresh_loop = 0, replace_loop = 0, step0_loop = 0, step1_loop = 0;
    double replace_flush = 0; ///< the flush after the replace loop
};

double median(std::vector<double> v) {
    return bench::stats_of(std::move(v)).median;
}

run_result one_run(const big_state& s, const fs::path& dir, int saves) {
    run_result r;
    std::vector<double> t;
    const std::vector<std::byte> probe = ckpt::save_to_memory(s); // the bytes a save writes

    // raw: the same bytes a save writes, to a new file
    for (int i = 0; i < saves; ++i) {
        fs::remove(dir / "raw.bin"); // outside the timing
        train_between_saves();
        t.push_back(
            raw_write(dir / "raw.bin", reinterpret_cast<const char*>(probe.data()), probe.size()));
    }
    r.raw = median(t);
    fs::remove(dir / "raw.bin");

    // fresh
    t.clear();
    auto loop0 = clock_type::now();
    for (int i = 0; i < saves; ++i) {
        fs::remove(dir / "fresh.ckpt"); // outside the timed call, inside the loop's total
        train_between_saves();
        const auto t0 = clock_type::now();
        ckpt::save(dir / "fresh.ckpt", s);
        t.push_back(seconds_since(t0));
    }
    r.fresh_loop = seconds_since(loop0);
    r.fresh = median(t);
    fs::remove(dir / "fresh.ckpt");

    // replace
    ckpt::save(dir / "last.ckpt", s);
    ckpt::io::default_backend().flush_releases();
    t.clear();
    loop0 = clock_type::now();
    for (int i = 0; i < saves; ++i) {
        train_between_saves();
        const auto t0 = clock_type::now();
        ckpt::save(dir / "last.ckpt", s);
        t.push_back(seconds_since(t0));
    }
    const auto f0 = clock_type::now();
    ckpt::io::default_backend().flush_releases();
    r.replace_flush = seconds_since(f0);
    r.replace_loop = seconds_since(loop0);
    r.replace = median(t);
    fs::remove(dir / "last.ckpt");

    // manager steps
    for (const int keep : {1000, 1}) {
        const fs::path mdir = dir / ("manager-" + std::to_string(keep));
        fs::remove_all(mdir);
        std::vector<double> steps;
        double loop = 0;
        {
            ckpt::manager m(mdir, ckpt::every_steps(1), ckpt::keep_last(keep));
            ckpt::metadata meta;
            meta.step = 1;
            (void)m.step(s, meta); // the first save deletes nothing in either mode
            ckpt::io::default_backend().flush_releases();
            loop0 = clock_type::now();
            for (int i = 0; i < saves; ++i) {
                ++meta.step;
                train_between_saves();
                const auto t0 = clock_type::now();
                (void)m.step(s, meta);
                steps.push_back(seconds_since(t0));
            }
            (void)m.wait(); // flushes the released files
            loop = seconds_since(loop0);
        }
        fs::remove_all(mdir);
        (keep == 1 ? r.step1 : r.step0) = median(steps);
        (keep == 1 ? r.step1_loop : r.step0_loop) = loop;
    }
    return r;
}

void print_row(const char* name, const std::vector<double>& v, double scale, const char* unit) {
    const bench::stats st = bench::stats_of(v);
    std::printf("  %-34s min %8.2f  median %8.2f  max %8.2f %s\n", name, st.min * scale,
                st.median * scale, st.max * scale, unit);
}

} // namespace

int main(int argc, char** argv) {
    std::size_t mib = 256;
    int saves = 10;
    int runs = 5;
    fs::path dir = "bench-replace-save";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--mib") {
            mib = std::strtoul(argv[i + 1], nullptr, 10);
        } else if (a == "--saves") {
            saves = std::atoi(argv[i + 1]);
        } else if (a == "--runs") {
            runs = std::atoi(argv[i + 1]);
        } else if (a == "--gap-ms") {
            gap_ms = std::atoi(argv[i + 1]);
        } else if (a == "--dir") {
            dir = argv[i + 1];
        } else {
            std::fprintf(stderr,
                         "usage: %s [--mib N] [--saves N] [--runs N] [--gap-ms N] [--dir D]\n",
                         argv[0]);
            return 2;
        }
    }
    fs::create_directories(dir);
    big_state s;
    const auto n = static_cast<Eigen::Index>(mib * (std::size_t{1} << 20) / 8); // two halves
    s.a = Eigen::VectorXf::LinSpaced(n, 0.0f, 1.0f);
    s.b = Eigen::VectorXf::LinSpaced(n, 1.0f, 2.0f);
    std::printf("bench-replace_save: %zu MiB of float32 in 2 tensors, %d saves per loop, %d runs, "
                "%d ms of computation before each save, in %s\n",
                mib, saves, runs, gap_ms, fs::absolute(dir).c_str());
    std::vector<run_result> results;
    for (int r = 0; r < runs; ++r) results.push_back(one_run(s, dir, saves));
    const auto col = [&](double run_result::*m) {
        std::vector<double> v;
        for (const auto& r : results) v.push_back(r.*m);
        return v;
    };
    const auto ratio = [&](double run_result::*a, double run_result::*b) {
        std::vector<double> v;
        for (const auto& r : results) v.push_back(r.*a / r.*b);
        return v;
    };
    std::printf("per call (median of each loop), over the runs:\n");
    print_row("raw write+fsync (fallocate, sfr)", col(&run_result::raw), 1e3, "ms");
    print_row("save, fresh path", col(&run_result::fresh), 1e3, "ms");
    print_row("save, replacing the file", col(&run_result::replace), 1e3, "ms");
    print_row("manager step, no delete", col(&run_result::step0), 1e3, "ms");
    print_row("manager step, retention deletes", col(&run_result::step1), 1e3, "ms");
    std::printf("loop totals with the deletions included:\n");
    print_row("fresh (with its untimed removes)", col(&run_result::fresh_loop), 1e3, "ms");
    print_row("replace (with the final flush)", col(&run_result::replace_loop), 1e3, "ms");
    print_row("  of which the final flush", col(&run_result::replace_flush), 1e3, "ms");
    print_row("manager, no delete", col(&run_result::step0_loop), 1e3, "ms");
    print_row("manager, deletes (with wait())", col(&run_result::step1_loop), 1e3, "ms");
    std::printf("ratios per run:\n");
    print_row("save replace / save fresh", ratio(&run_result::replace, &run_result::fresh), 1, "x");
    print_row("step delete / step no delete", ratio(&run_result::step1, &run_result::step0), 1,
              "x");
    print_row("save fresh / raw", ratio(&run_result::fresh, &run_result::raw), 1, "x");
    print_row("save replace / raw", ratio(&run_result::replace, &run_result::raw), 1, "x");
    fs::remove_all(dir);
    return 0;
}
