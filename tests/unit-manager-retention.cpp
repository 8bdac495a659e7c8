// Retention: after every step of a long scripted run, exactly the expected checkpoints are on disk
// and in list(); the newest and the best are always among them; the manager never deletes a file
// it does not own; list() entries and stats() are exact.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace doctest {
// Also in unit-manager-policy.cpp; the guard lets both share one program (the single-header tests'
// unity build, tests/CMakeLists.txt).
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
} // namespace doctest

namespace {

namespace fs = std::filesystem;
using test::at;
using test::fake_clock;
using test::qnan;
using test::time_point;
using test::train_state;
using test::with_clock;
using step_list = std::vector<std::int64_t>;

/// Steps of the files named ckpt-<12 digits>.ckpt in `dir`, ascending; -1 for any other .ckpt.
step_list on_disk_steps(const fs::path& dir) {
    step_list out;
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

step_list sorted(std::set<std::int64_t> s) {
    return {s.begin(), s.end()};
}

/// After step `now`: exactly `expected` on disk and in list(), the newest flagged latest and
/// exactly `best` flagged best; every entry's path and size are those of its file.
void check_kept(const ckpt::manager& m, std::int64_t now, const step_list& expected,
                const step_list& best = {}) {
    INFO("after step ", now);
    CHECK(on_disk_steps(m.directory()) == expected);
    step_list listed;
    step_list latest;
    step_list flagged_best;
    std::uint64_t bytes = 0;
    for (const auto& e : m.list()) {
        listed.push_back(e.step);
        if (e.latest) latest.push_back(e.step);
        if (e.best) flagged_best.push_back(e.step);
        CHECK(e.path == m.path_of(e.step));
        std::error_code ec;
        CHECK(e.bytes == fs::file_size(e.path, ec));
        bytes += e.bytes;
    }
    CHECK(listed == expected);
    CHECK(latest == (expected.empty() ? step_list{} : step_list{expected.back()}));
    CHECK(flagged_best == best);
    const auto s = m.stats();
    CHECK(s.checkpoints_on_disk == expected.size());
    CHECK(s.bytes_on_disk == bytes);
    CHECK(s.delete_failures == 0);
}

/// The paths of `removed` in `m`.
std::vector<fs::path> paths_of(const ckpt::manager& m, const step_list& removed) {
    std::vector<fs::path> out;
    for (const std::int64_t s : removed) out.push_back(m.path_of(s));
    return out;
}

} // namespace

TEST_CASE("keep_last(K) keeps the K newest after every step") {
    SUBCASE("a save every step, K = 3") {
        const auto dir = test::scratch("keep-last-3");
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(3));
        train_state state;
        step_list before;
        for (std::int64_t s = 1; s <= 40; ++s) {
            const auto r = m.step(state, at(s));
            REQUIRE(r.saved);
            step_list expected;
            for (std::int64_t k = std::max<std::int64_t>(1, s - 2); k <= s; ++k) {
                expected.push_back(k);
            }
            check_kept(m, s, expected);
            CHECK(r.deleted == paths_of(m, s >= 4 ? step_list{s - 3} : step_list{}));
            CHECK(m.stats().checkpoints_written == static_cast<std::uint64_t>(s));
            before = expected;
        }
        CHECK(before == step_list{38, 39, 40});
    }
    SUBCASE("a save every third step, K = 2, checked on steps without a save too") {
        const auto dir = test::scratch("keep-last-2-sparse");
        ckpt::manager m(dir, ckpt::every_steps(3), ckpt::keep_last(2));
        train_state state;
        for (std::int64_t s = 1; s <= 40; ++s) {
            const auto r = m.step(state, at(s));
            CHECK(r.saved == (s % 3 == 0));
            const std::int64_t last = s / 3 * 3; // the newest multiple of 3 so far
            step_list expected;
            if (last >= 6) expected.push_back(last - 3);
            if (last >= 3) expected.push_back(last);
            check_kept(m, s, expected);
            if (r.saved)
                CHECK(r.deleted == paths_of(m, last >= 9 ? step_list{last - 6} : step_list{}));
        }
    }
    SUBCASE("K = 1") {
        const auto dir = test::scratch("keep-last-1");
        ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_last(1));
        train_state state;
        for (std::int64_t s = 1; s <= 20; ++s) {
            (void)m.step(state, at(s));
            check_kept(m, s, s >= 2 ? step_list{s / 2 * 2} : step_list{});
        }
    }
}

