#pragma once

#include <ckpt/detail/name_index.hpp>
#include <ckpt/format/header.hpp>

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
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

/// Reads a safetensors header from rapidjson's SAX events straight into parse_header's result:
/// no document tree. A header of thousands of tensors cost more as a tree (built, searched by
/// member name, freed) than every other per-tensor step of a load together.
///
/// It reports what parse_header reported when it walked a tree, in the same order: invalid JSON
/// first (the events never stop early, so a syntax error anywhere wins), then a root that is not
/// an object, then too many tensors, then the first problem of the members in document order
/// (within a member: its name's length, then a repeated name, then its value). An entry's fields
/// are checked once its object closes, in a fixed order whatever order they come in.
class header_reader {
public:
    header_reader(parsed_header& h, const limits& lim) : h_(h), lim_(lim) {}

    bool Null() { return other(); }
    bool Bool(bool) { return other(); }
    bool Int(int i) { return i >= 0 ? number(static_cast<std::uint64_t>(i)) : other(); }
    bool Uint(unsigned u) { return number(u); }
    bool Int64(std::int64_t i) { return i >= 0 ? number(static_cast<std::uint64_t>(i)) : other(); }
    bool Uint64(std::uint64_t u) { return number(u); }
    bool Double(double) { return other(); }
    bool RawNumber(const char*, rapidjson::SizeType, bool) { return other(); }
    bool String(const char* s, rapidjson::SizeType n, bool) { return string({s, n}); }
    bool StartObject() { return open(true); }
    bool Key(const char* s, rapidjson::SizeType n, bool) { return key({s, n}); }
    bool EndObject(rapidjson::SizeType) { return close(); }
    bool StartArray() { return open(false); }
    bool EndArray(rapidjson::SizeType) { return close(); }

    /// After a parse without a syntax error: throws what the header's members got wrong.
    void raise(const std::string& where) {
        const auto fail = [&](const problem& p) {
            const std::string what = "'" + where + "': " + p.what;
            if (p.limit) throw_error<limit_error>(p.id, what);
            throw_error<corrupt_error>(p.id, what);
        };
        if (!root_is_object_) fail({errc::corrupt_header, false, "header is not a JSON object"});
        const std::uint64_t tensors = members_ - (meta_positions_.empty() ? 0 : 1);
        if (tensors > lim_.max_tensors) {
            fail({errc::limit_tensor_count, true,
                  "header declares " + std::to_string(tensors) +
                      " tensors, more than the limit of " + std::to_string(lim_.max_tensors)});
        }
        // A repeated name is reported where it repeats, if that comes before the first problem
        // (or at it, unless that problem is the name's length).
        const std::uint64_t until = first_ ? first_at_ : members_;
        std::string_view repeated;
        const std::uint64_t repeat = first_repeat(until, repeated);
        if (repeat < until || (first_ && repeat == until && !first_name_limit_)) {
            fail({errc::corrupt_header, false,
                  "entry '" + std::string(repeated) + "' appears twice"});
        }
        if (first_) fail(*first_);
    }

private:
    enum class expecting : std::uint8_t {
        root,         ///< before the root value
        members,      ///< in the root object: a name, or its end
        skip,         ///< a value nobody reads (skip_ counts its open objects and arrays)
        meta,         ///< __metadata__'s value
        meta_members, ///< in __metadata__: a key, or its end
        meta_value,   ///< a metadata value
        entry,        ///< an entry's value
        fields,       ///< in an entry: a field name, or its end
        dtype,
        shape,
        shape_items,
        offsets,
        offset_items,
        done,
    };
    struct problem {
        int id;
        bool limit; ///< a limit_error, else a corrupt_error
        std::string what;
    };
    /// The fields of the entry being read, checked when it closes.
    struct fields {
        unsigned count = 0;
        bool has_dtype = false;
        bool has_shape = false;
        bool has_offsets = false;
        bool dtype_is_string = false;
        std::optional<dtype> type;
        std::string dtype_text; ///< an unknown dtype's text, for the message
        bool shape_is_array = false;
        std::uint64_t rank = 0; ///< items of the shape array, whatever they are
        bool shape_numbers = true;
        bool offsets_is_array = false;
        std::uint64_t offset_items = 0;
        bool offset_numbers = true;
        std::uint64_t offset[2] = {0, 0};
    };

