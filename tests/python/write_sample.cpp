// Writes sample.ckpt (with ckpt::save) and sample.expected.json into the current folder, for
// read_safetensors.py to check with a reader that shares no code with ckpt.
//
// The expectation is computed here without ckpt: the dtype names are spelled out, the shape is
// the row-major view of the bytes (a column-major r x c matrix is [c, r], a vector [n]), and the
// bytes are taken coefficient by coefficient in that view's order, then checked against the
// Eigen object's data().
#include <ckpt/ckpt.hpp>
#include <ckpt/types/eigen_tensor.hpp>

#include <Eigen/Core>

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace {

using Eigen::Dynamic;
using Eigen::RowMajor;

struct sample_state {
    Eigen::Matrix<double, 3, 4, RowMajor> f64_fixed_row;                   // F64 [3, 4]
    Eigen::MatrixXf f32_dynamic_col;                                       // F32 5 x 2 -> [2, 5]
    Eigen::Matrix<std::int64_t, Dynamic, 1> i64_vector;                    // I64 [7]
    Eigen::Matrix<std::int32_t, 2, 3> i32_fixed_col;                       // I32 2 x 3 -> [3, 2]
    Eigen::Matrix<std::int16_t, 1, Dynamic> i16_row_vector;                // I16 [5]
    Eigen::Matrix<std::int8_t, Dynamic, Dynamic, RowMajor> i8_dynamic_row; // I8 [4, 3]
    Eigen::Array<std::uint64_t, 2, 2> u64_fixed_array;                     // U64 [2, 2]
    Eigen::Matrix<std::uint32_t, 4, 1> u32_fixed_vector;                   // U32 [4]
    Eigen::Array<std::uint16_t, Dynamic, Dynamic> u16_dynamic_array;       // U16 3 x 5 -> [5, 3]
    Eigen::Matrix<std::uint8_t, 2, Dynamic, RowMajor> u8_half_fixed_row;   // U8 [2, 6]
    Eigen::Matrix<bool, 3, 3, RowMajor> bool_fixed_row;                    // BOOL [3, 3]
    Eigen::MatrixXd f64_empty_col;                                         // F64 0 x 3 -> [3, 0]
    Eigen::VectorXf f32_empty_vector;                                      // F32 [0]
    std::vector<float> f32_std_vector;                                     // F32 [5]
    std::array<std::int32_t, 3> i32_std_array{};                           // I32 [3]
    std::int16_t i16_c_grid[2][3] = {};                                    // I16 [2, 3]
    Eigen::Tensor<float, 3> f32_tensor_col;                 // F32 2 x 3 x 4 -> [4, 3, 2]
    Eigen::Tensor<std::uint8_t, 3, RowMajor> u8_tensor_row; // U8 [2, 2, 3]
    double view_memory[6] = {};                             // not a field: seen through the view

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(f64_fixed_row), CEREAL_NVP(f32_dynamic_col), CEREAL_NVP(i64_vector),
           CEREAL_NVP(i32_fixed_col), CEREAL_NVP(i16_row_vector), CEREAL_NVP(i8_dynamic_row),
           CEREAL_NVP(u64_fixed_array), CEREAL_NVP(u32_fixed_vector), CEREAL_NVP(u16_dynamic_array),
           CEREAL_NVP(u8_half_fixed_row), CEREAL_NVP(bool_fixed_row), CEREAL_NVP(f64_empty_col),
           CEREAL_NVP(f32_empty_vector), CEREAL_NVP(f32_std_vector), CEREAL_NVP(i32_std_array),
           CEREAL_NVP(i16_c_grid), CEREAL_NVP(f32_tensor_col), CEREAL_NVP(u8_tensor_row));
        // F64 3 x 2, column-major -> [2, 3]
        ar(ckpt::tensor("f64_view_col", view_memory, {3, 2}, ckpt::storage_order::column_major));
    }
};

