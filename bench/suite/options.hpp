#pragma once
// The command line: what to measure, where, and how to print it.

#include "torch_peer.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

struct options {
    int runs = 7;
    std::vector<std::uint64_t> sizes{1, 64, 256};
    std::size_t in_flight = 1;
    std::string dir;
    std::string json;
    bool markdown = false;
    bool rss = true;
    bool layouts = true; ///< the tensor granularity table
    torch_config torch;
};

/// The options of `argv`; prints the usage and exits on --help (status 0) or a bad argument (2).
options parse(int argc, char** argv);

} // namespace bench
