// Retention's selection (ckpt/manager/selection.hpp) on its own: ranking by a metric, the
// newest-first order, and which entries each rule keeps, at and around every bound.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace selection_test {

using entries = std::vector<ckpt::checkpoint_entry>;

ckpt::checkpoint_entry entry(std::int64_t step, std::map<std::string, double> metrics = {},
                             std::int64_t seconds = 0) {
    ckpt::checkpoint_entry e;
    e.path = "ckpt-" + std::to_string(step);
    e.step = step;
    e.metrics = std::move(metrics);
    e.time = std::chrono::system_clock::time_point(std::chrono::seconds(seconds));
    return e;
}

/// The steps of the kept entries, in entry order.
std::vector<std::int64_t> kept_steps(const entries& es, const ckpt::retention& keep,
                                     const ckpt::detail::ranked_metrics& best = {}) {
    const std::vector<bool> kept = ckpt::detail::select_kept(es, keep, best);
    REQUIRE(kept.size() == es.size());
    std::vector<std::int64_t> out;
    for (std::size_t i = 0; i < es.size(); ++i) {
        if (kept[i]) out.push_back(es[i].step);
    }
    return out;
}

/// Steps 10, 20, ... 50, stored out of order.
entries five() {
    return {entry(30), entry(10), entry(50), entry(20), entry(40)};
}

} // namespace selection_test

using selection_test::entry;
using selection_test::kept_steps;
using steps = std::vector<std::int64_t>;

TEST_CASE("ranked: best first, a tie to the newer step, missing and NaN left out") {
    const selection_test::entries es{
        entry(1, {{"loss", 0.5}}),        entry(2, {{"loss", 0.25}}), entry(3, {}),
        entry(4, {{"loss", test::qnan}}), entry(5, {{"loss", 0.25}}), entry(6, {{"loss", 1.0}})};
    CHECK(ckpt::detail::ranked(es, "loss", ckpt::goal::minimize) ==
          std::vector<std::size_t>{4, 1, 0, 5});
    CHECK(ckpt::detail::ranked(es, "loss", ckpt::goal::maximize) ==
          std::vector<std::size_t>{5, 0, 4, 1});
    CHECK(ckpt::detail::ranked(es, "acc", ckpt::goal::maximize).empty());
    CHECK(ckpt::detail::newest_first(es) == std::vector<std::size_t>{5, 4, 3, 2, 1, 0});
}

TEST_CASE("keep_last(K) at K-1, K and K+1 of five entries") {
    const auto es = selection_test::five();
    CHECK(kept_steps(es, ckpt::keep_last(0)) == steps{50}); // the newest, always
    CHECK(kept_steps(es, ckpt::keep_last(3)) == steps{30, 50, 40});
    CHECK(kept_steps(es, ckpt::keep_last(4)) == steps{30, 50, 20, 40});
    CHECK(kept_steps(es, ckpt::keep_last(5)) == steps{30, 10, 50, 20, 40});
    CHECK(kept_steps(es, ckpt::keep_last(6)) == steps{30, 10, 50, 20, 40});
    CHECK(kept_steps({}, ckpt::keep_last(1)).empty());
}

TEST_CASE("keep_best(K): the K best and the newest; the best by a ranked metric, always") {
    const selection_test::entries es{entry(1, {{"loss", 3.0}}), entry(2, {{"loss", 1.0}}),
                                     entry(3, {{"loss", 2.0}}), entry(4, {{"loss", 4.0}}),
                                     entry(5, {{"loss", 5.0}})};
    CHECK(kept_steps(es, ckpt::keep_best(1, "loss")) == steps{2, 5});
    CHECK(kept_steps(es, ckpt::keep_best(2, "loss")) == steps{2, 3, 5});
    CHECK(kept_steps(es, ckpt::keep_best(2, "loss", ckpt::goal::maximize)) == steps{4, 5});
    CHECK(kept_steps(es, ckpt::keep_last(1)) == steps{5});
    CHECK(kept_steps(es, ckpt::keep_last(1), {{"loss", ckpt::goal::minimize}}) == steps{2, 5});
    CHECK(kept_steps(es, ckpt::keep_last(2) | ckpt::keep_best(1, "loss")) == steps{2, 4, 5});
    CHECK(kept_steps(es, ckpt::keep_all()) == steps{1, 2, 3, 4, 5});
}

TEST_CASE("keep_every_steps(N): the earliest in each span [iN, (i+1)N), at the span's edges") {
    const selection_test::entries es{entry(9),  entry(10), entry(11), entry(19),
                                     entry(20), entry(29), entry(41)};
    CHECK(kept_steps(es, ckpt::keep_every_steps(10)) == steps{9, 10, 20, 41});
    CHECK(kept_steps(es, ckpt::keep_every_steps(1)) == steps{9, 10, 11, 19, 20, 29, 41});
}

TEST_CASE("keep_every(period): spans of wall-clock time, before 1970 included") {
    const selection_test::entries es{entry(1, {}, -11), entry(2, {}, -10), entry(3, {}, -1),
                                     entry(4, {}, 0),   entry(5, {}, 9),   entry(6, {}, 10),
                                     entry(7, {}, 25)};
    // Spans of 10 s: [-20,-10) [-10,0) [0,10) [10,20) [20,30).
    CHECK(kept_steps(es, ckpt::keep_every(std::chrono::seconds(10))) == steps{1, 2, 4, 6, 7});
}

TEST_CASE("ranked_by: a policy's and a retention's metrics once each; both ways is an error") {
    const auto by = ckpt::detail::ranked_by(
        ckpt::on_best("val") | ckpt::every_steps(3) | ckpt::on_best("val"),
        ckpt::keep_best(2, "acc", ckpt::goal::maximize) | ckpt::keep_best(1, "val"));
    CHECK(by == ckpt::detail::ranked_metrics{{"val", ckpt::goal::minimize},
                                             {"acc", ckpt::goal::maximize}});
    const std::string text = test::error_text([] {
        (void)ckpt::detail::ranked_by(ckpt::on_best("val"),
                                      ckpt::keep_best(1, "val", ckpt::goal::maximize));
    });
    CHECK(text ==
          "[ckpt.usage.601] manager: metric 'val' is ranked both ways (minimize and maximize)");
}
