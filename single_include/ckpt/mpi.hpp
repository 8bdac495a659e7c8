// DO NOT EDIT: generated from include/ by tools/amalgamate.py
// ckpt 0.1.0
// SPDX-License-Identifier: MIT

#pragma once

// Distributed checkpoints over MPI (the ckpt::mpi target, which links MPI::MPI_CXX).
//
//     ckpt::mpi::save(MPI_COMM_WORLD, "run/step-000100", state, {.step = 100});
//     ckpt::mpi::load(MPI_COMM_WORLD, "run/step-000100", state);
//
// Both are collective: every rank of the communicator calls them with its own state. A
// checkpoint is a directory that every rank sees at the same path, holding one ckpt file per
// rank and a manifest that rank 0 writes last; see <ckpt/distributed.hpp>.

#include "ckpt.hpp" // the single header
// begin ckpt/distributed.hpp

// Distributed checkpoints: every rank of a job writes its own file into one directory, and one
// manifest, written last, commits them together. The protocol is here, behind a small
// communicator interface; <ckpt/mpi.hpp> gives it MPI. Nothing here knows MPI.


#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace ckpt {

/// What a distributed save does when replicated tensors hold different values on different
/// ranks (replicas that drifted apart).
enum class replica_check {
    error, ///< the save fails on every rank (ckpt.schema.313); the default
    warn,  ///< the save goes on; the difference is reported as a warning
    skip,  ///< no comparison (the tensors are not hashed for it)
};

/// How a distributed save writes.
struct distributed_save_options {
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    replica_check replicas = replica_check::error;
    /// The size of the chunks each piece is checksummed in: a load that needs part of a piece
    /// reads and verifies the chunks that hold that part.
    std::uint64_t chunk_bytes = detail::default_chunk_bytes;
    /// Receives replica_check::warn's warnings (the same on every rank); when null, rank 0
    /// writes them to stderr.
    std::vector<std::string>* warnings = nullptr;
};

/// How a distributed load reads: load()'s options (limits, partial loads, renames), and:
struct distributed_load_options : load_options {
    /// rank_local_from[r]: the rank of the checkpoint whose rank-local fields rank r takes.
    /// Empty: each rank takes its own, which needs as many ranks as saved the checkpoint.
    std::vector<std::uint64_t> rank_local_from{};
    /// When not null, set to the bytes this rank read from the checkpoint's files.
    std::uint64_t* bytes_read = nullptr;
};

namespace detail {

/// The collective calls the protocol needs. Every rank calls the same ones in the same order.
class communicator {
public:
    [[nodiscard]] virtual int rank() const = 0;
    [[nodiscard]] virtual int size() const = 0;
    /// Every rank's bytes, in rank order, on every rank.
    virtual std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) = 0;

protected:
    ~communicator() = default;
};

/// The collective steps of ckpt's protocol. Each rank says which step it is at, so ranks that
/// call ckpt in a different order get an error rather than each other's messages.
enum class collective_step : std::uint8_t {
    save_census = 1,
    save_values,
    save_directory,
    save_written,
    save_undone,
    save_commit,
    load_manifest,
    load_gate,
    manager_open,
    manager_step,
    manager_retention,
};

/// One collective step: every rank gives its outcome (an exception, or none and `payload`);
/// when every rank succeeded, every rank gets every payload. Otherwise every rank throws the
/// same ckpt::error: that of the lowest-numbered rank that failed, naming it.
/// @throws usage_error (601) on every rank when the ranks are at different steps
std::vector<std::vector<std::byte>> agree(communicator& comm, collective_step step,
                                          std::exception_ptr failure,
                                          std::span<const std::byte> payload = {});

/// A distributed save between its steps: what prepare_save agreed on and this rank writes,
/// then what write_save wrote. distributed_save is prepare_save, write_save, commit_save; an
/// asynchronous save stages the tensors (stage_save) and runs write_save on another thread,
/// which makes no collective call.
struct distributed_save_job {
    std::filesystem::path dir;
    metadata meta;
    distributed_save_options options;
    std::string file_path;           ///< this rank's file
    bool created = false;            ///< rank 0 made the directory (and removes it on failure)
    std::vector<tensor_record> mine; ///< this rank's tensors: in the state, or in `staged`
    std::vector<std::vector<std::uint64_t>> known; ///< their chunk hashes, when computed already
    std::vector<std::byte> values;                 ///< all this rank's values
    std::vector<std::byte> staged;                 ///< stage_save's copy of `mine`'s bytes
    std::uint64_t file_bytes = 0;                  ///< written by write_save
    std::vector<std::byte> report;                 ///< what write_save tells rank 0
};

/// Collective: walks the state, agrees on its values and replicas, prepares the directory and
/// decides what this rank writes. @throws the agreed error (nothing is left behind)
void prepare_save(communicator& comm, distributed_save_job& job, const state_walks& walks,
                  const void* state);
