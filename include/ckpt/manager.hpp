#pragma once

#include <ckpt/async.hpp>
#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/io/backend.hpp>
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
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt {

/// What step(), save_now() or wait() did.
struct save_result {
    bool saved = false;   ///< a checkpoint was written (or, async, its snapshot taken)
    bool pending = false; ///< async: the snapshot is taken; the file is written in the background
    std::string
        skipped{}; ///< async, when_full::skip: why the save the policy asked for was not taken
    std::vector<std::string> reasons{};             ///< the rules that fired, e.g. "every_steps(5)"
    std::filesystem::path path{};                   ///< the checkpoint written (or being written)
    std::vector<std::filesystem::path> committed{}; ///< checkpoints committed during this call
    std::vector<std::filesystem::path> deleted{};   ///< what retention removed after them

    explicit operator bool() const noexcept { return saved; }
};

/// The tradeoff made visible: what checkpointing costs, and what a crash now would lose.
struct manager_stats {
    std::uint64_t checkpoints_written = 0; ///< committed by this manager
    std::uint64_t checkpoints_on_disk = 0;
    std::uint64_t bytes_on_disk = 0;
    /// Time the caller spent in saves (async: taking the snapshots).
    double total_save_seconds = 0;
    double last_save_seconds = 0;
    double total_background_seconds = 0; ///< async: writing, syncing and committing
    std::uint64_t saves_in_flight = 0;   ///< async: staged, not yet committed
    std::uint64_t saves_skipped = 0;     ///< async, when_full::skip: not taken
    std::uint64_t saves_failed = 0;      ///< async: failed in the background (and raised)
    std::int64_t steps_at_risk = 0;      ///< steps since the last committed checkpoint
    double seconds_at_risk = 0;          ///< wall-clock seconds since then
    std::uint64_t delete_failures = 0;   ///< retention could not remove a file (kept, retried)

    // The save-frequency tradeoff (see every_optimal() and overhead_at_most()), in seconds.
    /// C: what a save cost the training loop (sync: the save; async: the stall, including any
    /// wait for room), smoothed over recent saves (detail::save_cost); on the manager's clock
    /// when one is injected, else on steady_clock. 0 before the first save.
    double save_cost_seconds = 0;
    /// T: the compute between saves: the target of the cost-aware rules (the smallest), else
    /// the last observed time from the end of one save to the start of the next.
    double interval_seconds = 0;
    /// R: what the last restore took (the checkpoint's load), the cost of a restart beside the
    /// lost work. 0 before a restore.
    double restart_seconds = 0;
    /// L, async: a save's background write, smoothed as C is. The work since a snapshot is safe
    /// only once its file commits, so it adds to the exposure. 0 when sync.
    double commit_latency_seconds = 0;
    /// The work a failure is expected to cost: (T + C) / 2 + L + R. A failure strikes a cycle of
    /// compute and save of length T + C at a uniform point, losing the time since the start of
    /// the last committed save: half a cycle on average, plus the latency L for the cycles in
    /// which the last save had not committed yet (exact for L < T + C), plus the restart.
    double expected_loss_seconds = 0;
};

/// How a manager names, times and reads its checkpoints.
struct manager_options {
    std::string prefix = "ckpt"; ///< files are <prefix>-<step>.ckpt
    /// Wall clock for time-based policies and retention; nullptr: system_clock::now.
    std::function<std::chrono::system_clock::time_point()> clock{};
    /// Called for every checkpoint a restore passes over (they are also in skipped()).
    std::function<void(const skipped_checkpoint&)> on_skipped{};
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    ckpt::limits limits{};
    /// Save in the background (see async_saver; its backend is the one above): step() returns
    /// once the snapshot is taken. Retention, list() and restores see a checkpoint only once it
    /// is committed; a background error is raised by the next step(), save_now(), wait(),
    /// restore or the destructor.
    std::optional<async_options> async{};
};

/// Checkpoints in one directory: decides when to save (a save_policy), what to keep (a
/// retention), and resumes from the newest good checkpoint. Holds a lock on the directory.
///
///     ckpt::manager m("run", ckpt::every_steps(500) | ckpt::on_best("val_loss"),
///                     ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss"));
///     if (auto meta = m.restore_latest(state)) first_step = meta->step + 1;
///     for (...) { train(state); m.step(state, {.step = s, .metrics = {{"val_loss", v}}}); }
class manager {
public:
    /// Opens (creating it if needed) and locks `dir`, removes temporary files a crashed save of
    /// this manager's naming left, and indexes the checkpoints there.
    /// @throws io_error (the directory cannot be created or written), usage_error 603 (another
    /// manager holds the directory)
    manager(std::filesystem::path dir, save_policy when, retention keep = keep_all(),
            manager_options options = {});
    manager(const manager&) = delete;
    manager& operator=(const manager&) = delete;

    /// Async: waits for the saves in flight and applies retention after them; raises a
    /// background error unless the destructor runs during stack unwinding (then it goes to
    /// stderr). Releases the directory's lock.
    ~manager() noexcept(false);

    /// Call once per training step: saves when the policy fires, then applies retention. Without
    /// a save this is a few comparisons: no system call, no allocation.
    /// @throws usage_error 602 (a metric a policy or retention ranks by is missing), and what
    /// save() throws
    template <class State>
    save_result step(const State& state, const metadata& meta) {
        save_result result;
        std::chrono::system_clock::time_point t{};
        if (begin_step(meta, result, t)) commit(result, state, meta, t, nullptr);
        return result;
    }

    /// Saves now, whatever the policy says (the policy's state still advances for no rule).
    template <class State>
    save_result save_now(const State& state, const metadata& meta) {
        save_result result;
        const auto t = begin_save_now(meta, result);
        commit(result, state, meta, t, "save_now");
        return result;
    }

    /// Async: takes the staging memory for snapshots of `state` now (async_saver::reserve), so
    /// that the first save the policy fires stalls training only for the copy. Call it before
    /// the training loop. Sync: nothing to take. @returns the staging bytes held (0 when sync)
    /// @throws usage_error (605: one snapshot is larger than async_options::max_staging_bytes)
    template <class State>
    std::uint64_t reserve(const State& state) {
        static_assert(is_checkpointable<State>::value,
                      "ckpt::manager::reserve: the state is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        return engine_ ? engine_->reserve(state) : 0;
    }

    /// Async: blocks until every save so far is committed, then applies retention after them.
    /// Sync: returns at once. @returns what was committed and deleted
    /// @throws the first error of a background save
    save_result wait();

    /// Loads the newest checkpoint that loads cleanly, passing over (and reporting in skipped()
    /// and to options.on_skipped) damaged ones; training continues from it: the policy's state
    /// and the work at risk (stats().steps_at_risk) restart from it. Nothing on disk: nullopt,
    /// and `state` is untouched.
    /// `options` as for ckpt::load (partial restore, renames, the report), except that the
    /// manager's own limits and backend replace its `limits` and `backend`.
    /// @throws schema_error, version_error (the state or the library does not fit the newest
    /// readable checkpoint: falling back past that would hide a bug)
    template <class State>
    std::optional<metadata> restore_latest(State& state, const load_options& options = {}) {
        wait();
        return restore_first(state, detail::newest_first(index_), options, true);
    }

    /// Like restore_latest, from the best checkpoint by `metric` (then the next best, ...):
    /// training continues from it, so the save schedule and the work at risk restart from its
    /// step. To fetch the best weights without that (to evaluate or export them), use load_best.
    template <class State>
    std::optional<metadata> restore_best(State& state, const std::string& metric,
                                         goal direction = goal::minimize,
                                         const load_options& options = {}) {
        wait();
        return restore_first(state, detail::ranked(index_, metric, direction), options, true);
    }

    /// Loads the best checkpoint by `metric` (then the next best, ...) as restore_best does,
    /// read-only: the save schedule, the policy's state and the work at risk stay as they are,
    /// so training goes on from where it is. Damaged files it passes over are reported as by a
    /// restore. @throws as restore_latest
    template <class State>
    std::optional<metadata> load_best(State& state, const std::string& metric,
                                      goal direction = goal::minimize,
                                      const load_options& options = {}) {
        wait();
        return restore_first(state, detail::ranked(index_, metric, direction), options, false);
    }

    /// The checkpoints in the directory, oldest first.
    [[nodiscard]] std::vector<checkpoint_entry> list() const;

    /// What the last restore (and the scan at start) passed over: damaged checkpoints.
    [[nodiscard]] const std::vector<skipped_checkpoint>& skipped() const noexcept {
        return skipped_;
    }

    /// Files with this manager's names that are not ckpt files (directory_listing::foreign):
    /// not in skipped(), never read as checkpoints, deleted or written over.
    [[nodiscard]] const std::vector<std::filesystem::path>& foreign() const noexcept {
        return foreign_;
    }

    /// Temporary files of a crashed save removed at start.
    [[nodiscard]] const std::vector<std::filesystem::path>& cleaned() const noexcept {
        return cleaned_;
    }

    [[nodiscard]] manager_stats stats() const;

    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }

    /// The path a checkpoint of `step` has.
    [[nodiscard]] std::filesystem::path path_of(std::int64_t step) const;

private:
    std::chrono::system_clock::time_point now() const;

    [[noreturn]] static void missing_metric(const metadata& meta, const std::string& metric);

    /// Saves, then on success advances the fired rules, indexes the file and applies retention.
    /// Async: takes the snapshot and advances the rules; the rest happens in collect_finished().
    template <class State>
    void commit(save_result& result, const State& state, const metadata& meta,
                std::chrono::system_clock::time_point t, const char* forced) {
        planned_save plan = plan_save(result, meta, t, forced);
        const stopwatch started = start_watch();
        if (engine_) {
            const async_ticket ticket = engine_->stage(result.path, state, plan.stored);
            staged(result, std::move(plan), ticket, forced, started);
            return;
        }
        plan.entry.bytes = ckpt::save(result.path, state, plan.stored, save_options{io_});
        saved(result, std::move(plan), forced, started);
    }

    /// When a save or a restore began, on both clocks.
    struct stopwatch {
        std::chrono::steady_clock::time_point steady;
        std::chrono::system_clock::time_point clock; ///< the manager's (now())
    };
    stopwatch start_watch() const;
    /// Seconds since `w` on the injected clock when there is one (a test's or a simulation's
    /// time), else on steady_clock (a step of the wall clock does not count); never negative.
    double seconds_since(const stopwatch& w) const;
    /// A save that began at `started` cost the training loop `cost` seconds: the cost-aware
    /// rules, C and T learn it.
    void measured(const stopwatch& started, double cost);

    /// What commit() writes, and the policy's rules after it.
    struct planned_save {
        metadata stored;
        checkpoint_entry entry;
        std::vector<detail::save_rule> after;
    };
    /// Checks the step, advances the fired rules in a copy, and names the file.
    planned_save plan_save(save_result& result, const metadata& meta,
                           std::chrono::system_clock::time_point t, const char* forced);
    /// Hands the checkpoints that retention will delete once `next` is committed to
    /// backend::evict, before the save writes (see apply_retention).
    void evict_victims(const checkpoint_entry& next);
    /// Async: the snapshot is taken (or skipped).
    void staged(save_result& result, planned_save&& plan, const async_ticket& ticket,
                const char* forced, const stopwatch& started);
    /// Sync: the file is committed.
    void saved(save_result& result, planned_save&& plan, const char* forced,
               const stopwatch& started);
    /// step() before its save: checks the metrics, collects background saves, asks the rules.
    /// @returns whether a rule fires (t: the clock's time, when a rule reads it)
    bool begin_step(const metadata& meta, save_result& result,
                    std::chrono::system_clock::time_point& t);
    /// save_now() before its save. @returns the clock's time
    std::chrono::system_clock::time_point begin_save_now(const metadata& meta, save_result& result);
    /// A checkpoint is on disk: it becomes the newest, enters the index, and retention runs.
    void record_committed(checkpoint_entry&& entry, save_result& result);

    /// Async: indexes what the background committed, in order, with retention after each; a
    /// failed save puts the policy back where it was before it, when no later save was taken,
    /// so that the policy asks again. @throws the first background error not raised yet
    void collect_finished(save_result& result);

    /// Deletes what retention does not keep; only indexed files (this manager's names with a
    /// valid ckpt header), and only after the newest save is committed.
    std::vector<std::filesystem::path> apply_retention(const std::filesystem::path& just_written);
    /// Which of `entries` retention keeps: its rules, the newest save (`newest`), and every file
    /// a save in flight replaces. Shared by apply_retention and evict_victims, which asks it
    /// before the save about the index the save will leave.
    std::vector<bool> retained(const std::vector<checkpoint_entry>& entries,
                               const std::filesystem::path& newest) const;

    const checkpoint_entry* newest() const;

    /// `continues`: training continues from what loads (restore_*), not only reads it (load_*).
    template <class State>
    std::optional<metadata> restore_first(State& state, const std::vector<std::size_t>& order,
                                          const load_options& options, bool continues) {
        std::vector<std::filesystem::path> damaged = begin_restore();
        load_options own = options;
        own.limits = options_.limits;
        own.backend = io_;
        for (const std::size_t i : order) {
            const std::filesystem::path path = index_[i].path;
            try {
                metadata meta = ckpt::load(path, state, own);
                restored(damaged, meta, continues);
                return meta;
            } catch (const schema_error&) {
                forget_damaged(damaged);
                throw;
            } catch (const version_error&) {
                forget_damaged(damaged);
                throw;
            } catch (const error& err) {
                restore_failed(damaged, path, err);
            }
        }
        forget_damaged(damaged);
        return std::nullopt;
    }

    /// restore_first() before its first load: reports the files known to be unreadable.
    std::vector<std::filesystem::path> begin_restore();
    /// A checkpoint that does not load is no longer the newest or the best: retention must
    /// neither count it nor delete it, and later restores report it.
    void forget_damaged(const std::vector<std::filesystem::path>& damaged);
    /// `meta` loaded; `continues`: the policy and the counters continue from it.
    void restored(const std::vector<std::filesystem::path>& damaged, const metadata& meta,
                  bool continues);
    /// `path` did not load: skipped, reported, remembered.
    void restore_failed(std::vector<std::filesystem::path>& damaged,
                        const std::filesystem::path& path, const error& err);

    /// Indexes the directory (scan_directory) and removes the temporary files of crashed saves.
    void scan();

    std::filesystem::path dir_;
    detail::policy_state policy_;
    retention keep_;
    manager_options options_;
    io::backend* io_;
    detail::ranked_metrics ranked_metrics_;
    directory_lock lock_;
    std::vector<checkpoint_entry> index_; ///< committed, in no particular order
    std::vector<skipped_checkpoint> unreadable_;
    std::vector<std::filesystem::path> foreign_; ///< our names, not ckpt's files: never touched
    std::vector<skipped_checkpoint> skipped_;
    std::vector<std::filesystem::path> cleaned_;
    manager_stats stats_;
    std::int64_t seen_step_ = 0;
    std::int64_t committed_step_ = 0;
    std::chrono::system_clock::time_point committed_time_{};
    detail::save_cost cost_;                           ///< C, for stats()
    detail::save_cost latency_;                        ///< L, for stats()
    double observed_interval_ = 0;                     ///< T when no cost-aware rule sets it
    std::chrono::system_clock::time_point save_end_{}; ///< end of the last save (or start)
    stopwatch restore_started_{};

    // Async mode.
    struct pending_save {
        std::uint64_t id = 0;
        checkpoint_entry entry;
        detail::policy_state::snapshot policy_before; ///< put back if the save fails
    };
    std::vector<pending_save> pending_;      ///< staged, oldest first
    std::vector<std::exception_ptr> errors_; ///< background errors not raised yet
    int unwinding_ = std::uncaught_exceptions();
    std::uint64_t applied_ = 0; ///< done_count_ when collect_finished last ran
    std::mutex done_mutex_;
    std::vector<async_done> done_; ///< finished in the background, not yet applied
    std::atomic<std::uint64_t> done_count_{0};
    std::unique_ptr<detail::async_engine> engine_; // last: its thread uses the members above
};

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/manager-inl.hpp>
#endif