TEST_CASE("keep_best(K, metric) keeps the K best and the newest after every step") {
    const auto dir = test::scratch("keep-best-2");
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_best(2, "val_loss"));
    train_state state;
    // val_loss at steps 1..16, then worse and worse up to step 40.
    const std::vector<double> loss = {0.9, 0.8,  1.0,  0.7,  qnan, 0.85, 0.75, 0.75,
                                      0.6, 0.95, qnan, 0.65, 0.6,  0.99, 0.5,  0.99};
    // After each step: what is kept (a tie goes to the newer; NaN never ranks), and the best.
    const std::vector<std::pair<step_list, step_list>> expected = {
        {{1}, {1}},       {{1, 2}, {2}},       {{1, 2, 3}, {2}},  {{2, 4}, {4}},
        {{2, 4, 5}, {4}}, {{2, 4, 6}, {4}},    {{4, 7}, {4}},     {{4, 8}, {4}},
        {{4, 9}, {9}},    {{4, 9, 10}, {9}},   {{4, 9, 11}, {9}}, {{9, 12}, {9}},
        {{9, 13}, {13}},  {{9, 13, 14}, {13}}, {{13, 15}, {15}},  {{13, 15, 16}, {15}}};
    for (std::int64_t s = 1; s <= 40; ++s) {
        const double v = s <= 16 ? loss[static_cast<std::size_t>(s - 1)] : 1.0 + 0.01 * double(s);
        const auto r = m.step(state, at(s, {{"val_loss", v}}));
        REQUIRE(r.saved);
        if (s <= 16) {
            const auto& [kept, best] = expected[static_cast<std::size_t>(s - 1)];
            check_kept(m, s, kept, best);
        } else {
            check_kept(m, s, {13, 15, s}, {15});
            CHECK(r.deleted == paths_of(m, {s - 1}));
        }
    }
    // The kept files hold what they should.
    CHECK(ckpt::inspect(m.path_of(13)).meta.metrics.at("val_loss") == 0.6);
    CHECK(ckpt::inspect(m.path_of(15)).meta.metrics.at("val_loss") == 0.5);
}

TEST_CASE("keep_best(maximize) keeps the highest") {
    const auto dir = test::scratch("keep-best-max");
    ckpt::manager m(dir, ckpt::every_steps(1),
                    ckpt::keep_best(1, "accuracy", ckpt::goal::maximize));
    train_state state;
    const std::vector<double> acc = {0.5, 0.25, 0.75, qnan, 0.75, 0.625, 0.875, 0.125};
    const std::vector<std::pair<step_list, step_list>> expected = {
        {{1}, {1}}, {{1, 2}, {1}}, {{3}, {3}}, {{3, 4}, {3}},
        {{5}, {5}}, {{5, 6}, {5}}, {{7}, {7}}, {{7, 8}, {7}}};
    for (std::int64_t s = 1; s <= 8; ++s) {
        (void)m.step(state, at(s, {{"accuracy", acc[static_cast<std::size_t>(s - 1)]}}));
        const auto& [kept, best] = expected[static_cast<std::size_t>(s - 1)];
        check_kept(m, s, kept, best);
    }
}