/// Copies this rank's tensors into job.staged, so that the state may change meanwhile.
void stage_save(distributed_save_job& job);
/// Writes and syncs this rank's file. Local: no collective call, so any thread may run it.
void write_save(distributed_save_job& job);
/// Collective: agrees on every rank's write_save (`failed`: this rank's exception), then rank
/// 0 commits the manifest. On any failure every rank throws the agreed error and the files and
/// the directory are removed.
void commit_save(communicator& comm, distributed_save_job& job, std::exception_ptr failed);

/// The collective save and load behind ckpt::mpi::save and ckpt::mpi::load.
std::uint64_t distributed_save(communicator& comm, const std::filesystem::path& dir,
                               const state_walks& walks, const void* state, const metadata& meta,
                               const distributed_save_options& options);
metadata distributed_load(communicator& comm, const std::filesystem::path& dir,
                          const state_walks& walks, void* state,
                          const distributed_load_options& options);

} // namespace detail
} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/distributed-inl.hpp


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
// end ckpt/distributed-inl.hpp
#endif
// end ckpt/distributed.hpp
// begin ckpt/distributed_manager.hpp

// The distributed manager's core, behind ckpt::mpi::manager: the policies, retention and
// directory scan of ckpt::manager, with every decision made once for all ranks. Nothing here
// knows MPI; see <ckpt/distributed.hpp> for the communicator.


#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ckpt {

/// How a distributed manager names, times, writes and reads its checkpoints.
struct distributed_manager_options {
    std::string prefix = "ckpt"; ///< checkpoints are directories <prefix>-<step>/
    /// Wall clock for time-based policies and retention, read on rank 0 only (its time is
    /// every rank's); nullptr: system_clock::now.
    std::function<std::chrono::system_clock::time_point()> clock{};
    /// Called on every rank for every checkpoint a restore passes over.
    std::function<void(const skipped_checkpoint&)> on_skipped{};
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    ckpt::limits limits{};
    /// How each checkpoint is written (replica check, chunk size); its backend is the one above.
    distributed_save_options save{};
    /// Save in the background: step() returns once the ranks have agreed on the save and each
    /// has copied its part of the state; a thread of each rank writes and syncs its file, and
    /// makes no MPI call, whatever thread level MPI granted. The commit (the manifest) is made on
    /// the training thread, by the first step() at which every rank's write is done, or by a
    /// step() whose policy fires again, wait(), a restore or the destructor, which wait for it.
    /// One save is in flight at a time. A failed background write is raised, on every rank, by
    /// the call that commits; the policy then asks again.
    bool async = false;
};

namespace detail {

/// ckpt::mpi::manager's non-template part. Every member that is called on one rank is called
/// on every rank, in the same order: each is collective. The cost-aware rules (every_optimal,
/// overhead_at_most) learn the largest cost of a save of any rank, measured on each rank's
/// steady_clock and agreed on at the next step(), before the rules are asked.
class distributed_manager {
public:
    distributed_manager(communicator& comm, std::filesystem::path dir, save_policy when,
                        retention keep, distributed_manager_options options);
    distributed_manager(const distributed_manager&) = delete;
    distributed_manager& operator=(const distributed_manager&) = delete;
    /// Commits the save in flight (collective); raises its error unless during stack unwinding.
    ~distributed_manager() noexcept(false);

    /// Commits the save in flight, if any. @returns what was committed and deleted
    save_result wait();

    save_result step(const state_walks& walks, const void* state, const metadata& meta,
                     bool forced);
    std::optional<metadata> restore(const state_walks& walks, void* state,
                                    const std::string* metric, goal direction,
                                    const load_options& options);

    [[nodiscard]] std::vector<checkpoint_entry> list() const;
    [[nodiscard]] const std::vector<skipped_checkpoint>& skipped() const noexcept {
        return skipped_;
    }
    [[nodiscard]] const std::vector<std::filesystem::path>& cleaned() const noexcept {
        return cleaned_;
    }
    [[nodiscard]] manager_stats stats() const;
    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }
    [[nodiscard]] std::filesystem::path path_of(std::int64_t step) const;

private:
    std::chrono::system_clock::time_point now() const;
    /// Rank 0: creates and locks the directory, removes what dead saves left, scans it.
    /// @returns the scan, for every rank
    std::vector<std::byte> open_directory();
    void adopt_listing(std::span<const std::byte> bytes);
    /// Rank 0 deletes what retention does not keep; every rank's index follows.
    void apply_retention(const std::filesystem::path& just_written, save_result& result);
    /// A save is committed: it enters the index, and retention runs.
    void record_committed(checkpoint_entry&& entry, save_result& result);
    /// Async: waits for this rank's writer, then commits (collective).
    void finish_pending(save_result& result);

