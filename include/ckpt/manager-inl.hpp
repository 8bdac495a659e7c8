#pragma once

#include <ckpt/manager.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace ckpt {
namespace detail {

CKPT_INLINE std::optional<std::int64_t> step_of_name(std::string_view name, std::string_view prefix,
                                                     std::string_view suffix) {
    if (name.size() <= prefix.size() + 1 + suffix.size() || !name.starts_with(prefix) ||
        name[prefix.size()] != '-' || !name.ends_with(suffix)) {
        return std::nullopt;
    }
    const std::string_view digits =
        name.substr(prefix.size() + 1, name.size() - prefix.size() - 1 - suffix.size());
    if (digits.empty() || digits.size() > 18) return std::nullopt;
    std::int64_t v = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

CKPT_INLINE bool is_temp_suffix(std::string_view s) {
    const auto dash = s.find('-');
    const auto digits = [](std::string_view d) {
        return !d.empty() && d.find_first_not_of("0123456789") == std::string_view::npos;
    };
    return dash != std::string_view::npos && digits(s.substr(0, dash)) &&
           digits(s.substr(dash + 1));
}

CKPT_INLINE bool has_ckpt_prefix(const std::filesystem::path& p) {
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (f == nullptr) return false;
    char buf[8 + checksum_prefix.size()];
    const std::size_t n = std::fread(buf, 1, sizeof buf, f);
    std::fclose(f);
    return n == sizeof buf && std::string_view(buf + 8, checksum_prefix.size()) == checksum_prefix;
}

CKPT_INLINE std::vector<std::size_t> ranked(const std::vector<checkpoint_entry>& entries,
                                            const std::string& metric, goal direction) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto it = entries[i].metrics.find(metric);
        if (it != entries[i].metrics.end() && !std::isnan(it->second)) idx.push_back(i);
    }
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
        const double va = entries[a].metrics.at(metric);
        const double vb = entries[b].metrics.at(metric);
        if (va != vb) return direction == goal::minimize ? va < vb : va > vb;
        return entries[a].step > entries[b].step; // a tie goes to the newer
    });
    return idx;
}

CKPT_INLINE std::vector<bool>
select_kept(const std::vector<checkpoint_entry>& entries, const retention& keep,
            const std::vector<std::pair<std::string, goal>>& ranked_metrics) {
    std::vector<bool> kept(entries.size(), false);
    if (entries.empty()) return kept;
    std::vector<std::size_t> by_step(entries.size());
    for (std::size_t i = 0; i < by_step.size(); ++i) by_step[i] = i;
    std::stable_sort(by_step.begin(), by_step.end(), [&](std::size_t a, std::size_t b) {
        return entries[a].step > entries[b].step;
    });
    kept[by_step.front()] = true; // the newest, always
    for (const auto& [metric, direction] : ranked_metrics) {
        const auto order = ranked(entries, metric, direction);
        if (!order.empty()) kept[order.front()] = true; // the best, always
    }
    const auto earliest_per_bucket = [&](auto bucket_of) {
        std::map<std::int64_t, std::size_t> first;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const std::int64_t b = bucket_of(entries[i]);
            const auto it = first.find(b);
            if (it == first.end() || entries[i].step < entries[it->second].step) first[b] = i;
        }
        for (const auto& [b, i] : first) kept[i] = true;
    };
    for (const auto& rule : keep.rules()) {
        std::visit(
            [&](const auto& r) {
                using R = std::decay_t<decltype(r)>;
                if constexpr (std::is_same_v<R, keep_last_rule>) {
                    for (std::size_t i = 0; i < r.k && i < by_step.size(); ++i)
                        kept[by_step[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_best_rule>) {
                    const auto order = ranked(entries, r.metric, r.direction);
                    for (std::size_t i = 0; i < r.k && i < order.size(); ++i) kept[order[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_every_steps_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) { return e.step / r.n; });
                } else if constexpr (std::is_same_v<R, keep_every_time_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) {
                        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            e.time.time_since_epoch());
                        const auto q = ns.count() / r.period.count();
                        return ns.count() < 0 && ns.count() % r.period.count() != 0 ? q - 1 : q;
                    });
                } else {
                    std::fill(kept.begin(), kept.end(), true);
                }
            },
            rule);
    }
    return kept;
}

