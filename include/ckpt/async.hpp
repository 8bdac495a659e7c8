#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/error.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/io/file.hpp>
#include <ckpt/metadata.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/mman.h>

namespace ckpt {

/// What an asynchronous save does when the saves in flight or the staging memory are at their cap.
enum class when_full {
    wait, ///< block until an earlier save is committed and there is room
    skip  ///< take no snapshot and say why (async_ticket::skipped)
};

/// One background save, finished: committed, or failed with `error`.
struct async_done {
    std::uint64_t id = 0;
    std::filesystem::path path{};
    std::uint64_t bytes = 0;    ///< of the file
    double write_seconds = 0;   ///< in the background: hash, write, fsync, rename
    std::exception_ptr error{}; ///< null when the checkpoint is committed
};

/// How an async_saver (or a manager with manager_options::async) saves in the background.
struct async_options {
    /// Saves staged or being written at once; a save beyond it waits or is skipped.
    std::size_t max_in_flight = 1;
    /// Cap on the staging memory held for snapshots, in bytes; 0: max_in_flight snapshots.
    std::uint64_t max_staging_bytes = 0;
    when_full on_full = when_full::wait;
    io::backend* backend = nullptr; ///< file-system calls, made on the background thread
    /// Called on the background thread after each save, committed or failed. An exception it
    /// throws is raised like a failed save's.
    std::function<void(const async_done&)> on_done{};
};

/// What async_saver::save() did.
struct async_ticket {
    bool staged = false;       ///< the snapshot is taken; the file is written in the background
    std::string skipped{};     ///< why no snapshot was taken (when_full::skip); empty if staged
    std::uint64_t id = 0;      ///< increasing from 1; async_done::id of the same save
    std::uint64_t bytes = 0;   ///< of the file it writes
    double stall_seconds = 0;  ///< how long save() held the caller
    double waited_seconds = 0; ///< of that, waiting for room (when_full::wait)

    explicit operator bool() const noexcept { return staged; }
};

namespace detail {

/// Page-aligned anonymous memory for a snapshot. It asks for transparent huge pages: the first
/// copy into it then faults once per 2 MiB instead of once per 4 KiB.
class staging_buffer {
public:
    static constexpr std::uint64_t page = 4096;

