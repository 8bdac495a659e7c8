// Every tensor a C++ model holds: standard containers of numbers, views of the user's memory and
// Eigen::Tensor (<ckpt/types/eigen_tensor.hpp>, which single_include/ has too).

#include "test_util.hpp"

#include <doctest/doctest.h>

#include <ckpt/types/eigen_tensor.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace {

template <class S>
S kinds_random(std::mt19937_64& rng) {
    if constexpr (std::is_same_v<S, bool>) {
        return (rng() & 1U) != 0;
    } else {
        const std::uint64_t bits = rng();
        S v;
        std::memcpy(static_cast<void*>(&v), &bits, sizeof v);
        return v;
    }
}

template <class S>
struct containers_of {
    std::vector<S> vec;
    std::array<S, 5> arr{};
    S raw[3] = {};
    S grid[2][3] = {};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(vec), CEREAL_NVP(arr), CEREAL_NVP(raw), CEREAL_NVP(grid));
    }
};

template <class S>
containers_of<S> make_containers(std::uint64_t seed, std::size_t n) {
    std::mt19937_64 rng(seed);
    containers_of<S> c;
    for (std::size_t i = 0; i < n; ++i) c.vec.push_back(kinds_random<S>(rng));
    for (S& v : c.arr) v = kinds_random<S>(rng);
    for (S& v : c.raw) v = kinds_random<S>(rng);
    for (auto& row : c.grid) {
        for (S& v : row) v = kinds_random<S>(rng);
    }
    return c;
}

template <class S>
bool same_bits(const containers_of<S>& a, const containers_of<S>& b) {
    return a.vec.size() == b.vec.size() &&
           (a.vec.empty() ||
            std::memcmp(a.vec.data(), b.vec.data(), a.vec.size() * sizeof(S)) == 0) &&
           std::memcmp(a.arr.data(), b.arr.data(), sizeof a.arr) == 0 &&
           std::memcmp(a.raw, b.raw, sizeof a.raw) == 0 &&
           std::memcmp(a.grid, b.grid, sizeof a.grid) == 0;
}

} // namespace

TEST_CASE_TEMPLATE("standard containers of numbers are tensors and round-trip bit for bit", S,
                   double, float, Eigen::half, Eigen::bfloat16, std::int64_t, std::int32_t,
                   std::int16_t, std::int8_t, std::uint64_t, std::uint32_t, std::uint16_t,
                   std::uint8_t) {
    const containers_of<S> saved = make_containers<S>(11, 9);
    const auto file = ckpt::save_to_memory(saved);
    const auto dir = test::scratch("kinds");
    ckpt::save(dir / "c.ckpt", saved);
    const ckpt::info info = ckpt::inspect(dir / "c.ckpt");
    REQUIRE(info.tensors.size() == 4);
    std::map<std::string, ckpt::tensor_info> by_name;
    for (const auto& t : info.tensors) by_name[t.name] = t;
    const auto dt = ckpt::dtype_of<S>;
    CHECK(by_name["vec"] ==
          ckpt::tensor_info{"vec", dt, {9}, by_name["vec"].offset, 9 * sizeof(S), '-'});
    CHECK(by_name["arr"] ==
          ckpt::tensor_info{"arr", dt, {5}, by_name["arr"].offset, 5 * sizeof(S), '-'});
    CHECK(by_name["raw"] ==
          ckpt::tensor_info{"raw", dt, {3}, by_name["raw"].offset, 3 * sizeof(S), '-'});
    CHECK(by_name["grid"] ==
          ckpt::tensor_info{"grid", dt, {2, 3}, by_name["grid"].offset, 6 * sizeof(S), 'R'});
    CHECK(info.value_bytes == 0); // nothing of them is left in the values

    SUBCASE("into an empty vector: it takes the file's length") {
        containers_of<S> loaded;
        ckpt::load_from_memory(file, loaded);
        CHECK(same_bits(saved, loaded));
    }
    SUBCASE("into a longer and a shorter vector: the file's length wins") {
        for (const std::size_t n : {std::size_t{8}, std::size_t{9}, std::size_t{10}}) {
            CAPTURE(n);
            containers_of<S> loaded = make_containers<S>(99, n);
            ckpt::load_from_memory(file, loaded);
            CHECK(same_bits(saved, loaded));
        }
    }
}