    /// The first problem of the members, at member `first_at_`; storing stops there.
    void report(problem p, bool name_limit = false) {
        if (first_) return;
        first_ = std::move(p);
        first_at_ = members_ - 1;
        first_name_limit_ = name_limit;
        first_name_ = at_meta_ ? std::string("__metadata__") : std::move(t_.name);
    }
    /// Nothing more is kept: a problem was found, or there are too many tensors to keep.
    [[nodiscard]] bool stopped() const noexcept {
        return first_.has_value() || h_.entries.size() > lim_.max_tensors;
    }

    /// The value that comes next is read by nobody; then `resume`.
    void skip_value(expecting resume) {
        state_ = expecting::skip;
        resume_ = resume;
    }
    /// A value other than the one expected has begun: an object or array is skipped whole.
    bool skip_opened(expecting resume) {
        state_ = expecting::skip;
        resume_ = resume;
        skip_ = 1;
        return true;
    }

    /// A value that is not what the state reads (the number, string or container it wants).
    bool other() {
        switch (state_) {
        case expecting::root:
            root_is_object_ = false;
            state_ = expecting::done;
            break;
        case expecting::skip:
            if (skip_ == 0) state_ = resume_;
            break;
        case expecting::meta:
            report({errc::corrupt_header, false, "__metadata__ is not an object"});
            state_ = expecting::members;
            break;
        case expecting::meta_value:
            report({errc::corrupt_header, false,
                    "__metadata__ value of '" + key_ + "' is not a string"});
            state_ = expecting::meta_members;
            break;
        case expecting::entry:
            report({errc::corrupt_header, false, "entry '" + t_.name + "' is not an object"});
            state_ = expecting::members;
            break;
        case expecting::dtype:
        case expecting::shape:
        case expecting::offsets: state_ = expecting::fields; break;
        case expecting::shape_items:
            ++f_.rank;
            f_.shape_numbers = false;
            break;
        case expecting::offset_items:
            ++f_.offset_items;
            f_.offset_numbers = false;
            break;
        default: break; // the reader allows nothing else here
        }
        return true;
    }

    bool number(std::uint64_t v) {
        if (state_ == expecting::shape_items) {
            if (++f_.rank <= lim_.max_rank) {
                if (f_.rank == 1) t_.shape.reserve(4); // one allocation for most shapes
                t_.shape.push_back(v);
            }
            return true;
        }
        if (state_ == expecting::offset_items) {
            if (f_.offset_items < 2) f_.offset[f_.offset_items] = v;
            ++f_.offset_items;
            return true;
        }
        return other();
    }

    bool string(std::string_view s) {
        if (state_ == expecting::dtype) {
            f_.dtype_is_string = true;
            f_.type = dtype_from_string(s);
            if (!f_.type) f_.dtype_text = s;
            state_ = expecting::fields;
            return true;
        }
        if (state_ == expecting::meta_value) {
            state_ = expecting::meta_members;
            if (stopped()) return true;
            const auto [it, fresh] = h_.meta.try_emplace(key_, s);
            if (!fresh) {
                report(
                    {errc::corrupt_header, false, "__metadata__ key '" + key_ + "' appears twice"});
            }
            return true;
        }
        return other();
    }

    bool key(std::string_view name) {
        switch (state_) {
        case expecting::members: {
            ++members_;
            at_meta_ = name == "__metadata__";
            if (at_meta_) meta_positions_.push_back(members_ - 1);
            if (stopped()) {
                skip_value(expecting::members);
                return true;
            }
            if (!at_meta_) {
                t_ = file_tensor{};
                t_.name = name;
                f_ = fields{};
            }
            if (name.size() > lim_.max_name_bytes) {
                report({errc::limit_name, true,
                        "an entry name of " + std::to_string(name.size()) +
                            " bytes exceeds the limit of " + std::to_string(lim_.max_name_bytes)},
                       true);
                skip_value(expecting::members);
                return true;
            }
            state_ = at_meta_ ? expecting::meta : expecting::entry;
            return true;
        }
        case expecting::meta_members:
            key_ = name;
            state_ = expecting::meta_value;
            return true;
        case expecting::fields:
            ++f_.count;
            if (name == "dtype" && !f_.has_dtype) {
                f_.has_dtype = true;
                state_ = expecting::dtype;
            } else if (name == "shape" && !f_.has_shape) {
                f_.has_shape = true;
                state_ = expecting::shape;
            } else if (name == "data_offsets" && !f_.has_offsets) {
                f_.has_offsets = true;
                state_ = expecting::offsets;
            } else {
                skip_value(expecting::fields); // a field too many: the count says so
            }
            return true;
        default: return true; // inside a skipped value
        }
    }

