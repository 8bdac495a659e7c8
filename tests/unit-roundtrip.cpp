// Round trips: every dtype, shape kind and storage order comes back bit for bit, and so do
// random engines, distributions, containers and metadata.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/memory.hpp>

#include <bit>
#include <cmath>
#include <deque>
#include <forward_list>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>

namespace {

using Eigen::Dynamic;
using Eigen::RowMajor;

template <class S>
struct all_shapes {
    Eigen::Matrix<S, Dynamic, Dynamic> dyn_col;
    Eigen::Matrix<S, Dynamic, Dynamic, RowMajor> dyn_row;
    Eigen::Matrix<S, 3, 2> fix_col;
    Eigen::Matrix<S, 3, 2, RowMajor> fix_row;
    Eigen::Matrix<S, Dynamic, 1> vec;
    Eigen::Matrix<S, 4, 1> fix_vec;
    Eigen::Matrix<S, 1, Dynamic> row_vec;
    Eigen::Array<S, Dynamic, Dynamic> arr;
    Eigen::Matrix<S, Dynamic, Dynamic> empty;
    Eigen::Matrix<S, 3, Dynamic> half_fixed;
    S scalar{};
    std::vector<S> list;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(dyn_col), CEREAL_NVP(dyn_row), CEREAL_NVP(fix_col), CEREAL_NVP(fix_row),
           CEREAL_NVP(vec), CEREAL_NVP(fix_vec), CEREAL_NVP(row_vec), CEREAL_NVP(arr),
           CEREAL_NVP(empty), CEREAL_NVP(half_fixed), CEREAL_NVP(scalar), CEREAL_NVP(list));
    }
};

/// Random bit patterns (bools are 0 or 1): every bit of every value is exercised.
template <class S>
S random_value(std::mt19937_64& rng) {
    if constexpr (std::is_same_v<S, bool>) {
        return (rng() & 1U) != 0;
    } else {
        const std::uint64_t bits = rng();
        S v;
        std::memcpy(&v, &bits, sizeof v);
        return v;
    }
}

template <class Derived>
void fill(Eigen::PlainObjectBase<Derived>& m, std::mt19937_64& rng) {
    for (Eigen::Index i = 0; i < m.size(); ++i) {
        m.data()[i] = random_value<typename Derived::Scalar>(rng);
    }
}

template <class S>
all_shapes<S> make_shapes(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    all_shapes<S> s;
    s.dyn_col.resize(5, 7);
    s.dyn_row.resize(5, 7);
    s.vec.resize(9);
    s.row_vec.resize(6);
    s.arr.resize(2, 3);
    s.half_fixed.resize(3, 4);
    fill(s.dyn_col, rng);
    fill(s.dyn_row, rng);
    fill(s.fix_col, rng);
    fill(s.fix_row, rng);
    fill(s.vec, rng);
    fill(s.fix_vec, rng);
    fill(s.row_vec, rng);
    fill(s.arr, rng);
    fill(s.half_fixed, rng);
    s.scalar = random_value<S>(rng);
    for (int i = 0; i < 11; ++i) s.list.push_back(random_value<S>(rng));
    return s;
}

template <class S>
void check_equal(const all_shapes<S>& a, const all_shapes<S>& b) {
    CHECK(test::bits_equal(a.dyn_col, b.dyn_col));
    CHECK(test::bits_equal(a.dyn_row, b.dyn_row));
    CHECK(test::bits_equal(a.fix_col, b.fix_col));
    CHECK(test::bits_equal(a.fix_row, b.fix_row));
    CHECK(test::bits_equal(a.vec, b.vec));
    CHECK(test::bits_equal(a.fix_vec, b.fix_vec));
    CHECK(test::bits_equal(a.row_vec, b.row_vec));
    CHECK(test::bits_equal(a.arr, b.arr));
    CHECK(test::bits_equal(a.empty, b.empty));
    CHECK(test::bits_equal(a.half_fixed, b.half_fixed));
    CHECK(std::memcmp(&a.scalar, &b.scalar, sizeof(S)) == 0);
    REQUIRE(a.list.size() == b.list.size());
    if constexpr (std::is_same_v<S, bool>) {
        CHECK(a.list == b.list);
    } else {
        CHECK(std::memcmp(a.list.data(), b.list.data(), a.list.size() * sizeof(S)) == 0);
    }
}

