#pragma once

#include <ckpt/detail/hash.hpp>

// XXH3, inlined. On x86-64 with GCC an AVX2 kernel is compiled as well (with a target
// attribute, so the rest of the program needs no -mavx2) and chosen at run time: 26 GB/s instead
// of SSE2's 18 on this project's CI machine, with the same hash values. (Clang's SSE2 code is
// already as fast as that here.) The kernel is xxHash's own AVX2 kernel written with GCC's vector
// extensions and builtins rather than <immintrin.h>, whose parsing alone costs about 0.4 s in
// every translation unit that includes ckpt. It plugs into the internals of xxHash 0.8.0 and
// 0.8.1 (Debian 12's and the FetchContent pin); with another version, or when the program
// included xxHash's implementation before ckpt, the plain inlined functions are used.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) &&       \
    !defined(XXH_IMPLEM_13a8737387) && !defined(XXH_INLINE_ALL_31684351384) &&                     \
    !defined(CKPT_NO_XXH_DISPATCH)
// The kernel keeps the accumulators in aligned 32-byte vectors; XXH3_update keeps them on the
// stack with XXH_ACC_ALIGN, which the SSE2 build sets to 16.
#ifndef XXH_ACC_ALIGN
#define XXH_ACC_ALIGN 32
#endif
#if XXH_ACC_ALIGN >= 32
#define CKPT_XXH_DISPATCH_CANDIDATE 1
#endif
#endif

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#define CKPT_DEFINED_XXH_INLINE_ALL
#endif
#include <xxhash.h>
#ifdef CKPT_DEFINED_XXH_INLINE_ALL
#undef XXH_INLINE_ALL
#undef CKPT_DEFINED_XXH_INLINE_ALL
#endif

#if defined(CKPT_XXH_DISPATCH_CANDIDATE) && XXH_VERSION_NUMBER >= 800 && XXH_VERSION_NUMBER < 802
#define CKPT_XXH_AVX2 1
#endif

#include <cstring>
#include <new>

namespace ckpt::detail {

#ifdef CKPT_XXH_AVX2
namespace xxh_avx2 {

using u64x4 = unsigned long long __attribute__((__vector_size__(32)));
using i32x8 = int __attribute__((__vector_size__(32)));

#define CKPT_XXH_AVX2_FN __attribute__((__target__("avx2"), __always_inline__)) inline

CKPT_XXH_AVX2_FN u64x4 load(const void* p) noexcept {
    u64x4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// _mm256_shuffle_epi32 and _mm256_mul_epu32.
#define CKPT_XXH_SHUFFLE(v, imm) ((u64x4)__builtin_ia32_pshufd256((i32x8)(v), (imm)))
#define CKPT_XXH_MUL32(a, b) ((u64x4)__builtin_ia32_pmuludq256((i32x8)(a), (i32x8)(b)))

/// XXH3_accumulate_512_avx2: one 64-byte stripe into the eight accumulators.
CKPT_XXH_AVX2_FN void accumulate_512(void* __restrict acc, const void* __restrict input,
                                     const void* __restrict secret) noexcept {
    auto* const xacc = static_cast<u64x4*>(acc);
    for (int i = 0; i < 2; ++i) {
        const u64x4 data = load(static_cast<const unsigned char*>(input) + 32 * i);
        const u64x4 data_key = data ^ load(static_cast<const unsigned char*>(secret) + 32 * i);
        const u64x4 product = CKPT_XXH_MUL32(data_key, CKPT_XXH_SHUFFLE(data_key, 0x31));
        xacc[i] = xacc[i] + CKPT_XXH_SHUFFLE(data, 0x4E) + product;
    }
}

/// XXH3_scrambleAcc_avx2.
CKPT_XXH_AVX2_FN void scramble(void* __restrict acc, const void* __restrict secret) noexcept {
    auto* const xacc = static_cast<u64x4*>(acc);
    constexpr int p = static_cast<int>(XXH_PRIME32_1);
    const i32x8 prime32 = {p, p, p, p, p, p, p, p};
    for (int i = 0; i < 2; ++i) {
        u64x4 v = xacc[i];
        v ^= v >> 47;
        v ^= load(static_cast<const unsigned char*>(secret) + 32 * i);
        xacc[i] =
            CKPT_XXH_MUL32(v, prime32) + (CKPT_XXH_MUL32(CKPT_XXH_SHUFFLE(v, 0x31), prime32) << 32);
    }
}

#undef CKPT_XXH_SHUFFLE
#undef CKPT_XXH_MUL32
#undef CKPT_XXH_AVX2_FN

} // namespace xxh_avx2

/// XXH3_64bits_update with the AVX2 kernel.
__attribute__((__target__("avx2"))) inline void
xxh3_update_avx2(XXH3_state_t* state, const void* data, std::size_t n) noexcept {
    XXH3_update(state, static_cast<const xxh_u8*>(data), n, xxh_avx2::accumulate_512,
                xxh_avx2::scramble);
}

/// Whether this CPU (and its operating system) runs AVX2; asked once.
inline bool cpu_has_avx2() noexcept {
    static const bool yes = __builtin_cpu_supports("avx2") != 0;
    return yes;
}
#endif

static_assert(sizeof(XXH3_state_t) <= 640 && alignof(XXH3_state_t) <= 64,
              "ckpt: hasher's storage does not fit this xxHash's XXH3_state_t");

CKPT_INLINE hasher::hasher() noexcept {
    XXH3_64bits_reset(::new (static_cast<void*>(state_)) XXH3_state_t{});
}

CKPT_INLINE void hasher::update(const void* data, std::size_t n) noexcept {
    auto* state = std::launder(reinterpret_cast<XXH3_state_t*>(state_));
#ifdef CKPT_XXH_AVX2
    if (cpu_has_avx2()) {
        xxh3_update_avx2(state, data, n);
        return;
    }
#endif
    XXH3_64bits_update(state, data, n);
}

CKPT_INLINE std::uint64_t hasher::digest() const noexcept {
    return XXH3_64bits_digest(std::launder(reinterpret_cast<const XXH3_state_t*>(state_)));
}

CKPT_INLINE std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept {
    hasher h;
    h.update(data, n);
    return h.digest();
}

CKPT_INLINE std::string to_hex(std::uint64_t v) {
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) {
        s[static_cast<std::size_t>(i)] = "0123456789abcdef"[v & 0xF];
    }
    return s;
}

CKPT_INLINE std::optional<std::uint64_t> from_hex(std::string_view s) noexcept {
    if (s.size() != 16) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
    }
    return v;
}

} // namespace ckpt::detail
