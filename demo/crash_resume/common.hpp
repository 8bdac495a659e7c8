#pragma once
// The names every file of the demo uses.

#include <chrono>
#include <filesystem>

namespace demo {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

} // namespace demo
