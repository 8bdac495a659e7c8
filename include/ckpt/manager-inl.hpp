#pragma once

#include <ckpt/manager.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt {
CKPT_INLINE manager::manager(std::filesystem::path dir, save_policy when, retention keep,
                             manager_options options)
    : dir_(std::move(dir)), policy_(std::move(when)), keep_(std::move(keep)), options_([&] {
          detail::check_prefix(options.prefix, "manager");
          return std::move(options);
      }()),
      io_(options_.backend != nullptr ? options_.backend : &io::default_backend()),
      ranked_metrics_(detail::ranked_by(policy_.policy(), keep_)),
      lock_(dir_, options_.prefix, *io_) {
    scan();
    const auto start = now();
    policy_.start(start);
    save_end_ = start;
    if (const checkpoint_entry* latest = newest()) {
        committed_step_ = latest->step;
        committed_time_ = latest->time;
        seen_step_ = latest->step;
    } else {
        committed_time_ = start;
    }
    if (options_.async) {
        async_options async = *options_.async;
        async.backend = io_;
        engine_ = std::make_unique<detail::async_engine>(
            async, [this, user = std::move(async.on_done)](async_done&& d) {
                if (user) {
                    try {
                        user(d);
                    } catch (...) {
                        if (d.error == nullptr) d.error = std::current_exception();
                    }
                }
                std::lock_guard lock(done_mutex_);
                done_.push_back(std::move(d));
                done_count_.fetch_add(1, std::memory_order_release);
            });
    }
}

CKPT_INLINE manager::~manager() noexcept(false) {
    if (engine_ && engine_->forked()) {
        // A copy in a child of fork(): the saves in flight, their errors and the lock are the
        // parent's. Nothing to wait for, nothing to raise; the lock's copy does nothing.
        engine_.reset();
        lock_.release();
        return;
    }
    std::exception_ptr error;
    if (engine_) {
        try {
            wait();
        } catch (...) {
            error = std::current_exception();
        }
        engine_.reset();
    }
    io_->flush_releases();
    lock_.release();
    // One error can be raised, and only outside stack unwinding; the others go to stderr
    // (options.async->on_done saw every one).
    const bool can_throw = std::uncaught_exceptions() <= unwinding_;
    if (error != nullptr && !can_throw) detail::report_unraised("ckpt::manager", error);
    for (const auto& e : errors_) detail::report_unraised("ckpt::manager", e);
    if (error != nullptr && can_throw) std::rethrow_exception(error);
}

CKPT_INLINE save_result manager::wait() {
    save_result result;
    if (engine_) engine_->drain();
    io_->flush_releases(); // the blocks of replaced and deleted checkpoints are free
    collect_finished(result);
    return result;
}

CKPT_INLINE std::vector<checkpoint_entry> manager::list() const {
    return detail::listed(index_, ranked_metrics_);
}

CKPT_INLINE manager_stats manager::stats() const {
    manager_stats s = stats_;
    s.checkpoints_on_disk = index_.size();
    s.bytes_on_disk = 0;
    for (const auto& e : index_) s.bytes_on_disk += e.bytes;
    s.steps_at_risk = seen_step_ - committed_step_;
    s.seconds_at_risk = std::chrono::duration<double>(now() - committed_time_).count();
    s.saves_in_flight = engine_ ? engine_->in_flight() : 0;
    s.save_cost_seconds = cost_.seconds;
    s.interval_seconds = policy_.target_interval().value_or(observed_interval_);
    s.commit_latency_seconds = engine_ ? latency_.seconds : 0;
    s.expected_loss_seconds = (s.interval_seconds + s.save_cost_seconds) / 2 +
                              s.commit_latency_seconds + s.restart_seconds;
    return s;
}

CKPT_INLINE std::filesystem::path manager::path_of(std::int64_t step) const {
    return dir_ / detail::checkpoint_file_name(options_.prefix, step);
}

