// The save policy's bookkeeping (ckpt/manager/policy_state.hpp) on its own: each rule at and
// around the point where it fires, the state it carries in a checkpoint's tags, and a failed
// save putting the policy back.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace policy_state_test {

using ckpt::detail::save_rule;
using clock_point = std::chrono::system_clock::time_point;

clock_point at_seconds(std::int64_t s) {
    return clock_point(std::chrono::seconds(s));
}

bool fires_at(const save_rule& r, std::int64_t step, clock_point t = {},
              std::map<std::string, double> metrics = {}) {
    return ckpt::detail::fires(r, test::at(step, std::move(metrics)), t);
}

} // namespace policy_state_test

using policy_state_test::at_seconds;
using policy_state_test::fires_at;

TEST_CASE("each rule fires exactly at its bound, not one before") {
    ckpt::detail::save_rule steps = ckpt::detail::rule_every_steps{5, 10};
    CHECK_FALSE(fires_at(steps, 14));
    CHECK(fires_at(steps, 15));
    CHECK(fires_at(steps, 16));

    ckpt::detail::save_rule time =
        ckpt::detail::rule_every_time{std::chrono::seconds(10), at_seconds(100)};
    CHECK_FALSE(fires_at(time, 1, at_seconds(110) - std::chrono::nanoseconds(1)));
    CHECK(fires_at(time, 1, at_seconds(110)));

    ckpt::detail::save_rule best =
        ckpt::detail::rule_on_best{"loss", ckpt::goal::minimize, 0.25, 1.0, 3};
    CHECK_FALSE(fires_at(best, 4, {}, {{"loss", 0.75}})); // by exactly min_delta: not more
    CHECK(fires_at(best, 4, {}, {{"loss", 0.5}}));
    CHECK_FALSE(fires_at(best, 4, {}, {{"loss", test::qnan}}));
    ckpt::detail::save_rule first = ckpt::detail::rule_on_best{"loss", ckpt::goal::minimize, 0.0};
    CHECK(fires_at(first, 1, {}, {{"loss", 9.0}})); // nothing saved yet: any value is best
    CHECK_FALSE(fires_at(first, 1, {}, {{"loss", test::qnan}}));

    ckpt::detail::save_rule at = ckpt::detail::rule_at_steps{{3, 7}};
    CHECK_FALSE(fires_at(at, 6));
    CHECK(fires_at(at, 7));
    CHECK_FALSE(fires_at(at, 8));

    std::atomic<bool> flag{false};
    ckpt::detail::save_rule request = ckpt::detail::rule_on_request{&flag};
    CHECK_FALSE(fires_at(request, 1));
    flag = true;
    CHECK(fires_at(request, 1));
}

TEST_CASE("a rule's state as text: exact, read back whole, and garbage leaves the rule alone") {
    using ckpt::detail::decode_rule_state;
    using ckpt::detail::encode_rule_state;
    ckpt::detail::save_rule steps = ckpt::detail::rule_every_steps{5, 41};
    CHECK(encode_rule_state(steps) == "41");
    ckpt::detail::save_rule time =
        ckpt::detail::rule_every_time{std::chrono::seconds(1), at_seconds(2)};
    CHECK(encode_rule_state(time) == "2000000000");
    ckpt::detail::save_rule best =
        ckpt::detail::rule_on_best{"loss", ckpt::goal::minimize, 0.0, 0.1, 7};
    CHECK(encode_rule_state(best) == "0.1 7");
    std::atomic<bool> flag{false};
    ckpt::detail::save_rule request = ckpt::detail::rule_on_request{&flag};
    CHECK(encode_rule_state(request).empty());

    ckpt::detail::save_rule s2 = ckpt::detail::rule_every_steps{5, 0};
    CHECK(decode_rule_state(s2, "41"));
    CHECK(std::get<ckpt::detail::rule_every_steps>(s2).last == 41);
    CHECK_FALSE(decode_rule_state(s2, "41x"));
    CHECK_FALSE(decode_rule_state(s2, ""));
    CHECK(std::get<ckpt::detail::rule_every_steps>(s2).last == 41);

    ckpt::detail::save_rule t2 = ckpt::detail::rule_every_time{std::chrono::seconds(1)};
    CHECK(decode_rule_state(t2, "2000000000"));
    CHECK(std::get<ckpt::detail::rule_every_time>(t2).last == at_seconds(2));

    ckpt::detail::save_rule b2 = ckpt::detail::rule_on_best{"loss", ckpt::goal::minimize, 0.0};
    CHECK(decode_rule_state(b2, "0.1 7"));
    CHECK(std::get<ckpt::detail::rule_on_best>(b2).best == 0.1);
    CHECK(std::get<ckpt::detail::rule_on_best>(b2).best_step == 7);
    CHECK_FALSE(decode_rule_state(b2, "0.1"));
    CHECK_FALSE(decode_rule_state(b2, "x 7"));
    CHECK_FALSE(decode_rule_state(b2, "0.1 y"));
    CHECK(std::get<ckpt::detail::rule_on_best>(b2).best == 0.1);
    CHECK(decode_rule_state(b2, "none"));
    CHECK_FALSE(std::get<ckpt::detail::rule_on_best>(b2).best.has_value());
}