CKPT_INLINE std::string encode_rule_state(const save_rule& r) {
    if (const auto* s = std::get_if<rule_every_steps>(&r)) return std::to_string(s->last);
    if (const auto* t = std::get_if<rule_every_time>(&r)) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t->last.time_since_epoch())
                .count());
    }
    if (const auto* b = std::get_if<rule_on_best>(&r)) {
        return b->best ? format_double(*b->best) + " " + std::to_string(b->best_step) : "none";
    }
    return {};
}

CKPT_INLINE bool decode_rule_state(save_rule& r, std::string_view text) {
    if (auto* s = std::get_if<rule_every_steps>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        s->last = *v;
        return true;
    }
    if (auto* t = std::get_if<rule_every_time>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        t->last = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::nanoseconds(*v)));
        return true;
    }
    if (auto* b = std::get_if<rule_on_best>(&r)) {
        if (text == "none") {
            b->best.reset();
            return true;
        }
        const auto space = text.find(' ');
        if (space == std::string_view::npos) return false;
        const auto v = parse_double(text.substr(0, space));
        const auto step = parse_int(text.substr(space + 1));
        if (!v || !step) return false;
        b->best = *v;
        b->best_step = *step;
        return true;
    }
    return true;
}

} // namespace detail

CKPT_INLINE manager::manager(std::filesystem::path dir, save_policy when, retention keep,
                             manager_options options)
    : dir_(std::move(dir)), policy_(std::move(when)), keep_(std::move(keep)),
      options_(std::move(options)),
      io_(options_.backend != nullptr ? options_.backend : &io::default_backend()) {
    if (options_.prefix.empty() || options_.prefix.find('/') != std::string::npos) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "manager: the prefix must be a non-empty file name");
    }
    for (const auto& rule : policy_.rules()) {
        if (const auto* b = std::get_if<detail::rule_on_best>(&rule)) {
            add_ranked(b->metric, b->direction);
        }
        uses_clock_ = uses_clock_ || std::holds_alternative<detail::rule_every_time>(rule);
    }
    for (const auto& rule : keep_.rules()) {
        if (const auto* b = std::get_if<detail::keep_best_rule>(&rule)) {
            add_ranked(b->metric, b->direction);
        }
    }
    fired_.resize(policy_.rules().size());
    lock();
    try {
        scan();
    } catch (...) {
        ::close(std::exchange(lock_fd_, -1)); // no destructor runs: give the lock back here
        throw;
    }
    const auto start = now();
    for (auto& rule : policy_.rules()) {
        if (auto* t = std::get_if<detail::rule_every_time>(&rule)) t->last = start;
    }
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
        try {
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
        } catch (...) {
            ::close(std::exchange(lock_fd_, -1));
            throw;
        }
    }
}

CKPT_INLINE manager::~manager() noexcept(false) {
    std::exception_ptr error;
    if (engine_) {
        try {
            wait();
        } catch (...) {
            error = std::current_exception();
        }
        engine_.reset();
    }
    if (lock_fd_ >= 0) ::close(lock_fd_); // releases the lock
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
    collect_finished(result);
    return result;
}

CKPT_INLINE std::vector<checkpoint_entry> manager::list() const {
    std::vector<checkpoint_entry> out = index_;
    std::sort(out.begin(), out.end(),
              [](const checkpoint_entry& a, const checkpoint_entry& b) { return a.step < b.step; });
    if (!out.empty()) out.back().latest = true;
    for (const auto& [metric, direction] : ranked_metrics_) {
        const auto order = detail::ranked(out, metric, direction);
        if (!order.empty()) out[order.front()].best = true;
    }
    return out;
}

