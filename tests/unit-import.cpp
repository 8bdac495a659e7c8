// import_safetensors: the tensors of a safetensors file that ckpt did not write (PyTorch, Hugging
// Face, JAX) load into a state by name, validated as strictly as load(), with renames, partial
// restore, the caller's whole-file XXH3-64, and dtype conversions only when asked for: widening
// exactly, narrowing rounding to nearest-even with the inexact values counted. The state's
// non-tensor values keep their values, and a failed import leaves the state as it was.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <ckpt/types/eigen_tensor.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

/// One tensor of a hand-built safetensors file.
struct st_tensor {
    std::string name;
    std::string dtype;
    std::vector<std::uint64_t> shape;
    std::vector<std::byte> bytes;
};

/// A plain safetensors file (no ckpt checksum), tensors laid out in the order given.
std::vector<std::byte> st_file(const std::vector<st_tensor>& tensors,
                               const std::string& metadata = R"({"format":"pt"})") {
    std::string json = "{\"__metadata__\":" + metadata;
    std::vector<std::byte> data;
    for (const st_tensor& t : tensors) {
        json += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (std::size_t i = 0; i < t.shape.size(); ++i) {
            json += (i > 0 ? "," : "") + std::to_string(t.shape[i]);
        }
        json += "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                std::to_string(data.size() + t.bytes.size()) + "]}";
        data.insert(data.end(), t.bytes.begin(), t.bytes.end());
    }
    json += "}";
    return test::craft(json, data, false);
}

template <class T>
std::vector<std::byte> le_bytes(const std::vector<T>& values) {
    std::vector<std::byte> out(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
    return out;
}

std::uint16_t f16_bits(float f) {
    return std::bit_cast<std::uint16_t>(Eigen::half(f));
}

std::uint16_t bf16_bits(float f) {
    return std::bit_cast<std::uint16_t>(Eigen::bfloat16(f));
}

/// Converts one value with ckpt's converter; `changed` is its count of inexact values.
template <class To, class From>
To convert_one(ckpt::dtype from, From v, ckpt::dtype to, std::uint64_t& changed) {
    To out{};
    changed = ckpt::detail::convert_elements(from, reinterpret_cast<const std::byte*>(&v), to,
                                             reinterpret_cast<std::byte*>(&out), 1);
    return out;
}

std::uint16_t to_f16(double v, std::uint64_t& changed) {
    return convert_one<std::uint16_t>(ckpt::dtype::f64, v, ckpt::dtype::f16, changed);
}

struct import_net {
    Eigen::MatrixXf weight; // column-major
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> proj;
    Eigen::VectorXf bias;
    std::int64_t step = 7;
    std::string note = "kept";
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(proj), CEREAL_NVP(bias), CEREAL_NVP(step),
           CEREAL_NVP(note));
    }
};

import_net make_import_net() {
    import_net n;
    n.weight = Eigen::MatrixXf::Constant(2, 3, -1.0F);
    n.proj.setConstant(2, 3, -2.0F);
    n.bias = Eigen::VectorXf::Constant(2, -3.0F);
    return n;
}

/// torch-style names for import_net: model.w, model.p, model.b; values 0, 1, 2, ... row-major.
std::vector<std::byte> torch_net_file(const std::string& dtype = "F32") {
    const auto values = [&](std::size_t n, float start) {
        std::vector<float> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
        if (dtype == "F32") return le_bytes(v);
        std::vector<std::uint16_t> h(n);
        for (std::size_t i = 0; i < n; ++i)
            h[i] = dtype == "F16" ? f16_bits(v[i]) : bf16_bits(v[i]);
        return le_bytes(h);
    };
    return st_file({{"model.w", dtype, {2, 3}, values(6, 0)},
                    {"model.p", dtype, {2, 3}, values(6, 10)},
                    {"model.b", dtype, {2}, values(2, 20)}});
}

const std::vector<std::pair<std::string, std::string>> net_renames = {
    {"model.w", "weight"}, {"model.p", "proj"}, {"model.b", "bias"}};

ckpt::import_options with_renames() {
    ckpt::import_options o;
    o.renames = net_renames;
    return o;
}

