// bench/manager_step: what ckpt::manager::step costs on the steps where it does not save.
//
// A training loop calls step() every step, so the no-save path must be a few comparisons. With
// a policy that never fires in the timed loops (every_steps(10^9) and on_best with a metric that
// never beats the warm-up save's value), it measures, interleaved run by run:
//   - baseline: a loop of the same length that only updates the step's metadata;
//   - step() with every_steps(10^9) | on_best("val_loss") (no clock);
//   - baseline + system_clock::now(), the clock read alone;
//   - step() with every_steps(10^9) | on_best("val_loss") | every(1h) (reads the clock).
// Both managers also rank by val_loss for retention (keep_last(3) | keep_best(1, "val_loss")).
// Ratios are manager time / baseline time of the same run; "overhead" is the difference.
//
// It also proves the two promises of step()'s documentation:
//   - no allocation: this program replaces every unaligned operator new and delete with
//     counting ones, and reads the count around each timed loop;
//   - no system call: a child process runs the same loops under a seccomp filter that traps
//     every system call (SIGSYS, counted by the handler) except exit and rt_sigreturn; the
//     clock is read through the vDSO, which is no system call. (The same can be seen from the
//     outside with `perf stat -e raw_syscalls:sys_enter` or `strace -f -c` on a run with a large
//     --steps: the count does not grow with it.)
// With --async the managers save in the background (manager_options::async); step() then also
// checks, with one atomic load, whether a background save has finished.
// The program always exits 0 unless it cannot run at all: it is a benchmark, not a test.
//
// Usage: manager_step [--steps N] [--runs R] [--async]

#include "../tests/new_hook.hpp" // replaces operator new and delete; calls test::new_hook
#include "bench_stats.hpp"

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Counting allocator: tests/new_hook.hpp replaces every unaligned operator new and delete (so that
// nothing allocated here is freed by another allocator), and main() sets its hook to count them.

namespace {
std::atomic<std::uint64_t> g_allocations{0};

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The state and the loops

struct train_state {
    Eigen::MatrixXf weight; // 1 MiB: step() must not touch it when it does not save
    Eigen::VectorXf bias;
    std::int64_t step = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(step));
    }
};

/// Keeps the compiler from dropping or hoisting the stores to `p`.
inline void escape(const void* p) {
    asm volatile("" : : "r"(p) : "memory");
}

/// A validation loss that never beats the warm-up save's 1.0.
inline double loss_of(std::int64_t s) {
    return 2.0 + static_cast<double>(s & 7) * 0.125;
}

/// One run's loop: `n` steps from `first`; `with_clock` adds a system_clock read to the
/// baseline, `m` (when not null) calls step(). @returns the number of saves
std::int64_t run_loop(ckpt::manager* m, const train_state& state, ckpt::metadata& meta,
                      double& loss, std::int64_t first, std::int64_t n, bool with_clock) {
    std::int64_t saves = 0;
    const std::int64_t last = first + n;
    if (m != nullptr) {
        for (std::int64_t s = first; s < last; ++s) {
            meta.step = s;
            loss = loss_of(s);
            escape(&meta);
            if (m->step(state, meta)) ++saves;
        }
    } else if (with_clock) {
        for (std::int64_t s = first; s < last; ++s) {
            meta.step = s;
            loss = loss_of(s);
            const auto t = std::chrono::system_clock::now();
            escape(&t);
            escape(&meta);
        }
    } else {
        for (std::int64_t s = first; s < last; ++s) {
            meta.step = s;
            loss = loss_of(s);
            escape(&meta);
        }
    }
    return saves;
}

/// The benchmark's fixture: a state, its metadata, and the two managers (one folder each).
struct fixture {
    train_state state;
    ckpt::metadata meta;
    double* loss = nullptr;
    std::unique_ptr<ckpt::manager> no_clock;
    std::unique_ptr<ckpt::manager> with_clock;
    std::int64_t next_step = 1;

