// The `ckpt` command's shared formatting: times, sizes, shapes, JSON, colours.

#include "tool.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <unistd.h>

namespace ckpt_tool {

namespace {

std::string wrap(bool on, std::string_view code, std::string_view s) {
    if (!on) return std::string(s);
    return std::string("\x1b[") + std::string(code) + "m" + std::string(s) + "\x1b[0m";
}

} // namespace

std::string terminal::green(std::string_view s) const {
    return wrap(color, "32", s);
}
std::string terminal::red(std::string_view s) const {
    return wrap(color, "31", s);
}
std::string terminal::yellow(std::string_view s) const {
    return wrap(color, "33", s);
}
std::string terminal::bold(std::string_view s) const {
    return wrap(color, "1", s);
}

terminal terminal::detect() {
    terminal t;
    const char* no_color = std::getenv("NO_COLOR"); // https://no-color.org
    t.color = ::isatty(STDOUT_FILENO) == 1 && (no_color == nullptr || *no_color == '\0');
    t.stderr_is_tty = ::isatty(STDERR_FILENO) == 1;
    return t;
}

std::string iso_time(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    if (t == system_clock::time_point{}) return "-";
    const auto ns = duration_cast<nanoseconds>(t.time_since_epoch()).count();
    std::int64_t secs = ns / 1'000'000'000;
    std::int64_t frac = ns % 1'000'000'000;
    if (frac < 0) {
        frac += 1'000'000'000;
        --secs;
    }
    const auto tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[64];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char tail[16];
    std::snprintf(tail, sizeof tail, ".%09lldZ", static_cast<long long>(frac));
    return std::string(buf, n) + tail;
}

std::string human_bytes(std::uint64_t n) {
    static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n < 1024) return std::to_string(n) + " B";
    double v = static_cast<double>(n);
    int u = -1;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

std::string eigen_shape_text(const ckpt::tensor_info& t) {
    if (t.shape.empty()) return "scalar";
    if (t.shape.size() == 1) return "[" + std::to_string(t.shape[0]) + "]";
    std::vector<std::uint64_t> dims = t.shape;
    // A column-major tensor is stored as the row-major view of its bytes: its dimensions
    // reversed.
    if (t.order == 'C') std::reverse(dims.begin(), dims.end());
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i > 0) s += "x";
        s += std::to_string(dims[i]);
    }
    if (t.order == 'R' || t.order == 'C') s += " " + std::string(order_text(t.order));
    return s;
}

std::string number_text(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

std::string_view order_text(char order) {
    return order == 'R' ? "row-major" : order == 'C' ? "column-major" : "-";
}

std::string_view placement_text(ckpt::placement_kind k) {
    switch (k) {
    case ckpt::placement_kind::sharded: return "sharded";
    case ckpt::placement_kind::rank_local: return "rank_local";
    case ckpt::placement_kind::replicated: break;
    }
    return "replicated";
}

void write_number(json_writer& w, double v) {
    if (std::isfinite(v)) {
        w.Double(v);
    } else {
        w.Null();
    }
}

void write_string(json_writer& w, std::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void write_uints(json_writer& w, const std::vector<std::uint64_t>& v) {
    w.StartArray();
    for (const std::uint64_t x : v) w.Uint64(x);
    w.EndArray();
}

void write_metrics(json_writer& w, const std::map<std::string, double>& metrics) {
    w.StartObject();
    for (const auto& [k, v] : metrics) {
        write_string(w, k);
        write_number(w, v);
    }
    w.EndObject();
}

void write_metadata_members(json_writer& w, const ckpt::metadata& m) {
    w.Key("step");
    w.Int64(m.step);
    w.Key("epoch");
    w.Int64(m.epoch);
    w.Key("time");
    write_string(w, iso_time(m.time));
    w.Key("metrics");
    write_metrics(w, m.metrics);
    w.Key("tags");
    w.StartObject();
    for (const auto& [k, v] : m.tags) {
        write_string(w, k);
        write_string(w, v);
    }
    w.EndObject();
}

void print_json(const rapidjson::StringBuffer& buffer) {
    std::fwrite(buffer.GetString(), 1, buffer.GetSize(), stdout);
    std::fputc('\n', stdout);
}

void print_error(std::string_view command, std::string_view what) {
    std::fflush(stdout);
    std::fprintf(stderr, "ckpt %.*s: %.*s\n", static_cast<int>(command.size()), command.data(),
                 static_cast<int>(what.size()), what.data());
}

/// A floating-point format of `exponent` and `mantissa` bits; `finite_only` is F8_E4M3's
/// variant (no infinities; all ones is NaN).
double decode_float(std::uint32_t bits, int exponent, int mantissa, bool finite_only) {
    const int bias = (1 << (exponent - 1)) - 1;
    const std::uint32_t sign = bits >> (exponent + mantissa);
    const std::uint32_t e = (bits >> mantissa) & ((1u << exponent) - 1);
    const std::uint32_t m = bits & ((1u << mantissa) - 1);
    const double s = sign != 0 ? -1.0 : 1.0;
    const std::uint32_t e_max = (1u << exponent) - 1;
    if (e == e_max) {
        if (finite_only) {
            if (m == (1u << mantissa) - 1) return std::numeric_limits<double>::quiet_NaN();
        } else {
            return m == 0 ? s * std::numeric_limits<double>::infinity()
                          : std::numeric_limits<double>::quiet_NaN();
        }
    }
    if (e == 0) return s * std::ldexp(static_cast<double>(m), 1 - bias - mantissa);
    return s * std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -mantissa),
                          static_cast<int>(e) - bias);
}

} // namespace ckpt_tool