TEST_CASE("policy_state: ask, advance a copy, write tags, commit; a failed save rolls back") {
    std::atomic<bool> flag{false};
    ckpt::detail::policy_state p(ckpt::every_steps(4) | ckpt::on_request(flag) |
                                 ckpt::every(std::chrono::seconds(60)));
    CHECK(p.uses_clock());
    p.start(at_seconds(1000));
    const auto meta = test::at(4);
    CHECK(p.ask(meta, at_seconds(1001)));
    std::vector<std::string> reasons;
    auto after = p.advanced(meta, at_seconds(1001), reasons);
    CHECK(reasons == std::vector<std::string>{"every_steps(4)"});
    CHECK(std::get<ckpt::detail::rule_every_steps>(after[0]).last == 4);
    CHECK(std::get<ckpt::detail::rule_every_steps>(p.policy().rules()[0]).last == 0); // a copy
    ckpt::metadata stored = meta;
    ckpt::detail::policy_state::write_tags(after, stored);
    CHECK(stored.tags == std::map<std::string, std::string>{
                             {"ckpt.policy.every_steps(4)", "4"},
                             {"ckpt.policy.every(60000000000ns)", "1000000000000"}});
    p.commit(std::move(after), false);

    flag = true;
    CHECK(p.ask(test::at(5), at_seconds(1002)));
    auto before = p.save();
    reasons.clear();
    after = p.advanced(test::at(5), at_seconds(1002), reasons);
    CHECK(reasons == std::vector<std::string>{"on_request"});
    p.commit(std::move(after), false);
    CHECK_FALSE(flag.load()); // the save it asked for is taken
    p.roll_back(std::move(before));
    CHECK(flag.load()); // ... and failed: asked again
    // A forced save leaves the flag as it is.
    p.clear_fired();
    reasons.clear();
    p.commit(p.advanced(test::at(6), at_seconds(1003), reasons), true);
    CHECK(reasons.empty());
    CHECK(flag.load());
}

TEST_CASE("policy_state::restore: from the tags, else from the checkpoint and the index") {
    ckpt::detail::policy_state p(ckpt::every_steps(4) | ckpt::on_best("loss") |
                                 ckpt::every(std::chrono::seconds(60)));
    ckpt::metadata meta = test::at(12);
    meta.time = at_seconds(500);
    meta.tags["ckpt.policy.every_steps(4)"] = "8";
    meta.tags["ckpt.policy.on_best(loss,min,0)"] = "garbage"; // does not parse: the fallback
    const std::vector<ckpt::checkpoint_entry> index{
        {"a", 4, 0, {}, {{"loss", 0.5}}, 0, false, false},
        {"b", 8, 0, {}, {{"loss", 0.25}}, 0, false, false},
        {"c", 12, 0, {}, {{"loss", 0.75}}, 0, false, false}};
    p.restore(meta, index);
    const auto& rules = p.policy().rules();
    CHECK(std::get<ckpt::detail::rule_every_steps>(rules[0]).last == 8);
    CHECK(std::get<ckpt::detail::rule_on_best>(rules[1]).best == 0.25);
    CHECK(std::get<ckpt::detail::rule_on_best>(rules[1]).best_step == 8);
    CHECK(std::get<ckpt::detail::rule_every_time>(rules[2]).last == at_seconds(500));
}
