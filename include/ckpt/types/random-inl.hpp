#pragma once

#include <ckpt/types/random.hpp>

#include <ckpt/error.hpp>

#include <locale>
#include <sstream>
#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string random_text(void (*put)(std::ostream&, const void*), const void* r) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    put(os, r);
    return std::move(os).str();
}

CKPT_INLINE void parse_random(const std::string& text, void (*get)(std::istream&, void*), void* r) {
    std::istringstream is(text);
    is.imbue(std::locale::classic());
    get(is, r);
    if (is.fail()) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   "a random engine or distribution state does not parse");
    }
}

} // namespace ckpt::detail