    struct pending_save {
        distributed_save_job job;
        checkpoint_entry entry;
        policy_state::snapshot before; ///< the policy before this save, put back if it fails
        std::thread writer;
        std::atomic<bool> done{false};
        std::exception_ptr failure;
        std::chrono::steady_clock::time_point staged{}; ///< for the commit latency
    };
    std::unique_ptr<pending_save> pending_;
    int unwinding_ = std::uncaught_exceptions();

    communicator& comm_;
    std::filesystem::path dir_;
    policy_state policy_;
    retention keep_;
    distributed_manager_options options_;
    io::backend* io_;
    ranked_metrics ranked_metrics_;
    std::optional<directory_lock> lock_; ///< rank 0's
    std::vector<checkpoint_entry> index_;
    std::vector<skipped_checkpoint> unreadable_;
    std::vector<skipped_checkpoint> skipped_;
    std::vector<std::filesystem::path> cleaned_;
    manager_stats stats_;
    std::int64_t seen_step_ = 0;
    std::int64_t committed_step_ = 0;
    std::chrono::system_clock::time_point committed_time_{};
    // The save-frequency tradeoff: one decision for every rank, on the largest cost of any.
    double unshared_cost_ = -1; ///< this rank's cost of the last save, not yet agreed on; -1: none
    std::chrono::system_clock::time_point unshared_start_{}; ///< that save's start (rank 0's time)
    save_cost cost_;                                         ///< C: the largest of any rank's
    save_cost latency_;                                      ///< L, async
    double observed_interval_ = 0;
    std::chrono::system_clock::time_point save_end_{}; ///< end of the last save (rank 0's time)
};

/// Removes a distributed checkpoint: its manifest first (it is then no checkpoint), then its
/// files and the directory. @returns 0, or the errno of the removal that failed first
int remove_distributed_checkpoint(const std::filesystem::path& dir, io::backend& io);

} // namespace detail
} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/distributed_manager-inl.hpp


#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fcntl.h>

namespace ckpt::detail {

namespace listing_codec {

inline void put_time(byte_writer& w, std::chrono::system_clock::time_point t) {
    w.u64(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count()));
}

inline std::chrono::system_clock::time_point get_time(byte_reader& r) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(static_cast<std::int64_t>(r.u64()))));
}

inline void put_metrics(byte_writer& w, const std::map<std::string, double>& metrics) {
    w.u64(metrics.size());
    for (const auto& [k, v] : metrics) {
        w.str(k);
        w.raw(&v, sizeof v);
    }
}

inline std::map<std::string, double> get_metrics(byte_reader& r) {
    std::map<std::string, double> out;
    for (std::uint64_t n = r.u64(); n > 0; --n) {
        std::string k = r.str();
        double v = 0;
        r.raw(&v, sizeof v);
        out.emplace(std::move(k), v);
    }
    return out;
}

inline void put_entry(byte_writer& w, const checkpoint_entry& e) {
    w.str(e.path.string());
    w.u64(static_cast<std::uint64_t>(e.step));
    w.u64(static_cast<std::uint64_t>(e.epoch));
    put_time(w, e.time);
    put_metrics(w, e.metrics);
    w.u64(e.bytes);
}

inline checkpoint_entry get_entry(byte_reader& r) {
    checkpoint_entry e;
    e.path = r.str();
    e.step = static_cast<std::int64_t>(r.u64());
    e.epoch = static_cast<std::int64_t>(r.u64());
    e.time = get_time(r);
    e.metrics = get_metrics(r);
    e.bytes = r.u64();
    e.distributed = true;
    return e;
}

inline void put_skipped(byte_writer& w, const skipped_checkpoint& s) {
    w.str(s.path.string());
    w.u64(static_cast<std::uint64_t>(s.error_id));
    w.str(s.reason);
}

inline skipped_checkpoint get_skipped(byte_reader& r) {
    skipped_checkpoint s;
    s.path = r.str();
    s.error_id = static_cast<int>(r.u64());
    s.reason = r.str();
    return s;
}

} // namespace listing_codec

CKPT_INLINE int remove_distributed_checkpoint(const std::filesystem::path& dir, io::backend& io) {
    const std::string manifest = (dir / manifest_name).string();
    if (io.unlink(manifest.c_str()) != 0 && errno != ENOENT) return errno;
    // The manifest's removal is durable before the files it names go: a power loss never
    // leaves a committed manifest whose files are missing.
    try {
        sync_dir(io, dir.string());
    } catch (const io_error& e) {
        return e.code().value();
    }
    std::vector<io::dir_entry> names;
    if (io.list(dir.c_str(), names) != 0) return errno == ENOENT ? 0 : errno;
    int first = 0;
    for (const io::dir_entry& e : names) {
        if (e.type != io::dir_entry::kind::regular || !is_save_file(e.name)) continue;
        if (detail::unlink_and_release(io, (dir / e.name).c_str()) != 0 && errno != ENOENT &&
            first == 0) {
            first = errno;
        }
    }
    if (first != 0) return first;
    if (io.rmdir(dir.c_str()) != 0 && errno != ENOENT) return errno;
    return 0;
}

