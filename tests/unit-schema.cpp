// Schema: a checkpoint that does not fit the state is a clear error naming every field and both
// sides, and the state is left exactly as it was (strong guarantee), whatever the failure.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/variant.hpp>

#include <algorithm>
#include <deque>
#include <forward_list>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <variant>

namespace {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct schema_layer {
    row_matrix weight; // [out, in], as torch.nn.Linear
    Eigen::VectorXf bias;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
};
struct net {
    std::vector<schema_layer> layers;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(layers));
    }
};
struct run_state {
    net model;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(step));
    }
};

run_state make_run(std::vector<int> sizes, float fill) {
    run_state s;
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
        schema_layer l;
        l.weight = row_matrix::Constant(sizes[i + 1], sizes[i], fill);
        l.bias = Eigen::VectorXf::Constant(sizes[i + 1], fill);
        s.model.layers.push_back(l);
    }
    s.step = static_cast<std::int64_t>(fill);
    return s;
}

} // namespace

TEST_CASE("a changed layer size names the field and both shapes, and changes nothing") {
    const auto dir = test::scratch("schema-resize");
    ckpt::save(dir / "c.ckpt", make_run({16, 32, 64}, 1.0F));
    run_state state = make_run({16, 16, 64}, 2.0F); // layer 1 now has 16 inputs, not 32
    const auto before = test::state_bytes(state);
    try {
        ckpt::load(dir / "c.ckpt", state);
        FAIL("load accepted a changed architecture");
    } catch (const ckpt::schema_error& e) {
        CHECK(std::string(e.what()) ==
              "[ckpt.schema.302] model.layers.0.weight: file has float 32x16 (row-major), state "
              "expects float 16x16 (and 2 more:\n"
              "  [ckpt.schema.302] model.layers.0.bias: file has float[32], state expects "
              "float[16]\n"
              "  [ckpt.schema.302] model.layers.1.weight: file has float 64x32 (row-major), state "
              "expects float 64x16)");
        CHECK(e.id() == ckpt::errc::schema_mismatch);
        REQUIRE(e.problems().size() == 3);
        CHECK(e.problems()[2].path == "model.layers.1.weight");
        CHECK(e.problems()[2].text ==
              "file has float 64x32 (row-major), state expects float 64x16");
    }
    CHECK(test::state_bytes(state) == before);
}

TEST_CASE("a container's length is data: it comes from the checkpoint, its tensors must fit") {
    const auto dir = test::scratch("schema-containers");
    const run_state three = make_run({4, 8, 8, 2}, 1.0F);
    ckpt::save(dir / "three.ckpt", three);
    ckpt::save(dir / "one.ckpt", make_run({4, 8}, 1.0F));

    run_state grows = make_run({4, 8}, 3.0F); // one layer whose shapes match the file's first
    ckpt::load(dir / "three.ckpt", grows);
    CHECK(test::state_bytes(grows) == test::state_bytes(three));

    run_state shrinks = make_run({4, 8, 8, 2}, 3.0F);
    ckpt::load(dir / "one.ckpt", shrinks);
    CHECK(shrinks.model.layers.size() == 1);

    run_state clash = make_run({4, 16}, 3.0F); // its first layer does not fit the file's
    const auto before = test::state_bytes(clash);
    CHECK(test::error_id([&] { ckpt::load(dir / "three.ckpt", clash); }) ==
          ckpt::errc::schema_mismatch);
    CHECK(test::state_bytes(clash) == before);
}

namespace {
struct abc {
    Eigen::VectorXf a = Eigen::VectorXf::Constant(2, 1.0F);
    Eigen::VectorXf b = Eigen::VectorXf::Constant(2, 1.0F);
    Eigen::VectorXf c = Eigen::VectorXf::Constant(2, 1.0F);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(a), CEREAL_NVP(b), CEREAL_NVP(c));
    }
};
struct bcde {
    Eigen::VectorXf b = Eigen::VectorXf::Constant(2, 5.0F);
    Eigen::VectorXf c = Eigen::VectorXf::Constant(2, 5.0F);
    Eigen::VectorXf d = Eigen::VectorXf::Constant(2, 5.0F);
    Eigen::MatrixXd e = Eigen::MatrixXd::Constant(2, 2, 5.0);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(b), CEREAL_NVP(c), CEREAL_NVP(d), CEREAL_NVP(e));
    }
};
struct no_copy : bcde {
    no_copy() = default;
    no_copy(const no_copy&) = delete;
    no_copy& operator=(const no_copy&) = delete;
    template <class Archive>
    void serialize(Archive& ar) {
        bcde::serialize(ar);
    }
};
} // namespace