TEST_CASE("std::vector<bool> stays a value; std::array<bool> and bool[N] are BOOL tensors") {
    const containers_of<bool> saved = make_containers<bool>(5, 7);
    const auto file = ckpt::save_to_memory(saved);
    containers_of<bool> loaded;
    ckpt::load_from_memory(file, loaded);
    CHECK(loaded.vec == saved.vec);
    CHECK(loaded.arr == saved.arr);
    CHECK(std::memcmp(loaded.raw, saved.raw, sizeof saved.raw) == 0);
    CHECK(std::memcmp(loaded.grid, saved.grid, sizeof saved.grid) == 0);
    const auto dir = test::scratch("kinds-bool");
    ckpt::save(dir / "b.ckpt", saved);
    std::vector<std::string> names;
    for (const auto& t : ckpt::inspect(dir / "b.ckpt").tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"arr", "grid", "raw"});
}

namespace {
struct vec_f {
    std::vector<float> v;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct arr_f {
    std::array<float, 4> v{};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct arr_d {
    std::array<double, 5> v{};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct grid_23 {
    std::int16_t v[2][3] = {};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct grid_32 {
    std::int16_t v[3][2] = {};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};
struct mat_v {
    Eigen::MatrixXf v = Eigen::MatrixXf::Ones(2, 2);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};

template <class Saved, class Target>
std::string kinds_mismatch(const Saved& saved, Target target) {
    const auto file = ckpt::save_to_memory(saved);
    const auto before = test::state_bytes(target);
    std::string t = test::error_text([&] { ckpt::load_from_memory(file, target); });
    CHECK(test::state_bytes(target) == before); // the strong guarantee
    return t;
}
} // namespace

TEST_CASE("container mismatches are reported in the C++ terms of both sides") {
    CHECK(kinds_mismatch(arr_d{}, arr_f{}) ==
          "[ckpt.schema.302] v: file has double[5], state expects float[4]");
    CHECK(kinds_mismatch(arr_f{}, arr_d{}) ==
          "[ckpt.schema.302] v: file has float[4], state expects double[5]");
    CHECK(kinds_mismatch(vec_f{{1, 2, 3}}, arr_f{}) ==
          "[ckpt.schema.302] v: file has float[3], state expects float[4]");
    CHECK(kinds_mismatch(vec_f{{1, 2, 3, 4, 5}}, arr_f{}) ==
          "[ckpt.schema.302] v: file has float[5], state expects float[4]");
    CHECK(kinds_mismatch(grid_23{}, grid_32{}) ==
          "[ckpt.schema.302] v: file has int16 2x3 (row-major), state expects int16 3x2");
    CHECK(kinds_mismatch(mat_v{}, vec_f{}) ==
          "[ckpt.schema.302] v: file has F32 [2, 2], state expects float[]");
    // A vector takes any length: only the rank or the dtype can differ.
    vec_f longer{{1, 2, 3, 4, 5, 6}};
    ckpt::load_from_memory(ckpt::save_to_memory(arr_f{{9, 8, 7, 6}}), longer);
    CHECK(longer.v == std::vector<float>{9, 8, 7, 6});
}

namespace {
/// A flat arena with views into it, as a parameter buffer is checkpointed without a copy.
struct arena_state {
    std::vector<float> arena = std::vector<float>(2 * 3 + 3 * 2 + 4);
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::tensor("emb", arena.data(), {2, std::size_t{3}}),
           ckpt::tensor("proj", arena.data() + 6, {3, 2}, ckpt::storage_order::column_major),
           ckpt::tensor("bias", std::span<float>(arena).subspan(12), {4}), CEREAL_NVP(step));
    }
};

/// Refuses to allocate while `refusing` is set: a failure inside the tensor pass.
inline bool refusing = false;
template <class T>
struct refusing_alloc {
    using value_type = T;
    refusing_alloc() = default;
    template <class U>
    refusing_alloc(const refusing_alloc<U>&) noexcept {} // NOLINT
    T* allocate(std::size_t n) {
        if (refusing) throw std::bad_alloc();
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
    friend bool operator==(const refusing_alloc&, const refusing_alloc&) = default;
};

template <int N>
struct view_then_vector {
    float* mem = nullptr;
    std::vector<float, refusing_alloc<float>> tail;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::tensor("head", mem, {N}), CEREAL_NVP(tail));
    }
};
} // namespace

TEST_CASE("a view of the user's memory: saved as it is, loaded in place with no allocation") {
    arena_state saved;
    for (std::size_t i = 0; i < saved.arena.size(); ++i) saved.arena[i] = static_cast<float>(i);
    saved.step = 7;
    const auto dir = test::scratch("kinds-view");
    ckpt::save(dir / "v.ckpt", saved);
    const ckpt::info info = ckpt::inspect(dir / "v.ckpt");
    std::map<std::string, ckpt::tensor_info> by_name;
    for (const auto& t : info.tensors) by_name[t.name] = t;
    REQUIRE(by_name.size() == 3);
    CHECK(by_name["emb"].shape == std::vector<std::uint64_t>{2, 3});
    CHECK(by_name["emb"].order == 'R');
    CHECK(by_name["proj"].shape == std::vector<std::uint64_t>{2, 3}); // 3x2, column-major
    CHECK(by_name["proj"].order == 'C');
    CHECK(by_name["bias"].shape == std::vector<std::uint64_t>{4});
    CHECK(by_name["bias"].order == '-');

    arena_state loaded;
    const float* where = loaded.arena.data();
    ckpt::load(dir / "v.ckpt", loaded);
    CHECK(loaded.arena.data() == where);
    CHECK(loaded.arena == saved.arena);
    CHECK(loaded.step == 7);
}

TEST_CASE("a view's shape must match; a load that fails leaves its memory untouched") {
    std::vector<float> src{1, 2, 3, 4};
    view_then_vector<4> good{src.data(), {5.0F, 6.0F}};
    const auto file = ckpt::save_to_memory(good);

    SUBCASE("another shape: both sides, in C++ terms") {
        std::vector<float> mem(5, -1.0F);
        view_then_vector<5> wrong{mem.data(), {}};
        CHECK(test::error_text([&] { ckpt::load_from_memory(file, wrong); }) ==
              "[ckpt.schema.302] head: file has float[4], state expects float[5]");
        CHECK(mem == std::vector<float>(5, -1.0F));
    }
    SUBCASE("a failure inside the tensor pass, after the view was met") {
        // The vector after the view allocates for the file's length, and that fails: the view
        // is written only once everything else has loaded, so it keeps its values.
        std::vector<float> mem(4, -1.0F);
        view_then_vector<4> target{mem.data(), {}};
        refusing = true;
        CHECK_THROWS_AS(ckpt::load_from_memory(file, target), std::bad_alloc);
        refusing = false;
        CHECK(mem == std::vector<float>(4, -1.0F));
        ckpt::load_from_memory(file, target);
        CHECK(mem == src);
        CHECK(target.tail.size() == 2);
    }
}

TEST_CASE("ckpt::tensor refuses a view it cannot describe") {
    float x = 0;
    CHECK(test::error_text([] {
              (void)ckpt::tensor("w", static_cast<float*>(nullptr), {2, 3});
          }) == "[ckpt.usage.601] ckpt::tensor 'w': a null pointer for 6 elements");
    (void)ckpt::tensor("w", static_cast<float*>(nullptr), {0, 3}); // nothing to point at
    CHECK(test::error_text([&] {
              (void)ckpt::tensor("w", &x, {2, -1});
          }) == "[ckpt.usage.601] ckpt::tensor_shape: a size of -1 elements");
    std::vector<float> five(5);
    CHECK(test::error_text([&] {
              (void)ckpt::tensor("w", std::span<float>(five), {2, 3});
          }) == "[ckpt.usage.601] ckpt::tensor 'w': the span holds 5 elements, the shape 6");
    CHECK(ckpt::tensor("w", std::span<float>(five), {5}).shape().rank() == 1);
    const std::vector<std::int64_t> nine(9, 1);
    const std::vector<std::int64_t> eight(8, 1);
    CHECK(ckpt::tensor_shape(std::span<const std::int64_t>(eight)).rank() == 8);
    CHECK(test::error_text([&] {
              (void)ckpt::tensor_shape(std::span<const std::int64_t>(nine));
          }) == "[ckpt.usage.601] ckpt::tensor_shape: 9 axes; a tensor has at most 8");
    CHECK(ckpt::tensor("s", &x, {}).shape().rank() == 0);
}

namespace {
template <int N, int L>
struct tensor_holder {
    Eigen::Tensor<float, N, L> t;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t));
    }
};

