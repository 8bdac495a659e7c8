// The failure-aware save rules: every_optimal(mtbf) (Daly's interval for the measured save
// cost) and overhead_at_most(fraction) (a budget of time spent saving). Their formulas against
// values worked out by hand, the smoothing of the cost, the decision at its bound, the state
// that survives a restart, and a run on the injected clock whose saves cost what the test says.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace interval_policy_test {

using ckpt::detail::save_rule;
using clock_point = std::chrono::system_clock::time_point;

clock_point plus_seconds(clock_point t, double s) {
    return t + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                   std::chrono::duration<double>(s));
}

/// POSIX, except that each save (its rename) moves the test's clock by the next of `costs`, in
/// turn, and nothing is synced (the test times the saves itself).
class timed_saves final : public test::posix_forwarding {
public:
    timed_saves(test::fake_clock& clock, std::vector<double> costs)
        : clock_(&clock), costs_(std::move(costs)) {}
    int rename(const char* from, const char* to) override {
        const double c = costs_[next_ % costs_.size()];
        next_ += 1;
        charged += c;
        clock_->now = plus_seconds(clock_->now, c);
        return real_.rename(from, to);
    }
    int fsync(int /*fd*/) override { return 0; }
    double charged = 0; ///< seconds of saving so far

private:
    test::fake_clock* clock_;
    std::vector<double> costs_;
    std::size_t next_ = 0;
};

ckpt::manager_options options(test::fake_clock& clock, ckpt::io::backend& io) {
    ckpt::manager_options o = test::with_clock(clock);
    o.backend = &io;
    return o;
}

const ckpt::detail::rule_every_optimal& optimal_rule(const ckpt::save_policy& p) {
    return std::get<ckpt::detail::rule_every_optimal>(p.rules().at(0));
}

} // namespace interval_policy_test

namespace ipt = interval_policy_test;
TEST_CASE("Daly's interval against values worked out by hand, at both ends") {
    using ckpt::detail::daly_interval;
    // C << M: C = 8 s, M = 10^4 s. C/2M = 0.0004, its root 0.02, sqrt(2CM) = 400:
    // 400 (1 + 0.02/3 + 0.0004/9) - 8 = 392 + 8/3 + 4/225 = 392 + 604/225.
    CHECK(daly_interval(8, 1e4) == doctest::Approx(392.0 + 604.0 / 225.0).epsilon(1e-14));
    // C = M/2: C/2M = 1/4, sqrt(2CM) = 100 for C = 50, M = 100:
    // 100 (1 + 1/6 + 1/36) - 50 = 4300/36 - 50 = 625/9.
    CHECK(daly_interval(50, 100) == doctest::Approx(625.0 / 9.0).epsilon(1e-14));
    // C >= 2M: the interval is M.
    CHECK(daly_interval(200, 100) == 100);
    CHECK(daly_interval(1e6, 100) == 100);
    // Just under 2M the formula still holds: C/2M = 0.9801, root 0.99, sqrt(2CM) = 198 for
    // C = 196.02, M = 100: 198 (1 + 0.33 + 0.1089) - 196.02 = 88.8822.
    CHECK(daly_interval(196.02, 100) == doctest::Approx(88.8822).epsilon(1e-12));
    // As C/M goes to 0 it becomes Young's sqrt(2CM): C = 10^-6, M = 1.
    CHECK(daly_interval(1e-6, 1) / std::sqrt(2e-6) == doctest::Approx(1.0).epsilon(1e-3));
    // Free saves: save all the time.
    CHECK(daly_interval(0, 100) == 0);
}

TEST_CASE("overhead_at_most's interval: C (1 - f) / f") {
    using ckpt::detail::budget_interval;
    CHECK(budget_interval(3, 0.25) == 9);                                  // 3 / (9 + 3) = 0.25
    CHECK(budget_interval(2, 0.5) == 2);                                   // 2 / (2 + 2) = 0.5
    CHECK(budget_interval(1, 0.01) == doctest::Approx(99).epsilon(1e-14)); // 1 / 100
    CHECK(budget_interval(0, 0.1) == 0);
}

