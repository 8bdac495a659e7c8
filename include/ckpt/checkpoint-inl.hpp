#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/hash.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/version.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace ckpt {
namespace detail {

CKPT_INLINE std::string fingerprint_of(const std::vector<tensor_record>& tensors) {
    hasher h;
    for (const auto& t : tensors) {
        h.update(t.name.data(), t.name.size() + 1); // with the terminating NUL as a separator
        const auto type = static_cast<std::uint8_t>(t.type);
        h.update(&type, 1);
        for (const std::uint64_t d : t.shape()) h.update(&d, sizeof d);
        h.update(&t.order, 1);
    }
    return to_hex(h.digest());
}

CKPT_INLINE write_plan make_plan(const std::vector<tensor_record>& tensors,
                                 const std::vector<std::byte>& values, const metadata& meta) {
    std::vector<schema_problem> problems;
    std::unordered_set<std::string_view> seen;
    for (const auto& t : tensors) {
        if (t.name.starts_with("__")) {
            problems.push_back({errc::schema_reserved, t.name,
                                "names starting with '__' are reserved by safetensors and ckpt"});
        } else if (!seen.insert(t.name).second) {
            problems.push_back({errc::schema_duplicate, t.name,
                                "two tensors of the state have this path; name them apart"});
        } else if (t.name.size() > limits{}.max_name_bytes) {
            problems.push_back({errc::schema_reserved, t.name.substr(0, 64) + "...",
                                "the path is longer than the " +
                                    std::to_string(limits{}.max_name_bytes) + " bytes ckpt reads"});
        }
    }
    if (!problems.empty()) throw_error<schema_error>(std::move(problems));

    std::vector<std::size_t> order(tensors.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return size_of(tensors[a].type) > size_of(tensors[b].type);
    });

    write_plan plan;
    std::vector<file_tensor>& entries = plan.entries;
    entries.reserve(tensors.size() + 1);
    std::string layout;
    std::string placements;
    std::string shards;
    bool placed = false;
    std::uint64_t offset = 0;
    for (const std::size_t i : order) {
        const tensor_record& t = tensors[i];
        entries.push_back({t.name, t.type, t.shape(), offset, offset + t.bytes, t.order, t.place});
        plan.blocks.emplace_back(t.data, t.bytes);
        layout += t.order;
        placements += static_cast<char>(t.place.kind);
        placed = placed || t.place.kind != placement_kind::replicated;
        if (t.place.kind == placement_kind::sharded) {
            if (!shards.empty()) shards += ',';
            shards +=
                std::to_string(t.place.row_offset) + "/" + std::to_string(t.place.global_rows);
        }
        offset += t.bytes;
    }
    entries.push_back({std::string(values_entry),
                       dtype::u8,
                       {values.size()},
                       offset,
                       offset + values.size(),
                       '-'});
    plan.blocks.emplace_back(values.data(), values.size());
    layout += '-';