TEST_CASE_TEMPLATE("every missing and unexpected tensor is listed, copyable or not", State, bcde,
                   no_copy) {
    const auto dir = test::scratch("schema-listed");
    ckpt::save(dir / "c.ckpt", abc{});
    State state;
    const auto before = test::state_bytes(state);
    try {
        ckpt::load(dir / "c.ckpt", state);
        FAIL("load accepted other fields");
    } catch (const ckpt::schema_error& e) {
        CHECK(e.id() == ckpt::errc::schema_missing);
        REQUIRE(e.problems().size() == 3);
        CHECK(e.problems()[0].id == ckpt::errc::schema_missing);
        CHECK(e.problems()[0].path == "d");
        CHECK(e.problems()[0].text == "state expects float[2], the checkpoint has no such tensor");
        CHECK(e.problems()[1].id == ckpt::errc::schema_missing);
        CHECK(e.problems()[1].path == "e");
        CHECK(e.problems()[1].text ==
              "state expects double 2x2, the checkpoint has no such tensor");
        CHECK(e.problems()[2].id == ckpt::errc::schema_unexpected);
        CHECK(e.problems()[2].path == "a");
        CHECK(e.problems()[2].text == "file has F32 [2], the state has no such tensor");
    }
    CHECK(test::state_bytes(state) == before);
}

// A load keeps at most as many problems as the file and the state have tensors
// (detail::problem_cap): check_tensors keeps the first `cap` and counts every one.
TEST_CASE("check_tensors keeps the first cap problems and counts all: one short, exact, over") {
    std::vector<ckpt::detail::tensor_record> records(13);
    for (std::size_t i = 0; i < records.size(); ++i) {
        records[i].name = "t" + std::to_string(i);
        records[i].type = ckpt::dtype::f32;
        records[i].rank = 1;
        records[i].dims[0] = 2;
    }
    const std::vector<ckpt::detail::file_tensor> entries; // a file without tensors
    ckpt::detail::tensor_source src;
    src.entries = &entries;
    for (const std::size_t cap : {12, 13, 14}) {
        CAPTURE(cap);
        const ckpt::detail::schema_report r = ckpt::detail::check_tensors(records, src, cap);
        CHECK(r.problems.size() == std::min<std::size_t>(cap, 13));
        CHECK(r.total == 13);
        CHECK(r.problems.back().path == "t" + std::to_string(r.problems.size() - 1));
        CHECK(r.problems.back().text ==
              "state expects float[2], the checkpoint has no such tensor");
    }
}

namespace {
template <class W>
struct holder {
    W w{};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w));
    }
};
} // namespace

