#pragma once

#include <ckpt/distributed_manager.hpp>

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
