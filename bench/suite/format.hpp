#pragma once
// How sizes and numbers are written in the tables, the targets and the machine description.

#include <cstdint>
#include <string>

namespace bench {

/// `v` through snprintf's `format` (one double).
std::string fmt(const char* format, double v);

/// "64 MiB", "1 GiB".
std::string size_name(std::uint64_t target_mib);

} // namespace bench