TEST_CASE("dtype, rank and bounds mismatches are errors; nothing is silently converted") {
    const auto dir = test::scratch("schema-types");
    holder<Eigen::VectorXd> d;
    d.w = Eigen::VectorXd::Constant(3, 1.0);
    ckpt::save(dir / "d.ckpt", d);

    holder<Eigen::VectorXf> f;
    f.w = Eigen::VectorXf::Constant(3, 2.0F);
    CHECK(test::error_text([&] { ckpt::load(dir / "d.ckpt", f); }) ==
          "[ckpt.schema.302] w: file has double[3], state expects float[3]");
    CHECK(f.w == Eigen::VectorXf::Constant(3, 2.0F));

    holder<Eigen::MatrixXd> m;
    CHECK(test::error_text([&] { ckpt::load(dir / "d.ckpt", m); }) ==
          "[ckpt.schema.302] w: file has F64 [3], state expects double ?x?");

    holder<Eigen::Matrix<double, Eigen::Dynamic, 1, 0, 2, 1>> bounded; // at most 2 rows
    CHECK(test::error_id([&] { ckpt::load(dir / "d.ckpt", bounded); }) ==
          ckpt::errc::schema_mismatch);

    holder<Eigen::Vector4d> fixed;
    CHECK(test::error_text([&] { ckpt::load(dir / "d.ckpt", fixed); }) ==
          "[ckpt.schema.302] w: file has double[3], state expects double[4]");

    holder<Eigen::VectorXd> shaped; // a non-empty dynamic tensor keeps its shape: no silent resize
    shaped.w = Eigen::VectorXd::Zero(5);
    CHECK(test::error_id([&] { ckpt::load(dir / "d.ckpt", shaped); }) ==
          ckpt::errc::schema_mismatch);
    CHECK(shaped.w.size() == 5);

    holder<Eigen::VectorXd> empty; // an empty one takes the file's shape
    ckpt::load(dir / "d.ckpt", empty);
    CHECK(empty.w == d.w);
}

TEST_CASE("storage order: dynamic tensors are converted, fixed-size ones must match") {
    const auto dir = test::scratch("schema-order");
    holder<Eigen::MatrixXf> col;
    col.w.resize(3, 4);
    for (int i = 0; i < 12; ++i) col.w.data()[i] = static_cast<float>(i);
    ckpt::save(dir / "col.ckpt", col);

    holder<row_matrix> row;
    ckpt::load(dir / "col.ckpt", row);
    CHECK(row.w.rows() == 3);
    CHECK(row.w.cols() == 4);
    CHECK(row.w == col.w); // same values, element by element

    holder<row_matrix> row_shaped;
    row_shaped.w = row_matrix::Zero(3, 4);
    ckpt::load(dir / "col.ckpt", row_shaped);
    CHECK(row_shaped.w == col.w);

    // Both directions, every element size (the copy is by size), non-square shapes.
    const auto both_ways = [&]<class S>(S, int rows, int cols) {
        using col_t = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
        using row_t = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        CAPTURE(sizeof(S));
        CAPTURE(rows);
        holder<row_t> from_row;
        from_row.w.resize(rows, cols);
        for (Eigen::Index i = 0; i < from_row.w.size(); ++i) {
            from_row.w.data()[i] = static_cast<S>(i * 7 + 1);
        }
        ckpt::save(dir / "row.ckpt", from_row);
        holder<col_t> to_col;
        ckpt::load(dir / "row.ckpt", to_col);
        CHECK(to_col.w == from_row.w);
        holder<row_t> back;
        ckpt::save(dir / "col2.ckpt", to_col);
        ckpt::load(dir / "col2.ckpt", back);
        CHECK(back.w == from_row.w);
    };
    for (const auto& [rows, cols] : {std::pair{2, 5}, std::pair{5, 2}, std::pair{1, 3}}) {
        both_ways(std::uint8_t{}, rows, cols);
        both_ways(std::int16_t{}, rows, cols);
        both_ways(float{}, rows, cols);
        both_ways(double{}, rows, cols);
    }

    holder<Eigen::Matrix<float, 2, 2, Eigen::RowMajor>> fixed_row;
    fixed_row.w << 1, 2, 3, 4;
    ckpt::save(dir / "fixed.ckpt", fixed_row);
    holder<Eigen::Matrix2f> fixed_col;
    fixed_col.w.setZero();
    CHECK(test::error_text([&] { ckpt::load(dir / "fixed.ckpt", fixed_col); }) ==
          "[ckpt.schema.304] w: file has float 2x2 (row-major), state expects float 2x2 "
          "(column-major): a fixed-size tensor must keep its storage order");
    CHECK(fixed_col.w == Eigen::Matrix2f::Zero());
}

