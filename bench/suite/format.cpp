#include "format.hpp"

#include <cstdio>

namespace bench {

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

std::string size_name(std::uint64_t target_mib) {
    return target_mib % 1024 == 0 ? std::to_string(target_mib / 1024) + " GiB"
                                  : std::to_string(target_mib) + " MiB";
}

} // namespace bench