TEST_CASE("the best and the newest are both on disk while validation loss gets worse") {
    SUBCASE("on_best ranks val_loss, keep_last(1)") {
        const auto dir = test::scratch("worse-keep-last-1");
        ckpt::manager m(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"), ckpt::keep_last(1));
        train_state state;
        for (std::int64_t s = 1; s <= 60; ++s) {
            // 1.0, 0.9, ... 0.6 at step 5, then worse on every one of 55 steps.
            const double v = s <= 5 ? 1.1 - 0.1 * double(s) : 0.6 + 0.01 * double(s - 5);
            const auto r = m.step(state, at(s, {{"val_loss", v}}));
            CHECK(r.reasons ==
                  (s <= 5 ? std::vector<std::string>{"every_steps(1)", "on_best(val_loss,min,0)"}
                          : std::vector<std::string>{"every_steps(1)"}));
            check_kept(m, s, s <= 5 ? step_list{s} : step_list{5, s},
                       {std::min<std::int64_t>(s, 5)});
            CHECK(r.deleted == paths_of(m, s >= 2 && s <= 5 ? step_list{s - 1}
                                           : s >= 7         ? step_list{s - 1}
                                                            : step_list{}));
        }
    }
    SUBCASE("on_best ranks val_loss, keep_best ranks accuracy, keep_last(2)") {
        const auto dir = test::scratch("worse-two-metrics");
        ckpt::manager m(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"),
                        ckpt::keep_last(2) | ckpt::keep_best(1, "accuracy", ckpt::goal::maximize));
        train_state state;
        for (std::int64_t s = 1; s <= 45; ++s) {
            // val_loss is best at step 4, accuracy at step 9; both only get worse after.
            const double loss = s <= 4 ? 1.0 - 0.1 * double(s) : 0.6 + 0.05 * double(s - 4);
            const double acc = s <= 9 ? 0.1 * double(s) : 0.9 - 0.01 * double(s - 9);
            (void)m.step(state, at(s, {{"val_loss", loss}, {"accuracy", acc}}));
            std::set<std::int64_t> kept = {s, std::min<std::int64_t>(s, 4),
                                           std::min<std::int64_t>(s, 9)};
            if (s >= 2) kept.insert(s - 1);
            check_kept(m, s, sorted(kept),
                       sorted({std::min<std::int64_t>(s, 4), std::min<std::int64_t>(s, 9)}));
        }
    }
    SUBCASE("with saves only every 4th step and on a new best") {
        const auto dir = test::scratch("worse-sparse");
        ckpt::manager m(dir, ckpt::every_steps(4) | ckpt::on_best("val_loss"), ckpt::keep_last(1));
        train_state state;
        step_list saved;
        for (std::int64_t s = 1; s <= 50; ++s) {
            const double v = s <= 6 ? 2.0 - 0.25 * double(s) : 0.5 + 0.125 * double(s - 6);
            if (m.step(state, at(s, {{"val_loss", v}}))) saved.push_back(s);
            // 1..6 by on_best (4 also by count); then by count, 4 steps after 4: 8, 12, ...
            const std::int64_t newest = s <= 6 ? s : s < 8 ? 6 : s / 4 * 4;
            check_kept(m, s, newest <= 6 ? step_list{newest} : step_list{6, newest},
                       {std::min<std::int64_t>(s, 6)});
        }
        CHECK(saved == step_list{1, 2, 3, 4, 5, 6, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48});
    }
}

TEST_CASE("keep_every_steps(N) keeps the earliest checkpoint in each span of N steps") {
    const auto dir = test::scratch("keep-every-steps");
    ckpt::manager m(dir, ckpt::every_steps(3), ckpt::keep_every_steps(10));
    train_state state;
    // Saves at 3, 6, ..., 63; the earliest in [0,10) is 3, in [10,20) 12, [20,30) 21, ...
    const step_list earliest = {3, 12, 21, 30, 42, 51, 60};
    for (std::int64_t s = 1; s <= 65; ++s) {
        (void)m.step(state, at(s));
        std::set<std::int64_t> kept;
        for (const std::int64_t e : earliest) {
            if (e <= s) kept.insert(e);
        }
        if (s >= 3) kept.insert(s / 3 * 3); // the newest
        check_kept(m, s, sorted(kept));
    }
    CHECK(on_disk_steps(dir) == step_list{3, 12, 21, 30, 42, 51, 60, 63});

    SUBCASE("N <= 0 is a usage error") {
        CHECK(test::error_text([] { (void)ckpt::keep_every_steps(0); }) ==
              "[ckpt.usage.601] keep_every_steps(0): n must be > 0");
        CHECK(test::error_id([] { (void)ckpt::keep_every_steps(-10); }) ==
              ckpt::errc::usage_argument);
    }
}

TEST_CASE("keep_every(period) keeps the earliest checkpoint in each period of wall-clock time") {
    // 1'699'999'980 s is a whole number of minutes since the epoch; step s is 25 s after s - 1.
    const time_point t0 = time_point(std::chrono::seconds(1'699'999'980));
    const auto time_of = [&](std::int64_t s) { return t0 + std::chrono::seconds(25 * (s - 1)); };
    // Minute k starts at 60k s: the first step at or after it is ceil(60k / 25) + 1.
    const step_list earliest = {1, 4, 6, 9, 11, 13, 16, 18, 21, 23, 25, 28, 30};
    for (const bool explicit_time : {true, false}) {
        INFO((explicit_time ? "metadata.time set, the clock frozen"
                            : "metadata.time from the clock"));
        const auto dir = test::scratch(explicit_time ? "keep-every-meta" : "keep-every-clock");
        fake_clock clock;
        clock.now = t0;
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_every(std::chrono::minutes(1)),
                        with_clock(clock));
        train_state state;
        for (std::int64_t s = 1; s <= 30; ++s) {
            ckpt::metadata meta = at(s);
            if (explicit_time) {
                meta.time = time_of(s);
            } else {
                clock.now = time_of(s);
            }
            (void)m.step(state, meta);
            std::set<std::int64_t> kept = {s};
            for (const std::int64_t e : earliest) {
                if (e <= s) kept.insert(e);
            }
            check_kept(m, s, sorted(kept));
            for (const auto& e : m.list()) CHECK(e.time == time_of(e.step));
        }
        CHECK(on_disk_steps(dir) == earliest);
    }
    CHECK(test::error_text([] { (void)ckpt::keep_every(std::chrono::seconds(0)); }) ==
          "[ckpt.usage.601] keep_every(): the period must be > 0");
}

TEST_CASE("a union of retention rules keeps what any of them keeps") {
    const auto dir = test::scratch("keep-union");
    ckpt::manager m(dir, ckpt::every_steps(1),
                    ckpt::keep_last(2) | ckpt::keep_every_steps(10) |
                        ckpt::keep_best(1, "val_loss"));
    train_state state;
    for (std::int64_t s = 1; s <= 55; ++s) {
        // Best (0.5) at step 17; 16 and 18 tie at 0.51, and so on.
        const double v = 0.5 + 0.01 * double(std::abs(s - 17));
        (void)m.step(state, at(s, {{"val_loss", v}}));
        std::set<std::int64_t> kept = {s, std::min<std::int64_t>(s, 17)};
        if (s >= 2) kept.insert(s - 1);
        for (std::int64_t e : {1, 10, 20, 30, 40, 50}) {
            if (e <= s) kept.insert(e);
        }
        check_kept(m, s, sorted(kept), {std::min<std::int64_t>(s, 17)});
    }
    CHECK(on_disk_steps(dir) == step_list{1, 10, 17, 20, 30, 40, 50, 54, 55});
}

TEST_CASE("keep_all keeps every checkpoint, alone, by default and in a union") {
    for (const int variant : {0, 1, 2}) {
        INFO("variant ", variant);
        const auto dir = test::scratch("keep-all-" + std::to_string(variant));
        train_state state;
        const auto run = [&](ckpt::manager& m) {
            step_list expected;
            for (std::int64_t s = 1; s <= 30; ++s) {
                const auto r = m.step(state, at(s));
                if (s % 2 == 0) expected.push_back(s);
                CHECK(r.deleted.empty());
                check_kept(m, s, expected);
            }
        };
        if (variant == 0) {
            ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_all());
            run(m);
        } else if (variant == 1) {
            ckpt::manager m(dir, ckpt::every_steps(2));
            run(m);
        } else {
            ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_last(1) | ckpt::keep_all());
            run(m);
        }
    }
}

