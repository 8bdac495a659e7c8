#include "clock.hpp"

#include <cstdarg>
#include <cstdio>

#include <sys/resource.h>

namespace bench {

double seconds_since(bench_clock::time_point t0) {
    return std::chrono::duration<double>(bench_clock::now() - t0).count();
}

long minor_faults() {
    ::rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

void progress(const char* format, ...) {
    std::fprintf(stderr, "[bench-suite] ");
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fprintf(stderr, "\n");
}

} // namespace bench