    metadata m = meta;
    if (m.time == std::chrono::system_clock::time_point{})
        m.time = std::chrono::system_clock::now();
    if (!parse_time(format_time(m.time))) {
        throw_error<usage_error>(errc::usage_argument, "metadata time " + format_time(m.time) +
                                                           " is outside years 0 to 9999");
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.emplace_back("ckpt.checksum", "xxh3-64:" + std::string(16, '0'));
    pairs.emplace_back(key_format_version, std::to_string(format_version));
    pairs.emplace_back(key_library_version, CKPT_VERSION_STRING);
    encode_user_metadata(m, pairs);
    pairs.emplace_back(key_fingerprint, fingerprint_of(tensors));
    pairs.emplace_back(key_layout, std::move(layout));
    if (placed) {
        pairs.emplace_back(key_placement,
                           placements + static_cast<char>(placement_kind::replicated));
        if (!shards.empty()) pairs.emplace_back(key_shards, std::move(shards));
    }
    plan.header = build_header(pairs, entries);
    plan.total_bytes = 8 + plan.header.size() + offset + values.size();
    return plan;
}

/// Streams a plan to a sink (a file or memory), then writes the checksum into the header.
/// A large checkpoint is hashed on a second thread while it is written: the hash reads the same
/// (unchanging) memory the writes copy from, and costs no time on the writing thread.
template <class Sink>
std::uint64_t write_checkpoint_to(Sink& sink, const write_plan& plan) {
    const std::uint64_t n = plan.header.size();
    hasher hash;
    const auto hash_all = [&]() noexcept {
        hash.update(&n, sizeof n);
        hash.update(plan.header.data(), plan.header.size());
        for (const auto& [data, bytes] : plan.blocks) {
            if (bytes > 0) hash.update(data, static_cast<std::size_t>(bytes));
        }
    };
    std::jthread hashing;
    if (plan.total_bytes >= parallel_hash_bytes) {
        hashing = std::jthread(hash_all);
    } else {
        hash_all();
    }
    sink.write(&n, sizeof n);
    sink.write(plan.header.data(), plan.header.size());
    for (const auto& [data, bytes] : plan.blocks) {
        if (bytes > 0) sink.write(data, static_cast<std::size_t>(bytes));
    }
    if (hashing.joinable()) hashing.join();
    const std::uint64_t digest = hash.digest();
    const std::string hex = to_hex(digest);
    sink.patch(checksum_digits_offset, hex.data(), hex.size());
    return digest;
}

CKPT_INLINE std::uint64_t write_checkpoint(atomic_file& sink, const write_plan& plan) {
    return write_checkpoint_to(sink, plan);
}

CKPT_INLINE std::uint64_t write_checkpoint(memory_sink& sink, const write_plan& plan) {
    return write_checkpoint_to(sink, plan);
}

CKPT_INLINE opened_checkpoint::opened_checkpoint(const std::byte* p, std::uint64_t size,
                                                 const limits& lim, const std::string& where,
                                                 bool verify, content_hasher hasher)
    : where_(where), hasher_(std::move(hasher)) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    if (size < 8) {
        corrupt(errc::corrupt_too_small, "the file is " + std::to_string(size) +
                                             " bytes long, too short to be a checkpoint");
    }
    std::uint64_t n = 0;
    std::memcpy(&n, p, sizeof n);
    if (n > lim.max_header_bytes) {
        throw_error<limit_error>(errc::limit_header, "'" + where + "': the header declares " +
                                                         std::to_string(n) +
                                                         " bytes, more than the limit of " +
                                                         std::to_string(lim.max_header_bytes));
    }
    if (n > size - 8) {
        corrupt(errc::corrupt_truncated_header, "the header declares " + std::to_string(n) +
                                                    " bytes but only " + std::to_string(size - 8) +
                                                    " follow: the file is truncated or damaged");
    }
    const std::string_view json(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
    const bool ours = is_ckpt_header(json);
    if (verify && !ours) {
        corrupt(errc::corrupt_not_ckpt,
                "the header does not start with ckpt's checksum: the file is damaged or was "
                "not written by ckpt");
    }
    if (ours) {
        check_version(json, verify ? p : nullptr, size);
        checksum_ = std::string(json.substr(checksum_prefix.size() - 8, 24));
    }
    if (verify) {
        verify_checksum(json, p, size);
        verified_ = true;
    }
    header_ = parse_header(json, size - 8 - n, lim, where);
    header_bytes_ = n;
    data_ = p + 8 + n;
    const auto v = header_.meta.find(std::string(key_format_version));
    if (v != header_.meta.end()) version_ = static_cast<int>(parse_int(v->second).value_or(0));
    meta_ = decode_metadata(header_.meta, where);
}

CKPT_INLINE void opened_checkpoint::index(tensor_source& src,
                                          std::span<const std::byte>& values) const {
    src.entries = &header_.entries;
    src.data = data_;
    src.legacy_versions = version_ < 2;
    src.containers_as_values = version_ < 3;
    bool have_values = false;
    src.by_name.reserve(header_.entries.size());
    for (std::size_t i = 0; i < header_.entries.size(); ++i) {
        const file_tensor& e = header_.entries[i];
        if (e.begin % size_of(e.type) != 0) {
            throw_error<corrupt_error>(errc::corrupt_offsets,
                                       "'" + where_ + "': tensor '" + e.name +
                                           "' is not aligned to its element size");
        }
        check_bools(e);
        if (e.name == values_entry) {
            if (e.type != dtype::u8 || e.shape.size() != 1) {
                throw_error<corrupt_error>(errc::corrupt_header,
                                           "'" + where_ + "': " + e.name + " is not a U8 vector");
            }
            values = {data_ + e.begin, static_cast<std::size_t>(e.end - e.begin)};
            have_values = true;
        } else {
            src.by_name.emplace(e.name, i);
        }
    }
    if (!have_values) {
        throw_error<corrupt_error>(errc::corrupt_header, "'" + where_ + "': the file has no " +
                                                             std::string(values_entry) + " entry");
    }
}

CKPT_INLINE void opened_checkpoint::check_bools(const file_tensor& e) const {
    if (e.type != dtype::boolean) return;
    // A bool must be 0 or 1: anything else would be undefined once copied in.
    for (std::uint64_t b = e.begin; b < e.end; ++b) {
        if (static_cast<unsigned char>(data_[b]) > 1) {
            throw_error<corrupt_error>(errc::corrupt_values,
                                       "'" + where_ + "': BOOL tensor '" + e.name +
                                           "' holds a byte other than 0 or 1");
        }
    }
}

CKPT_INLINE bool opened_checkpoint::has_ckpt_header(const std::byte* p, std::uint64_t size) {
    if (size < 8) return false;
    std::uint64_t n = 0;
    std::memcpy(&n, p, sizeof n);
    if (n > size - 8) return false;
    return is_ckpt_header(
        std::string_view(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n)));
}

CKPT_INLINE bool opened_checkpoint::is_ckpt_header(std::string_view json) {
    return json.size() > checksum_prefix.size() + 16 && json.starts_with(checksum_prefix) &&
           from_hex(json.substr(checksum_prefix.size(), 16)).has_value() &&
           json[checksum_prefix.size() + 16] == '"';
}