namespace {

/// A file the manager must never touch, and its bytes.
struct planted {
    fs::path path;
    std::vector<std::byte> bytes;
};

std::vector<std::byte> text_bytes(const std::string& s) {
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

/// A valid safetensors file that ckpt did not write, with or without the optional __metadata__.
std::vector<std::byte> plain_safetensors(bool with_metadata) {
    std::vector<std::byte> data(8);
    const float w[2] = {1.0F, 2.0F};
    std::memcpy(data.data(), w, sizeof w);
    const std::string meta = with_metadata ? R"("__metadata__":{"format":"pt"},)" : "";
    return test::craft("{" + meta + R"("weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                       data, false);
}

std::vector<planted> plant_foreign_files(const fs::path& dir) {
    train_state user;
    user.weights.setConstant(7.0F);
    ckpt::metadata user_meta = at(3, {{"val_loss", 0.001}});
    ckpt::save(dir / "mine.ckpt", user, user_meta);
    ckpt::save(dir / "ckpt-final.ckpt", user, user_meta);
    ckpt::save(dir / "other-000000000005.ckpt", user, user_meta);
    ckpt::save(dir / "CKPT-000000000009.ckpt", user, user_meta);
    fs::create_directories(dir / "sub" / "deeper");
    ckpt::save(dir / "sub" / "ckpt-000000000008.ckpt", user, user_meta);
    test::write_file(dir / "ckpt-000000000001.ckpt", text_bytes("not a checkpoint: plain text\n"));
    test::write_file(dir / "ckpt-000000000002.ckpt", plain_safetensors(true));
    test::write_file(dir / "ckpt-000000000003.ckpt", plain_safetensors(false));
    test::write_file(dir / "notes.txt", text_bytes("lr = 0.1\n"));
    test::write_file(dir / "ckpt-000000000006.ckpt.bak", test::read_file(dir / "mine.ckpt"));
    test::write_file(dir / "ckpt-000000000007.ckpt.tmp", text_bytes("x"));
    test::write_file(dir / "sub" / "readme", text_bytes("keep me\n"));
    std::vector<planted> out;
    for (const auto& de : fs::recursive_directory_iterator(dir)) {
        if (de.is_regular_file()) out.push_back({de.path(), test::read_file(de.path())});
    }
    std::sort(out.begin(), out.end(),
              [](const planted& a, const planted& b) { return a.path < b.path; });
    return out;
}

void check_untouched(const std::vector<planted>& files) {
    for (const auto& f : files) {
        INFO(f.path.string());
        CHECK(fs::is_regular_file(f.path));
        if (fs::is_regular_file(f.path)) CHECK(test::read_file(f.path) == f.bytes);
    }
}

} // namespace

TEST_CASE("the manager never deletes a file it does not own") {
    const auto dir = test::scratch("foreign-files");
    const auto files = plant_foreign_files(dir);
    REQUIRE(files.size() == 12);
    CHECK(fs::is_directory(dir / "sub" / "deeper"));

    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2));
    // Nothing of this is indexed; the three with the manager's names are foreign files (text,
    // safetensors with and without __metadata__), not damaged checkpoints, and never deleted.
    CHECK(m.list().empty());
    CHECK(m.cleaned().empty());
    CHECK(m.skipped().empty());
    CHECK(m.foreign() == std::vector<fs::path>{dir / "ckpt-000000000001.ckpt",
                                               dir / "ckpt-000000000002.ckpt",
                                               dir / "ckpt-000000000003.ckpt"});

    train_state state;
    const step_list others = {-1, -1, -1, -1, 1, 2, 3}; // the four other .ckpt names, and 1 to 3
    for (std::int64_t s = 10; s <= 60; ++s) {
        (void)m.step(state, at(s));
        INFO("after step ", s);
        step_list expected = others;
        if (s >= 11) expected.push_back(s - 1);
        expected.push_back(s);
        CHECK(on_disk_steps(dir) == expected);
        step_list listed;
        for (const auto& e : m.list()) listed.push_back(e.step);
        CHECK(listed == (s >= 11 ? step_list{s - 1, s} : step_list{s}));
    }
    check_untouched(files);
    CHECK(fs::is_directory(dir / "sub" / "deeper"));
    CHECK(m.stats().checkpoints_on_disk == 2);
    CHECK(m.stats().bytes_on_disk == fs::file_size(m.path_of(59)) + fs::file_size(m.path_of(60)));
}