template <int N, int L>
Eigen::Tensor<float, N, L> numbered(int first) {
    std::array<Eigen::Index, static_cast<std::size_t>(N)> dims{};
    for (int i = 0; i < N; ++i) dims[static_cast<std::size_t>(i)] = 2 + (i % 2);
    Eigen::Tensor<float, N, L> t;
    if constexpr (N > 0) t.resize(dims);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(first + i);
    return t;
}

/// Every element of `a` and `b` at the same index (their layouts may differ).
template <class A, class B>
bool same_elements(const A& a, const B& b) {
    constexpr int n = A::NumIndices;
    if constexpr (n == 0) {
        return a() == b();
    } else {
        if (a.size() != b.size()) return false;
        for (int i = 0; i < n; ++i) {
            if (a.dimension(i) != b.dimension(i)) return false;
        }
        std::array<Eigen::Index, static_cast<std::size_t>(n)> at{};
        for (Eigen::Index k = 0; k < a.size(); ++k) {
            if (a(at) != b(at)) return false;
            for (int i = n - 1; i >= 0; --i) {
                auto& x = at[static_cast<std::size_t>(i)];
                if (++x < a.dimension(i)) break;
                x = 0;
            }
        }
        return true;
    }
}

template <int N>
void check_rank() {
    CAPTURE(N);
    const tensor_holder<N, Eigen::ColMajor> col{numbered<N, Eigen::ColMajor>(1)};
    const tensor_holder<N, Eigen::RowMajor> row{numbered<N, Eigen::RowMajor>(1)};
    const auto col_file = ckpt::save_to_memory(col);
    const auto row_file = ckpt::save_to_memory(row);
    // The same layout: bit for bit; the other layout: the same element at every index.
    tensor_holder<N, Eigen::ColMajor> c;
    ckpt::load_from_memory(col_file, c);
    CHECK(std::memcmp(c.t.data(), col.t.data(),
                      sizeof(float) * static_cast<std::size_t>(col.t.size())) == 0);
    tensor_holder<N, Eigen::RowMajor> r;
    ckpt::load_from_memory(row_file, r);
    CHECK(std::memcmp(r.t.data(), row.t.data(),
                      sizeof(float) * static_cast<std::size_t>(row.t.size())) == 0);
    tensor_holder<N, Eigen::RowMajor> r_from_c;
    ckpt::load_from_memory(col_file, r_from_c);
    CHECK(same_elements(r_from_c.t, col.t));
    tensor_holder<N, Eigen::ColMajor> c_from_r;
    ckpt::load_from_memory(row_file, c_from_r);
    CHECK(same_elements(c_from_r.t, row.t));
}
} // namespace

