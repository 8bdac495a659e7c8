#include "text.hpp"

#include <cstddef>

namespace demo {

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : std::string(sep)) + x;
    return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        const std::size_t at = s.find(sep, start);
        out.emplace_back(s.substr(start, at - start));
        if (at == std::string_view::npos) break;
        start = at + 1;
    }
    return out;
}

std::string number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v); // enough for a float's every digit
    return buf;
}

} // namespace demo
