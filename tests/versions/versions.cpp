// Class versions across builds: this file is compiled once per version of tests/versions/
// state.hpp (CKPT_TEST_STATE_VERSION 0, 1, 2), and each program loads every committed golden
// file: the older and its own with the right values and, for the members its file lacks, the
// values the state held; the newer ones are refused with ckpt.schema.309, the state untouched.
//
// To write a version's golden file once (never again later): CKPT_WRITE_GOLDEN=<dir> runs the
// first test case in write mode.
#include "state.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

using versions::state;

std::filesystem::path golden(const std::string& name) {
    return std::filesystem::path(CKPT_TEST_DATA_DIR) / "versions" / name;
}

/// The state's saved bytes: equal bytes, equal state (tensors and values).
std::vector<std::byte> bytes_of(const state& s) {
    ckpt::detail::tensor_oarchive ar;
    ckpt::detail::collect(ar, s);
    std::vector<std::byte> out = ar.values();
    for (const auto& t : ar.tensors()) {
        const auto* name = reinterpret_cast<const std::byte*>(t.name.data());
        out.insert(out.end(), name, name + t.name.size() + 1);
        out.insert(out.end(), t.data, t.data + t.bytes);
    }
    return out;
}

/// `got` holds what the program of version `written` saved, and fresh() in every member that
/// version lacks.
void check_loaded(const state& got, std::uint32_t written) {
    const state want = versions::recipe(written);
    const state defaults = versions::fresh();
    REQUIRE(got.layers.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        CHECK(got.layers[i].weight == want.layers[i].weight);
        if (written >= 1 && versions::version >= 1) {
            CHECK(got.layers[i].bias == want.layers[i].bias);
        } else {
            CHECK(got.layers[i].bias.size() == 0); // a layer the load created, as it was made
        }
    }
    CHECK(got.opt.m == want.opt.m);
    CHECK(got.opt.v == (written >= 1 ? want.opt.v : defaults.opt.v));
    CHECK(got.opt.t == (written >= 2 ? want.opt.t : defaults.opt.t));
    CHECK(got.step == want.step);
    CHECK(got.sched.lr == want.sched.lr);
    CHECK(got.sched.warmup == (written >= 1 ? want.sched.warmup : defaults.sched.warmup));
    CHECK(got.sched.decay == (written >= 2 ? want.sched.decay : defaults.sched.decay));
    CHECK(got.ema == (written >= 1 ? want.ema : defaults.ema));
    CHECK(got.seen == (written >= 2 ? want.seen : defaults.seen));
}

} // namespace

TEST_CASE("class versions: this version's golden file holds its recipe") {
    const std::string name = "state-v" + std::to_string(versions::version) + ".ckpt";
    if (const char* dir = std::getenv("CKPT_WRITE_GOLDEN")) {
        ckpt::metadata meta;
        meta.step = versions::recipe(versions::version).step;
        ckpt::save(std::filesystem::path(dir) / name, versions::recipe(versions::version), meta);
    }
    state s = versions::fresh();
    const ckpt::metadata meta = ckpt::load(golden(name), s);
    CHECK(meta.step == 1000 + versions::version);
    CHECK(ckpt::inspect(golden(name)).format_version == 2);
    check_loaded(s, versions::version);
    CHECK(bytes_of(s) == bytes_of(versions::recipe(versions::version)));
}

TEST_CASE("class versions: every older golden file loads, with the newer members as they were") {
    for (std::uint32_t v = 0; v <= versions::version; ++v) {
        CAPTURE(v);
        state s = versions::fresh();
        ckpt::load(golden("state-v" + std::to_string(v) + ".ckpt"), s);
        check_loaded(s, v);
    }
    // Into a state that already holds its layers: they are loaded in place.
    for (std::uint32_t v = 0; v <= versions::version; ++v) {
        CAPTURE(v);
        state s = versions::fresh();
        s.layers.resize(2);
        s.layers[0].weight = Eigen::MatrixXf::Zero(3, 2);
        s.layers[1].weight = Eigen::MatrixXf::Zero(3, 3);
        ckpt::load(golden("state-v" + std::to_string(v) + ".ckpt"), s);
        check_loaded(s, v);
    }
}

TEST_CASE("class versions: a format-1 file's versions (plain U32 values) still load") {
    state s = versions::fresh();
    if constexpr (versions::version >= 1) {
        ckpt::load(golden("state-v1-format1.ckpt"), s);
        CHECK(ckpt::inspect(golden("state-v1-format1.ckpt")).format_version == 1);
        check_loaded(s, 1);
    } else {
        const state before = s;
        try {
            ckpt::load(golden("state-v1-format1.ckpt"), s);
            FAIL("a newer class version loaded");
        } catch (const ckpt::schema_error& e) {
            CHECK(e.id() == ckpt::errc::schema_class_version);
            CHECK(std::string(e.what()) ==
                  "[ckpt.schema.309] (the state): the checkpoint was written with class version 1 "
                  "of this type, this program has version 0 (CEREAL_CLASS_VERSION): load it "
                  "with the program that wrote it, or a newer one");
        }
        CHECK(bytes_of(s) == bytes_of(before));
    }
}

TEST_CASE("class versions: a newer golden file is refused and the state left as it was") {
    for (std::uint32_t v = versions::version + 1; v <= 2; ++v) {
        CAPTURE(v);
        for (const bool filled : {false, true}) {
            CAPTURE(filled);
            state s = filled ? versions::recipe(versions::version) : versions::fresh();
            const state before = s;
            try {
                ckpt::load(golden("state-v" + std::to_string(v) + ".ckpt"), s);
                FAIL("a newer class version loaded");
            } catch (const ckpt::schema_error& e) {
                CHECK(e.id() == ckpt::errc::schema_class_version);
                REQUIRE(e.problems().size() == 1);
                CHECK(e.problems()[0].path == "(the state)");
                CHECK(e.problems()[0].text ==
                      "the checkpoint was written with class version " + std::to_string(v) +
                          " of this type, this program has version " +
                          std::to_string(versions::version) +
                          " (CEREAL_CLASS_VERSION): load it with the program that wrote it, or "
                          "a newer one");
            }
            CHECK(bytes_of(s) == bytes_of(before));
        }
    }
}

TEST_CASE("class versions: a state saved by this version loads back whole") {
    const state saved = versions::recipe(versions::version);
    const auto bytes = ckpt::save_to_memory(saved);
    state s = versions::fresh();
    ckpt::load_from_memory(bytes, s);
    CHECK(bytes_of(s) == bytes_of(saved));
}
