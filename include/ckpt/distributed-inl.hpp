#pragma once

#include <ckpt/distributed.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <utility>

#include <fcntl.h>

namespace ckpt {

namespace detail {

// ---------------------------------------------------------------------------------------------
// The messages ranks exchange: little-endian fields, lengths before strings.

class byte_writer {
public:
    void u64(std::uint64_t v) { raw(&v, sizeof v); }
    void str(std::string_view s) {
        u64(s.size());
        raw(s.data(), s.size());
    }
    void raw(const void* p, std::size_t n) {
        if (n == 0) return; // p may be null then
        const auto* b = static_cast<const std::byte*>(p);
        out.insert(out.end(), b, b + n);
    }
    std::vector<std::byte> out;
};

class byte_reader {
public:
    explicit byte_reader(std::span<const std::byte> in) : in_(in) {}
    std::uint64_t u64() {
        std::uint64_t v = 0;
        raw(&v, sizeof v);
        return v;
    }
    std::string str() {
        const std::uint64_t n = u64();
        need(n);
        std::string s(reinterpret_cast<const char*>(in_.data() + at_), static_cast<std::size_t>(n));
        at_ += static_cast<std::size_t>(n);
        return s;
    }
    void raw(void* p, std::size_t n) {
        need(n);
        if (n == 0) return; // p may be null then
        std::memcpy(p, in_.data() + at_, n);
        at_ += n;
    }
    [[nodiscard]] bool done() const noexcept { return at_ == in_.size(); }

private:
    void need(std::uint64_t n) const {
        if (n > in_.size() - at_) {
            throw_error<usage_error>(errc::usage_argument,
                                     "a rank sent a message this rank cannot read: the ranks run "
                                     "different builds of ckpt");
        }
    }
    std::span<const std::byte> in_;
    std::size_t at_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Errors across ranks

/// The message of an error without its "[ckpt.<kind>.<id>] " prefix.
inline std::string bare_message(const std::exception& e) {
    std::string_view s = e.what();
    if (s.starts_with("[ckpt.")) {
        const std::size_t end = s.find("] ");
        if (end != std::string_view::npos) s.remove_prefix(end + 2);
    }
    return std::string(s);
}

inline void encode_failure(byte_writer& w, std::exception_ptr failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const schema_error& e) {
        w.str("schema");
        w.u64(static_cast<std::uint64_t>(e.id()));
        w.u64(e.problems().size());
        for (const schema_problem& p : e.problems()) {
            w.u64(static_cast<std::uint64_t>(p.id));
            w.str(p.path);
            w.str(p.text);
        }
        w.u64(e.problem_count());
    } catch (const io_error& e) {
        w.str("io");
        w.u64(static_cast<std::uint64_t>(e.id()));
        w.str(bare_message(e));
        w.str(e.operation());
        w.str(e.path());
        w.u64(static_cast<std::uint64_t>(e.code().value()));
    } catch (const error& e) {
        w.str(e.kind());
        w.u64(static_cast<std::uint64_t>(e.id()));
        w.str(bare_message(e));
    } catch (const std::exception& e) {
        w.str("other");
        w.u64(static_cast<std::uint64_t>(errc::usage_rank_exception));
        w.str(e.what());
    } catch (...) {
        w.str("other");
        w.u64(static_cast<std::uint64_t>(errc::usage_rank_exception));
        w.str("an exception that is not a std::exception");
    }
}

[[noreturn]] inline void throw_failure(byte_reader& r, int rank, int ranks) {
    const std::string who = "rank " + std::to_string(rank) + " of " + std::to_string(ranks);
    const std::string kind = r.str();
    const int id = static_cast<int>(r.u64());
    if (kind == "schema") {
        std::vector<schema_problem> problems(static_cast<std::size_t>(r.u64()));
        for (schema_problem& p : problems) {
            p.id = static_cast<int>(r.u64());
            p.path = r.str();
            p.text = "on " + who + ": " + r.str();
        }
        const auto total = static_cast<std::size_t>(r.u64());
        if (problems.empty()) problems.push_back({id, "(the state)", "on " + who});
        throw_error<schema_error>(std::move(problems), total);
    }
    const std::string message = who + ": " + r.str();
    if (kind == "io") {
        std::string operation = r.str();
        std::string path = r.str();
        const int code = static_cast<int>(r.u64());
        throw_error<io_error>(id, message, std::move(operation), std::move(path),
                              std::error_code(code, std::generic_category()));
    }
    if (kind == "corrupt") throw_error<corrupt_error>(id, message);
    if (kind == "version") throw_error<version_error>(id, message);
    if (kind == "limit") throw_error<limit_error>(id, message);
    if (kind == "usage") throw_error<usage_error>(id, message);
    throw_error<usage_error>(
        errc::usage_rank_exception,
        who + " failed with an exception that is not ckpt's: " + message.substr(who.size() + 2));
}

/// What a rank is doing at a collective step, for the error when ranks differ.
inline std::string step_name(std::uint64_t step) {
    switch (static_cast<collective_step>(step)) {
    case collective_step::save_census: return "a save's first step (agreeing on the values)";
    case collective_step::save_values: return "a save's comparison of the ranks' values";
    case collective_step::save_directory: return "a save's preparation of the directory";
    case collective_step::save_written: return "a save's writing of the rank files";
    case collective_step::save_undone: return "a failed save's cleanup";
    case collective_step::save_commit: return "a save's commit";
    case collective_step::load_manifest: return "a load's reading of the manifest";
    case collective_step::load_gate: return "a load's last step";
    case collective_step::manager_open: return "a manager's start";
    case collective_step::manager_step: return "a manager's step()";
    case collective_step::manager_retention: return "a manager's retention";
    }
    return "step " + std::to_string(step);
}

CKPT_INLINE std::vector<std::vector<std::byte>> agree(communicator& comm, collective_step step,
                                                      std::exception_ptr failure,
                                                      std::span<const std::byte> payload) {
    byte_writer w;
    w.u64(static_cast<std::uint64_t>(step));
    w.u64(failure ? 1 : 0);
    if (failure) {
        encode_failure(w, failure);
    } else {
        w.raw(payload.data(), payload.size());
    }
    std::vector<std::vector<std::byte>> all = comm.all_gather(w.out);
    for (std::size_t r = 0; r < all.size(); ++r) {
        byte_reader rd(all[r]);
        const std::uint64_t theirs = rd.u64();
        if (theirs != static_cast<std::uint64_t>(step)) {
            throw_error<usage_error>(
                errc::usage_argument,
                "rank " + std::to_string(r) + " is in " + step_name(theirs) + ", rank " +
                    std::to_string(comm.rank()) + " in " +
                    step_name(static_cast<std::uint64_t>(step)) +
                    ": every rank must make the same ckpt calls in the same order (the same "
                    "save decisions, the same steps)");
        }
    }
    for (std::size_t r = 0; r < all.size(); ++r) {
        byte_reader rd(all[r]);
        (void)rd.u64();
        if (rd.u64() != 0) throw_failure(rd, static_cast<int>(r), comm.size());
    }
    for (std::vector<std::byte>& a : all) a.erase(a.begin(), a.begin() + 16);
    return all;
}

/// Runs `f`; its exception, if any, as an exception_ptr.
template <class F>
std::exception_ptr attempt(F&& f) noexcept {
    try {
        f();
        return nullptr;
    } catch (...) {
        return std::current_exception();
    }
}

// ---------------------------------------------------------------------------------------------
// Files

inline io::backend& backend_of(io::backend* b) {
    return b != nullptr ? *b : io::default_backend();
}

/// fsync of a directory, so that the names created in it survive a power loss.
inline void sync_dir(io::backend& io, const std::string& dir) {
    int fd = -1;
    do {
        fd = io.open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_io(errc::io_sync_directory, "open directory", dir, errno);
    fd_guard guard(io, fd);
    if (io.fsync(fd) != 0) throw_io(errc::io_sync_directory, "fsync directory", dir, errno);
}

/// Whether `name` is one a distributed save writes into its directory, or a temporary file of
/// one (atomic_file's "<name>.tmp-<pid>-<n>").
inline bool is_save_file(std::string_view name) {
    const std::size_t tmp = name.find(".tmp-");
    const std::string_view base = tmp == std::string_view::npos ? name : name.substr(0, tmp);
    return base == manifest_name || (base.starts_with("rank-") && base.ends_with(".ckpt"));
}

/// XXH3 of each `chunk` bytes of [p, p + n).
inline std::vector<std::uint64_t> chunk_hashes(const std::byte* p, std::uint64_t n,
                                               std::uint64_t chunk) {
    std::vector<std::uint64_t> out;
    out.reserve(static_cast<std::size_t>(n / chunk + 1));
    for (std::uint64_t at = 0; at < n; at += chunk) {
        out.push_back(hash_bytes(p + at, static_cast<std::size_t>(std::min(chunk, n - at))));
    }
    return out;
}

/// "F32 [3, 5]" of a record.
inline std::string record_side(const tensor_record& r) {
    return describe_side(r.type, r.shape());
}

// ---------------------------------------------------------------------------------------------
// Save

/// What a rank reports before writing: the digest of its values without the rank-local ones,
/// its replicated tensors (their layout and a digest of their bytes), and the bytes it writes
/// whatever happens (its sharded and rank-local tensors and its values).
struct save_census {
    std::uint64_t values_digest = 0;
    std::uint64_t own_bytes = 0;
    struct replica {
        std::string name;
        std::string side; ///< dtype, shape and order
        std::uint64_t bytes = 0;
        std::uint64_t digest = 0;
    };
    std::vector<replica> replicas;

    void write(byte_writer& w) const {
        w.u64(values_digest);
        w.u64(own_bytes);
        w.u64(replicas.size());
        for (const replica& r : replicas) {
            w.str(r.name);
            w.str(r.side);
            w.u64(r.bytes);
            w.u64(r.digest);
        }
    }
    static save_census read(std::span<const std::byte> bytes) {
        byte_reader rd(bytes);
        save_census c;
        c.values_digest = rd.u64();
        c.own_bytes = rd.u64();
        c.replicas.resize(static_cast<std::size_t>(rd.u64()));
        for (replica& r : c.replicas) {
            r.name = rd.str();
            r.side = rd.str();
            r.bytes = rd.u64();
            r.digest = rd.u64();
        }
        return c;
    }
};

/// The values with the rank-local ranges cut out, hashed.
inline std::uint64_t shared_values_digest(const tensor_oarchive& ar) {
    hasher h;
    std::uint64_t at = 0;
    const std::vector<std::byte>& v = ar.values();
    for (const auto& [b, e] : ar.rank_local_values()) {
        if (b > at) h.update(v.data() + at, static_cast<std::size_t>(b - at));
        at = std::max(at, e);
    }
    if (v.size() > at) h.update(v.data() + at, static_cast<std::size_t>(v.size() - at));
    return h.digest();
}

/// A value of the stream at `at` as text ("int64 42", "size 3", "12 bytes"), for an error.
inline std::string describe_value(const std::vector<std::byte>& v, std::uint64_t at) {
    if (at >= v.size()) return "nothing";
    const auto tag = static_cast<std::uint8_t>(v[static_cast<std::size_t>(at)]);
    const auto field = [&](auto zero) {
        decltype(zero) x{};
        if (at + 1 + sizeof x <= v.size()) std::memcpy(&x, v.data() + at + 1, sizeof x);
        return x;
    };
    if (tag == tag_size) return "size " + std::to_string(field(std::uint64_t{}));
    if (tag == tag_version) return "class version " + std::to_string(field(std::uint32_t{}));
    if (tag == tag_bytes) {
        const std::uint64_t n = field(std::uint64_t{});
        const std::uint64_t begin = at + 9;
        if (begin > v.size() || n > v.size() - begin) return std::to_string(n) + " bytes";
        std::string s(reinterpret_cast<const char*>(v.data() + begin),
                      static_cast<std::size_t>(std::min<std::uint64_t>(n, 40)));
        const bool text =
            std::all_of(s.begin(), s.end(), [](char c) { return c >= 32 && c < 127; });
        if (!text) return std::to_string(n) + " bytes";
        return "\"" + s + (n > 40 ? "...\"" : "\"");
    }
    switch (static_cast<dtype>(tag)) {
    case dtype::boolean: return field(std::uint8_t{}) != 0 ? "true" : "false";
    case dtype::u8: return "uint8 " + std::to_string(field(std::uint8_t{}));
    case dtype::i8: return "int8 " + std::to_string(field(std::int8_t{}));
    case dtype::u16: return "uint16 " + std::to_string(field(std::uint16_t{}));
    case dtype::i16: return "int16 " + std::to_string(field(std::int16_t{}));
    case dtype::u32: return "uint32 " + std::to_string(field(std::uint32_t{}));
    case dtype::i32: return "int32 " + std::to_string(field(std::int32_t{}));
    case dtype::u64: return "uint64 " + std::to_string(field(std::uint64_t{}));
    case dtype::i64: return "int64 " + std::to_string(field(std::int64_t{}));
    case dtype::f32: return "float " + format_double(field(float{}));
    case dtype::f64: return "double " + format_double(field(double{}));
    default: return "a value of tag " + std::to_string(tag);
    }
}

/// The ranks' shared values differ: walks the state again, noting where each value starts,
/// and names the first field whose value differs between rank 0 and rank `other`. Collective.
[[noreturn]] inline void raise_value_mismatch(communicator& comm, const state_walks& walks,
                                              const void* state, int other) {
    byte_writer w;
    const int me = comm.rank();
    if (me == 0 || me == other) {
        std::vector<std::pair<std::uint64_t, std::string>> trace;
        tensor_oarchive ar;
        ar.trace_values(&trace);
        collect(ar, walks, state);
        w.u64(ar.values().size());
        w.raw(ar.values().data(), ar.values().size());
        w.u64(ar.rank_local_values().size());
        for (const auto& [b, e] : ar.rank_local_values()) {
            w.u64(b);
            w.u64(e);
        }
        w.u64(trace.size());
        for (const auto& [at, path] : trace) {
            w.u64(at);
            w.str(path);
        }
    }
    const std::vector<std::vector<std::byte>> all =
        agree(comm, collective_step::save_values, nullptr, w.out);
    struct side {
        std::vector<std::byte> values;
        std::vector<std::pair<std::uint64_t, std::uint64_t>> local;
        std::vector<std::pair<std::uint64_t, std::string>> trace;
        /// The values outside rank_local, as (offset, path) in order.
        std::vector<std::size_t> shared;
    };
    const auto read = [&](int r) {
        side s;
        byte_reader rd(all[static_cast<std::size_t>(r)]);
        s.values.resize(static_cast<std::size_t>(rd.u64()));
        rd.raw(s.values.data(), s.values.size());
        s.local.resize(static_cast<std::size_t>(rd.u64()));
        for (auto& [b, e] : s.local) {
            b = rd.u64();
            e = rd.u64();
        }
        s.trace.resize(static_cast<std::size_t>(rd.u64()));
        for (auto& [at, path] : s.trace) {
            at = rd.u64();
            path = rd.str();
        }
        for (std::size_t i = 0; i < s.trace.size(); ++i) {
            const std::uint64_t at = s.trace[i].first;
            const bool local = std::any_of(s.local.begin(), s.local.end(), [&](const auto& range) {
                return at >= range.first && at < range.second;
            });
            if (!local) s.shared.push_back(i);
        }
        return s;
    };
    const side a = read(0);
    const side b = read(other);
    const auto end_of = [](const side& s, std::size_t i) {
        return i + 1 < s.trace.size() ? s.trace[i + 1].first : s.values.size();
    };
    const std::string ranks = "rank 0 and rank " + std::to_string(other);
    for (std::size_t k = 0; k < std::max(a.shared.size(), b.shared.size()); ++k) {
        if (k >= a.shared.size() || k >= b.shared.size()) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_rank_values, "(the state)",
                 ranks + " write different numbers of values (" + std::to_string(a.shared.size()) +
                     " and " + std::to_string(b.shared.size()) +
                     "): every value outside ckpt::rank_local must be the same on every rank"}});
        }
        const std::size_t i = a.shared[k];
        const std::size_t j = b.shared[k];
        const std::uint64_t ab = a.trace[i].first;
        const std::uint64_t bb = b.trace[j].first;
        const std::uint64_t an = end_of(a, i) - ab;
        const std::uint64_t bn = end_of(b, j) - bb;
        if (a.trace[i].second == b.trace[j].second && an == bn &&
            std::memcmp(a.values.data() + ab, b.values.data() + bb, static_cast<std::size_t>(an)) ==
                0) {
            continue;
        }
        const std::string& path = a.trace[i].second;
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_rank_values, path,
             "rank 0 has " + describe_value(a.values, ab) + ", rank " + std::to_string(other) +
                 " has " + describe_value(b.values, bb) +
                 (a.trace[i].second != b.trace[j].second ? " (at " + b.trace[j].second + ")"
                                                         : std::string()) +
                 ": a value outside ckpt::rank_local must be the same on every rank"}});
    }
    throw_error<schema_error>(
        std::vector<schema_problem>{{errc::schema_rank_values, "(the state)",
                                     ranks + " write different values outside ckpt::rank_local"}});
}

