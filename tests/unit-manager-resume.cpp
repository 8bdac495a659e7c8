// ckpt::manager across restarts: a run stopped at any step and resumed (in this process or in a
// new one) saves at the same steps, keeps the same files and the same best as a run that never
// stopped; restore falls back past damaged checkpoints and reports them, but never past a schema
// error; the directory lock; NaN metrics; what stats() says after a restart.
#include "manager_test_util.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <sys/types.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using time_point = std::chrono::system_clock::time_point;
using std::chrono::minutes;

// ---------------------------------------------------------------------------------------------
// A training run, scripted

struct resume_state {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    std::mt19937_64 rng;
    std::int64_t step = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(rng), CEREAL_NVP(step));
    }
};

/// What a fresh process builds before it restores (the shapes are the model's).
resume_state initial_state() {
    resume_state s;
    s.weight = Eigen::MatrixXf::Constant(8, 4, 0.5F);
    s.bias = Eigen::VectorXf::Zero(8);
    s.rng.seed(42);
    return s;
}

/// One training step: reads and changes the whole state, so a wrong restore shows.
void train_step(resume_state& s) {
    std::normal_distribution<float> noise(0.0F, 0.01F);
    for (Eigen::Index i = 0; i < s.weight.size(); ++i) s.weight.data()[i] += noise(s.rng);
    s.bias.array() += 0.001F;
    ++s.step;
}

const double nan_loss = std::numeric_limits<double>::quiet_NaN();

// The script: the validation loss and the minutes each step takes. Every rule fires alone and
// together with another; step 9 has a NaN loss; steps 13 and 23 are slow, so every(10min) fires
// off the every_steps(5) grid. The expected outcome (script_expected below) was worked out by
// hand and with an independent model of the policy and retention rules.
constexpr std::int64_t script_steps = 36;
const std::array<double, script_steps> script_val_loss = {
    0.90, 0.95, 0.85, 0.88, 0.87, 0.80, 0.82, 0.83, nan_loss, 0.81, 0.79, 0.84,
    0.86, 0.85, 0.90, 0.78, 0.79, 0.80, 0.80, 0.77, 0.76,     0.90, 0.91, 0.92,
    0.93, 0.75, 0.80, 0.80, 0.80, 0.74, 0.81, 0.82, 0.83,     0.84, 0.85, 0.86};
const std::array<int, script_steps> step_minutes = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  1,
                                                    9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 12, 1,
                                                    1, 1, 1, 3, 1, 1, 1, 1, 4, 1, 1,  1};

const time_point t0 = std::chrono::sys_days(std::chrono::year(2026) / 1 / 1);

/// The wall clock when step `s` ends (t0 for step 0).
time_point time_of(std::int64_t s) {
    time_point t = t0;
    for (std::int64_t i = 0; i < s; ++i) t += minutes(step_minutes[static_cast<std::size_t>(i)]);
    return t;
}

ckpt::metadata meta_of(std::int64_t s) {
    return {.step = s, .metrics = {{"val_loss", script_val_loss[static_cast<std::size_t>(s - 1)]}}};
}

/// The injected wall clock: the test sets it.
struct test_clock {
    time_point now = t0;
};

ckpt::manager_options options_with(test_clock& c) {
    ckpt::manager_options o;
    o.clock = [&c] { return c.now; };
    return o;
}

ckpt::save_policy script_policy() {
    return ckpt::every_steps(5) | ckpt::on_best("val_loss") | ckpt::every(minutes(10));
}
ckpt::retention script_retention() {
    return ckpt::keep_last(3) | ckpt::keep_best(2, "val_loss");
}

const std::string by_steps = "every_steps(5)";
const std::string by_best = "on_best(val_loss,min,0)";
const std::string by_time = "every(600000000000ns)";

/// "ckpt-000000000025.ckpt"
std::string file_of(std::int64_t step) {
    std::string digits = std::to_string(step);
    digits.insert(0, 12 - digits.size(), '0');
    return "ckpt-" + digits + ".ckpt";
}

std::vector<std::string> files_of(std::initializer_list<std::int64_t> steps) {
    std::vector<std::string> out;
    for (const std::int64_t s : steps) out.push_back(file_of(s));
    return out;
}

/// The names in `dir`, sorted, without the lock file.
std::vector<std::string> on_disk(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name != "ckpt.lock") out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// Everything observable about one step of a managed run.
struct step_record {
    bool saved = false;
    std::vector<std::string> reasons;
    std::vector<std::string> deleted;       ///< file names
    std::vector<std::string> disk;          ///< the folder after the step
    std::vector<std::int64_t> listed;       ///< list(): the steps, oldest first
    std::int64_t latest = -1;               ///< list(): the step flagged latest
    std::int64_t best = -1;                 ///< list(): the step flagged best
    std::vector<std::int64_t> top_val_loss; ///< list(): steps by val_loss, best first (no NaN)
    std::int64_t steps_at_risk = -1;
    double seconds_at_risk = -1;
    std::vector<std::byte> state; ///< the state after the step

    friend bool operator==(const step_record&, const step_record&) = default;
};

step_record observe(const ckpt::manager& m, const ckpt::save_result& r, const resume_state& st) {
    step_record rec;
    rec.saved = r.saved;
    rec.reasons = r.reasons;
    for (const auto& p : r.deleted) rec.deleted.push_back(p.filename().string());
    std::sort(rec.deleted.begin(), rec.deleted.end());
    rec.disk = on_disk(m.directory());
    const auto entries = m.list();
    std::vector<std::pair<double, std::int64_t>> ranked;
    for (const auto& e : entries) {
        rec.listed.push_back(e.step);
        if (e.latest) rec.latest = e.step;
        if (e.best) rec.best = e.step;
        const double v = e.metrics.at("val_loss");
        if (!std::isnan(v)) ranked.emplace_back(v, -e.step); // a tie goes to the newer
    }
    std::sort(ranked.begin(), ranked.end());
    for (const auto& [v, minus_step] : ranked) rec.top_val_loss.push_back(-minus_step);
    const ckpt::manager_stats s = m.stats();
    rec.steps_at_risk = s.steps_at_risk;
    rec.seconds_at_risk = s.seconds_at_risk;
    rec.state = test::state_bytes(st);
    return rec;
}

/// Runs steps [first, last] of the script; records[s] is what step s did.
void run_steps(ckpt::manager& m, resume_state& st, test_clock& c, std::int64_t first,
               std::int64_t last, std::map<std::int64_t, step_record>& records) {
    for (std::int64_t s = first; s <= last; ++s) {
        train_step(st);
        c.now = time_of(s);
        const ckpt::save_result r = m.step(st, meta_of(s));
        records[s] = observe(m, r, st);
    }
}

/// The run that never stops, its records and the files it leaves (name -> bytes).
struct reference_run {
    std::map<std::int64_t, step_record> records;
    std::map<std::string, std::vector<std::byte>> files;
    std::vector<std::byte> final_state;

    /// The step of the last save at or before `k` (0: none).
    [[nodiscard]] std::int64_t last_save(std::int64_t k) const {
        for (std::int64_t s = k; s >= 1; --s) {
            if (records.at(s).saved) return s;
        }
        return 0;
    }
};

