#pragma once

#include <ckpt/format/header.hpp>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::string shape_string(const std::vector<std::uint64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

CKPT_INLINE std::string build_header(const std::vector<std::pair<std::string, std::string>>& meta,
                                     const std::vector<file_tensor>& entries) {
    // Written by hand, byte for byte what rapidjson::Writer writes: a state of thousands of
    // tensors spent most of its plan here, half of it validating UTF-8 one character at a time.
    // A string of printable ASCII without '"' or '\\' (every field path in practice) is copied
    // as it is; any other goes through rapidjson's writer, which escapes and validates it.
    std::size_t reserve = 64 + entries.size() * 96;
    for (const auto& [k, v] : meta) reserve += k.size() + v.size() + 6;
    std::string json;
    json.reserve(reserve);
    const auto str = [&json](std::string_view s) {
        const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u >= 0x20 && u < 0x7F && c != '"' && c != '\\';
        });
        if (plain) {
            json += '"';
            json.append(s);
            json += '"';
            return;
        }
        rapidjson::StringBuffer buf;
        rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                          rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
            w(buf);
        if (s.size() > 0xFFFFFFFFu ||
            !w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true)) {
            throw_error<usage_error>(errc::usage_argument,
                                     "a name or metadata string is not valid UTF-8: '" +
                                         std::string(s.substr(0, 64)) + "'");
        }
        json.append(buf.GetString(), buf.GetSize());
    };
    const auto number = [&json](std::uint64_t v) {
        char digits[24];
        const auto r = std::to_chars(digits, digits + sizeof digits, v);
        json.append(digits, r.ptr);
    };
    json += '{';
    bool first = true;
    if (!meta.empty()) {
        str("__metadata__");
        json += ":{";
        for (const auto& [k, v] : meta) {
            if (!first) json += ',';
            first = false;
            str(k);
            json += ':';
            str(v);
        }
        json += '}';
    }
    for (const auto& e : entries) {
        if (!meta.empty() || &e != entries.data()) json += ',';
        str(e.name);
        json += ":{\"dtype\":";
        str(to_string(e.type));
        json += ",\"shape\":[";
        for (std::size_t i = 0; i < e.shape.size(); ++i) {
            if (i > 0) json += ',';
            number(e.shape[i]);
        }
        json += "],\"data_offsets\":[";
        number(e.begin);
        json += ',';
        number(e.end);
        json += "]}";
    }
    json += '}';
    json.append((8 - json.size() % 8) % 8, ' ');
    return json;
}

#if defined(__clang__)
#pragma clang diagnostic push
// rapidjson's member iterators compare ambiguously under C++20's reversed operators.
#pragma clang diagnostic ignored "-Wambiguous-reversed-operator"
#endif
/// A decimal number of at most 19 digits (below 2^63), no sign, no leading zero; nullopt else.
CKPT_INLINE std::optional<std::uint64_t> parse_row_count(std::string_view text) {
    if (text.empty() || text.size() > 19 || (text.size() > 1 && text[0] == '0')) return {};
    std::uint64_t n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') return {};
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n > static_cast<std::uint64_t>(INT64_MAX)) return {};
    return n;
}

/// ckpt.placement (one placement_kind character per entry) and ckpt.shards ("offset/global"
/// per sharded entry, comma-separated, in header order); both absent: every entry replicated.
CKPT_INLINE void parse_placement(parsed_header& h, const std::string& where) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    const auto pit = h.meta.find("ckpt.placement");
    const auto sit = h.meta.find("ckpt.shards");
    if (pit == h.meta.end()) {
        if (sit != h.meta.end())
            corrupt(errc::corrupt_header, "ckpt.shards without ckpt.placement");
        return;
    }
    const std::string& kinds = pit->second;
    if (kinds.size() != h.entries.size()) {
        corrupt(errc::corrupt_header, "ckpt.placement has " + std::to_string(kinds.size()) +
                                          " characters for " + std::to_string(h.entries.size()) +
                                          " entries");
    }
    std::string_view shards =
        sit != h.meta.end() ? std::string_view(sit->second) : std::string_view();
    bool any_shard = false;
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        file_tensor& e = h.entries[i];
        const char c = kinds[i];
        if (c != '-' && c != 'S' && c != 'L') {
            corrupt(errc::corrupt_header, std::string("ckpt.placement holds '") + c + "'");
        }
        if (c != '-' && e.name == values_entry) {
            corrupt(errc::corrupt_header, "ckpt.placement places the values entry");
        }
        e.place.kind = static_cast<placement_kind>(c);
        if (c != 'S') continue;
        if (e.shape.empty() || e.order == 'C') {
            corrupt(errc::corrupt_header,
                    "ckpt.placement shards '" + e.name + "', which " +
                        (e.shape.empty() ? "has no rows" : "is column-major"));
        }
        if (sit == h.meta.end()) {
            corrupt(errc::corrupt_header,
                    "ckpt.placement shards '" + e.name + "' but there is no ckpt.shards");
        }
        if (any_shard) {
            if (shards.empty() || shards[0] != ',') {
                corrupt(errc::corrupt_header, "ckpt.shards has fewer items than sharded entries");
            }
            shards.remove_prefix(1);
        }
        any_shard = true;
        const std::size_t end = std::min(shards.find(','), shards.size());
        const std::string_view item = shards.substr(0, end);
        shards.remove_prefix(end);
        const std::size_t slash = item.find('/');
        const auto offset = parse_row_count(item.substr(0, std::min(slash, item.size())));
        const auto global = slash == std::string_view::npos
                                ? std::nullopt
                                : parse_row_count(item.substr(slash + 1));
        if (!offset || !global) {
            corrupt(errc::corrupt_header, "ckpt.shards item '" + std::string(item) + "' of '" +
                                              e.name + "' is not offset/global_rows");
        }
        // Sharded along the first axis of the row-major shape: this entry's rows.
        const std::uint64_t rows = e.shape[0];
        if (*offset > *global || rows > *global - *offset) {
            corrupt(errc::corrupt_header,
                    "ckpt.shards puts the " + std::to_string(rows) + " rows of '" + e.name +
                        "' at " + std::to_string(*offset) + ", outside the global tensor's " +
                        std::to_string(*global) + " rows");
        }
        e.place.row_offset = *offset;
        e.place.global_rows = *global;
    }
    if (!shards.empty() || (sit != h.meta.end() && !any_shard)) {
        corrupt(errc::corrupt_header, "ckpt.shards has more items than sharded entries");
    }
}

