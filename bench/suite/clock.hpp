#pragma once
// The clock every figure is taken with, the minor page faults counted around each timed call,
// and the progress lines on stderr.

#include <chrono>

namespace bench {

using bench_clock = std::chrono::steady_clock;

double seconds_since(bench_clock::time_point t0);

/// The minor page faults of this process so far, every thread (getrusage RUSAGE_SELF).
long minor_faults();

/// One timed call: its seconds, and the minor page faults of the process during it.
struct sample {
    double seconds = 0;
    double faults = 0;
};

/// Times `f()` and counts the minor faults around it.
template <class F>
sample timed(F&& f) {
    const long f0 = minor_faults();
    const auto t0 = bench_clock::now();
    f();
    const double s = seconds_since(t0);
    return {s, static_cast<double>(minor_faults() - f0)};
}

/// Counts the minor faults around `f()`, which times itself and returns its seconds (a
/// baseline of baselines.hpp).
template <class F>
sample counted(F&& f) {
    const long f0 = minor_faults();
    const double s = f();
    return {s, static_cast<double>(minor_faults() - f0)};
}

/// Prints "[bench-suite] <printf format>" and a newline on stderr.
void progress(const char* format, ...) __attribute__((format(printf, 1, 2)));

} // namespace bench