CKPT_INLINE distributed_manager::distributed_manager(communicator& comm, std::filesystem::path dir,
                                                     save_policy when, retention keep,
                                                     distributed_manager_options options)
    : comm_(comm), dir_(std::move(dir)), policy_(std::move(when)), keep_(std::move(keep)),
      options_([&] {
          check_prefix(options.prefix, "ckpt::mpi::manager");
          return std::move(options);
      }()),
      io_(options_.backend != nullptr ? options_.backend : &io::default_backend()),
      ranked_metrics_(ranked_by(policy_.policy(), keep_)) {
    options_.save.backend = io_;
    std::vector<std::byte> listing;
    std::exception_ptr failed = nullptr;
    if (comm_.rank() == 0) failed = attempt([&] { listing = open_directory(); });
    std::vector<std::vector<std::byte>> all;
    try {
        all = agree(comm_, collective_step::manager_open, failed, listing);
    } catch (...) {
        lock_.reset();
        throw;
    }
    adopt_listing(all[0]);
}

CKPT_INLINE distributed_manager::~distributed_manager() noexcept(false) {
    struct flush_releases_at_end {
        io::backend* io;
        ~flush_releases_at_end() { io->flush_releases(); }
    } flushing{io_};
    if (!pending_) return;
    try {
        save_result ignored;
        finish_pending(ignored);
    } catch (...) {
        if (std::uncaught_exceptions() > unwinding_) {
            report_unraised("ckpt::mpi::manager", std::current_exception());
            return;
        }
        throw;
    }
}

CKPT_INLINE save_result distributed_manager::wait() {
    save_result result;
    if (pending_) finish_pending(result);
    io_->flush_releases();
    return result;
}

CKPT_INLINE void distributed_manager::finish_pending(save_result& result) {
    std::unique_ptr<pending_save> p = std::move(pending_);
    if (p->writer.joinable()) p->writer.join();
    try {
        commit_save(comm_, p->job, p->failure);
    } catch (...) {
        stats_.saves_failed += 1;
        policy_.roll_back(std::move(p->before)); // the policy asks again
        throw;
    }
    p->entry.bytes = p->job.file_bytes;
    add_sample(latency_,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - p->staged).count());
    record_committed(std::move(p->entry), result);
}

CKPT_INLINE void distributed_manager::record_committed(checkpoint_entry&& entry,
                                                       save_result& result) {
    const std::filesystem::path path = entry.path;
    stats_.checkpoints_written += 1;
    committed_step_ = entry.step;
    committed_time_ = entry.time;
    std::erase_if(index_, [&](const checkpoint_entry& e) { return e.path == path; });
    std::erase_if(unreadable_, [&](const skipped_checkpoint& u) { return u.path == path; });
    index_.push_back(std::move(entry));
    result.committed.push_back(path);
    apply_retention(path, result);
}

CKPT_INLINE std::vector<std::byte> distributed_manager::open_directory() {
    create_directories(dir_, *io_);
    lock_.emplace(dir_, options_.prefix, *io_);
    directory_listing found =
        scan_directory(dir_, directory_options{options_.prefix, io_, options_.limits});
    for (const std::filesystem::path& p : found.incomplete) {
        if (remove_distributed_checkpoint(p, *io_) == 0) cleaned_.push_back(p);
    }
    byte_writer w;
    listing_codec::put_time(w, now());
    std::vector<const checkpoint_entry*> ours;
    for (const checkpoint_entry& e : found.checkpoints) {
        if (e.distributed) ours.push_back(&e);
    }
    w.u64(ours.size());
    for (const checkpoint_entry* e : ours) listing_codec::put_entry(w, *e);
    std::vector<const skipped_checkpoint*> bad;
    for (const skipped_checkpoint& s : found.unreadable) {
        if (s.path.extension() != ".ckpt") bad.push_back(&s);
    }
    w.u64(bad.size());
    for (const skipped_checkpoint* s : bad) listing_codec::put_skipped(w, *s);
    w.u64(cleaned_.size());
    for (const auto& p : cleaned_) w.str(p.string());
    return std::move(w.out);
}