namespace {
struct values_a {
    Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 1.0F);
    std::vector<int> list{1, 2, 3, 4, 5};
    std::int32_t n = 7;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(list), CEREAL_NVP(n));
    }
};
struct values_b { // n is a double now
    Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 9.0F);
    std::vector<int> list{9, 9};
    double n = 9.0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(list), CEREAL_NVP(n));
    }
};
struct values_c { // one more field than the file
    Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 9.0F);
    std::vector<int> list{9, 9};
    std::int32_t n = 9;
    std::int32_t extra = 9;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(list), CEREAL_NVP(n), CEREAL_NVP(extra));
    }
};
struct values_d { // one field fewer than the file
    Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 9.0F);
    std::vector<int> list{9, 9};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(list));
    }
};
struct throws_midway { // a user's load that fails after reading part of the values
    Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 9.0F);
    std::vector<int> list{9, 9};
    std::int32_t n = 9;
    template <class Archive>
    void save(Archive& ar) const {
        ar(CEREAL_NVP(w), CEREAL_NVP(list), CEREAL_NVP(n));
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(list), CEREAL_NVP(n));
        if (n == 7) throw std::invalid_argument("n = 7 is not allowed");
    }
};
} // namespace

TEST_CASE("non-tensor fields: type and count mismatches name the field; the state is restored") {
    const auto dir = test::scratch("schema-values");
    ckpt::save(dir / "a.ckpt", values_a{});

    values_b b;
    const auto before_b = test::state_bytes(b);
    CHECK(test::error_text([&] { ckpt::load(dir / "a.ckpt", b); }) ==
          "[ckpt.schema.305] n: file has I32, state expects F64");
    CHECK(test::state_bytes(b) == before_b); // list was resized to 5, then put back

    values_c c;
    const auto before_c = test::state_bytes(c);
    CHECK(test::error_id([&] { ckpt::load(dir / "a.ckpt", c); }) == ckpt::errc::schema_value_count);
    CHECK(test::error_text([&] { ckpt::load(dir / "a.ckpt", c); })
              .starts_with("[ckpt.schema.306] extra: the state reads I32 here, but the "
                           "checkpoint's values end"));
    CHECK(test::state_bytes(c) == before_c);

    values_d d;
    const auto before_d = test::state_bytes(d);
    CHECK(test::error_text([&] { ckpt::load(dir / "a.ckpt", d); }) ==
          "[ckpt.schema.306] value: 5 bytes of values were not read: the checkpoint holds more "
          "non-tensor fields than the state");
    CHECK(test::state_bytes(d) == before_d);

    throws_midway t;
    const auto before_t = test::state_bytes(t);
    CHECK_THROWS_WITH_AS(ckpt::load(dir / "a.ckpt", t), "n = 7 is not allowed",
                         std::invalid_argument);
    CHECK(test::state_bytes(t) == before_t);
}

namespace {
struct duplicate_names {
    Eigen::VectorXf a = Eigen::VectorXf::Ones(1);
    Eigen::VectorXf b = Eigen::VectorXf::Ones(1);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("x", a), cereal::make_nvp("x", b));
    }
};
struct reserved_name {
    Eigen::VectorXf a = Eigen::VectorXf::Ones(1);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("__metadata__", a));
    }
};
} // namespace

TEST_CASE("save refuses duplicate and reserved tensor names, and writes nothing") {
    const auto dir = test::scratch("schema-save");
    CHECK(test::error_text([&] { ckpt::save(dir / "d.ckpt", duplicate_names{}); }) ==
          "[ckpt.schema.307] x: two tensors of the state have this path; name them apart");
    CHECK(test::error_text([&] { ckpt::save(dir / "r.ckpt", reserved_name{}); }) ==
          "[ckpt.schema.308] __metadata__: names starting with '__' are reserved by safetensors "
          "and ckpt");
    CHECK(std::filesystem::is_empty(dir));
}

namespace {
// Tensors inside containers whose cereal load makes new elements (std::map and every map built on
// cereal's MapItem clear and re-insert; optional emplaces; unique_ptr, shared_ptr and variant
// construct a new object): a failure after the values pass must still give back their data.
template <bool Copyable>
struct rebuilt {
    std::map<std::string, Eigen::VectorXf> by_key;
    std::optional<Eigen::VectorXf> maybe;
    // A unique_ptr makes the state move-only; the copyable one holds a second shared_ptr.
    using owner = std::conditional_t<Copyable, std::shared_ptr<Eigen::VectorXf>,
                                     std::unique_ptr<Eigen::VectorXf>>;
    owner owned;
    std::shared_ptr<Eigen::MatrixXf> shared;
    std::variant<Eigen::VectorXf, Eigen::MatrixXd> either;
    std::int32_t n = 0;

