#pragma once

#include <ckpt/format/metadata_codec.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::string format_double(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

CKPT_INLINE std::optional<double> parse_double(std::string_view s) {
    double v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

CKPT_INLINE std::optional<std::int64_t> parse_int(std::string_view s) {
    std::int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

CKPT_INLINE std::string format_time(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto ns = duration_cast<nanoseconds>(t.time_since_epoch());
    const auto day = floor<days>(sys_time<nanoseconds>(ns));
    const year_month_day ymd(day);
    const hh_mm_ss<nanoseconds> hms(sys_time<nanoseconds>(ns) - day);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%09lldZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                  static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                  static_cast<long long>(hms.subseconds().count()));
    return buf;
}

CKPT_INLINE std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s) {
    using namespace std::chrono;
    // Offsets of the fields in the fixed-width form.
    if (s.size() != 30 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[29] != 'Z') {
        return std::nullopt;
    }
    const auto field = [&](std::size_t at, std::size_t n) -> std::optional<std::int64_t> {
        std::int64_t v = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (s[i] < '0' || s[i] > '9') return std::nullopt;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    const auto y = field(0, 4), mo = field(5, 2), d = field(8, 2), h = field(11, 2),
               mi = field(14, 2), sec = field(17, 2), ns = field(20, 9);
    if (!y || !mo || !d || !h || !mi || !sec || !ns || *h > 23 || *mi > 59 || *sec > 59) {
        return std::nullopt;
    }
    const year_month_day ymd{year(static_cast<int>(*y)), month(static_cast<unsigned>(*mo)),
                             day(static_cast<unsigned>(*d))};
    if (!ymd.ok()) return std::nullopt;
    // The clock counts nanoseconds in 64 bits (years 1677 to 2262): refuse what it cannot hold
    // instead of overflowing.
    const std::int64_t secs =
        static_cast<std::int64_t>(sys_days(ymd).time_since_epoch().count()) * 86400 + *h * 3600 +
        *mi * 60 + *sec;
    std::int64_t total = 0;
    if (__builtin_mul_overflow(secs, std::int64_t{1'000'000'000}, &total) ||
        __builtin_add_overflow(total, *ns, &total)) {
        return std::nullopt;
    }
    return system_clock::time_point(duration_cast<system_clock::duration>(nanoseconds(total)));
}

CKPT_INLINE void encode_user_metadata(const metadata& m,
                                      std::vector<std::pair<std::string, std::string>>& out) {
    out.emplace_back(key_step, std::to_string(m.step));
    out.emplace_back(key_epoch, std::to_string(m.epoch));
    out.emplace_back(key_time, format_time(m.time));
    for (const auto& [k, v] : m.metrics)
        out.emplace_back(std::string(metric_prefix) + k, format_double(v));
    for (const auto& [k, v] : m.tags) out.emplace_back(std::string(tag_prefix) + k, v);
}

CKPT_INLINE metadata decode_metadata(const std::map<std::string, std::string>& raw,
                                     const std::string& where) {
    const auto bad = [&](std::string_view key, const std::string& value) {
        throw_error<corrupt_error>(errc::corrupt_header, "'" + where + "': __metadata__ " +
                                                             std::string(key) + " = '" + value +
                                                             "' does not parse");
    };
    metadata m;
    for (const auto& [k, v] : raw) {
        const std::string_view key(k);
        if (key == key_step || key == key_epoch) {
            const auto n = parse_int(v);
            if (!n) bad(key, v);
            (key == key_step ? m.step : m.epoch) = *n;
        } else if (key == key_time) {
            const auto t = parse_time(v);
            if (!t) bad(key, v);
            m.time = *t;
        } else if (key.starts_with(metric_prefix)) {
            const auto d = parse_double(v);
            if (!d) bad(key, v);
            m.metrics.emplace(std::string(key.substr(metric_prefix.size())), *d);
        } else if (key.starts_with(tag_prefix)) {
            m.tags.emplace(std::string(key.substr(tag_prefix.size())), v);
        }
    }
    return m;
}

} // namespace ckpt::detail
