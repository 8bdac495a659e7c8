#pragma once

#include <ckpt/archive/path.hpp>

#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string path_tracker::path() const {
    std::string s;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
        if (i > 1) s += '.';
        if (nodes_[i].name != nullptr)
            s += nodes_[i].name;
        else
            s += std::to_string(nodes_[i].index);
    }
    return s.empty() ? std::string("value") : s;
}

} // namespace ckpt::detail