const reference_run& reference() {
    static const reference_run ref = [] {
        reference_run r;
        const fs::path dir = test::scratch("reference");
        test_clock c;
        resume_state st = initial_state();
        {
            ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
            run_steps(m, st, c, 1, script_steps, r.records);
        }
        for (const std::string& name : on_disk(dir)) r.files[name] = test::read_file(dir / name);
        r.final_state = test::state_bytes(st);
        return r;
    }();
    return ref;
}

/// Checks a restarted run's records of steps [first, last] against the reference.
void check_steps(const std::map<std::int64_t, step_record>& got, std::int64_t first,
                 std::int64_t last) {
    const reference_run& ref = reference();
    for (std::int64_t s = first; s <= last; ++s) {
        CAPTURE(s);
        REQUIRE(got.count(s) == 1);
        const step_record& a = got.at(s);
        const step_record& b = ref.records.at(s);
        CHECK(a.saved == b.saved);
        CHECK(a.reasons == b.reasons);
        CHECK(a.deleted == b.deleted);
        CHECK(a.disk == b.disk);
        CHECK(a.listed == b.listed);
        CHECK(a.latest == b.latest);
        CHECK(a.best == b.best);
        CHECK(a.top_val_loss == b.top_val_loss);
        CHECK(a.steps_at_risk == b.steps_at_risk);
        CHECK(a.seconds_at_risk == b.seconds_at_risk);
        CHECK(a.state == b.state);
    }
}

/// The folder holds exactly the reference's files, byte for byte.
void check_files_match_reference(const fs::path& dir) {
    const reference_run& ref = reference();
    std::vector<std::string> expected;
    for (const auto& [name, bytes] : ref.files) expected.push_back(name);
    REQUIRE(on_disk(dir) == expected);
    for (const auto& [name, bytes] : ref.files) {
        CAPTURE(name);
        CHECK(test::read_file(dir / name) == bytes);
    }
}

/// A manager on `dir` starts at wall time `restart`, restores, and runs the script from the
/// step after the restored one up to `last`. @returns the restored step (0: none)
std::int64_t resume(const fs::path& dir, test_clock& c, time_point restart, std::int64_t last,
                    std::map<std::int64_t, step_record>& records, resume_state& st) {
    c.now = restart;
    ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
    st = initial_state();
    const std::optional<ckpt::metadata> meta = m.restore_latest(st);
    const std::int64_t from = meta ? meta->step : 0;
    CHECK(m.skipped().empty());
    CHECK(m.cleaned().empty());
    CHECK(m.stats().steps_at_risk == 0);
    run_steps(m, st, c, from + 1, last, records);
    return from;
}

// ---------------------------------------------------------------------------------------------
// Fault injection and processes

/// The real POSIX calls, except that rename kills the process: a save that dies after its
/// temporary file is written and synced, before it is put in place.
class dies_on_rename final : public test::posix_forwarding {
public:
    int rename(const char* /*from*/, const char* /*to*/) override {
        ::raise(SIGKILL);
        return -1;
    }
};

/// Runs `body` in a child process, which ends with _exit(body()) (no destructors, no doctest);
/// an exception ends it with 99. @returns the child's pid
template <class Body>
::pid_t spawn(Body body) {
    std::fflush(nullptr);
    const ::pid_t pid = ::fork();
    if (pid == 0) {
        int code = 99;
        try {
            code = body();
        } catch (...) {
        }
        ::_exit(code);
    }
    return pid;
}

/// Waits for `pid`; its exit status, or 1000 + the signal that killed it.
int wait_for(::pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
    return -1;
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "nothing" : out;
}

std::string names_of(const std::vector<fs::path>& paths) {
    std::vector<std::string> names;
    for (const fs::path& p : paths) names.push_back(p.filename().string());
    return joined(names);
}

double seconds(std::chrono::system_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

std::string read_text(const fs::path& p) {
    const std::vector<std::byte> b = test::read_file(p);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// ---------------------------------------------------------------------------------------------
// Damage

/// Flips one bit of the first tensor's data.
void flip_data_byte(const fs::path& p) {
    const ckpt::info inf = ckpt::inspect(p);
    std::vector<std::byte> b = test::read_file(p);
    const std::size_t at = 8 + static_cast<std::size_t>(inf.header_bytes + inf.tensors[0].offset);
    b.at(at + 5) ^= std::byte{0x10};
    test::write_file(p, b);
}

/// A managed run with every_steps(5) and keep_all over steps 1..last; states[s] is the state
/// saved at step s.
std::map<std::int64_t, std::vector<std::byte>> five_step_run(const fs::path& dir,
                                                             std::int64_t last) {
    std::map<std::int64_t, std::vector<std::byte>> states;
    test_clock c;
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_all(), options_with(c));
    resume_state st = initial_state();
    for (std::int64_t s = 1; s <= last; ++s) {
        train_step(st);
        c.now = time_of(s);
        if (m.step(st, meta_of(s))) states[s] = test::state_bytes(st);
    }
    return states;
}

/// A manager over `dir` with the five-step policy that records what on_skipped reports.
struct watched_manager {
    std::vector<ckpt::skipped_checkpoint> reported;
    test_clock clock;
    ckpt::manager m;

    explicit watched_manager(const fs::path& dir)
        : m(dir, ckpt::every_steps(5), ckpt::keep_all(), options()) {}

private:
    ckpt::manager_options options() {
        ckpt::manager_options o = options_with(clock);
        o.on_skipped = [this](const ckpt::skipped_checkpoint& s) { reported.push_back(s); };
        return o;
    }
};

bool same(const std::vector<ckpt::skipped_checkpoint>& a,
          const std::vector<ckpt::skipped_checkpoint>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].path != b[i].path || a[i].error_id != b[i].error_id ||
            a[i].reason != b[i].reason) {
            return false;
        }
    }
    return true;
}

} // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("the script, uninterrupted: saves, reasons and files step by step") {
    const reference_run& ref = reference();
    struct expected_save {
        std::int64_t step;
        std::vector<std::string> reasons;
        std::vector<std::string> disk;
    };
    // Worked out from the rules: every_steps counts from its own last save, on_best from the
    // best value saved, every(10min) from its last save (or the start); retention keeps the 3
    // newest, the 2 best by val_loss, and never a NaN as best.
    const std::vector<expected_save> expected = {
        {1, {by_best}, files_of({1})},
        {3, {by_best}, files_of({1, 3})},
        {5, {by_steps}, files_of({1, 3, 5})},
        {6, {by_best}, files_of({3, 5, 6})},
        {10, {by_steps, by_time}, files_of({5, 6, 10})},
        {11, {by_best}, files_of({6, 10, 11})},
        {13, {by_time}, files_of({6, 10, 11, 13})},
        {15, {by_steps}, files_of({6, 11, 13, 15})},
        {16, {by_best}, files_of({11, 13, 15, 16})},
        {20, {by_steps, by_best}, files_of({15, 16, 20})},
        {21, {by_best}, files_of({16, 20, 21})},
        {23, {by_time}, files_of({20, 21, 23})},
        {25, {by_steps}, files_of({20, 21, 23, 25})},
        {26, {by_best}, files_of({21, 23, 25, 26})},
        {30, {by_steps, by_best}, files_of({25, 26, 30})},
        {31, {by_time}, files_of({26, 30, 31})},
        {35, {by_steps}, files_of({26, 30, 31, 35})},
    };
    std::size_t next = 0;
    std::vector<std::string> disk;
    for (std::int64_t s = 1; s <= script_steps; ++s) {
        CAPTURE(s);
        const step_record& r = ref.records.at(s);
        if (next < expected.size() && expected[next].step == s) {
            CHECK(r.saved);
            CHECK(r.reasons == expected[next].reasons);
            disk = expected[next].disk;
            ++next;
        } else {
            CHECK_FALSE(r.saved);
            CHECK(r.reasons.empty());
        }
        CHECK(r.disk == disk);
        CHECK(r.steps_at_risk == s - ref.last_save(s));
    }
    CHECK(ref.records.at(15).deleted == files_of({10}));
    CHECK(ref.records.at(20).deleted == files_of({11, 13}));
    CHECK(ref.records.at(30).deleted == files_of({21, 23}));
    // The end: 30 is the best (0.74), then 26 (0.75); 35 is the latest.
    const step_record& end = ref.records.at(script_steps);
    CHECK(end.listed == std::vector<std::int64_t>{26, 30, 31, 35});
    CHECK(end.latest == 35);
    CHECK(end.best == 30);
    CHECK(end.top_val_loss == std::vector<std::int64_t>{30, 26, 31, 35});
    CHECK(end.seconds_at_risk == 60.0); // step 36 ends a minute after the save at 35
    // Step 9's NaN: the best flag stayed on 6 (0.80).
    CHECK(ref.records.at(9).best == 6);
}

