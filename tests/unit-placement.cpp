// Placement of a distributed state's tensors, declared in serialize: ckpt::sharded (this rank
// holds rows of a global tensor) and ckpt::rank_local. A plain save records them in the file
// (ckpt.placement, ckpt.shards); a load requires the same placement; a crafted file that places
// rows outside the global tensor is refused before anything is decoded.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cereal/archives/binary.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace placement_test {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// One rank's state: rows [first, first + 3) of a 10-row embedding and of a 10-element moment,
/// a replicated weight, and a rank-local cursor, vector and engine.
struct rank_state {
    std::uint64_t first = 2;
    row_matrix embedding = row_matrix::Zero(3, 4);
    Eigen::VectorXf moment = Eigen::VectorXf::Zero(3);
    Eigen::MatrixXf weight = Eigen::MatrixXf::Zero(2, 2);
    struct sampler {
        std::int64_t cursor = 0;
        std::vector<float> seen;
        std::mt19937_64 engine{7};
        template <class Archive>
        void serialize(Archive& ar) {
            ar(CEREAL_NVP(cursor), CEREAL_NVP(seen), CEREAL_NVP(engine));
        }
    } data;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("embedding", embedding, {.offset = first, .global_rows = 10}),
           ckpt::sharded("moment", moment, {first, 10}), CEREAL_NVP(weight),
           ckpt::rank_local("data", data));
    }
};

rank_state filled(std::uint64_t first) {
    rank_state s;
    s.first = first;
    for (Eigen::Index i = 0; i < s.embedding.size(); ++i) {
        s.embedding.data()[i] = static_cast<float>(first * 100) + static_cast<float>(i);
    }
    s.moment.setLinSpaced(3, 0.5F, 1.5F);
    s.weight << 1, 2, 3, 4;
    s.data.cursor = 42;
    s.data.seen = {1, 2};
    s.data.engine.discard(3);
    return s;
}

const ckpt::tensor_info& named(const ckpt::info& info, const std::string& name) {
    for (const auto& t : info.tensors) {
        if (t.name == name) return t;
    }
    FAIL("no tensor " << name);
    return info.tensors.front();
}

/// The file with `from` replaced by `to` (the same length) and its checksum fixed.
std::vector<std::byte> edited(std::vector<std::byte> file, const std::string& from,
                              const std::string& to) {
    REQUIRE(from.size() == to.size());
    const std::string text(reinterpret_cast<const char*>(file.data()), file.size());
    const std::size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    std::memcpy(file.data() + at, to.data(), to.size());
    test::fix_checksum(file);
    return file;
}

struct plain {
    Eigen::VectorXf v = Eigen::VectorXf::Ones(3);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};

/// rank_state's tensors, undeclared: replicated.
struct undeclared {
    row_matrix embedding = row_matrix::Zero(3, 4);
    Eigen::VectorXf moment = Eigen::VectorXf::Zero(3);
    Eigen::MatrixXf weight = Eigen::MatrixXf::Zero(2, 2);
    rank_state::sampler data;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(embedding), CEREAL_NVP(moment), CEREAL_NVP(weight), CEREAL_NVP(data));
    }
};

TEST_CASE("placement: a save records each tensor's, inspect shows it, a load keeps it") {
    const rank_state saved = filled(2);
    const auto dir = test::scratch("placement");
    ckpt::save(dir / "r.ckpt", saved);
    const ckpt::info info = ckpt::inspect(dir / "r.ckpt");
    REQUIRE(info.tensors.size() == 4);
    // Entries in declaration order (all 4-byte elements): embedding, moment, weight, data.seen.
    CHECK(info.raw_metadata.at("ckpt.placement") == "SS-L-");
    CHECK(info.raw_metadata.at("ckpt.shards") == "2/10,2/10");
    CHECK(named(info, "embedding").shape == std::vector<std::uint64_t>{3, 4});
    CHECK(named(info, "embedding").place == ckpt::placement{ckpt::placement_kind::sharded, 2, 10});
    CHECK(named(info, "moment").place == ckpt::placement{ckpt::placement_kind::sharded, 2, 10});
    CHECK(named(info, "weight").place == ckpt::placement{});
    CHECK(named(info, "data.seen").place.kind == ckpt::placement_kind::rank_local);

    rank_state loaded = filled(2);
    loaded.embedding.setZero();
    loaded.data = {};
    ckpt::load(dir / "r.ckpt", loaded);
    CHECK(test::state_bytes(loaded) == test::state_bytes(saved));
}