CKPT_INLINE void opened_checkpoint::check_version(std::string_view json, const std::byte* p,
                                                  std::uint64_t size) {
    constexpr std::string_view key = R"(,"ckpt.format_version":")";
    const std::size_t at = checksum_prefix.size() + 17;
    const std::size_t end = json.find('"', at + key.size());
    const auto v = json.substr(at, key.size()) == key && end != std::string_view::npos
                       ? parse_int(json.substr(at + key.size(), end - at - key.size()))
                       : std::nullopt;
    if (!v || *v < 1) {
        throw_error<version_error>(errc::version_invalid,
                                   "'" + where_ + "': the header holds no valid format version");
    }
    if (*v > format_version) {
        std::string message = "'" + where_ + "' uses checkpoint format version " +
                              std::to_string(*v) +
                              "; this ckpt (" CKPT_VERSION_STRING ") reads versions up to " +
                              std::to_string(format_version) + ": load it with a newer ckpt";
        if (p != nullptr && !checksum_matches(json, p, size))
            message += " (or the file is damaged)";
        throw_error<version_error>(errc::version_newer, message);
    }
}

CKPT_INLINE std::uint64_t opened_checkpoint::content_hash(const std::byte* p, std::uint64_t size) {
    hasher h;
    h.update(p, checksum_digits_offset);
    static constexpr char zeros[16] = {'0', '0', '0', '0', '0', '0', '0', '0',
                                       '0', '0', '0', '0', '0', '0', '0', '0'};
    h.update(zeros, sizeof zeros);
    h.update(p + checksum_digits_offset + 16,
             static_cast<std::size_t>(size - checksum_digits_offset - 16));
    return h.digest();
}

CKPT_INLINE std::uint64_t opened_checkpoint::hash_of(const std::byte* p, std::uint64_t size) {
    return hasher_ ? hasher_() : content_hash(p, size);
}

CKPT_INLINE bool opened_checkpoint::checksum_matches(std::string_view json, const std::byte* p,
                                                     std::uint64_t size) {
    return from_hex(json.substr(checksum_prefix.size(), 16)) == hash_of(p, size);
}

CKPT_INLINE void opened_checkpoint::verify_checksum(std::string_view json, const std::byte* p,
                                                    std::uint64_t size) {
    compare_checksum(json, hash_of(p, size));
}

CKPT_INLINE void opened_checkpoint::compare_checksum(std::string_view json, std::uint64_t actual) {
    const std::uint64_t stored = *from_hex(json.substr(checksum_prefix.size(), 16));
    if (stored != actual) {
        throw_error<corrupt_error>(errc::corrupt_checksum,
                                   "'" + where_ + "': checksum mismatch: the header says " +
                                       to_hex(stored) + ", the content hashes to " +
                                       to_hex(actual) + ": the file is damaged");
    }
}

CKPT_INLINE void opened_checkpoint::check_checksum(const std::byte* p, std::uint64_t actual) {
    const std::string_view json(reinterpret_cast<const char*>(p + 8),
                                static_cast<std::size_t>(header_bytes_));
    if (!is_ckpt_header(json)) {
        throw_error<corrupt_error>(errc::corrupt_not_ckpt,
                                   "'" + where_ +
                                       "': the header does not start with ckpt's checksum: the "
                                       "file is damaged or was not written by ckpt");
    }
    compare_checksum(json, actual);
    verified_ = true;
}

/// The checksum of a file that is loaded into a state holding no tensor memory of its own (an
/// empty state: every tensor it ends up with, the load allocates). Nothing the user owns can be
/// overwritten there, so the file is hashed on a second thread while the load decodes into a
/// staged copy of the state, and checked before the state takes the copy: one pass over the file
/// on the loading thread instead of two, with the strong guarantee kept (a damaged file leaves
/// the state as it was, and is reported as damaged). The one exception to "verify first, then
/// decode": values are decoded from bytes not yet verified, by the same bounded reader that
/// reads any file (inspect() parses unverified headers too). Any other state is verified first.
class deferred_checksum {
public:
    deferred_checksum(opened_checkpoint& file, const std::byte* p, std::uint64_t size) noexcept
        : file_(&file), p_(p), size_(size) {}
    deferred_checksum(const deferred_checksum&) = delete;
    deferred_checksum& operator=(const deferred_checksum&) = delete;
    ~deferred_checksum();

    /// Starts hashing on another thread (if none can be started, check() hashes).
    void start() noexcept;
    /// Waits for the hash (or hashes here) and checks it. @throws corrupt_error
    void check();
    /// Whether check() has run (and so reported a mismatch, if there was one).
    [[nodiscard]] bool checked() const noexcept { return checked_; }

private:
    opened_checkpoint* file_;
    const std::byte* p_;
    std::uint64_t size_;
    std::thread worker_;
    std::uint64_t actual_ = 0;
    bool checked_ = false;
};

CKPT_INLINE deferred_checksum::~deferred_checksum() {
    if (worker_.joinable()) worker_.join();
}

CKPT_INLINE void deferred_checksum::start() noexcept {
    try {
        worker_ = std::thread([this] { actual_ = opened_checkpoint::content_hash(p_, size_); });
    } catch (...) { // no thread: check() hashes
    }
}

CKPT_INLINE void deferred_checksum::check() {
    checked_ = true;
    if (worker_.joinable()) {
        worker_.join();
    } else {
        actual_ = opened_checkpoint::content_hash(p_, size_);
    }
    file_->check_checksum(p_, actual_);
}