sample_state make_sample() {
    sample_state s;
    const double f64[] = {
        1.0 / 3.0,
        -0.0,
        std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(),
        std::bit_cast<double>(std::uint64_t{0x7ff8'dead'beef'0001}), // NaN, payload
        std::numeric_limits<double>::denorm_min(),
        std::numeric_limits<double>::max(),
        -1e-300,
        2.5,
        -7.0,
        1e100,
        42.0};
    for (Eigen::Index i = 0; i < 3; ++i) {
        for (Eigen::Index j = 0; j < 4; ++j) s.f64_fixed_row(i, j) = f64[i * 4 + j];
    }
    s.f32_dynamic_col.resize(5, 2);
    for (Eigen::Index i = 0; i < 5; ++i) {
        for (Eigen::Index j = 0; j < 2; ++j) {
            s.f32_dynamic_col(i, j) = static_cast<float>(i) * 10.0f + static_cast<float>(j) + 0.5f;
        }
    }
    s.f32_dynamic_col(4, 1) = std::bit_cast<float>(std::uint32_t{0x7fc0'1234}); // NaN, payload
    s.i64_vector.resize(7);
    s.i64_vector << std::numeric_limits<std::int64_t>::min(), -1, 0, 1,
        std::numeric_limits<std::int64_t>::max(), 0x0102'0304'0506'0708, -0x0102'0304'0506'0708;
    s.i32_fixed_col << -2147483647 - 1, -2, 3, 4, 5, 2147483647;
    s.i16_row_vector.resize(5);
    s.i16_row_vector << -32768, -1, 0, 258, 32767;
    s.i8_dynamic_row.resize(4, 3);
    for (Eigen::Index i = 0; i < 4; ++i) {
        for (Eigen::Index j = 0; j < 3; ++j) {
            s.i8_dynamic_row(i, j) = static_cast<std::int8_t>(i * 3 + j - 6);
        }
    }
    s.i8_dynamic_row(3, 2) = std::numeric_limits<std::int8_t>::min();
    s.u64_fixed_array << 0, 1, 0xffff'ffff'ffff'ffff, 0x8000'0000'0000'0001;
    s.u32_fixed_vector << 0, 0xdead'beef, 1, 0xffff'ffff;
    s.u16_dynamic_array.resize(3, 5);
    for (Eigen::Index i = 0; i < 3; ++i) {
        for (Eigen::Index j = 0; j < 5; ++j) {
            s.u16_dynamic_array(i, j) = static_cast<std::uint16_t>(0x0100 * (i + 1) + j);
        }
    }
    s.u8_half_fixed_row.resize(2, 6);
    for (Eigen::Index i = 0; i < 2; ++i) {
        for (Eigen::Index j = 0; j < 6; ++j) {
            s.u8_half_fixed_row(i, j) = static_cast<std::uint8_t>(i * 6 + j + 240 * i);
        }
    }
    for (Eigen::Index i = 0; i < 3; ++i) {
        for (Eigen::Index j = 0; j < 3; ++j) s.bool_fixed_row(i, j) = (i + 2 * j) % 3 == 0;
    }
    s.f64_empty_col.resize(0, 3);
    s.f32_empty_vector.resize(0);
    s.f32_std_vector = {1.5F, -0.0F, std::numeric_limits<float>::infinity(), -3.25F, 1e-40F};
    s.i32_std_array = {-7, 0, 2147483647};
    for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 3; ++j) s.i16_c_grid[i][j] = static_cast<std::int16_t>(-300 * i + j);
    }
    s.f32_tensor_col.resize(2, 3, 4);
    for (Eigen::Index i = 0; i < 2; ++i) {
        for (Eigen::Index j = 0; j < 3; ++j) {
            for (Eigen::Index k = 0; k < 4; ++k) {
                s.f32_tensor_col(i, j, k) = static_cast<float>(100 * i + 10 * j + k) + 0.25F;
            }
        }
    }
    s.u8_tensor_row.resize(2, 2, 3);
    for (Eigen::Index i = 0; i < 12; ++i)
        s.u8_tensor_row.data()[i] = static_cast<std::uint8_t>(20 * i + 3);
    for (int i = 0; i < 6; ++i) s.view_memory[i] = -1.5 * i + 0.125;
    return s;
}

std::string hex_of(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += digits[p[i] >> 4];
        out += digits[p[i] & 0xf];
    }
    return out;
}

template <class S>
std::string hex_of_value(const S& v) {
    unsigned char b[sizeof(S)];
    std::memcpy(b, &v, sizeof(S));
    return hex_of(b, sizeof(S));
}

struct expected_tensor {
    std::string dtype;
    std::vector<Eigen::Index> shape;
    std::string hex;
};

bool failed = false;

/// The row-major view of `m`'s bytes: its shape and its bytes in that order.
template <class Derived>
expected_tensor view_of(const Eigen::PlainObjectBase<Derived>& m, const std::string& dtype,
                        const std::string& name) {
    expected_tensor t;
    t.dtype = dtype;
    if constexpr (Derived::IsVectorAtCompileTime) {
        t.shape = {m.size()};
        for (Eigen::Index i = 0; i < m.size(); ++i) t.hex += hex_of_value(m.coeff(i));
    } else if constexpr (Derived::IsRowMajor) {
        t.shape = {m.rows(), m.cols()};
        for (Eigen::Index i = 0; i < m.rows(); ++i) {
            for (Eigen::Index j = 0; j < m.cols(); ++j) t.hex += hex_of_value(m.coeff(i, j));
        }
    } else {
        t.shape = {m.cols(), m.rows()};
        for (Eigen::Index j = 0; j < m.cols(); ++j) {
            for (Eigen::Index i = 0; i < m.rows(); ++i) t.hex += hex_of_value(m.coeff(i, j));
        }
    }
    // The view must be the object's memory as it is.
    const std::size_t bytes = static_cast<std::size_t>(m.size()) * sizeof(typename Derived::Scalar);
    if (hex_of(reinterpret_cast<const unsigned char*>(m.data()), bytes) != t.hex) {
        std::fprintf(stderr, "write_sample: %s: the coefficient view differs from data()\n",
                     name.c_str());
        failed = true;
    }
    return t;
}

std::string json_of(const std::map<std::string, expected_tensor>& tensors,
                    const std::map<std::string, std::string>& meta) {
    std::string out = "{\n  \"metadata\": {";
    bool first = true;
    for (const auto& [k, v] : meta) {
        out += (first ? "\n    \"" : ",\n    \"") + k + "\": \"" + v + "\"";
        first = false;
    }
    out += "\n  },\n  \"tensors\": {";
    first = true;
    for (const auto& [name, t] : tensors) {
        out += (first ? "\n    \"" : ",\n    \"") + name + "\": {\"dtype\": \"" + t.dtype +
               "\", \"shape\": [";
        for (std::size_t i = 0; i < t.shape.size(); ++i) {
            out += (i > 0 ? ", " : "") + std::to_string(t.shape[i]);
        }
        out += "], \"hex\": \"" + t.hex + "\"}";
        first = false;
    }
    out += "\n  }\n}\n";
    return out;
}

} // namespace