void check_net_values(const import_net& n) {
    // [2, 3] row-major in the file: element (r, c) is 3r + c, in either storage order.
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 3; ++c) {
            CHECK(n.weight(r, c) == static_cast<float>(3 * r + c));
            CHECK(n.proj(r, c) == static_cast<float>(10 + 3 * r + c));
        }
    }
    CHECK(n.bias(0) == 20.0F);
    CHECK(n.bias(1) == 21.0F);
    CHECK(n.step == 7);
    CHECK(n.note == "kept");
}

} // namespace

TEST_CASE("conversions: which dtype pairs widen, narrow, or do not convert") {
    using ckpt::dtype;
    using ckpt::detail::classify_conversion;
    using ckpt::detail::conversion;
    CHECK(classify_conversion(dtype::f32, dtype::f32) == conversion::same);
    CHECK(classify_conversion(dtype::i64, dtype::i64) == conversion::same);
    for (const dtype from : {dtype::f16, dtype::bf16}) {
        CHECK(classify_conversion(from, dtype::f32) == conversion::widening);
        CHECK(classify_conversion(from, dtype::f64) == conversion::widening);
    }
    CHECK(classify_conversion(dtype::f32, dtype::f64) == conversion::widening);
    CHECK(classify_conversion(dtype::f64, dtype::f32) == conversion::narrowing);
    CHECK(classify_conversion(dtype::f64, dtype::f16) == conversion::narrowing);
    CHECK(classify_conversion(dtype::f64, dtype::bf16) == conversion::narrowing);
    CHECK(classify_conversion(dtype::f32, dtype::f16) == conversion::narrowing);
    CHECK(classify_conversion(dtype::f32, dtype::bf16) == conversion::narrowing);
    // Each holds values the other cannot: precision one way, range the other.
    CHECK(classify_conversion(dtype::f16, dtype::bf16) == conversion::narrowing);
    CHECK(classify_conversion(dtype::bf16, dtype::f16) == conversion::narrowing);
    CHECK(classify_conversion(dtype::i32, dtype::i64) == conversion::none);
    CHECK(classify_conversion(dtype::i32, dtype::f32) == conversion::none);
    CHECK(classify_conversion(dtype::f32, dtype::i32) == conversion::none);
    CHECK(classify_conversion(dtype::f8_e4m3, dtype::f32) == conversion::none);
    CHECK(classify_conversion(dtype::boolean, dtype::u8) == conversion::none);
}

TEST_CASE("conversions: every F16 and BF16 widens to F32 and F64 exactly") {
    using ckpt::dtype;
    std::vector<std::uint16_t> all(65536);
    for (std::uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
    const auto* src = reinterpret_cast<const std::byte*>(all.data());
    std::vector<float> f32(all.size());
    std::vector<double> f64(all.size());
    for (const dtype from : {dtype::f16, dtype::bf16}) {
        CAPTURE(ckpt::to_string(from));
        CHECK(ckpt::detail::convert_elements(from, src, dtype::f32,
                                             reinterpret_cast<std::byte*>(f32.data()),
                                             all.size()) == 0);
        CHECK(ckpt::detail::convert_elements(from, src, dtype::f64,
                                             reinterpret_cast<std::byte*>(f64.data()),
                                             all.size()) == 0);
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < all.size(); ++i) {
            const float want = from == dtype::f16
                                   ? static_cast<float>(std::bit_cast<Eigen::half>(all[i]))
                                   : static_cast<float>(std::bit_cast<Eigen::bfloat16>(all[i]));
            if (std::isnan(want)) {
                wrong += !std::isnan(f32[i]) || !std::isnan(f64[i]) ||
                         std::signbit(f32[i]) != std::signbit(want);
            } else {
                wrong +=
                    std::bit_cast<std::uint32_t>(f32[i]) != std::bit_cast<std::uint32_t>(want) ||
                    f64[i] != static_cast<double>(want) ||
                    std::signbit(f64[i]) != std::signbit(want);
            }
        }
        CHECK(wrong == 0);
    }
}