struct specials {
    Eigen::VectorXd d;
    Eigen::VectorXf f;
    double sd = 0;
    float sf = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(d), CEREAL_NVP(f), CEREAL_NVP(sd), CEREAL_NVP(sf));
    }
};

struct sampler {
    std::mt19937_64 rng{7};
    std::normal_distribution<double> normal{0.5, 2.0};
    std::normal_distribution<float> normal_f{-1.0F, 0.25F};
    std::uniform_real_distribution<double> uniform{-3.0, 3.0};
    std::uniform_int_distribution<int> dice{1, 6};
    std::bernoulli_distribution coin{0.3};
    std::gamma_distribution<double> gamma{2.5, 1.5};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(rng), CEREAL_NVP(normal), CEREAL_NVP(normal_f), CEREAL_NVP(uniform),
           CEREAL_NVP(dice), CEREAL_NVP(coin), CEREAL_NVP(gamma));
    }
    std::vector<double> draw(int n) {
        std::vector<double> out;
        for (int i = 0; i < n; ++i) {
            out.push_back(normal(rng));
            out.push_back(normal_f(rng));
            out.push_back(uniform(rng));
            out.push_back(dice(rng));
            out.push_back(coin(rng) ? 1.0 : 0.0);
            out.push_back(gamma(rng));
        }
        return out;
    }
};
} // namespace

TEST_CASE_TEMPLATE("every dtype and shape kind round-trips bit for bit", S, double, float,
                   std::int64_t, std::int32_t, std::int16_t, std::int8_t, std::uint64_t,
                   std::uint32_t, std::uint16_t, std::uint8_t, bool) {
    const auto dir = test::scratch("roundtrip");
    const all_shapes<S> saved = make_shapes<S>(42);
    ckpt::save(dir / "s.ckpt", saved);

    SUBCASE("into a default-constructed state: empty dynamic tensors take the file's shape") {
        all_shapes<S> loaded;
        ckpt::load(dir / "s.ckpt", loaded);
        check_equal(saved, loaded);
    }
    SUBCASE("into a state of the same shape with other values") {
        all_shapes<S> loaded = make_shapes<S>(7);
        ckpt::load(dir / "s.ckpt", loaded);
        check_equal(saved, loaded);
    }
    SUBCASE("the file shows the row-major view of the bytes, and the storage order") {
        const ckpt::info info = ckpt::inspect(dir / "s.ckpt");
        std::map<std::string, ckpt::tensor_info> by_name;
        for (const auto& t : info.tensors) by_name[t.name] = t;
        // A std::vector of numbers is a tensor too; std::vector<bool> is not contiguous and
        // stays a value.
        const auto dt = ckpt::dtype_of<S>;
        if constexpr (std::is_same_v<S, bool>) {
            REQUIRE(by_name.size() == 10);
        } else {
            REQUIRE(by_name.size() == 11);
            CHECK(by_name["list"] == ckpt::tensor_info{"list",
                                                       dt,
                                                       {saved.list.size()},
                                                       by_name["list"].offset,
                                                       saved.list.size() * sizeof(S),
                                                       '-'});
        }
        CHECK(by_name["dyn_col"] ==
              ckpt::tensor_info{
                  "dyn_col", dt, {7, 5}, by_name["dyn_col"].offset, 35 * sizeof(S), 'C'});
        CHECK(by_name["dyn_row"].shape == std::vector<std::uint64_t>{5, 7});
        CHECK(by_name["dyn_row"].order == 'R');
        CHECK(by_name["fix_col"].shape == std::vector<std::uint64_t>{2, 3});
        CHECK(by_name["fix_row"].shape == std::vector<std::uint64_t>{3, 2});
        CHECK(by_name["vec"].shape == std::vector<std::uint64_t>{9});
        CHECK(by_name["vec"].order == '-');
        CHECK(by_name["fix_vec"].shape == std::vector<std::uint64_t>{4});
        CHECK(by_name["row_vec"].shape == std::vector<std::uint64_t>{6});
        CHECK(by_name["arr"].shape == std::vector<std::uint64_t>{3, 2});
        CHECK(by_name["empty"].shape == std::vector<std::uint64_t>{0, 0});
        CHECK(by_name["empty"].bytes == 0);
        CHECK(by_name["half_fixed"].shape == std::vector<std::uint64_t>{4, 3});
        for (const auto& t : info.tensors) {
            CHECK(t.type == dt);
            CHECK(t.offset % sizeof(S) == 0); // each tensor aligned to its element size
        }
    }
}

