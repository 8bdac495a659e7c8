#pragma once
// The console: a live status line on a terminal, plain lines at a modest rate otherwise.

#include "common.hpp"

#include <string>

namespace demo {

class console {
public:
    console();

    [[nodiscard]] bool tty() const noexcept { return tty_; }

    void line(const std::string& s);

    /// On a terminal: redraws the status line (at most ~30 times a second unless `force`).
    void status(const std::string& s, bool force = false);

    void clear_status();

private:
    bool tty_;
    bool shown_ = false;
    clock_type::time_point last_{};
};

/// The program's console, on stdout.
console& out();

} // namespace demo
