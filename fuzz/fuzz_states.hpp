// The states the fuzz targets load into (fuzz_common.hpp), without the sanitizer hooks: the unit
// tests replay the targets' findings into the same states.
#pragma once

#include <ckpt/ckpt.hpp>
#include <ckpt/types/eigen_tensor.hpp>

#include <Eigen/Core>
#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fuzz {

/// A state with every dtype and every shape kind ckpt supports (the second load target).
struct kinds_state {
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm;
    Eigen::MatrixXd cm;
    Eigen::Matrix<std::int32_t, 2, 2> fixed;
    Eigen::Matrix<std::int16_t, Eigen::Dynamic, 3> fixed_cols;
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 4> bounded;
    Eigen::VectorXf vec;
    Eigen::RowVectorXd row_vec;
    Eigen::Matrix<double, 3, 1> fixed_vec;
    Eigen::Array<Eigen::half, Eigen::Dynamic, 1> halfs;
    Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, 1> bf16s;
    Eigen::Matrix<bool, Eigen::Dynamic, 1> flags;
    Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1> u8s;
    Eigen::Matrix<std::int8_t, Eigen::Dynamic, 1> i8s;
    Eigen::Matrix<std::uint16_t, Eigen::Dynamic, 1> u16s;
    Eigen::Matrix<std::uint32_t, Eigen::Dynamic, 1> u32s;
    Eigen::Matrix<std::uint64_t, Eigen::Dynamic, 1> u64s;
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic> i64s;
    std::vector<Eigen::VectorXf> list;
    std::vector<std::string> names;
    std::string text;
    bool on = false;
    double x = 0;
    std::mt19937 rng;
    std::normal_distribution<double> noise;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(rm), CEREAL_NVP(cm), CEREAL_NVP(fixed), CEREAL_NVP(fixed_cols),
           CEREAL_NVP(bounded), CEREAL_NVP(vec), CEREAL_NVP(row_vec), CEREAL_NVP(fixed_vec),
           CEREAL_NVP(halfs), CEREAL_NVP(bf16s), CEREAL_NVP(flags), CEREAL_NVP(u8s),
           CEREAL_NVP(i8s), CEREAL_NVP(u16s), CEREAL_NVP(u32s), CEREAL_NVP(u64s), CEREAL_NVP(i64s),
           CEREAL_NVP(list), CEREAL_NVP(names), CEREAL_NVP(text), CEREAL_NVP(on), CEREAL_NVP(x),
           CEREAL_NVP(rng), CEREAL_NVP(noise));
    }
};

/// An element that costs no value bytes: a fixed-size tensor (1 KiB) and a dynamic one.
struct block {
    Eigen::Matrix<float, 16, 16> w = Eigen::Matrix<float, 16, 16>::Zero();
    Eigen::VectorXf b;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(b));
    }
};

/// Containers of tensor-only elements, at several depths and in every standard sequence: the
/// shapes where a count from the file could create memory without costing value bytes (the
/// third load target). It holds two blocks before loading, so the state's own tensors pay for
/// some the file lacks.
struct shapes_state {
    std::vector<block> blocks = std::vector<block>(2);
    std::vector<std::vector<block>> grid;
    std::deque<block> queue;
    std::list<Eigen::Matrix4d> chain;
    std::forward_list<block> links;
    std::map<std::string, Eigen::VectorXf> named;
    std::optional<block> maybe;
    std::vector<std::int32_t> ids;
    std::vector<bool> mask;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(blocks), CEREAL_NVP(grid), CEREAL_NVP(queue), CEREAL_NVP(chain),
           CEREAL_NVP(links), CEREAL_NVP(named), CEREAL_NVP(maybe), CEREAL_NVP(ids),
           CEREAL_NVP(mask));
    }
};

/// Versioned classes (format 2 stores their versions in the values): a versioned element in a
/// vector, inside a versioned state, and a split save/load that takes the version. The fifth
/// load target; a version in the file above these is refused before the type's fields are read.
struct versioned_layer {
    Eigen::VectorXf w;
    Eigen::VectorXf b;
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const version) {
        ar(CEREAL_NVP(w));
        if (version >= 1) ar(CEREAL_NVP(b));
    }
};

struct versioned_clock {
    std::int64_t ticks = 0;
    double rate = 1.0;
    template <class Archive>
    void save(Archive& ar, std::uint32_t const version) const {
        ar(CEREAL_NVP(ticks));
        if (version >= 1) ar(CEREAL_NVP(rate));
    }
    template <class Archive>
    void load(Archive& ar, std::uint32_t const version) {
        ar(CEREAL_NVP(ticks));
        if (version >= 1) ar(CEREAL_NVP(rate));
    }
};

