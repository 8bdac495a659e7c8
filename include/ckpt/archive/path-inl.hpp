#pragma once

#include <ckpt/archive/path.hpp>

#include <charconv>
#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string path_tracker::path() const {
    std::string s;
    path_into(s);
    return s;
}

CKPT_INLINE void path_tracker::path_into(std::string& out) const {
    out.clear();
    join_into(out);
    if (out.empty()) out = "value";
}

CKPT_INLINE std::string path_tracker::child_path(const char* name) const {
    if (nodes_.empty()) return name; // the root item itself
    std::string s;
    join_into(s);
    if (!s.empty()) s += '.';
    return s + name;
}

CKPT_INLINE void path_tracker::join_into(std::string& s) const {
    // Asked for every tensor of every walk: digits go straight into the string (no temporary),
    // and path_into's string is reused from tensor to tensor.
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
}

} // namespace ckpt::detail