/// A piece this rank wrote, as it reports it to rank 0 for the manifest.
struct written_piece {
    std::string name;
    placement_kind kind = placement_kind::replicated;
    dtype type = dtype::u8;
    char order = '-';
    std::vector<std::uint64_t> shape; ///< global (the rank's own for a rank-local tensor)
    manifest_piece piece;
};

inline void write_piece(byte_writer& w, const manifest_piece& p) {
    w.u64(p.row_begin);
    w.u64(p.row_end);
    w.u64(p.offset);
    w.u64(p.bytes);
    w.u64(p.chunks.size());
    w.raw(p.chunks.data(), p.chunks.size() * sizeof(std::uint64_t));
}

inline manifest_piece read_piece(byte_reader& rd) {
    manifest_piece p;
    p.row_begin = rd.u64();
    p.row_end = rd.u64();
    p.offset = rd.u64();
    p.bytes = rd.u64();
    p.chunks.resize(static_cast<std::size_t>(rd.u64()));
    rd.raw(p.chunks.data(), p.chunks.size() * sizeof(std::uint64_t));
    return p;
}

/// Removes what a failed save left of this rank's file; then (after every rank did, which the
/// caller's collective step ensures) rank 0 removes the directory if it made it.
inline void remove_quietly(io::backend& io, const std::string& path) noexcept {
    io.unlink(path.c_str());
}

} // namespace detail

