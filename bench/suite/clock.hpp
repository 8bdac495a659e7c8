#pragma once
// The clock every figure is taken with, and the progress lines on stderr.

#include <chrono>

namespace bench {

using bench_clock = std::chrono::steady_clock;

double seconds_since(bench_clock::time_point t0);

/// Prints "[bench-suite] <printf format>" and a newline on stderr.
void progress(const char* format, ...) __attribute__((format(printf, 1, 2)));

} // namespace bench