    /// `capacity`: whole pages, at least one (see async_engine::capacity_for)
    explicit staging_buffer(std::uint64_t capacity) : capacity_(capacity) {
        void* p = ::mmap(nullptr, static_cast<std::size_t>(capacity_), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
        ::madvise(p, static_cast<std::size_t>(capacity_), MADV_HUGEPAGE); // a hint; may fail
#endif
        data_ = static_cast<std::byte*>(p);
    }
    staging_buffer(const staging_buffer&) = delete;
    staging_buffer& operator=(const staging_buffer&) = delete;
    ~staging_buffer() {
        ::munmap(data_, static_cast<std::size_t>(capacity_));
    }
    /// Touches every page, so that the kernel backs the buffer with memory now (and compacts
    /// memory for its huge pages now) rather than during a snapshot's copy.
    void fault_in() noexcept {
        volatile std::byte* p = data_;
        for (std::uint64_t i = 0; i < capacity_; i += page) p[i] = std::byte{0};
    }
    [[nodiscard]] std::byte* data() const noexcept {
        return data_;
    }
    [[nodiscard]] std::uint64_t capacity() const noexcept {
        return capacity_;
    }

private:
    std::byte* data_ = nullptr;
    std::uint64_t capacity_ = 0;
};

/// For an error a destructor cannot raise (a second one, or one during stack unwinding).
inline void report_unraised(const char* who, const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        std::fprintf(stderr, "%s: a background save failed: %s\n", who, x.what());
    } catch (...) {
        std::fprintf(stderr, "%s: a background save failed\n", who);
    }
}

inline std::string mib_text(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

/// The machinery under async_saver and the manager's async mode: snapshots into a pool of
/// reused staging buffers on the caller's thread, one background thread that writes them in
/// order, and a completion callback. Errors go to the callback only; callers decide how to
/// raise them.
class async_engine {
public:
    using done_fn = std::function<void(async_done&&)>;

    async_engine(const async_options& options, done_fn done)
        : max_in_flight_(options.max_in_flight), cap_(options.max_staging_bytes),
          on_full_(options.on_full),
          io_(options.backend != nullptr ? options.backend : &io::default_backend()),
          done_(std::move(done)) {
        if (max_in_flight_ == 0) {
            throw_error<usage_error>(errc::usage_argument,
                                     "async_options::max_in_flight must be at least 1");
        }
        worker_ = std::thread([this] { run(); });
    }
    async_engine(const async_engine&) = delete;
    async_engine& operator=(const async_engine&) = delete;
    ~async_engine() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        work_.notify_all();
        worker_.join(); // the worker finishes every staged save first
    }

    /// Takes a snapshot of `state` and queues it. @throws usage_error (605: one snapshot is
    /// larger than the staging cap; what save() throws for a state it cannot serialize)
    template <class T>
    async_ticket stage(const std::filesystem::path& path, const T& state, const metadata& meta) {
        const auto started = std::chrono::steady_clock::now();
        const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        };
        async_ticket ticket;
        if (on_full_ == when_full::skip) {
            // The common refusal costs no snapshot: say so before walking the state.
            std::lock_guard lock(mutex_);
            if (in_flight_ >= max_in_flight_) {
                ticket.skipped = in_flight_text();
                ticket.stall_seconds = seconds_since(started);
                return ticket;
            }
        }
        tensor_oarchive ar;
        collect(ar, state);
        write_plan plan = make_plan(ar.tensors(), ar.values(), meta);
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

    /// Allocates and faults in staging memory for snapshots of `state` now, on the caller's
    /// thread: as many buffers as saves may be in flight (as many as the cap allows), each
    /// with room for the snapshot and 1/256 more. A save then only copies. Buffers already
    /// held that are large enough count; free ones that are too small are given back.
    /// @returns the staging bytes held @throws usage_error (605: larger than the cap)
    template <class T>
    std::uint64_t reserve(const T& state) {
        tensor_oarchive ar;
        collect(ar, state);
        const std::uint64_t bytes = staged_bytes(make_plan(ar.tensors(), ar.values(), metadata{}));
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

    /// Blocks until every staged save is committed or failed (its callback has run).
    void drain() {
        std::unique_lock lock(mutex_);
        room_.wait(lock, [&] { return in_flight_ == 0; });
    }

    [[nodiscard]] std::size_t in_flight() const {
        std::lock_guard lock(mutex_);
        return in_flight_;
    }

    /// Staging memory held, in use or kept for the next snapshot.
    [[nodiscard]] std::uint64_t staging_bytes() const {
        std::lock_guard lock(mutex_);
        return held_bytes();
    }

private:
    struct job {
        std::uint64_t id = 0;
        std::filesystem::path path;
        std::string header;
        staging_buffer* buffer = nullptr;
        std::uint64_t data_bytes = 0;
        std::uint64_t total_bytes = 0;
    };
    struct slot {
        std::unique_ptr<staging_buffer> buffer;
        bool in_use = false;
    };

    /// What a snapshot stages: the file's data section (the header is kept apart).
    static std::uint64_t staged_bytes(const write_plan& plan) noexcept {
        return plan.total_bytes - 8 - plan.header.size();
    }

    /// Whether a new buffer of `capacity` may join `held` bytes under the cap. The first buffer
    /// always may: check_cap has refused a snapshot larger than the cap.
    bool room_for(std::uint64_t held, std::uint64_t capacity) const noexcept {
        return cap_ == 0 || held == 0 || held + capacity <= cap_;
    }

    /// @throws usage_error 605 when a snapshot of `bytes` can never fit under the cap
    void check_cap(const std::string& what, std::uint64_t bytes) const {
        if (cap_ != 0 && bytes > cap_) {
            throw_error<usage_error>(errc::usage_staging_cap,
                                     what + " needs " + mib_text(bytes) +
                                         " of staging memory, more than "
                                         "async_options::max_staging_bytes = " +
                                         mib_text(cap_) + "; raise the cap or save synchronously");
        }
    }

    std::string in_flight_text() const {
        return std::to_string(in_flight_) + (in_flight_ == 1 ? " save is" : " saves are") +
               " in flight (async_options::max_in_flight = " + std::to_string(max_in_flight_) + ")";
    }
    std::string saves_text() const {
        return std::to_string(in_flight_) + (in_flight_ == 1 ? " save" : " saves") + " in flight";
    }

    std::uint64_t held_bytes() const {
        std::uint64_t n = 0;
        for (const auto& s : pool_) n += s.buffer->capacity();
        return n;
    }

    /// The capacity of a new buffer for `bytes`-byte snapshots: whole pages, with 1/256 to
    /// spare (within the cap), so that a snapshot a little larger than the last one (a
    /// longer random engine text, a new metric) still fits and faults nothing in.
    std::uint64_t capacity_for(std::uint64_t bytes) const noexcept {
        constexpr std::uint64_t page = staging_buffer::page;
        std::uint64_t spare = bytes / 256;
        if (cap_ != 0) spare = std::min(spare, cap_ > bytes ? cap_ - bytes : 0);
        return std::max<std::uint64_t>((bytes + spare + page - 1) / page * page, page);
    }

    /// A buffer of at least `bytes` for a new snapshot, or nullptr and why not. Holds the mutex.
    /// The pool keeps at most max_in_flight buffers and, with a cap, at most the cap's bytes.
    staging_buffer* acquire(std::uint64_t bytes, std::string& why) {
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
            why = "the snapshot needs " + mib_text(bytes) + " of staging memory and " +
                  mib_text(held) + " are held by the " + saves_text() +
                  ", at async_options::max_staging_bytes = " + mib_text(cap_);
            return nullptr;
        }
        pool_.push_back({std::make_unique<staging_buffer>(capacity_for(bytes)), true});
        return pool_.back().buffer.get();
    }

    void release(const staging_buffer* buffer) noexcept {
        for (auto& s : pool_) {
            if (s.buffer.get() == buffer) s.in_use = false;
        }
    }

    void run() {
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

    const std::size_t max_in_flight_;
    const std::uint64_t cap_;
    const when_full on_full_;
    io::backend* io_;
    done_fn done_;

    mutable std::mutex mutex_;
    std::condition_variable work_; ///< a job was queued, or stop
    std::condition_variable room_; ///< a save finished: a slot and maybe memory are free
    std::deque<job> queue_;
    std::vector<slot> pool_;
    std::size_t in_flight_ = 0;
    std::uint64_t last_id_ = 0;
    bool stop_ = false;
    std::thread worker_; // last: started after everything it uses exists
};

} // namespace detail

/// Saves in the background: save() copies the state into a staging buffer (the only time it
/// holds the caller) and returns; a background thread hashes, writes, fsyncs and commits the
/// file exactly as ckpt::save does. Changing the state after save() returns does not change what
/// is written. An error in the background is raised by the next save(), wait() or the
/// destructor; none is lost.
///
///     ckpt::async_saver saver;                       // one save in flight, the next one waits
///     saver.save("run/step-100.ckpt", state, {.step = 100});
///     train_more(state);                             // safe: the snapshot is already taken
///     saver.wait();                                  // committed (or throws the save's error)
class async_saver {
public:
    explicit async_saver(async_options options = {})
        : on_done_(std::move(options.on_done)), unwinding_(std::uncaught_exceptions()),
          engine_(options, [this](async_done&& d) { finished(std::move(d)); }) {}
    async_saver(const async_saver&) = delete;
    async_saver& operator=(const async_saver&) = delete;