namespace detail {

CKPT_INLINE void prepare_save(communicator& comm, distributed_save_job& job,
                              const state_walks& walks, const void* state) {
    const std::filesystem::path& dir = job.dir;
    const metadata& meta = job.meta;
    const distributed_save_options& options = job.options;
    io::backend& io = backend_of(options.backend);
    const int me = comm.rank();
    const int ranks = comm.size();
    const auto n_ranks = static_cast<std::uint64_t>(ranks);
    const std::uint64_t chunk = options.chunk_bytes;
    const std::string dir_s = dir.string();

    // 1. Walk the state; agree on the values and the replicated tensors.
    tensor_oarchive ar;
    save_census census;
    std::vector<std::vector<std::uint64_t>> replica_chunks; // by replicated record, in order
    std::exception_ptr failed = attempt([&] {
        if (chunk < min_chunk_bytes || chunk > max_chunk_bytes) {
            throw_error<usage_error>(errc::usage_argument,
                                     "distributed_save_options::chunk_bytes is " +
                                         std::to_string(chunk) + "; it must be in [" +
                                         std::to_string(min_chunk_bytes) + ", " +
                                         std::to_string(max_chunk_bytes) + "]");
        }
        collect(ar, walks, state);
        (void)make_plan(ar.tensors(), ar.values(), meta); // names and metadata, checked early
        census.values_digest = shared_values_digest(ar);
        census.own_bytes = ar.values().size();
        for (const tensor_record& r : ar.tensors()) {
            if (r.place.kind != placement_kind::replicated) {
                census.own_bytes += r.bytes;
                continue;
            }
            std::vector<std::uint64_t> hashes;
            std::uint64_t digest = 0;
            if (options.replicas != replica_check::skip) {
                hashes = chunk_hashes(r.data, r.bytes, chunk);
                digest = hash_bytes(hashes.data(), hashes.size() * sizeof(std::uint64_t));
            }
            census.replicas.push_back(
                {r.name, record_side(r) + " " + order_name(r.order == 'C' ? 'C' : 'R'), r.bytes,
                 digest});
            replica_chunks.push_back(std::move(hashes));
        }
    });
    byte_writer cw;
    if (!failed) census.write(cw);
    std::vector<save_census> all;
    for (const auto& bytes : agree(comm, collective_step::save_census, failed, cw.out))
        all.push_back(save_census::read(bytes));

    const save_census& first = all[0];
    for (int r = 1; r < ranks; ++r) {
        const save_census& c = all[static_cast<std::size_t>(r)];
        const std::string other = "rank " + std::to_string(r);
        for (std::size_t i = 0; i < std::max(first.replicas.size(), c.replicas.size()); ++i) {
            if (i < first.replicas.size() && i < c.replicas.size() &&
                first.replicas[i].name == c.replicas[i].name &&
                first.replicas[i].side == c.replicas[i].side) {
                continue;
            }
            const std::string name =
                i < first.replicas.size() ? first.replicas[i].name : c.replicas[i].name;
            const std::string text =
                i >= first.replicas.size() ? "rank 0 has no such replicated tensor, " + other +
                                                 " has " + c.replicas[i].side
                : i >= c.replicas.size() ? "rank 0 has " + first.replicas[i].side + ", " + other +
                                               " has no such replicated tensor"
                : first.replicas[i].name != c.replicas[i].name
                    ? "rank 0 has this replicated tensor where " + other + " has '" +
                          c.replicas[i].name + "'"
                    : "rank 0 has " + first.replicas[i].side + ", " + other + " has " +
                          c.replicas[i].side;
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_mismatch, name,
                 text + ": a replicated tensor must be the same on every rank (declare it "
                        "ckpt::sharded or ckpt::rank_local if it is not)"}});
        }
    }
    for (int r = 1; r < ranks; ++r) {
        if (all[static_cast<std::size_t>(r)].values_digest != first.values_digest) {
            raise_value_mismatch(comm, walks, state, r);
        }
    }
    if (options.replicas != replica_check::skip) {
        std::vector<schema_problem> diverged;
        for (std::size_t i = 0; i < first.replicas.size(); ++i) {
            for (int r = 1; r < ranks; ++r) {
                const auto& c = all[static_cast<std::size_t>(r)].replicas[i];
                if (c.digest == first.replicas[i].digest) continue;
                diverged.push_back({errc::schema_replica_divergence, c.name,
                                    "replicated, but rank 0 and rank " + std::to_string(r) +
                                        " hold different values (XXH3 " +
                                        to_hex(first.replicas[i].digest) + " and " +
                                        to_hex(c.digest) + "): the replicas diverged"});
                break;
            }
        }
        if (!diverged.empty()) {
            if (options.replicas == replica_check::error) {
                throw_error<schema_error>(std::move(diverged));
            }
            for (const schema_problem& p : diverged) {
                const std::string text = "[ckpt.schema.313] " + p.path + ": " + p.text;
                if (options.warnings != nullptr) {
                    options.warnings->push_back(text);
                } else if (me == 0) {
                    std::cerr << "ckpt warning: " << text << '\n';
                }
            }
        }
    }

    // Each replicated tensor is written by one rank: the largest first, each to the rank that
    // writes the fewest bytes so far (ties to the lowest rank). Every rank computes the same.
    std::vector<std::uint64_t> load(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
        load[static_cast<std::size_t>(r)] = all[static_cast<std::size_t>(r)].own_bytes;
    }
    std::vector<std::size_t> by_size(first.replicas.size());
    std::iota(by_size.begin(), by_size.end(), std::size_t{0});
    std::stable_sort(by_size.begin(), by_size.end(), [&](std::size_t a, std::size_t b) {
        return first.replicas[a].bytes > first.replicas[b].bytes;
    });
    std::vector<int> writer(first.replicas.size());
    for (const std::size_t i : by_size) {
        const auto least =
            static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        writer[i] = static_cast<int>(least);
        load[least] += first.replicas[i].bytes;
    }

    // 2. Rank 0 prepares the directory: refuses a committed checkpoint, removes what a save
    // that died left there, or creates it (its parent must exist).
    bool& created = job.created;
    failed = nullptr;
    if (me == 0) {
        failed = attempt([&] {
            if (is_distributed_checkpoint(dir, &io)) {
                throw_error<usage_error>(errc::usage_checkpoint_exists,
                                         "'" + dir_s +
                                             "' already holds a committed checkpoint; a "
                                             "checkpoint is never overwritten (save to a new "
                                             "directory, or remove this one first)");
            }
            std::vector<io::dir_entry> names;
            if (io.list(dir_s.c_str(), names) == 0) {
                for (const io::dir_entry& e : names) {
                    if (e.type != io::dir_entry::kind::regular || !is_save_file(e.name)) {
                        throw_error<usage_error>(
                            errc::usage_foreign_file,
                            "'" + dir_s + "' holds '" + e.name +
                                "', which a distributed save did not write; save into a new "
                                "or empty directory");
                    }
                }
                for (const io::dir_entry& e : names) {
                    const std::string path = (dir / e.name).string();
                    if (io.unlink(path.c_str()) != 0) {
                        throw_io(errc::io_remove, "remove", path, errno,
                                 "it is left from a save that did not commit");
                    }
                }
            } else if (errno == ENOENT) {
                if (io.mkdir(dir_s.c_str(), 0777) != 0) {
                    throw_io(errc::io_open, "create directory", dir_s, errno);
                }
                created = true;
                const std::filesystem::path parent =
                    dir.has_parent_path() ? dir.parent_path() : std::filesystem::path(".");
                sync_dir(io, parent.string());
            } else {
                throw_io(errc::io_open, "list directory", dir_s, errno);
            }
        });
    }
    const auto remove_directory = [&]() noexcept {
        if (me == 0 && created) io.rmdir(dir_s.c_str());
    };
    try {
        agree(comm, collective_step::save_directory, failed);
    } catch (...) {
        remove_directory();
        throw;
    }

    // What this rank writes: its share of the replicated tensors, its rows of the sharded ones,
    // its rank-local ones and all its values.
    job.file_path = (dir / rank_file_name(static_cast<std::uint64_t>(me), n_ranks)).string();
    std::size_t replica = 0;
    for (const tensor_record& r : ar.tensors()) {
        if (r.place.kind == placement_kind::replicated) {
            const std::size_t i = replica++;
            if (writer[i] != me) continue;
            job.mine.push_back(r);
            job.known.push_back(std::move(replica_chunks[i]));
            continue;
        }
        job.mine.push_back(r);
        job.known.emplace_back();
    }
    job.values = std::move(ar.values());
}