    bool open(bool object) {
        switch (state_) {
        case expecting::root:
            if (object) {
                state_ = expecting::members;
                return true;
            }
            root_is_object_ = false;
            return skip_opened(expecting::done);
        case expecting::skip: ++skip_; return true;
        case expecting::meta:
            if (object) {
                state_ = expecting::meta_members;
                return true;
            }
            other();
            return skip_opened(expecting::members);
        case expecting::meta_value: other(); return skip_opened(expecting::meta_members);
        case expecting::entry:
            if (object) {
                state_ = expecting::fields;
                return true;
            }
            other();
            return skip_opened(expecting::members);
        case expecting::dtype: return skip_opened(expecting::fields);
        case expecting::shape:
            if (object) return skip_opened(expecting::fields);
            f_.shape_is_array = true;
            state_ = expecting::shape_items;
            return true;
        case expecting::offsets:
            if (object) return skip_opened(expecting::fields);
            f_.offsets_is_array = true;
            state_ = expecting::offset_items;
            return true;
        case expecting::shape_items:
        case expecting::offset_items: {
            const expecting here = state_;
            other();
            return skip_opened(here);
        }
        default: return true;
        }
    }

    bool close() {
        switch (state_) {
        case expecting::skip:
            if (--skip_ == 0) state_ = resume_;
            return true;
        case expecting::members: state_ = expecting::done; return true;
        case expecting::meta_members: state_ = expecting::members; return true;
        case expecting::fields:
            finish_entry();
            state_ = expecting::members;
            return true;
        case expecting::shape_items:
        case expecting::offset_items: state_ = expecting::fields; return true;
        default: return true;
        }
    }

    /// The entry's object has closed: its checks, in parse_header's order.
    void finish_entry() {
        const std::string& name = t_.name;
        const auto bad = [&](const std::string& what) {
            report({errc::corrupt_header, false, "entry '" + name + "'" + what});
        };
        if (f_.count != 3 || !f_.has_dtype || !f_.has_shape || !f_.has_offsets) {
            return bad(" must have exactly dtype, shape and data_offsets");
        }
        if (!f_.dtype_is_string) return bad(": dtype is not a string");
        if (!f_.type) return bad(": unknown dtype '" + f_.dtype_text + "'");
        t_.type = *f_.type;
        if (!f_.shape_is_array) return bad(": shape is not an array");
        if (f_.rank > lim_.max_rank) {
            return report({errc::limit_rank, true,
                           "tensor '" + name + "' has rank " + std::to_string(f_.rank) +
                               ", more than the limit of " + std::to_string(lim_.max_rank)});
        }
        if (!f_.shape_numbers) {
            return bad(": shape holds something other than a non-negative integer");
        }
        std::uint64_t count = 1;
        bool overflow = false;
        for (const std::uint64_t d : t_.shape) {
            // Dimensions become Eigen's signed sizes: one beyond 2^63 - 1 is refused even when
            // another dimension is 0 and the byte count comes out small.
            overflow = overflow || d > static_cast<std::uint64_t>(INT64_MAX);
            overflow = overflow || !checked_mul(count, d, count);
        }
        std::uint64_t bytes = 0;
        overflow = overflow || !checked_mul(count, size_of(t_.type), bytes);
        if (overflow || bytes > h_.data_bytes) {
            return report({errc::limit_tensor_bytes, true,
                           "tensor '" + name + "' declares " + std::string(to_string(t_.type)) +
                               " " + shape_string(t_.shape) + ", " +
                               (overflow ? std::string("more bytes than 2^64")
                                         : std::to_string(bytes) + " bytes") +
                               ", but the file holds only " + std::to_string(h_.data_bytes) +
                               " bytes of data"});
        }
        if (!f_.offsets_is_array || f_.offset_items != 2 || !f_.offset_numbers) {
            return bad(": data_offsets is not [begin, end]");
        }
        t_.begin = f_.offset[0];
        t_.end = f_.offset[1];
        if (t_.end < t_.begin || t_.end - t_.begin != bytes) {
            return report({errc::corrupt_offsets, false,
                           "tensor '" + name + "' spans bytes [" + std::to_string(t_.begin) + ", " +
                               std::to_string(t_.end) + ") but its dtype and shape need " +
                               std::to_string(bytes) + " bytes"});
        }
        h_.entries.push_back(std::move(t_));
    }