    template <class Archive>
    void save(Archive& ar) const {
        ar(CEREAL_NVP(by_key), CEREAL_NVP(maybe), CEREAL_NVP(owned), CEREAL_NVP(shared),
           CEREAL_NVP(either), CEREAL_NVP(n));
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(CEREAL_NVP(by_key), CEREAL_NVP(maybe), CEREAL_NVP(owned), CEREAL_NVP(shared),
           CEREAL_NVP(either), CEREAL_NVP(n));
        if (n == 7) throw std::invalid_argument("n = 7 is not allowed");
    }
};

template <bool Copyable>
rebuilt<Copyable> make_rebuilt(float fill, const char* second_key, std::int32_t n) {
    rebuilt<Copyable> s;
    s.by_key["a"] = Eigen::VectorXf::Constant(3, fill);
    s.by_key[second_key] = Eigen::VectorXf::Constant(2, fill + 1);
    s.maybe = Eigen::VectorXf::Constant(4, fill + 2);
    s.owned = typename rebuilt<Copyable>::owner(
        new Eigen::VectorXf(Eigen::VectorXf::Constant(2, fill + 3)));
    s.shared = std::make_shared<Eigen::MatrixXf>(Eigen::MatrixXf::Constant(2, 2, fill + 4));
    s.either = Eigen::VectorXf::Constant(1, fill + 5).eval();
    s.n = n;
    return s;
}
} // namespace

TEST_CASE_TEMPLATE("tensors in maps, optionals, pointers and variants survive a failed load", Flag,
                   std::true_type, std::false_type) {
    constexpr bool copyable = Flag::value;
    static_assert(std::is_copy_constructible_v<rebuilt<copyable>> == copyable);
    const auto dir = test::scratch("schema-rebuilt");
    const auto file = make_rebuilt<copyable>(10.0F, "c", 7); // its load fails at the end
    ckpt::save(dir / "seven.ckpt", file);

    for (const char* key : {"b", "c"}) { // other keys than the file's, then the same ones
        INFO("the state's second key is ", std::string(key));
        auto s = make_rebuilt<copyable>(1.0F, key, 1);
        const auto before = test::state_bytes(s);
        CHECK_THROWS_WITH_AS(ckpt::load(dir / "seven.ckpt", s), "n = 7 is not allowed",
                             std::invalid_argument);
        CHECK(test::state_bytes(s) == before);
        REQUIRE(s.by_key.size() == 2);
        CHECK(s.by_key.count(key) == 1);
        CHECK(test::bits_equal(s.by_key.at("a"), Eigen::VectorXf::Constant(3, 1.0F).eval()));
        CHECK(test::bits_equal(s.by_key.at(key), Eigen::VectorXf::Constant(2, 2.0F).eval()));
        REQUIRE(s.maybe.has_value());
        CHECK(test::bits_equal(*s.maybe, Eigen::VectorXf::Constant(4, 3.0F).eval()));
        REQUIRE(s.owned != nullptr);
        CHECK(test::bits_equal(*s.owned, Eigen::VectorXf::Constant(2, 4.0F).eval()));
        REQUIRE(s.shared != nullptr);
        CHECK(test::bits_equal(*s.shared, Eigen::MatrixXf::Constant(2, 2, 5.0F).eval()));
        REQUIRE(s.either.index() == 0);
        CHECK(test::bits_equal(std::get<0>(s.either), Eigen::VectorXf::Constant(1, 6.0F).eval()));
        CHECK(s.n == 1);
    }

    // And a load that succeeds still gives the file's contents.
    auto ok = make_rebuilt<copyable>(1.0F, "b", 1);
    const auto good = make_rebuilt<copyable>(20.0F, "c", 3);
    ckpt::save(dir / "three.ckpt", good);
    ckpt::load(dir / "three.ckpt", ok);
    CHECK(test::state_bytes(ok) == test::state_bytes(good));
}