CKPT_INLINE manager_stats manager::stats() const {
    manager_stats s = stats_;
    s.checkpoints_on_disk = index_.size();
    s.bytes_on_disk = 0;
    for (const auto& e : index_) s.bytes_on_disk += e.bytes;
    s.steps_at_risk = seen_step_ - committed_step_;
    s.seconds_at_risk = std::chrono::duration<double>(now() - committed_time_).count();
    s.saves_in_flight = engine_ ? engine_->in_flight() : 0;
    return s;
}

CKPT_INLINE std::filesystem::path manager::path_of(std::int64_t step) const {
    std::string digits = std::to_string(step);
    if (digits.size() < 12) digits.insert(0, 12 - digits.size(), '0');
    return dir_ / (options_.prefix + "-" + digits + ".ckpt");
}

CKPT_INLINE std::chrono::system_clock::time_point manager::now() const {
    return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

CKPT_INLINE void manager::add_ranked(const std::string& metric, goal direction) {
    for (const auto& [m, d] : ranked_metrics_) {
        if (m == metric) {
            if (d != direction) {
                detail::throw_error<usage_error>(
                    errc::usage_argument,
                    "manager: metric '" + metric + "' is ranked both ways (minimize and maximize)");
            }
            return;
        }
    }
    ranked_metrics_.emplace_back(metric, direction);
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

CKPT_INLINE bool manager::fires(const detail::save_rule& rule, const metadata& meta,
                                std::chrono::system_clock::time_point t) {
    if (const auto* s = std::get_if<detail::rule_every_steps>(&rule)) {
        return meta.step - s->last >= s->n;
    }
    if (const auto* e = std::get_if<detail::rule_every_time>(&rule)) {
        return t - e->last >= e->period;
    }
    if (const auto* b = std::get_if<detail::rule_on_best>(&rule)) {
        const double v = meta.metrics.find(b->metric)->second;
        return !std::isnan(v) && (!b->best || improves(v, *b->best, b->direction, b->min_delta));
    }
    if (const auto* a = std::get_if<detail::rule_at_steps>(&rule)) {
        return std::binary_search(a->steps.begin(), a->steps.end(), meta.step);
    }
    return std::get<detail::rule_on_request>(rule).flag->load(std::memory_order_relaxed);
}

CKPT_INLINE void manager::advance_policy(std::vector<detail::save_rule>&& after,
                                         const char* forced) {
    policy_.rules() = std::move(after);
    for (auto& rule : policy_.rules()) {
        if (auto* r = std::get_if<detail::rule_on_request>(&rule)) {
            if (forced == nullptr) r->flag->store(false);
        }
    }
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
            if (newest) {
                policy_.rules() = std::move(p.policy_before);
                for (std::size_t i = 0; i < policy_.rules().size(); ++i) {
                    auto* r = std::get_if<detail::rule_on_request>(&policy_.rules()[i]);
                    if (r != nullptr && p.fired[i]) r->flag->store(true);
                }
            }
            errors_.push_back(d.error);
            continue;
        }
        stats_.total_background_seconds += d.write_seconds;
        p.entry.bytes = d.bytes;
        record_committed(std::move(p.entry), result);
    }
    if (!errors_.empty()) {
        std::exception_ptr e = errors_.front();
        errors_.erase(errors_.begin());
        std::rethrow_exception(e);
    }
}

CKPT_INLINE void manager::advance(detail::save_rule& rule, const metadata& meta,
                                  std::chrono::system_clock::time_point t) {
    if (auto* s = std::get_if<detail::rule_every_steps>(&rule)) s->last = meta.step;
    if (auto* e = std::get_if<detail::rule_every_time>(&rule)) e->last = t;
    if (auto* b = std::get_if<detail::rule_on_best>(&rule)) {
        b->best = meta.metrics.at(b->metric);
        b->best_step = meta.step;
    }
}

