#pragma once

#include <ckpt/async.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace ckpt {
namespace detail {

/// Seconds from `t` to now.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

CKPT_INLINE void report_unraised(const char* who, const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        std::fprintf(stderr, "%s: a background save failed: %s\n", who, x.what());
    } catch (...) {
        std::fprintf(stderr, "%s: a background save failed\n", who);
    }
}

CKPT_INLINE std::string mib_text(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

CKPT_INLINE staging_buffer::staging_buffer(std::uint64_t capacity) : capacity_(capacity) {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(capacity_), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    ::madvise(p, static_cast<std::size_t>(capacity_), MADV_HUGEPAGE); // a hint; may fail
#endif
    data_ = static_cast<std::byte*>(p);
}

CKPT_INLINE staging_buffer::~staging_buffer() {
    ::munmap(data_, static_cast<std::size_t>(capacity_));
}

CKPT_INLINE void staging_buffer::fault_in() noexcept {
    volatile std::byte* p = data_;
    for (std::uint64_t i = 0; i < capacity_; i += page) p[i] = std::byte{0};
}

CKPT_INLINE std::optional<async_ticket>
async_engine::refuse_at_once(std::chrono::steady_clock::time_point started) {
    if (on_full_ != when_full::skip) return std::nullopt;
    // The common refusal costs no snapshot: say so before walking the state.
    std::lock_guard lock(mutex_);
    if (in_flight_ < max_in_flight_) return std::nullopt;
    async_ticket ticket;
    ticket.skipped = in_flight_text();
    ticket.stall_seconds = seconds_since(started);
    return ticket;
}

CKPT_INLINE async_ticket async_engine::stage_plan(const std::filesystem::path& path,
                                                  write_plan plan,
                                                  std::chrono::steady_clock::time_point started) {
    async_ticket ticket;
    const std::uint64_t data_bytes = staged_bytes(plan);
    check_cap("the snapshot for '" + path.string() + "'", data_bytes);

    job j;
    j.path = path;
    j.header = std::move(plan.header);
    j.data_bytes = data_bytes;
    j.total_bytes = plan.total_bytes;
    {
        std::unique_lock lock(mutex_);
        const auto wait_started = std::chrono::steady_clock::now();
        for (;;) {
            std::string why;
            j.buffer = acquire(data_bytes, why);
            if (j.buffer != nullptr) break;
            if (on_full_ == when_full::skip) {
                ticket.skipped = std::move(why);
                ticket.stall_seconds = seconds_since(started);
                return ticket;
            }
            room_.wait(lock);
        }
        ticket.waited_seconds = seconds_since(wait_started);
        j.id = ticket.id = ++last_id_;
        ++in_flight_;
    }

    // The copy: the only part of a save that must hold the caller. The checksum is computed
    // in the background, from the snapshot.
    std::byte* out = j.buffer->data();
    for (const auto& [data, bytes] : plan.blocks) {
        if (bytes == 0) continue;
        std::memcpy(out, data, static_cast<std::size_t>(bytes));
        out += bytes;
    }
    {
        std::lock_guard lock(mutex_);
        try {
            queue_.push_back(std::move(j));
        } catch (...) { // out of memory for the queue: give the slot back
            release(j.buffer);
            --in_flight_;
            room_.notify_all();
            throw;
        }
    }
    work_.notify_one();
    ticket.staged = true;
    ticket.bytes = plan.total_bytes;
    ticket.stall_seconds = seconds_since(started);
    return ticket;
}

CKPT_INLINE std::uint64_t async_engine::reserve_bytes(std::uint64_t bytes) {
    check_cap("a snapshot of this state", bytes);
    const std::uint64_t capacity = capacity_for(bytes);
    std::size_t wanted = 0;
    {
        std::lock_guard lock(mutex_);
        std::erase_if(pool_,
                      [&](const slot& s) { return !s.in_use && s.buffer->capacity() < bytes; });
        std::uint64_t held = held_bytes();
        while (pool_.size() + wanted < max_in_flight_ && room_for(held, capacity)) {
            ++wanted;
            held += capacity;
        }
    }
    // Faulting takes a while (the kernel may compact memory for huge pages): not under the
    // lock, which the background thread needs to finish a save.
    std::vector<std::unique_ptr<staging_buffer>> fresh;
    for (std::size_t i = 0; i < wanted; ++i) {
        fresh.push_back(std::make_unique<staging_buffer>(capacity));
        fresh.back()->fault_in();
    }
    std::lock_guard lock(mutex_);
    // Another thread's save may have taken a slot or memory meanwhile: check again.
    for (auto& b : fresh) {
        if (pool_.size() < max_in_flight_ && room_for(held_bytes(), capacity)) {
            pool_.push_back({std::move(b), false});
        }
    }
    return held_bytes();
}

CKPT_INLINE async_engine::async_engine(const async_options& options, done_fn done)
    : max_in_flight_(options.max_in_flight), cap_(options.max_staging_bytes),
      on_full_(options.on_full),
      io_(options.backend != nullptr ? options.backend : &io::default_backend()),
      done_(std::move(done)), owner_(::getpid()) {
    if (max_in_flight_ == 0) {
        throw_error<usage_error>(errc::usage_argument,
                                 "async_options::max_in_flight must be at least 1");
    }
    worker_ = std::thread([this] { run(); });
}

CKPT_INLINE async_engine::~async_engine() {
    if (forked()) {
        // The parent's thread does not exist here, and the copies of the mutex and condition
        // variables may say that it holds or waits on them (a condition variable with a waiter
        // would block its destructor): start them afresh and let the thread's handle go.
        new (&mutex_) std::mutex();
        new (&work_) std::condition_variable();
        new (&room_) std::condition_variable();
        new (&worker_) std::thread();
        return;
    }
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    work_.notify_all();
    worker_.join(); // the worker finishes every staged save first
}

CKPT_INLINE bool async_engine::forked() const noexcept {
    return owner_ != static_cast<std::int64_t>(::getpid());
}

CKPT_INLINE void async_engine::drain() {
    if (forked()) return;
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return in_flight_ == 0; });
}