TEST_CASE("resume after a stop at step k: the run that never stopped, for many k") {
    const reference_run& ref = reference();
    // Right after a save (5, 20), between saves (9, 12, 14, 19, 24, 29, 33), at the end (36).
    for (const std::int64_t k : {2, 5, 9, 12, 14, 19, 20, 24, 29, 33, 36}) {
        CAPTURE(k);
        const fs::path dir = test::scratch("stop-" + std::to_string(k));
        test_clock c;
        std::map<std::int64_t, step_record> first, second;
        resume_state st = initial_state();
        {
            ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
            run_steps(m, st, c, 1, k, first);
        } // the "crash": the manager goes, nothing else happens
        check_steps(first, 1, k);

        // The restart happens an hour later: the restored policy state, not the new manager's
        // start time, decides when every(10min) fires next.
        const std::int64_t j = ref.last_save(k);
        const std::int64_t restored =
            resume(dir, c, time_of(k) + std::chrono::hours(1), script_steps, second, st);
        CHECK(restored == j);
        check_steps(second, j + 1, script_steps);
        CHECK(test::state_bytes(st) == ref.final_state);
        check_files_match_reference(dir);
    }
}

TEST_CASE("resume: restarted after every single step, the run is still the same") {
    const reference_run& ref = reference();
    const fs::path dir = test::scratch("stop-every-step");
    test_clock c;
    resume_state st = initial_state();
    std::map<std::int64_t, step_record> records;
    for (std::int64_t k = 1; k <= script_steps; ++k) {
        CAPTURE(k);
        // Until a checkpoint exists a restart is a fresh start, at the script's start time.
        const time_point restart = k == 1 ? t0 : time_of(k - 1) + minutes(7);
        const std::int64_t from = resume(dir, c, restart, k, records, st);
        CHECK(from == ref.last_save(k - 1));
        check_steps(records, from + 1, k);
    }
    CHECK(test::state_bytes(st) == ref.final_state);
    check_files_match_reference(dir);
}

TEST_CASE("resume: on_best compares with the best saved before the restart") {
    // Stopped at 14: the newest checkpoint is 13 (every(10min), loss 0.86); the best saved is
    // 0.79 at 11. A manager that forgot it would save 14 (0.85) as a "best".
    const fs::path dir = test::scratch("best-survives");
    test_clock c;
    resume_state st = initial_state();
    std::map<std::int64_t, step_record> records;
    {
        ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
        run_steps(m, st, c, 1, 14, records);
    }
    const ckpt::info newest = ckpt::inspect(dir / file_of(13));
    CHECK(newest.meta.tags.at("ckpt.policy." + by_best) == "0.79 11");
    CHECK(newest.meta.tags.at("ckpt.policy." + by_steps) == "10");
    CHECK(newest.meta.tags.at("ckpt.policy." + by_time) ==
          std::to_string(
              std::chrono::duration_cast<std::chrono::nanoseconds>(time_of(13).time_since_epoch())
                  .count()));

    c.now = time_of(14) + std::chrono::hours(5);
    ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
    st = initial_state();
    REQUIRE(m.restore_latest(st).value().step == 13);
    for (std::int64_t s = 14; s <= 16; ++s) {
        CAPTURE(s);
        train_step(st);
        c.now = time_of(s);
        const ckpt::save_result r = m.step(st, meta_of(s));
        if (s == 14) CHECK_FALSE(r.saved); // 0.85 is not better than 0.79
        if (s == 15) CHECK(r.reasons == std::vector<std::string>{by_steps}); // 5 after 10
        if (s == 16) CHECK(r.reasons == std::vector<std::string>{by_best});  // 0.78 < 0.79
    }
}

TEST_CASE("resume in a new process: a child runs the first half and _exits") {
    const reference_run& ref = reference();
    constexpr std::int64_t half = script_steps / 2; // 18; the last save before it is 16
    const fs::path dir = test::scratch("fork-half");
    const ::pid_t child = spawn([&] {
        test_clock c;
        resume_state st = initial_state();
        std::map<std::int64_t, step_record> records;
        // Its own manager, never destroyed: _exit skips every destructor.
        auto* m = new ckpt::manager(dir, script_policy(), script_retention(), options_with(c));
        run_steps(*m, st, c, 1, half, records);
        for (std::int64_t s = 1; s <= half; ++s) {
            if (!(records.at(s) == ref.records.at(s))) return static_cast<int>(s);
        }
        return 0;
    });
    REQUIRE(child > 0);
    CHECK(wait_for(child) == 0); // else: the first step where the child's run differed
    CHECK(read_text(dir / "ckpt.lock") == std::to_string(child));
    CHECK(on_disk(dir) == ref.records.at(half).disk);

    test_clock c;
    resume_state st = initial_state();
    std::map<std::int64_t, step_record> records;
    const std::int64_t from =
        resume(dir, c, time_of(half) + std::chrono::hours(2), script_steps, records, st);
    CHECK(from == 16);
    check_steps(records, from + 1, script_steps);
    CHECK(test::state_bytes(st) == ref.final_state);
    check_files_match_reference(dir);
    // The dead child's pid stayed in the lock file; this manager wrote its own, then emptied
    // the file when it released the lock.
    CHECK(read_text(dir / "ckpt.lock").empty());
}