TEST_CASE("Eigen::Tensor of every rank 0 to 8, both layouts, round-trips and transposes") {
    check_rank<0>();
    check_rank<1>();
    check_rank<2>();
    check_rank<3>();
    check_rank<4>();
    check_rank<5>();
    check_rank<6>();
    check_rank<7>();
    check_rank<8>();
}

namespace {
struct conv {
    Eigen::Tensor<float, 4> kernel; // column-major: out, in, h, w
    Eigen::TensorFixedSize<double, Eigen::Sizes<2, 3, 4>, Eigen::RowMajor> fixed;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(kernel), CEREAL_NVP(fixed));
    }
};
} // namespace

TEST_CASE("Eigen::Tensor: the file's shape is the row-major view; mismatches name both sides") {
    conv saved;
    saved.kernel.resize(8, 3, 5, 5);
    saved.kernel.setRandom();
    saved.fixed.setRandom();
    const auto dir = test::scratch("kinds-tensor");
    ckpt::save(dir / "k.ckpt", saved);
    std::map<std::string, ckpt::tensor_info> by_name;
    for (const auto& t : ckpt::inspect(dir / "k.ckpt").tensors) by_name[t.name] = t;
    CHECK(by_name["kernel"].shape == std::vector<std::uint64_t>{5, 5, 3, 8});
    CHECK(by_name["kernel"].order == 'C');
    CHECK(by_name["fixed"].shape == std::vector<std::uint64_t>{2, 3, 4});
    CHECK(by_name["fixed"].order == 'R');

    conv loaded;
    ckpt::load(dir / "k.ckpt", loaded);
    CHECK(same_elements(loaded.kernel, saved.kernel));
    CHECK(std::memcmp(loaded.fixed.data(), saved.fixed.data(), sizeof(double) * 24) == 0);

    conv other;
    other.kernel.resize(8, 3, 3, 3); // holds elements: it must match
    const auto before = test::state_bytes(other);
    CHECK(test::error_text([&] { ckpt::load(dir / "k.ckpt", other); }) ==
          "[ckpt.schema.302] kernel: file has float 8x3x5x5 (column-major, stored as F32 [5, 5, "
          "3, 8]), state expects float 8x3x3x3");
    CHECK(test::state_bytes(other) == before);
}
