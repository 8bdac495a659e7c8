// Save policies: each rule fires exactly at the steps and times it should over a scripted run of
// steps, metrics and clock readings; a combination fires on the union, and save_result names
// exactly the rules that fired.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace doctest {
// Also in unit-manager-retention.cpp; the guard lets both share one program (the single-header
// tests' unity build, tests/CMakeLists.txt).
#ifndef CKPT_TEST_STRINGMAKER_INT64_VECTOR
#define CKPT_TEST_STRINGMAKER_INT64_VECTOR
template <>
struct StringMaker<std::vector<std::int64_t>> {
    static String convert(const std::vector<std::int64_t>& v) {
        std::string s = "{";
        for (std::size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : ", ") + std::to_string(v[i]);
        return (s + "}").c_str();
    }
};
#endif
template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v) {
        std::string s = "{";
        for (std::size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "\"" : ", \"") + v[i] + "\"";
        return (s + "}").c_str();
    }
};
} // namespace doctest

namespace {

namespace fs = std::filesystem;
using test::at;
using test::fake_clock;
using test::qnan;
using test::time_point;
using test::train_state;
using test::with_clock;
using reasons_by_step = std::map<std::int64_t, std::vector<std::string>>;

/// Steps of the files named ckpt-<12 digits>.ckpt in `dir`, ascending; -1 for any other .ckpt.
std::vector<std::int64_t> steps_on_disk(const fs::path& dir) {
    std::vector<std::int64_t> out;
    for (const auto& de : fs::directory_iterator(dir)) {
        const std::string name = de.path().filename().string();
        if (!name.ends_with(".ckpt")) continue;
        const bool ours = name.size() == 22 && name.starts_with("ckpt-") &&
                          name.find_first_not_of("0123456789", 5) == 17;
        out.push_back(ours ? std::stoll(name.substr(5, 12)) : -1);
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// What a scripted run saved: the steps, and the reasons at each.
struct run_log {
    std::vector<std::int64_t> saved;
    reasons_by_step reasons;

    void record(std::int64_t step, const ckpt::save_result& r) {
        if (!r) {
            CHECK_MESSAGE(r.reasons.empty(), "step ", step);
            CHECK(r.path.empty());
            CHECK(r.deleted.empty());
            return;
        }
        CHECK(r.saved);
        CHECK(!r.reasons.empty());
        saved.push_back(step);
        reasons[step] = r.reasons;
    }
};

/// Steps `steps` with one metric `name` taking `values` (same length).
run_log run_metric(ckpt::manager& m, const std::vector<std::int64_t>& steps,
                   const std::string& name, const std::vector<double>& values) {
    REQUIRE(steps.size() == values.size());
    run_log log;
    train_state state;
    for (std::size_t i = 0; i < steps.size(); ++i) {
        state.step = steps[i];
        log.record(steps[i], m.step(state, at(steps[i], {{name, values[i]}})));
    }
    return log;
}

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
    std::vector<std::int64_t> v;
    for (std::int64_t s = first; s <= last; ++s) v.push_back(s);
    return v;
}

} // namespace

TEST_CASE("every_steps(n) fires n steps after its last save, whatever steps are skipped") {
    SUBCASE("consecutive steps from 0") {
        const auto dir = test::scratch("policy-every-steps");
        ckpt::manager m(dir, ckpt::every_steps(5));
        run_log log;
        train_state state;
        for (std::int64_t s = 0; s <= 23; ++s) log.record(s, m.step(state, at(s)));
        CHECK(log.saved == std::vector<std::int64_t>{5, 10, 15, 20});
        for (const auto& [s, r] : log.reasons) {
            CHECK(r == std::vector<std::string>{"every_steps(5)"});
        }
        CHECK(steps_on_disk(dir) == log.saved);
    }
    SUBCASE("non-consecutive steps: counted from the last save, not from multiples of n") {
        const auto dir = test::scratch("policy-every-steps-gaps");
        ckpt::manager m(dir, ckpt::every_steps(5));
        run_log log;
        train_state state;
        for (std::int64_t s : {1, 2, 3, 7, 8, 12, 13, 14, 19, 30, 31, 36, 40, 41}) {
            log.record(s, m.step(state, at(s)));
        }
        CHECK(log.saved == std::vector<std::int64_t>{7, 12, 19, 30, 36, 41});
        CHECK(steps_on_disk(dir) == log.saved);
    }
    SUBCASE("every_steps(1) fires on every step") {
        const auto dir = test::scratch("policy-every-step");
        ckpt::manager m(dir, ckpt::every_steps(1));
        run_log log;
        train_state state;
        for (std::int64_t s = 1; s <= 6; ++s) log.record(s, m.step(state, at(s)));
        CHECK(log.saved == range(1, 6));
        CHECK(log.reasons.at(6) == std::vector<std::string>{"every_steps(1)"});
    }
    SUBCASE("n <= 0 is a usage error") {
        CHECK(test::error_id([] { (void)ckpt::every_steps(0); }) == ckpt::errc::usage_argument);
        CHECK(test::error_id([] { (void)ckpt::every_steps(-3); }) == ckpt::errc::usage_argument);
        CHECK(test::error_text([] { (void)ckpt::every_steps(0); }) ==
              "[ckpt.usage.601] every_steps(0): n must be > 0");
        CHECK(test::error_text([] { (void)ckpt::every_steps(-3); }) ==
              "[ckpt.usage.601] every_steps(-3): n must be > 0");
    }
}

TEST_CASE("every(period) fires when the injected clock has moved a period since its last save") {
    const auto dir = test::scratch("policy-every-time");
    fake_clock clock;
    const time_point start = clock.now;
    ckpt::manager m(dir, ckpt::every(std::chrono::seconds(10)), ckpt::keep_all(),
                    with_clock(clock));
    using ms = std::chrono::milliseconds;
    // (step, clock reading as an offset from the manager's start)
    const std::vector<std::pair<std::int64_t, ms>> script = {
        {1, ms(3000)},   {2, ms(9999)},   {3, ms(10000)},  {4, ms(15000)},
        {5, ms(19999)},  {6, ms(20000)},  {9, ms(45000)},  {10, ms(54999)},
        {11, ms(55000)}, {12, ms(55001)}, {13, ms(64999)}, {20, ms(65000)}};
    run_log log;
    train_state state;
    std::map<std::int64_t, time_point> clock_at;
    for (const auto& [s, offset] : script) {
        clock.now = start + offset;
        clock_at[s] = clock.now;
        log.record(s, m.step(state, at(s)));
    }
    CHECK(log.saved == std::vector<std::int64_t>{3, 6, 9, 11, 20});
    for (const auto& [s, r] : log.reasons) {
        CHECK(r == std::vector<std::string>{"every(10000000000ns)"});
    }
    // metadata.time left at 0: each checkpoint's time is the injected clock's, not the system's.
    const auto entries = m.list();
    REQUIRE(entries.size() == 5);
    for (const auto& e : entries) CHECK(e.time == clock_at.at(e.step));
    CHECK(ckpt::inspect(m.path_of(9)).meta.time == start + ms(45000));

    SUBCASE("a period <= 0 is a usage error") {
        CHECK(test::error_text([] { (void)ckpt::every(std::chrono::seconds(0)); }) ==
              "[ckpt.usage.601] every(): the period must be > 0");
        CHECK(test::error_id([] { (void)ckpt::every(std::chrono::milliseconds(-1)); }) ==
              ckpt::errc::usage_argument);
    }
}

TEST_CASE("every(period) counts from the manager's start, read from the injected clock") {
    const auto dir = test::scratch("policy-every-time-start");
    fake_clock clock;
    clock.now += std::chrono::hours(5); // the manager starts here, not at the clock's epoch
    const time_point start = clock.now;
    ckpt::manager m(dir, ckpt::every(std::chrono::minutes(1)), ckpt::keep_all(), with_clock(clock));
    train_state state;
    run_log log;
    clock.now = start + std::chrono::seconds(59);
    log.record(1, m.step(state, at(1)));
    clock.now = start + std::chrono::seconds(60);
    log.record(2, m.step(state, at(2)));
    clock.now = start + std::chrono::seconds(119);
    log.record(3, m.step(state, at(3)));
    clock.now = start + std::chrono::seconds(120);
    log.record(4, m.step(state, at(4)));
    clock.now = start + std::chrono::seconds(500); // a long pause: one save, not several
    log.record(5, m.step(state, at(5)));
    log.record(6, m.step(state, at(6)));
    clock.now = start + std::chrono::seconds(559); // 59 s after the save at step 5
    log.record(7, m.step(state, at(7)));
    CHECK(log.saved == std::vector<std::int64_t>{2, 4, 5});
    CHECK(log.reasons.at(2) == std::vector<std::string>{"every(60000000000ns)"});
}

TEST_CASE("on_best(minimize) fires on each strict improvement; NaN never counts") {
    const auto dir = test::scratch("policy-best-min");
    ckpt::manager m(dir, ckpt::on_best("val_loss"));
    const auto log =
        run_metric(m, range(0, 13), "val_loss",
                   {qnan, 1.0, 0.9, 0.95, 0.9, 0.8, qnan, 0.85, 0.7, 0.7, 0.69, qnan, -qnan, 0.5});
    CHECK(log.saved == std::vector<std::int64_t>{1, 2, 5, 8, 10, 13});
    for (const auto& [s, r] : log.reasons) {
        CHECK(r == std::vector<std::string>{"on_best(val_loss,min,0)"});
    }
    CHECK(steps_on_disk(dir) == log.saved);
    // What was saved at each firing is the value that fired it.
    CHECK(ckpt::inspect(m.path_of(10)).meta.metrics.at("val_loss") == 0.69);
}

TEST_CASE("on_best(minimize, min_delta) needs an improvement by more than min_delta") {
    const auto dir = test::scratch("policy-best-min-delta");
    ckpt::manager m(dir, ckpt::on_best("val_loss", ckpt::goal::minimize, 0.25));
    // Powers of two: 2 - 0.25 is 1.75 exactly, so "not more than min_delta" is exact.
    const auto log = run_metric(m, range(1, 9), "val_loss",
                                {2.0, 1.875, 1.75, 1.5, 1.25, qnan, 1.0, 0.875, 0.5});
    CHECK(log.saved == std::vector<std::int64_t>{1, 4, 7, 9});
    for (const auto& [s, r] : log.reasons) {
        CHECK(r == std::vector<std::string>{"on_best(val_loss,min,0.25)"});
    }
}

TEST_CASE("on_best(maximize) fires on each strict increase, with and without min_delta") {
    SUBCASE("min_delta 0") {
        const auto dir = test::scratch("policy-best-max");
        ckpt::manager m(dir, ckpt::on_best("accuracy", ckpt::goal::maximize));
        const auto log = run_metric(m, range(1, 10), "accuracy",
                                    {0.5, 0.25, 0.5, 0.625, qnan, 0.75, 0.75, 0.5, 1.0, qnan});
        CHECK(log.saved == std::vector<std::int64_t>{1, 4, 6, 9});
        for (const auto& [s, r] : log.reasons) {
            CHECK(r == std::vector<std::string>{"on_best(accuracy,max,0)"});
        }
    }
    SUBCASE("min_delta 0.125") {
        const auto dir = test::scratch("policy-best-max-delta");
        ckpt::manager m(dir, ckpt::on_best("accuracy", ckpt::goal::maximize, 0.125));
        const auto log =
            run_metric(m, range(1, 7), "accuracy", {0.5, 0.625, 0.75, 0.8, 0.875, qnan, 0.9});
        CHECK(log.saved == std::vector<std::int64_t>{1, 3, 7});
        for (const auto& [s, r] : log.reasons) {
            CHECK(r == std::vector<std::string>{"on_best(accuracy,max,0.125)"});
        }
    }
}

TEST_CASE("on_best never fires on NaN, and NaN never becomes the value to beat") {
    const auto dir = test::scratch("policy-best-nan");
    ckpt::manager m(dir, ckpt::on_best("val_loss"));
    const auto log =
        run_metric(m, range(1, 8), "val_loss", {qnan, qnan, qnan, 3.0, qnan, 3.5, 2.5, qnan});
    CHECK(log.saved == std::vector<std::int64_t>{4, 7});
    CHECK(steps_on_disk(dir) == log.saved);
    // The free function the rule uses.
    CHECK_FALSE(ckpt::improves(qnan, 1.0, ckpt::goal::minimize));
    CHECK_FALSE(ckpt::improves(qnan, 1.0, ckpt::goal::maximize));
    CHECK(ckpt::improves(1.0, qnan, ckpt::goal::minimize));
    CHECK_FALSE(ckpt::improves(1.0, 1.0, ckpt::goal::minimize));
    CHECK(ckpt::improves(0.5, 1.0, ckpt::goal::minimize, 0.25));
    CHECK_FALSE(ckpt::improves(0.75, 1.0, ckpt::goal::minimize, 0.25));
    CHECK(ckpt::improves(1.5, 1.0, ckpt::goal::maximize, 0.25));
    CHECK_FALSE(ckpt::improves(1.25, 1.0, ckpt::goal::maximize, 0.25));
}

TEST_CASE("a metric a policy or retention ranks by, missing from a step, is usage_error 602") {
    const auto dir = test::scratch("policy-missing-metric");
    train_state state;
    SUBCASE("on_best's metric") {
        ckpt::manager m(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"));
        CHECK(m.step(state, at(1, {{"val_loss", 1.0}})));
        const auto call = [&] { (void)m.step(state, at(7, {{"loss", 0.5}, {"acc", 0.25}})); };
        CHECK(test::error_id(call) == ckpt::errc::usage_missing_metric);
        CHECK(test::error_text(call) ==
              "[ckpt.usage.602] step 7 supplies no metric 'val_loss', which the save policy or "
              "retention ranks checkpoints by (metrics given: acc, loss); pass its latest value "
              "on every step");
        CHECK_THROWS_AS(call(), ckpt::usage_error);
        CHECK(test::error_text([&] { (void)m.step(state, at(8)); }) ==
              "[ckpt.usage.602] step 8 supplies no metric 'val_loss', which the save policy or "
              "retention ranks checkpoints by (metrics given: none); pass its latest value on "
              "every step");
        // Nothing was saved by the failed steps, and the manager goes on.
        CHECK(steps_on_disk(dir) == std::vector<std::int64_t>{1});
        const auto r = m.step(state, at(9, {{"val_loss", 2.0}}));
        CHECK(r.reasons == std::vector<std::string>{"every_steps(1)"});
        CHECK(steps_on_disk(dir) == std::vector<std::int64_t>{1, 9});
    }
    SUBCASE("keep_best's metric, even with a policy that ranks nothing") {
        ckpt::manager m(dir, ckpt::every_steps(100),
                        ckpt::keep_best(1, "bleu", ckpt::goal::maximize));
        CHECK_FALSE(m.step(state, at(1, {{"bleu", 20.0}})));
        const auto call = [&] { (void)m.step(state, at(2, {{"loss", 0.5}})); };
        CHECK(test::error_text(call) ==
              "[ckpt.usage.602] step 2 supplies no metric 'bleu', which the save policy or "
              "retention ranks checkpoints by (metrics given: loss); pass its latest value on "
              "every step");
    }
    SUBCASE("a metric ranked both ways is refused at construction") {
        const auto make = [&] {
            ckpt::manager m(dir, ckpt::on_best("score"),
                            ckpt::keep_best(1, "score", ckpt::goal::maximize));
        };
        CHECK(test::error_text(make) == "[ckpt.usage.601] manager: metric 'score' is ranked both "
                                        "ways (minimize and maximize)");
    }
}

TEST_CASE("at_steps fires at exactly the listed steps, in any order, when they occur") {
    const auto dir = test::scratch("policy-at-steps");
    ckpt::manager m(dir, ckpt::at_steps({30, 3, 10, 10, 17, 99}));
    run_log log;
    train_state state;
    for (std::int64_t s : {0, 1, 2, 3, 4, 9, 10, 11, 16, 18, 29, 30, 31, 50}) { // 17 is skipped
        log.record(s, m.step(state, at(s)));
    }
    CHECK(log.saved == std::vector<std::int64_t>{3, 10, 30});
    for (const auto& [s, r] : log.reasons) CHECK(r == std::vector<std::string>{"at_steps"});
    // A listed step seen again saves again.
    CHECK(m.step(state, at(10)).reasons == std::vector<std::string>{"at_steps"});
}

TEST_CASE("on_request fires when the flag is set and is cleared by the save; save_now is not") {
    const auto dir = test::scratch("policy-on-request");
    std::atomic<bool> flag{false};
    ckpt::manager m(dir, ckpt::every_steps(10) | ckpt::on_request(flag));
    run_log log;
    train_state state;
    std::vector<bool> flag_after;
    for (std::int64_t s = 1; s <= 33; ++s) {
        if (s == 4 || s == 13 || s == 20) flag.store(true);
        if (s == 22 || s == 25) {
            if (s == 22) flag.store(true);
            const auto r = m.save_now(state, at(s));
            CHECK(r.saved);
            CHECK(r.reasons == std::vector<std::string>{"save_now"});
            CHECK(r.path == m.path_of(s));
            log.saved.push_back(s);
            log.reasons[s] = r.reasons;
            CHECK(flag.load() == (s == 22)); // save_now leaves the flag as it was
            continue;
        }
        log.record(s, m.step(state, at(s)));
        CHECK_MESSAGE(flag.load() == false, "step ", s);
    }
    // 4, 13: the flag; 10: every_steps; 20: both; 22: save_now, the flag still set, so 23 saves;
    // 25: save_now, which does not move every_steps' count (30 is 10 after 20).
    CHECK(log.saved == std::vector<std::int64_t>{4, 10, 13, 20, 22, 23, 25, 30});
    CHECK(log.reasons == reasons_by_step{{4, {"on_request"}},
                                         {10, {"every_steps(10)"}},
                                         {13, {"on_request"}},
                                         {20, {"every_steps(10)", "on_request"}},
                                         {22, {"save_now"}},
                                         {23, {"on_request"}},
                                         {25, {"save_now"}},
                                         {30, {"every_steps(10)"}}});
    CHECK(steps_on_disk(dir) == log.saved);
}

TEST_CASE("save_now saves whatever the policy says and advances no rule") {
    const auto dir = test::scratch("policy-save-now");
    ckpt::manager m(dir, ckpt::every_steps(4) | ckpt::on_best("val_loss"));
    train_state state;
    run_log log;
    const std::vector<double> loss = {1.0, 2.0, 3.0, 0.5, 0.75, 0.9, 0.8, 0.7};
    for (std::int64_t s = 1; s <= 8; ++s) {
        const auto meta = at(s, {{"val_loss", loss[static_cast<std::size_t>(s - 1)]}});
        const auto r = s == 2 || s == 4 ? m.save_now(state, meta) : m.step(state, meta);
        log.record(s, r);
    }
    // 1: first value; 2: save_now; 4: save_now (0.5 is not recorded as on_best's best, nor 4 as
    // every_steps' last); 5: 0.75 beats on_best's 1.0 and 5 - 0 >= 4; 8: 0.7 beats 0.75.
    CHECK(log.reasons == reasons_by_step{{1, {"on_best(val_loss,min,0)"}},
                                         {2, {"save_now"}},
                                         {4, {"save_now"}},
                                         {5, {"every_steps(4)", "on_best(val_loss,min,0)"}},
                                         {8, {"on_best(val_loss,min,0)"}}});
}

TEST_CASE("| and any_of fire on the union, and reasons list exactly the rules that fired") {
    // val_loss per step 1..20; every_steps(5) counts from its own last save only.
    const std::vector<double> loss = {1.0,  1.1,  0.9,  0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.7,
                                      0.75, 0.75, 0.75, 0.75, 0.75, 0.6, 0.65, 0.65, 0.65, 0.65};
    const std::string best = "on_best(val_loss,min,0)";
    const reasons_by_step expected = {{1, {best}},
                                      {3, {best}},
                                      {5, {"every_steps(5)"}},
                                      {6, {best}},
                                      {7, {"at_steps"}},
                                      {10, {"every_steps(5)", "at_steps", best}},
                                      {11, {"at_steps"}},
                                      {15, {"every_steps(5)"}},
                                      {16, {best}},
                                      {20, {"every_steps(5)"}}};
    const std::vector<std::pair<std::string, ckpt::save_policy>> policies = {
        {"operator|",
         ckpt::every_steps(5) | ckpt::at_steps({7, 10, 11}) | ckpt::on_best("val_loss")},
        {"any_of", ckpt::any_of(ckpt::every_steps(5), ckpt::at_steps({11, 10, 7}),
                                ckpt::on_best("val_loss"))},
    };
    for (const auto& [name, policy] : policies) {
        INFO(name);
        const auto dir = test::scratch("policy-union-" + name);
        ckpt::manager m(dir, policy);
        const auto log = run_metric(m, range(1, 20), "val_loss", loss);
        CHECK(log.saved == std::vector<std::int64_t>{1, 3, 5, 6, 7, 10, 11, 15, 16, 20});
        CHECK(log.reasons == expected);
        CHECK(steps_on_disk(dir) == log.saved);
    }
}

TEST_CASE("every(), every_steps() and on_request() together, with the injected clock") {
    const auto dir = test::scratch("policy-union-clock");
    fake_clock clock;
    const time_point start = clock.now;
    std::atomic<bool> flag{false};
    ckpt::manager m(dir,
                    ckpt::any_of(ckpt::every_steps(4), ckpt::every(std::chrono::seconds(30)),
                                 ckpt::on_request(flag)),
                    ckpt::keep_all(), with_clock(clock));
    train_state state;
    run_log log;
    // Step s at 7 s per step, flag raised before step 9.
    for (std::int64_t s = 1; s <= 14; ++s) {
        clock.now = start + std::chrono::seconds(7 * s);
        if (s == 9) flag = true;
        log.record(s, m.step(state, at(s)));
    }
    const std::string every30 = "every(30000000000ns)";
    // every(30 s): 35 s (step 5), then 35 + 30 = 65 -> 70 s (step 10); steps 4, 8, 12 by count.
    CHECK(log.reasons == reasons_by_step{{4, {"every_steps(4)"}},
                                         {5, {every30}},
                                         {8, {"every_steps(4)"}},
                                         {9, {"on_request"}},
                                         {10, {every30}},
                                         {12, {"every_steps(4)"}}});
}

TEST_CASE("nothing fires: save_result is false, empty, and no file is written") {
    const auto dir = test::scratch("policy-nothing");
    ckpt::manager m(dir, ckpt::every_steps(1000) | ckpt::at_steps({500}));
    train_state state;
    for (std::int64_t s = 0; s < 20; ++s) {
        const auto r = m.step(state, at(s));
        CHECK_FALSE(r);
        CHECK_FALSE(r.saved);
        CHECK(r.reasons.empty());
        CHECK(r.path.empty());
        CHECK(r.deleted.empty());
    }
    CHECK(steps_on_disk(dir).empty());
    CHECK(m.list().empty());
    CHECK(m.stats().checkpoints_written == 0);
}

TEST_CASE("the file written is path_of(step): <dir>/<prefix>-<12 digits>.ckpt") {
    const auto dir = test::scratch("policy-path");
    ckpt::manager m(dir, ckpt::at_steps({12}));
    CHECK(m.path_of(12) == dir / "ckpt-000000000012.ckpt");
    CHECK(m.path_of(0) == dir / "ckpt-000000000000.ckpt");
    CHECK(m.path_of(999'999'999'999) == dir / "ckpt-999999999999.ckpt");
    CHECK(m.path_of(1'234'567'890'123) == dir / "ckpt-1234567890123.ckpt");
    CHECK(m.directory() == dir);

    train_state state;
    state.weights.setConstant(1.5F);
    state.step = 12;
    CHECK_FALSE(m.step(state, at(11)));
    const auto r = m.step(state, at(12));
    CHECK(r.path == dir / "ckpt-000000000012.ckpt");
    CHECK(fs::is_regular_file(r.path));
    train_state back;
    const auto meta = ckpt::load(r.path, back);
    CHECK(meta.step == 12);
    CHECK(back.step == 12);
    CHECK(test::bits_equal(back.weights, state.weights));

    SUBCASE("another prefix") {
        const auto other = test::scratch("policy-path-prefix");
        ckpt::manager_options o;
        o.prefix = "run";
        ckpt::manager p(other, ckpt::at_steps({7}), ckpt::keep_all(), o);
        CHECK(p.path_of(7) == other / "run-000000000007.ckpt");
        CHECK(p.step(state, at(7)).path == other / "run-000000000007.ckpt");
        CHECK(fs::is_regular_file(other / "run-000000000007.ckpt"));
    }
}