CKPT_INLINE void stage_save(distributed_save_job& job) {
    std::uint64_t total = 0;
    for (const tensor_record& r : job.mine) total += r.bytes;
    job.staged.resize(static_cast<std::size_t>(total));
    std::uint64_t at = 0;
    for (tensor_record& r : job.mine) {
        if (r.bytes != 0)
            std::memcpy(job.staged.data() + at, r.data, static_cast<std::size_t>(r.bytes));
        r.data = job.staged.data() + at;
        at += r.bytes;
    }
}

CKPT_INLINE void write_save(distributed_save_job& job) {
    io::backend& io = backend_of(job.options.backend);
    const std::uint64_t chunk = job.options.chunk_bytes;
    const std::vector<tensor_record>& mine = job.mine;
    byte_writer pw;
    {
        const write_plan plan = make_plan(mine, job.values, job.meta);
        atomic_file file(io, job.file_path);
        file.allocate(plan.total_bytes);
        const std::uint64_t checksum = write_checkpoint(file, plan);
        file.commit();
        job.file_bytes = plan.total_bytes;

        std::unordered_map<std::string_view, std::size_t> index;
        for (std::size_t i = 0; i < mine.size(); ++i) index.emplace(mine[i].name, i);
        pw.u64(plan.total_bytes);
        pw.u64(checksum);
        pw.u64(plan.entries.size() - 1);
        for (const file_tensor& e : plan.entries) {
            const std::uint64_t offset = plan.data_offset() + e.begin;
            const std::uint64_t bytes = e.end - e.begin;
            if (e.name == values_entry) continue;
            const std::size_t i = index.at(e.name);
            const tensor_record& r = mine[i];
            written_piece p;
            p.name = r.name;
            p.kind = r.place.kind;
            p.type = r.type;
            p.order = r.order;
            p.shape = r.shape();
            p.piece.offset = offset;
            p.piece.bytes = bytes;
            p.piece.chunks = !job.known[i].empty() || r.bytes == 0
                                 ? job.known[i]
                                 : chunk_hashes(r.data, r.bytes, chunk);
            if (r.place.kind == placement_kind::sharded) {
                p.piece.row_begin = r.place.row_offset;
                p.piece.row_end = r.place.row_offset + p.shape[0];
                p.shape[0] = r.place.global_rows;
            } else {
                p.piece.row_end = p.shape.empty() ? 1 : p.shape[0];
            }
            pw.str(p.name);
            pw.u64(static_cast<std::uint64_t>(static_cast<unsigned char>(p.kind)));
            pw.u64(static_cast<std::uint64_t>(p.type));
            pw.u64(static_cast<std::uint64_t>(static_cast<unsigned char>(p.order)));
            pw.u64(p.shape.size());
            for (const std::uint64_t d : p.shape) pw.u64(d);
            write_piece(pw, p.piece);
        }
        const file_tensor& v = plan.entries.back();
        manifest_piece values;
        values.offset = plan.data_offset() + v.begin;
        values.bytes = v.end - v.begin;
        values.chunks = chunk_hashes(job.values.data(), job.values.size(), chunk);
        write_piece(pw, values);
    }
    job.report = std::move(pw.out);
}