TEST_CASE("the cost is smoothed: C_1 = c_1, then a quarter of the way to each new save's cost") {
    ckpt::detail::save_cost c;
    ckpt::detail::add_sample(c, 4);
    CHECK(c.seconds == 4);
    CHECK(c.samples == 1);
    ckpt::detail::add_sample(c, 8);
    CHECK(c.seconds == 5); // 4 + (8 - 4) / 4
    ckpt::detail::add_sample(c, 8);
    CHECK(c.seconds == 5.75); // 5 + (8 - 5) / 4
    ckpt::detail::add_sample(c, 0);
    CHECK(c.seconds == 4.3125); // 5.75 - 5.75 / 4
    CHECK(c.samples == 4);
}

TEST_CASE("every_optimal: fires at once until a save is measured, then at Daly's interval") {
    const ckpt::save_policy p = ckpt::every_optimal(std::chrono::seconds(10000));
    ipt::save_rule rule = p.rules().at(0);
    CHECK(ckpt::detail::rule_key(rule) == "every_optimal(10000s)");
    const ipt::clock_point t0(std::chrono::seconds(5000));
    ckpt::detail::policy_state state(p);
    CHECK(state.uses_clock());
    // Nothing measured: fires at the first step, even with no time passed.
    CHECK(ckpt::detail::fires(rule, test::at(1), t0));
    CHECK_FALSE(ckpt::detail::target_interval(rule).has_value());

    ckpt::detail::measured(rule, 8, t0);
    const double tau = 392.0 + 604.0 / 225.0;
    REQUIRE(ckpt::detail::target_interval(rule).has_value());
    CHECK(*ckpt::detail::target_interval(rule) == doctest::Approx(tau).epsilon(1e-14));
    CHECK(std::get<ckpt::detail::rule_every_optimal>(rule).last_end == t0);
    CHECK_FALSE(ckpt::detail::fires(rule, test::at(2), ipt::plus_seconds(t0, 394.684)));
    CHECK(ckpt::detail::fires(rule, test::at(2), ipt::plus_seconds(t0, 394.685)));
    // A save advances nothing by itself: the measurement after it does.
    ckpt::detail::advance(rule, test::at(2), ipt::plus_seconds(t0, 394.685));
    CHECK(ckpt::detail::fires(rule, test::at(2), ipt::plus_seconds(t0, 394.685)));
    ckpt::detail::measured(rule, 8, ipt::plus_seconds(t0, 402.685));
    CHECK_FALSE(ckpt::detail::fires(rule, test::at(3), ipt::plus_seconds(t0, 402.685 + 394.684)));
    CHECK(ckpt::detail::fires(rule, test::at(3), ipt::plus_seconds(t0, 402.685 + 394.685)));
}

TEST_CASE("overhead_at_most: fires at once until a save is measured, then at C (1 - f) / f") {
    ipt::save_rule rule = ckpt::overhead_at_most(0.25).rules().at(0);
    CHECK(ckpt::detail::rule_key(rule) == "overhead_at_most(0.25)");
    const ipt::clock_point t0(std::chrono::seconds(100));
    CHECK(ckpt::detail::fires(rule, test::at(1), t0));
    ckpt::detail::measured(rule, 3, t0);
    CHECK(*ckpt::detail::target_interval(rule) == 9);
    CHECK_FALSE(ckpt::detail::fires(rule, test::at(2), ipt::plus_seconds(t0, 8.999)));
    CHECK(ckpt::detail::fires(rule, test::at(2), ipt::plus_seconds(t0, 9)));
    // Each save is paid for by the compute after it: the last save's cost decides, not the
    // smoothed one (3 then 7: C = 4, but T = 7 * 3 = 21).
    ckpt::detail::measured(rule, 7, ipt::plus_seconds(t0, 20));
    CHECK(*ckpt::detail::target_interval(rule) == 21);
    CHECK(std::get<ckpt::detail::rule_overhead_at_most>(rule).cost.seconds == 4);
    CHECK_FALSE(ckpt::detail::fires(rule, test::at(3), ipt::plus_seconds(t0, 40.999)));
    CHECK(ckpt::detail::fires(rule, test::at(3), ipt::plus_seconds(t0, 41)));
}