    /// The member, before `until`, whose name an earlier member has (`until` itself counts:
    /// first_name_ is its name); members_ when none does.
    std::uint64_t first_repeat(std::uint64_t until, std::string_view& name) const {
        name_index seen;
        seen.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(until + 1, members_)));
        std::size_t entry = 0;
        std::size_t meta = 0;
        for (std::uint64_t m = 0; m <= until && m < members_; ++m) {
            if (meta < meta_positions_.size() && meta_positions_[meta] == m) {
                ++meta;
                name = "__metadata__";
            } else if (m == until) {
                name = first_name_;
            } else {
                name = h_.entries[entry++].name;
            }
            if (!seen.emplace(name, 0).second) return m;
        }
        return members_;
    }

    parsed_header& h_;
    const limits& lim_;
    expecting state_ = expecting::root;
    expecting resume_ = expecting::root;
    std::uint64_t skip_ = 0;
    std::uint64_t members_ = 0;
    std::vector<std::uint64_t> meta_positions_; ///< members named __metadata__
    bool at_meta_ = false;                      ///< the current member is __metadata__
    bool root_is_object_ = true;
    std::string key_; ///< the metadata key whose value comes next
    file_tensor t_;   ///< the entry being read
    fields f_;
    std::optional<problem> first_;
    std::uint64_t first_at_ = 0;
    bool first_name_limit_ = false;
    std::string first_name_; ///< the name of member first_at_
};

/// Gives `handler` the SAX events of `json` when it is written the way ckpt writes headers: no
/// whitespace but spaces after the root, strings of printable ASCII without escapes, unsigned
/// integers in plain decimal, nesting at most 8 deep. For such text the events are exactly
/// rapidjson's, read many times faster. Returns false at the first byte outside that form, having
/// given some events perhaps: the caller starts again with rapidjson.
template <class Handler>
bool read_plain_json(std::string_view json, Handler& handler) {
    const char* p = json.data();
    const char* const end = p + json.size();
    char open[8]; // '{' or '[' per level
    std::size_t depth = 0;
    const auto plain_string = [&](const char*& s, rapidjson::SizeType& n) {
        s = ++p; // past the opening quote
        while (p != end && *p != '"') {
            const auto c = static_cast<unsigned char>(*p);
            if (c < 0x20 || c >= 0x7F || c == '\\') return false;
            ++p;
        }
        if (p == end || p - s > 0x7FFFFFFF) return false;
        n = static_cast<rapidjson::SizeType>(p - s);
        ++p; // past the closing quote
        return true;
    };
    // One value; containers push a level and return, their items come from the loop below.
    const auto value = [&]() {
        if (p == end) return false;
        const char c = *p;
        if (c == '{' || c == '[') {
            if (depth == sizeof open) return false;
            open[depth++] = c;
            ++p;
            return c == '{' ? handler.StartObject() : handler.StartArray();
        }
        if (c == '"') {
            const char* s = nullptr;
            rapidjson::SizeType n = 0;
            return plain_string(s, n) && handler.String(s, n, false);
        }
        if (c < '0' || c > '9') return false;
        std::uint64_t v = 0;
        const char* const first = p;
        while (p != end && *p >= '0' && *p <= '9') ++p;
        const std::ptrdiff_t digits = p - first;
        if (digits > 20 || (*first == '0' && digits > 1)) return false; // a leading zero
        for (const char* d = first; d != p; ++d) {
            const auto digit = static_cast<unsigned>(*d - '0');
            if (d - first < 19) {
                v = v * 10 + digit; // 19 digits always fit
            } else if (!checked_mul(v, 10, v) || __builtin_add_overflow(v, digit, &v)) {
                return false; // beyond 2^64 - 1: rapidjson reads a double
            }
        }
        return handler.Uint64(v);
    };
    // An item of the open container, after its '{', '[' or ','.
    const auto item = [&]() {
        if (open[depth - 1] == '[') return value();
        if (p == end || *p != '"') return false;
        const char* s = nullptr;
        rapidjson::SizeType n = 0;
        if (!plain_string(s, n) || !handler.Key(s, n, false)) return false;
        if (p == end || *p != ':') return false;
        ++p;
        return value();
    };
    if (!value()) return false;
    while (depth != 0) {
        if (p == end) return false;
        const char c = *p;
        const char close = open[depth - 1] == '{' ? '}' : ']';
        if (c == close) { // an empty container, or the end of one after its last item
            ++p;
            --depth;
            if (!(close == '}' ? handler.EndObject(0) : handler.EndArray(0))) return false;
            continue;
        }
        if (c == ',' && p[-1] != '{' && p[-1] != '[')
            ++p; // between items
        else if (p[-1] != '{' && p[-1] != '[')
            return false;
        if (!item()) return false;
    }
    return std::all_of(p, end, [](char c) { return c == ' '; });
}

