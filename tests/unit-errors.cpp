// The error hierarchy and the checkpointable concept.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <set>

namespace {
struct serializable {
    int x = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(x));
    }
};
struct split_save_load {
    Eigen::VectorXf v;
    template <class Archive>
    void save(Archive& ar) const {
        ar(CEREAL_NVP(v));
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct not_serializable {
    int x = 0;
};
} // namespace

static_assert(ckpt::checkpointable<serializable>);
static_assert(ckpt::checkpointable<split_save_load>);
static_assert(ckpt::checkpointable<Eigen::MatrixXd>);
static_assert(ckpt::checkpointable<std::mt19937_64>);
static_assert(ckpt::checkpointable<std::vector<Eigen::Matrix3f>>);
static_assert(ckpt::checkpointable<double>);
static_assert(!ckpt::checkpointable<not_serializable>);
static_assert(!ckpt::is_checkpointable<not_serializable>::value); // the trait, for if constexpr

TEST_CASE("every error is a ckpt::error and a std::runtime_error with an id and a kind") {
    const auto dir = test::scratch("errors");
    int state = 0;
    try {
        ckpt::load(dir / "missing.ckpt", state);
        FAIL("no error");
    } catch (const ckpt::io_error& e) {
        CHECK(e.id() == ckpt::errc::io_open);
        CHECK(e.kind() == "io");
        CHECK(e.operation() == "open");
        CHECK(e.path() == (dir / "missing.ckpt").string());
        CHECK(e.code() == std::errc::no_such_file_or_directory);
        CHECK(std::string(e.what()) == "[ckpt.io.101] open '" + (dir / "missing.ckpt").string() +
                                           "' failed: No such file or directory (errno 2)");
    }
    const std::vector<std::byte> junk(16, std::byte{0});
    try {
        ckpt::load_from_memory(junk, state);
        FAIL("no error");
    } catch (const std::runtime_error& e) {
        const auto* ce = dynamic_cast<const ckpt::corrupt_error*>(&e);
        REQUIRE(ce != nullptr);
        CHECK(ce->kind() == "corrupt");
        CHECK(ce->id() == ckpt::errc::corrupt_not_ckpt);
        CHECK(std::string(e.what()).starts_with("[ckpt.corrupt.203] '<memory>': "));
    }
    const ckpt::schema_error s({{ckpt::errc::schema_missing, "a.b", "gone"}});
    CHECK(s.kind() == "schema");
    CHECK(std::string(s.what()) == "[ckpt.schema.301] a.b: gone");
    CHECK(ckpt::limit_error(ckpt::errc::limit_rank, "x").kind() == "limit");
    CHECK(ckpt::version_error(ckpt::errc::version_newer, "x").kind() == "version");
    CHECK(ckpt::usage_error(ckpt::errc::usage_argument, "x").kind() == "usage");
}

namespace {
std::vector<ckpt::schema_problem> numbered_problems(std::size_t n) {
    std::vector<ckpt::schema_problem> out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back({ckpt::errc::schema_missing, "t" + std::to_string(i), "gone"});
    }
    return out;
}
/// The lines "  [ckpt.schema.301] t<i>: gone" for i in [from, to).
std::string listed(std::size_t from, std::size_t to) {
    std::string s;
    for (std::size_t i = from; i < to; ++i)
        s += "\n  [ckpt.schema.301] t" + std::to_string(i) + ": gone";
    return s;
}
} // namespace

// A schema_error's message lists the first 10 problems and counts the rest, exactly; problems()
// keeps what it was given and problem_count() says how many there were in all.
TEST_CASE("a schema error lists 10 problems and counts the rest: 9, 10, 11 and a capped list") {
    for (const std::size_t n : {9, 10, 11}) {
        CAPTURE(n);
        const ckpt::schema_error e(numbered_problems(n));
        CHECK(e.problems().size() == n);
        CHECK(e.problem_count() == n);
        const std::string tail = n > 10 ? "\n  ... " + std::to_string(n - 10) + " not listed" : "";
        CHECK(std::string(e.what()) == "[ckpt.schema.301] t0: gone (and " + std::to_string(n - 1) +
                                           " more:" + listed(1, std::min<std::size_t>(n, 10)) +
                                           tail + ")");
    }
    // Only the first 3 of 8200 kept (as a load keeps at most its tensors' count).
    const ckpt::schema_error capped(numbered_problems(3), 8200);
    CHECK(capped.problems().size() == 3);
    CHECK(capped.problem_count() == 8200);
    CHECK(std::string(capped.what()) ==
          "[ckpt.schema.301] t0: gone (and 8199 more:" + listed(1, 3) + "\n  ... 8197 not listed)");
}

TEST_CASE("ids are distinct within the table") {
    const std::vector<int> ids = {ckpt::errc::io_open,
                                  ckpt::errc::io_read,
                                  ckpt::errc::io_write,
                                  ckpt::errc::io_fsync,
                                  ckpt::errc::io_close,
                                  ckpt::errc::io_rename,
                                  ckpt::errc::io_sync_directory,
                                  ckpt::errc::io_stat,
                                  ckpt::errc::io_remove,
                                  ckpt::errc::corrupt_too_small,
                                  ckpt::errc::corrupt_truncated_header,
                                  ckpt::errc::corrupt_not_ckpt,
                                  ckpt::errc::corrupt_checksum,
                                  ckpt::errc::corrupt_json,
                                  ckpt::errc::corrupt_header,
                                  ckpt::errc::corrupt_offsets,
                                  ckpt::errc::corrupt_values,
                                  ckpt::errc::schema_missing,
                                  ckpt::errc::schema_mismatch,
                                  ckpt::errc::schema_unexpected,
                                  ckpt::errc::schema_storage_order,
                                  ckpt::errc::schema_value_type,
                                  ckpt::errc::schema_value_count,
                                  ckpt::errc::schema_duplicate,
                                  ckpt::errc::schema_reserved,
                                  ckpt::errc::version_newer,
                                  ckpt::errc::version_invalid,
                                  ckpt::errc::limit_header,
                                  ckpt::errc::limit_tensor_count,
                                  ckpt::errc::limit_rank,
                                  ckpt::errc::limit_tensor_bytes,
                                  ckpt::errc::limit_value_size,
                                  ckpt::errc::limit_name,
                                  ckpt::errc::usage_argument};
    std::set<int> unique(ids.begin(), ids.end());
    CHECK(unique.size() == ids.size());
}

TEST_CASE("metadata strings must be UTF-8, so the header stays valid JSON") {
    const auto dir = test::scratch("errors-utf8");
    ckpt::metadata m;
    m.tags["bad"] = "\xff\xfe";
    CHECK(test::error_id([&] { ckpt::save(dir / "c.ckpt", 1, m); }) == ckpt::errc::usage_argument);
    CHECK(std::filesystem::is_empty(dir));
}