TEST_CASE("conversions: narrowing to F16 rounds to nearest even at every boundary") {
    std::uint64_t c = 0;
    // Exact values, the largest and smallest of each kind.
    CHECK(to_f16(1.0, c) == 0x3c00);
    CHECK(c == 0);
    CHECK(to_f16(65504.0, c) == 0x7bff);
    CHECK(c == 0);
    CHECK(to_f16(0x1p-24, c) == 0x0001); // the smallest subnormal
    CHECK(c == 0);
    CHECK(to_f16(0x1p-14, c) == 0x0400); // the smallest normal
    CHECK(c == 0);
    CHECK(to_f16(1023 * 0x1p-24, c) == 0x03ff); // the largest subnormal
    CHECK(c == 0);
    CHECK(to_f16(-0.0, c) == 0x8000);
    CHECK(c == 0);
    // Overflow: 65519 rounds down to 65504, 65520 (the tie) and above to infinity.
    CHECK(to_f16(65519.0, c) == 0x7bff);
    CHECK(c == 1);
    CHECK(to_f16(65520.0, c) == 0x7c00);
    CHECK(c == 1);
    CHECK(to_f16(-1e300, c) == 0xfc00);
    CHECK(c == 1);
    // Ties go to the even significand; one short of a tie and one over go to the nearer.
    CHECK(to_f16(1.0 + 0x1p-11, c) == 0x3c00);
    CHECK(c == 1);
    CHECK(to_f16(1.0 + 3 * 0x1p-11, c) == 0x3c02);
    CHECK(to_f16(1.0 + 0x1p-11 - 0x1p-30, c) == 0x3c00);
    CHECK(to_f16(1.0 + 0x1p-11 + 0x1p-30, c) == 0x3c01);
    // Subnormals: half the smallest is a tie to 0; three quarters rounds up to it; the largest
    // subnormal and a half ties up into the smallest normal.
    CHECK(to_f16(0x1p-25, c) == 0x0000);
    CHECK(c == 1);
    CHECK(to_f16(3 * 0x1p-26, c) == 0x0001);
    CHECK(to_f16(1023.5 * 0x1p-24, c) == 0x0400);
    CHECK(to_f16(-0x1p-40, c) == 0x8000);
    CHECK(c == 1);
    // One rounding, from the double itself: through F32 first, 1 + 2^-11 + 2^-40 would lose
    // 2^-40, become the tie, and round down.
    CHECK(to_f16(1.0 + 0x1p-11 + 0x1p-40, c) == 0x3c01);
    // Infinities and NaN.
    CHECK(to_f16(std::numeric_limits<double>::infinity(), c) == 0x7c00);
    CHECK(c == 0);
    const std::uint16_t nan = to_f16(-std::numeric_limits<double>::quiet_NaN(), c);
    CHECK((nan & 0x7c00) == 0x7c00);
    CHECK((nan & 0x03ff) != 0);
    CHECK((nan & 0x8000) != 0);
    CHECK(c == 0);
}

TEST_CASE("conversions: F32 to F16 and BF16 agree with Eigen's rounding on a sweep of floats") {
    using ckpt::dtype;
    std::size_t checked = 0;
    std::size_t wrong_f16 = 0;
    std::size_t wrong_bf16 = 0;
    std::size_t inexact_seen = 0;
    for (std::uint64_t bits = 0; bits <= 0xffffffffu; bits += 4099) {
        const float f = std::bit_cast<float>(static_cast<std::uint32_t>(bits));
        if (std::isnan(f)) continue;
        std::uint64_t c16 = 0;
        std::uint64_t cb = 0;
        const auto h = convert_one<std::uint16_t>(dtype::f32, f, dtype::f16, c16);
        const auto b = convert_one<std::uint16_t>(dtype::f32, f, dtype::bf16, cb);
        wrong_f16 += h != f16_bits(f);
        wrong_bf16 += b != bf16_bits(f);
        // Inexact exactly when the value does not come back.
        wrong_f16 += (c16 != 0) != (static_cast<float>(std::bit_cast<Eigen::half>(h)) != f);
        wrong_bf16 += (cb != 0) != (static_cast<float>(std::bit_cast<Eigen::bfloat16>(b)) != f);
        inexact_seen += c16;
        ++checked;
    }
    CHECK(checked > 1000000);
    CHECK(inexact_seen > 100000);
    CHECK(wrong_f16 == 0);
    CHECK(wrong_bf16 == 0);
}