TEST_CASE("special floating-point values keep their exact bits") {
    const auto dir = test::scratch("special");
    const std::vector<std::uint64_t> dbits = {
        0x7FF0000000000123ULL, // signalling NaN with a payload
        0xFFF8000000000456ULL, // negative quiet NaN with a payload
        0x8000000000000000ULL, // -0.0
        0x0000000000000001ULL, // smallest denormal
        0x000FFFFFFFFFFFFFULL, // largest denormal
        0x7FF0000000000000ULL, // +inf
        0xFFF0000000000000ULL, // -inf
    };
    const std::vector<std::uint32_t> fbits = {0x7F800123U, 0xFFC00456U, 0x80000000U, 0x00000001U,
                                              0x007FFFFFU, 0x7F800000U, 0xFF800000U};
    specials s;
    s.d.resize(static_cast<Eigen::Index>(dbits.size()));
    s.f.resize(static_cast<Eigen::Index>(fbits.size()));
    for (std::size_t i = 0; i < dbits.size(); ++i)
        s.d[static_cast<Eigen::Index>(i)] = std::bit_cast<double>(dbits[i]);
    for (std::size_t i = 0; i < fbits.size(); ++i)
        s.f[static_cast<Eigen::Index>(i)] = std::bit_cast<float>(fbits[i]);
    s.sd = std::bit_cast<double>(dbits[0]);
    s.sf = std::bit_cast<float>(fbits[1]);
    ckpt::save(dir / "s.ckpt", s);
    specials t;
    ckpt::load(dir / "s.ckpt", t);
    for (std::size_t i = 0; i < dbits.size(); ++i) {
        CHECK(std::bit_cast<std::uint64_t>(t.d[static_cast<Eigen::Index>(i)]) == dbits[i]);
    }
    for (std::size_t i = 0; i < fbits.size(); ++i) {
        CHECK(std::bit_cast<std::uint32_t>(t.f[static_cast<Eigen::Index>(i)]) == fbits[i]);
    }
    CHECK(std::bit_cast<std::uint64_t>(t.sd) == dbits[0]);
    CHECK(std::bit_cast<std::uint32_t>(t.sf) == fbits[1]);
}

TEST_CASE_TEMPLATE("random engines continue their sequences exactly", Engine, std::mt19937,
                   std::mt19937_64, std::minstd_rand, std::minstd_rand0, std::ranlux48,
                   std::ranlux24, std::knuth_b) {
    const auto dir = test::scratch("engines");
    Engine e(12345);
    e.discard(1001);
    ckpt::save(dir / "e.ckpt", e);
    Engine loaded(999); // another seed: the load must replace the whole state
    ckpt::load(dir / "e.ckpt", loaded);
    for (int i = 0; i < 2000; ++i) {
        REQUIRE(loaded() == e());
    }
}

namespace {
/// Engines inside objects that loading makes anew: a map's items, an optional, a pointee; and
/// a tensor, so a load can take either path (a copy when the names differ, in place when not).
struct held_engines {
    std::map<int, std::mt19937_64> by_rank;
    std::optional<std::mt19937> maybe;
    std::unique_ptr<std::minstd_rand> owned;
    Eigen::VectorXf w = Eigen::VectorXf::Ones(2);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(by_rank), CEREAL_NVP(maybe), CEREAL_NVP(owned), CEREAL_NVP(w));
    }
};
held_engines advanced_engines() {
    held_engines h;
    h.by_rank[0].seed(42);
    h.by_rank[3].seed(43);
    h.by_rank[3].discard(7);
    h.maybe.emplace(7);
    h.maybe->discard(3);
    h.owned = std::make_unique<std::minstd_rand>(11);
    h.owned->discard(5);
    return h;
}
bool same_engines(const held_engines& a, const held_engines& b) {
    return a.by_rank == b.by_rank && a.maybe == b.maybe && a.owned && b.owned &&
           *a.owned == *b.owned;
}
} // namespace

