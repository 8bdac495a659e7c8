#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/io/file.hpp>
#include <ckpt/metadata.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
    explicit staging_buffer(std::uint64_t capacity);
    staging_buffer(const staging_buffer&) = delete;
    staging_buffer& operator=(const staging_buffer&) = delete;
    ~staging_buffer();
    /// Touches every page, so that the kernel backs the buffer with memory now (and compacts
    /// memory for its huge pages now) rather than during a snapshot's copy.
    void fault_in() noexcept;
    [[nodiscard]] std::byte* data() const noexcept { return data_; }
    [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }

private:
    std::byte* data_ = nullptr;
    std::uint64_t capacity_ = 0;
};

/// For an error a destructor cannot raise (a second one, or one during stack unwinding).
void report_unraised(const char* who, const std::exception_ptr& e) noexcept;

std::string mib_text(std::uint64_t bytes);

/// The machinery under async_saver and the manager's async mode: snapshots into a pool of
/// reused staging buffers on the caller's thread, one background thread that writes them in
/// order, and a completion callback. Errors go to the callback only; callers decide how to
/// raise them.
class async_engine {
public:
    using done_fn = std::function<void(async_done&&)>;

    async_engine(const async_options& options, done_fn done);
    async_engine(const async_engine&) = delete;
    async_engine& operator=(const async_engine&) = delete;
    ~async_engine();

    /// Takes a snapshot of `state` and queues it. @throws usage_error (605: one snapshot is
    /// larger than the staging cap; what save() throws for a state it cannot serialize)
    template <class T>
    async_ticket stage(const std::filesystem::path& path, const T& state, const metadata& meta) {
        const auto started = std::chrono::steady_clock::now();
        if (std::optional<async_ticket> refused = refuse_at_once(started)) return *refused;
        tensor_oarchive ar;
        collect(ar, state);
        return stage_plan(path, make_plan(ar.tensors(), ar.values(), meta), started);
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
        return reserve_bytes(staged_bytes(make_plan(ar.tensors(), ar.values(), metadata{})));
    }

    /// Blocks until every staged save is committed or failed (its callback has run). In a
    /// child of fork() (forked()), returns at once: the saves are the parent's.
    void drain();
    /// This is a copy in a child of fork(): the background thread and the saves in flight are
    /// the parent's. Such a copy can only be destroyed; that neither waits nor writes.
    [[nodiscard]] bool forked() const noexcept;
    /// Waits until the files its saves replaced are released (backend::flush_releases).
    void flush_releases() const { io_->flush_releases(); }

    [[nodiscard]] std::size_t in_flight() const;

    /// Staging memory held, in use or kept for the next snapshot.
    [[nodiscard]] std::uint64_t staging_bytes() const;

private:
    /// With when_full::skip and every slot taken, the ticket of a save refused before any walk.
    std::optional<async_ticket> refuse_at_once(std::chrono::steady_clock::time_point started);
    /// Copies a planned snapshot into a staging buffer and queues it (the blocks still point
    /// into the caller's state, so this returns only once they are copied).
    async_ticket stage_plan(const std::filesystem::path& path, write_plan plan,
                            std::chrono::steady_clock::time_point started);
    /// reserve() for snapshots of `bytes`.
    std::uint64_t reserve_bytes(std::uint64_t bytes);

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
    void check_cap(const std::string& what, std::uint64_t bytes) const;

    std::string in_flight_text() const;
    std::string saves_text() const;

    std::uint64_t held_bytes() const;

    /// The capacity of a new buffer for `bytes`-byte snapshots: whole pages, with 1/256 to
    /// spare (within the cap), so that a snapshot a little larger than the last one (a
    /// longer random engine text, a new metric) still fits and faults nothing in.
    std::uint64_t capacity_for(std::uint64_t bytes) const noexcept;

    /// A buffer of at least `bytes` for a new snapshot, or nullptr and why not. Holds the mutex.
    /// The pool keeps at most max_in_flight buffers and, with a cap, at most the cap's bytes.
    staging_buffer* acquire(std::uint64_t bytes, std::string& why);

    void release(const staging_buffer* buffer) noexcept;

    void run();

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
    std::int64_t owner_; ///< the pid of the process that started worker_
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
    explicit async_saver(async_options options = {});
    async_saver(const async_saver&) = delete;
    async_saver& operator=(const async_saver&) = delete;

    /// Waits for the saves in flight, then raises the first background error not raised yet,
    /// unless the destructor runs during stack unwinding. Errors it cannot raise go to stderr
    /// (on_done saw every one).
    ~async_saver() noexcept(false);

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
    void wait();

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
    void finished(async_done&& d);
    std::exception_ptr take_error();
    void rethrow_pending();

    std::function<void(const async_done&)> on_done_;
    int unwinding_;
    std::mutex errors_mutex_;
    std::deque<std::exception_ptr> errors_;
    detail::async_engine engine_; // last: its thread calls finished(), which uses the above
};

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/async-inl.hpp>
#endif
