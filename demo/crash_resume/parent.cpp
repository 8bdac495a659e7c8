#include "parent.hpp"

#include "child_process.hpp"
#include "console.hpp"
#include "plot.hpp"
#include "run_log.hpp"
#include "text.hpp"
#include "trainer.hpp"

#include <ckpt/ckpt.hpp>

#include <algorithm>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

#include <signal.h>
#include <unistd.h>

namespace demo {
namespace {

std::string human_bytes(std::uint64_t b) {
    if (b < 1024) return std::to_string(b) + " B";
    if (b < 1024 * 1024) return format("%.1f KiB", static_cast<double>(b) / 1024.0);
    return format("%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
}

/// Files in a directory with their sizes, by name.
std::vector<std::pair<std::string, std::uint64_t>> listing(const fs::path& dir) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::error_code size_ec;
        const auto size = e.is_regular_file() ? e.file_size(size_ec) : 0;
        out.emplace_back(e.path().filename().string(), size_ec ? 0 : size);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string comment_for(const std::string& name) {
    if (name.find(".ckpt.tmp-") != std::string::npos)
        return "  <- the interrupted save's temporary file";
    if (name.ends_with(".lock")) return "  (the manager's lock file)";
    return "";
}

std::uint64_t time_seed() {
    const auto t = std::chrono::system_clock::now().time_since_epoch().count();
    return (static_cast<std::uint64_t>(t) ^ (static_cast<std::uint64_t>(::getpid()) << 32)) %
           1000000;
}

bool same_saves_after(const run_log& a, const run_log& b, std::int64_t after) {
    std::vector<std::pair<std::int64_t, std::vector<std::string>>> x;
    std::vector<std::pair<std::int64_t, std::vector<std::string>>> y;
    for (const auto& s : a.saves) {
        if (s.step > after) x.emplace_back(s.step, s.reasons);
    }
    for (const auto& s : b.saves) {
        if (s.step > after) y.emplace_back(s.step, s.reasons);
    }
    return x == y;
}

} // namespace

int run_parent(const std::string& exe, const config& c, const parent_options& o) {
    const auto demo_started = clock_type::now();
    const std::uint64_t seed = o.seed.value_or(time_seed());
    std::mt19937_64 rng(seed);
    const bool in_save =
        !o.kill_after_ms && std::uniform_real_distribution<double>(0, 1)(rng) < o.in_save_share;
    kill_plan plan;
    plan.in_save = in_save;
    plan.target_step =
        std::uniform_int_distribution<std::int64_t>(c.steps * 3 / 10, c.steps * 7 / 10)(rng);
    plan.after_ms = o.kill_after_ms;

    const fs::path runs = o.out / "runs";
    const fs::path dir = runs / "interrupted";
    const fs::path ref_dir = runs / "reference";
    fs::remove_all(dir);
    fs::remove_all(ref_dir);
    fs::create_directories(runs);

    out().line("ckpt crash-and-resume demo");
    out().line(format("  model MLP %s (ReLU), Adam lr %g, batch %lld; two spirals, %lld points, "
                      "noise %g; %lld steps",
                      architecture(c).c_str(), c.lr, static_cast<long long>(c.batch),
                      static_cast<long long>(2 * c.per_class), c.noise,
                      static_cast<long long>(c.steps)));
    out().line(format("  saves every_steps(%lld) | on_best(\"val_loss\") (evaluated every %lld "
                      "steps); keeps keep_last(3) | keep_best(1, \"val_loss\")",
                      static_cast<long long>(c.save_every), static_cast<long long>(c.eval_every)));
    std::string how;
    if (o.kill_after_ms) {
        how = format("SIGKILL %.0f ms after the start", *o.kill_after_ms);
    } else if (in_save) {
        how = format("SIGKILL in the middle of the first save at or after step %lld",
                     static_cast<long long>(plan.target_step));
    } else {
        how = format("SIGKILL at a random moment, around step %lld",
                     static_cast<long long>(plan.target_step));
    }
    out().line(format("  seed %llu (rerun with --seed %llu): %s",
                      static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
                      how.c_str()));
    out().line("");

    // 1. The trainer, killed.
    run_log first{"interrupted", "process 1", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    kill_record kill;
    child_result r1;
    {
        recorder rec(first, c, true);
        child_process child(exe, dir, c, plan.in_save);
        child.seed(rng());
        out().line(format("[1] trainer process %d: training in %s", static_cast<int>(child.pid()),
                          dir.string().c_str()));
        r1 = child.run(rec, first, &plan, kill);
    }
    if (!kill.killed || r1.signal != SIGKILL) {
        out().line(format("error: the trainer was not killed (exit %d, signal %d) %s", r1.exit_code,
                          r1.signal, r1.error.c_str()));
        return 2;
    }
    out().line(format("  >>> SIGKILL after %.2f s: the process had completed step %lld",
                      kill.seconds, static_cast<long long>(kill.last_step)));
    if (kill.during_save) {
        out().line(format("      it was in the middle of the save of step %lld, %s",
                          static_cast<long long>(kill.save_step), describe_kill(kill).c_str()));
    } else {
        out().line("      it was between saves");
    }
    // The interrupted save's checkpoint is there if the kill came after its rename.
    const std::string interrupted_name =
        format("%s-%012lld.ckpt", checkpoint_prefix, static_cast<long long>(kill.save_step));
    const bool interrupted_committed = kill.during_save && fs::exists(dir / interrupted_name);
    kill.save_committed = interrupted_committed;
    out().line("      on disk after the kill:");
    for (const auto& [name, size] : listing(dir)) {
        std::string note = comment_for(name);
        if (interrupted_committed && name == interrupted_name) {
            note = "  <- the interrupted save: renamed into place before the kill";
        }
        out().line(
            format("        %-44s %10s%s", name.c_str(), human_bytes(size).c_str(), note.c_str()));
    }
    out().line("");

    // 2. The trainer again, on the same folder: resumes and finishes.
    run_log second{"resumed", "process 2", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    child_result r2;
    {
        recorder rec(second, c, true);
        child_process child(exe, dir, c, false);
        out().line(format("[2] trainer process %d: restarted on the same folder",
                          static_cast<int>(child.pid())));
        kill_record none;
        r2 = child.run(rec, second, nullptr, none);
    }
    if (!r2.exited || r2.exit_code != 0 || !second.finish) {
        out().line(format("error: the restarted trainer failed (exit %d, signal %d): %s",
                          r2.exit_code, r2.signal, r2.error.c_str()));
        return 2;
    }

    // 3. The reference, in this process, in a fresh folder.
    out().line("");
    out().line("[3] uninterrupted reference run, in " + ref_dir.string());
    run_log reference{"reference", "reference", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    state_type ref_final;
    {
        recorder rec(reference, c, false);
        ref_final = train(ref_dir, c, rec, nullptr);
    }
    const finish_record& rf = *reference.finish;
    out().line(format("    %lld steps in %.2f s, %llu saves taking %.1f ms in all",
                      static_cast<long long>(c.steps), rf.train_seconds,
                      static_cast<unsigned long long>(rf.written), rf.save_seconds * 1e3));

    // 4. The verdict: load the killed run's final checkpoint, compare with the reference's state.
    state_type resumed_final;
    std::uint64_t bytes_on_disk = 0;
    std::uint64_t checkpoints_on_disk = 0;
    std::int64_t final_step = 0;
    {
        ckpt::manager_options options;
        options.prefix = checkpoint_prefix;
        ckpt::manager m(dir, save_policy(c), retention(), options);
        if (const auto meta = m.restore_latest(resumed_final)) final_step = meta->step;
        const auto st = m.stats();
        bytes_on_disk = st.bytes_on_disk;
        checkpoints_on_disk = st.checkpoints_on_disk;
    }
    ckpt::metadata fixed;
    fixed.step = c.steps;
    fixed.time = std::chrono::system_clock::time_point(std::chrono::seconds(0)) +
                 std::chrono::hours(24 * 365 * 30); // any fixed time: only the state differs
    const auto a = ckpt::save_to_memory(resumed_final, fixed);
    const auto b = ckpt::save_to_memory(ref_final, fixed);
    const bool identical = final_step == c.steps && a == b && resumed_final == ref_final;
    const bool schedule = same_saves_after(second, reference, second.resumed_from);

    const std::int64_t lost = kill.last_step - second.resumed_from;
    const std::uint64_t written =
        first.saves.size() + (interrupted_committed ? 1 : 0) + second.saves.size();
    const double overhead = 100.0 * rf.save_seconds / rf.train_seconds;

    out().line("");
    out().line("Verdict");
    out().line(
        format("  final state bit-identical:   %s  (%zu bytes of state: weights, Adam moments, "
               "sampler, RNG, all %lld losses)",
               identical ? "yes" : "NO", a.size(), static_cast<long long>(c.steps)));
    out().line(format("  steps lost to the crash:     %lld  (killed after step %lld, resumed from "
                      "step %lld)",
                      static_cast<long long>(lost), static_cast<long long>(kill.last_step),
                      static_cast<long long>(second.resumed_from)));
    out().line(format("  checkpoint overhead:         %.1f%% of training time  (reference: %llu "
                      "saves, %.1f ms of %.2f s)",
                      overhead, static_cast<unsigned long long>(rf.written), rf.save_seconds * 1e3,
                      rf.train_seconds));
    out().line(format(
        "  bytes on disk:               %s in %llu checkpoints  (reference: %s in "
        "%llu)",
        human_bytes(bytes_on_disk).c_str(), static_cast<unsigned long long>(checkpoints_on_disk),
        human_bytes(rf.bytes_on_disk).c_str(), static_cast<unsigned long long>(rf.on_disk)));
    out().line(format("  checkpoints written:         %llu  (%zu before the kill%s, %zu after the "
                      "restart; the reference: %llu)",
                      static_cast<unsigned long long>(written), first.saves.size(),
                      interrupted_committed ? " + the one it interrupted after its rename" : "",
                      second.saves.size(), static_cast<unsigned long long>(rf.written)));
    out().line(format("  saves after the resume:      %s the reference's (same steps, same rules)",
                      schedule ? "the same as" : "NOT the same as"));
    out().line("  files left on disk (" + dir.string() + "):");
    for (const auto& [name, size] : listing(dir)) {
        out().line(format("    %-44s %10s%s", name.c_str(), human_bytes(size).c_str(),
                          comment_for(name).c_str()));
    }

    // 5. loss.csv and loss.svg.
    const fs::path csv = o.out / "loss.csv";
    const fs::path svg = o.out / "loss.svg";
    write_csv(csv, {&first, &second, &reference}, c, kill, second);
    write_svg(svg, c, reference, first, second, kill, identical);
    out().line("");
    out().line("Wrote " + fs::absolute(csv).lexically_normal().string());
    out().line("      " + fs::absolute(svg).lexically_normal().string() +
               "  (open it in a browser)");
    out().line("");
    out().line("Check it yourself, tensor by tensor (exit status 0: bit-identical):");
    out().line("  ckpt diff " + dir.string() + " " + ref_dir.string());
    out().line(format("The demo took %.1f s.",
                      std::chrono::duration<double>(clock_type::now() - demo_started).count()));
    return identical && schedule ? 0 : 1;
}

} // namespace demo