// The tensor pass skips parsing an engine's text that the values pass just decoded into the same
// object; an engine in a map, an optional or a pointer is a new object in every pass, and came
// back default-constructed.
TEST_CASE("random engines in maps, optionals and pointers are restored, by load and import") {
    const held_engines saved = advanced_engines();
    const std::vector<std::byte> file = ckpt::save_to_memory(saved);
    held_engines fresh; // other names (no by_rank items): decoded into a copy
    ckpt::load_from_memory(file, fresh);
    CHECK(same_engines(fresh, saved));
    held_engines same = advanced_engines(); // the same names: decoded in place
    same.by_rank[3].discard(1);
    same.maybe->seed(1);
    same.w.setZero();
    ckpt::load_from_memory(file, same);
    CHECK(same_engines(same, saved));
    held_engines imported = advanced_engines(); // import keeps the state's own engines
    (void)ckpt::import_safetensors_from_memory(file, imported);
    CHECK(same_engines(imported, advanced_engines()));
}

TEST_CASE("distributions keep their cached state, so the draws continue exactly") {
    const auto dir = test::scratch("distributions");
    sampler a;
    a.draw(1);
    a.normal(a.rng); // an odd number of normal draws: the second variate is cached now
    ckpt::save(dir / "d.ckpt", a);
    sampler b;
    b.rng.seed(1);
    b.normal = std::normal_distribution<double>(9.0, 9.0);
    ckpt::load(dir / "d.ckpt", b);
    CHECK(b.normal.mean() == 0.5);
    CHECK(b.normal.stddev() == 2.0);
    const auto expect = a.draw(500);
    const auto got = b.draw(500);
    REQUIRE(expect.size() == got.size());
    for (std::size_t i = 0; i < expect.size(); ++i) {
        REQUIRE(std::bit_cast<std::uint64_t>(expect[i]) == std::bit_cast<std::uint64_t>(got[i]));
    }
}

namespace {
struct layer {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
    bool operator==(const layer& o) const {
        return test::bits_equal(weight, o.weight) && test::bits_equal(bias, o.bias);
    }
};
struct model {
    std::vector<layer> layers;
    std::map<std::string, Eigen::MatrixXd> named;
    std::optional<std::string> note;
    std::pair<int, double> pair{0, 0.0};
    std::string blob;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(layers), CEREAL_NVP(named), CEREAL_NVP(note), CEREAL_NVP(pair),
           CEREAL_NVP(blob));
    }
};
struct unnamed_fields {
    Eigen::Vector2d a{1, 2};
    Eigen::Vector3f b{3, 4, 5};
    int c = 6;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(a, b, c); // no names: positions stand in
    }
};
} // namespace