CKPT_INLINE std::size_t async_engine::in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
}

CKPT_INLINE std::uint64_t async_engine::staging_bytes() const {
    std::lock_guard lock(mutex_);
    return held_bytes();
}

CKPT_INLINE void async_engine::check_cap(const std::string& what, std::uint64_t bytes) const {
    if (cap_ != 0 && bytes > cap_) {
        throw_error<usage_error>(errc::usage_staging_cap,
                                 what + " needs " + mib_text(bytes) +
                                     " of staging memory, more than "
                                     "async_options::max_staging_bytes = " +
                                     mib_text(cap_) + "; raise the cap or save synchronously");
    }
}

CKPT_INLINE std::string async_engine::in_flight_text() const {
    return std::to_string(in_flight_) + (in_flight_ == 1 ? " save is" : " saves are") +
           " in flight (async_options::max_in_flight = " + std::to_string(max_in_flight_) + ")";
}

CKPT_INLINE std::string async_engine::saves_text() const {
    return std::to_string(in_flight_) + (in_flight_ == 1 ? " save" : " saves") + " in flight";
}

CKPT_INLINE std::uint64_t async_engine::held_bytes() const {
    std::uint64_t n = 0;
    for (const auto& s : pool_) n += s.buffer->capacity();
    return n;
}

CKPT_INLINE std::uint64_t async_engine::capacity_for(std::uint64_t bytes) const noexcept {
    constexpr std::uint64_t page = staging_buffer::page;
    std::uint64_t spare = bytes / 256;
    if (cap_ != 0) spare = std::min(spare, cap_ > bytes ? cap_ - bytes : 0);
    return std::max<std::uint64_t>((bytes + spare + page - 1) / page * page, page);
}

