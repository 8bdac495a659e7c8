#pragma once

#include <cstdint>

namespace ckpt {

/// Where a tensor of a distributed state lives; see ckpt::sharded and ckpt::rank_local.
enum class placement_kind : char {
    replicated = '-', ///< the same on every rank (the default)
    sharded = 'S',    ///< this rank holds some rows (first axis) of a larger global tensor
    rank_local = 'L', ///< each rank's own value, restored to the rank of the same number
};

/// A tensor's placement: what the file records for it in `ckpt.placement` and `ckpt.shards`.
struct placement {
    placement_kind kind = placement_kind::replicated;
    /// Sharded: the global row of this tensor's first row, and the rows of the global tensor,
    /// whose other axes are this tensor's.
    std::uint64_t row_offset = 0;
    std::uint64_t global_rows = 0;

    friend bool operator==(const placement&, const placement&) = default;
};

} // namespace ckpt