TEST_CASE("placement: a state without declarations writes no placement keys") {
    const std::vector<std::byte> file = ckpt::save_to_memory(plain{});
    const std::string text(reinterpret_cast<const char*>(file.data()), file.size());
    CHECK(text.find("ckpt.placement") == std::string::npos);
    CHECK(text.find("ckpt.shards") == std::string::npos);
}

TEST_CASE("placement: a load needs the same placement; the error says both, the state stays") {
    const std::vector<std::byte> file = ckpt::save_to_memory(filled(2));

    rank_state other = filled(3); // rows [3, 6) of the same tensors
    const auto before = test::state_bytes(other);
    CHECK(test::error_text([&] { ckpt::load_from_memory(file, other); }) ==
          "[ckpt.schema.312] embedding: file has rows [2, 5) of 10 (sharded), state expects rows "
          "[3, 6) of 10 (sharded) (and 1 more:\n  [ckpt.schema.312] moment: file has rows [2, 5) "
          "of 10 (sharded), state expects rows [3, 6) of 10 (sharded))");
    CHECK(test::state_bytes(other) == before);

    // The same tensors, undeclared: replicated.
    undeclared u;
    const std::string text = test::error_text([&] { ckpt::load_from_memory(file, u); });
    CHECK(text.starts_with("[ckpt.schema.312] embedding: file has rows [2, 5) of 10 (sharded), "
                           "state expects a replicated tensor (and 2 more:"));
    CHECK(text.find("[ckpt.schema.312] data.seen: file has a rank-local tensor, state expects a "
                    "replicated tensor") != std::string::npos);
    CHECK(test::error_id([&] {
              ckpt::load_from_memory(ckpt::save_to_memory(undeclared{}), other);
          }) == ckpt::errc::schema_placement);
}

/// A sharded declaration around anything: its rows [offset, offset + rows) of `global`.
template <class T>
struct one_shard {
    T value;
    std::uint64_t offset = 0;
    std::uint64_t global = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("x", value, {offset, global}));
    }
};

struct two_tensors {
    Eigen::VectorXf a = Eigen::VectorXf::Zero(2);
    Eigen::VectorXf b = Eigen::VectorXf::Zero(2);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(a), CEREAL_NVP(b));
    }
};

struct nested_placement {
    one_shard<Eigen::VectorXf> inner{Eigen::VectorXf::Zero(2), 0, 2};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::rank_local("outer", inner));
    }
};

TEST_CASE("placement: a declaration the file could not describe is a usage error on save") {
    const auto vec = [](std::uint64_t offset, std::uint64_t global) {
        return one_shard<Eigen::VectorXf>{Eigen::VectorXf::Zero(3), offset, global};
    };
    // Rows [offset, offset + 3) of 10: 7 fits exactly, 8 is one over; 6 is one short.
    (void)ckpt::save_to_memory(vec(6, 10));
    (void)ckpt::save_to_memory(vec(7, 10));
    CHECK(test::error_text([&] { (void)ckpt::save_to_memory(vec(8, 10)); }) ==
          "[ckpt.usage.601] ckpt::sharded 'x': rows [8, 8 + 3) are outside the global tensor's 10 "
          "rows");
    CHECK(test::error_id([&] { (void)ckpt::save_to_memory(vec(11, 10)); }) ==
          ckpt::errc::usage_argument);
    CHECK(test::error_id([&] { (void)ckpt::save_to_memory(vec(UINT64_MAX, 10)); }) ==
          ckpt::errc::usage_argument);
    (void)ckpt::save_to_memory(one_shard<Eigen::VectorXf>{Eigen::VectorXf(), 10, 10}); // 0 rows

    CHECK(test::error_text([&] {
              (void)ckpt::save_to_memory(
                  one_shard<Eigen::MatrixXf>{Eigen::MatrixXf::Zero(2, 2), 0, 4});
          }) == "[ckpt.usage.601] ckpt::sharded 'x': wraps a column-major tensor, whose rows are "
                "not contiguous; make it row-major");
    CHECK(test::error_text([&] {
              (void)ckpt::save_to_memory(one_shard<two_tensors>{{}, 0, 4});
          }) == "[ckpt.usage.601] ckpt::sharded 'x': wraps 2 tensors; it must wrap exactly one "
                "(its rows are the shard)");
    CHECK(test::error_text([&] {
              (void)ckpt::save_to_memory(one_shard<std::int64_t>{5, 0, 4});
          }) == "[ckpt.usage.601] ckpt::sharded 'x': wraps 0 tensors; it must wrap exactly one "
                "(its rows are the shard)");
    CHECK(test::error_text([&] { (void)ckpt::save_to_memory(nested_placement{}); }) ==
          "[ckpt.usage.601] ckpt::sharded 'outer.x' is inside ckpt::rank_local 'outer': a tensor "
          "has one placement");
    // A std::vector is a tensor of one axis: it shards.
    const one_shard<std::vector<double>> v{{1.0, 2.0}, 4, 6};
    one_shard<std::vector<double>> back{{}, 4, 6};
    ckpt::load_from_memory(ckpt::save_to_memory(v), back);
    CHECK(back.value == v.value);
}