CKPT_INLINE std::string describe_side(dtype type, const std::vector<std::uint64_t>& shape) {
    return std::string(to_string(type)) + " " + shape_string(shape);
}

CKPT_INLINE const char* order_name(char order) {
    return order == 'R' ? "row-major" : "column-major";
}

CKPT_INLINE std::string_view cpp_name(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: return "bool";
    case dtype::u8: return "uint8";
    case dtype::i8: return "int8";
    case dtype::u16: return "uint16";
    case dtype::i16: return "int16";
    case dtype::f16: return "half";
    case dtype::bf16: return "bfloat16";
    case dtype::u32: return "uint32";
    case dtype::i32: return "int32";
    case dtype::f32: return "float";
    case dtype::u64: return "uint64";
    case dtype::i64: return "int64";
    case dtype::f64: return "double";
    case dtype::f8_e4m3:
    case dtype::f8_e5m2: break;
    }
    return to_string(t);
}

CKPT_INLINE std::string describe_state(const tensor_record& r, bool with_order) {
    std::string out(cpp_name(r.type));
    if (r.rank == 0) return out + " (rank 0)";
    // A tensor that takes the file's shape shows its sizes that are not fixed as '?'.
    const bool takes_shape = r.resizes || (r.elements() == 0 && !r.all_fixed());
    const auto dim = [&](std::size_t i) {
        return takes_shape && !r.fixed_axis(i) ? std::string("?") : std::to_string(r.dims[i]);
    };
    bool bounded = false;
    for (std::size_t i = 0; i < r.rank; ++i)
        bounded = bounded || (!r.fixed_axis(i) && r.max[i] >= 0);
    if (r.rank == 1) {
        out += "[" + (takes_shape && !r.fixed_axis(0) ? std::string() : std::to_string(r.dims[0])) +
               "]";
        if (takes_shape && bounded) out += " (at most " + std::to_string(r.max[0]) + ")";
        return out;
    }
    out += ' ';
    for (std::size_t i = 0; i < r.rank; ++i) out += (i == 0 ? "" : "x") + dim(i);
    if (takes_shape && bounded) {
        out += " (at most ";
        for (std::size_t i = 0; i < r.rank; ++i) {
            out +=
                (i == 0 ? "" : "x") + (r.max[i] < 0 ? std::string("?") : std::to_string(r.max[i]));
        }
        out += ")";
    }
    if (with_order) out += std::string(" (") + order_name(r.order) + ")";
    return out;
}

CKPT_INLINE std::string describe_file(const file_tensor& f, const tensor_record& r) {
    tensor_dims dims{};
    if (!dims_of(f, r, dims)) return describe_side(f.type, f.shape); // other rank
    std::string out(cpp_name(f.type));
    if (r.rank == 0) return out + " (rank 0)";
    if (r.rank == 1) return out + "[" + std::to_string(dims[0]) + "]";
    out += ' ';
    for (std::size_t i = 0; i < r.rank; ++i) out += (i == 0 ? "" : "x") + std::to_string(dims[i]);
    if (f.order == 'R') out += " (row-major)";
    if (f.order == 'C') out += " (column-major, stored as " + describe_side(f.type, f.shape) + ")";
    return out;
}

CKPT_INLINE void schema_report::raise() {
    if (!problems.empty()) throw_error<schema_error>(std::move(problems), total);
}

/// "rows [4, 8) of 10 (sharded)", "a replicated tensor", "a rank-local tensor".
CKPT_INLINE std::string describe_placement(const placement& p, std::uint64_t rows) {
    switch (p.kind) {
    case placement_kind::sharded:
        return "rows [" + std::to_string(p.row_offset) + ", " +
               std::to_string(p.row_offset + rows) + ") of " + std::to_string(p.global_rows) +
               " (sharded)";
    case placement_kind::rank_local: return "a rank-local tensor";
    default: return "a replicated tensor";
    }
}

