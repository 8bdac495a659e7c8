#pragma once

#include <ckpt/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckpt::detail {

/// Streaming XXH3-64 over everything written or read, in order. The state is XXH3_state_t, kept
/// opaque here so that only the definitions include xxHash.
class hasher {
public:
    hasher() noexcept;
    void update(const void* data, std::size_t n) noexcept;
    [[nodiscard]] std::uint64_t digest() const noexcept;

private:
    alignas(64) unsigned char state_[640];
};

/// XXH3-64 of one buffer (the streaming and one-shot forms give the same value).
[[nodiscard]] std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept;

/// 16 lowercase hex digits.
[[nodiscard]] std::string to_hex(std::uint64_t v);

/// Parses exactly 16 lowercase hex digits.
[[nodiscard]] std::optional<std::uint64_t> from_hex(std::string_view s) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/detail/hash-inl.hpp>
#endif
