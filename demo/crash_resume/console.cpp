#include "console.hpp"

#include <cstdio>

#include <unistd.h>

namespace demo {

console::console() : tty_(::isatty(STDOUT_FILENO) == 1) {}

void console::line(const std::string& s) {
    clear_status();
    std::fputs(s.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

void console::status(const std::string& s, bool force) {
    if (!tty_) return;
    const auto now = clock_type::now();
    if (!force && shown_ && now - last_ < std::chrono::milliseconds(33)) return;
    last_ = now;
    std::fputs(("\r\x1b[K" + s).c_str(), stdout);
    std::fflush(stdout);
    shown_ = true;
}

void console::clear_status() {
    if (tty_ && shown_) std::fputs("\r\x1b[K", stdout);
    shown_ = false;
}

console& out() {
    static console c;
    return c;
}

} // namespace demo
