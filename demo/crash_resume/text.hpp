#pragma once
// Text: lists joined and split (the pipe's records, the console, the plot's captions), numbers
// with every digit of a float (the pipe, loss.csv), and printf into a std::string.

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

std::string join(const std::vector<std::string>& v, std::string_view sep);

std::vector<std::string> split(std::string_view s, char sep);

std::string number(double v);

std::string format(const char* fmt, auto... args) {
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, args...);
    return buf;
}

} // namespace demo