TEST_CASE("a child killed by SIGKILL right after a save leaves no lock behind") {
    const fs::path dir = test::scratch("sigkill");
    std::vector<std::byte> saved_at_5;
    {
        resume_state st = initial_state();
        for (int i = 0; i < 5; ++i) train_step(st);
        saved_at_5 = test::state_bytes(st);
    }
    const ::pid_t child = spawn([&] {
        test_clock c;
        resume_state st = initial_state();
        ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(2), options_with(c));
        for (std::int64_t s = 1; s <= 5; ++s) {
            train_step(st);
            c.now = time_of(s);
            if (m.step(st, meta_of(s))) ::raise(SIGKILL);
        }
        return 1; // step 5 did not save
    });
    REQUIRE(child > 0);
    CHECK(wait_for(child) == 1000 + SIGKILL);
    CHECK(read_text(dir / "ckpt.lock") == std::to_string(child)); // the dead process's pid
    CHECK(on_disk(dir) == files_of({5}));

    test_clock c;
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(2), options_with(c));
    CHECK(read_text(dir / "ckpt.lock") == std::to_string(::getpid()));
    resume_state st = initial_state();
    REQUIRE(m.restore_latest(st).value().step == 5);
    CHECK(test::state_bytes(st) == saved_at_5);
    CHECK(m.cleaned().empty());
    CHECK(m.skipped().empty());
}

TEST_CASE("a child killed in the middle of a save: its temporary file is cleaned at start") {
    const fs::path dir = test::scratch("sigkill-mid-save");
    five_step_run(dir, 5); // step 5 is on disk
    dies_on_rename dying;
    const ::pid_t child = spawn([&] {
        test_clock c;
        ckpt::manager_options o = options_with(c);
        o.backend = &dying;
        ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_all(), o);
        resume_state st = initial_state();
        if (!m.restore_latest(st)) return 2;
        for (std::int64_t s = 6; s <= 10; ++s) {
            train_step(st);
            c.now = time_of(s);
            m.step(st, meta_of(s)); // step 10 dies in rename
        }
        return 1;
    });
    REQUIRE(child > 0);
    CHECK(wait_for(child) == 1000 + SIGKILL);
    std::vector<std::string> before = on_disk(dir);
    REQUIRE(before.size() == 2);
    CHECK(before[0] == file_of(5));
    CHECK(before[1].starts_with(file_of(10) + ".tmp-" + std::to_string(child) + "-"));

    test_clock c;
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_all(), options_with(c));
    REQUIRE(m.cleaned().size() == 1);
    CHECK(m.cleaned()[0] == dir / before[1]);
    CHECK(on_disk(dir) == files_of({5}));
    resume_state st = initial_state();
    CHECK(m.restore_latest(st).value().step == 5);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("fallback: a flipped data byte in the newest checkpoint") {
    const fs::path dir = test::scratch("fallback-flip");
    const auto states = five_step_run(dir, 25);
    REQUIRE(on_disk(dir) == files_of({5, 10, 15, 20, 25}));
    flip_data_byte(dir / file_of(25));

    watched_manager w(dir);
    // Only the header is read at start: the damage shows when the file is loaded.
    CHECK(w.m.skipped().empty());
    CHECK(w.m.list().back().step == 25);
    resume_state st = initial_state();
    const auto meta = w.m.restore_latest(st);
    REQUIRE(meta.has_value());
    CHECK(meta->step == 20);
    CHECK(meta->metrics.at("val_loss") == script_val_loss[19]);
    CHECK(test::state_bytes(st) == states.at(20));
    REQUIRE(w.m.skipped().size() == 1);
    CHECK(w.m.skipped()[0].path == dir / file_of(25));
    CHECK(w.m.skipped()[0].error_id == ckpt::errc::corrupt_checksum);
    CHECK(w.m.skipped()[0].reason.find("[ckpt.corrupt.204]") == 0);
    CHECK(w.m.skipped()[0].reason.find("checksum mismatch") != std::string::npos);
    CHECK(same(w.reported, w.m.skipped()));
    CHECK(w.m.stats().steps_at_risk == 0);
    // Nothing was deleted: a damaged file is evidence.
    CHECK(on_disk(dir) == files_of({5, 10, 15, 20, 25}));

    // The run goes on from 20; at 25 the damaged file is replaced by a good one.
    for (std::int64_t s = 21; s <= 25; ++s) {
        train_step(st);
        w.clock.now = time_of(s);
        const ckpt::save_result r = w.m.step(st, meta_of(s));
        CHECK(r.saved == (s == 25));
    }
    CHECK(test::state_bytes(st) == states.at(25));
    resume_state check = initial_state();
    CHECK(ckpt::load(dir / file_of(25), check).step == 25);
    CHECK(test::state_bytes(check) == states.at(25));
}

TEST_CASE("fallback: retention after it never deletes the checkpoint just written") {
    // The restart comes an hour after the crash, so every(10min) fires on its first step: a save
    // at a step below the damaged newest file. That file must not count as "the newest" (nor
    // fill keep_last's slot), or retention deletes the good checkpoint it has just written.
    const fs::path dir = test::scratch("fallback-retention");
    const auto policy = [] { return ckpt::every_steps(5) | ckpt::every(minutes(10)); };
    const auto keep = [] { return ckpt::keep_last(1) | ckpt::keep_best(1, "val_loss"); };
    const auto meta_with = [](std::int64_t s, double v) {
        return ckpt::metadata{.step = s, .metrics = {{"val_loss", v}}};
    };
    test_clock c;
    resume_state st = initial_state();
    {
        ckpt::manager m(dir, policy(), keep(), options_with(c));
        for (std::int64_t s = 1; s <= 10; ++s) {
            train_step(st);
            c.now = t0 + minutes(s);
            m.step(st, meta_with(s, s == 5 ? 0.5 : 0.9));
        }
    }
    REQUIRE(on_disk(dir) == files_of({5, 10})); // 5 the best, 10 the newest
    flip_data_byte(dir / file_of(10));

    c.now = t0 + std::chrono::hours(1);
    std::vector<std::byte> saved_at_6;
    {
        ckpt::manager m(dir, policy(), keep(), options_with(c));
        st = initial_state();
        REQUIRE(m.restore_latest(st).value().step == 5);
        train_step(st);
        c.now += minutes(1);
        const ckpt::save_result r = m.step(st, meta_with(6, 0.7));
        saved_at_6 = test::state_bytes(st);
        REQUIRE(r.saved);
        CHECK(r.reasons == std::vector<std::string>{by_time});
        CHECK(r.path == dir / file_of(6));
        INFO("retention deleted: " << names_of(r.deleted));
        INFO("the folder holds: " << joined(on_disk(dir)));
        CHECK(std::find(r.deleted.begin(), r.deleted.end(), r.path) == r.deleted.end());
        CHECK(fs::exists(dir / file_of(6)));
        CHECK(fs::exists(dir / file_of(5))); // the best
        CHECK(m.list().back().step == 6);    // the newest checkpoint that loads
        CHECK(m.stats().steps_at_risk == 0);
    }
    // A crash now resumes from 6, the newest good checkpoint.
    ckpt::manager m(dir, policy(), keep(), options_with(c));
    st = initial_state();
    const auto meta = m.restore_latest(st);
    REQUIRE(meta.has_value());
    CHECK(meta->step == 6);
    CHECK(test::state_bytes(st) == saved_at_6);
}