CKPT_INLINE std::vector<std::filesystem::path>
manager::apply_retention(const std::filesystem::path& just_written) {
    std::vector<bool> kept = detail::select_kept(index_, keep_, ranked_metrics_);
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (index_[i].path == just_written) kept[i] = true; // never the newest save
        // Nor a file a save in flight replaces: the unlink could land after its rename.
        for (const auto& p : pending_) {
            if (p.entry.path == index_[i].path) kept[i] = true;
        }
    }
    std::vector<std::filesystem::path> deleted;
    std::vector<checkpoint_entry> remaining;
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (kept[i]) {
            remaining.push_back(std::move(index_[i]));
        } else if (io_->unlink(index_[i].path.c_str()) == 0 || errno == ENOENT) {
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

CKPT_INLINE void manager::restore_policy(const metadata& meta) {
    for (auto& rule : policy_.rules()) {
        const auto tag =
            meta.tags.find(std::string(detail::policy_tag_prefix) + detail::rule_key(rule));
        if (tag != meta.tags.end() && detail::decode_rule_state(rule, tag->second)) continue;
        if (auto* s = std::get_if<detail::rule_every_steps>(&rule)) s->last = meta.step;
        if (auto* t = std::get_if<detail::rule_every_time>(&rule)) t->last = meta.time;
        if (auto* b = std::get_if<detail::rule_on_best>(&rule)) {
            const auto order = detail::ranked(index_, b->metric, b->direction);
            if (!order.empty()) {
                b->best = index_[order.front()].metrics.at(b->metric);
                b->best_step = index_[order.front()].step;
            }
        }
    }
}

CKPT_INLINE void manager::lock() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
        detail::throw_io(errc::io_open, "create directory", dir_.string(), ec.value());
    }
    const std::string path = (dir_ / (options_.prefix + ".lock")).string();
    int fd = -1;
    do {
        fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        const int e = errno;
        detail::throw_io(errc::io_open, "create lock file", path, e,
                         "the directory cannot be written");
    }
    // flock is released by the kernel when its holder dies: a lock file left by a dead
    // process is no obstacle. The pid inside is for the message below.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        const ::ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        const std::string owner = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
        detail::throw_error<usage_error>(
            errc::usage_directory_locked,
            "directory '" + dir_.string() + "' is in use by another ckpt::manager (pid " + owner +
                (owner == std::to_string(::getpid()) ? ", this process" : "") +
                "); two managers on one directory would delete each other's checkpoints");
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<::ssize_t>(pid.size())) {
        const int e = errno;
        ::close(fd);
        detail::throw_io(errc::io_write, "write lock file", path, e,
                         "the directory cannot be written");
    }
    lock_fd_ = fd;
}

CKPT_INLINE void manager::scan() {
    const std::string& prefix = options_.prefix;
    std::error_code ec;
    for (const auto& de : std::filesystem::directory_iterator(dir_, ec)) {
        std::error_code type_ec;
        if (!de.is_regular_file(type_ec) || de.is_symlink(type_ec)) continue;
        const std::string name = de.path().filename().string();
        // A temporary file of a save that died: <prefix>-<step>.ckpt.tmp-<pid>-<n>.
        if (const auto at = name.find(".ckpt.tmp-"); at != std::string::npos) {
            const auto step = detail::step_of_name(name.substr(0, at + 5), prefix, ".ckpt");
            if (step && path_of(*step).filename() == name.substr(0, at + 5) &&
                detail::is_temp_suffix(std::string_view(name).substr(at + 10)) &&
                io_->unlink(de.path().c_str()) == 0) {
                cleaned_.push_back(de.path());
            }
            continue;
        }
        // Only the exact names this manager writes (path_of): "ckpt-7.ckpt" is someone else's.
        const auto step = detail::step_of_name(name, prefix, ".ckpt");
        if (!step || path_of(*step).filename() != name) continue;
        try {
            const info inf = ckpt::inspect(de.path(), inspect_options{false, options_.limits, io_});
            if (inf.format_version < 1) {
                unreadable_.push_back(
                    {de.path(), errc::corrupt_not_ckpt, "not written by ckpt: left alone"});
                foreign_.push_back(de.path());
                continue;
            }
            checkpoint_entry e;
            e.path = de.path();
            e.step = inf.meta.step;
            e.epoch = inf.meta.epoch;
            e.time = inf.meta.time;
            e.metrics = inf.meta.metrics;
            e.bytes = inf.file_bytes;
            index_.push_back(std::move(e));
        } catch (const error& err) {
            // Unreadable: never deleted, reported by restore. A damaged file ckpt wrote (its
            // header starts with ckpt's checksum) may be replaced by a new save of its step;
            // anything else is never written over.
            unreadable_.push_back({de.path(), err.id(), err.what()});
            if (!detail::has_ckpt_prefix(de.path())) foreign_.push_back(de.path());
        }
    }
    if (ec) detail::throw_io(errc::io_read, "list directory", dir_.string(), ec.value());
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
    t = uses_clock_ ? now() : std::chrono::system_clock::time_point{};
    bool any = false;
    for (std::size_t i = 0; i < fired_.size(); ++i) {
        fired_[i] = fires(policy_.rules()[i], meta, t);
        any = any || fired_[i];
    }
    return any;
}

