#pragma once

#include <ckpt/archive/path.hpp>

#include <charconv>
#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string path_tracker::path() const {
    std::string s = joined();
    if (s.empty()) s = "value";
    return s;
}

CKPT_INLINE std::string path_tracker::child_path(const char* name) const {
    std::string s = joined();
    if (nodes_.empty()) return name; // the root item itself
    if (!s.empty()) s += '.';
    return s + name;
}

CKPT_INLINE std::string path_tracker::joined() const {
    // Asked for every tensor of every walk: digits go straight into the string (no temporary),
    // which a short path ("layers.12.weight") holds without allocating.
    std::string s;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
        if (i > 1) s += '.';
        if (nodes_[i].name != nullptr) {
            s += nodes_[i].name;
        } else {
            char digits[20];
            const auto end = std::to_chars(digits, digits + sizeof digits, nodes_[i].index).ptr;
            s.append(digits, end);
        }
    }
    return s;
}

} // namespace ckpt::detail