TEST_CASE("containers, nested structs and strings round-trip, tensors named by field path") {
    const auto dir = test::scratch("nested");
    model m;
    m.layers.resize(2);
    m.layers[0].weight = Eigen::MatrixXf::Random(4, 3);
    m.layers[0].bias = Eigen::VectorXf::Random(4);
    m.layers[1].weight = Eigen::MatrixXf::Random(2, 4);
    m.layers[1].bias = Eigen::VectorXf::Random(2);
    m.named["alpha"] = Eigen::MatrixXd::Random(2, 2);
    m.named["beta"] = Eigen::MatrixXd::Random(1, 5);
    m.note = "resumed";
    m.pair = {-3, 0.125};
    m.blob = std::string("with\0nul and \xff bytes", 21);
    ckpt::save(dir / "m.ckpt", m);

    std::vector<std::string> names;
    for (const auto& t : ckpt::inspect(dir / "m.ckpt").tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"layers.0.bias", "layers.0.weight", "layers.1.bias",
                                            "layers.1.weight", "named.0.value", "named.1.value"});

    model fresh; // empty containers: the file's structure is rebuilt
    ckpt::load(dir / "m.ckpt", fresh);
    CHECK(fresh.layers == m.layers);
    REQUIRE(fresh.named.size() == 2);
    CHECK(test::bits_equal(fresh.named["alpha"], m.named["alpha"]));
    CHECK(test::bits_equal(fresh.named["beta"], m.named["beta"]));
    CHECK(fresh.note == m.note);
    CHECK(fresh.pair == m.pair);
    CHECK(fresh.blob == m.blob);

    unnamed_fields u;
    ckpt::save(dir / "u.ckpt", u);
    names.clear();
    for (const auto& t : ckpt::inspect(dir / "u.ckpt").tensors) names.push_back(t.name);
    CHECK(names == std::vector<std::string>{"0", "1"}); // F64 first, then F32
    unnamed_fields v;
    v.a.setZero();
    v.b.setZero();
    v.c = 0;
    ckpt::load(dir / "u.ckpt", v);
    CHECK(v.a == u.a);
    CHECK(v.b == u.b);
    CHECK(v.c == 6);
}

namespace {
struct seq_layer {
    Eigen::MatrixXf w;
    Eigen::Matrix<float, 2, 2> fixed;
    std::int32_t id = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(fixed), CEREAL_NVP(id));
    }
    friend bool operator==(const seq_layer& a, const seq_layer& b) {
        return a.w == b.w && a.fixed == b.fixed && a.id == b.id;
    }
};

template <class Container>
struct seq_state {
    Container layers;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(layers));
    }
};

template <class Container>
Container seq_layers(std::int32_t n) {
    Container out;
    for (std::int32_t i = n - 1; i >= 0; --i) {
        seq_layer l;
        l.w = Eigen::MatrixXf::Constant(2, 3, static_cast<float>(i));
        l.fixed.setConstant(static_cast<float>(-i));
        l.id = i;
        out.push_front(l);
    }
    return out;
}
} // namespace

// ckpt loads the standard sequences itself (one element at a time; see archive/input.hpp):
// into an empty container, a shorter one and a longer one, with the same result as cereal's.
TEST_CASE_TEMPLATE("sequences of structs with tensors load into empty, shorter and longer ones",
                   Container, std::deque<seq_layer>, std::list<seq_layer>,
                   std::forward_list<seq_layer>) {
    seq_state<Container> saved{seq_layers<Container>(5)};
    const auto file = ckpt::save_to_memory(saved);
    for (const std::int32_t had : {0, 2, 5, 7}) {
        CAPTURE(had);
        seq_state<Container> s{seq_layers<Container>(had)};
        for (seq_layer& l : s.layers) l.w.setZero(); // same shapes, other values
        const seq_layer* first = had > 0 ? &s.layers.front() : nullptr;
        ckpt::load_from_memory(file, s);
        CHECK(s.layers == saved.layers);
        if constexpr (!std::is_same_v<Container, std::deque<seq_layer>>) {
            // Node containers: the state's own first element was loaded in place. (A state
            // whose tensor names differ from the file's is decoded into a copy, then moved.)
            if (had == 5) CHECK(&s.layers.front() == first);
        }
    }
}

TEST_CASE("a vector of structs with tensors loads into empty, shorter and longer ones") {
    seq_state<std::vector<seq_layer>> saved;
    for (std::int32_t i = 0; i < 5; ++i) {
        saved.layers.push_back({Eigen::MatrixXf::Constant(2, 3, static_cast<float>(i)),
                                Eigen::Matrix2f::Constant(static_cast<float>(-i)), i});
    }
    const auto file = ckpt::save_to_memory(saved);
    for (const std::size_t had : {0, 2, 5, 7}) {
        CAPTURE(had);
        seq_state<std::vector<seq_layer>> s;
        s.layers.resize(had);
        for (seq_layer& l : s.layers) l.w = Eigen::MatrixXf::Zero(2, 3);
        const float* storage = had == 5 ? s.layers[0].w.data() : nullptr;
        ckpt::load_from_memory(file, s);
        CHECK(s.layers == saved.layers);
        if (had == 5) CHECK(s.layers[0].w.data() == storage); // loaded in place
    }
    std::vector<bool> bits{true, false, true, true};
    const auto bits_file = ckpt::save_to_memory(bits);
    std::vector<bool> loaded{false};
    ckpt::load_from_memory(bits_file, loaded);
    CHECK(loaded == bits);
}

