#pragma once

#include <ckpt/archive/path.hpp>

#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string path_tracker::path() const {
    std::string s = joined();
    return s.empty() ? std::string("value") : s;
}

CKPT_INLINE std::string path_tracker::child_path(const char* name) const {
    std::string s = joined();
    if (nodes_.empty()) return name; // the root item itself
    if (!s.empty()) s += '.';
    return s + name;
}

CKPT_INLINE std::string path_tracker::joined() const {
    std::string s;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
        if (i > 1) s += '.';
        if (nodes_[i].name != nullptr)
            s += nodes_[i].name;
        else
            s += std::to_string(nodes_[i].index);
    }
    return s;
}

} // namespace ckpt::detail
