#pragma once

#include <Eigen/Core>

#include <bit>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace ckpt {

static_assert(std::endian::native == std::endian::little,
              "ckpt: the checkpoint format is little-endian; big-endian hosts are not supported");

/// Element types of a tensor: the safetensors dtypes ckpt reads and writes.
enum class dtype : std::uint8_t {
    boolean = 1,
    u8,
    i8,
    u16,
    i16,
    f16,
    bf16,
    u32,
    i32,
    f32,
    u64,
    i64,
    f64,
    f8_e4m3,
    f8_e5m2,
};

/// The safetensors name of a dtype ("F32", "BOOL", ...).
[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: return "BOOL";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::u16: return "U16";
    case dtype::i16: return "I16";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::u32: return "U32";
    case dtype::i32: return "I32";
    case dtype::f32: return "F32";
    case dtype::u64: return "U64";
    case dtype::i64: return "I64";
    case dtype::f64: return "F64";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
    }
    return "?";
}

/// The dtype named by a safetensors string, or nothing for a name outside the closed set.
[[nodiscard]] constexpr std::optional<dtype> dtype_from_string(std::string_view s) noexcept {
    for (int i = 1; i <= static_cast<int>(dtype::f8_e5m2); ++i) {
        if (to_string(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
    }
    return std::nullopt;
}

/// Bytes per element.
[[nodiscard]] constexpr std::uint64_t size_of(dtype t) noexcept {
    switch (t) {
    case dtype::boolean:
    case dtype::u8:
    case dtype::i8:
    case dtype::f8_e4m3:
    case dtype::f8_e5m2: return 1;
    case dtype::u16:
    case dtype::i16:
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::u32:
    case dtype::i32:
    case dtype::f32: return 4;
    case dtype::u64:
    case dtype::i64:
    case dtype::f64: return 8;
    }
    return 0;
}

namespace detail {
template <class T>
inline constexpr bool dependent_false = false;

template <class T>
constexpr dtype dtype_of_impl() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, bool>) {
        return dtype::boolean;
    } else if constexpr (std::is_same_v<U, float>) {
        return dtype::f32;
    } else if constexpr (std::is_same_v<U, double>) {
        return dtype::f64;
    } else if constexpr (std::is_same_v<U, Eigen::half>) {
        return dtype::f16;
    } else if constexpr (std::is_same_v<U, Eigen::bfloat16>) {
        return dtype::bf16;
    } else if constexpr (std::is_integral_v<U>) {
        constexpr bool s = std::is_signed_v<U>;
        if constexpr (sizeof(U) == 1)
            return s ? dtype::i8 : dtype::u8;
        else if constexpr (sizeof(U) == 2)
            return s ? dtype::i16 : dtype::u16;
        else if constexpr (sizeof(U) == 4)
            return s ? dtype::i32 : dtype::u32;
        else if constexpr (sizeof(U) == 8)
            return s ? dtype::i64 : dtype::u64;
        else
            static_assert(dependent_false<T>, "ckpt: integer type of unsupported width");
    } else {
        static_assert(dependent_false<T>,
                      "ckpt: unsupported scalar type (use bool, an integer of 8 to 64 bits, "
                      "float, double, Eigen::half or Eigen::bfloat16)");
    }
}
} // namespace detail

/// True for the scalar types a tensor or value can hold.
template <class T>
inline constexpr bool
    is_supported_scalar_v = std::is_same_v<std::remove_cv_t<T>, bool> ||
                            std::is_same_v<std::remove_cv_t<T>, float> ||
                            std::is_same_v<std::remove_cv_t<T>, double> ||
                            std::is_same_v<std::remove_cv_t<T>, Eigen::half> ||
                            std::is_same_v<std::remove_cv_t<T>, Eigen::bfloat16> ||
                            (std::is_integral_v<T> && sizeof(T) <= 8);

/// The dtype of a C++ scalar type.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<T>();

} // namespace ckpt