CKPT_INLINE std::chrono::system_clock::time_point manager::now() const {
    return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

CKPT_INLINE manager::stopwatch manager::start_watch() const {
    return {std::chrono::steady_clock::now(), now()};
}

CKPT_INLINE double manager::seconds_since(const stopwatch& w) const {
    const double s =
        options_.clock
            ? std::chrono::duration<double>(options_.clock() - w.clock).count()
            : std::chrono::duration<double>(std::chrono::steady_clock::now() - w.steady).count();
    return s > 0 ? s : 0;
}

CKPT_INLINE void manager::measured(const stopwatch& started, double cost) {
    const auto end = now();
    policy_.measured(cost, end);
    detail::add_sample(cost_, cost);
    const double gap = std::chrono::duration<double>(started.clock - save_end_).count();
    observed_interval_ = gap > 0 ? gap : 0;
    save_end_ = end;
}

CKPT_INLINE void manager::missing_metric(const metadata& meta, const std::string& metric) {
    std::string given;
    for (const auto& [k, v] : meta.metrics) given += (given.empty() ? "" : ", ") + k;
    detail::throw_error<usage_error>(
        errc::usage_missing_metric,
        "step " + std::to_string(meta.step) + " supplies no metric '" + metric +
            "', which the save policy or retention ranks checkpoints by (metrics given: " +
            (given.empty() ? std::string("none") : given) +
            "); pass its latest value on every step");
}

CKPT_INLINE void manager::record_committed(checkpoint_entry&& entry, save_result& result) {
    stats_.checkpoints_written += 1;
    committed_step_ = entry.step;
    committed_time_ = entry.time;
    const std::filesystem::path path = entry.path;
    std::erase_if(index_, [&](const checkpoint_entry& e) { return e.path == path; });
    // A damaged file this save replaced is damaged no more.
    std::erase_if(unreadable_, [&](const skipped_checkpoint& u) { return u.path == path; });
    index_.push_back(std::move(entry));
    result.committed.push_back(path);
    std::vector<std::filesystem::path> deleted = apply_retention(path);
    result.deleted.insert(result.deleted.end(), std::make_move_iterator(deleted.begin()),
                          std::make_move_iterator(deleted.end()));
}

CKPT_INLINE void manager::collect_finished(save_result& result) {
    std::vector<async_done> done;
    {
        std::lock_guard lock(done_mutex_);
        done.swap(done_);
        applied_ = done_count_.load(std::memory_order_acquire);
    }
    for (async_done& d : done) {
        const auto it = std::find_if(pending_.begin(), pending_.end(),
                                     [&](const pending_save& p) { return p.id == d.id; });
        if (it == pending_.end()) continue; // not ours: cannot happen
        pending_save p = std::move(*it);
        const bool newest = std::next(it) == pending_.end();
        pending_.erase(it);
        if (d.error != nullptr) {
            stats_.saves_failed += 1;
            if (newest) policy_.roll_back(std::move(p.policy_before));
            errors_.push_back(d.error);
            continue;
        }
        stats_.total_background_seconds += d.write_seconds;
        detail::add_sample(latency_, d.write_seconds);
        p.entry.bytes = d.bytes;
        record_committed(std::move(p.entry), result);
    }
    if (!errors_.empty()) {
        std::exception_ptr e = errors_.front();
        errors_.erase(errors_.begin());
        std::rethrow_exception(e);
    }
}

CKPT_INLINE std::vector<bool> manager::retained(const std::vector<checkpoint_entry>& entries,
                                                const std::filesystem::path& newest) const {
    std::vector<bool> kept = detail::select_kept(entries, keep_, ranked_metrics_);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].path == newest) kept[i] = true; // never the newest save
        // Nor a file a save in flight replaces: the unlink could land after its rename.
        for (const auto& p : pending_) {
            if (p.entry.path == entries[i].path) kept[i] = true;
        }
    }
    return kept;
}

CKPT_INLINE std::vector<std::filesystem::path>
manager::apply_retention(const std::filesystem::path& just_written) {
    const std::vector<bool> kept = retained(index_, just_written);
    std::vector<std::filesystem::path> deleted;
    std::vector<checkpoint_entry> remaining;
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (kept[i]) {
            remaining.push_back(std::move(index_[i]));
        } else if (detail::unlink_and_release(*io_, index_[i].path.c_str()) == 0 ||
                   errno == ENOENT) {
            deleted.push_back(index_[i].path);
        } else {
            stats_.delete_failures += 1;
            remaining.push_back(std::move(index_[i]));
        }
    }
    index_ = std::move(remaining);
    return deleted;
}

CKPT_INLINE const checkpoint_entry* manager::newest() const {
    const checkpoint_entry* best = nullptr;
    for (const auto& e : index_) {
        if (best == nullptr || e.step > best->step) best = &e;
    }
    return best;
}

CKPT_INLINE void manager::scan() {
    directory_listing found =
        scan_directory(dir_, directory_options{options_.prefix, io_, options_.limits});
    for (auto& temp : found.temporaries) {
        if (io_->unlink(temp.c_str()) == 0) cleaned_.push_back(std::move(temp));
    }
    index_ = std::move(found.checkpoints);
    // Distributed checkpoints are ckpt::mpi::manager's.
    std::erase_if(index_, [](const checkpoint_entry& e) { return e.distributed; });
    for (auto& e : index_) e.latest = false; // list() marks it, as the index changes
    unreadable_ = std::move(found.unreadable);
    std::erase_if(unreadable_, [](const skipped_checkpoint& u) {
        return u.path.extension() != ".ckpt"; // a distributed checkpoint's directory
    });
    foreign_ = std::move(found.foreign);
    skipped_ = unreadable_;
}

CKPT_INLINE bool manager::begin_step(const metadata& meta, save_result& result,
                                     std::chrono::system_clock::time_point& t) {
    for (const auto& [metric, direction] : ranked_metrics_) {
        if (meta.metrics.find(metric) == meta.metrics.end()) missing_metric(meta, metric);
    }
    if ((engine_ && done_count_.load(std::memory_order_acquire) != applied_) || !errors_.empty()) {
        collect_finished(result);
    }
    seen_step_ = meta.step;
    t = policy_.uses_clock() ? now() : std::chrono::system_clock::time_point{};
    return policy_.ask(meta, t);
}

