// bench/interval_sim: does every_optimal(M) save as often as it pays?
//
// A simulation, no file is written: a run needs W hours of compute; failures strike at the
// times of a Poisson process of mean interval M (every failure, during compute, a save or a
// restart, loses the work since the last committed checkpoint, and the restart then costs R);
// every checkpoint costs C, during which no work is done, and is committed at its end. The run
// ends when its W hours of work are done (no save after the last piece).
//
// For each C/M, it compares, on the same failure sequences (common random numbers: run i of
// every strategy sees the failures of seed i, so that the comparison is not won by the luckiest
// interval):
//   - every_optimal(M), driven through the manager's own code: a detail::policy_state on the
//     injected clock, asked at the time its rule's interval says, told each save's cost and end
//     (policy_state::measured), its state written into the checkpoint's tags at each save and
//     restored from the last committed checkpoint's tags after each failure (so the first save of
//     the run, and of a restart from a checkpoint that holds no measurement yet, is the early one
//     that measures C);
//   - every fixed interval of compute between saves on a fine grid: sqrt(2CM) x 1.02^k,
//     k = -70..70 (a quarter to four times Young's interval, 2% apart).
// It prints, for each C/M, the interval every_optimal chose, its mean total time, the best fixed
// interval of the grid, its mean total time, and their ratio (target: <= 1.02).
//
// every_optimal pays for one save that only measures C at the start of the run (and one more
// after a failure that strikes before its second save commits): one C of waste per run, which
// matters only at large C/M in short runs. The last column separates it: Daly's interval for the
// true C, run as a fixed interval, against the best fixed interval.
//
// Usage: interval_sim [--runs N] [--seed S] [--work-hours W]
//        (defaults: 1000 runs, seed 1, W = 720 h: a month of compute, M = 24 h, R = 10 min)
// The program always exits 0 unless it cannot run at all: it is a benchmark, not a test.

#include <ckpt/ckpt.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

constexpr double hour = 3600;
constexpr double mtbf = 24 * hour; // M
constexpr double restart = 600;    // R: ten minutes
double work = 720 * hour;          // W: thirty times M (--work-hours)

/// splitmix64: a small seeded generator; one per run, restarted for every strategy.
class failure_times {
public:
    explicit failure_times(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ULL + 1) {
        advance();
    }
    [[nodiscard]] double next() const noexcept { return next_; }
    void advance() noexcept {
        // u in (0, 1]: 53 random bits.
        const double u = (static_cast<double>(bits() >> 11) + 1) * 0x1.0p-53;
        next_ += -mtbf * std::log(u);
    }

private:
    std::uint64_t bits() noexcept {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    std::uint64_t state_;
    double next_ = 0;
};

/// "8.6 s", "14.4 min", "2.40 h".
std::string duration_text(double seconds) {
    char buf[32];
    if (seconds < 120) {
        std::snprintf(buf, sizeof buf, "%.1f s", seconds);
    } else if (seconds < 2 * hour) {
        std::snprintf(buf, sizeof buf, "%.1f min", seconds / 60);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f h", seconds / hour);
    }
    return buf;
}

using clock_point = std::chrono::system_clock::time_point;

/// The injected clock: simulated seconds since the start of the run.
clock_point clock_at(double seconds) {
    return clock_point(
        std::chrono::duration_cast<clock_point::duration>(std::chrono::duration<double>(seconds)));
}

/// A fixed interval of compute between saves.
struct fixed_interval {
    double tau;
    void start(double /*t*/) {}
    double next_compute(double /*t*/) { return tau; }
    void saving(double /*t*/) {}
    void committed(double /*end*/, double /*cost*/) {}
    void restarted(double /*t*/) {}
};

/// every_optimal(M) as a manager runs it.
struct rule_driven {
    ckpt::save_policy policy = ckpt::every_optimal(std::chrono::duration<double>(mtbf));
    ckpt::detail::policy_state state{policy};
    ckpt::metadata last_committed; ///< the tags of the last committed checkpoint
    bool any_committed = false;
    ckpt::metadata pending;
    std::int64_t step = 0;
    std::vector<double> chosen; ///< the intervals it chose
    std::uint64_t disagreements = 0;