int main() {
    try {
        const sample_state s = make_sample();
        ckpt::metadata meta;
        meta.step = 12;
        meta.epoch = 1;
        meta.tags["sample"] = "write_sample";
        meta.time = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};
        ckpt::save("sample.ckpt", s, meta);

        std::map<std::string, expected_tensor> tensors;
        tensors["f64_fixed_row"] = view_of(s.f64_fixed_row, "F64", "f64_fixed_row");
        tensors["f32_dynamic_col"] = view_of(s.f32_dynamic_col, "F32", "f32_dynamic_col");
        tensors["i64_vector"] = view_of(s.i64_vector, "I64", "i64_vector");
        tensors["i32_fixed_col"] = view_of(s.i32_fixed_col, "I32", "i32_fixed_col");
        tensors["i16_row_vector"] = view_of(s.i16_row_vector, "I16", "i16_row_vector");
        tensors["i8_dynamic_row"] = view_of(s.i8_dynamic_row, "I8", "i8_dynamic_row");
        tensors["u64_fixed_array"] = view_of(s.u64_fixed_array, "U64", "u64_fixed_array");
        tensors["u32_fixed_vector"] = view_of(s.u32_fixed_vector, "U32", "u32_fixed_vector");
        tensors["u16_dynamic_array"] = view_of(s.u16_dynamic_array, "U16", "u16_dynamic_array");
        tensors["u8_half_fixed_row"] = view_of(s.u8_half_fixed_row, "U8", "u8_half_fixed_row");
        tensors["bool_fixed_row"] = view_of(s.bool_fixed_row, "BOOL", "bool_fixed_row");
        tensors["f64_empty_col"] = view_of(s.f64_empty_col, "F64", "f64_empty_col");
        tensors["f32_empty_vector"] = view_of(s.f32_empty_vector, "F32", "f32_empty_vector");
        {
            expected_tensor v{"F32", {5}, ""};
            for (const float x : s.f32_std_vector) v.hex += hex_of_value(x);
            tensors["f32_std_vector"] = v;
            expected_tensor a{"I32", {3}, ""};
            for (const std::int32_t x : s.i32_std_array) a.hex += hex_of_value(x);
            tensors["i32_std_array"] = a;
            expected_tensor g{"I16", {2, 3}, ""};
            for (int i = 0; i < 2; ++i) {
                for (int j = 0; j < 3; ++j) g.hex += hex_of_value(s.i16_c_grid[i][j]);
            }
            tensors["i16_c_grid"] = g;
            // Column-major 2 x 3 x 4: its row-major view is [4, 3, 2], the first index fastest.
            expected_tensor t{"F32", {4, 3, 2}, ""};
            for (Eigen::Index k = 0; k < 4; ++k) {
                for (Eigen::Index j = 0; j < 3; ++j) {
                    for (Eigen::Index i = 0; i < 2; ++i)
                        t.hex += hex_of_value(s.f32_tensor_col(i, j, k));
                }
            }
            tensors["f32_tensor_col"] = t;
            expected_tensor u{"U8", {2, 2, 3}, ""};
            for (Eigen::Index i = 0; i < 2; ++i) {
                for (Eigen::Index j = 0; j < 2; ++j) {
                    for (Eigen::Index k = 0; k < 3; ++k)
                        u.hex += hex_of_value(s.u8_tensor_row(i, j, k));
                }
            }
            tensors["u8_tensor_row"] = u;
            // Column-major 3 x 2 over view_memory: element (i, j) at [i + 3 j]; the row-major
            // view [2, 3] takes j outer, i inner.
            expected_tensor w{"F64", {2, 3}, ""};
            for (int j = 0; j < 2; ++j) {
                for (int i = 0; i < 3; ++i) w.hex += hex_of_value(s.view_memory[i + 3 * j]);
            }
            tensors["f64_view_col"] = w;
        }
        // The state holds nothing but tensors, so ckpt's entry for other values is empty.
        tensors["__ckpt_values__"] = {"U8", {0}, ""};

        const std::map<std::string, std::string> expected_meta = {
            {"ckpt.step", "12"}, {"ckpt.epoch", "1"}, {"tag.sample", "write_sample"}};

        std::ofstream out("sample.expected.json", std::ios::binary);
        out << json_of(tensors, expected_meta);
        out.close();
        if (!out) {
            std::fprintf(stderr, "write_sample: cannot write sample.expected.json\n");
            return 1;
        }
        if (failed) return 1;
        std::printf("wrote sample.ckpt and sample.expected.json (%zu tensors)\n", tensors.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "write_sample: %s\n", e.what());
        return 1;
    }
}