TEST_CASE("conversions: F64 to F32 rounds, overflows at the halfway point, and counts") {
    using ckpt::dtype;
    std::uint64_t c = 0;
    const double max = std::numeric_limits<float>::max();
    CHECK(convert_one<float>(dtype::f64, max, dtype::f32, c) == std::numeric_limits<float>::max());
    CHECK(c == 0);
    // 2^128 - 2^103 is halfway between FLT_MAX and 2^128: a tie, to the even 2^128, infinity.
    CHECK(std::isinf(convert_one<float>(dtype::f64, 0x1.ffffffp+127, dtype::f32, c)));
    CHECK(c == 1);
    CHECK(convert_one<float>(dtype::f64, std::nextafter(0x1.ffffffp+127, 0.0), dtype::f32, c) ==
          std::numeric_limits<float>::max());
    CHECK(c == 1);
    CHECK(convert_one<float>(dtype::f64, -1e300, dtype::f32, c) ==
          -std::numeric_limits<float>::infinity());
    CHECK(c == 1);
    CHECK(convert_one<float>(dtype::f64, 0.1, dtype::f32, c) == 0.1F);
    CHECK(c == 1);
    CHECK(convert_one<float>(dtype::f64, 0.5, dtype::f32, c) == 0.5F);
    CHECK(c == 0);
    CHECK(std::isnan(
        convert_one<float>(dtype::f64, std::numeric_limits<double>::quiet_NaN(), dtype::f32, c)));
    CHECK(c == 0);
}

TEST_CASE("import: a torch-named safetensors file fills the state by name, row-major") {
    const std::vector<std::byte> file = torch_net_file();
    import_net net = make_import_net();
    const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, net, with_renames());
    check_net_values(net);
    CHECK(r.missing.empty());
    CHECK(r.ignored.empty());
    CHECK(r.renamed == std::vector<std::pair<std::string, std::string>>{
                           {"model.b", "bias"}, {"model.p", "proj"}, {"model.w", "weight"}});
    CHECK(r.converted.empty());
    CHECK(r.inexact == 0);
    CHECK(r.metadata == std::map<std::string, std::string>{{"format", "pt"}});

    // From a file on disk too.
    const auto dir = test::scratch("import-file");
    test::write_file(dir / "model.safetensors", file);
    import_net again = make_import_net();
    (void)ckpt::import_safetensors(dir / "model.safetensors", again, with_renames());
    check_net_values(again);
}

TEST_CASE("import: a dtype other than the state's is an error unless a conversion is asked for") {
    for (const std::string dtype : {"F16", "BF16"}) {
        CAPTURE(dtype);
        const std::vector<std::byte> file = torch_net_file(dtype);
        import_net net = make_import_net();
        const std::vector<std::byte> before = test::state_bytes(net);
        const std::string text = test::error_text(
            [&] { ckpt::import_safetensors_from_memory(file, net, with_renames()); });
        const std::string type = dtype == "F16" ? "half" : "bfloat16";
        CHECK(text == "[ckpt.schema.302] weight: file has " + type +
                          " 2x3 (row-major), state expects float 2x3 (import_options::widen "
                          "converts it) (and 2 more:\n  [ckpt.schema.302] proj: file has " +
                          type +
                          " 2x3 (row-major), state expects float 2x3 (import_options::widen "
                          "converts it)\n  [ckpt.schema.302] bias: file has " +
                          type +
                          "[2], state expects float[2] (import_options::widen converts it))");
        CHECK(test::state_bytes(net) == before);

        ckpt::import_options o = with_renames();
        o.widen = true;
        const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, net, o);
        check_net_values(net); // small integers: exact in F16 and BF16
        const ckpt::dtype from = dtype == "F16" ? ckpt::dtype::f16 : ckpt::dtype::bf16;
        REQUIRE(r.converted.size() == 3);
        CHECK(r.converted[0].name == "model.b");
        CHECK(r.converted[1].name == "model.p");
        CHECK(r.converted[2].name == "model.w");
        for (const ckpt::converted_tensor& t : r.converted) {
            CHECK(t.from == from);
            CHECK(t.to == ckpt::dtype::f32);
            CHECK(t.inexact == 0);
        }
        CHECK(r.inexact == 0);
    }
}

namespace {
struct half_state {
    Eigen::Matrix<Eigen::half, Eigen::Dynamic, 1> h;
    Eigen::VectorXf f;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(h), CEREAL_NVP(f));
    }
};
} // namespace