CKPT_INLINE schema_report check_tensors(const std::vector<tensor_record>& state,
                                        const tensor_source& src, std::size_t cap) {
    schema_report out;
    const auto add = [&](int id, std::string_view path, const auto& text) {
        if (out.problems.size() < cap) out.problems.push_back({id, std::string(path), text()});
        ++out.total;
    };
    // Which file entries a state tensor names; the names the file lacks, only to find two
    // state tensors of the same name among them.
    std::vector<char> expected(src.entries->size(), 0);
    std::unordered_set<std::string_view> absent;
    std::size_t next = 0;
    for (const tensor_record& r : state) {
        const std::size_t entry = src.find(r.name, next);
        const bool found = entry != tensor_source::npos;
        const bool repeated =
            found ? std::exchange(expected[entry], 1) != 0 : !absent.insert(r.name).second;
        if (repeated) {
            add(errc::schema_duplicate, r.name,
                [] { return "two tensors of the state have this path; name them apart"; });
            continue;
        }
        if (!found) {
            if (src.allow_missing) {
                out.missing.push_back(r.name);
                continue;
            }
            add(errc::schema_missing, r.name, [&] {
                return "state expects " + describe_state(r, false) +
                       ", the checkpoint has no such tensor";
            });
            continue;
        }
        const file_tensor& f = (*src.entries)[entry];
        tensor_dims dims{};
        const bool ranks_match = dims_of(f, r, dims);
        const bool orders_differ = r.rank >= 2 && f.order != '-' && f.order != r.order;
        const auto both = [&] { // both sides, built only when there is something to say
            // The state's order matters only where it cannot be transposed into: fixed sizes.
            return "file has " + describe_file(f, r) + ", state expects " +
                   describe_state(r, orders_differ && ranks_match && r.all_fixed());
        };
        if (!src.loads_as(f.type, r.type)) {
            add(errc::schema_mismatch, r.name, [&] {
                if (!src.offers_conversion || !ranks_match) return both();
                switch (classify_conversion(f.type, r.type)) {
                case conversion::widening: return both() + " (import_options::widen converts it)";
                case conversion::narrowing:
                    return both() + " (import_options::narrow converts it, rounding)";
                default: return both();
                }
            });
            continue;
        }
        if (!ranks_match) {
            add(errc::schema_mismatch, r.name, both);
            continue;
        }
        if (r.all_fixed() && orders_differ) {
            add(errc::schema_storage_order, r.name,
                [&] { return both() + ": a fixed-size tensor must keep its storage order"; });
            continue;
        }
        // An empty dynamic tensor takes the file's shape, within its compile-time bounds.
        if (!holds_shape(r, dims)) {
            add(errc::schema_mismatch, r.name, both);
            continue;
        }
        if (f.place != r.place) {
            add(errc::schema_placement, r.name, [&] {
                const std::uint64_t rows = f.shape.empty() ? 0 : f.shape[0];
                return "file has " + describe_placement(f.place, rows) + ", state expects " +
                       describe_placement(r.place, rows);
            });
        }
    }
    for (std::size_t i = 0; i < src.entries->size(); ++i) {
        const file_tensor& f = (*src.entries)[i];
        const std::string_view name = src.name_of(i);
        if (expected[i] != 0 || f.name == values_entry) continue;
        if (src.ignore_unexpected) {
            out.ignored.push_back(f.name);
            continue;
        }
        add(errc::schema_unexpected, name, [&] {
            return "file has " + describe_side(f.type, f.shape) +
                   (name != f.name ? " (named " + f.name + " in the file)" : std::string()) +
                   ", the state has no such tensor";
        });
    }
    return out;
}

CKPT_INLINE std::size_t problem_cap(const tensor_source& src, std::uint64_t own_tensors) {
    return src.by_name.size() + static_cast<std::size_t>(own_tensors);
}

CKPT_INLINE bool same_tensor_names(const std::vector<tensor_record>& state,
                                   const tensor_source& src) {
    if (state.size() != src.by_name.size()) return false;
    std::size_t next = 0;
    return std::all_of(state.begin(), state.end(), [&](const tensor_record& r) {
        return src.find(r.name, next) != tensor_source::npos;
    });
}

CKPT_INLINE void collect(tensor_oarchive& ar, const state_walks& walks, const void* state) {
    try {
        walks.write(ar, state);
    } catch (const cereal::Exception& e) {
        throw_error<usage_error>(errc::usage_argument,
                                 std::string("cereal could not serialize the state: ") + e.what());
    }
}

CKPT_INLINE pass_result read_pass(const state_walks& walks, void* obj,
                                  std::span<const std::byte> values, const tensor_source* tensors,
                                  read_pass_kind kind, std::uint64_t own_tensors, bool keep_tails,
                                  const std::vector<tensor_record>* expected) {
    try {
        tensor_iarchive ar(values, tensors, kind, own_tensors, keep_tails);
        ar.containers_as_values(tensors != nullptr && tensors->containers_as_values);
        ar.expect_tensors(expected);
        walks.read(ar, obj);
        ar.finish();
        ar.finish_views();
        return {ar.tensors_met(), ar.kept_tail(), ar.met_expected_tensors(), ar.take_versions(),
                ar.take_conversions()};
    } catch (const cereal::Exception& e) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   std::string("cereal could not decode the values: ") + e.what());
    }
}

CKPT_INLINE state_backup::state_backup(const std::vector<std::byte>& state_values,
                                       const std::vector<tensor_record>& records,
                                       bool containers_as_values)
    : values(&state_values) {
    tensors.containers_as_values = containers_as_values;
    tensors.entries = &entries; // empty when no tensor is rebuilt: a restore then copies none
    std::uint64_t total = 0;
    for (const tensor_record& r : records) {
        if (!r.rebuilt) continue;
        entries.push_back({r.name, r.type, r.shape(), total, total + r.bytes, r.order, r.place});
        total += r.bytes;
    }
    if (entries.empty()) return;
    bytes.resize(static_cast<std::size_t>(total));
    std::size_t i = 0;
    for (const tensor_record& r : records) {
        if (!r.rebuilt) continue;
        if (r.bytes != 0) std::memcpy(bytes.data() + entries[i].begin, r.data, r.bytes);
        ++i;
    }
    tensors.data = bytes.data();
    for (std::size_t k = 0; k < entries.size(); ++k)
        tensors.by_name.insert_or_assign(entries[k].name, k);
}