TEST_CASE("the backup of an in-place load copies only the tensors that loading replaces") {
    const auto names_of = [](const auto& state) {
        ckpt::detail::tensor_oarchive ar;
        ar(state);
        std::vector<std::string> rebuilt_names;
        for (const auto& r : ar.tensors()) {
            if (r.rebuilt) rebuilt_names.push_back(r.name);
        }
        const ckpt::detail::state_backup backup(ar.values(), ar.tensors());
        REQUIRE(backup.entries.size() == rebuilt_names.size());
        std::uint64_t bytes = 0;
        for (std::size_t i = 0; i < backup.entries.size(); ++i) {
            CHECK(backup.entries[i].name == rebuilt_names[i]);
            CHECK(backup.entries[i].begin == bytes);
            bytes = backup.entries[i].end;
        }
        CHECK(backup.bytes.size() == bytes);
        CHECK(backup.tensors.by_name.size() == rebuilt_names.size());
        return std::make_pair(rebuilt_names, bytes);
    };
    // Plain members and std::vector elements are loaded into: nothing to copy.
    CHECK(names_of(make_run({3, 4, 2}, 1.0F)).first.empty());
    const auto [names, bytes] = names_of(make_rebuilt<true>(1.0F, "b", 1));
    CHECK(names == std::vector<std::string>{"by_key.0.value", "by_key.1.value", "maybe.data",
                                            "owned.ptr_wrapper.data", "shared.ptr_wrapper.data",
                                            "either.data"});
    CHECK(bytes == (3 + 2 + 4 + 2 + 4 + 1) * sizeof(float));
}

namespace {
template <class Seq>
struct tail_state {
    Seq seq;
    std::int32_t marker = 0x5A5A5A5A;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(seq), CEREAL_NVP(marker));
    }
};
} // namespace

TEST_CASE_TEMPLATE("a file whose values hold fewer elements than its header lists tensors for is "
                   "refused, and the state keeps its elements",
                   Seq, std::vector<Eigen::VectorXf>, std::deque<Eigen::VectorXf>,
                   std::list<Eigen::VectorXf>, std::forward_list<Eigen::VectorXf>) {
    tail_state<Seq> file_state;
    file_state.seq = {Eigen::VectorXf::Constant(2, 7.0F), Eigen::VectorXf::Constant(3, 8.0F)};
    std::vector<std::byte> file = test::state_bytes(file_state);

    // The values say one element (a size tag, then the count, then the marker's I32), the
    // header still lists seq.0 and seq.1; the checksum is made to match.
    std::vector<std::byte> pattern(1 + 8 + 1 + 4);
    pattern[0] = static_cast<std::byte>(ckpt::detail::tag_size);
    const std::uint64_t two = 2;
    std::memcpy(pattern.data() + 1, &two, 8);
    pattern[9] = static_cast<std::byte>(ckpt::dtype_of<std::int32_t>);
    std::memcpy(pattern.data() + 10, &file_state.marker, 4);
    const auto at = std::search(file.begin(), file.end(), pattern.begin(), pattern.end());
    REQUIRE(at != file.end());
    REQUIRE(std::search(at + 1, file.end(), pattern.begin(), pattern.end()) == file.end());
    *(at + 1) = std::byte{1};
    test::fix_checksum(file);

    tail_state<Seq> s;
    s.seq = {Eigen::VectorXf::Constant(2, 1.0F), Eigen::VectorXf::Constant(3, 2.0F)};
    const auto before = test::state_bytes(s);
    CHECK(test::error_text([&] { ckpt::load_from_memory(file, s); }) ==
          "[ckpt.corrupt.208] the checkpoint's values describe 1 tensors, its header 2: a "
          "container is shorter in the values than in the tensors");
    CHECK(test::state_bytes(s) == before);
    CHECK(std::distance(s.seq.begin(), s.seq.end()) == 2);
    CHECK(test::bits_equal(*std::next(s.seq.begin()), Eigen::VectorXf::Constant(3, 2.0F).eval()));
}