CKPT_INLINE staging_buffer* async_engine::acquire(std::uint64_t bytes, std::string& why) {
    if (in_flight_ >= max_in_flight_) {
        why = in_flight_text();
        return nullptr;
    }
    slot* fit = nullptr;
    for (auto& s : pool_) {
        if (!s.in_use && s.buffer->capacity() >= bytes &&
            (fit == nullptr || s.buffer->capacity() < fit->buffer->capacity())) {
            fit = &s;
        }
    }
    if (fit != nullptr) {
        fit->in_use = true;
        return fit->buffer.get();
    }
    // No free buffer fits: give back the free ones (too small), then see if a new one fits.
    std::erase_if(pool_, [](const slot& s) { return !s.in_use; });
    const std::uint64_t held = held_bytes();
    if (!room_for(held, capacity_for(bytes))) {
        why = "the snapshot needs " + mib_text(bytes) + " of staging memory and " + mib_text(held) +
              " are held by the " + saves_text() +
              ", at async_options::max_staging_bytes = " + mib_text(cap_);
        return nullptr;
    }
    pool_.push_back({std::make_unique<staging_buffer>(capacity_for(bytes)), true});
    return pool_.back().buffer.get();
}

CKPT_INLINE void async_engine::release(const staging_buffer* buffer) noexcept {
    for (auto& s : pool_) {
        if (s.buffer.get() == buffer) s.in_use = false;
    }
}

CKPT_INLINE void async_engine::run() {
    for (;;) {
        job j;
        {
            std::unique_lock lock(mutex_);
            work_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return; // stopping, and nothing left to write
            j = std::move(queue_.front());
            queue_.pop_front();
        }
        async_done done;
        done.id = j.id;
        done.bytes = j.total_bytes;
        const auto started = std::chrono::steady_clock::now();
        try {
            write_plan plan;
            plan.header = std::move(j.header);
            plan.blocks.emplace_back(j.buffer->data(), j.data_bytes);
            plan.total_bytes = j.total_bytes;
            atomic_file file(*io_, j.path);
            file.allocate(plan.total_bytes);
            write_checkpoint(file, plan);
            file.commit();
        } catch (...) {
            done.error = std::current_exception();
        }
        done.path = std::move(j.path); // a move: nothing here may throw
        done.write_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        {
            std::lock_guard lock(mutex_);
            release(j.buffer);
        }
        // Before the save stops counting as in flight: once drain() returns, every
        // callback has run, and this thread holds no reference to the error any more.
        try {
            done_(std::move(done));
        } catch (...) { // out of memory to record the outcome: stderr is all that is left
            if (done.error != nullptr) report_unraised("ckpt: background save", done.error);
        }
        done.error = nullptr;
        {
            std::lock_guard lock(mutex_);
            --in_flight_;
        }
        room_.notify_all();
    }
}

} // namespace detail

CKPT_INLINE async_saver::async_saver(async_options options)
    : on_done_(std::move(options.on_done)), unwinding_(std::uncaught_exceptions()),
      engine_(options, [this](async_done&& d) { finished(std::move(d)); }) {}

CKPT_INLINE async_saver::~async_saver() noexcept(false) {
    if (engine_.forked()) return; // a child of fork(): the saves and their errors are the parent's
    engine_.drain();
    engine_.flush_releases();
    std::exception_ptr e = take_error();
    const bool can_throw = std::uncaught_exceptions() <= unwinding_;
    if (e != nullptr && !can_throw) detail::report_unraised("ckpt::async_saver", e);
    for (const auto& other : errors_) detail::report_unraised("ckpt::async_saver", other);
    if (e != nullptr && can_throw) std::rethrow_exception(e);
}

CKPT_INLINE void async_saver::wait() {
    engine_.drain();
    engine_.flush_releases(); // the blocks of the files the saves replaced are free
    rethrow_pending();
}

CKPT_INLINE void async_saver::finished(async_done&& d) {
    if (on_done_) {
        try {
            on_done_(d);
        } catch (...) {
            if (d.error == nullptr) d.error = std::current_exception();
        }
    }
    if (d.error != nullptr) {
        std::lock_guard lock(errors_mutex_);
        errors_.push_back(d.error);
    }
}

CKPT_INLINE std::exception_ptr async_saver::take_error() {
    std::lock_guard lock(errors_mutex_);
    if (errors_.empty()) return nullptr;
    std::exception_ptr e = errors_.front();
    errors_.pop_front();
    return e;
}

CKPT_INLINE void async_saver::rethrow_pending() {
    if (std::exception_ptr e = take_error()) std::rethrow_exception(e);
}

} // namespace ckpt