    /// Waits for the saves in flight, then raises the first background error not raised yet,
    /// unless the destructor runs during stack unwinding. Errors it cannot raise go to stderr
    /// (on_done saw every one).
    ~async_saver() noexcept(false) {
        engine_.drain();
        std::exception_ptr e = take_error();
        const bool can_throw = std::uncaught_exceptions() <= unwinding_;
        if (e != nullptr && !can_throw) detail::report_unraised("ckpt::async_saver", e);
        for (const auto& other : errors_) detail::report_unraised("ckpt::async_saver", other);
        if (e != nullptr && can_throw) std::rethrow_exception(e);
    }

    /// Snapshots `state` for `path` and returns once the copy is taken. First raises the error
    /// of an earlier save, if any (this save is then not taken).
    /// @throws what ckpt::save throws (from this or an earlier save), usage_error 605
    template <class T>
    async_ticket save(const std::filesystem::path& path, const T& state,
                      const metadata& meta = {}) {
        static_assert(is_checkpointable<T>::value,
                      "ckpt::async_saver::save: T is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        rethrow_pending();
        return engine_.stage(path, state, meta);
    }

    /// Blocks until every save so far is committed. @throws the first error of a background save
    void wait() {
        engine_.drain();
        rethrow_pending();
    }

    /// Saves staged or being written.
    [[nodiscard]] std::size_t in_flight() const { return engine_.in_flight(); }

    /// Staging memory held, in bytes (kept between saves, so later snapshots do not fault).
    [[nodiscard]] std::uint64_t staging_bytes() const { return engine_.staging_bytes(); }

    /// Takes the staging memory for snapshots of `state` now, before training starts, so that
    /// even the first save() only copies (otherwise its copy faults the memory in: about 0.1 s
    /// per 256 MiB, more while the kernel compacts memory for huge pages). Blocks the caller for
    /// that time; nothing is written. @returns staging_bytes()
    /// @throws usage_error (605: one snapshot is larger than async_options::max_staging_bytes)
    template <class T>
    std::uint64_t reserve(const T& state) {
        static_assert(is_checkpointable<T>::value,
                      "ckpt::async_saver::reserve: T is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        return engine_.reserve(state);
    }

private:
    void finished(async_done&& d) {
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
    std::exception_ptr take_error() {
        std::lock_guard lock(errors_mutex_);
        if (errors_.empty()) return nullptr;
        std::exception_ptr e = errors_.front();
        errors_.pop_front();
        return e;
    }
    void rethrow_pending() {
        if (std::exception_ptr e = take_error()) std::rethrow_exception(e);
    }

    std::function<void(const async_done&)> on_done_;
    int unwinding_;
    std::mutex errors_mutex_;
    std::deque<std::exception_ptr> errors_;
    detail::async_engine engine_; // last: its thread calls finished(), which uses the above
};

} // namespace ckpt