TEST_CASE("import: narrowing needs its own option and counts the values that changed") {
    // h: F32 into F16 (1 exact, 0.1 rounds, 1e6 overflows); f: F64 into F32 (0.5 exact, 0.1
    // rounds).
    const std::vector<std::byte> file =
        st_file({{"h", "F32", {3}, le_bytes(std::vector<float>{1.0F, 0.1F, 1e6F})},
                 {"f", "F64", {2}, le_bytes(std::vector<double>{0.5, 0.1})}});
    half_state s;
    s.h.resize(3);
    s.f.resize(2);
    ckpt::import_options o;
    o.widen = true; // widening does not let narrowing through
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(file, s, o); }) ==
          "[ckpt.schema.302] h: file has float[3], state expects half[3] "
          "(import_options::narrow converts it, rounding) (and 1 more:\n  [ckpt.schema.302] f: "
          "file has double[2], state expects float[2] (import_options::narrow converts it, "
          "rounding))");
    o.narrow = true;
    const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, s, o);
    CHECK(std::bit_cast<std::uint16_t>(s.h(0)) == 0x3c00);
    CHECK(std::bit_cast<std::uint16_t>(s.h(1)) == f16_bits(0.1F));
    CHECK(std::bit_cast<std::uint16_t>(s.h(2)) == 0x7c00);
    CHECK(s.f(0) == 0.5F);
    CHECK(s.f(1) == 0.1F);
    REQUIRE(r.converted.size() == 2);
    CHECK(r.converted[0].name == "f");
    CHECK(r.converted[0].from == ckpt::dtype::f64);
    CHECK(r.converted[0].to == ckpt::dtype::f32);
    CHECK(r.converted[0].inexact == 1);
    CHECK(r.converted[1].name == "h");
    CHECK(r.converted[1].inexact == 2);
    CHECK(r.inexact == 3);
}

TEST_CASE("import: integers, bools and F8 never convert") {
    const std::vector<std::byte> file =
        st_file({{"h", "I32", {3}, le_bytes(std::vector<std::int32_t>{1, 2, 3})},
                 {"f", "F32", {2}, le_bytes(std::vector<float>{1, 2})}});
    half_state s;
    ckpt::import_options o;
    o.widen = true;
    o.narrow = true;
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(file, s, o); }) ==
          "[ckpt.schema.302] h: file has int32[3], state expects half[]");
}

namespace {
struct wide_matrix {
    Eigen::MatrixXd m;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(m));
    }
};
struct bool_state {
    Eigen::Matrix<bool, Eigen::Dynamic, 1> b;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(b));
    }
};
} // namespace

TEST_CASE("import: a converted 2-D tensor is transposed into a column-major matrix") {
    std::vector<std::uint16_t> h;
    for (int i = 0; i < 6; ++i) h.push_back(f16_bits(static_cast<float>(i) + 0.5F));
    const std::vector<std::byte> file = st_file({{"m", "F16", {2, 3}, le_bytes(h)}});
    wide_matrix s;
    ckpt::import_options o;
    o.widen = true;
    (void)ckpt::import_safetensors_from_memory(file, s, o);
    REQUIRE(s.m.rows() == 2);
    REQUIRE(s.m.cols() == 3);
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 3; ++c) CHECK(s.m(r, c) == 3 * r + c + 0.5);
    }
}

TEST_CASE("import: partial restore and renames as load's, with the exact report") {
    // The file: the net's three tensors, and one the state lacks (a BatchNorm counter, rank 0).
    std::vector<st_tensor> tensors = {
        {"model.w", "F32", {2, 3}, le_bytes(std::vector<float>{0, 1, 2, 3, 4, 5})},
        {"model.b", "F32", {2}, le_bytes(std::vector<float>{20, 21})},
        {"bn.num_batches_tracked", "I64", {}, le_bytes(std::vector<std::int64_t>{9})}};
    const std::vector<std::byte> file = st_file(tensors);
    ckpt::import_options o;
    o.renames = net_renames;
    import_net net = make_import_net();
    const std::vector<std::byte> before = test::state_bytes(net);

    // Strict: proj is missing, the counter unexpected; and model.p matches nothing.
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(file, net, o); }) ==
          ckpt::errc::schema_rename_unmatched);
    o.renames = {{"model.w", "weight"}, {"model.b", "bias"}};
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(file, net, o); }) ==
          "[ckpt.schema.301] proj: state expects float 2x3, the checkpoint has no such tensor "
          "(and 1 more:\n  [ckpt.schema.303] bn.num_batches_tracked: file has I64 [], the state "
          "has no such tensor)");
    CHECK(test::state_bytes(net) == before);
    o.allow_missing = true;
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(file, net, o); }) ==
          ckpt::errc::schema_unexpected);
    CHECK(test::state_bytes(net) == before);
    o.allow_missing = false;
    o.ignore_unexpected = true;
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(file, net, o); }) ==
          ckpt::errc::schema_missing);
    CHECK(test::state_bytes(net) == before);

    o.allow_missing = true;
    const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, net, o);
    CHECK(r.missing == std::vector<std::string>{"proj"});
    CHECK(r.ignored == std::vector<std::string>{"bn.num_batches_tracked"});
    CHECK(r.renamed == std::vector<std::pair<std::string, std::string>>{{"model.b", "bias"},
                                                                        {"model.w", "weight"}});
    CHECK(net.weight(1, 0) == 3.0F);
    CHECK(net.bias(1) == 21.0F);
    CHECK(net.proj == Eigen::MatrixXf::Constant(2, 3, -2.0F)); // kept (2 x 3 before and after)
    CHECK(net.step == 7);

    // A rename onto a name another tensor has is an error.
    o.renames = {{"model.w", "weight"}, {"model.b", "weight"}};
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(file, net, o); }) ==
          ckpt::errc::schema_rename_collision);
}