    fixture(const fs::path& dir, bool async) {
        state.weight = Eigen::MatrixXf::Constant(512, 512, 0.5F);
        state.bias = Eigen::VectorXf::Zero(512);
        meta.metrics["val_loss"] = 1.0;
        loss = &meta.metrics["val_loss"];
        const auto keep = [] { return ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss"); };
        ckpt::manager_options o;
        if (async) o.async = ckpt::async_options{};
        no_clock = std::make_unique<ckpt::manager>(
            dir / "no-clock", ckpt::every_steps(1'000'000'000) | ckpt::on_best("val_loss"), keep(),
            o);
        with_clock = std::make_unique<ckpt::manager>(dir / "clock",
                                                     ckpt::every_steps(1'000'000'000) |
                                                         ckpt::on_best("val_loss") |
                                                         ckpt::every(std::chrono::hours(1)),
                                                     keep(), o);
        // Warm-up: on_best fires on the first value, 1.0; nothing after it improves on it.
        meta.step = next_step++;
        if (!no_clock->step(state, meta) || !with_clock->step(state, meta)) {
            throw std::runtime_error("the warm-up step did not save");
        }
        // Async: the warm-up saves are committed, and the step that sees it has run.
        no_clock->wait();
        with_clock->wait();
    }

    /// Runs `n` steps of one variant. 0: baseline, 1: no clock, 2: baseline + clock, 3: clock.
    std::int64_t run(int variant, std::int64_t n) {
        ckpt::manager* m = variant == 1   ? no_clock.get()
                           : variant == 3 ? with_clock.get()
                                          : nullptr;
        const std::int64_t saves = run_loop(m, state, meta, *loss, next_step, n, variant == 2);
        next_step += n;
        return saves;
    }
};

constexpr int variants = 4;
const char* const variant_name[variants] = {
    "baseline: metadata update only",
    "step(): every_steps | on_best",
    "baseline + system_clock::now()",
    "step(): every_steps | on_best | every(1h)",
};

// ---------------------------------------------------------------------------------------------
// System calls, counted under seccomp in a child

struct syscall_probe {
    int installed = 0;       ///< the filter is in place
    std::uint64_t traps = 0; ///< system calls trapped so far
    std::uint64_t per_variant[variants] = {};
    std::uint64_t control = 0; ///< traps for one deliberate getppid() (must be 1)
    long first_nr[8] = {};     ///< the first trapped system calls' numbers
    char error[160] = {};
};

syscall_probe* g_probe = nullptr; // in memory shared with the parent

void on_sigsys(int, siginfo_t* info, void*) {
    const std::uint64_t i = g_probe->traps++;
    if (i < 8) g_probe->first_nr[i] = info->si_syscall;
}

/// Traps every system call but the ones that end the process or return from the handler.
bool install_trap_all(char* error, std::size_t size) {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) {
        std::snprintf(error, size, "sigaction: %s", std::strerror(errno));
        return false;
    }
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    sock_fprog program{};
    program.len = static_cast<unsigned short>(sizeof filter / sizeof filter[0]);
    program.filter = filter;
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        std::snprintf(error, size, "seccomp: %s", std::strerror(errno));
        return false;
    }
    return true;
}

/// Runs `n` steps of each manager variant in a child under the filter. @returns what it saw
syscall_probe count_syscalls(const fs::path& dir, std::int64_t n, bool async) {
    void* shared = ::mmap(nullptr, sizeof(syscall_probe), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    syscall_probe result;
    if (shared == MAP_FAILED) {
        std::snprintf(result.error, sizeof result.error, "mmap: %s", std::strerror(errno));
        return result;
    }
    g_probe = new (shared) syscall_probe();
    std::fflush(nullptr);
    const ::pid_t pid = ::fork();
    if (pid == 0) {
        try {
            fixture f(dir, async);
            f.run(1, 1000); // fault the code and data in before the filter
            f.run(3, 1000);
            if (install_trap_all(g_probe->error, sizeof g_probe->error)) {
                g_probe->installed = 1;
                for (const int v : {1, 3}) {
                    const std::uint64_t before = g_probe->traps;
                    f.run(v, n);
                    g_probe->per_variant[v] = g_probe->traps - before;
                }
                // The control: one system call on purpose must count as one.
                const std::uint64_t before = g_probe->traps;
                ::syscall(SYS_getppid);
                g_probe->control = g_probe->traps - before;
                ::_exit(0); // now: the fixture's destructors would make system calls
            }
        } catch (const std::exception& e) {
            std::snprintf(g_probe->error, sizeof g_probe->error, "%s", e.what());
        }
        ::_exit(0); // exit_group: allowed
    }
    if (pid < 0) {
        std::snprintf(result.error, sizeof result.error, "fork: %s", std::strerror(errno));
    } else {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        result = *g_probe;
        if (!WIFEXITED(status) && result.error[0] == '\0') {
            std::snprintf(result.error, sizeof result.error, "the child died (status %d)", status);
        }
    }
    ::munmap(shared, sizeof(syscall_probe));
    g_probe = nullptr;
    return result;
}

// ---------------------------------------------------------------------------------------------
// Statistics and the command line

using bench::stats;
using bench::stats_of;

std::vector<double> combine(const std::vector<double>& a, const std::vector<double>& b,
                            double (*f)(double, double)) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(f(a[i], b[i]));
    return r;
}

struct options {
    std::int64_t steps = 10'000'000;
    int runs = 7;
    bool async = false;
};

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: manager_step [--steps N] [--runs R] [--async]\n"
                 "  --steps N  step() calls per timed loop (default 10000000)\n"
                 "  --runs R   timed runs of each variant (default 7)\n"
                 "  --async    managers that save in the background (manager_options::async)\n");
    std::exit(status);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(0);
        } else if (a == "--steps") {
            const long long n = std::strtoll(value().c_str(), nullptr, 10);
            if (n < 1000 || n > 100'000'000'000LL) usage(2);
            o.steps = n;
        } else if (a == "--runs") {
            const long n = std::strtol(value().c_str(), nullptr, 10);
            if (n < 1 || n > 1000) usage(2);
            o.runs = static_cast<int>(n);
        } else if (a == "--async") {
            o.async = true;
        } else {
            usage(2);
        }
    }
    return o;
}