TEST_CASE("fallback: a truncated newest checkpoint") {
    struct cut_case {
        const char* name;
        int id; ///< what the scan reports (README's table of errors)
    };
    // Where the cut falls decides the id: 8 bytes off the end leave every tensor room but no
    // longer tile the data (207); most of the data gone, a tensor declares more bytes than the
    // file holds (504); a cut inside the JSON header (202).
    for (const cut_case cut : {cut_case{"tail", ckpt::errc::corrupt_offsets},
                               cut_case{"data", ckpt::errc::limit_tensor_bytes},
                               cut_case{"header", ckpt::errc::corrupt_truncated_header}}) {
        CAPTURE(std::string(cut.name));
        const fs::path dir = test::scratch(std::string("fallback-cut-") + cut.name);
        const auto states = five_step_run(dir, 25);
        const fs::path victim = dir / file_of(25);
        const ckpt::info inf = ckpt::inspect(victim);
        const std::string name = cut.name;
        const std::uint64_t keep = name == "tail"   ? inf.file_bytes - 8
                                   : name == "data" ? 8 + inf.header_bytes + 16
                                                    : 8 + inf.header_bytes / 2;
        fs::resize_file(victim, keep);

        watched_manager w(dir);
        // The header no longer fits the file: the scan at start already reports it...
        REQUIRE(w.m.skipped().size() == 1);
        CHECK(w.m.skipped()[0].path == victim);
        CHECK(w.m.skipped()[0].error_id == cut.id);
        CHECK(w.m.list().back().step == 20);
        CHECK(w.reported.empty()); // ... on_skipped is called by restore

        resume_state st = initial_state();
        const auto meta = w.m.restore_latest(st);
        REQUIRE(meta.has_value());
        CHECK(meta->step == 20);
        CHECK(test::state_bytes(st) == states.at(20));
        REQUIRE(w.m.skipped().size() == 1);
        CHECK(w.m.skipped()[0].path == victim);
        CHECK(w.m.skipped()[0].error_id == cut.id);
        CHECK(same(w.reported, w.m.skipped()));
        CHECK(fs::file_size(victim) == keep); // reported, not deleted
    }
}

TEST_CASE("fallback: a damaged file replaced by a good save is not reported by a later restore") {
    // A second restore_latest in the same run (say, a rollback after a loss spike) must not
    // report the truncated file found at start once a good save has replaced it.
    const fs::path dir = test::scratch("fallback-replaced");
    const auto states = five_step_run(dir, 25);
    fs::resize_file(dir / file_of(25), fs::file_size(dir / file_of(25)) - 8);
    watched_manager w(dir);
    resume_state st = initial_state();
    REQUIRE(w.m.restore_latest(st).value().step == 20);
    CHECK(w.m.skipped().size() == 1);
    for (std::int64_t s = 21; s <= 25; ++s) {
        train_step(st);
        w.clock.now = time_of(s);
        CHECK(w.m.step(st, meta_of(s)).saved == (s == 25)); // 25 is rewritten, whole
    }
    w.reported.clear();
    resume_state again = initial_state();
    REQUIRE(w.m.restore_latest(again).value().step == 25);
    CHECK(test::state_bytes(again) == states.at(25));
    for (const auto& skipped : w.m.skipped()) {
        INFO("skipped() lists " << skipped.path.filename().string() << " with id "
                                << skipped.error_id << ": " << skipped.reason);
        CHECK(skipped.path != dir / file_of(25)); // it was just restored from
    }
    CHECK(w.m.skipped().empty());
    CHECK(w.reported.empty());
}

TEST_CASE("fallback: the temporary file of a save that died is removed at start") {
    const fs::path dir = test::scratch("fallback-temp");
    const auto states = five_step_run(dir, 20);
    const fs::path temp = dir / (file_of(25) + ".tmp-999-0");
    std::vector<std::byte> half = test::read_file(dir / file_of(20));
    half.resize(half.size() / 2);
    test::write_file(temp, half);
    REQUIRE(fs::exists(temp));

    watched_manager w(dir);
    CHECK_FALSE(fs::exists(temp));
    REQUIRE(w.m.cleaned().size() == 1);
    CHECK(w.m.cleaned()[0] == temp);
    resume_state st = initial_state();
    CHECK(w.m.restore_latest(st).value().step == 20);
    CHECK(test::state_bytes(st) == states.at(20));
    CHECK(w.m.skipped().empty());
    CHECK(w.reported.empty());
    CHECK(on_disk(dir) == files_of({5, 10, 15, 20}));
}

TEST_CASE("files that ckpt did not write are reported and never deleted") {
    const fs::path dir = test::scratch("foreign");
    five_step_run(dir, 10);
    // Named like checkpoints newer than any real one: text, and a valid safetensors file.
    const std::string text = "these are my notes, not a checkpoint\n";
    std::vector<std::byte> notes(text.size());
    std::memcpy(notes.data(), text.data(), text.size());
    test::write_file(dir / file_of(30), notes);
    const std::vector<std::byte> safetensors = test::craft(R"({"__metadata__":{"a":"b"}})", {},
                                                           /*ckpt_checksum=*/false);
    test::write_file(dir / file_of(31), safetensors);
    // A temporary name of another prefix is not ours either.
    test::write_file(dir / "other-000000000040.ckpt.tmp-999-0", notes);

    test_clock c;
    std::vector<ckpt::skipped_checkpoint> reported;
    ckpt::manager_options o = options_with(c);
    o.on_skipped = [&](const ckpt::skipped_checkpoint& s) { reported.push_back(s); };
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(1), o);
    CHECK(m.cleaned().empty());
    CHECK(m.list().size() == 2); // 5 and 10

    resume_state st = initial_state();
    REQUIRE(m.restore_latest(st).value().step == 10);
    // Foreign files, not damaged checkpoints: neither skipped nor reported to on_skipped.
    CHECK(m.foreign() == std::vector<fs::path>{dir / file_of(30), dir / file_of(31)});
    CHECK(m.skipped().empty());
    CHECK(reported.empty());

    // Retention runs (keep_last(1)) and deletes the real old ones, never these.
    for (std::int64_t s = 11; s <= 20; ++s) {
        train_step(st);
        c.now = time_of(s);
        m.step(st, meta_of(s));
    }
    CHECK(on_disk(dir) == std::vector<std::string>{file_of(20), file_of(30), file_of(31),
                                                   "other-000000000040.ckpt.tmp-999-0"});
    CHECK(test::read_file(dir / file_of(30)) == notes);
    CHECK(test::read_file(dir / file_of(31)) == safetensors);
}