TEST_CASE("a mismatch is said as the C++ types hold the tensors, with safetensors' shape after") {
    const auto dir = test::scratch("schema-user-terms");
    holder<Eigen::MatrixXf> written;
    written.w = Eigen::MatrixXf::Zero(3, 5);
    ckpt::save(dir / "m.ckpt", written);
    holder<Eigen::MatrixXf> other;
    other.w = Eigen::MatrixXf::Zero(3, 6);
    CHECK(test::error_text([&] { ckpt::load(dir / "m.ckpt", other); }) ==
          "[ckpt.schema.302] w: file has float 3x5 (column-major, stored as F32 [5, 3]), state "
          "expects float 3x6");
    holder<Eigen::Matrix<float, 3, Eigen::Dynamic>> three_rows;
    three_rows.w.resize(3, 2);
    CHECK(test::error_text([&] { ckpt::load(dir / "m.ckpt", three_rows); }) ==
          "[ckpt.schema.302] w: file has float 3x5 (column-major, stored as F32 [5, 3]), state "
          "expects float 3x2");

    using ckpt::detail::describe_state;
    const auto record = [](const auto& m) { return ckpt::detail::describe_tensor(m); };
    // An empty dynamic tensor takes the file's shape: its dynamic sizes are '?', with their bound.
    CHECK(describe_state(record(Eigen::MatrixXd()), false) == "double ?x?");
    CHECK(describe_state(record(Eigen::Matrix<float, 3, Eigen::Dynamic>()), false) == "float 3x?");
    CHECK(describe_state(record(Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 6>()),
                         false) == "float ?x? (at most 4x6)");
    CHECK(describe_state(record(Eigen::Matrix<float, 3, Eigen::Dynamic, 0, 3, 6>()), false) ==
          "float 3x? (at most 3x6)");
    CHECK(describe_state(record(Eigen::VectorXf()), false) == "float[]");
    CHECK(describe_state(record(Eigen::Matrix<int, Eigen::Dynamic, 1, 0, 8, 1>()), false) ==
          "int32[] (at most 8)");
    CHECK(describe_state(
              record(Eigen::Matrix<Eigen::half, 1, Eigen::Dynamic, Eigen::RowMajor, 1, 5>()),
              false) == "half[] (at most 5)");
    CHECK(describe_state(record(Eigen::Vector4d()), false) == "double[4]");
    CHECK(describe_state(record(Eigen::Matrix2f()), true) == "float 2x2 (column-major)");
    CHECK(describe_state(record(Eigen::Matrix<std::uint8_t, 2, 3, Eigen::RowMajor>()), true) ==
          "uint8 2x3 (row-major)");
    CHECK(ckpt::detail::cpp_name(ckpt::dtype::bf16) == "bfloat16");
    CHECK(ckpt::detail::cpp_name(ckpt::dtype::f8_e4m3) == "F8_E4M3"); // no C++ type
    // The file's side in the state's terms, or as safetensors has it when the ranks differ.
    const ckpt::detail::file_tensor rank3{"t", ckpt::dtype::f32, {2, 3, 4}, 0, 96, '-'};
    CHECK(ckpt::detail::describe_file(rank3, record(Eigen::MatrixXf())) == "F32 [2, 3, 4]");
    const ckpt::detail::file_tensor row{"t", ckpt::dtype::i64, {2, 3}, 0, 48, 'R'};
    CHECK(ckpt::detail::describe_file(row, record(Eigen::MatrixXf())) == "int64 2x3 (row-major)");
    CHECK(ckpt::detail::describe_file(row, record(Eigen::VectorXf())) == "I64 [2, 3]");
}