std::string first_line(const char* path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line.empty() ? "?" : line;
}

} // namespace

int main(int argc, char** argv) {
    test::new_hook = [](std::size_t) { g_allocations.fetch_add(1, std::memory_order_relaxed); };
    const options opt = parse(argc, argv);

    std::string templ = (fs::current_path() / "ckpt-bench-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
        std::fprintf(stderr, "manager_step: mkdtemp '%s': %s\n", templ.c_str(),
                     std::strerror(errno));
        return 2;
    }
    const fs::path dir = templ;

    std::printf(
        "ckpt bench/manager_step: manager::step without a save, %lld steps per loop, %d "
        "runs%s\nclock source: %s\n\n",
        static_cast<long long>(opt.steps), opt.runs, opt.async ? ", managers in async mode" : "",
        first_line("/sys/devices/system/clocksource/clocksource0/current_clocksource").c_str());

    std::vector<double> ns[variants];
    std::uint64_t allocations[variants] = {};
    std::int64_t saves[variants] = {};
    syscall_probe probe;
    std::uint64_t setup_allocations = 0; ///< the control: the managers' setup and first save
    const std::int64_t probe_steps = std::min<std::int64_t>(opt.steps, 1'000'000);
    try {
        {
            const std::uint64_t before = g_allocations.load(std::memory_order_relaxed);
            fixture f(dir / "timed", opt.async);
            setup_allocations = g_allocations.load(std::memory_order_relaxed) - before;
            for (int v = 0; v < variants; ++v) f.run(v, opt.steps / 10); // warm-up
            for (int r = 0; r < opt.runs; ++r) {
                // Rotate the order so that drift hits every variant alike.
                for (int k = 0; k < variants; ++k) {
                    const int v = (k + r) % variants;
                    const std::uint64_t a0 = g_allocations.load(std::memory_order_relaxed);
                    const auto t0 = bench_clock::now();
                    saves[v] += f.run(v, opt.steps);
                    const auto t1 = bench_clock::now();
                    allocations[v] += g_allocations.load(std::memory_order_relaxed) - a0;
                    ns[v].push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                                    static_cast<double>(opt.steps));
                }
            }
        }
        probe = count_syscalls(dir / "seccomp", probe_steps, opt.async);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "manager_step: ckpt failed: %s\n", e.what());
        std::error_code ec;
        fs::remove_all(dir, ec);
        return 2;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);

    // --- Time
    std::printf("ns per step, min / median / max over %d runs; ratio = step() loop time / its "
                "baseline's\nin the same run; overhead = the difference, ns per step\n",
                opt.runs);
    std::printf("%-42s %25s   %22s   %s\n", "", "ns/step min/median/max", "ratio min/median/max",
                "overhead (median)");
    const auto ratio = [](double a, double b) { return a / b; };
    const auto minus = [](double a, double b) { return a - b; };
    for (int v = 0; v < variants; ++v) {
        const stats t = stats_of(ns[v]);
        std::printf("%-42s %7.2f / %7.2f / %7.2f", variant_name[v], t.min, t.median, t.max);
        if (v % 2 == 1) {
            const stats q = stats_of(combine(ns[v], ns[v - 1], ratio));
            const stats d = stats_of(combine(ns[v], ns[v - 1], minus));
            std::printf("   %6.1fx / %6.1fx / %6.1fx   %7.2f ns", q.min, q.median, q.max, d.median);
        }
        std::printf("\n");
    }
    const stats clockless = stats_of(combine(ns[1], ns[0], minus));
    const stats clocked = stats_of(combine(ns[3], ns[0], minus));
    std::printf("(the every(1h) line against the plain baseline: %.2f ns/step overhead, median)\n",
                clocked.median);

    // --- Allocations and saves
    std::printf("\nallocations during the timed loops (operator new, every unaligned form), "
                "%d x %lld steps each:\n",
                opt.runs, static_cast<long long>(opt.steps));
    for (int v = 0; v < variants; ++v) {
        std::printf("  %-42s %llu\n", variant_name[v],
                    static_cast<unsigned long long>(allocations[v]));
    }
    std::printf("  control: building the managers and their first save  %llu (must be > 0)\n",
                static_cast<unsigned long long>(setup_allocations));
    std::printf("saves during the timed loops: %lld (the metric never beats the warm-up's 1.0)\n",
                static_cast<long long>(saves[1] + saves[3]));

    // --- System calls
    std::printf("\nsystem calls during %lld steps of each step() variant, in a child whose "
                "seccomp filter traps\nevery system call (SIGSYS, counted):\n",
                static_cast<long long>(probe_steps));
    if (probe.installed != 0) {
        for (const int v : {1, 3}) {
            std::printf("  %-42s %llu\n", variant_name[v],
                        static_cast<unsigned long long>(probe.per_variant[v]));
        }
        std::printf("  control: one deliberate getppid() after the loops  %llu (must be 1)\n",
                    static_cast<unsigned long long>(probe.control));
        for (std::uint64_t i = 0; i < probe.traps && i < 8; ++i) {
            std::printf("  trapped: system call number %ld\n", probe.first_nr[i]);
        }
    } else {
        std::printf("  not measured: %s\n", probe.error[0] != '\0' ? probe.error : "unknown");
    }

    // --- Verdict
    const std::uint64_t step_allocations = allocations[1] + allocations[3];
    const bool no_saves = saves[1] + saves[3] == 0;
    std::printf("\nverdict:\n");
    std::printf("  no allocation in step() without a save   %llu in %lld calls   %s\n",
                static_cast<unsigned long long>(step_allocations),
                2LL * opt.runs * static_cast<long long>(opt.steps),
                step_allocations == 0 && no_saves && setup_allocations > 0 ? "PASS" : "FAIL");
    if (probe.installed != 0) {
        const std::uint64_t calls = probe.per_variant[1] + probe.per_variant[3];
        std::printf("  no system call in step() without a save  %llu in %lld calls   %s\n",
                    static_cast<unsigned long long>(calls), 2LL * probe_steps,
                    calls == 0 && probe.control == 1 ? "PASS" : "FAIL");
    } else {
        std::printf("  no system call in step() without a save  NOT MEASURED (%s)\n", probe.error);
    }
    std::printf("  cost: %.2f ns per step without the clock, %.2f ns with every(1h) "
                "(medians over the baseline);\n        %.4f%% and %.4f%% of a 1 ms training step\n",
                clockless.median, clocked.median, clockless.median / 1e4, clocked.median / 1e4);
    std::printf("(a benchmark, not a test: the exit status is 0 whatever the verdict)\n");
    return 0;
}
