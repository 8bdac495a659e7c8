#pragma once

// Distributed checkpoints over MPI (the ckpt::mpi target, which links MPI::MPI_CXX).
//
//     ckpt::mpi::save(MPI_COMM_WORLD, "run/step-000100", state, {.step = 100});
//     ckpt::mpi::load(MPI_COMM_WORLD, "run/step-000100", state);
//
// Both are collective: every rank of the communicator calls them with its own state. A
// checkpoint is a directory that every rank sees at the same path, holding one ckpt file per
// rank and a manifest that rank 0 writes last; see <ckpt/distributed.hpp>.

#include <ckpt/checkpoint.hpp>
#include <ckpt/concepts.hpp>
#include <ckpt/distributed.hpp>
#include <ckpt/distributed_manager.hpp>
#include <ckpt/error.hpp>
#include <ckpt/metadata.hpp>

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