struct versioned_state {
    std::vector<versioned_layer> layers;
    versioned_clock clock;
    Eigen::MatrixXd ema;
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const version) {
        ar(CEREAL_NVP(layers), CEREAL_NVP(clock));
        if (version >= 2) ar(CEREAL_NVP(ema));
    }
};

/// The shapes_state of the corpus file shapes.ckpt. Loaded into, a file with its tensor names
/// takes the in-place path, where a failure after the values pass must put back the tensors
/// that loading replaced (the map's and the optional's).
inline shapes_state filled_shapes() {
    shapes_state s;
    const auto filled = [](float v, Eigen::Index n) {
        block b;
        b.w.setConstant(v);
        b.b = Eigen::VectorXf::Constant(n, -v);
        return b;
    };
    s.blocks = {filled(1, 2), filled(2, 0), filled(3, 1)};
    s.grid = {{filled(4, 1)}, {}, {filled(5, 2), filled(6, 0)}};
    s.queue = {filled(7, 3)};
    s.chain = {Eigen::Matrix4d::Identity(), Eigen::Matrix4d::Constant(0.5)};
    s.links = {filled(8, 1), filled(9, 1)};
    s.named = {{"alpha", Eigen::VectorXf::Ones(2)}, {"beta", Eigen::VectorXf::Zero(1)}};
    s.maybe = filled(10, 2);
    s.ids = {1, -2, 3};
    s.mask = {true, false, true};
    return s;
}

/// A shapes_state that cannot be copied, with the same tensor paths: a load into it decodes in
/// place even when the file's tensors differ from its own (a copyable state decodes into a copy
/// then), so a failure there must be undone by its backup alone.
struct pinned_shapes {
    shapes_state shapes = filled_shapes();
    std::unique_ptr<int> pin = std::make_unique<int>(1);

    template <class Archive>
    void serialize(Archive& ar) {
        shapes.serialize(ar); // no node of its own: the paths are shapes_state's
    }
};

/// Whether two walks of states saw the same values and the same tensors (names, dtypes, shapes,
/// bytes): a view's bytes are read from the memory it points at.
inline bool same_walks(ckpt::detail::tensor_oarchive& now,
                       ckpt::detail::tensor_oarchive& expected) {
    const std::vector<ckpt::detail::tensor_record>& want = expected.tensors();
    if (now.values() != expected.values() || now.tensors().size() != want.size()) return false;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const ckpt::detail::tensor_record& a = now.tensors()[i];
        const ckpt::detail::tensor_record& b = want[i];
        if (a.name != b.name || a.type != b.type || a.rank != b.rank || a.dims != b.dims ||
            a.bytes != b.bytes || (a.bytes != 0 && std::memcmp(a.data, b.data, a.bytes) != 0)) {
            return false;
        }
    }
    return true;
}

/// Whether `s` holds exactly what filled_shapes() holds: the same values and the same tensors
/// (names, shapes, bytes). A walk of both states, without building a file: it runs on every
/// input the fuzz targets load into a filled state.
inline bool same_as_filled(const shapes_state& s) {
    static const shapes_state reference = filled_shapes();
    static ckpt::detail::tensor_oarchive expected;
    static const bool walked = [] {
        expected(reference);
        return true;
    }();
    (void)walked;
    ckpt::detail::tensor_oarchive now;
    now(s);
    return same_walks(now, expected);
}

/// The tensors of format 3 (the load and import targets' last state): standard containers of
/// numbers (vectors of five dtypes, half and bfloat16 too, whose length comes from the file; a
/// std::array; a 2-D C array), vectors inside a vector (tensors whose count comes from the
/// values, as shapes_state's blocks), a vector kept in the values with ckpt::as_value, three
/// ckpt::tensor views of one arena (row-major, column-major, flat), Eigen::Tensor of rank 3
/// and 0 and a row-major TensorFixedSize.
///
/// The arena is memory the state points at but does not own, as a parameter buffer or a mapped
/// file is: a copy of the state views the same floats. So when a load decodes into a copy of
/// the state (its file has other tensor names), a view written before every check had passed
/// would change the original's memory; the filled state's walk reads the arena through the
/// views, so a failed load that wrote it is a finding.
struct tensor_kinds_state {
    static constexpr std::size_t arena_size = 2 * 3 + 3 * 2 + 4;

