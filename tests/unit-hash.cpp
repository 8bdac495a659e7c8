// The checksum's hash: the AVX2 kernels chosen at run time must give XXH3-64 exactly, for every
// length class (short inputs, one stripe, blocks, many blocks) and every split of a stream.

#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

// The reference: xxHash's own XXH3, inlined. Header-only, ckpt included it already (this is then
// a no-op); in the compiled mode ckpt's hash is in the library and this is the first include.
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hash_test {

inline std::vector<unsigned char> pattern(std::size_t n) {
    std::vector<unsigned char> v(n);
    std::uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (auto& b : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b = static_cast<unsigned char>(x >> 56);
    }
    return v;
}

} // namespace hash_test

TEST_CASE("hash_bytes is XXH3-64: known values") {
    // XXH3_64bits with seed 0 of the empty input (xxHash's specification) and of "abc".
    CHECK(ckpt::detail::hash_bytes("", 0) == 0x2D06800538D394C2ULL);
    CHECK(ckpt::detail::hash_bytes("abc", 3) == 0x78AF5F94892F3950ULL);
}

TEST_CASE("the streaming hasher equals one-shot XXH3-64 for every length and split") {
    const auto data = hash_test::pattern((std::size_t{3} << 20) + 777);
    for (const std::size_t n :
         {std::size_t{0}, std::size_t{1}, std::size_t{16}, std::size_t{17}, std::size_t{128},
          std::size_t{129}, std::size_t{240}, std::size_t{241}, std::size_t{1024},
          std::size_t{1025}, std::size_t{65536}, std::size_t{65537}, data.size()}) {
        CAPTURE(n);
        const std::uint64_t expected = XXH3_64bits(data.data(), n);
        CHECK(ckpt::detail::hash_bytes(data.data(), n) == expected);
        for (const std::size_t split : {std::size_t{1}, std::size_t{63}, std::size_t{64},
                                        std::size_t{1000}, std::size_t{1} << 20}) {
            ckpt::detail::hasher h;
            for (std::size_t at = 0; at < n; at += split) {
                h.update(data.data() + at, at + split <= n ? split : n - at);
            }
            CHECK(h.digest() == expected);
        }
    }
#if defined(CKPT_COMPILED)
    MESSAGE("compiled mode: the hash is the library's (see single-unit-hash for the kernels)");
#elif defined(CKPT_XXH_AVX2)
    const std::string runs = ckpt::detail::cpu_has_avx2() ? "runs them" : "does not";
    MESSAGE("AVX2 kernels compiled in; this CPU " << runs);
#else
    MESSAGE("AVX2 kernels not compiled in: the plain XXH3 functions are used");
#endif
}