TEST_CASE("a restarted manager still leaves foreign files alone") {
    const auto dir = test::scratch("foreign-files-restart");
    const auto files = plant_foreign_files(dir);
    train_state state;
    for (std::int64_t first : {10, 30}) {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2));
        if (first == 30) {
            train_state back;
            CHECK(m.restore_latest(back)->step == 29);
        }
        for (std::int64_t s = first; s < first + 20; ++s) (void)m.step(state, at(s));
    }
    check_untouched(files);
    CHECK(on_disk_steps(dir) == step_list{-1, -1, -1, -1, 1, 2, 3, 48, 49});
}

TEST_CASE("a save at the step of a foreign file with the manager's name leaves that file alone") {
    // ckpt-000000000001.ckpt (garbage), ckpt-000000000002.ckpt and ckpt-000000000003.ckpt (plain
    // safetensors) are not this manager's: the scan skips them ("not written by ckpt: left
    // alone"). A save at step 1, 2 or 3 must not replace them, and retention must not delete them.
    const auto dir = test::scratch("foreign-files-collide");
    const auto files = plant_foreign_files(dir);
    const auto garbage = test::read_file(dir / "ckpt-000000000001.ckpt");
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2));
    train_state state;
    for (std::int64_t s = 1; s <= 10; ++s) {
        try {
            (void)m.step(state, at(s));
        } catch (const ckpt::error&) {
            // Refusing to write over a file the manager does not own is acceptable.
        }
        if (s == 1) CHECK(test::read_file(dir / "ckpt-000000000001.ckpt") == garbage);
    }
    check_untouched(files);
}

