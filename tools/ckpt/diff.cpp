// ckpt diff A B: tensor by tensor, where two checkpoints differ and by how much. The tool that
// proves or disproves a bit-exact resume.

#include "tool.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>

namespace ckpt_tool {

namespace {

/// An element as a number, and as a signed magnitude whose distance is the distance in ULPs
/// (floats: their sign and magnitude bits, so that neighbours differ by 1) or in units
/// (integers).
struct element {
    double value = 0;
    bool negative = false;
    std::uint64_t magnitude = 0;
    bool nan = false;
};

/// |x - y| in ULPs (units for integers), saturating.
std::uint64_t distance(const element& x, const element& y) {
    if (x.negative == y.negative) {
        return x.magnitude > y.magnitude ? x.magnitude - y.magnitude : y.magnitude - x.magnitude;
    }
    const std::uint64_t sum = x.magnitude + y.magnitude;
    return sum < x.magnitude ? std::numeric_limits<std::uint64_t>::max() : sum;
}

/// Sign-magnitude bits of `width` bits into `out`.
void set_bits(element& out, std::uint64_t bits, int width) {
    const std::uint64_t sign = std::uint64_t{1} << (width - 1);
    out.negative = (bits & sign) != 0;
    out.magnitude = bits & (sign - 1);
}

/// A signed integer into `out`.
void set_signed(element& out, std::int64_t v) {
    out.negative = v < 0;
    out.magnitude = v < 0 ? ~static_cast<std::uint64_t>(v) + 1 : static_cast<std::uint64_t>(v);
    out.value = static_cast<double>(v);
}

void set_unsigned(element& out, std::uint64_t v) {
    out.magnitude = v;
    out.value = static_cast<double>(v);
}

template <class T>
T load_as(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

element read_element(ckpt::dtype type, const std::byte* p) {
    element out;
    switch (type) {
    case ckpt::dtype::boolean:
    case ckpt::dtype::u8: set_unsigned(out, load_as<std::uint8_t>(p)); break;
    case ckpt::dtype::i8: set_signed(out, load_as<std::int8_t>(p)); break;
    case ckpt::dtype::u16: set_unsigned(out, load_as<std::uint16_t>(p)); break;
    case ckpt::dtype::i16: set_signed(out, load_as<std::int16_t>(p)); break;
    case ckpt::dtype::u32: set_unsigned(out, load_as<std::uint32_t>(p)); break;
    case ckpt::dtype::i32: set_signed(out, load_as<std::int32_t>(p)); break;
    case ckpt::dtype::u64: set_unsigned(out, load_as<std::uint64_t>(p)); break;
    case ckpt::dtype::i64: set_signed(out, load_as<std::int64_t>(p)); break;
    case ckpt::dtype::f16: {
        const auto b = load_as<std::uint16_t>(p);
        out.value = decode_float(b, 5, 10, false);
        set_bits(out, b, 16);
        break;
    }
    case ckpt::dtype::bf16: {
        const auto b = load_as<std::uint16_t>(p);
        out.value = decode_float(b, 8, 7, false);
        set_bits(out, b, 16);
        break;
    }
    case ckpt::dtype::f8_e4m3: {
        const auto b = load_as<std::uint8_t>(p);
        out.value = decode_float(b, 4, 3, true);
        set_bits(out, b, 8);
        break;
    }
    case ckpt::dtype::f8_e5m2: {
        const auto b = load_as<std::uint8_t>(p);
        out.value = decode_float(b, 5, 2, false);
        set_bits(out, b, 8);
        break;
    }
    case ckpt::dtype::f32: {
        const auto b = load_as<std::uint32_t>(p);
        out.value = static_cast<double>(std::bit_cast<float>(b));
        set_bits(out, b, 32);
        break;
    }
    case ckpt::dtype::f64: {
        const auto b = load_as<std::uint64_t>(p);
        out.value = std::bit_cast<double>(b);
        set_bits(out, b, 64);
        break;
    }
    }
    out.nan = std::isnan(out.value);
    return out;
}

enum class status { identical, close, differ, only_a, only_b, changed };

std::string_view status_text(status s) {
    switch (s) {
    case status::identical: return "identical";
    case status::close: return "close";
    case status::differ: return "differ";
    case status::only_a: return "only_in_a";
    case status::only_b: return "only_in_b";
    case status::changed: return "changed";
    }
    return "?";
}

struct tensor_diff {
    std::string name;
    status state = status::identical;
    const ckpt::tensor_info* a = nullptr;
    const ckpt::tensor_info* b = nullptr;
    std::uint64_t elements = 0;
    std::uint64_t differing = 0;
    std::uint64_t nan_mismatches = 0; ///< one side NaN, the other not
    std::uint64_t beyond_tolerance = 0;
    double max_abs = 0;
    double max_rel = 0;
    std::uint64_t max_ulps = 0;
    std::uint64_t first_flat = 0;
    std::vector<std::uint64_t> first_index; ///< as the state's C++ type indexes it
    double first_a = 0;
    double first_b = 0;
};

struct tolerance {
    double atol = -1;
    double rtol = -1;
    double ulps = -1;
    [[nodiscard]] bool given() const { return atol >= 0 || rtol >= 0 || ulps >= 0; }
    [[nodiscard]] bool close(const element& x, const element& y, double abs, double rel,
                             std::uint64_t ulp) const {
        if (x.nan || y.nan) return x.nan && y.nan;
        return (atol >= 0 && abs <= atol) || (rtol >= 0 && rel <= rtol) ||
               (ulps >= 0 && static_cast<double>(ulp) <= ulps);
    }
};

/// The index of element `flat` of a tensor stored with `shape` (row-major), as the state's type
/// indexes it: reversed for a column-major one.
std::vector<std::uint64_t> index_of(std::uint64_t flat, const ckpt::tensor_info& t) {
    std::vector<std::uint64_t> index(t.shape.size());
    for (std::size_t d = t.shape.size(); d-- > 0;) {
        index[d] = t.shape[d] == 0 ? 0 : flat % t.shape[d];
        flat = t.shape[d] == 0 ? 0 : flat / t.shape[d];
    }
    if (t.order == 'C') std::reverse(index.begin(), index.end());
    return index;
}

void compare_elements(tensor_diff& d, const std::vector<std::byte>& xa,
                      const std::vector<std::byte>& xb, const tolerance& tol) {
    const ckpt::tensor_info& t = *d.a;
    const std::uint64_t size = ckpt::size_of(t.type);
    d.elements = t.bytes / size;
    bool first = true;
    for (std::uint64_t i = 0; i < d.elements; ++i) {
        const std::byte* pa = xa.data() + i * size;
        const std::byte* pb = xb.data() + i * size;
        if (std::memcmp(pa, pb, static_cast<std::size_t>(size)) == 0) continue;
        const element x = read_element(t.type, pa);
        const element y = read_element(t.type, pb);
        ++d.differing;
        double abs = 0;
        double rel = 0;
        std::uint64_t ulp = distance(x, y);
        if (x.nan != y.nan) {
            ++d.nan_mismatches;
        } else if (!x.nan) {
            abs = std::fabs(x.value - y.value);
            const double scale = std::max(std::fabs(x.value), std::fabs(y.value));
            rel = scale == 0 ? 0 : abs / scale;
            if (std::isnan(abs)) abs = std::numeric_limits<double>::infinity(); // inf - inf
            if (std::isnan(rel)) rel = std::numeric_limits<double>::infinity();
            d.max_abs = std::max(d.max_abs, abs);
            d.max_rel = std::max(d.max_rel, rel);
            d.max_ulps = std::max(d.max_ulps, ulp);
        } else {
            ulp = 0; // two NaNs with different payloads
        }
        if (!tol.close(x, y, abs, rel, ulp)) ++d.beyond_tolerance;
        if (first) {
            first = false;
            d.first_flat = i;
            d.first_index = index_of(i, t);
            d.first_a = x.value;
            d.first_b = y.value;
        }
    }
    if (d.differing == 0) {
        d.state = status::identical;
    } else if (tol.given() && d.beyond_tolerance == 0) {
        d.state = status::close;
    } else {
        d.state = status::differ;
    }
}

/// "F32 3x5 column-major": the dtype, and the shape as the state's type holds it.
std::string side_text(const ckpt::tensor_info& t) {
    return std::string(ckpt::to_string(t.type)) + " " + eigen_shape_text(t);
}

std::string index_text(const std::vector<std::uint64_t>& index) {
    return shape_text(index);
}

struct stream_diff {
    std::uint64_t stream = 0;
    bool identical = true;
    std::uint64_t a_bytes = 0;
    std::uint64_t b_bytes = 0;
    std::uint64_t first_byte = 0;
    bool only_one = false; ///< one side has no such stream
};

struct meta_diff {
    std::string field;
    std::string a;
    std::string b;
};

std::vector<meta_diff> compare_metadata(const ckpt::metadata& a, const ckpt::metadata& b) {
    std::vector<meta_diff> out;
    if (a.step != b.step) out.push_back({"step", std::to_string(a.step), std::to_string(b.step)});
    if (a.epoch != b.epoch) {
        out.push_back({"epoch", std::to_string(a.epoch), std::to_string(b.epoch)});
    }
    if (a.time != b.time) out.push_back({"time", iso_time(a.time), iso_time(b.time)});
    std::set<std::string> keys;
    for (const auto& [k, v] : a.metrics) keys.insert(k);
    for (const auto& [k, v] : b.metrics) keys.insert(k);
    for (const std::string& k : keys) {
        const auto x = a.metrics.find(k);
        const auto y = b.metrics.find(k);
        const std::string xs = x == a.metrics.end() ? "(none)" : number_text(x->second);
        const std::string ys = y == b.metrics.end() ? "(none)" : number_text(y->second);
        const bool same =
            x != a.metrics.end() && y != b.metrics.end() &&
            std::bit_cast<std::uint64_t>(x->second) == std::bit_cast<std::uint64_t>(y->second);
        if (!same) out.push_back({"metrics." + k, xs, ys});
    }
    keys.clear();
    for (const auto& [k, v] : a.tags) keys.insert(k);
    for (const auto& [k, v] : b.tags) keys.insert(k);
    for (const std::string& k : keys) {
        const auto x = a.tags.find(k);
        const auto y = b.tags.find(k);
        const std::string xs = x == a.tags.end() ? "(none)" : x->second;
        const std::string ys = y == b.tags.end() ? "(none)" : y->second;
        if (x == a.tags.end() || y == b.tags.end() || xs != ys)
            out.push_back({"tags." + k, xs, ys});
    }
    return out;
}

void write_side(json_writer& w, const char* key, const ckpt::tensor_info* t) {
    w.Key(key);
    if (t == nullptr) {
        w.Null();
        return;
    }
    w.StartObject();
    w.Key("dtype");
    write_string(w, ckpt::to_string(t->type));
    w.Key("shape");
    write_uints(w, t->shape);
    w.Key("order");
    write_string(w, order_text(t->order));
    w.EndObject();
}

} // namespace

int run_diff(const diff_args& args, const terminal& term) {
    ckpt::reader_options options;
    options.verify = !args.no_verify;
    // A manager's directory stands for its newest checkpoint.
    const std::filesystem::path path_a = checkpoint_in(args.a);
    const std::filesystem::path path_b = checkpoint_in(args.b);
    const ckpt::reader ra(path_a, options);
    const ckpt::reader rb(path_b, options);
    const tolerance tol{args.atol, args.rtol, args.ulps};

    // Tensors, by their names (a rank-local one's with its rank), in A's order, then B's own.
    std::vector<tensor_diff> diffs;
    std::map<std::string, const ckpt::tensor_info*> in_b;
    for (const ckpt::tensor_info& t : rb.info().tensors) in_b[ckpt::display_name(t)] = &t;
    std::set<std::string> seen;
    for (const ckpt::tensor_info& t : ra.info().tensors) {
        tensor_diff d;
        d.name = ckpt::display_name(t);
        seen.insert(d.name);
        d.a = &t;
        const auto it = in_b.find(d.name);
        if (it == in_b.end()) {
            d.state = status::only_a;
        } else {
            d.b = it->second;
            if (d.a->type != d.b->type || d.a->shape != d.b->shape || d.a->order != d.b->order) {
                d.state = status::changed;
            } else {
                compare_elements(d, ra.read(*d.a), rb.read(*d.b), tol);
            }
        }
        diffs.push_back(std::move(d));
    }
    for (const ckpt::tensor_info& t : rb.info().tensors) {
        if (seen.count(ckpt::display_name(t)) != 0) continue;
        tensor_diff d;
        d.name = ckpt::display_name(t);
        d.b = &t;
        d.state = status::only_b;
        diffs.push_back(std::move(d));
    }

    // The value streams: bytes, since their meaning is the state's type.
    std::vector<stream_diff> streams;
    const std::uint64_t n_streams = std::max(ra.value_streams(), rb.value_streams());
    for (std::uint64_t s = 0; s < n_streams; ++s) {
        stream_diff d;
        d.stream = s;
        if (s >= ra.value_streams() || s >= rb.value_streams()) {
            d.identical = false;
            d.only_one = true;
            (s < ra.value_streams() ? d.a_bytes : d.b_bytes) =
                (s < ra.value_streams() ? ra : rb).values(s).size();
        } else {
            const std::vector<std::byte> va = ra.values(s);
            const std::vector<std::byte> vb = rb.values(s);
            d.a_bytes = va.size();
            d.b_bytes = vb.size();
            const auto mm = std::mismatch(va.begin(), va.end(), vb.begin(), vb.end());
            d.identical = mm.first == va.end() && mm.second == vb.end();
            d.first_byte = static_cast<std::uint64_t>(mm.first - va.begin());
        }
        streams.push_back(d);
    }
    const std::vector<meta_diff> meta = compare_metadata(ra.info().meta, rb.info().meta);

    std::map<status, std::size_t> counts;
    for (const tensor_diff& d : diffs) ++counts[d.state];
    const bool tensors_same = counts[status::differ] + counts[status::only_a] +
                                  counts[status::only_b] + counts[status::changed] ==
                              0;
    const bool streams_same = std::all_of(streams.begin(), streams.end(),
                                          [](const stream_diff& d) { return d.identical; });
    const bool meta_same = !args.metadata || meta.empty();
    const bool same = tensors_same && streams_same && meta_same;
    const bool exact = same && counts[status::close] == 0;
    const std::string_view result = exact ? "identical" : same ? "close" : "differ";

    if (args.json) {
        rapidjson::StringBuffer buffer;
        json_writer w(buffer);
        w.StartObject();
        w.Key("a");
        write_string(w, path_a.string());
        w.Key("b");
        write_string(w, path_b.string());
        w.Key("result");
        write_string(w, result);
        w.Key("tensors");
        w.StartArray();
        for (const tensor_diff& d : diffs) {
            w.StartObject();
            w.Key("name");
            write_string(w, d.name);
            w.Key("status");
            write_string(w, status_text(d.state));
            write_side(w, "in_a", d.a);
            write_side(w, "in_b", d.b);
            if (d.state == status::identical || d.state == status::close ||
                d.state == status::differ) {
                w.Key("elements");
                w.Uint64(d.elements);
                w.Key("differing");
                w.Uint64(d.differing);
            }
            if (d.differing > 0) {
                w.Key("beyond_tolerance");
                w.Uint64(d.beyond_tolerance);
                w.Key("nan_mismatches");
                w.Uint64(d.nan_mismatches);
                w.Key("max_abs");
                write_number(w, d.max_abs);
                w.Key("max_rel");
                write_number(w, d.max_rel);
                w.Key("max_ulps");
                w.Uint64(d.max_ulps);
                w.Key("first_index");
                write_uints(w, d.first_index);
                w.Key("first_flat_index");
                w.Uint64(d.first_flat);
                w.Key("first_a");
                write_number(w, d.first_a);
                w.Key("first_b");
                write_number(w, d.first_b);
            }
            w.EndObject();
        }
        w.EndArray();
        w.Key("values");
        w.StartArray();
        for (const stream_diff& d : streams) {
            w.StartObject();
            w.Key("stream");
            w.Uint64(d.stream);
            w.Key("identical");
            w.Bool(d.identical);
            w.Key("a_bytes");
            w.Uint64(d.a_bytes);
            w.Key("b_bytes");
            w.Uint64(d.b_bytes);
            if (!d.identical && !d.only_one) {
                w.Key("first_byte");
                w.Uint64(d.first_byte);
            }
            w.EndObject();
        }
        w.EndArray();
        w.Key("metadata_counted");
        w.Bool(args.metadata);
        w.Key("metadata");
        w.StartArray();
        for (const meta_diff& m : meta) {
            w.StartObject();
            w.Key("field");
            write_string(w, m.field);
            w.Key("a");
            write_string(w, m.a);
            w.Key("b");
            write_string(w, m.b);
            w.EndObject();
        }
        w.EndArray();
        w.EndObject();
        print_json(buffer);
        return exact || same ? exit_ok : exit_differ;
    }

    std::printf("A  %s (step %lld)\nB  %s (step %lld)\n", path_a.c_str(),
                static_cast<long long>(ra.info().meta.step), path_b.c_str(),
                static_cast<long long>(rb.info().meta.step));
    std::printf("tensors: %zu identical", counts[status::identical]);
    if (tol.given()) std::printf(", %zu within tolerance", counts[status::close]);
    std::printf(", %zu differ, %zu changed shape or dtype, %zu only in A, %zu only in B\n",
                counts[status::differ], counts[status::changed], counts[status::only_a],
                counts[status::only_b]);
    for (const tensor_diff& d : diffs) {
        switch (d.state) {
        case status::identical: break;
        case status::only_a:
            std::printf("  %s  %s (%s): only in A\n", term.red("only-a").c_str(), d.name.c_str(),
                        side_text(*d.a).c_str());
            break;
        case status::only_b:
            std::printf("  %s  %s (%s): only in B\n", term.red("only-b").c_str(), d.name.c_str(),
                        side_text(*d.b).c_str());
            break;
        case status::changed:
            std::printf("  %s %s: A has %s, B has %s\n", term.red("changed").c_str(),
                        d.name.c_str(), side_text(*d.a).c_str(), side_text(*d.b).c_str());
            break;
        case status::close:
        case status::differ: {
            std::printf("  %s  %s (%s): %llu of %llu elements differ",
                        d.state == status::close ? term.yellow("close ").c_str()
                                                 : term.red("differ").c_str(),
                        d.name.c_str(), side_text(*d.a).c_str(),
                        static_cast<unsigned long long>(d.differing),
                        static_cast<unsigned long long>(d.elements));
            if (tol.given()) {
                std::printf(" (%llu beyond tolerance)",
                            static_cast<unsigned long long>(d.beyond_tolerance));
            }
            std::printf("; max abs %s, max rel %s, max %s ULP", number_text(d.max_abs).c_str(),
                        number_text(d.max_rel).c_str(), std::to_string(d.max_ulps).c_str());
            if (d.nan_mismatches > 0) {
                std::printf("; %llu NaN on one side only",
                            static_cast<unsigned long long>(d.nan_mismatches));
            }
            std::printf("; first at %s: %s vs %s\n", index_text(d.first_index).c_str(),
                        number_text(d.first_a).c_str(), number_text(d.first_b).c_str());
            break;
        }
        }
    }
    for (const stream_diff& d : streams) {
        const std::string which = n_streams > 1 ? " of rank " + std::to_string(d.stream) : "";
        if (d.identical) {
            std::printf("values%s: identical (%llu bytes)\n", which.c_str(),
                        static_cast<unsigned long long>(d.a_bytes));
        } else if (d.only_one) {
            std::printf("values%s: %s: only in %s\n", which.c_str(), term.red("differ").c_str(),
                        d.a_bytes > 0 || d.stream < ra.value_streams() ? "A" : "B");
        } else {
            std::printf("values%s: %s: %llu vs %llu bytes, first difference at byte %llu\n",
                        which.c_str(), term.red("differ").c_str(),
                        static_cast<unsigned long long>(d.a_bytes),
                        static_cast<unsigned long long>(d.b_bytes),
                        static_cast<unsigned long long>(d.first_byte));
        }
    }
    if (!meta.empty()) {
        std::printf("metadata%s:\n",
                    args.metadata ? "" : " (listed, not counted; --metadata counts it)");
        for (const meta_diff& m : meta) {
            std::printf("  %s: %s vs %s\n", m.field.c_str(), m.a.c_str(), m.b.c_str());
        }
    }
    std::printf("result: %s\n", exact  ? term.green("identical").c_str()
                                : same ? term.yellow("within tolerance").c_str()
                                       : term.red("differ").c_str());
    return same ? exit_ok : exit_differ;
}

} // namespace ckpt_tool
