#pragma once
// Tensor granularity (issue 17): the bytes of a state of one size laid out as 2 big tensors, as
// 64 mid-size ones, as tensors of 64 KiB and as tensors of 4 KiB; each layout's file saved anew,
// then a verified read of it (pread + XXH3) against ckpt's load into a shaped and into an empty
// state.

#include "options.hpp"
#include "results.hpp"

#include <cstdint>
#include <string>

namespace bench {

/// Below it the mid-size tensors (size / 64) are smaller than 1 MiB, and the layouts no longer
/// run from big to small: no layouts there.
constexpr std::uint64_t layouts_min_mib = 64;

/// The layouts at r's size, every run: fills r.layouts (and r.layouts_exact). `path` is the
/// work file each layout is saved to in turn.
void measure_layouts(size_result& r, const options& opt, const std::string& path);

/// "2 x 128 MiB", "65536 x 4 KiB": a layout's tensors.
std::string layout_name(const layout_result& l);

} // namespace bench
