#pragma once

// Distributed checkpoints: every rank of a job writes its own file into one directory, and one
// manifest, written last, commits them together. The protocol is here, behind a small
// communicator interface; <ckpt/mpi.hpp> gives it MPI. Nothing here knows MPI.

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/manifest.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/metadata.hpp>
#include <ckpt/reader.hpp>

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
#include <ckpt/distributed-inl.hpp>
#endif
