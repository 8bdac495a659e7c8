#pragma once

#include <ckpt/format/convert.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace ckpt::detail {

CKPT_INLINE conversion classify_conversion(dtype from, dtype to) noexcept {
    if (from == to) return conversion::same;
    // Precision (significand bits) and exponent range, smallest first.
    const auto rank = [](dtype t) -> int {
        switch (t) {
        case dtype::f16: return 1;
        case dtype::bf16: return 2;
        case dtype::f32: return 3;
        case dtype::f64: return 4;
        default: return 0;
        }
    };
    const int a = rank(from);
    const int b = rank(to);
    if (a == 0 || b == 0) return conversion::none;
    // F16 and BF16 each hold values the other cannot (precision one way, range the other).
    if (b > a && !(from == dtype::f16 && to == dtype::bf16)) return conversion::widening;
    return conversion::narrowing;
}

namespace convert_impl {

inline std::uint16_t load16(const std::byte* p) noexcept {
    std::uint16_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// F16 to F32, exactly (NaN payloads included).
inline float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { // zero or subnormal: mant * 2^-24, exact in a float
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign != 0 ? -v : v;
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline float bf16_to_f32(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Any of the four as a double, exactly.
inline double load_double(dtype t, const std::byte* p) noexcept {
    switch (t) {
    case dtype::f16: return f16_to_f32(load16(p));
    case dtype::bf16: return bf16_to_f32(load16(p));
    case dtype::f32: {
        float f = 0;
        std::memcpy(&f, p, sizeof f);
        return f;
    }
    default: {
        double d = 0;
        std::memcpy(&d, p, sizeof d);
        return d;
    }
    }
}

/// `v` rounded once, to nearest with ties to even, to a binary format of `mant_bits` stored
/// significand bits and `exp_bits` exponent bits (F16: 10, 5; BF16: 7, 8). Sets `changed` when
/// a finite value is not exact.
inline std::uint16_t round_to_16(double v, int mant_bits, int exp_bits, bool& changed) noexcept {
    const auto sign = static_cast<std::uint16_t>(std::signbit(v) ? 0x8000u : 0u);
    const int bias = (1 << (exp_bits - 1)) - 1;
    const int exp_all = (1 << exp_bits) - 1;
    const auto inf = static_cast<std::uint16_t>(sign | (exp_all << mant_bits));
    if (std::isnan(v)) return static_cast<std::uint16_t>(inf | (1 << (mant_bits - 1)));
    const double a = std::fabs(v);
    if (std::isinf(a)) return inf;
    if (a == 0) return sign;
    int e = 0;
    (void)std::frexp(a, &e);                             // a in [2^(e-1), 2^e)
    const int q = std::max(e - 1, 1 - bias) - mant_bits; // the unit in the last place
    const double t = std::ldexp(a, -q);                  // < 2^(mant_bits + 1): exact
    double r = std::floor(t);
    const double rest = t - r;
    if (rest > 0.5 || (rest == 0.5 && std::fmod(r, 2.0) != 0)) r += 1;
    changed = r != t;
    auto sig = static_cast<std::uint32_t>(r);
    int unit = q;
    if (sig == (2u << mant_bits)) { // rounding carried into the next binade
        sig >>= 1;
        ++unit;
    }
    if (sig < (1u << mant_bits)) return static_cast<std::uint16_t>(sign | sig); // subnormal
    const int field = unit + mant_bits + bias;
    if (field >= exp_all) {
        changed = true;
        return inf;
    }
    const auto exponent = static_cast<std::uint32_t>(field) << mant_bits; // field > 0 here
    return static_cast<std::uint16_t>(sign | exponent | (sig - (1u << mant_bits)));
}

/// `v` rounded to a float as the hardware does (to nearest, ties to even), without the cast of
/// an out-of-range double, which C++ leaves undefined.
inline float round_to_f32(double v) noexcept {
    // FLT_MAX is 2^128 - 2^104; from halfway to the next power, 2^128 - 2^103, on (ties go to
    // the even 2^128), a value rounds to infinity.
    constexpr double to_infinity = 0x1.ffffffp+127;
    const double a = std::fabs(v);
    if (a >= to_infinity && !std::isinf(a)) {
        return std::copysign(std::numeric_limits<float>::infinity(),
                             static_cast<float>(std::signbit(v) ? -1 : 1));
    }
    if (a > static_cast<double>(std::numeric_limits<float>::max()) && !std::isinf(a)) {
        return std::copysign(std::numeric_limits<float>::max(),
                             static_cast<float>(std::signbit(v) ? -1 : 1));
    }
    return static_cast<float>(v);
}

} // namespace convert_impl

CKPT_INLINE std::uint64_t convert_elements(dtype from, const std::byte* src, dtype to,
                                           std::byte* dst, std::uint64_t count) noexcept {
    using namespace convert_impl;
    const std::uint64_t in = size_of(from);
    const std::uint64_t out = size_of(to);
    std::uint64_t changed = 0;
    // The common widenings bit by bit; everything else through one exact double.
    if (to == dtype::f32 && (from == dtype::f16 || from == dtype::bf16)) {
        for (std::uint64_t i = 0; i < count; ++i) {
            const std::uint16_t h = load16(src + i * in);
            const float f = from == dtype::f16 ? f16_to_f32(h) : bf16_to_f32(h);
            std::memcpy(dst + i * out, &f, sizeof f);
        }
        return 0;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
        const double v = load_double(from, src + i * in);
        std::byte* d = dst + i * out;
        switch (to) {
        case dtype::f64: std::memcpy(d, &v, sizeof v); break;
        case dtype::f32: {
            const float f = round_to_f32(v);
            if (!std::isnan(v) && static_cast<double>(f) != v) ++changed;
            std::memcpy(d, &f, sizeof f);
            break;
        }
        default: {
            bool c = false;
            const std::uint16_t h =
                to == dtype::f16 ? round_to_16(v, 10, 5, c) : round_to_16(v, 7, 8, c);
            if (c) ++changed;
            std::memcpy(d, &h, sizeof h);
            break;
        }
        }
    }
    return changed;
}

} // namespace ckpt::detail