namespace {
struct mapped_state {
    Eigen::VectorXf w = Eigen::VectorXf::Zero(2);
    std::map<std::string, Eigen::VectorXf> named;
    std::int32_t count = 3;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(named), CEREAL_NVP(count));
    }
};
} // namespace

TEST_CASE("import: a missing tensor that loading recreates (in a map) keeps its value") {
    const std::vector<std::byte> file =
        st_file({{"w", "F32", {2}, le_bytes(std::vector<float>{4, 5})},
                 {"named.1.value", "F32", {1}, le_bytes(std::vector<float>{8})}});
    mapped_state s;
    s.named = {{"a", Eigen::VectorXf::Constant(3, 1.5F)}, {"b", Eigen::VectorXf::Zero(1)}};
    ckpt::import_options o;
    o.allow_missing = true;
    const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, s, o);
    CHECK(r.missing == std::vector<std::string>{"named.0.value"}); // a map's key is a value
    CHECK(test::bits_equal(s.w, Eigen::VectorXf(Eigen::Vector2f(4, 5))));
    REQUIRE(s.named.size() == 2);
    CHECK(test::bits_equal(s.named.at("a"), Eigen::VectorXf::Constant(3, 1.5F).eval()));
    CHECK(test::bits_equal(s.named.at("b"), Eigen::VectorXf::Constant(1, 8.0F).eval()));
    CHECK(s.count == 3);
}

TEST_CASE("load: a missing tensor that loading recreates keeps its value too") {
    // The file's map has the same keys; its "a" tensor is left out by a rename to elsewhere.
    mapped_state written;
    written.named = {{"a", Eigen::VectorXf::Constant(2, 9.0F)}, {"b", Eigen::VectorXf::Ones(1)}};
    const std::vector<std::byte> file = ckpt::save_to_memory(written);
    mapped_state s;
    s.named = {{"a", Eigen::VectorXf::Constant(3, 1.5F)}, {"b", Eigen::VectorXf::Zero(1)}};
    ckpt::load_options o;
    o.allow_missing = true;
    o.ignore_unexpected = true;
    o.renames = {{"named.0.value", "elsewhere"}};
    ckpt::load_report report;
    o.report = &report;
    (void)ckpt::load_from_memory(file, s, o);
    CHECK(report.missing == std::vector<std::string>{"named.0.value"});
    CHECK(report.ignored == std::vector<std::string>{"named.0.value"});
    CHECK(test::bits_equal(s.named.at("a"), Eigen::VectorXf::Constant(3, 1.5F).eval()));
    CHECK(test::bits_equal(s.named.at("b"), Eigen::VectorXf::Ones(1).eval()));
}