    void start(double t) {
        state = ckpt::detail::policy_state(policy);
        state.start(clock_at(t));
        any_committed = false;
    }
    double next_compute(double t) {
        // The time jumps to when the rule's interval says it fires, and the rule is asked there.
        const auto interval = state.target_interval();
        double at = t;
        if (interval) {
            const auto& rule =
                std::get<ckpt::detail::rule_every_optimal>(state.policy().rules()[0]);
            at =
                std::chrono::duration<double>(rule.last_end.time_since_epoch()).count() + *interval;
            at = std::max(at, t);
            chosen.push_back(*interval);
            // Just before, it must not fire; at the time, it must.
            if (*interval > 1e-3 && state.ask(ckpt::metadata{}, clock_at(at - 1e-3))) {
                ++disagreements;
            }
        }
        if (!state.ask(ckpt::metadata{}, clock_at(at))) {
            at += 1e-6; // the clock's rounding: the next tick
            if (!state.ask(ckpt::metadata{}, clock_at(at))) ++disagreements;
        }
        return at - t;
    }
    void saving(double t) {
        ckpt::metadata meta;
        meta.step = ++step;
        std::vector<std::string> reasons;
        auto after = state.advanced(meta, clock_at(t), reasons);
        pending = meta;
        pending.time = clock_at(t);
        ckpt::detail::policy_state::write_tags(after, pending);
        state.commit(std::move(after), false);
    }
    void committed(double end, double cost) {
        state.measured(cost, clock_at(end));
        last_committed = pending;
        any_committed = true;
    }
    void restarted(double t) {
        const bool had = any_committed;
        start(t);
        if (had) {
            state.restore(last_committed, {});
            any_committed = true;
        }
    }
};

/// The total time of one run: W hours of work under the failures of `seed`.
template <class Strategy>
double simulate(Strategy& s, double cost, std::uint64_t seed) {
    failure_times fail(seed);
    double t = 0;
    double done = 0; // work committed
    s.start(t);
    for (;;) {
        const double a = s.next_compute(t);
        const double remaining = work - done;
        if (a >= remaining) {
            if (fail.next() >= t + remaining) return t + remaining;
        } else {
            s.saving(t + a);
            if (fail.next() >= t + a + cost) {
                t += a + cost;
                done += a;
                s.committed(t, cost);
                continue;
            }
        }
        // A failure: the work since the last commit is lost; the restart takes R, and starts
        // again if a failure strikes it.
        t = fail.next();
        fail.advance();
        while (fail.next() < t + restart) {
            t = fail.next();
            fail.advance();
        }
        t += restart;
        s.restarted(t);
    }
}

} // namespace

int main(int argc, char** argv) {
    int runs = 1000;
    std::uint64_t seed = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = std::atoi(argv[++i]);
        } else if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = std::strtoull(argv[++i], nullptr, 10);
        } else if (std::strcmp(argv[i], "--work-hours") == 0 && i + 1 < argc) {
            work = std::atof(argv[++i]) * hour;
        } else {
            std::fprintf(stderr, "usage: interval_sim [--runs N] [--seed S] [--work-hours W]\n");
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    if (!(work > 0)) work = hour;
    std::printf("W = %.0f h of work, failures every M = %.0f h on average (exponential), restart "
                "R = %.0f min; %d runs per row, the same failure sequences for every interval\n\n",
                work / hour, mtbf / hour, restart / 60, runs);
    std::printf("| C/M | C | every_optimal's interval | its mean time | best fixed interval | its "
                "mean time | ratio | Daly's interval fixed: ratio |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    const auto started = std::chrono::steady_clock::now();
    bool all_within = true;
    for (const double ratio : {1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1}) {
        const double cost = ratio * mtbf;
        rule_driven rule;
        double rule_total = 0;
        for (int r = 0; r < runs; ++r) {
            rule_total += simulate(rule, cost, seed * 1'000'003ULL + static_cast<std::uint64_t>(r));
        }
        const double rule_mean = rule_total / runs;
        double chosen = 0;
        for (const double c : rule.chosen) chosen += c;
        chosen /= static_cast<double>(rule.chosen.size());

        const double young = std::sqrt(2 * cost * mtbf);
        double best_tau = 0;
        double best_mean = std::numeric_limits<double>::infinity();
        for (int k = -70; k <= 70; ++k) {
            fixed_interval fixed{young * std::pow(1.02, k)};
            double total = 0;
            for (int r = 0; r < runs; ++r) {
                total += simulate(fixed, cost, seed * 1'000'003ULL + static_cast<std::uint64_t>(r));
            }
            if (total / runs < best_mean) {
                best_mean = total / runs;
                best_tau = fixed.tau;
            }
        }
        // Daly's interval for the true C as a fixed interval: what the rule would cost without
        // its measuring saves.
        fixed_interval daly{ckpt::detail::daly_interval(cost, mtbf)};
        double daly_total = 0;
        for (int r = 0; r < runs; ++r) {
            daly_total += simulate(daly, cost, seed * 1'000'003ULL + static_cast<std::uint64_t>(r));
        }
        const double within = rule_mean / best_mean;
        all_within = all_within && within <= 1.02 && rule.disagreements == 0;
        std::printf("| %g | %s | %s | %.1f h | %s | %.1f h | %.4f | %.4f |\n", ratio,
                    duration_text(cost).c_str(), duration_text(chosen).c_str(), rule_mean / hour,
                    duration_text(best_tau).c_str(), best_mean / hour, within,
                    daly_total / runs / best_mean);
        if (rule.disagreements != 0) {
            std::printf("  (the rule did not fire where its interval said, %llu times)\n",
                        static_cast<unsigned long long>(rule.disagreements));
        }
    }
    std::printf("\nevery_optimal within 2%% of the best fixed interval at every C/M: %s (%.1f s)\n",
                all_within ? "yes" : "NO",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return 0;
}