    std::vector<float> f32s;
    std::vector<std::uint8_t> u8s;
    std::vector<std::int64_t> i64s;
    std::vector<Eigen::half> halfs;
    std::vector<Eigen::bfloat16> bf16s;
    std::array<std::int32_t, 4> ids{};
    std::int16_t grid[2][3] = {};
    std::vector<std::vector<float>> rows;
    std::vector<std::int32_t> sizes; ///< in the values (ckpt::as_value)
    std::shared_ptr<float[]> arena = std::make_shared<float[]>(arena_size);
    Eigen::Tensor<float, 3> cube;
    Eigen::Tensor<double, 0> scalar = Eigen::Tensor<double, 0>().setZero();
    Eigen::TensorFixedSize<std::int32_t, Eigen::Sizes<2, 3>, Eigen::RowMajor> fixed =
        Eigen::TensorFixedSize<std::int32_t, Eigen::Sizes<2, 3>, Eigen::RowMajor>().setZero();
    std::int64_t step = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        float* a = arena.get();
        ar(CEREAL_NVP(f32s), CEREAL_NVP(u8s), CEREAL_NVP(i64s), CEREAL_NVP(halfs),
           CEREAL_NVP(bf16s), CEREAL_NVP(ids), CEREAL_NVP(grid), CEREAL_NVP(rows),
           cereal::make_nvp("sizes", ckpt::as_value(sizes)), ckpt::tensor("emb", a, {2, 3}),
           ckpt::tensor("proj", a + 6, {3, 2}, ckpt::storage_order::column_major),
           ckpt::tensor("bias", std::span<float>(a + 12, 4), {4}), CEREAL_NVP(cube),
           CEREAL_NVP(scalar), CEREAL_NVP(fixed), CEREAL_NVP(step));
    }
};

/// The tensor_kinds_state of the corpus file tensor-kinds.ckpt: every container holds
/// elements (one inner vector is empty), the arena is numbered.
inline tensor_kinds_state filled_tensor_kinds() {
    tensor_kinds_state s;
    s.f32s = {1.5F, -2.0F, 0.25F};
    s.u8s = {0, 255, 7, 9, 1};
    s.i64s = {-1, INT64_MAX};
    s.halfs = {Eigen::half(1), Eigen::half(-0.5F)};
    s.bf16s = {Eigen::bfloat16(3)};
    s.ids = {4, -3, 2, -1};
    const std::int16_t grid[2][3] = {{1, 2, 3}, {-4, -5, -6}};
    std::memcpy(s.grid, grid, sizeof grid);
    s.rows = {{1.0F, 2.0F}, {}, {3.0F}};
    s.sizes = {3, 5, 2};
    float* arena = s.arena.get();
    for (std::size_t i = 0; i < tensor_kinds_state::arena_size; ++i) {
        arena[i] = 0.5F * static_cast<float>(i) - 1.0F;
    }
    s.cube.resize(2, 3, 2);
    for (Eigen::Index i = 0; i < s.cube.size(); ++i) s.cube.data()[i] = static_cast<float>(i);
    s.scalar() = 2.5;
    for (Eigen::Index i = 0; i < s.fixed.size(); ++i) {
        s.fixed.data()[i] = static_cast<std::int32_t>(10 - i);
    }
    s.step = 12;
    return s;
}

/// A filled tensor_kinds_state that cannot be copied: a load into it decodes in place whatever
/// the file's tensors, so the views must still wait for every check.
struct pinned_tensor_kinds {
    tensor_kinds_state kinds = filled_tensor_kinds();
    std::unique_ptr<int> pin = std::make_unique<int>(1);

    template <class Archive>
    void serialize(Archive& ar) {
        kinds.serialize(ar); // no node of its own: the paths are tensor_kinds_state's
    }
};

/// Whether `s` holds exactly what filled_tensor_kinds() holds, the arena's floats included.
inline bool same_as_filled(const tensor_kinds_state& s) {
    static const tensor_kinds_state reference = filled_tensor_kinds();
    static ckpt::detail::tensor_oarchive expected;
    static const bool walked = [] {
        expected(reference);
        return true;
    }();
    (void)walked;
    ckpt::detail::tensor_oarchive now;
    now(s);
    return same_walks(now, expected);
}

} // namespace fuzz

CEREAL_CLASS_VERSION(fuzz::versioned_layer, 1)
CEREAL_CLASS_VERSION(fuzz::versioned_clock, 1)
CEREAL_CLASS_VERSION(fuzz::versioned_state, 2)
