#pragma once
// What the parent records of a run (a child's, or the reference's), and the listener that
// records it and shows its progress on the console.

#include "common.hpp"
#include "config.hpp"
#include "listener.hpp"

#include <ckpt/ckpt.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace demo {

struct step_row {
    std::int64_t step = 0;
    double loss = std::nan(""); ///< NaN at step 0
    std::optional<double> val;
};

struct run_log {
    std::string name;  ///< "interrupted", "resumed", "reference" (loss.csv's run column)
    std::string label; ///< on the console
    std::vector<step_row> rows;
    std::vector<save_record> saves;
    std::int64_t resumed_from = 0;
    std::string resumed_file;
    std::vector<std::string> cleaned;
    std::vector<std::string> skipped;
    std::optional<finish_record> finish;
    std::optional<double> latest_val;

    [[nodiscard]] std::int64_t last_step() const { return rows.empty() ? 0 : rows.back().step; }
    /// The latest validation loss at `step` (what the manager was given).
    [[nodiscard]] double val_at(std::int64_t step) const {
        double v = std::nan("");
        for (const auto& r : rows) {
            if (r.step > step) break;
            if (r.val) v = *r.val;
        }
        return v;
    }
};

/// Records a run and shows its progress.
class recorder final : public listener {
public:
    recorder(run_log& log, const config& c, bool show_saves)
        : log_(log), c_(c), show_saves_(show_saves) {}

    void restored(std::int64_t step, const std::string& file,
                  const std::vector<ckpt::skipped_checkpoint>& skipped,
                  const std::vector<fs::path>& cleaned) override;
    void stepped(std::int64_t step, double loss, std::optional<double> val) override;
    void saved(const save_record& r) override;
    void finished(const finish_record& f) override;

private:
    std::string status_text(std::int64_t step, double loss) const;

    run_log& log_;
    const config& c_;
    bool show_saves_;
};

} // namespace demo