TEST_CASE("the arguments are checked: usage_error 601") {
    using namespace std::chrono_literals;
    CHECK(test::error_id([] { (void)ckpt::every_optimal(0s); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { (void)ckpt::every_optimal(-1h); }) == ckpt::errc::usage_argument);
    CHECK(test::error_text([] { (void)ckpt::every_optimal(0s); }) ==
          "[ckpt.usage.601] every_optimal(): the mean time between failures must be > 0");
    CHECK(test::error_id([] { (void)ckpt::overhead_at_most(0); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { (void)ckpt::overhead_at_most(1); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { (void)ckpt::overhead_at_most(-0.5); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { (void)ckpt::overhead_at_most(test::qnan); }) ==
          ckpt::errc::usage_argument);
    CHECK(test::error_text([] { (void)ckpt::overhead_at_most(1.5); }) ==
          "[ckpt.usage.601] overhead_at_most(1.5): the fraction must be in (0, 1)");
    CHECK(ckpt::every_optimal(2h).rules().size() == 1);
    CHECK(ipt::optimal_rule(ckpt::every_optimal(2h)).mtbf == 7200);
    CHECK(ckpt::overhead_at_most(0.999).rules().size() == 1);
}

TEST_CASE("the state as text: C, saves measured and interval; garbage leaves the rule alone") {
    using ckpt::detail::decode_rule_state;
    using ckpt::detail::encode_rule_state;
    ipt::save_rule rule = ckpt::every_optimal(std::chrono::seconds(10000)).rules().at(0);
    CHECK(encode_rule_state(rule) == "none");
    ckpt::detail::measured(rule, 8, {});
    ckpt::detail::measured(rule, 16, {}); // C = 10
    const std::string text =
        "10 16 2 " + ckpt::detail::format_double(ckpt::detail::daly_interval(10, 10000));
    CHECK(encode_rule_state(rule) == text);

    ipt::save_rule back = ckpt::every_optimal(std::chrono::seconds(10000)).rules().at(0);
    CHECK(decode_rule_state(back, text));
    CHECK(ckpt::detail::target_interval(back) == ckpt::detail::target_interval(rule));
    CHECK(std::get<ckpt::detail::rule_every_optimal>(back).cost.samples == 2);
    for (const char* bad : {"", "10", "10 16", "10 16 2", "x 16 2 3", "10 x 2 3", "10 16 y 3",
                            "10 16 2 z", "-1 16 2 3", "10 -1 2 3", "10 16 0 3", "inf 16 2 3",
                            "10 nan 2 3", "10 16 2 3 4", "10 16 2 3 ", " 10 16 2 3"}) {
        CHECK_MESSAGE(!decode_rule_state(back, bad), bad);
    }
    CHECK(ckpt::detail::target_interval(back) == ckpt::detail::target_interval(rule));
    CHECK(decode_rule_state(back, "none"));
    CHECK_FALSE(ckpt::detail::target_interval(back).has_value());

    ipt::save_rule budget = ckpt::overhead_at_most(0.25).rules().at(0);
    ckpt::detail::measured(budget, 3, {});
    CHECK(encode_rule_state(budget) == "3 3 1 9");
    ckpt::detail::measured(budget, 7, {});
    CHECK(encode_rule_state(budget) == "4 7 2 21");
    ipt::save_rule budget_back = ckpt::overhead_at_most(0.25).rules().at(0);
    CHECK(decode_rule_state(budget_back, "4 7 2 21"));
    CHECK(ckpt::detail::target_interval(budget_back) == 21.0);
}

TEST_CASE("every_optimal in a manager: the first step saves to measure, then Daly's interval") {
    const auto dir = test::scratch("interval-manager");
    test::fake_clock clock;
    ipt::timed_saves io(clock, {8});
    test::train_state state;
    ckpt::manager m(dir, ckpt::every_optimal(std::chrono::seconds(10000)), ckpt::keep_last(2),
                    ipt::options(clock, io));
    CHECK(m.stats().save_cost_seconds == 0);
    CHECK(m.stats().interval_seconds == 0);
    const double tau = 392.0 + 604.0 / 225.0;
    std::vector<std::int64_t> saved;
    for (std::int64_t step = 1; step <= 130; ++step) {
        if (step > 1) clock.now += std::chrono::seconds(10);
        const ckpt::save_result r = m.step(state, test::at(step));
        if (!r) continue;
        saved.push_back(step);
        CHECK(r.reasons == std::vector<std::string>{"every_optimal(10000s)"});
        const ckpt::manager_stats s = m.stats();
        CHECK(s.save_cost_seconds == 8);
        CHECK(s.interval_seconds == doctest::Approx(tau).epsilon(1e-14));
        CHECK(s.restart_seconds == 0);
        CHECK(s.commit_latency_seconds == 0);
        CHECK(s.expected_loss_seconds == doctest::Approx((tau + 8) / 2).epsilon(1e-14));
    }
    // Step 1 measures; each save ends 8 s after its step, and the step n later runs 10n s after
    // that end: the first with 10n >= 394.68 is n = 40.
    CHECK(saved == std::vector<std::int64_t>{1, 41, 81, 121});
}

TEST_CASE("without a cost-aware rule, stats() shows the observed interval and the same loss") {
    const auto dir = test::scratch("interval-observed");
    test::fake_clock clock;
    ipt::timed_saves io(clock, {3});
    test::train_state state;
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(2), ipt::options(clock, io));
    for (std::int64_t step = 1; step <= 10; ++step) {
        clock.now += std::chrono::seconds(1);
        (void)m.step(state, test::at(step));
    }
    // Saves at step 5 (t0 + 5, ends + 8) and 10 (t0 + 13): 5 s of compute between them.
    const ckpt::manager_stats s = m.stats();
    CHECK(s.save_cost_seconds == 3);
    CHECK(s.interval_seconds == 5);
    CHECK(s.expected_loss_seconds == 4); // (5 + 3) / 2
}

TEST_CASE("the smoothed cost drives the interval in a manager, save_now included") {
    const auto dir = test::scratch("interval-smoothing");
    test::fake_clock clock;
    const std::vector<double> costs{4, 8, 8, 2};
    ipt::timed_saves io(clock, costs);
    test::train_state state;
    ckpt::manager m(dir,
                    ckpt::every_optimal(std::chrono::seconds(800)) | ckpt::overhead_at_most(0.5),
                    ckpt::keep_last(2), ipt::options(clock, io));
    const std::vector<double> smoothed{4, 5, 5.75, 4.8125};
    for (std::size_t i = 0; i < smoothed.size(); ++i) {
        clock.now += std::chrono::seconds(1000);
        CHECK(m.save_now(state, test::at(static_cast<std::int64_t>(i) + 1)));
        CHECK(m.stats().save_cost_seconds == smoothed[i]);
        // The smaller target: overhead_at_most's, the last cost (c (1 - 0.5) / 0.5 = c), or
        // every_optimal's, for the smoothed cost.
        const double daly = ckpt::detail::daly_interval(smoothed[i], 800);
        CHECK(m.stats().interval_seconds == std::min(costs[i], daly));
    }
    // The last save (2 s) ended at the clock's time: overhead_at_most fires 2 s later.
    clock.now += std::chrono::milliseconds(1999);
    CHECK_FALSE(m.step(state, test::at(5)));
    clock.now += std::chrono::milliseconds(1);
    CHECK(m.step(state, test::at(6)).reasons == std::vector<std::string>{"overhead_at_most(0.5)"});
}

TEST_CASE("the measured cost and the interval survive a restart") {
    const auto dir = test::scratch("interval-restart");
    test::fake_clock clock;
    const double tau = 392.0 + 604.0 / 225.0;
    const std::string key = "ckpt.policy.every_optimal(10000s)";
    test::train_state state;
    double before = 0;
    {
        ipt::timed_saves io(clock, {8});
        ckpt::manager m(dir,
                        ckpt::every_optimal(std::chrono::seconds(10000)) | ckpt::every_steps(1000),
                        ckpt::keep_last(3), ipt::options(clock, io));
        CHECK(m.step(state, test::at(1))); // measures: C = 8
        clock.now += std::chrono::seconds(400);
        CHECK(m.step(state, test::at(2))); // its checkpoint holds C = 8 and the interval
        before = m.stats().interval_seconds;
        CHECK(before == doctest::Approx(tau).epsilon(1e-14));
        CHECK(ckpt::inspect(m.path_of(1)).meta.tags.at(key) == "none");
        CHECK(ckpt::inspect(m.path_of(2)).meta.tags.at(key) ==
              "8 8 1 " + ckpt::detail::format_double(before));
    }
    clock.now += std::chrono::hours(5); // the run was down
    // Saves would now cost 50 s: a save to measure again would show in the stats.
    ipt::timed_saves io(clock, {50});
    ckpt::manager m(dir, ckpt::every_optimal(std::chrono::seconds(10000)) | ckpt::every_steps(1000),
                    ckpt::keep_last(3), ipt::options(clock, io));
    const auto meta = m.restore_latest(state);
    REQUIRE(meta);
    CHECK(meta->step == 2);
    CHECK(m.stats().interval_seconds == before); // the same double
    // Counted from the restart, not from the checkpoint (its work was lost with the run).
    std::int64_t first = 0;
    for (std::int64_t step = 3; step <= 100 && first == 0; ++step) {
        clock.now += std::chrono::seconds(10);
        if (m.step(state, test::at(step))) first = step;
    }
    CHECK(first == 42); // 10 s a step: 400 >= 394.68 s after the restart
    CHECK(m.stats().save_cost_seconds == 50);
    CHECK(m.stats().interval_seconds ==
          doctest::Approx(ckpt::detail::daly_interval(8 + (50 - 8) * 0.25, 10000)));

    // A different M is a different rule: it has no state there and measures at once.
    ipt::timed_saves io2(clock, {1});
    const auto other_dir = test::scratch("interval-restart-other");
    std::filesystem::copy(m.path_of(2), other_dir / m.path_of(2).filename());
    ckpt::manager other(other_dir, ckpt::every_optimal(std::chrono::seconds(20000)),
                        ckpt::keep_all(), ipt::options(clock, io2));
    CHECK(other.restore_latest(state));
    CHECK(other.stats().interval_seconds == 0);
    CHECK(other.step(state, test::at(3)));
}

TEST_CASE("overhead_at_most keeps the time spent saving under its fraction as the cost varies") {
    const auto dir = test::scratch("interval-budget");
    test::fake_clock clock;
    // A cost that swings between 1 and 12 s, with no trend (mean 39/7 s).
    ipt::timed_saves io(clock, {5, 1, 9, 3, 12, 2, 7});
    test::train_state state;
    for (const double f : {0.1, 0.02}) {
        CAPTURE(f);
        std::filesystem::remove_all(dir);
        io.charged = 0;
        ckpt::manager m(dir, ckpt::overhead_at_most(f), ckpt::keep_last(1),
                        ipt::options(clock, io));
        const ipt::clock_point t0 = clock.now;
        std::int64_t saves = 0;
        double charged = 0; // before the 211th save: 210 saves, each with the compute after it
        double wall = 0;
        for (std::int64_t step = 1; saves < 211; ++step) {
            clock.now += std::chrono::milliseconds(500); // a training step
            charged = io.charged;
            wall = std::chrono::duration<double>(clock.now - t0).count();
            if (m.step(state, test::at(step))) ++saves;
        }
        const double fraction = charged / wall;
        CAPTURE(fraction);
        CHECK(fraction <= f);
        CHECK(fraction >= 0.95 * f); // and it does save as often as the budget allows
    }
}

TEST_CASE("expected_loss_seconds is (T + C) / 2 + L + R, each measured (async, real clocks)") {
    const auto dir = test::scratch("interval-expected-loss");
    test::train_state state;
    {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2),
                        {.async = ckpt::async_options{}});
        CHECK(m.step(state, test::at(1)).pending);
        (void)m.wait();
        CHECK(m.step(state, test::at(2)).pending);
        (void)m.wait();
        const ckpt::manager_stats s = m.stats();
        CHECK(s.save_cost_seconds > 0);      // the stalls
        CHECK(s.commit_latency_seconds > 0); // the background writes
        CHECK(s.interval_seconds > 0);       // observed: from the first save's end to the second
        CHECK(s.restart_seconds == 0);       // no restore yet
        CHECK(s.expected_loss_seconds ==
              (s.interval_seconds + s.save_cost_seconds) / 2 + s.commit_latency_seconds);
    }
    ckpt::manager again(dir, ckpt::every_steps(1), ckpt::keep_last(2));
    CHECK(again.restore_latest(state));
    const ckpt::manager_stats s = again.stats();
    CHECK(s.restart_seconds > 0);
    CHECK(s.save_cost_seconds == 0);      // this run has saved nothing yet
    CHECK(s.commit_latency_seconds == 0); // sync
    CHECK(s.expected_loss_seconds == s.interval_seconds / 2 + s.restart_seconds);
}