CKPT_INLINE void commit_save(communicator& comm, distributed_save_job& job,
                             std::exception_ptr failed) {
    const std::filesystem::path& dir = job.dir;
    const metadata& meta = job.meta;
    io::backend& io = backend_of(job.options.backend);
    const int me = comm.rank();
    const auto n_ranks = static_cast<std::uint64_t>(comm.size());
    const std::uint64_t chunk = job.options.chunk_bytes;
    const std::string dir_s = dir.string();
    const std::string& file_path = job.file_path;
    const auto remove_directory = [&]() noexcept {
        if (me == 0 && job.created) io.rmdir(dir_s.c_str());
    };
    const auto undo_files = [&]() noexcept {
        remove_quietly(io, file_path);
        // Every rank removes its own file before rank 0 removes the directory.
        try {
            agree(comm, collective_step::save_undone, nullptr);
        } catch (...) {
        }
        remove_directory();
    };
    std::vector<std::vector<std::byte>> reports;
    try {
        reports = agree(comm, collective_step::save_written, failed, job.report);
    } catch (...) {
        undo_files();
        throw;
    }

    // 4. Rank 0 writes the manifest; its rename is the commit point.
    failed = nullptr;
    bool manifest_renamed = false;
    if (me == 0) {
        failed = attempt([&] {
            manifest m;
            m.ranks = n_ranks;
            m.chunk_bytes = chunk;
            m.library_version = CKPT_VERSION_STRING;
            std::vector<std::pair<std::string, std::string>> pairs;
            metadata with_time = meta;
            if (with_time.time == std::chrono::system_clock::time_point{}) {
                with_time.time = std::chrono::system_clock::now();
            }
            encode_user_metadata(with_time, pairs);
            for (auto& [k, val] : pairs) m.meta.emplace(std::move(k), std::move(val));
            std::map<std::string, manifest_tensor> global;
            std::vector<manifest_tensor> local;
            for (std::size_t r = 0; r < reports.size(); ++r) {
                byte_reader rd(reports[r]);
                manifest_file f;
                f.name = rank_file_name(r, n_ranks);
                f.bytes = rd.u64();
                f.checksum = rd.u64();
                const std::uint64_t count = rd.u64();
                for (std::uint64_t k = 0; k < count; ++k) {
                    manifest_tensor t;
                    t.name = rd.str();
                    t.kind = static_cast<placement_kind>(static_cast<char>(rd.u64()));
                    t.type = static_cast<dtype>(rd.u64());
                    t.order = static_cast<char>(rd.u64());
                    t.shape.resize(static_cast<std::size_t>(rd.u64()));
                    for (std::uint64_t& d : t.shape) d = rd.u64();
                    manifest_piece p = read_piece(rd);
                    p.file = r;
                    if (t.kind == placement_kind::rank_local) {
                        t.pieces.push_back(std::move(p));
                        local.push_back(std::move(t));
                        continue;
                    }
                    auto [it, fresh] = global.try_emplace(t.name, t);
                    if (!fresh && (it->second.type != t.type || it->second.shape != t.shape ||
                                   it->second.kind != t.kind)) {
                        throw_error<schema_error>(std::vector<schema_problem>{
                            {errc::schema_placement, t.name,
                             "rank " + std::to_string(r) + " holds rows of " +
                                 describe_side(t.type, t.shape) + ", another rank of " +
                                 describe_side(it->second.type, it->second.shape) +
                                 ": the shards of one tensor must agree on its global shape"}});
                    }
                    if (p.row_end > p.row_begin || t.rows() == 0 ||
                        t.kind != placement_kind::sharded) {
                        it->second.pieces.push_back(std::move(p));
                    }
                }
                f.values = read_piece(rd);
                m.files.push_back(std::move(f));
            }
            for (auto& [name, t] : global) {
                std::sort(t.pieces.begin(), t.pieces.end(),
                          [](const manifest_piece& a, const manifest_piece& b) {
                              return a.row_begin < b.row_begin;
                          });
                std::uint64_t next = 0;
                for (const manifest_piece& p : t.pieces) {
                    if (p.row_begin != next) {
                        throw_error<schema_error>(std::vector<schema_problem>{
                            {errc::schema_placement, name,
                             "the ranks' shards " +
                                 std::string(p.row_begin > next ? "leave rows [" : "overlap at [") +
                                 std::to_string(std::min(next, p.row_begin)) + ", " +
                                 std::to_string(std::max(next, p.row_begin)) + ") of " +
                                 std::to_string(t.rows()) + (p.row_begin > next ? " unheld" : "") +
                                 ": together they must hold every row exactly once"}});
                    }
                    next = p.row_end;
                }
                if (next != t.rows()) {
                    throw_error<schema_error>(std::vector<schema_problem>{
                        {errc::schema_placement, name,
                         "the ranks' shards leave rows [" + std::to_string(next) + ", " +
                             std::to_string(t.rows()) +
                             ") unheld: together they must hold every row exactly once"}});
                }
                m.tensors.push_back(std::move(t));
            }
            std::stable_sort(
                local.begin(), local.end(),
                [](const manifest_tensor& a, const manifest_tensor& b) { return a.name < b.name; });
            for (manifest_tensor& t : local) m.tensors.push_back(std::move(t));
            const std::string json = encode_manifest(m);
            atomic_file file(io, dir / manifest_name);
            file.write(json.data(), json.size());
            try {
                file.commit();
            } catch (const io_error& e) {
                // Renamed but its directory not synced: in place, yet it may not survive a
                // power loss. The save fails, so the manifest goes too.
                manifest_renamed = e.id() == errc::io_sync_directory;
                throw;
            }
        });
    }
    try {
        agree(comm, collective_step::save_commit, failed);
    } catch (...) {
        if (manifest_renamed) remove_quietly(io, (dir / manifest_name).string());
        undo_files();
        throw;
    }
}

