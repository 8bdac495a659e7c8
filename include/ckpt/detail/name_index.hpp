#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// A file's tensor names to their entries: what every load asks for each tensor, several
/// times. An open-addressing table of (hash, item) slots over the items in insertion order:
/// a lookup reads one slot array and the name it finds, where a node-based map chased a
/// bucket, a node and the name (about 50 ns a lookup at 4,096 tensors, 1.4 ms of a load).
///
/// The names are views: whoever fills the index keeps them alive and in place. Pointers to
/// items stay valid until the next emplace.
class name_index {
public:
    struct item {
        std::string_view first; ///< the name
        std::size_t second;     ///< its entry
    };

    [[nodiscard]] const item* end() const noexcept { return nullptr; }
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

    /// The item named `name`, or end().
    [[nodiscard]] const item* find(std::string_view name) const noexcept {
        if (slots_.empty()) return nullptr;
        const std::uint64_t h = hash(name);
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t i = static_cast<std::size_t>(h) & mask_;; i = (i + 1) & mask_) {
            const slot& s = slots_[i];
            if (s.item == 0) return nullptr;
            if (s.tag == tag && items_[s.item - 1].first == name) return &items_[s.item - 1];
        }
    }
    [[nodiscard]] std::size_t count(std::string_view name) const noexcept {
        return find(name) != nullptr ? 1 : 0;
    }

    /// Adds `name` unless it is there. @returns its item, and whether it was added
    std::pair<const item*, bool> emplace(std::string_view name, std::size_t entry) {
        if (const item* found = find(name)) return {found, false};
        if ((items_.size() + 1) * 2 > slots_.size()) grow();
        if (items_.size() >= 0xFFFFFFFEU) throw std::length_error("ckpt: more than 2^32 names");
        items_.push_back({name, entry});
        place(hash(name), static_cast<std::uint32_t>(items_.size()));
        return {&items_.back(), true};
    }
    /// `name` now gives `entry`, whether it was there or not.
    void insert_or_assign(std::string_view name, std::size_t entry) {
        const auto [it, added] = emplace(name, entry);
        if (!added) items_[static_cast<std::size_t>(it - items_.data())].second = entry;
    }

    void reserve(std::size_t n) {
        items_.reserve(n);
        std::size_t want = 16;
        while (want < n * 2) want *= 2;
        if (want > slots_.size()) rehash(want);
    }
    void clear() noexcept {
        items_.clear();
        slots_.clear();
        mask_ = 0;
    }

private:
    struct slot {
        std::uint32_t tag;  ///< the hash's high half
        std::uint32_t item; ///< 1 + its index in items_; 0: empty
    };

    /// 8 bytes at a time, mixed as in MurmurHash3's finalizer: names differ mostly in their
    /// last digits, which the low bits (the slot) must feel.
    static std::uint64_t hash(std::string_view s) noexcept {
        std::uint64_t h = 0x9E3779B97F4A7C15ULL ^ s.size();
        const char* p = s.data();
        std::size_t n = s.size();
        const auto mix = [&h](std::uint64_t w) {
            h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
            h ^= h >> 33;
        };
        for (; n >= 8; n -= 8, p += 8) {
            std::uint64_t w = 0;
            std::memcpy(&w, p, 8);
            mix(w);
        }
        if (n != 0) {
            std::uint64_t w = 0;
            for (std::size_t i = 0; i < n; ++i) {
                w |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
            }
            mix(w);
        }
        h *= 0xC4CEB9FE1A85EC53ULL;
        return h ^ (h >> 33);
    }

    void place(std::uint64_t h, std::uint32_t item_number) noexcept {
        std::size_t i = static_cast<std::size_t>(h) & mask_;
        while (slots_[i].item != 0) i = (i + 1) & mask_;
        slots_[i] = {static_cast<std::uint32_t>(h >> 32), item_number};
    }
    void grow() { rehash(slots_.empty() ? 16 : slots_.size() * 2); }
    void rehash(std::size_t n) {
        slots_.assign(n, slot{0, 0});
        mask_ = n - 1;
        for (std::size_t k = 0; k < items_.size(); ++k) {
            place(hash(items_[k].first), static_cast<std::uint32_t>(k + 1));
        }
    }

    std::vector<item> items_;
    std::vector<slot> slots_;
    std::size_t mask_ = 0;
};

} // namespace ckpt::detail
