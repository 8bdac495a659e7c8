#pragma once
// --json: every figure of every run (seconds and minor faults), the ratios, the tensor
// granularity layouts, the targets and the machine, in one file.

#include "options.hpp"
#include "results.hpp"

#include <string>
#include <utility>
#include <vector>

namespace bench {

/// Writes the results to `path`; `env` is the machine's description (machine.hpp).
void write_json(const std::string& path, const std::vector<size_result>& results,
                const options& opt, const std::vector<std::pair<std::string, std::string>>& env);

} // namespace bench
