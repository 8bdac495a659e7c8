// Power loss at every I/O call of a save and of a manager step (save, then retention), on a
// backend that keeps only what was fsynced (tests/powerloss_backend.hpp). After each crash the
// directory must hold the old or the new checkpoint, exactly, the new one whenever the save
// returned, and the best one. With the file or the directory fsync switched off the same
// matrices must find a violation: if ckpt ever drops an fsync, these tests fail.
#include "powerloss_backend.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace nn = ckpt::nn;
using state_type = nn::train_state<float>;
using switches = test::powerloss_backend::switches;

state_type trained(std::int64_t steps) {
    static const auto data = nn::two_spirals<float>(50, 0.05, 1);
    state_type s;
    s.model = nn::mlp<float>({2, 8, 2}, nn::activation::relu, 7);
    s.optimizer = nn::adam<float>(s.model, nn::adam_options{});
    s.sampler = nn::sampler(data.size(), 16, 11);
    s.rng.seed(13);
    for (std::int64_t i = 0; i < steps; ++i) nn::train_step(s, data);
    return s;
}

/// What a crash matrix found.
struct outcome {
    std::size_t points = 0;     ///< crash points tried (every call, and after the last)
    std::size_t old_one = 0;    ///< the previous checkpoint was what loaded
    std::size_t new_one = 0;    ///< the new one
    std::size_t violations = 0; ///< neither, garbage, a lost commit, or a lost best
    std::string first;          ///< the first violation
};

void violation(outcome& o, std::size_t k, const std::string& what) {
    if (o.violations++ == 0) o.first = "crash at call " + std::to_string(k) + ": " + what;
}

bool has_temp(const fs::path& dir) {
    for (const auto& de : fs::directory_iterator(dir)) {
        if (de.path().filename().string().find(".tmp-") != std::string::npos) return true;
    }
    return false;
}

/// ckpt::save of `fresh` over `old` at one path, cut at every call k.
outcome replace_matrix(switches sw) {
    const fs::path dir = test::scratch("powerloss-replace");
    const fs::path path = dir / "state.ckpt";
    const state_type old_state = trained(3);
    const state_type new_state = trained(4);
    outcome o;
    for (std::size_t k = 0;; ++k) {
        fs::remove_all(dir);
        fs::create_directories(dir);
        ckpt::save(path, old_state);
        test::powerloss_backend b(dir, sw);
        b.crash_at(k);
        bool returned = true;
        try {
            ckpt::save(path, new_state, {}, ckpt::save_options{&b});
        } catch (const ckpt::error&) {
            returned = false;
        }
        const bool last = !b.stopped(); // the save ran to its end before call k
        b.crash();
        o.points += 1;
        if (has_temp(dir)) violation(o, k, "a temporary file survived");
        state_type got = trained(0);
        try {
            ckpt::load(path, got);
            if (got == new_state) {
                o.new_one += 1;
            } else if (got == old_state && !returned) {
                o.old_one += 1;
            } else {
                violation(o, k,
                          got == old_state ? "the save returned, the old state loaded"
                                           : "a state that is neither old nor new");
            }
        } catch (const ckpt::error& e) {
            violation(o, k, std::string("no valid checkpoint: ") + e.what());
        }
        if (last) break;
    }
    return o;
}

ckpt::manager open_manager(const fs::path& dir, ckpt::io::backend* backend) {
    ckpt::manager_options opts;
    opts.backend = backend;
    return ckpt::manager(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"),
                         ckpt::keep_last(2) | ckpt::keep_best(1, "val_loss"), opts);
}

ckpt::metadata meta_of(std::int64_t step, double val_loss) {
    ckpt::metadata m;
    m.step = step;
    m.metrics["val_loss"] = val_loss;
    return m;
}

