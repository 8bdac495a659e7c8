// Parameters that do not live in Eigen matrices: a hand-written net in std::vector<float>, a flat
// arena that every layer is a view into (as FSDP's flat parameters and inference engines keep
// them), and an Eigen::Tensor convolution kernel. Each one is a named tensor in the file, streamed
// straight from its memory, and every safetensors reader sees it with its shape.
#include <ckpt/ckpt.hpp>
#include <ckpt/types/eigen_tensor.hpp> // Eigen::Tensor: a header of its own, opt-in

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace parameters_in_plain_memory {

// A port of C reference code: plain arrays of floats.
struct c_style_net {
    std::vector<float> w1, b1;    // std::vector: a rank-1 tensor; its length comes from the file
    std::array<float, 4> scale{}; // std::array: fixed length
    float table[2][3] = {};       // a C array of two extents: a row-major 2x3 tensor
    std::vector<int> layer_sizes; // the architecture, not weights: ckpt::as_value keeps it a value
    std::int64_t step = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w1), CEREAL_NVP(b1), CEREAL_NVP(scale), CEREAL_NVP(table),
           cereal::make_nvp("layer_sizes", ckpt::as_value(layer_sizes)), CEREAL_NVP(step));
    }
};

TEST_CASE("std::vector, std::array and C arrays of numbers are tensors") {
    const auto dir = std::filesystem::temp_directory_path() / "ckpt-example-plain-memory";
    std::filesystem::create_directories(dir);

    c_style_net net;
    net.w1.resize(4 * 3);
    std::iota(net.w1.begin(), net.w1.end(), 0.0F);
    net.b1 = {0.5F, -0.5F, 0.25F};
    net.scale = {1, 2, 3, 4};
    net.table[1][2] = 7;
    net.layer_sizes = {4, 3};
    net.step = 100;
    ckpt::save(dir / "net.ckpt", net, {.step = net.step});

    // What a safetensors reader sees: w1 [12], b1 [3], scale [4], table [2, 3]; layer_sizes is
    // not among them.
    const ckpt::info info = ckpt::inspect(dir / "net.ckpt");
    CHECK(info.tensors.size() == 4);
    const auto table = std::find_if(info.tensors.begin(), info.tensors.end(),
                                    [](const ckpt::tensor_info& t) { return t.name == "table"; });
    REQUIRE(table != info.tensors.end());
    CHECK(table->shape == std::vector<std::uint64_t>{2, 3});
    for (const auto& t : info.tensors) MESSAGE(t.name << " " << ckpt::to_string(t.type));

    c_style_net resumed; // empty vectors take the file's lengths
    ckpt::load(dir / "net.ckpt", resumed);
    CHECK(resumed.w1 == net.w1);
    CHECK(resumed.b1 == net.b1);
    CHECK(resumed.table[1][2] == 7);
    CHECK(resumed.layer_sizes == std::vector<int>{4, 3});
    std::filesystem::remove_all(dir);
}

// One allocation for every parameter; the layers are views into it. Loading fills the arena in
// place: nothing is allocated, the pointers the rest of the program holds stay valid.
template <std::size_t Vocab>
struct flat_parameters {
    static constexpr std::size_t dim = 4, classes = 3;
    std::vector<float> arena = std::vector<float>(Vocab * dim + dim * classes + classes);

    template <class Archive>
    void serialize(Archive& ar) {
        std::span<float> rest(arena);
        ar(ckpt::tensor("embedding", rest.first(Vocab * dim), {Vocab, dim}));
        rest = rest.subspan(Vocab * dim);
        // Column-major, as a BLAS routine of Fortran heritage might want it; the file's shape is
        // the row-major view, [classes, dim], as for a column-major Eigen matrix.
        ar(ckpt::tensor("head", rest.first(dim * classes), {dim, classes},
                        ckpt::storage_order::column_major));
        ar(ckpt::tensor("head_bias", rest.subspan(dim * classes), {classes}));
    }
};

TEST_CASE("a flat arena seen through ckpt::tensor views") {
    flat_parameters<5> p;
    std::iota(p.arena.begin(), p.arena.end(), 1.0F);
    const std::vector<std::byte> file = ckpt::save_to_memory(p);

    flat_parameters<5> loaded;
    const float* where = loaded.arena.data();
    ckpt::load_from_memory(file, loaded);
    CHECK(loaded.arena == p.arena);
    CHECK(loaded.arena.data() == where); // the same memory, filled in place

    // A view cannot take another shape: the file's must match, the error says both sides in the
    // view's terms, and the arena is written only once everything has been checked.
    flat_parameters<4> smaller;
    const std::vector<float> before = smaller.arena;
    try {
        ckpt::load_from_memory(file, smaller);
        FAIL("a 5-word embedding loaded into a 4-word one");
    } catch (const ckpt::schema_error& e) {
        CHECK(e.id() == ckpt::errc::schema_mismatch); // 302
        CHECK(std::string(e.what()) == "[ckpt.schema.302] embedding: file has float 5x4 "
                                       "(row-major), state expects float 4x4");
    }
    CHECK(smaller.arena == before);
}

// Eigen's Tensor module for rank 3 and above: a convolution kernel [out, in, kh, kw].
struct conv_layer {
    Eigen::Tensor<float, 4> kernel; // column-major, Eigen's default
    Eigen::Tensor<float, 1> bias;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(kernel), CEREAL_NVP(bias));
    }
};

TEST_CASE("Eigen::Tensor of any rank, either layout") {
    conv_layer conv;
    conv.kernel.resize(8, 3, 3, 3);
    conv.kernel.setRandom();
    conv.bias.resize(8);
    conv.bias.setZero();
    const std::vector<std::byte> file = ckpt::save_to_memory(conv);

    conv_layer resumed; // empty: takes the file's dimensions
    ckpt::load_from_memory(file, resumed);
    CHECK(resumed.kernel.dimension(0) == 8);
    CHECK(resumed.kernel(7, 2, 1, 0) == conv.kernel(7, 2, 1, 0));

    // Another architecture is an error in the C++ type's terms, the stored shape after it.
    conv_layer other;
    other.kernel.resize(8, 3, 5, 5);
    try {
        ckpt::load_from_memory(file, other);
        FAIL("a 3x3 kernel loaded into a 5x5 one");
    } catch (const ckpt::schema_error& e) {
        CHECK(e.id() == ckpt::errc::schema_mismatch); // 302
        CHECK(std::string(e.what()) ==
              "[ckpt.schema.302] kernel: file has float 8x3x3x3 (column-major, stored as F32 "
              "[3, 3, 3, 8]), state expects float 8x3x5x5");
    }
}

} // namespace parameters_in_plain_memory
