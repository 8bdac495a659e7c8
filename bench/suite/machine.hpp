#pragma once
// The machine the figures were taken on: date, CPU, memory, kernel, the file system under the
// work directory, transparent huge pages, compiler, Python.

#include "options.hpp"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace bench {

/// (name, value) pairs, in the order they are printed; "directory" is for --json only.
std::vector<std::pair<std::string, std::string>> environment(const std::filesystem::path& dir,
                                                             const options& opt);

} // namespace bench