TEST_CASE("placement: a crafted file whose placement does not hold is refused as corrupt") {
    const std::vector<std::byte> good = ckpt::save_to_memory(filled(2));
    const auto refused = [&](const std::string& from, const std::string& to) {
        rank_state s = filled(2);
        const auto before = test::state_bytes(s);
        const std::string text =
            test::error_text([&] { ckpt::load_from_memory(edited(good, from, to), s); });
        CHECK(test::state_bytes(s) == before);
        return text;
    };
    CHECK(refused("2/10,2/10", "8/10,2/10") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards puts the 3 rows of 'embedding' at 8, "
          "outside the global tensor's 10 rows");
    CHECK(refused("2/10,2/10", "2/10,8/10") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards puts the 3 rows of 'moment' at 8, outside "
          "the global tensor's 10 rows");
    // Rows [7, 10) of 10 fit exactly: the file is valid (and names another shard).
    const auto dir = test::scratch("placement-crafted");
    test::write_file(dir / "exact.ckpt", edited(good, "2/10,2/10", "2/10,7/10"));
    CHECK(named(ckpt::inspect(dir / "exact.ckpt"), "moment").place.row_offset == 7);
    CHECK(refused("2/10,2/10", "02/1,2/10") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards item '02/1' of 'embedding' is not "
          "offset/global_rows");
    CHECK(refused("2/10,2/10", "2/10;2/10") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards item '2/10;2/10' of 'embedding' is not "
          "offset/global_rows");
    CHECK(refused("\"SS-L-\"", "\"SS-LS\"") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.placement places the values entry");
    CHECK(refused("\"SS-L-\"", "\"SSXL-\"") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.placement holds 'X'");
    CHECK(refused("\"SS-L-\"", "\"S--L-\"") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards has more items than sharded entries");
    CHECK(refused("\"SS-L-\"", "\"SSSL-\"") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.placement shards 'weight', which is column-major");
    CHECK(refused("ckpt.placement", "ckpt.placemenX") ==
          "[ckpt.corrupt.206] '<memory>': ckpt.shards without ckpt.placement");
}

/// Declarations around fields that cereal's own archives can write.
struct cereal_friendly {
    std::vector<double> moment;
    std::int64_t cursor = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("moment", moment, {.offset = 4, .global_rows = 6}),
           ckpt::rank_local("cursor", cursor));
    }
};

TEST_CASE("placement: other cereal archives see the field itself") {
    const cereal_friendly saved{{1.0, 2.0}, 9};
    std::stringstream bytes;
    {
        cereal::BinaryOutputArchive ar(bytes);
        ar(saved);
    }
    CHECK(bytes.str().size() == 8 + 2 * sizeof(double) + 8); // size, elements, cursor
    cereal_friendly loaded;
    {
        cereal::BinaryInputArchive ar(bytes);
        ar(loaded);
    }
    CHECK(loaded.moment == saved.moment);
    CHECK(loaded.cursor == 9);
}

} // namespace placement_test