CKPT_INLINE void distributed_manager::adopt_listing(std::span<const std::byte> bytes) {
    byte_reader r(bytes);
    const auto start = listing_codec::get_time(r);
    index_.clear();
    for (std::uint64_t n = r.u64(); n > 0; --n) index_.push_back(listing_codec::get_entry(r));
    unreadable_.clear();
    for (std::uint64_t n = r.u64(); n > 0; --n) {
        unreadable_.push_back(listing_codec::get_skipped(r));
    }
    cleaned_.clear();
    for (std::uint64_t n = r.u64(); n > 0; --n) cleaned_.emplace_back(r.str());
    skipped_ = unreadable_;
    policy_.start(start);
    save_end_ = start;
    committed_time_ = start;
    for (const checkpoint_entry& e : index_) {
        if (e.step >= committed_step_) {
            committed_step_ = e.step;
            committed_time_ = e.time;
            seen_step_ = e.step;
        }
    }
}

CKPT_INLINE std::chrono::system_clock::time_point distributed_manager::now() const {
    return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

CKPT_INLINE std::filesystem::path distributed_manager::path_of(std::int64_t step) const {
    return dir_ / checkpoint_dir_name(options_.prefix, step);
}

CKPT_INLINE save_result distributed_manager::step(const state_walks& walks, const void* state,
                                                  const metadata& meta, bool forced) {
    save_result result;
    // Every rank takes rank 0's time and metrics (the rules decide on them), and checks that
    // every rank is at the same step.
    byte_writer w;
    w.u64(static_cast<std::uint64_t>(meta.step));
    // Async: whether this rank's background write is done (2: no save in flight).
    w.u64(!pending_ ? 2 : pending_->done.load(std::memory_order_acquire) ? 1 : 0);
    w.raw(&unshared_cost_, sizeof unshared_cost_);
    std::exception_ptr failed = nullptr;
    if (comm_.rank() == 0) {
        failed = attempt([&] {
            for (const auto& [metric, direction] : ranked_metrics_) {
                if (meta.metrics.find(metric) == meta.metrics.end()) {
                    throw_error<usage_error>(
                        errc::usage_missing_metric,
                        "step " + std::to_string(meta.step) + " supplies no metric '" + metric +
                            "', which the save policy or retention ranks checkpoints by; pass "
                            "its latest value on every step (rank 0's is used)");
                }
            }
            listing_codec::put_time(w, now());
            listing_codec::put_metrics(w, meta.metrics);
        });
    }
    const std::vector<std::vector<std::byte>> all =
        agree(comm_, collective_step::manager_step, failed, w.out);
    byte_reader first(all[0]);
    const auto step0 = static_cast<std::int64_t>(first.u64());
    bool all_written = first.u64() == 1;
    double cost = -1; // the largest cost of the last save on any rank
    first.raw(&cost, sizeof cost);
    const auto t = listing_codec::get_time(first);
    metadata m = meta;
    m.metrics = listing_codec::get_metrics(first);
    for (std::size_t r = 1; r < all.size(); ++r) {
        byte_reader other(all[r]);
        const auto step = static_cast<std::int64_t>(other.u64());
        const bool written = other.u64() == 1; // read whatever all_written is: fields follow
        all_written = all_written && written;
        double theirs = -1;
        other.raw(&theirs, sizeof theirs);
        cost = std::max(cost, theirs);
        if (step != step0) {
            throw_error<usage_error>(errc::usage_argument,
                                     "ckpt::mpi::manager: rank 0 is at step " +
                                         std::to_string(step0) + ", rank " + std::to_string(r) +
                                         " at step " + std::to_string(step) +
                                         ": every rank must call step() with the same step");
        }
    }
    seen_step_ = m.step;
    if (cost >= 0) {
        // Every rank learns the same cost and end, so the rules decide alike on every rank.
        const auto end =
            unshared_start_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                  std::chrono::duration<double>(cost));
        policy_.measured(cost, end);
        add_sample(cost_, cost);
        const double gap = std::chrono::duration<double>(unshared_start_ - save_end_).count();
        observed_interval_ = gap > 0 ? gap : 0;
        save_end_ = end;
        unshared_cost_ = -1;
    }
    // Async: every rank's background write is done, so the save in flight commits now.
    if (pending_ && all_written) finish_pending(result);
    if (forced) {
        policy_.clear_fired();
    } else if (!policy_.ask(m, t)) {
        return result;
    }
    const auto asked = std::chrono::steady_clock::now(); // the cost includes the wait below
    if (pending_) finish_pending(result);                // one save in flight: wait for it
    if (m.step < 0) {
        throw_error<usage_error>(errc::usage_argument, "ckpt::mpi::manager: step " +
                                                           std::to_string(m.step) + " is negative");
    }
    std::vector<save_rule> after = policy_.advanced(m, t, result.reasons);
    if (forced) result.reasons.emplace_back("save_now");
    metadata stored = m;
    if (stored.time == std::chrono::system_clock::time_point{}) stored.time = t;
    policy_state::write_tags(after, stored);
    result.path = path_of(m.step);

    checkpoint_entry entry;
    entry.path = result.path;
    entry.step = m.step;
    entry.epoch = m.epoch;
    entry.time = stored.time;
    entry.metrics = m.metrics;
    entry.distributed = true;

    const auto started = std::chrono::steady_clock::now();
    const auto took = [&] {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        stats_.last_save_seconds = seconds;
        stats_.total_save_seconds += seconds;
        // Agreed on at the next step(): the cost-aware rules learn the largest of any rank.
        unshared_cost_ =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
        unshared_start_ = t;
    };
    if (options_.async) {
        auto p = std::make_unique<pending_save>();
        p->job.dir = result.path;
        p->job.meta = stored;
        p->job.options = options_.save;
        prepare_save(comm_, p->job, walks, state); // collective; its error leaves the policy due
        // From here on a failure is this rank's alone: it is kept for the commit, where every
        // rank learns it.
        p->failure = attempt([&] { stage_save(p->job); });
        p->entry = std::move(entry);
        p->before = policy_.save();
        p->staged = std::chrono::steady_clock::now();
        policy_.commit(std::move(after), forced);
        if (p->failure) {
            p->done.store(true, std::memory_order_release);
        } else {
            pending_save* job = p.get();
            p->writer = std::thread([job] {
                job->failure = attempt([&] { write_save(job->job); });
                job->done.store(true, std::memory_order_release);
            });
        }
        pending_ = std::move(p);
        took();
        result.saved = true;
        result.pending = true;
        return result;
    }
    entry.bytes = distributed_save(comm_, result.path, walks, state, stored, options_.save);
    took();
    policy_.commit(std::move(after), forced);
    result.saved = true;
    record_committed(std::move(entry), result);
    return result;
}

