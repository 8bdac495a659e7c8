#pragma once
// Where a training run reports what it does (a pipe to the parent, or the parent itself), and
// the records it reports.

#include "common.hpp"

#include <ckpt/ckpt.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace demo {

/// One save, as the trainer saw it.
struct save_record {
    std::int64_t step = 0;
    double seconds = 0;
    std::vector<std::string> reasons;
    std::string file;
    std::vector<std::string> deleted;
};

/// The end of a run: its manager's stats.
struct finish_record {
    std::uint64_t written = 0;
    std::uint64_t on_disk = 0;
    std::uint64_t bytes_on_disk = 0;
    double save_seconds = 0;
    double train_seconds = 0;
};

/// Where a training run reports what it does: a pipe to the parent, or the parent itself.
class listener {
public:
    virtual ~listener() = default;
    virtual void restored(std::int64_t step, const std::string& file,
                          const std::vector<ckpt::skipped_checkpoint>& skipped,
                          const std::vector<fs::path>& cleaned) = 0;
    virtual void stepped(std::int64_t step, double loss, std::optional<double> val) = 0;
    virtual void saved(const save_record& r) = 0;
    virtual void finished(const finish_record& f) = 0;
};

} // namespace demo