CKPT_INLINE void restore_state(const state_walks& walks, void* obj,
                               const state_backup& backup) noexcept {
    try {
        read_pass(walks, obj, *backup.values, &backup.tensors, read_pass_kind::restore, 0);
    } catch (...) { // the original error is the one to report
    }
}

CKPT_INLINE schema_report decode_into(const state_walks& walks, void* obj, const tensor_source& src,
                                      std::span<const std::byte> values, const state_backup* backup,
                                      std::uint64_t own_tensors, load_gate* gate,
                                      const std::vector<tensor_record>* checked_before) {
    const auto restore = [&]() noexcept {
        if (backup != nullptr) restore_state(walks, obj, *backup);
    };
    pass_result met;
    try {
        // In place (a backup is given), no element that may hold tensors is removed yet.
        met = read_pass(walks, obj, values, &src, read_pass_kind::values, own_tensors,
                        backup != nullptr, checked_before);
    } catch (...) {
        restore();
        throw;
    }
    schema_report checked;
    if (!met.met_expected) {
        // The values may have changed what the state holds: list its tensors again, as the
        // checkpoint's class versions have it, and check them.
        tensor_oarchive shaped(true); // for the tensor list only
        shaped.reserve_tensors(static_cast<std::size_t>(met.tensors_met));
        shaped.use_versions(&met.versions);
        shaped.containers_as_values(src.containers_as_values);
        collect(shaped, walks, obj);
        checked = check_tensors(shaped.tensors(), src, problem_cap(src, own_tensors));
        if (!checked.problems.empty()) {
            restore();
            checked.raise();
        }
        if (met.kept_tail && met.tensors_met != shaped.tensors().size()) {
            // The kept elements hold tensors the values no longer describe, while the header lists
            // them: the file contradicts itself.
            restore();
            throw_error<corrupt_error>(
                errc::corrupt_values,
                "the checkpoint's values describe " + std::to_string(met.tensors_met) +
                    " tensors, its header " + std::to_string(shaped.tensors().size()) +
                    ": a container is shorter in the values than in the tensors");
        }
    }
    if (gate != nullptr) {
        try {
            gate->pass();
        } catch (...) {
            restore();
            throw;
        }
    }
    read_pass(walks, obj, values, &src, read_pass_kind::tensors, own_tensors);
    return checked;
}

CKPT_INLINE schema_report load_state(const state_walks& walks, void* state, tensor_source& src,
                                     std::span<const std::byte> values, load_gate* gate,
                                     deferred_checksum* deferred) {
    tensor_oarchive now;
    now.reserve_tensors(src.by_name.size());
    now.containers_as_values(src.containers_as_values);
    collect(now, walks, state);
    const std::uint64_t own = now.tensors().size();
    const bool same_names = same_tensor_names(now.tensors(), src);
    // A state that holds no tensor memory (every tensor empty, nothing of the user's to
    // overwrite) is decoded into a staged copy while the checksum is computed; any other state
    // is verified first (see deferred_checksum).
    const bool holds_no_tensor_bytes =
        std::all_of(now.tensors().begin(), now.tensors().end(),
                    [](const tensor_record& r) { return r.bytes == 0 && !r.view; });
    const bool overlap = deferred != nullptr && walks.copy != nullptr && holds_no_tensor_bytes;
    if (deferred != nullptr) {
        if (overlap) {
            deferred->start();
        } else {
            deferred->check();
        }
    }
    if ((!same_names || overlap) && walks.copy != nullptr) {
        // The file has other fields (say, containers the state holds empty): decode into a copy,
        // which the values may reshape, and keep it only if everything fits. A tensor the file
        // lacks that loading recreates keeps its value from the backup.
        const std::unique_ptr<void, void (*)(void*) noexcept> staged(walks.copy(state),
                                                                     walks.destroy);
        std::optional<state_backup> kept; // only a partial load needs it
        if (src.allow_missing) {
            kept.emplace(now.values(), now.tensors(), src.containers_as_values);
            if (!kept->entries.empty()) src.fallback = &kept->tensors;
        }
        schema_report checked = decode_into(walks, staged.get(), src, values, nullptr, own, gate);
        if (overlap) deferred->check(); // before the state takes anything
        walks.adopt(state, staged.get());
        src.fallback = nullptr;
        return checked;
    }
    // Same fields: check every shape before touching anything. Either way decode in place; the
    // backup puts the state back if anything fails (a type that cannot be copied gets here with
    // other fields too, say a file written with an older class version).
    if (same_names) check_tensors(now.tensors(), src, problem_cap(src, own)).raise();
    const state_backup backup(now.values(), now.tensors(), src.containers_as_values);
    if (src.allow_missing && !backup.entries.empty()) src.fallback = &backup.tensors;
    // With the same names (so nothing missing or ignored to report) and no tensor that loading
    // makes anew, the check just made stands if the values pass meets the same tensors.
    const bool checked_now = same_names && backup.entries.empty();
    schema_report checked = decode_into(walks, state, src, values, &backup, own, gate,
                                        checked_now ? &now.tensors() : nullptr);
    src.fallback = nullptr;
    return checked;
}