CKPT_INLINE void distributed_manager::apply_retention(const std::filesystem::path& just_written,
                                                      save_result& result) {
    std::vector<bool> kept = select_kept(index_, keep_, ranked_metrics_);
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (index_[i].path == just_written) kept[i] = true; // never the newest save
    }
    // Rank 0 deletes; every rank learns which deletions failed (those stay indexed), and every
    // rank's bytes of the new checkpoint.
    byte_writer w;
    std::uint64_t mine = 0;
    for (const checkpoint_entry& e : index_) {
        if (e.path == just_written) mine = e.bytes;
    }
    if (comm_.rank() == 0) {
        // The manifest's bytes count too.
        const std::string manifest = (just_written / manifest_name).string();
        const int fd = io_->open(manifest.c_str(), O_RDONLY | O_CLOEXEC, 0);
        std::uint64_t size = 0;
        if (fd >= 0 && io_->file_size(fd, size) == 0) mine += size;
        if (fd >= 0) io_->close(fd);
    }
    w.u64(mine);
    if (comm_.rank() == 0) {
        for (std::size_t i = 0; i < index_.size(); ++i) {
            if (kept[i]) continue;
            const int err = remove_distributed_checkpoint(index_[i].path, *io_);
            w.u64(err == 0 ? 0 : 1);
        }
    }
    const std::vector<std::vector<std::byte>> all =
        agree(comm_, collective_step::manager_retention, nullptr, w.out);
    std::uint64_t total = 0;
    for (const auto& bytes : all) {
        byte_reader r(bytes);
        total += r.u64();
    }
    byte_reader outcome(all[0]);
    (void)outcome.u64();
    std::vector<checkpoint_entry> remaining;
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (index_[i].path == just_written) index_[i].bytes = total;
        if (kept[i]) {
            remaining.push_back(std::move(index_[i]));
        } else if (outcome.u64() == 0) {
            result.deleted.push_back(index_[i].path);
        } else {
            stats_.delete_failures += 1;
            remaining.push_back(std::move(index_[i]));
        }
    }
    index_ = std::move(remaining);
}

CKPT_INLINE std::optional<metadata>
distributed_manager::restore(const state_walks& walks, void* state, const std::string* metric,
                             goal direction, const load_options& options) {
    if (pending_) {
        save_result ignored;
        finish_pending(ignored);
    }
    const auto started = std::chrono::steady_clock::now();
    const std::vector<std::size_t> order =
        metric != nullptr ? ranked(index_, *metric, direction) : newest_first(index_);
    skipped_ = unreadable_;
    for (const auto& s : unreadable_) {
        if (options_.on_skipped) options_.on_skipped(s);
    }
    distributed_load_options own;
    static_cast<load_options&>(own) = options;
    own.limits = options_.limits;
    own.backend = io_;
    std::vector<std::filesystem::path> damaged;
    const auto forget = [&] {
        std::erase_if(index_, [&](const checkpoint_entry& e) {
            return std::find(damaged.begin(), damaged.end(), e.path) != damaged.end();
        });
    };
    for (const std::size_t i : order) {
        const std::filesystem::path path = index_[i].path;
        try {
            metadata meta = distributed_load(comm_, path, walks, state, own);
            stats_.restart_seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            forget();
            policy_.restore(meta, index_);
            committed_step_ = meta.step;
            committed_time_ = meta.time;
            seen_step_ = meta.step;
            return meta;
        } catch (const schema_error&) {
            forget();
            throw;
        } catch (const version_error&) {
            forget();
            throw;
        } catch (const error& err) {
            // Every rank has the same error (the load agrees on it), so every rank falls back.
            skipped_.push_back({path, err.id(), err.what()});
            unreadable_.push_back(skipped_.back());
            damaged.push_back(path);
            if (options_.on_skipped) options_.on_skipped(skipped_.back());
        }
    }
    forget();
    return std::nullopt;
}