/// Reads a header laid out exactly as build_header lays out one whose strings need no escape
/// (safetensors' Python writer lays them out the same way): `{`, then `"__metadata__":{...}` of
/// strings perhaps, then entries `"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}`,
/// `}`, spaces. Every check header_reader makes passes, or this returns false, having filled
/// `h` partly perhaps: the caller starts again with header_reader, which reports the problem.
/// An entry costs about 1,900 instructions here (most of them for its name, its shape and the
/// check that no name repeats), against some 3,500 as SAX events.
CKPT_INLINE bool read_ckpt_header(std::string_view json, parsed_header& h, const limits& lim) {
    const char* p = json.data();
    const char* end = p + json.size();
    while (end != p && end[-1] == ' ') --end;
    // A string of printable ASCII without escapes, at p; p ends past its closing quote.
    const auto plain_string = [&](std::string_view& s) {
        if (p == end || *p != '"') return false;
        const char* const first = ++p;
        for (; p != end && *p != '"'; ++p) {
            const auto c = static_cast<unsigned char>(*p);
            if (c < 0x20 || c >= 0x7F || c == '\\') return false;
        }
        if (p == end) return false;
        s = {first, static_cast<std::size_t>(p - first)};
        ++p;
        return true;
    };
    // The text of a string literal (its length a constant, so the comparison is inlined).
    const auto literal = [&](const auto& text) {
        constexpr std::size_t n = sizeof text - 1;
        if (static_cast<std::size_t>(end - p) < n || std::memcmp(p, text, n) != 0) return false;
        p += n;
        return true;
    };
    // An unsigned decimal below 2^63, without a leading zero.
    const auto number = [&](std::uint64_t& v) {
        const char* const first = p;
        v = 0;
        while (p != end && *p >= '0' && *p <= '9' && p - first < 19) {
            v = v * 10 + static_cast<std::uint64_t>(*p - '0');
            ++p;
        }
        const std::ptrdiff_t digits = p - first;
        return digits != 0 && (*first != '0' || digits == 1) &&
               (p == end || *p < '0' || *p > '9') && v <= static_cast<std::uint64_t>(INT64_MAX);
    };
    if (!literal("{")) return false;
    std::string_view name;
    if (literal("\"__metadata__\":{")) {
        if (!literal("}")) {
            do {
                std::string_view key;
                std::string_view value;
                if (!plain_string(key) || !literal(":") || !plain_string(value)) return false;
                if (!h.meta.try_emplace(std::string(key), value).second) return false;
            } while (literal(","));
            if (!literal("}")) return false;
        }
        if (!literal(",")) return literal("}") && p == end;
    }
    if (literal("}")) return p == end;
    // An entry takes 49 bytes at least, most of them more. (Room for 2^16 entries at most: a
    // header of garbage makes no room for millions.)
    h.entries.reserve(static_cast<std::size_t>(
        std::min<std::uint64_t>({json.size() / 48 + 1, lim.max_tensors, 65536})));
    do {
        if (!plain_string(name) || name.size() > lim.max_name_bytes || name == "__metadata__" ||
            h.entries.size() == lim.max_tensors) {
            return false;
        }
        std::string_view type_text;
        if (!literal(":{\"dtype\":") || !plain_string(type_text) || !literal(",\"shape\":[")) {
            return false;
        }
        const std::optional<dtype> type = dtype_from_string(type_text);
        if (!type) return false;
        std::uint64_t dims[8]; // ranks above 8 are read the general way
        std::size_t rank = 0;
        std::uint64_t bytes = size_of(*type);
        if (!literal("]")) {
            do {
                if (rank == std::size(dims) || rank == lim.max_rank || !number(dims[rank]) ||
                    !checked_mul(bytes, dims[rank], bytes)) {
                    return false;
                }
                ++rank;
            } while (literal(","));
            if (!literal("]")) return false;
        }
        std::uint64_t first = 0;
        std::uint64_t last = 0;
        if (!literal(",\"data_offsets\":[") || !number(first) || !literal(",") || !number(last) ||
            !literal("]}") || bytes > h.data_bytes || last < first || last - first != bytes) {
            return false;
        }
        file_tensor& t = h.entries.emplace_back();
        t.name = name;
        t.type = *type;
        t.shape.assign(dims, dims + rank);
        t.begin = first;
        t.end = last;
    } while (literal(","));
    if (!literal("}") || p != end) return false;
    // Names are told apart once every entry is in place (the views point into them).
    name_index seen;
    seen.reserve(h.entries.size());
    for (const file_tensor& t : h.entries) {
        if (!seen.emplace(t.name, 0).second) return false;
    }
    return true;
}

