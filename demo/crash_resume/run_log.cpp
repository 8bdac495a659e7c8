#include "run_log.hpp"

#include "console.hpp"
#include "text.hpp"

#include <cstddef>

namespace demo {
namespace {

std::string describe_reasons(const std::vector<std::string>& reasons) {
    std::vector<std::string> shown;
    for (const auto& r : reasons) shown.push_back(r == "save_now" ? "save_now (final state)" : r);
    return join(shown, " + ");
}

} // namespace

void recorder::restored(std::int64_t step, const std::string& file,
                        const std::vector<ckpt::skipped_checkpoint>& skipped,
                        const std::vector<fs::path>& cleaned) {
    for (const auto& p : cleaned) log_.cleaned.push_back(p.filename().string());
    for (const auto& k : skipped) {
        log_.skipped.push_back(k.path.filename().string() + " (" + std::to_string(k.error_id) +
                               ": " + k.reason + ")");
    }
    log_.resumed_from = step;
    log_.resumed_file = file;
    if (!show_saves_) return;
    for (const auto& c : log_.cleaned) {
        out().line("    cleaned " + c + ": the temporary file of the save the kill interrupted");
    }
    for (const auto& k : log_.skipped) out().line("    skipped " + k);
    if (step == 0) {
        out().line("    no checkpoint yet: a fresh start");
    } else {
        out().line(format("    resumed from %s (step %lld), the newest checkpoint that loads "
                          "cleanly",
                          file.c_str(), static_cast<long long>(step)));
    }
}
void recorder::stepped(std::int64_t step, double loss, std::optional<double> val) {
    log_.rows.push_back({step, loss, val});
    if (val) log_.latest_val = val;
    if (step == 0) return;
    const std::string s = status_text(step, loss);
    if (out().tty()) {
        out().status(s, step == c_.steps);
    } else if (step % (c_.steps / 8) == 0) {
        out().line(s);
    }
}
void recorder::saved(const save_record& r) {
    log_.saves.push_back(r);
    if (!show_saves_) return;
    std::string s = format("    save  step %5lld  %-46s -> %s", static_cast<long long>(r.step),
                           describe_reasons(r.reasons).c_str(), r.file.c_str());
    if (!r.deleted.empty()) s += "  (retention deleted " + join(r.deleted, ", ") + ")";
    out().line(s);
}
void recorder::finished(const finish_record& f) {
    log_.finish = f;
    out().clear_status();
}

std::string recorder::status_text(std::int64_t step, double loss) const {
    constexpr int width = 24;
    const auto filled = static_cast<int>(width * step / c_.steps);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    return format("  %-11s [%s] step %5lld/%lld  loss %.4f  val %.4f  saves %zu",
                  log_.label.c_str(), bar.c_str(), static_cast<long long>(step),
                  static_cast<long long>(c_.steps), loss,
                  log_.latest_val ? *log_.latest_val : std::nan(""), log_.saves.size());
}

} // namespace demo