TEST_CASE("a user's own checkpoint named like the manager's but not padded is not deleted") {
    // path_of() always writes 12 digits; ckpt-7.ckpt is a name the manager never writes.
    const auto dir = test::scratch("foreign-unpadded");
    train_state user;
    user.weights.setConstant(3.0F);
    ckpt::save(dir / "ckpt-7.ckpt", user, at(7));
    const auto bytes = test::read_file(dir / "ckpt-7.ckpt");
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(2));
    CHECK(m.list().empty()); // not indexed as the manager's own
    train_state state;
    for (std::int64_t s = 10; s <= 20; ++s) (void)m.step(state, at(s));
    REQUIRE(fs::exists(dir / "ckpt-7.ckpt"));
    CHECK(test::read_file(dir / "ckpt-7.ckpt") == bytes);
}

TEST_CASE("list() entries hold exactly the step, epoch, time, metrics and size of each file") {
    const auto dir = test::scratch("entries");
    const time_point t0 = time_point(std::chrono::seconds(1'700'000'000));
    std::vector<ckpt::checkpoint_entry> first;
    {
        ckpt::manager m(dir, ckpt::every_steps(2), ckpt::keep_last(3));
        train_state state;
        for (std::int64_t s = 1; s <= 12; ++s) {
            ckpt::metadata meta = at(s, {{"loss", 1.0 / double(s)}, {"acc", 0.125 * double(s)}});
            meta.epoch = s / 4;
            meta.time = t0 + std::chrono::milliseconds(1500 * s) + std::chrono::nanoseconds(7);
            state.step = s;
            (void)m.step(state, meta);
        }
        first = m.list();
        REQUIRE(first.size() == 3);
        CHECK(first.back().path == dir / "ckpt-000000000012.ckpt");
        for (std::size_t i = 0; i < first.size(); ++i) {
            const auto& e = first[i];
            const std::int64_t s = 8 + 2 * static_cast<std::int64_t>(i);
            CHECK(e.path == m.path_of(s));
            CHECK(e.step == s);
            CHECK(e.epoch == s / 4);
            CHECK(e.time == t0 + std::chrono::milliseconds(1500 * s) + std::chrono::nanoseconds(7));
            CHECK(e.metrics == std::map<std::string, double>{{"acc", 0.125 * double(s)},
                                                             {"loss", 1.0 / double(s)}});
            CHECK(e.bytes == fs::file_size(e.path));
            CHECK(e.latest == (s == 12));
            CHECK_FALSE(e.best);
            const auto inf = ckpt::inspect(e.path);
            CHECK(inf.file_bytes == e.bytes);
            CHECK(inf.meta.time == e.time);
        }
    }
    // A new manager on the same directory reads the same entries back from the files.
    ckpt::manager again(dir, ckpt::every_steps(2), ckpt::keep_last(3));
    CHECK(again.list() == first);
}

TEST_CASE("stats(): written, on disk, bytes, and steps and seconds at risk, exactly") {
    const auto dir = test::scratch("stats");
    fake_clock clock;
    const time_point start = clock.now;
    ckpt::manager m(dir, ckpt::every_steps(5), ckpt::keep_last(2), with_clock(clock));
    train_state state;
    const auto bytes_of = [&](const step_list& on_disk) {
        std::uint64_t n = 0;
        for (const std::int64_t s : on_disk) n += fs::file_size(m.path_of(s));
        return n;
    };
    struct expect {
        std::uint64_t written;
        step_list on_disk;
        std::int64_t steps_at_risk;
        double seconds_at_risk;
    };
    const auto check_stats = [&](const expect& x) {
        const auto st = m.stats();
        CHECK(st.checkpoints_written == x.written);
        CHECK(st.checkpoints_on_disk == x.on_disk.size());
        CHECK(st.bytes_on_disk == bytes_of(x.on_disk));
        CHECK(st.steps_at_risk == x.steps_at_risk);
        CHECK(st.seconds_at_risk == x.seconds_at_risk);
        CHECK(st.delete_failures == 0);
        CHECK(on_disk_steps(dir) == x.on_disk);
    };
    using ms = std::chrono::milliseconds;
    check_stats({0, {}, 0, 0.0});
    clock.now = start + ms(7500);
    check_stats({0, {}, 0, 7.5}); // nothing saved yet: at risk since the manager started
    (void)m.step(state, at(3));
    check_stats({0, {}, 3, 7.5});
    clock.now = start + ms(10000);
    CHECK(m.step(state, at(5)));
    check_stats({1, {5}, 0, 0.0});
    clock.now = start + ms(14000);
    (void)m.step(state, at(6));
    check_stats({1, {5}, 1, 4.0});
    clock.now = start + ms(14250);
    (void)m.step(state, at(9));
    check_stats({1, {5}, 4, 4.25});
    clock.now = start + ms(20000);
    CHECK(m.step(state, at(10)));
    check_stats({2, {5, 10}, 0, 0.0});
    clock.now = start + ms(30000);
    CHECK(m.step(state, at(15)));
    check_stats({3, {10, 15}, 0, 0.0});
    clock.now = start + ms(120000);
    check_stats({3, {10, 15}, 0, 90.0});
    (void)m.step(state, at(17));
    check_stats({3, {10, 15}, 2, 90.0});
    clock.now = start + ms(121000);
    CHECK(m.save_now(state, at(18)));
    check_stats({4, {15, 18}, 0, 0.0});
    const auto st = m.stats();
    CHECK(st.last_save_seconds > 0.0);
    CHECK(st.total_save_seconds >= st.last_save_seconds);
}