CKPT_INLINE void apply_renames(tensor_source& src,
                               const std::vector<std::pair<std::string, std::string>>& renames,
                               std::vector<std::pair<std::string, std::string>>& renamed) {
    if (renames.empty()) return;
    const auto matches = [](std::string_view name, std::string_view old) {
        return old.empty() || name == old ||
               (name.size() > old.size() && name.substr(0, old.size()) == old &&
                name[old.size()] == '.');
    };
    std::vector<char> used(renames.size(), 0);
    const std::vector<file_tensor>& entries = *src.entries;
    src.renamed_names.assign(entries.size(), std::string());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const std::string& name = entries[i].name;
        std::string& now = src.renamed_names[i];
        now = name;
        if (name == values_entry) continue;
        std::size_t best = renames.size();
        for (std::size_t k = 0; k < renames.size(); ++k) {
            if (!matches(name, renames[k].first)) continue;
            used[k] = 1; // matches a name, even where a longer rename wins
            if (best == renames.size() || renames[k].first.size() > renames[best].first.size()) {
                best = k;
            }
        }
        if (best == renames.size()) continue;
        const auto& [old, to] = renames[best];
        std::string_view rest = std::string_view(name).substr(old.size());
        if (!old.empty() && !rest.empty()) rest.remove_prefix(1); // the '.'
        now = to;
        if (!rest.empty()) {
            if (!now.empty()) now += '.';
            now += rest;
        }
        if (now != name) renamed.emplace_back(name, now);
    }
    std::vector<schema_problem> problems;
    for (std::size_t k = 0; k < renames.size(); ++k) {
        if (used[k] == 0) {
            problems.push_back(
                {errc::schema_rename_unmatched, renames[k].first,
                 "the rename to '" + renames[k].second + "' matches no tensor of the checkpoint"});
        }
    }
    src.by_name.clear();
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].name == values_entry) continue;
        const auto [it, fresh] = src.by_name.emplace(src.renamed_names[i], i);
        if (fresh) continue;
        const std::string& a = entries[it->second].name;
        const std::string& b = entries[i].name;
        problems.push_back({errc::schema_rename_collision, src.renamed_names[i],
                            "the checkpoint's tensors " + std::min(a, b) + " and " +
                                std::max(a, b) + " both have this name after the renames"});
    }
    if (!problems.empty()) {
        const std::size_t total = problems.size();
        throw_error<schema_error>(std::move(problems), total);
    }
}

CKPT_INLINE metadata load_bytes(const std::byte* p, std::uint64_t size, const state_walks& walks,
                                void* state, const load_options& options,
                                const std::string& where) {
    if (size < deferred_checksum_bytes) {
        opened_checkpoint file(p, size, options.limits, where, true);
        return load_opened(file, walks, state, options, nullptr);
    }
    // The checksum is checked later (deferred_checksum). Whatever fails before it is reported as
    // verifying first would report it: a damaged file as damaged, anything else as it is.
    std::optional<opened_checkpoint> file;
    try {
        file.emplace(p, size, options.limits, where, false);
    } catch (...) {
        const opened_checkpoint verified(p, size, options.limits, where, true);
        throw;
    }
    deferred_checksum deferred(*file, p, size);
    try {
        return load_opened(*file, walks, state, options, &deferred);
    } catch (...) {
        if (!deferred.checked()) deferred.check();
        throw;
    }
}

CKPT_INLINE metadata load_opened(opened_checkpoint& file, const state_walks& walks, void* state,
                                 const load_options& options, deferred_checksum* deferred) {
    tensor_source src;
    std::span<const std::byte> values;
    file.index(src, values);
    src.allow_missing = options.allow_missing;
    src.ignore_unexpected = options.ignore_unexpected;
    load_report report;
    apply_renames(src, options.renames, report.renamed);
    schema_report checked = load_state(walks, state, src, values, nullptr, deferred);
    if (options.report != nullptr) {
        report.missing = std::move(checked.missing);
        report.ignored = std::move(checked.ignored);
        // By name: the file's order is its layout's (tensors by element size).
        std::sort(report.ignored.begin(), report.ignored.end());
        std::sort(report.renamed.begin(), report.renamed.end());
        *options.report = std::move(report);
    }
    return file.meta();
}

CKPT_INLINE metadata load_file(const std::filesystem::path& path, const state_walks& walks,
                               void* state, const load_options& options) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    const file_bytes bytes(io, where);
    return load_bytes(bytes.data(), bytes.size(), walks, state, options, where);
}

CKPT_INLINE std::uint64_t save_file(const std::filesystem::path& path, const state_walks& walks,
                                    const void* state, const metadata& meta,
                                    const save_options& options) {
    tensor_oarchive ar;
    collect(ar, walks, state);
    const write_plan plan = make_plan(ar.tensors(), ar.values(), meta);
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    atomic_file file(io, path);
    file.allocate(plan.total_bytes);
    write_checkpoint(file, plan);
    file.commit();
    return plan.total_bytes;
}

CKPT_INLINE std::vector<std::byte> save_bytes(const state_walks& walks, const void* state,
                                              const metadata& meta) {
    tensor_oarchive ar;
    collect(ar, walks, state);
    const write_plan plan = make_plan(ar.tensors(), ar.values(), meta);
    memory_sink sink(static_cast<std::size_t>(plan.total_bytes));
    write_checkpoint(sink, plan);
    return sink.take();
}