namespace {

/// How many times a walk listed the tensors of a `counted` state (tensor_oarchive's walks:
/// the save, the lists a load checks the file against).
int listings = 0;

struct counted {
    Eigen::MatrixXf w = Eigen::MatrixXf::Constant(3, 2, 1.0F);
    std::optional<Eigen::Matrix2f> extra; ///< made anew by a load, when it holds a value
    template <class Archive>
    void serialize(Archive& ar) {
        if constexpr (std::is_same_v<Archive, ckpt::detail::tensor_oarchive>) ++listings;
        ar(CEREAL_NVP(w), CEREAL_NVP(extra));
    }
};

/// Which tensor the state holds depends on a value: "a" when `flag`, else "b".
struct branchy {
    bool flag = false;
    Eigen::MatrixXf m = Eigen::MatrixXf::Constant(2, 2, 7.0F);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(flag));
        if (flag) {
            ar(cereal::make_nvp("a", m));
        } else {
            ar(cereal::make_nvp("b", m));
        }
    }
};
/// Writes what branchy reads, with the flag and the tensor's name apart.
struct branchy_writer {
    bool flag = true;
    Eigen::MatrixXf m = Eigen::MatrixXf::Constant(2, 2, 1.0F);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(flag), cereal::make_nvp("b", m));
    }
};

/// The tensor's rows are a value, which its load shapes the tensor by (6 elements) before
/// reading it.
struct sized_by_value {
    Eigen::Index rows = 2;
    Eigen::MatrixXf m = Eigen::MatrixXf::Constant(2, 3, 7.0F);
    template <class Archive>
    void save(Archive& ar) const {
        ar(CEREAL_NVP(rows), CEREAL_NVP(m));
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(CEREAL_NVP(rows));
        m.resize(rows, 6 / rows);
        ar(CEREAL_NVP(m));
    }
};
struct sized_writer {
    Eigen::Index rows = 3; // while m has 2
    Eigen::MatrixXf m = Eigen::MatrixXf::Constant(2, 3, 1.0F);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(rows), CEREAL_NVP(m));
    }
};

} // namespace

TEST_CASE("the tensors are listed again only when the values may have changed them") {
    // A load checks the file's tensors against the state's list before it decodes anything.
    // When the values pass then meets exactly the tensors of that list, the list stands; a
    // state whose load makes objects anew (an optional's value) is listed again.
    const std::vector<std::byte> plain = ckpt::save_to_memory(counted{});
    counted with_extra;
    with_extra.extra = Eigen::Matrix2f::Constant(2.0F);
    const std::vector<std::byte> extra = ckpt::save_to_memory(with_extra);

    counted s;
    listings = 0;
    ckpt::load_from_memory(plain, s);
    CHECK(listings == 1); // the list checked before decoding
    s.extra = Eigen::Matrix2f::Zero();
    listings = 0;
    ckpt::load_from_memory(extra, s);
    CHECK(listings == 2); // and once more, the optional's value being new
    CHECK(*s.extra == *with_extra.extra);
}

TEST_CASE("a value that changes which tensors the state holds is checked against the file") {
    // The file's values say flag = true, which makes branchy hold tensor "a", while its tensors
    // hold "b": what the state held before loading ("b") matches the file, what the values make
    // of it does not. The load is refused whole, and the state is left as it was.
    const std::vector<std::byte> file = ckpt::save_to_memory(branchy_writer{});
    branchy s;
    const int id = test::error_id([&] { ckpt::load_from_memory(file, s); });
    CHECK(id == ckpt::errc::schema_missing);
    CHECK(!s.flag);
    CHECK(s.m == Eigen::MatrixXf::Constant(2, 2, 7.0F));
}

TEST_CASE("a value that changes a tensor's shape is checked against the file") {
    // rows = 3 in the values; the file's tensor is 2 x 3. The state's list before loading
    // (2 x 3) matches the file; the tensor the values pass meets (3 x 2, as many bytes) does not.
    const std::vector<std::byte> file = ckpt::save_to_memory(sized_writer{});
    sized_by_value s;
    const int id = test::error_id([&] { ckpt::load_from_memory(file, s); });
    CHECK(id == ckpt::errc::schema_mismatch);
    CHECK(s.rows == 2);
    const std::vector<std::byte> good = ckpt::save_to_memory(sized_by_value{});
    ckpt::load_from_memory(good, s);
    CHECK(s.m == Eigen::MatrixXf::Constant(2, 3, 7.0F));
}