/// Steps 1..3 saved (val_loss 0.1, 0.5, 0.6: step 1 is the best), then step 4 with
/// `val_loss4` saves and retention deletes step 2 (and step 1 when step 4 is the new best);
/// the power fails at every call k of step 4.
outcome manager_matrix(switches sw, double val_loss4) {
    const fs::path base = test::scratch("powerloss-manager-base");
    const fs::path dir = test::scratch("powerloss-manager");
    const double losses[] = {0.1, 0.5, 0.6};
    std::vector<state_type> states;
    for (std::int64_t s = 0; s <= 4; ++s) states.push_back(trained(s));
    {
        ckpt::manager m = open_manager(base, nullptr);
        for (std::int64_t s = 1; s <= 3; ++s)
            m.step(states[static_cast<std::size_t>(s)], meta_of(s, losses[s - 1]));
    }
    const bool new_best = val_loss4 < 0.1;
    outcome o;
    for (std::size_t k = 0;; ++k) {
        fs::remove_all(dir);
        fs::create_directories(dir);
        for (const auto& de : fs::directory_iterator(base)) {
            if (de.path().extension() == ".ckpt")
                fs::copy_file(de.path(), dir / de.path().filename());
        }
        test::powerloss_backend b(dir, sw);
        bool returned = true;
        {
            ckpt::manager m = open_manager(dir, &b);
            b.crash_at(k);
            try {
                m.step(states[4], meta_of(4, val_loss4));
            } catch (const ckpt::error&) {
                returned = false;
            }
        }
        const bool last = !b.stopped();
        b.crash();
        o.points += 1;
        try {
            ckpt::manager m = open_manager(dir, nullptr);
            if (has_temp(dir)) violation(o, k, "a temporary file survived the start");
            if (!m.skipped().empty()) violation(o, k, "damaged: " + m.skipped().front().reason);
            state_type got = trained(0);
            const auto meta = m.restore_latest(got);
            std::int64_t latest = 0;
            if (!meta) {
                violation(o, k, "no checkpoint restored");
            } else if (meta->step == 4 && got == states[4]) {
                latest = 4;
                o.new_one += 1;
            } else if (meta->step == 3 && got == states[3] && !returned) {
                latest = 3;
                o.old_one += 1;
            } else {
                violation(o, k,
                          "restored step " + std::to_string(meta->step) +
                              (returned ? " after step 4 returned" : ""));
            }
            // The last two are there, and the best: step 4 if it is durable and better.
            const auto entries = m.list();
            for (std::int64_t s = latest; s > latest - 2 && s > 0; --s) {
                bool found = false;
                for (const auto& e : entries) found = found || e.step == s;
                if (!found) violation(o, k, "step " + std::to_string(s) + " (last 2) is gone");
            }
            const std::int64_t best = new_best && latest == 4 ? 4 : 1;
            state_type b_state = trained(0);
            const auto bm = m.restore_best(b_state, "val_loss");
            if (!bm || bm->step != best || !(b_state == states[static_cast<std::size_t>(best)])) {
                violation(o, k, "the best (step " + std::to_string(best) + ") did not load");
            }
        } catch (const ckpt::error& e) {
            violation(o, k, std::string("restart failed: ") + e.what());
        }
        if (last) break;
    }
    return o;
}

void report(const std::string& what, const outcome& o) {
    const std::string text = what + ": " + std::to_string(o.points) + " crash points, old " +
                             std::to_string(o.old_one) + ", new " + std::to_string(o.new_one) +
                             ", violations " + std::to_string(o.violations) +
                             (o.first.empty() ? "" : " (first: " + o.first + ")");
    MESSAGE(text);
}

} // namespace

TEST_CASE("power loss at every call of a save that replaces a checkpoint: old or new, exactly") {
    for (const bool tear : {false, true}) {
        CAPTURE(tear);
        const outcome o = replace_matrix({.tear = tear});
        report(tear ? "replace, torn" : "replace", o);
        CHECK(o.points >= 11); // open allocate write pwrite fsync close rename open fsync close,
                               // then after the last
        CHECK(o.violations == 0);
        CHECK(o.old_one > 0);
        CHECK(o.new_one > 0);
    }
}

TEST_CASE("power loss at every call of a manager step: latest, last 2 and best survive") {
    for (const double val_loss4 : {0.7, 0.05}) {
        for (const bool tear : {false, true}) {
            CAPTURE(val_loss4);
            CAPTURE(tear);
            const outcome o = manager_matrix({.tear = tear}, val_loss4);
            report(std::string(val_loss4 < 0.1 ? "manager, new best" : "manager") +
                       (tear ? ", torn" : ""),
                   o);
            CHECK(o.violations == 0);
            CHECK(o.old_one > 0);
            CHECK(o.new_one > 0);
        }
    }
}

TEST_CASE("the power-loss matrices have teeth: without either fsync they find a violation") {
    const switches no_file_fsync{.file_fsync = false};
    const switches no_dir_fsync{.dir_fsync = false};
    const switches no_file_fsync_torn{.file_fsync = false, .tear = true};
    for (const auto& [name, sw] :
         {std::pair{std::string("no file fsync"), no_file_fsync},
          std::pair{std::string("no file fsync, torn"), no_file_fsync_torn},
          std::pair{std::string("no directory fsync"), no_dir_fsync}}) {
        CAPTURE(name);
        const outcome r = replace_matrix(sw);
        report(name + ", replace", r);
        CHECK(r.violations > 0);
        const outcome m = manager_matrix(sw, 0.7);
        report(name + ", manager", m);
        CHECK(m.violations > 0);
    }
}