TEST_CASE("no checkpoint at all: restore_latest returns nullopt and leaves the state alone") {
    SUBCASE("an empty folder") {
        const fs::path dir = test::scratch("nothing");
        watched_manager w(dir);
        resume_state st = initial_state();
        train_step(st);
        const std::vector<std::byte> before = test::state_bytes(st);
        CHECK_FALSE(w.m.restore_latest(st).has_value());
        CHECK_FALSE(w.m.restore_best(st, "val_loss").has_value());
        CHECK(test::state_bytes(st) == before);
        CHECK(w.m.skipped().empty());
        CHECK(w.m.list().empty());
    }
    SUBCASE("only damaged checkpoints") {
        const fs::path dir = test::scratch("only-damaged");
        five_step_run(dir, 10);
        flip_data_byte(dir / file_of(5));
        flip_data_byte(dir / file_of(10));
        watched_manager w(dir);
        resume_state st = initial_state();
        const std::vector<std::byte> before = test::state_bytes(st);
        CHECK_FALSE(w.m.restore_latest(st).has_value());
        CHECK(test::state_bytes(st) == before);
        REQUIRE(w.m.skipped().size() == 2);
        CHECK(w.m.skipped()[0].path == dir / file_of(10)); // newest first
        CHECK(w.m.skipped()[1].path == dir / file_of(5));
        CHECK(w.m.skipped()[0].error_id == ckpt::errc::corrupt_checksum);
        CHECK(w.m.skipped()[1].error_id == ckpt::errc::corrupt_checksum);
        CHECK(same(w.reported, w.m.skipped()));
    }
}

TEST_CASE("restore_best loads the best, and the next best when the best is damaged") {
    const fs::path dir = test::scratch("restore-best");
    const reference_run& ref = reference();
    {
        test_clock c;
        resume_state st = initial_state();
        std::map<std::int64_t, step_record> records;
        ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
        run_steps(m, st, c, 1, script_steps, records);
    }
    // On disk: 26 (0.75), 30 (0.74), 31 (0.81), 35 (0.85).
    {
        test_clock c;
        ckpt::manager m(dir, script_policy(), script_retention(), options_with(c));
        resume_state st = initial_state();
        const auto meta = m.restore_best(st, "val_loss");
        REQUIRE(meta.has_value());
        CHECK(meta->step == 30);
        CHECK(meta->metrics.at("val_loss") == 0.74);
        CHECK(test::state_bytes(st) == ref.records.at(30).state);
        CHECK(m.skipped().empty());
        // maximize: the worst loss is the "best"
        CHECK(m.restore_best(st, "val_loss", ckpt::goal::maximize).value().step == 35);
    }
    flip_data_byte(dir / file_of(30));
    test_clock c;
    std::vector<ckpt::skipped_checkpoint> reported;
    ckpt::manager_options o = options_with(c);
    o.on_skipped = [&](const ckpt::skipped_checkpoint& s) { reported.push_back(s); };
    ckpt::manager m(dir, script_policy(), script_retention(), o);
    resume_state st = initial_state();
    const auto meta = m.restore_best(st, "val_loss");
    REQUIRE(meta.has_value());
    CHECK(meta->step == 26);
    CHECK(test::state_bytes(st) == ref.records.at(26).state);
    REQUIRE(m.skipped().size() == 1);
    CHECK(m.skipped()[0].path == dir / file_of(30));
    CHECK(m.skipped()[0].error_id == ckpt::errc::corrupt_checksum);
    CHECK(same(reported, m.skipped()));
}

