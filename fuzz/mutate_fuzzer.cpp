// libFuzzer target: libFuzzer's mutations, then the checksum recomputed, so a mutation reaches the
// JSON parser, the validation, the value stream and the tensor copy behind the integrity gate.
// Structure-aware: a mutation hits the whole file, only the JSON header, only the values entry,
// or only the tensor bytes.
#include "fuzz_common.hpp"

#include <algorithm>
#include <optional>
#include <utility>

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max);

namespace {

/// The header length, when it fits in the input.
std::optional<std::uint64_t> header_length(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return std::nullopt;
    std::uint64_t n = 0;
    std::memcpy(&n, data, 8);
    if (n > size - 8) return std::nullopt;
    return n;
}

/// Mutates [begin, begin + len) in place, keeping its length (so offsets stay valid).
void mutate_region(std::uint8_t* data, std::size_t begin, std::size_t len) {
    if (len == 0) return;
    std::vector<std::uint8_t> part(data + begin, data + begin + len);
    const std::size_t got = LLVMFuzzerMutate(part.data(), len, len);
    std::memcpy(data + begin, part.data(), std::min(got, len));
}

/// Only the JSON text; its length may change: the length field is rewritten and, mostly, the
/// text is padded with spaces to 8 bytes as ckpt writes it.
std::size_t mutate_json(std::uint8_t* data, std::size_t size, std::size_t max, unsigned seed) {
    const auto n = header_length(data, size);
    if (!n) return LLVMFuzzerMutate(data, size, max);
    const std::size_t rest = size - 8 - static_cast<std::size_t>(*n);
    if (max < 8 + rest + 1) return size;
    std::vector<std::uint8_t> json(max - 8 - rest);
    if (*n > 0) std::memcpy(json.data(), data + 8, static_cast<std::size_t>(*n));
    std::size_t m = LLVMFuzzerMutate(json.data(), static_cast<std::size_t>(*n), json.size());
    if (seed % 4 != 0) {
        while (m % 8 != 0 && m < json.size()) json[m++] = ' ';
    }
    std::vector<std::uint8_t> tail(data + 8 + *n, data + size);
    const std::uint64_t len = m;
    std::memcpy(data, &len, 8);
    if (m > 0) std::memcpy(data + 8, json.data(), m);
    if (!tail.empty()) std::memcpy(data + 8 + m, tail.data(), tail.size());
    return 8 + m + tail.size();
}

/// The data section's regions of the values entry and of the tensors, from the parsed header.
std::optional<std::pair<std::size_t, std::size_t>>
pick_region(const std::uint8_t* data, std::size_t size, bool values, unsigned seed) {
    const auto n = header_length(data, size);
    if (!n) return std::nullopt;
    try {
        const std::string_view json(reinterpret_cast<const char*>(data + 8),
                                    static_cast<std::size_t>(*n));
        const auto h = ckpt::detail::parse_header(json, size - 8 - *n, ckpt::limits{}, "<m>");
        std::vector<std::pair<std::size_t, std::size_t>> found;
        for (const auto& e : h.entries) {
            if ((e.name == ckpt::detail::values_entry) != values || e.end == e.begin) continue;
            found.emplace_back(static_cast<std::size_t>(8 + *n + e.begin),
                               static_cast<std::size_t>(e.end - e.begin));
        }
        if (found.empty()) return std::nullopt;
        return found[seed % found.size()];
    } catch (const ckpt::error&) {
        return std::nullopt;
    }
}

} // namespace

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size,
                                               std::size_t max, unsigned int seed) {
    switch (seed % 8) {
    case 0:
    case 1:
    case 2: size = LLVMFuzzerMutate(data, size, max); break;
    case 3:
    case 4: size = mutate_json(data, size, max, seed >> 3); break;
    case 5:
    case 6:
    case 7: {
        const bool values = seed % 8 != 7;
        if (const auto r = pick_region(data, size, values, seed >> 3)) {
            mutate_region(data, r->first, r->second);
        } else {
            size = LLVMFuzzerMutate(data, size, max);
        }
        break;
    }
    }
    fuzz::fix_checksum(data, size);
    return size;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::run_input(data, size);
    return 0;
}
