#pragma once

// The distributed manager's core, behind ckpt::mpi::manager: the policies, retention and
// directory scan of ckpt::manager, with every decision made once for all ranks. Nothing here
// knows MPI; see <ckpt/distributed.hpp> for the communicator.

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/distributed.hpp>
#include <ckpt/error.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/manager.hpp>
#include <ckpt/manager/directory.hpp>
#include <ckpt/manager/lock.hpp>
#include <ckpt/manager/policy_state.hpp>
#include <ckpt/manager/selection.hpp>
#include <ckpt/metadata.hpp>
#include <ckpt/policy/retention.hpp>
#include <ckpt/policy/save_policy.hpp>

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
#include <ckpt/distributed_manager-inl.hpp>
#endif