CKPT_INLINE parsed_header parse_header(std::string_view json, std::uint64_t data_bytes,
                                       const limits& lim, const std::string& where) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(json.data(),
                                                                                      json.size());
    if (doc.HasParseError()) {
        corrupt(errc::corrupt_json, std::string("header is not valid JSON: ") +
                                        rapidjson::GetParseError_En(doc.GetParseError()) +
                                        " at byte " + std::to_string(doc.GetErrorOffset()));
    }
    if (!doc.IsObject()) corrupt(errc::corrupt_header, "header is not a JSON object");

    parsed_header h;
    h.data_bytes = data_bytes;
    // Every member but __metadata__ (which a plain safetensors file may lack) is a tensor.
    const std::uint64_t members = doc.MemberCount();
    const std::uint64_t tensors = members - (doc.HasMember("__metadata__") ? 1 : 0);
    if (tensors > lim.max_tensors) {
        throw_error<limit_error>(errc::limit_tensor_count, "'" + where + "': header declares " +
                                                               std::to_string(tensors) +
                                                               " tensors, more than the limit of " +
                                                               std::to_string(lim.max_tensors));
    }
    std::unordered_set<std::string_view> seen;
    bool have_meta = false;
    for (auto& m : doc.GetObject()) {
        const std::string_view name(m.name.GetString(), m.name.GetStringLength());
        if (name.size() > lim.max_name_bytes) {
            throw_error<limit_error>(errc::limit_name, "'" + where + "': an entry name of " +
                                                           std::to_string(name.size()) +
                                                           " bytes exceeds the limit of " +
                                                           std::to_string(lim.max_name_bytes));
        }
        if (!seen.insert(name).second) {
            corrupt(errc::corrupt_header, "entry '" + std::string(name) + "' appears twice");
        }
        if (name == "__metadata__") {
            have_meta = true;
            if (!m.value.IsObject()) corrupt(errc::corrupt_header, "__metadata__ is not an object");
            for (auto& kv : m.value.GetObject()) {
                if (!kv.value.IsString()) {
                    corrupt(errc::corrupt_header, "__metadata__ value of '" +
                                                      std::string(kv.name.GetString()) +
                                                      "' is not a string");
                }
                std::string key(kv.name.GetString(), kv.name.GetStringLength());
                if (h.meta.count(key) != 0) {
                    corrupt(errc::corrupt_header, "__metadata__ key '" + key + "' appears twice");
                }
                h.meta.emplace(std::move(key),
                               std::string(kv.value.GetString(), kv.value.GetStringLength()));
            }
            continue;
        }
        const std::string sname(name);
        if (!m.value.IsObject())
            corrupt(errc::corrupt_header, "entry '" + sname + "' is not an object");
        const auto& o = m.value;
        if (o.MemberCount() != 3 || !o.HasMember("dtype") || !o.HasMember("shape") ||
            !o.HasMember("data_offsets")) {
            corrupt(errc::corrupt_header,
                    "entry '" + sname + "' must have exactly dtype, shape and data_offsets");
        }
        file_tensor t;
        t.name = sname;
        const auto& jd = o["dtype"];
        if (!jd.IsString())
            corrupt(errc::corrupt_header, "entry '" + sname + "': dtype is not a string");
        const std::string_view ds(jd.GetString(), jd.GetStringLength());
        const auto dt = dtype_from_string(ds);
        if (!dt)
            corrupt(errc::corrupt_header,
                    "entry '" + sname + "': unknown dtype '" + std::string(ds) + "'");
        t.type = *dt;
        const auto& js = o["shape"];
        if (!js.IsArray())
            corrupt(errc::corrupt_header, "entry '" + sname + "': shape is not an array");
        if (js.Size() > lim.max_rank) {
            throw_error<limit_error>(errc::limit_rank,
                                     "'" + where + "': tensor '" + sname + "' has rank " +
                                         std::to_string(js.Size()) + ", more than the limit of " +
                                         std::to_string(lim.max_rank));
        }
        std::uint64_t count = 1;
        bool overflow = false;
        for (auto& d : js.GetArray()) {
            if (!d.IsUint64()) {
                corrupt(errc::corrupt_header,
                        "entry '" + sname +
                            "': shape holds something other than a non-negative integer");
            }
            // Dimensions become Eigen's signed sizes: one beyond 2^63 - 1 is refused even when
            // another dimension is 0 and the byte count comes out small.
            overflow = overflow || d.GetUint64() > static_cast<std::uint64_t>(INT64_MAX);
            t.shape.push_back(d.GetUint64());
            overflow = overflow || !checked_mul(count, d.GetUint64(), count);
        }
        std::uint64_t bytes = 0;
        overflow = overflow || !checked_mul(count, size_of(t.type), bytes);
        if (overflow || bytes > data_bytes) {
            throw_error<limit_error>(
                errc::limit_tensor_bytes,
                "'" + where + "': tensor '" + sname + "' declares " +
                    std::string(to_string(t.type)) + " " + shape_string(t.shape) + ", " +
                    (overflow ? std::string("more bytes than 2^64")
                              : std::to_string(bytes) + " bytes") +
                    ", but the file holds only " + std::to_string(data_bytes) + " bytes of data");
        }
        const auto& jo = o["data_offsets"];
        if (!jo.IsArray() || jo.Size() != 2 || !jo[0].IsUint64() || !jo[1].IsUint64()) {
            corrupt(errc::corrupt_header,
                    "entry '" + sname + "': data_offsets is not [begin, end]");
        }
        t.begin = jo[0].GetUint64();
        t.end = jo[1].GetUint64();
        if (t.end < t.begin || t.end - t.begin != bytes) {
            corrupt(errc::corrupt_offsets,
                    "tensor '" + sname + "' spans bytes [" + std::to_string(t.begin) + ", " +
                        std::to_string(t.end) + ") but its dtype and shape need " +
                        std::to_string(bytes) + " bytes");
        }
        h.entries.push_back(std::move(t));
    }
    (void)have_meta; // optional in safetensors; ckpt's own files are recognized by their prefix

    // Offsets must tile the data section exactly: no gap, no overlap, nothing after the end.
    std::vector<const file_tensor*> by_offset;
    by_offset.reserve(h.entries.size());
    for (const auto& t : h.entries) by_offset.push_back(&t);
    std::stable_sort(
        by_offset.begin(), by_offset.end(),
        [](const file_tensor* a, const file_tensor* b) { return a->begin < b->begin; });
    std::uint64_t expect = 0;
    for (const file_tensor* t : by_offset) {
        if (t->begin != expect) {
            corrupt(errc::corrupt_offsets,
                    "tensor '" + t->name + "' starts at byte " + std::to_string(t->begin) +
                        " of the data section, expected " + std::to_string(expect) +
                        (t->begin < expect ? " (it overlaps the previous tensor)" : " (a gap)"));
        }
        expect = t->end;
    }
    if (expect != data_bytes) {
        corrupt(errc::corrupt_offsets, "tensors cover " + std::to_string(expect) +
                                           " bytes but the data section holds " +
                                           std::to_string(data_bytes));
    }

    // ckpt.layout: one storage-order character per entry, in header order.
    if (const auto it = h.meta.find("ckpt.layout"); it != h.meta.end()) {
        const std::string& layout = it->second;
        if (layout.size() != h.entries.size()) {
            corrupt(errc::corrupt_header, "ckpt.layout has " + std::to_string(layout.size()) +
                                              " characters for " +
                                              std::to_string(h.entries.size()) + " entries");
        }
        for (std::size_t i = 0; i < layout.size(); ++i) {
            const char c = layout[i];
            if (c != 'R' && c != 'C' && c != '-') {
                corrupt(errc::corrupt_header, std::string("ckpt.layout holds '") + c + "'");
            }
            if (c != '-' && h.entries[i].shape.size() < 2) {
                corrupt(errc::corrupt_header, "ckpt.layout gives a storage order to '" +
                                                  h.entries[i].name +
                                                  "', which has fewer than 2 axes");
            }
            h.entries[i].order = c;
        }
    }
    parse_placement(h, where);
    return h;
}
#if defined(__clang__)
#pragma clang diagnostic pop
#endif

} // namespace ckpt::detail
