#pragma once
// The targets of issues 6 and 17: each one's check of a size's results, and its verdict.

#include "options.hpp"
#include "results.hpp"

#include <functional>
#include <string>
#include <vector>

namespace bench {

struct verdict {
    bool measured = false;
    bool pass = false;
    std::string value; ///< the achieved figure, as printed
};

struct target {
    std::string key;
    std::string issue; ///< the issue that states it: "6", "17"
    std::string label;
    std::string stated_at; ///< "256 MiB" or "every size"
    std::function<verdict(const size_result&)> check;
};

/// Every target, for the asynchronous saves' max_in_flight of `opt`.
std::vector<target> targets_for(const options& opt);

} // namespace bench
