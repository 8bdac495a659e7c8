#pragma once
// loss.csv, every step's numbers and the events of the three runs, and loss.svg, a self-made
// plot of them (no dependencies).

#include "child_process.hpp"
#include "common.hpp"
#include "config.hpp"
#include "run_log.hpp"

#include <vector>

namespace demo {

void write_csv(const fs::path& path, const std::vector<const run_log*>& runs, const config& c,
               const kill_record& kill, const run_log& resumed);

void write_svg(const fs::path& path, const config& c, const run_log& reference,
               const run_log& interrupted, const run_log& resumed, const kill_record& kill,
               bool identical);

} // namespace demo