TEST_CASE("a bare tensor or scalar is a state too") {
    const auto dir = test::scratch("bare");
    const Eigen::MatrixXd m = Eigen::MatrixXd::Random(3, 3);
    ckpt::save(dir / "m.ckpt", m);
    CHECK(ckpt::inspect(dir / "m.ckpt").tensors.at(0).name == "value");
    Eigen::MatrixXd n;
    ckpt::load(dir / "m.ckpt", n);
    CHECK(test::bits_equal(m, n));
    ckpt::save(dir / "i.ckpt", 17);
    int i = 0;
    ckpt::load(dir / "i.ckpt", i);
    CHECK(i == 17);
}

TEST_CASE("metadata round-trips exactly") {
    const auto dir = test::scratch("metadata");
    ckpt::metadata meta;
    meta.step = -9'000'000'000'000'000'000LL;
    meta.epoch = 123;
    meta.metrics["loss"] = 0.1;
    meta.metrics["tiny"] = 4.9e-324;
    meta.metrics["neg_zero"] = -0.0;
    meta.metrics["inf"] = std::numeric_limits<double>::infinity();
    meta.metrics["third"] = 1.0 / 3.0;
    meta.tags["run"] = "baseline";
    meta.tags["unicode"] = "\xce\xbb=0.9 \xe2\x9c\x93";
    meta.tags[""] = "empty key";
    meta.time =
        std::chrono::system_clock::time_point(std::chrono::nanoseconds(1764470096123456789LL));
    const int state = 1;
    ckpt::save(dir / "m.ckpt", state, meta);
    int loaded = 0;
    const ckpt::metadata got = ckpt::load(dir / "m.ckpt", loaded);
    CHECK(got == meta);
    CHECK(std::signbit(got.metrics.at("neg_zero")));
    CHECK(ckpt::inspect(dir / "m.ckpt").raw_metadata.at("ckpt.time") ==
          "2025-11-30T02:34:56.123456789Z");

    SUBCASE("NaN metrics are kept as NaN") {
        ckpt::metadata n;
        n.metrics["bad"] = std::numeric_limits<double>::quiet_NaN();
        ckpt::save(dir / "n.ckpt", state, n);
        CHECK(std::isnan(ckpt::load(dir / "n.ckpt", loaded).metrics.at("bad")));
    }
    SUBCASE("save fills in the wall clock when the time is left empty") {
        const auto before = std::chrono::system_clock::now();
        ckpt::save(dir / "t.ckpt", state);
        const auto after = std::chrono::system_clock::now();
        const auto t = ckpt::load(dir / "t.ckpt", loaded).time;
        CHECK(t >= before);
        CHECK(t <= after);
    }
}

TEST_CASE("save_to_memory writes the same bytes as save") {
    const auto dir = test::scratch("memory");
    const auto s = make_shapes<float>(3);
    ckpt::metadata meta;
    meta.time = std::chrono::system_clock::time_point(std::chrono::seconds(100));
    ckpt::save(dir / "s.ckpt", s, meta);
    const auto bytes = ckpt::save_to_memory(s, meta);
    CHECK(bytes == test::read_file(dir / "s.ckpt"));
    all_shapes<float> t;
    ckpt::load_from_memory(bytes, t);
    check_equal(s, t);
}

TEST_CASE("save replaces an existing checkpoint and leaves no temporary file") {
    const auto dir = test::scratch("replace");
    ckpt::save(dir / "c.ckpt", 1);
    ckpt::save(dir / "c.ckpt", 2);
    int v = 0;
    ckpt::load(dir / "c.ckpt", v);
    CHECK(v == 2);
    int files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
    CHECK(files == 1);
}
