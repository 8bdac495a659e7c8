#pragma once

#include <ckpt/error.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt {

CKPT_INLINE error::error(int id, std::string_view kind, const std::string& message)
    : std::runtime_error("[ckpt." + std::string(kind) + "." + std::to_string(id) + "] " + message),
      id_(id), kind_(kind) {}

CKPT_INLINE error::~error() = default;

CKPT_INLINE io_error::io_error(int id, const std::string& message, std::string operation,
                               std::string path, std::error_code code)
    : error(id, "io", message), operation_(std::move(operation)), path_(std::move(path)),
      code_(code) {}

CKPT_INLINE schema_error::schema_error(std::vector<schema_problem> problems, std::size_t total)
    : error(problems.front().id, "schema", describe(problems, std::max(total, problems.size()))),
      problems_(std::move(problems)), total_(std::max(total, problems_.size())) {}

CKPT_INLINE std::string schema_error::describe(const std::vector<schema_problem>& problems,
                                               std::size_t total) {
    std::string s = problems.front().path + ": " + problems.front().text;
    if (total > 1) {
        s += " (and " + std::to_string(total - 1) + " more:";
        const std::size_t shown = std::min({problems.size(), total, listed});
        for (std::size_t i = 1; i < shown; ++i) {
            s += "\n  [ckpt.schema." + std::to_string(problems[i].id) + "] " + problems[i].path +
                 ": " + problems[i].text;
        }
        if (total > shown) s += "\n  ... " + std::to_string(total - shown) + " not listed";
        s += ")";
    }
    return s;
}

namespace detail {

CKPT_INLINE void throw_io(int id, std::string_view operation, const std::string& path, int err,
                          std::string_view consequence) {
    std::string message = std::string(operation) + " '" + path + "' failed: " + std::strerror(err) +
                          " (errno " + std::to_string(err) + ")";
    if (!consequence.empty()) {
        message += "; ";
        message += consequence;
    }
    throw_error<io_error>(id, message, std::string(operation), path,
                          std::error_code(err, std::generic_category()));
}

} // namespace detail
} // namespace ckpt