CKPT_INLINE std::vector<std::byte> read_head(io::backend& io, int fd, std::uint64_t size,
                                             const limits& lim, const std::string& where) {
    std::uint64_t n = 0;
    if (size >= 8) {
        if (const int e = read_all(io, fd, reinterpret_cast<std::byte*>(&n), 8, 0)) {
            throw_io(errc::io_read, "read", where, e);
        }
    }
    // A length that the file cannot hold is left for opened_checkpoint to report.
    const std::uint64_t head = size < 8 || n > lim.max_header_bytes || n > size - 8 ? 8 : 8 + n;
    std::vector<std::byte> bytes(static_cast<std::size_t>(std::min(head, size)));
    if (!bytes.empty()) {
        if (const int e = read_all(io, fd, bytes.data(), bytes.size(), 0)) {
            throw_io(errc::io_read, "read", where, e);
        }
    }
    return bytes;
}

CKPT_INLINE std::uint64_t stream_content_hash(io::backend& io, int fd, std::uint64_t size,
                                              const std::string& where,
                                              const progress_callback& progress) {
    constexpr std::uint64_t slice = std::uint64_t{8} << 20;
    const std::uint64_t digits_end = checksum_digits_offset + 16;
    static constexpr char zeros[16] = {'0', '0', '0', '0', '0', '0', '0', '0',
                                       '0', '0', '0', '0', '0', '0', '0', '0'};
    hasher h;
    // Bytes [at, at + n) of the file at `p`, with the checksum's own digits read as zeros.
    const auto update = [&](const std::byte* p, std::uint64_t at, std::uint64_t n) {
        const std::uint64_t lo = std::max(at, checksum_digits_offset);
        const std::uint64_t hi = std::min(at + n, digits_end);
        if (lo >= hi) {
            h.update(p, static_cast<std::size_t>(n));
            return;
        }
        h.update(p, static_cast<std::size_t>(lo - at));
        h.update(zeros + (lo - checksum_digits_offset), static_cast<std::size_t>(hi - lo));
        h.update(p + (hi - at), static_cast<std::size_t>(at + n - hi));
    };
    // A file whose pages are all in memory is hashed where it is (no copy); any other is read
    // in slices, so that memory does not grow with the file.
    const void* mapped = size > 0 && size <= static_cast<std::uint64_t>(PTRDIFF_MAX)
                             ? io.map(fd, static_cast<std::size_t>(size))
                             : nullptr;
    std::vector<std::byte> buffer;
    if (mapped == nullptr) buffer.resize(static_cast<std::size_t>(std::min(size, slice)));
    try {
        for (std::uint64_t at = 0; at < size;) {
            const std::uint64_t n = std::min(slice, size - at);
            const std::byte* p = nullptr;
            if (mapped != nullptr) {
                p = static_cast<const std::byte*>(mapped) + at;
            } else {
                if (const int e =
                        read_all(io, fd, buffer.data(), static_cast<std::size_t>(n), at)) {
                    throw_io(errc::io_read, "read", where, e);
                }
                p = buffer.data();
            }
            update(p, at, n);
            at += n;
            if (progress) progress(at, size);
        }
    } catch (...) {
        if (mapped != nullptr) io.unmap(mapped, static_cast<std::size_t>(size));
        throw;
    }
    if (mapped != nullptr) io.unmap(mapped, static_cast<std::size_t>(size));
    if (size == 0 && progress) progress(0, 0);
    return h.digest();
}

CKPT_INLINE info make_info(const opened_checkpoint& file, std::uint64_t file_bytes) {
    info out;
    out.format_version = file.version();
    out.meta = file.meta();
    out.checksum = file.checksum();
    out.checksum_verified = file.verified();
    out.file_bytes = file_bytes;
    out.header_bytes = file.header_bytes();
    out.raw_metadata = file.header().meta;
    if (const auto it = out.raw_metadata.find(std::string(key_library_version));
        it != out.raw_metadata.end()) {
        out.library_version = it->second;
    }
    if (const auto it = out.raw_metadata.find(std::string(key_fingerprint));
        it != out.raw_metadata.end()) {
        out.fingerprint = it->second;
    }
    for (const file_tensor& e : file.header().entries) {
        if (e.name == values_entry) {
            out.value_bytes = e.end - e.begin;
            continue;
        }
        out.tensors.push_back(
            {e.name, e.type, e.shape, e.begin, e.end - e.begin, e.order, e.place, -1});
    }
    return out;
}

} // namespace detail

CKPT_INLINE info inspect(const std::filesystem::path& path, const inspect_options& options) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    detail::fd_guard fd(io, detail::open_for_reading(io, where));
    std::uint64_t size = 0;
    if (io.file_size(fd.get(), size) != 0) detail::throw_io(errc::io_stat, "stat", where, errno);
    const std::vector<std::byte> head =
        detail::read_head(io, fd.get(), size, options.limits, where);
    detail::opened_checkpoint::content_hasher hasher;
    if (options.verify) {
        hasher = [&] {
            return detail::stream_content_hash(io, fd.get(), size, where, options.progress);
        };
    }
    const detail::opened_checkpoint file(head.data(), size, options.limits, where, options.verify,
                                         std::move(hasher));
    return detail::make_info(file, size);
}

} // namespace ckpt