TEST_CASE("a schema error stops the fallback: no silent restore of an older file") {
    const fs::path dir = test::scratch("schema-stop");
    test_clock c;
    {
        ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_all(), options_with(c));
        resume_state st = initial_state(); // weight 8x4
        for (std::int64_t s = 1; s <= 5; ++s) train_step(st);
        m.step(st, meta_of(5));
        st.weight = Eigen::MatrixXf::Constant(6, 4, 0.25F); // the model changed shape
        for (std::int64_t s = 6; s <= 10; ++s) train_step(st);
        m.step(st, meta_of(10));
    }
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_all(), options_with(c));
    resume_state st = initial_state(); // 8x4: fits step 5, not the newest
    const std::vector<std::byte> before = test::state_bytes(st);
    bool thrown = false;
    try {
        m.restore_latest(st);
    } catch (const ckpt::schema_error& e) {
        thrown = true;
        CHECK(e.id() == ckpt::errc::schema_mismatch);
        CHECK(std::string(e.what()).find("weight") != std::string::npos);
    }
    CHECK(thrown);
    CHECK(test::state_bytes(st) == before);
    CHECK(m.skipped().empty());
    // Explicitly asking for the best by a metric goes through the same gate.
    CHECK(test::error_id([&] { m.restore_best(st, "val_loss"); }) ==
          ckpt::errc::schema_mismatch); // 10 (0.81) is better than 5 (0.87)
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("the lock: one manager per folder") {
    const fs::path dir = test::scratch("lock");
    test_clock c;
    const std::string me = std::to_string(::getpid());

    SUBCASE("a second manager in this process: usage_error 603 naming the folder and the pid") {
        auto first = std::make_optional<ckpt::manager>(dir, ckpt::every_steps(5), ckpt::keep_all(),
                                                       options_with(c));
        CHECK(read_text(dir / "ckpt.lock") == me);
        for (const fs::path& spelling : {dir, dir / ".", fs::path(dir.string() + "/")}) {
            CAPTURE(spelling);
            bool thrown = false;
            try {
                ckpt::manager second(spelling, ckpt::every_steps(5));
            } catch (const ckpt::usage_error& e) {
                thrown = true;
                CHECK(e.id() == ckpt::errc::usage_directory_locked);
                const std::string what = e.what();
                CHECK(what.find("[ckpt.usage.603]") == 0);
                CHECK(what.find("'" + spelling.string() + "'") != std::string::npos);
                CHECK(what.find("(pid " + me + ", this process)") != std::string::npos);
            }
            CHECK(thrown);
        }
        CHECK(read_text(dir / "ckpt.lock") == me); // the failed attempts left it alone
        first.reset();
        ckpt::manager again(dir, ckpt::every_steps(5));
        CHECK(read_text(dir / "ckpt.lock") == me);
    }

    SUBCASE("a manager in another process: 603 with that process's pid") {
        int ready[2];
        int go[2];
        REQUIRE(::pipe(ready) == 0);
        REQUIRE(::pipe(go) == 0);
        const ::pid_t child = spawn([&] {
            ckpt::manager m(dir, ckpt::every_steps(5));
            char b = 'r';
            if (::write(ready[1], &b, 1) != 1) return 3;
            if (::read(go[0], &b, 1) != 1) return 4;
            return 0;
        });
        REQUIRE(child > 0);
        char b = 0;
        REQUIRE(::read(ready[0], &b, 1) == 1);
        const std::string what =
            test::error_text([&] { ckpt::manager m(dir, ckpt::every_steps(5)); });
        CHECK(what.find("[ckpt.usage.603]") == 0);
        CHECK(what.find("(pid " + std::to_string(child) + ")") != std::string::npos);
        CHECK(what.find("this process") == std::string::npos);
        REQUIRE(::write(go[1], &b, 1) == 1);
        CHECK(wait_for(child) == 0);
        for (const int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
        ckpt::manager m(dir, ckpt::every_steps(5)); // the holder is gone
        CHECK(read_text(dir / "ckpt.lock") == me);
    }

    SUBCASE("a stale lock file with the pid of a dead process is taken over") {
        const ::pid_t dead = spawn([] { return 0; });
        REQUIRE(dead > 0);
        REQUIRE(wait_for(dead) == 0);
        const std::string text = std::to_string(dead) + "\n(written by a process long gone)";
        std::vector<std::byte> bytes(text.size());
        std::memcpy(bytes.data(), text.data(), text.size());
        test::write_file(dir / "ckpt.lock", bytes);
        ckpt::manager m(dir, ckpt::every_steps(5));
        CHECK(read_text(dir / "ckpt.lock") == me); // replaced, not appended to
    }

    SUBCASE("a folder that cannot be created: io_error 101") {
        test::write_file(dir / "plain-file", {});
        const fs::path bad = dir / "plain-file" / "run";
        bool thrown = false;
        try {
            ckpt::manager m(bad, ckpt::every_steps(5));
        } catch (const ckpt::io_error& e) {
            thrown = true;
            CHECK(e.id() == ckpt::errc::io_open);
            CHECK(e.path() == bad.string());
            CHECK(e.operation() == "create directory");
            CHECK(e.code() == std::error_code(ENOTDIR, std::generic_category()));
        }
        CHECK(thrown);
    }

    SUBCASE("a constructor that fails after taking the lock gives it back") {
        // The folder can be written but not listed: the lock is taken, then the scan fails.
        // Root reads any folder, so the child drops to nobody first.
        const fs::path run = dir / "unlistable";
        fs::create_directories(run);
        if (::getuid() == 0) REQUIRE(::chown(run.c_str(), 65534, 65534) == 0);
        const ::pid_t child = spawn([&] {
            if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 50;
            if (::chmod(run.c_str(), 0300) != 0) return 51;
            const int first = test::error_id([&] { ckpt::manager m(run, ckpt::every_steps(5)); });
            if (::chmod(run.c_str(), 0700) != 0) return 52;
            if (first != ckpt::errc::io_read) return 1; // the scan did not fail as planned
            const int second = test::error_id([&] { ckpt::manager m(run, ckpt::every_steps(5)); });
            return second == 0 ? 0 : second == ckpt::errc::usage_directory_locked ? 2 : 3;
        });
        REQUIRE(child > 0);
        const int status = wait_for(child);
        if (status >= 50 && status <= 52) {
            MESSAGE("skipped: cannot make a folder unlistable here (" << status << ")");
        } else {
            // 2: the second manager got usage_error 603 from its own process, whose failed
            // constructor left the lock file open and locked
            CHECK(status == 0);
        }
    }

    SUBCASE("other prefixes lock separately") {
        ckpt::manager a(dir, ckpt::every_steps(5));
        ckpt::manager_options o;
        o.prefix = "eval";
        ckpt::manager b(dir, ckpt::every_steps(5), ckpt::keep_all(), o);
        CHECK(read_text(dir / "eval.lock") == me);
    }
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("NaN metrics: never the best, and a save still happens when another rule fires") {
    const fs::path dir = test::scratch("nan");
    test_clock c;
    const auto meta_with = [](std::int64_t s, double v) {
        return ckpt::metadata{.step = s, .metrics = {{"val_loss", v}}};
    };
    resume_state st = initial_state();
    std::vector<std::byte> at_11;
    {
        ckpt::manager m(dir, ckpt::every_steps(5) | ckpt::on_best("val_loss"),
                        ckpt::keep_last(2) | ckpt::keep_best(1, "val_loss"), options_with(c));
        for (std::int64_t s = 1; s <= 10; ++s) {
            CAPTURE(s);
            train_step(st);
            const ckpt::save_result r = m.step(st, meta_with(s, nan_loss));
            CHECK(r.saved == (s % 5 == 0));
            if (r.saved) CHECK(r.reasons == std::vector<std::string>{by_steps});
        }
        for (const auto& e : m.list()) CHECK_FALSE(e.best);
        resume_state probe = initial_state();
        const std::vector<std::byte> before = test::state_bytes(probe);
        CHECK_FALSE(m.restore_best(probe, "val_loss").has_value()); // nothing ranks
        CHECK(test::state_bytes(probe) == before);

        train_step(st);
        CHECK(m.step(st, meta_with(11, 0.5)).reasons == std::vector<std::string>{by_best});
        at_11 = test::state_bytes(st);
        for (std::int64_t s = 12; s <= 15; ++s) {
            train_step(st);
            m.step(st, meta_with(s, nan_loss)); // 15: every_steps, NaN loss
        }
        const auto entries = m.list();
        REQUIRE(entries.size() == 2); // 11 (the best; one of the last two) and 15
        CHECK(entries[0].step == 11);
        CHECK(entries[0].best);
        CHECK_FALSE(entries[0].latest);
        CHECK(entries[1].step == 15);
        CHECK(entries[1].latest);
        CHECK_FALSE(entries[1].best);
        CHECK(std::isnan(entries[1].metrics.at("val_loss")));
    }
    // After a restart the NaN checkpoint is read back as NaN and still not the best.
    ckpt::manager m(dir, ckpt::every_steps(5) | ckpt::on_best("val_loss"),
                    ckpt::keep_last(2) | ckpt::keep_best(1, "val_loss"), options_with(c));
    resume_state probe = initial_state();
    REQUIRE(m.restore_best(probe, "val_loss").value().step == 11);
    CHECK(test::state_bytes(probe) == at_11);
    REQUIRE(m.restore_latest(probe).value().step == 15);
    CHECK(std::isnan(m.list().back().metrics.at("val_loss")));
    CHECK(m.list().front().best);
    train_step(probe);
    CHECK_FALSE(m.step(probe, meta_with(16, 0.6)).saved); // 0.6 does not beat 0.5
    train_step(probe);
    CHECK(m.step(probe, meta_with(17, 0.4)).reasons == std::vector<std::string>{by_best});
}

TEST_CASE("stats() after a restart: the risk is measured from the restored checkpoint") {
    const fs::path dir = test::scratch("stats");
    test_clock c;
    resume_state st = initial_state();
    {
        ckpt::manager m(dir, ckpt::every_steps(10), ckpt::keep_all(), options_with(c));
        for (std::int64_t s = 1; s <= 13; ++s) {
            train_step(st);
            c.now = time_of(s);
            m.step(st, meta_of(s));
        }
        const ckpt::manager_stats s = m.stats();
        CHECK(s.checkpoints_written == 1);
        CHECK(s.steps_at_risk == 3);
        CHECK(s.seconds_at_risk == seconds(time_of(13) - time_of(10))); // 11 minutes
    }
    c.now = time_of(13) + minutes(30); // the restart, half an hour later
    ckpt::manager m(dir, ckpt::every_steps(10), ckpt::keep_all(), options_with(c));
    st = initial_state();
    REQUIRE(m.restore_latest(st).value().step == 10);
    ckpt::manager_stats s = m.stats();
    CHECK(s.checkpoints_written == 0); // by this manager
    CHECK(s.checkpoints_on_disk == 1);
    CHECK(s.bytes_on_disk == fs::file_size(dir / file_of(10)));
    CHECK(s.steps_at_risk == 0);
    // 11 minutes of steps after the save, then 30 of downtime
    CHECK(s.seconds_at_risk == seconds(time_of(13) - time_of(10) + minutes(30)));
    CHECK(s.total_save_seconds == 0.0);

    for (std::int64_t step = 11; step <= 12; ++step) {
        train_step(st);
        c.now = time_of(13) + minutes(30 + step - 10);
        CHECK_FALSE(m.step(st, meta_of(step)).saved);
    }
    s = m.stats();
    CHECK(s.steps_at_risk == 2);
    CHECK(s.seconds_at_risk == seconds(time_of(13) - time_of(10) + minutes(32)));
    for (std::int64_t step = 13; step <= 20; ++step) {
        train_step(st);
        m.step(st, meta_of(step));
    }
    s = m.stats();
    CHECK(s.checkpoints_written == 1);
    CHECK(s.checkpoints_on_disk == 2);
    CHECK(s.steps_at_risk == 0);
    CHECK(s.seconds_at_risk == 0.0); // the clock did not move since the save
    CHECK(s.last_save_seconds > 0.0);
    CHECK(s.total_save_seconds == s.last_save_seconds);
}

TEST_CASE("stats() after a restart whose newest checkpoint was damaged") {
    const fs::path dir = test::scratch("stats-damaged");
    five_step_run(dir, 25);
    flip_data_byte(dir / file_of(25));
    watched_manager w(dir);
    w.clock.now = time_of(25) + minutes(10);
    resume_state st = initial_state();
    REQUIRE(w.m.restore_latest(st).value().step == 20);
    const ckpt::manager_stats s = w.m.stats();
    CHECK(s.steps_at_risk == 0);
    // from step 20's time, not from the damaged 25's
    CHECK(s.seconds_at_risk == seconds(w.clock.now - time_of(20)));
}

// ---------------------------------------------------------------------------------------------
// Which restore sets the schedule: restore_* (training continues from it) or load_best (read only)

namespace {

/// every_steps(10) with a save_now at step 12, the best val_loss; on disk: 10, 12 and 20.
/// save_now advances no rule, so step 12's tags hold every_steps' last save as step 10.
void best_at_12_run(const fs::path& dir, test::fake_clock& clock) {
    ckpt::manager m(dir, ckpt::every_steps(10), ckpt::keep_all(), test::with_clock(clock));
    test::train_state st;
    for (std::int64_t s = 1; s <= 20; ++s) {
        clock.now += std::chrono::seconds(1);
        st.step = s;
        const double loss = s == 12 ? 0.25 : 1.0;
        if (s == 12) {
            REQUIRE(m.save_now(st, test::at(s, {{"val_loss", loss}})).saved);
        } else {
            CHECK(m.step(st, test::at(s, {{"val_loss", loss}})).saved == (s % 10 == 0));
        }
    }
}

} // namespace

TEST_CASE("load_best fetches the best weights and leaves the schedule and the work at risk") {
    const fs::path dir = test::scratch("load-best-schedule");
    test::fake_clock clock;
    best_at_12_run(dir, clock);
    clock.now += std::chrono::seconds(30);
    test::train_state best; // a second state, to evaluate
    {
        ckpt::manager m(dir, ckpt::every_steps(10), ckpt::keep_all(), test::with_clock(clock));
        test::train_state st;
        st.step = -1;
        REQUIRE(m.restore_latest(st).value().step == 20);
        CHECK(st.step == 20);

        best.step = -1;
        const auto meta = m.load_best(best, "val_loss");
        REQUIRE(meta.has_value());
        CHECK(meta->step == 12);
        CHECK(meta->metrics.at("val_loss") == 0.25);
        CHECK(best.step == 12);
        CHECK(st.step == 20); // the training state is not involved
        ckpt::manager_stats s = m.stats();
        CHECK(s.steps_at_risk == 0);
        CHECK(s.seconds_at_risk == 30.0); // still from step 20's save, not step 12's

        for (std::int64_t step = 21; step <= 30; ++step) {
            CAPTURE(step);
            clock.now += std::chrono::seconds(1);
            st.step = step;
            const ckpt::save_result r = m.step(st, test::at(step, {{"val_loss", 0.5}}));
            CHECK(r.saved == (step == 30)); // every_steps(10) from step 20, not from 10
            if (step == 25) {
                s = m.stats();
                CHECK(s.steps_at_risk == 5); // 25 - 20
                CHECK(s.seconds_at_risk == 35.0);
            }
        }
        CHECK(m.stats().steps_at_risk == 0);
    }
    {
        // load_best in a manager that restored nothing sets nothing either: the newest (30)
        // counts.
        ckpt::manager fresh(dir, ckpt::every_steps(10), ckpt::keep_all(), test::with_clock(clock));
        REQUIRE(fresh.load_best(best, "val_loss").value().step == 12);
        CHECK(fresh.stats().steps_at_risk == 0);
        CHECK(fresh.stats().seconds_at_risk == 0.0); // the clock has not moved since step 30
    }
    // A clock that moves a second each time it is read: a restore takes time, and a
    // load_best's is no restart cost (training has not resumed from it).
    ckpt::manager_options ticking;
    ticking.clock = [t = std::chrono::system_clock::time_point{}]() mutable {
        return t += std::chrono::seconds(1);
    };
    ckpt::manager timed(dir, ckpt::every_steps(10), ckpt::keep_all(), ticking);
    REQUIRE(timed.load_best(best, "val_loss").value().step == 12);
    CHECK(timed.stats().restart_seconds == 0.0);
    REQUIRE(timed.restore_best(best, "val_loss").value().step == 12);
    CHECK(timed.stats().restart_seconds > 0.0);
}

TEST_CASE("restore_best: training continues from the best, and so does the schedule") {
    const fs::path dir = test::scratch("restore-best-schedule");
    test::fake_clock clock;
    best_at_12_run(dir, clock);
    clock.now += std::chrono::seconds(30);
    ckpt::manager m(dir, ckpt::every_steps(10), ckpt::keep_all(), test::with_clock(clock));
    test::train_state st;
    REQUIRE(m.restore_latest(st).value().step == 20);
    // Step 20 diverged, say: go back to the best and train on from it.
    REQUIRE(m.restore_best(st, "val_loss").value().step == 12);
    CHECK(st.step == 12);
    ckpt::manager_stats s = m.stats();
    CHECK(s.steps_at_risk == 0);
    CHECK(s.seconds_at_risk == 30.0 + 8.0); // from step 12's save
    for (std::int64_t step = 13; step <= 20; ++step) {
        CAPTURE(step);
        clock.now += std::chrono::seconds(1);
        st.step = step;
        // every_steps(10) from its last save before 12, step 10 (save_now advanced no rule)
        CHECK(m.step(st, test::at(step, {{"val_loss", 0.5}})).saved == (step == 20));
        if (step == 15) CHECK(m.stats().steps_at_risk == 3); // 15 - 12
    }
    test::train_state back;
    REQUIRE(m.restore_latest(back).value().step == 20);
    CHECK(back.step == 20);
}
