#pragma once

#include <ckpt/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ckpt::detail {

/// Tracks where an archive is in the state, so tensors and errors get a field path such as
/// "model.layers.0.weight". Named fields (cereal NVPs) use their name; unnamed ones their
/// position among their siblings. Paths are built only when asked for.
class path_tracker {
public:
    /// The next item pushed is named `name` (must outlive that item).
    void name_next(const char* name) noexcept { next_name_ = name; }

    void push() {
        if (nodes_.empty()) {
            nodes_.push_back({nullptr, 0, 0});
        } else {
            node& parent = nodes_.back();
            nodes_.push_back({next_name_, parent.children++, 0});
        }
        next_name_ = nullptr;
    }
    void pop() noexcept {
        if (!nodes_.empty()) nodes_.pop_back();
    }

    /// The current item's path; the root state is "" and a bare root tensor is "value".
    [[nodiscard]] std::string path() const;
    /// path(), written into `out` (whose memory is reused from call to call).
    void path_into(std::string& out) const;
    /// The path of a child of the current item named `name`.
    [[nodiscard]] std::string child_path(const char* name) const;
    /// The current item's path, or "(the state)" for the root object itself.
    [[nodiscard]] std::string object_path() const {
        return nodes_.size() <= 1 ? std::string("(the state)") : path();
    }

private:
    /// The names of the nodes below the root, joined by dots, appended to `s`.
    void join_into(std::string& s) const;
    struct node {
        const char* name;
        std::uint64_t index;
        std::uint64_t children;
    };
    std::vector<node> nodes_;
    const char* next_name_ = nullptr;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/archive/path-inl.hpp>
#endif
