#pragma once
// The parent's script: the trainer killed, the trainer resumed, the uninterrupted reference in
// this process, the verdict, loss.csv and loss.svg.

#include "common.hpp"
#include "config.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace demo {

struct parent_options {
    fs::path out = ".";
    std::optional<std::uint64_t> seed;
    std::optional<double> kill_after_ms;
    double in_save_share = 1.0;
};

/// Runs the demo with `exe` as the trainer child. Returns the exit status: 0 when the resumed
/// run ends bit-identical to the reference, with the same saves; 1 when not; 2 on a failure.
int run_parent(const std::string& exe, const config& c, const parent_options& o);

} // namespace demo