CKPT_INLINE std::chrono::system_clock::time_point manager::begin_save_now(const metadata& meta,
                                                                          save_result& result) {
    if (engine_) collect_finished(result);
    seen_step_ = meta.step;
    std::fill(fired_.begin(), fired_.end(), false);
    return now();
}

CKPT_INLINE std::vector<std::size_t> manager::newest_first() const {
    std::vector<std::size_t> order(index_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return index_[a].step > index_[b].step; });
    return order;
}

CKPT_INLINE manager::planned_save manager::plan_save(save_result& result, const metadata& meta,
                                                     std::chrono::system_clock::time_point t,
                                                     const char* forced) {
    if (meta.step < 0) {
        detail::throw_error<usage_error>(
            errc::usage_argument, "manager: step " + std::to_string(meta.step) + " is negative");
    }
    planned_save plan;
    std::vector<detail::save_rule>& after = plan.after;
    after = policy_.rules();
    for (std::size_t i = 0; i < after.size(); ++i) {
        if (!fired_[i]) continue;
        result.reasons.push_back(detail::rule_key(after[i]));
        advance(after[i], meta, t);
    }
    if (forced != nullptr) result.reasons.emplace_back(forced);
    metadata& stored = plan.stored;
    stored = meta;
    if (stored.time == std::chrono::system_clock::time_point{}) stored.time = now();
    for (const auto& rule : after) {
        const std::string text = detail::encode_rule_state(rule);
        if (!text.empty()) {
            stored.tags[std::string(detail::policy_tag_prefix) + detail::rule_key(rule)] = text;
        }
    }
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
    return plan;
}

CKPT_INLINE void manager::staged(save_result& result, planned_save&& plan,
                                 const async_ticket& ticket, const char* forced) {
    stats_.last_save_seconds = ticket.stall_seconds;
    stats_.total_save_seconds += ticket.stall_seconds;
    if (!ticket) {
        // The policy still wants this save: its rules do not advance, so it fires again.
        stats_.saves_skipped += 1;
        result.skipped = ticket.skipped;
        return;
    }
    pending_.push_back({ticket.id, std::move(plan.entry), policy_.rules(), fired_});
    advance_policy(std::move(plan.after), forced);
    result.saved = true;
    result.pending = true;
}

CKPT_INLINE void manager::saved(save_result& result, planned_save&& plan, const char* forced,
                                std::chrono::steady_clock::time_point started) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    advance_policy(std::move(plan.after), forced);
    stats_.last_save_seconds = seconds;
    stats_.total_save_seconds += seconds;
    result.saved = true;
    record_committed(std::move(plan.entry), result);
}

CKPT_INLINE std::vector<std::filesystem::path> manager::begin_restore() {
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
                                   const metadata& meta) {
    forget_damaged(damaged);
    restore_policy(meta);
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