CKPT_INLINE std::vector<checkpoint_entry> distributed_manager::list() const {
    return listed(index_, ranked_metrics_);
}

CKPT_INLINE manager_stats distributed_manager::stats() const {
    manager_stats s = stats_;
    s.checkpoints_on_disk = index_.size();
    s.bytes_on_disk = 0;
    for (const auto& e : index_) s.bytes_on_disk += e.bytes;
    s.steps_at_risk = seen_step_ - committed_step_;
    s.seconds_at_risk = std::chrono::duration<double>(now() - committed_time_).count();
    s.saves_in_flight = pending_ ? 1 : 0;
    s.save_cost_seconds = cost_.seconds;
    s.interval_seconds = policy_.target_interval().value_or(observed_interval_);
    s.commit_latency_seconds = options_.async ? latency_.seconds : 0;
    s.expected_loss_seconds = (s.interval_seconds + s.save_cost_seconds) / 2 +
                              s.commit_latency_seconds + s.restart_seconds;
    return s;
}

} // namespace ckpt::detail
// end ckpt/distributed_manager-inl.hpp
#endif
// end ckpt/distributed_manager.hpp

// Only MPI's C API is used: its deprecated C++ bindings (which OpenMPI's and MPICH's mpi.h
// pull in for C++ unless told not to) are left out, with their warnings.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ckpt::mpi {

using save_options = distributed_save_options;
using load_options = distributed_load_options;
using manager_options = distributed_manager_options;

/// ckpt's collective calls over an MPI communicator (the calling thread makes them).
class communicator final : public detail::communicator {
public:
    explicit communicator(MPI_Comm comm) : comm_(comm) {
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }
    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return size_; }

    std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) override {
        if (mine.size() > static_cast<std::size_t>(INT_MAX)) {
            detail::throw_error<usage_error>(errc::usage_argument,
                                             "a rank's message of " + std::to_string(mine.size()) +
                                                 " bytes is more than MPI counts");
        }
        const int n = static_cast<int>(mine.size());
        std::vector<int> counts(static_cast<std::size_t>(size_));
        MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_);
        std::vector<int> displs(counts.size());
        long long total = 0;
        for (std::size_t r = 0; r < counts.size(); ++r) {
            displs[r] = static_cast<int>(total);
            total += counts[r];
            if (total > INT_MAX) {
                detail::throw_error<usage_error>(errc::usage_argument,
                                                 "the ranks' messages are more bytes than MPI "
                                                 "counts");
            }
        }
        std::vector<std::byte> all(static_cast<std::size_t>(total));
        MPI_Allgatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE,
                       comm_);
        std::vector<std::vector<std::byte>> out(counts.size());
        for (std::size_t r = 0; r < counts.size(); ++r) {
            out[r].assign(all.begin() + displs[r], all.begin() + displs[r] + counts[r]);
        }
        return out;
    }

private:
    MPI_Comm comm_;
    int rank_ = 0;
    int size_ = 1;
};

/// Saves every rank's `state` as one checkpoint in the directory `dir` (which must not hold a
/// committed checkpoint; its parent must exist). Collective. Each rank writes its own file:
/// its rows of the ckpt::sharded tensors, its ckpt::rank_local fields, its share of the
/// replicated tensors (each written once, by one rank, the writing spread evenly) and its
/// values. Then rank 0 commits the manifest. On any failure on any rank, every rank throws the
/// same error (the lowest failing rank's, naming it) and nothing of the save is left.
/// @returns the bytes of this rank's file
/// @throws io_error, schema_error (placement, values that differ between ranks, diverged
/// replicas), usage_error (606: `dir` holds a committed checkpoint)
template <class T>
std::uint64_t save(MPI_Comm comm, const std::filesystem::path& dir, const T& state,
                   const metadata& meta = {}, const save_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::mpi::save: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    communicator c(comm);
    return detail::distributed_save(c, dir, detail::walks_of<T>, &state, meta, options);
}