TEST_CASE("import: the caller's XXH3-64 of the whole file is checked when given") {
    const std::vector<std::byte> file = torch_net_file();
    const std::uint64_t hash = ckpt::detail::hash_bytes(file.data(), file.size());
    ckpt::import_options o = with_renames();
    o.xxh3_64 = hash;
    import_net net = make_import_net();
    (void)ckpt::import_safetensors_from_memory(file, net, o);
    check_net_values(net);

    o.xxh3_64 = hash + 1;
    import_net other = make_import_net();
    const std::vector<std::byte> before = test::state_bytes(other);
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(file, other, o); }) ==
          "[ckpt.corrupt.204] '<memory>': the file's XXH3-64 is " + ckpt::detail::to_hex(hash) +
              ", import_options::xxh3_64 expects " + ckpt::detail::to_hex(hash + 1) +
              ": the file is damaged or not the one meant");
    CHECK(test::state_bytes(other) == before);
    // One flipped bit of tensor data, which nothing else would notice.
    std::vector<std::byte> damaged = file;
    damaged.back() ^= std::byte{1};
    o.xxh3_64 = hash;
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(damaged, other, o); }) ==
          ckpt::errc::corrupt_checksum);
    o.xxh3_64.reset();
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(damaged, other, o); }) == 0);
}

TEST_CASE("import: a file ckpt wrote imports its tensors, its checksum verified, its values not") {
    import_net written = make_import_net();
    written.weight.setConstant(4.0F);
    written.proj.setConstant(5.0F);
    written.bias.setConstant(6.0F);
    written.step = 99;
    written.note = "written";
    std::vector<std::byte> file = ckpt::save_to_memory(written);
    import_net net = make_import_net();
    const ckpt::import_report r = ckpt::import_safetensors_from_memory(file, net);
    CHECK(net.weight == written.weight); // same storage order as written: no transpose
    CHECK(net.proj == written.proj);
    CHECK(net.bias == written.bias);
    CHECK(net.step == 7);
    CHECK(net.note == "kept");
    CHECK(r.metadata.at("ckpt.format_version") == std::to_string(ckpt::format_version));

    file.back() ^= std::byte{1};
    import_net other = make_import_net();
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(file, other); }) ==
          ckpt::errc::corrupt_checksum);
}

TEST_CASE("import: malformed files are refused with their error, the state untouched") {
    import_net net = make_import_net();
    const std::vector<std::byte> before = test::state_bytes(net);
    const ckpt::import_options o = with_renames();
    const std::vector<std::byte> good = torch_net_file();
    const auto id = [&](const std::vector<std::byte>& f) {
        return test::error_id([&] { ckpt::import_safetensors_from_memory(f, net, o); });
    };
    // Truncated: one byte short of the whole file, inside the header, inside the length.
    CHECK(id(std::vector<std::byte>(good.begin(), good.end() - 1)) == ckpt::errc::corrupt_offsets);
    CHECK(id(std::vector<std::byte>(good.begin(), good.begin() + 20)) ==
          ckpt::errc::corrupt_truncated_header);
    CHECK(id(std::vector<std::byte>(good.begin(), good.begin() + 7)) ==
          ckpt::errc::corrupt_too_small);
    // One byte too many after the last tensor: safetensors forbids a gap or a tail.
    std::vector<std::byte> longer = good;
    longer.push_back(std::byte{0});
    CHECK(id(longer) == ckpt::errc::corrupt_offsets);
    // Overlapping tensors, a shape that disagrees with its bytes, an unknown dtype, bad JSON.
    const auto f32 = [](std::size_t n) { return le_bytes(std::vector<float>(n, 1.0F)); };
    CHECK(id(test::craft(R"({"weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         f32(3), false)) == ckpt::errc::corrupt_offsets);
    CHECK(id(test::craft(R"({"bias":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32(2),
                         false)) == ckpt::errc::limit_tensor_bytes);
    CHECK(id(test::craft(R"({"bias":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", f32(4),
                         false)) == ckpt::errc::corrupt_header);
    CHECK(id(test::craft(R"({"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", f32(2),
                         false)) == ckpt::errc::corrupt_json);
    // A BOOL byte other than 0 or 1.
    bool_state flags;
    const std::vector<std::byte> bools =
        st_file({{"b", "BOOL", {2}, {std::byte{1}, std::byte{2}}}});
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(bools, flags); }) ==
          ckpt::errc::corrupt_values);
    CHECK(flags.b.size() == 0);
    // Limits.
    ckpt::import_options tight = o;
    tight.limits.max_tensors = 2;
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(good, net, tight); }) ==
          ckpt::errc::limit_tensor_count);
    // A ckpt header of a newer format: a version error, whatever the rest.
    std::vector<std::byte> newer = ckpt::save_to_memory(make_import_net());
    const std::string v = R"("ckpt.format_version":")" + std::to_string(ckpt::format_version);
    const std::string w = R"("ckpt.format_version":")" + std::to_string(ckpt::format_version + 1);
    const auto at =
        std::search(newer.begin(), newer.end(), reinterpret_cast<const std::byte*>(v.data()),
                    reinterpret_cast<const std::byte*>(v.data() + v.size()));
    REQUIRE(at != newer.end());
    std::memcpy(&*at, w.data(), w.size());
    test::fix_checksum(newer);
    CHECK(test::error_id([&] { ckpt::import_safetensors_from_memory(newer, net); }) ==
          ckpt::errc::version_newer);
    CHECK(test::state_bytes(net) == before);
}