CKPT_INLINE std::uint64_t distributed_save(communicator& comm, const std::filesystem::path& dir,
                                           const state_walks& walks, const void* state,
                                           const metadata& meta,
                                           const distributed_save_options& options) {
    distributed_save_job job;
    job.dir = dir;
    job.meta = meta;
    job.options = options;
    prepare_save(comm, job, walks, state);
    const std::exception_ptr failed = attempt([&] { write_save(job); });
    commit_save(comm, job, failed);
    return job.file_bytes;
}

// ---------------------------------------------------------------------------------------------
// Load

/// The last collective step of a load: every rank passes it or none does.
class agreeing_gate final : public load_gate {
public:
    explicit agreeing_gate(communicator& comm) : comm_(comm) {}
    void pass() override {
        voted = true;
        agree(comm_, collective_step::load_gate, nullptr);
    }
    /// Whether this rank took part in the step (it then must not again).
    bool voted = false;

private:
    communicator& comm_;
};

CKPT_INLINE metadata distributed_load(communicator& comm, const std::filesystem::path& dir,
                                      const state_walks& walks, void* state,
                                      const distributed_load_options& options) {
    io::backend& io = backend_of(options.backend);
    const int me = comm.rank();
    const auto ranks = static_cast<std::uint64_t>(comm.size());
    const std::string manifest_path = (dir / manifest_name).string();

    // 1. Rank 0 reads the manifest; every rank parses the same bytes.
    std::vector<std::byte> json;
    std::exception_ptr failed = nullptr;
    if (me == 0) {
        failed = attempt([&] {
            fd_guard fd(io, open_for_reading(io, manifest_path));
            std::uint64_t size = 0;
            if (io.file_size(fd.get(), size) != 0) {
                throw_io(errc::io_stat, "stat", manifest_path, errno);
            }
            if (size > options.limits.max_header_bytes) {
                throw_error<limit_error>(errc::limit_header,
                                         "'" + manifest_path + "': the manifest is " +
                                             std::to_string(size) +
                                             " bytes, more than the limit of " +
                                             std::to_string(options.limits.max_header_bytes));
            }
            json.resize(static_cast<std::size_t>(size));
            if (const int e = read_all(io, fd.get(), json.data(), json.size(), 0)) {
                throw_io(errc::io_read, "read", manifest_path, e);
            }
        });
    }
    const std::vector<std::byte> shared =
        std::move(agree(comm, collective_step::load_manifest, failed, json)[0]);
    const manifest m = parse_manifest(
        std::string_view(reinterpret_cast<const char*>(shared.data()), shared.size()),
        options.limits, manifest_path);
    metadata meta = decode_metadata(m.meta, manifest_path);

    // 2. Every rank reads what its state needs, then loads it; the gate is the last step.
    agreeing_gate gate(comm);
    try {
        tensor_oarchive now;
        collect(now, walks, state);
        const bool has_local = now.rank_local_declarations() != 0;
        std::uint64_t from = static_cast<std::uint64_t>(me) % m.ranks;
        if (!options.rank_local_from.empty()) {
            if (options.rank_local_from.size() != ranks) {
                throw_error<usage_error>(errc::usage_argument,
                                         "rank_local_from has " +
                                             std::to_string(options.rank_local_from.size()) +
                                             " entries for " + std::to_string(ranks) + " ranks");
            }
            from = options.rank_local_from[static_cast<std::size_t>(me)];
            if (from >= m.ranks) {
                throw_error<usage_error>(errc::usage_argument,
                                         "rank_local_from[" + std::to_string(me) + "] is " +
                                             std::to_string(from) + ", but the checkpoint has " +
                                             std::to_string(m.ranks) + " ranks");
            }
        } else if (has_local && m.ranks != ranks) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_placement, "(the state)",
                 "the state has ckpt::rank_local fields; the checkpoint was saved by " +
                     std::to_string(m.ranks) + " ranks and this job has " + std::to_string(ranks) +
                     ": say which saved rank each rank takes them from "
                     "(distributed_load_options::rank_local_from)"}});
        }

        // The checkpoint's tensors, as one file's entries would list them.
        std::vector<file_tensor> entries;
        std::vector<const manifest_tensor*> origin;
        for (const manifest_tensor& t : m.tensors) {
            if (t.kind == placement_kind::rank_local && t.pieces[0].file != from) continue;
            file_tensor e;
            e.name = t.name;
            e.type = t.type;
            e.shape = t.shape;
            e.order = t.order;
            e.place.kind = t.kind == placement_kind::rank_local ? placement_kind::rank_local
                                                                : placement_kind::replicated;
            entries.push_back(std::move(e));
            origin.push_back(&t);
        }
        tensor_source src;
        src.entries = &entries;
        for (std::size_t i = 0; i < entries.size(); ++i) src.by_name.emplace(entries[i].name, i);
        src.allow_missing = options.allow_missing;
        src.ignore_unexpected = options.ignore_unexpected;
        load_report report;
        apply_renames(src, options.renames, report.renamed);

        // The rows each entry reads: a sharded tensor of the state its own rows, anything else
        // the whole tensor.
        std::vector<std::pair<std::uint64_t, std::uint64_t>> rows(entries.size());
        std::vector<char> wanted(entries.size(), 1);
        for (std::size_t i = 0; i < entries.size(); ++i) {
            rows[i] = {0, origin[i]->rows()};
        }
        for (const tensor_record& r : now.tensors()) {
            const auto it = src.by_name.find(r.name);
            if (it == src.by_name.end()) continue;
            const std::size_t i = it->second;
            file_tensor& e = entries[i];
            const manifest_tensor& t = *origin[i];
            if (t.kind == placement_kind::rank_local) {
                wanted[i] = r.place.kind == placement_kind::rank_local ? 1 : 0;
                continue;
            }
            if (r.place.kind == placement_kind::rank_local) {
                wanted[i] = 0; // the check reports it
                continue;
            }
            if (r.place.kind != placement_kind::sharded) continue;
            // A global tensor read as rows of it: those the state holds, if they fit.
            const std::uint64_t n =
                r.rank == 0 ? 0 : static_cast<std::uint64_t>(std::max<std::int64_t>(r.dims[0], 0));
            e.place = {placement_kind::sharded, r.place.row_offset, t.rows()};
            if (!t.shape.empty()) e.shape[0] = n;
            if (r.place.global_rows != t.rows() || t.shape.empty() ||
                r.place.row_offset > t.rows() || n > t.rows() - r.place.row_offset) {
                wanted[i] = 0;
                continue;
            }
            rows[i] = {r.place.row_offset, r.place.row_offset + n};
        }
        // Fail before reading when the tensors cannot fit (the load would fail the same way).
        if (same_tensor_names(now.tensors(), src)) {
            check_tensors(now.tensors(), src, problem_cap(src, now.tensors().size())).raise();
        }

        std::uint64_t total = 0;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            file_tensor& e = entries[i];
            const std::uint64_t bytes =
                wanted[i] != 0 ? (rows[i].second - rows[i].first) * origin[i]->row_bytes() : 0;
            total = (total + 7) / 8 * 8;
            e.begin = total;
            e.end = total + bytes;
            total += bytes;
        }
        std::vector<std::uint64_t> storage(static_cast<std::size_t>((total + 7) / 8));
        auto* data = reinterpret_cast<std::byte*>(storage.data());
        piece_reader reader(io, dir, m);
        for (std::size_t i = 0; i < entries.size(); ++i) {
            if (wanted[i] == 0 || entries[i].end == entries[i].begin) continue;
            const manifest_tensor& t = *origin[i];
            const std::uint64_t row_bytes = t.row_bytes();
            const auto [a, b] = rows[i];
            const std::string what = "tensor '" + t.name + "'";
            for (const manifest_piece& p : t.pieces) {
                const std::uint64_t lo = std::max(a, p.row_begin);
                const std::uint64_t hi = std::min(b, p.row_end);
                if (lo >= hi) continue;
                reader.read(p, (lo - p.row_begin) * row_bytes, (hi - p.row_begin) * row_bytes,
                            data + entries[i].begin + (lo - a) * row_bytes, what);
            }
            if (entries[i].type == dtype::boolean) {
                for (std::uint64_t k = entries[i].begin; k < entries[i].end; ++k) {
                    if (static_cast<unsigned char>(data[k]) > 1) {
                        throw_error<corrupt_error>(errc::corrupt_values,
                                                   "'" + dir.string() + "': BOOL tensor '" +
                                                       t.name + "' holds a byte other than 0 or 1");
                    }
                }
            }
        }
        src.data = data;
        const manifest_piece& vp = m.files[static_cast<std::size_t>(from)].values;
        std::vector<std::byte> values(static_cast<std::size_t>(vp.bytes));
        reader.read(vp, 0, vp.bytes, values.data(), "the values");
        if (options.bytes_read != nullptr) *options.bytes_read = reader.bytes_read();

        schema_report checked = load_state(walks, state, src, values, &gate);
        if (options.report != nullptr) {
            report.missing = std::move(checked.missing);
            report.ignored = std::move(checked.ignored);
            std::sort(report.ignored.begin(), report.ignored.end());
            std::sort(report.renamed.begin(), report.renamed.end());
            *options.report = std::move(report);
        }
    } catch (...) {
        if (!gate.voted) {
            gate.voted = true;
            agree(comm, collective_step::load_gate,
                  std::current_exception()); // throws the lowest failing rank's error
        }
        throw;
    }
    return meta;
}

} // namespace detail
} // namespace ckpt