/// Loads every rank's `state` from the checkpoint in `dir`. Collective. The job may have
/// another number of ranks than the one that saved it: each rank reads the rows of the
/// sharded tensors it holds (its state says which, as on save), the whole of the replicated
/// ones, and verifies the checksums of what it read. The strong guarantee holds on every rank:
/// on any failure on any rank, every rank throws the same error and no state changed.
/// @returns the checkpoint's metadata
template <class T>
metadata load(MPI_Comm comm, const std::filesystem::path& dir, T& state,
              const load_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::mpi::load: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    communicator c(comm);
    return detail::distributed_load(c, dir, detail::walks_of<T>, &state, options);
}

/// ckpt::manager for a distributed job: the same policies and retention, one directory of
/// distributed checkpoints (<prefix>-<step>/) on a file system every rank sees at the same path.
/// Every member is collective: every rank of the communicator calls it, with the same step.
///
///     ckpt::mpi::manager m(MPI_COMM_WORLD, "run", ckpt::every_steps(100), ckpt::keep_last(3));
///     if (auto meta = m.restore_latest(state)) first = meta->step + 1;
///     for (...) { train(state); m.step(state, {.step = s, .metrics = {{"loss", l}}}); }
///
/// Decisions are made once for every rank: the rules read rank 0's clock and rank 0's metrics
/// (pass the same values everywhere, or know that rank 0's count), and rank 0 deletes what
/// retention does not keep. Each step() is one all-gather of a few bytes (the ranks agree on the
/// step and take rank 0's time and metrics), plus a distributed save when a rule fires.
/// Rank 0 holds the directory's lock. With manager_options::async, each rank writes its file on
/// a thread of its own, which makes no MPI call: the commit happens at a later step() on the
/// training thread (see distributed_manager_options::async).
class manager {
public:
    /// Opens (rank 0 creates and locks) `dir`, removes checkpoint directories a dead save left
    /// without a manifest, and indexes the committed ones. Collective.
    manager(MPI_Comm comm, std::filesystem::path dir, save_policy when, retention keep = keep_all(),
            manager_options options = {})
        : comm_(comm),
          core_(comm_, std::move(dir), std::move(when), std::move(keep), std::move(options)) {}
    manager(const manager&) = delete;
    manager& operator=(const manager&) = delete;

    /// Call once per training step on every rank: saves when the policy fires (a distributed
    /// save), then applies retention.
    template <class State>
    save_result step(const State& state, const metadata& meta) {
        static_assert(is_checkpointable<State>::value,
                      "ckpt::mpi::manager::step: the state is not checkpointable");
        return core_.step(detail::walks_of<State>, &state, meta, false);
    }

    /// Saves now, whatever the policy says.
    template <class State>
    save_result save_now(const State& state, const metadata& meta) {
        static_assert(is_checkpointable<State>::value,
                      "ckpt::mpi::manager::save_now: the state is not checkpointable");
        return core_.step(detail::walks_of<State>, &state, meta, true);
    }

    /// Async: commits the save in flight (waiting for every rank's background write). Sync:
    /// returns at once. @returns what was committed and deleted
    save_result wait() { return core_.wait(); }

    /// Loads the newest checkpoint that every rank can load (a damaged file on any rank makes
    /// every rank fall back to the one before, together); nothing on disk: nullopt, states
    /// untouched. `options` as for ckpt::mpi::load, with the manager's limits and backend.
    template <class State>
    std::optional<metadata> restore_latest(State& state, const ckpt::load_options& options = {}) {
        return core_.restore(detail::walks_of<State>, &state, nullptr, goal::minimize, options);
    }

    /// Like restore_latest, from the best checkpoint by `metric` (then the next best, ...).
    template <class State>
    std::optional<metadata> restore_best(State& state, const std::string& metric,
                                         goal direction = goal::minimize,
                                         const ckpt::load_options& options = {}) {
        return core_.restore(detail::walks_of<State>, &state, &metric, direction, options);
    }

    /// The checkpoints, oldest first (the same on every rank).
    [[nodiscard]] std::vector<checkpoint_entry> list() const { return core_.list(); }
    [[nodiscard]] const std::vector<skipped_checkpoint>& skipped() const noexcept {
        return core_.skipped();
    }
    /// Checkpoint directories without a manifest removed at start.
    [[nodiscard]] const std::vector<std::filesystem::path>& cleaned() const noexcept {
        return core_.cleaned();
    }
    /// This rank's view: its save times; bytes on disk are every rank's.
    [[nodiscard]] manager_stats stats() const { return core_.stats(); }
    [[nodiscard]] const std::filesystem::path& directory() const noexcept {
        return core_.directory();
    }
    [[nodiscard]] std::filesystem::path path_of(std::int64_t step) const {
        return core_.path_of(step);
    }

private:
    communicator comm_;
    detail::distributed_manager core_;
};

} // namespace ckpt::mpi