CKPT_INLINE std::chrono::system_clock::time_point manager::begin_save_now(const metadata& meta,
                                                                          save_result& result) {
    if (engine_) collect_finished(result);
    seen_step_ = meta.step;
    policy_.clear_fired();
    return now();
}

CKPT_INLINE manager::planned_save manager::plan_save(save_result& result, const metadata& meta,
                                                     std::chrono::system_clock::time_point t,
                                                     const char* forced) {
    if (meta.step < 0) {
        detail::throw_error<usage_error>(
            errc::usage_argument, "manager: step " + std::to_string(meta.step) + " is negative");
    }
    planned_save plan;
    plan.after = policy_.advanced(meta, t, result.reasons);
    if (forced != nullptr) result.reasons.emplace_back(forced);
    metadata& stored = plan.stored;
    stored = meta;
    if (stored.time == std::chrono::system_clock::time_point{}) stored.time = now();
    detail::policy_state::write_tags(plan.after, stored);
    result.path = path_of(meta.step);
    if (std::find(foreign_.begin(), foreign_.end(), result.path) != foreign_.end()) {
        detail::throw_error<usage_error>(
            errc::usage_foreign_file,
            "'" + result.path.string() +
                "' has this manager's name but was not written by ckpt; it is left alone, so "
                "step " +
                std::to_string(meta.step) +
                " cannot be saved there: move the file or use another prefix");
    }
    checkpoint_entry& entry = plan.entry;
    entry.path = result.path;
    entry.step = meta.step;
    entry.epoch = meta.epoch;
    entry.time = stored.time;
    entry.metrics = meta.metrics;
    evict_victims(entry);
    return plan;
}

CKPT_INLINE void manager::evict_victims(const checkpoint_entry& next) {
    // Retention as it will run once `next` is committed (apply_retention): the files it will
    // delete are not read again, so the new file's pages can reuse their memory. Only advice:
    // should the save fail, they stay where they are, and only their cached pages are gone.
    if (index_.empty()) return;
    std::vector<checkpoint_entry> after;
    after.reserve(index_.size() + 1);
    for (const auto& e : index_) {
        if (e.path != next.path) after.push_back(e); // the save's own target: atomic_file's
    }
    after.push_back(next);
    const std::vector<bool> kept = retained(after, next.path);
    for (std::size_t i = 0; i < after.size(); ++i) {
        if (kept[i]) continue;
        if (const int fd = detail::open_to_release(*io_, after[i].path.c_str()); fd >= 0) {
            io_->evict(fd);
        }
    }
}

CKPT_INLINE void manager::staged(save_result& result, planned_save&& plan,
                                 const async_ticket& ticket, const char* forced,
                                 const stopwatch& started) {
    stats_.last_save_seconds = ticket.stall_seconds;
    stats_.total_save_seconds += ticket.stall_seconds;
    if (!ticket) {
        // The policy still wants this save: its rules do not advance, so it fires again.
        stats_.saves_skipped += 1;
        result.skipped = ticket.skipped;
        return;
    }
    pending_.push_back({ticket.id, std::move(plan.entry), policy_.save()});
    policy_.commit(std::move(plan.after), forced != nullptr);
    // The stall includes the wait for room, if the save before was still being written.
    measured(started, options_.clock ? seconds_since(started) : ticket.stall_seconds);
    result.saved = true;
    result.pending = true;
}

CKPT_INLINE void manager::saved(save_result& result, planned_save&& plan, const char* forced,
                                const stopwatch& started) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started.steady).count();
    policy_.commit(std::move(plan.after), forced != nullptr);
    measured(started, seconds_since(started));
    stats_.last_save_seconds = seconds;
    stats_.total_save_seconds += seconds;
    result.saved = true;
    record_committed(std::move(plan.entry), result);
}

CKPT_INLINE std::vector<std::filesystem::path> manager::begin_restore() {
    restore_started_ = start_watch();
    skipped_ = unreadable_;
    for (const auto& s : unreadable_) {
        if (options_.on_skipped) options_.on_skipped(s);
    }
    return {};
}

CKPT_INLINE void manager::forget_damaged(const std::vector<std::filesystem::path>& damaged) {
    std::erase_if(index_, [&](const checkpoint_entry& e) {
        return std::find(damaged.begin(), damaged.end(), e.path) != damaged.end();
    });
}

CKPT_INLINE void manager::restored(const std::vector<std::filesystem::path>& damaged,
                                   const metadata& meta, bool continues) {
    forget_damaged(damaged);
    if (!continues) return; // load_best: the schedule stays where training is
    stats_.restart_seconds = seconds_since(restore_started_);
    policy_.restore(meta, index_);
    committed_step_ = meta.step;
    committed_time_ = meta.time;
    seen_step_ = meta.step;
}

CKPT_INLINE void manager::restore_failed(std::vector<std::filesystem::path>& damaged,
                                         const std::filesystem::path& path, const error& err) {
    skipped_.push_back({path, err.id(), err.what()});
    unreadable_.push_back(skipped_.back());
    damaged.push_back(path);
    if (options_.on_skipped) options_.on_skipped(skipped_.back());
}

} // namespace ckpt
