#pragma once

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#define CKPT_DEFINED_XXH_INLINE_ALL
#endif
#include <xxhash.h>
#ifdef CKPT_DEFINED_XXH_INLINE_ALL
#undef XXH_INLINE_ALL
#undef CKPT_DEFINED_XXH_INLINE_ALL
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckpt::detail {

/// Streaming XXH3-64 over everything written or read, in order.
class hasher {
public:
    hasher() noexcept { XXH3_64bits_reset(&state_); }
    void update(const void* data, std::size_t n) noexcept { XXH3_64bits_update(&state_, data, n); }
    [[nodiscard]] std::uint64_t digest() const noexcept { return XXH3_64bits_digest(&state_); }

private:
    XXH3_state_t state_{};
};

/// XXH3-64 of one buffer.
[[nodiscard]] inline std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept {
    return XXH3_64bits(data, n);
}

/// 16 lowercase hex digits.
[[nodiscard]] inline std::string to_hex(std::uint64_t v) {
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) {
        s[static_cast<std::size_t>(i)] = "0123456789abcdef"[v & 0xF];
    }
    return s;
}

/// Parses exactly 16 lowercase hex digits.
[[nodiscard]] inline std::optional<std::uint64_t> from_hex(std::string_view s) noexcept {
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