CKPT_INLINE parsed_header parse_header(std::string_view json, std::uint64_t data_bytes,
                                       const limits& lim, const std::string& where) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    parsed_header h;
    h.data_bytes = data_bytes;
    // ckpt's own headers take the direct reader, then the fast SAX reader; any other text (or
    // damage) starts again with rapidjson, which gives the same events for what both read, and
    // reports the rest.
    bool read = read_ckpt_header(json, h, lim);
    if (!read) {
        h = parsed_header{};
        h.data_bytes = data_bytes;
        header_reader reader(h, lim);
        read = read_plain_json(json, reader);
        if (read) reader.raise(where);
    }
    if (!read) {
        h = parsed_header{};
        h.data_bytes = data_bytes;
        header_reader reader(h, lim);
        rapidjson::Reader json_reader;
        rapidjson::MemoryStream bytes(json.data(), json.size());
        rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> stream(bytes);
        // Iterative: a deeply nested value costs heap, never stack.
        json_reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(
            stream, reader);
        if (json_reader.HasParseError()) {
            corrupt(errc::corrupt_json,
                    std::string("header is not valid JSON: ") +
                        rapidjson::GetParseError_En(json_reader.GetParseErrorCode()) + " at byte " +
                        std::to_string(json_reader.GetErrorOffset()));
        }
        reader.raise(where);
    }

    // Offsets must tile the data section exactly: no gap, no overlap, nothing after the end.
    // (ckpt writes its entries in the order of their offsets: no sort then.)
    std::vector<const file_tensor*> by_offset;
    by_offset.reserve(h.entries.size());
    for (const auto& t : h.entries) by_offset.push_back(&t);
    const auto earlier = [](const file_tensor* a, const file_tensor* b) {
        return a->begin < b->begin;
    };
    if (!std::is_sorted(by_offset.begin(), by_offset.end(), earlier)) {
        std::stable_sort(by_offset.begin(), by_offset.end(), earlier);
    }
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

} // namespace ckpt::detail