namespace {

/// A hand-written net that keeps its parameters the C++ ways: a flat arena seen through views, a
/// std::vector, and an Eigen::Tensor kernel (column-major, as Eigen's default).
struct arena_net {
    std::vector<float> arena = std::vector<float>(12, -1.0F); // embed 3x2, then head 2x3
    std::vector<float> bias;
    Eigen::Tensor<float, 4> conv; // out x in x kh x kw
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::tensor("embed", arena.data(), {3, 2}),
           ckpt::tensor("head", std::span<float>(arena).subspan(6), {2, 3}), CEREAL_NVP(bias),
           CEREAL_NVP(conv));
    }
};

} // namespace

TEST_CASE("import: torch weights fill views of an arena, a std::vector and an Eigen::Tensor") {
    std::vector<float> conv(2 * 1 * 2 * 2);
    for (std::size_t i = 0; i < conv.size(); ++i) conv[i] = static_cast<float>(i) + 0.5F;
    const std::vector<std::uint16_t> head = {f16_bits(1), f16_bits(-2), f16_bits(0.5F),
                                             f16_bits(4), f16_bits(8),  f16_bits(-0.25F)};
    const std::vector<std::byte> file =
        st_file({{"embed", "F32", {3, 2}, le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6})},
                 {"head", "F16", {2, 3}, le_bytes(head)},
                 {"bias", "F32", {2}, le_bytes(std::vector<float>{7, 8})},
                 {"conv", "F32", {2, 1, 2, 2}, le_bytes(conv)}});
    arena_net net;
    // F16 into the float view needs widen; the failure leaves the arena as it was.
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(file, net); }) ==
          "[ckpt.schema.302] head: file has half 2x3 (row-major), state expects float 2x3 "
          "(import_options::widen converts it)");
    CHECK(net.arena == std::vector<float>(12, -1.0F));
    CHECK(net.bias.empty());
    ckpt::import_options o;
    o.widen = true;
    const ckpt::import_report report = ckpt::import_safetensors_from_memory(file, net, o);
    CHECK(net.arena == std::vector<float>{1, 2, 3, 4, 5, 6, 1, -2, 0.5F, 4, 8, -0.25F});
    CHECK(net.bias == std::vector<float>{7, 8});
    REQUIRE(net.conv.dimension(0) == 2);
    CHECK(net.conv.dimension(1) == 1);
    CHECK(net.conv.dimension(2) == 2);
    CHECK(net.conv.dimension(3) == 2);
    // torch's row-major [o][i][h][w] is element (o, i, h, w) of the column-major Eigen tensor.
    for (Eigen::Index oc = 0; oc < 2; ++oc) {
        for (Eigen::Index h = 0; h < 2; ++h) {
            for (Eigen::Index w = 0; w < 2; ++w) {
                CHECK(net.conv(oc, 0, h, w) == conv[static_cast<std::size_t>(oc * 4 + h * 2 + w)]);
            }
        }
    }
    REQUIRE(report.converted.size() == 1);
    CHECK(report.converted[0].name == "head");
    // A view's shape never changes: a file whose embed is 2x3 is refused.
    const std::vector<std::byte> wrong =
        st_file({{"embed", "F32", {2, 3}, le_bytes(std::vector<float>{1, 2, 3, 4, 5, 6})},
                 {"head", "F32", {2, 3}, le_bytes(std::vector<float>(6, 0.0F))},
                 {"bias", "F32", {2}, le_bytes(std::vector<float>{7, 8})},
                 {"conv", "F32", {2, 1, 2, 2}, le_bytes(conv)}});
    const auto before = net.arena;
    CHECK(test::error_text([&] { ckpt::import_safetensors_from_memory(wrong, net); }) ==
          "[ckpt.schema.302] embed: file has float 2x3 (row-major), state expects float 3x2");
    CHECK(net.arena == before);
}
