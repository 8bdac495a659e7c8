// File I/O failures: every file-system call of a save fails in turn (through an injected
// backend), and every call of opening and closing a manager (its directory, its lock, the
// listing of its directory), short and interrupted writes, missing paths, read fallbacks and a
// really full disk.
// Whatever fails, the previous checkpoint stays loadable, no temporary file is left behind and
// no descriptor leaks.
#include "new_hook.hpp"

#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <Eigen/Core>

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// faulty_backend: the real POSIX calls, recorded, with failures injected on demand.

enum class op : std::uint8_t {
    open,
    write,
    pwrite,
    pread,
    fsync,
    close,
    rename,
    unlink,
    file_size,
    map,
    unmap,
    allocate,
    mkdir,
    list,
    lock,
    unlock,
    truncate
};

std::string op_name(op o) {
    switch (o) {
    case op::open: return "open";
    case op::write: return "write";
    case op::pwrite: return "pwrite";
    case op::allocate: return "allocate";
    case op::pread: return "pread";
    case op::fsync: return "fsync";
    case op::close: return "close";
    case op::rename: return "rename";
    case op::unlink: return "unlink";
    case op::file_size: return "file_size";
    case op::map: return "map";
    case op::unmap: return "unmap";
    case op::mkdir: return "mkdir";
    case op::list: return "list";
    case op::lock: return "lock";
    case op::unlock: return "unlock";
    case op::truncate: return "truncate";
    }
    return "?";
}

/// One call as the backend saw it.
struct call {
    op what;
    std::string target;  ///< the path, or the path the descriptor was opened with
    std::int64_t result; ///< what the call returned (map: 0, or -1 for nullptr)
    int err;             ///< errno when it failed, else 0
};

/// Wraps posix_backend, records every call and fails chosen ones. A failed call has no effect,
/// except close, which (as on Linux) releases the descriptor and then reports the error.
class faulty_backend final : public ckpt::io::backend {
public:
    enum class action { fail, short_write, zero_write };

    /// The k-th call overall (from 0) fails with `err`.
    faulty_backend& fail_call(std::size_t k, int err) {
        rules_.push_back({false, op::open, k, action::fail, err, false});
        return *this;
    }
    /// The k-th call of `o` (from 0) fails with `err`.
    faulty_backend& fail_op(op o, std::size_t k, int err) {
        rules_.push_back({true, o, k, action::fail, err, false});
        return *this;
    }
    /// The k-th call of `o` (write or pwrite) writes only half of its bytes and says so.
    faulty_backend& short_write(op o, std::size_t k) {
        rules_.push_back({true, o, k, action::short_write, 0, false});
        return *this;
    }
    /// Every write from the k-th on returns 0: no progress and no error. Past 1000 such calls
    /// it gives up with ENOSPC, so a caller that spins shows up as a wrong error, not a hang.
    faulty_backend& zero_writes_from(std::size_t k) {
        rules_.push_back({true, op::write, k, action::zero_write, 0, true});
        return *this;
    }

    [[nodiscard]] const std::vector<call>& calls() const noexcept { return calls_; }
    /// The operations made, in order, separated by spaces.
    [[nodiscard]] std::string ops() const {
        std::string out;
        for (const call& c : calls_) {
            if (!out.empty()) out += ' ';
            out += op_name(c.what);
        }
        return out;
    }
    [[nodiscard]] std::size_t count(op o) const {
        return static_cast<std::size_t>(std::count_if(calls_.begin(), calls_.end(),
                                                      [o](const call& c) { return c.what == o; }));
    }

    int open(const char* path, int flags, ::mode_t mode) override {
        const auto [act, err] = next(op::open);
        if (act == action::fail) return failed(op::open, path, err);
        const int fd = real_.open(path, flags, mode);
        const int e = errno;
        if (fd >= 0) names_[fd] = path;
        return done(op::open, path, fd, e);
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        return write_like(op::write, fd, data, n, 0);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        return write_like(op::pwrite, fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        const auto [act, err] = next(op::pread);
        if (act == action::fail) return failed(op::pread, name(fd), err);
        const ::ssize_t r = real_.pread(fd, data, n, offset);
        const int e = errno;
        return done(op::pread, name(fd), r, e);
    }
    int allocate(int fd, std::uint64_t size) override {
        const auto [act, err] = next(op::allocate);
        if (act == action::fail) return failed(op::allocate, name(fd), err);
        const int r = real_.allocate(fd, size);
        const int e = errno;
        return done(op::allocate, name(fd), r, e);
    }
    int fsync(int fd) override {
        const auto [act, err] = next(op::fsync);
        if (act == action::fail) return failed(op::fsync, name(fd), err);
        const int r = real_.fsync(fd);
        const int e = errno;
        return done(op::fsync, name(fd), r, e);
    }
    int close(int fd) override {
        const std::string target = name(fd);
        names_.erase(fd);
        const auto [act, err] = next(op::close);
        const int r = real_.close(fd);
        const int e = errno;
        if (act == action::fail) return failed(op::close, target, err);
        return done(op::close, target, r, e);
    }
    int rename(const char* from, const char* to) override {
        const auto [act, err] = next(op::rename);
        if (act == action::fail) return failed(op::rename, from, err);
        const int r = real_.rename(from, to);
        const int e = errno;
        return done(op::rename, from, r, e);
    }
    int unlink(const char* path) override {
        const auto [act, err] = next(op::unlink);
        if (act == action::fail) return failed(op::unlink, path, err);
        const int r = real_.unlink(path);
        const int e = errno;
        return done(op::unlink, path, r, e);
    }
    int file_size(int fd, std::uint64_t& size) override {
        const auto [act, err] = next(op::file_size);
        if (act == action::fail) return failed(op::file_size, name(fd), err);
        const int r = real_.file_size(fd, size);
        const int e = errno;
        return done(op::file_size, name(fd), r, e);
    }
    const void* map(int fd, std::size_t size) override {
        const auto [act, err] = next(op::map);
        if (act == action::fail) {
            failed(op::map, name(fd), err);
            return nullptr;
        }
        const void* p = real_.map(fd, size);
        const int e = errno;
        done(op::map, name(fd), p == nullptr ? -1 : 0, e);
        return p;
    }
    void unmap(const void* data, std::size_t size) override {
        next(op::unmap);
        real_.unmap(data, size);
        calls_.push_back({op::unmap, "", 0, 0});
    }
    // The directory calls of the manager and scan_directory.
    int mkdir(const char* path, ::mode_t mode) override {
        const auto [act, err] = next(op::mkdir);
        if (act == action::fail) return failed(op::mkdir, path, err);
        const int r = real_.mkdir(path, mode);
        const int e = errno;
        return done(op::mkdir, path, r, e);
    }
    int list(const char* path, std::vector<ckpt::io::dir_entry>& out) override {
        const auto [act, err] = next(op::list);
        if (act == action::fail) return failed(op::list, path, err);
        const int r = real_.list(path, out);
        const int e = errno;
        return done(op::list, path, r, e);
    }
    int lock(int fd) override {
        const auto [act, err] = next(op::lock);
        if (act == action::fail) return failed(op::lock, name(fd), err);
        const int r = real_.lock(fd);
        const int e = errno;
        return done(op::lock, name(fd), r, e);
    }
    int unlock(int fd) override {
        const auto [act, err] = next(op::unlock);
        if (act == action::fail) return failed(op::unlock, name(fd), err);
        const int r = real_.unlock(fd);
        const int e = errno;
        return done(op::unlock, name(fd), r, e);
    }
    int truncate(int fd, std::uint64_t size) override {
        const auto [act, err] = next(op::truncate);
        if (act == action::fail) return failed(op::truncate, name(fd), err);
        const int r = real_.truncate(fd, size);
        const int e = errno;
        return done(op::truncate, name(fd), r, e);
    }

private:
    struct rule {
        bool by_op; ///< index counts calls of `which` only, else every call
        op which;
        std::size_t index;
        action act;
        int err;
        bool from_on; ///< applies to the index-th call and every later one
    };
    struct decision {
        std::optional<action> act;
        int err;
    };

    decision next(op o) {
        const std::size_t overall = total_++;
        const std::size_t mine = per_op_[o]++;
        for (const rule& r : rules_) {
            if (r.by_op && r.which != o) continue;
            const std::size_t i = r.by_op ? mine : overall;
            if (i == r.index || (r.from_on && i > r.index)) return {r.act, r.err};
        }
        return {std::nullopt, 0};
    }
    std::string name(int fd) const {
        const auto it = names_.find(fd);
        return it != names_.end() ? it->second : "fd " + std::to_string(fd);
    }
    /// Records an injected failure; returns -1 with errno set.
    int failed(op o, const std::string& target, int err) {
        calls_.push_back({o, target, -1, err});
        errno = err;
        return -1;
    }
    /// Records a real call's result; errno is what the call left.
    template <class R>
    R done(op o, const std::string& target, R result, int err) {
        calls_.push_back({o, target, static_cast<std::int64_t>(result), result < 0 ? err : 0});
        errno = err;
        return result;
    }
    ::ssize_t write_like(op o, int fd, const void* data, std::size_t n, ::off_t offset) {
        const auto [act, err] = next(o);
        if (act == action::fail) return failed(o, name(fd), err);
        if (act == action::zero_write) {
            if (++zero_writes_ > 1000) return failed(o, name(fd), ENOSPC);
            return done<::ssize_t>(o, name(fd), 0, 0);
        }
        const std::size_t m = act == action::short_write && n > 1 ? n / 2 : n;
        const ::ssize_t w =
            o == op::write ? real_.write(fd, data, m) : real_.pwrite(fd, data, m, offset);
        const int e = errno;
        return done(o, name(fd), w, e);
    }

    ckpt::io::posix_backend real_;
    std::vector<rule> rules_;
    std::vector<call> calls_;
    std::map<int, std::string> names_;
    std::map<op, std::size_t> per_op_;
    std::size_t total_ = 0;
    std::size_t zero_writes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The state, and helpers to compare and inspect.

struct io_state {
    Eigen::MatrixXd weights;                          // dynamic, column-major
    Eigen::Matrix<float, 3, 4, Eigen::RowMajor> bias; // fixed, row-major
    std::mt19937_64 rng;
    int step = 0;
    std::string name;

    io_state() { bias.setZero(); }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weights), CEREAL_NVP(bias), CEREAL_NVP(rng), CEREAL_NVP(step),
           CEREAL_NVP(name));
    }
};

/// A distinct state per seed; `rows` x 400 doubles. With 1400 rows (4.48 MB) a save makes four
/// writes: the buffered header, the matrix in two slices (up to the 4 MiB mark of the file, then
/// the rest), and the buffered remainder. Holds -0.0, a NaN with a payload and infinity.
io_state make_state(std::uint64_t seed, Eigen::Index rows = 1400) {
    io_state s;
    s.rng.seed(seed);
    std::normal_distribution<double> normal;
    s.weights.resize(rows, 400);
    for (Eigen::Index i = 0; i < s.weights.size(); ++i) s.weights.data()[i] = normal(s.rng);
    s.weights(0, 0) = -0.0;
    s.weights(1, 0) = std::bit_cast<double>(std::uint64_t{0x7ff8'0000'0000'1234} + seed);
    s.weights(2, 0) = -std::numeric_limits<double>::infinity();
    for (Eigen::Index i = 0; i < s.bias.size(); ++i) {
        s.bias.data()[i] = static_cast<float>(seed) + 0.25f * static_cast<float>(i);
    }
    s.rng.discard(seed * 3); // the engine's state differs from a fresh seed's
    s.step = static_cast<int>(seed) * 1000 + 7;
    s.name = "run-" + std::to_string(seed) + "-\xc3\xa9t\xc3\xa9";
    return s;
}

/// Same shapes and the same bits in every tensor, and equal values.
bool identical(const io_state& a, const io_state& b) {
    const auto bytes_of = [](const auto& m) {
        return static_cast<std::size_t>(m.size()) * sizeof(*m.data());
    };
    return a.weights.rows() == b.weights.rows() && a.weights.cols() == b.weights.cols() &&
           std::memcmp(a.weights.data(), b.weights.data(), bytes_of(a.weights)) == 0 &&
           std::memcmp(a.bias.data(), b.bias.data(), bytes_of(a.bias)) == 0 && a.rng == b.rng &&
           a.step == b.step && a.name == b.name;
}

/// Metadata with a fixed time, so that a save's bytes are reproducible.
ckpt::metadata fixed_meta(std::int64_t step) {
    ckpt::metadata m;
    m.step = step;
    m.epoch = 3;
    m.time = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};
    return m;
}

/// A fresh, empty folder for one test case, under the working directory.
fs::path scratch(const std::string& name) {
    const fs::path dir = fs::current_path() / ("unit-io-" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

std::vector<char> file_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> out(fs::file_size(p));
    in.read(out.data(), static_cast<std::streamsize>(out.size()));
    out.resize(static_cast<std::size_t>(in.gcount()));
    return out;
}

std::vector<char> memory_bytes(const io_state& s, const ckpt::metadata& m) {
    const std::vector<std::byte> b = ckpt::save_to_memory(s, m);
    std::vector<char> out(b.size());
    if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
    return out;
}

/// The names in `dir`, sorted.
std::vector<std::string> listing(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

/// Temporary files of saves to `target` left in its directory.
std::vector<std::string> temp_files(const fs::path& target) {
    const std::string prefix = target.filename().string() + ".tmp-";
    std::vector<std::string> out;
    for (const std::string& n : listing(target.parent_path())) {
        if (n.starts_with(prefix)) out.push_back(n);
    }
    return out;
}

/// Open descriptors of this process.
std::size_t open_fds() {
    // Files replaced by earlier saves are closed on the POSIX backend's thread: count once
    // they are.
    ckpt::io::default_backend().flush_releases();
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

/// The io_error `f` throws, or nothing when it returns; any other exception propagates.
template <class F>
std::optional<ckpt::io_error> io_error_of(F&& f) {
    try {
        f();
    } catch (const ckpt::io_error& e) {
        return e;
    }
    return std::nullopt;
}

io_state load_fresh(const fs::path& p) {
    io_state s;
    ckpt::load(p, s);
    return s;
}

bool is_temp(const std::string& target, const fs::path& path) {
    return target.starts_with(path.string() + ".tmp-");
}

// The ids are public (the README's table of errors): pin the ones this file relies on.
static_assert(ckpt::errc::io_open == 101 && ckpt::errc::io_read == 102 &&
              ckpt::errc::io_write == 103 && ckpt::errc::io_fsync == 104 &&
              ckpt::errc::io_close == 105 && ckpt::errc::io_rename == 106 &&
              ckpt::errc::io_sync_directory == 107 && ckpt::errc::io_stat == 108);

/// What a save must report when `c` (a call of a clean save to `path`) fails.
struct expected_failure {
    bool throws = true;
    int id = 0;
    std::string operation;
    bool after_rename = false; ///< the new file is already in place
};

expected_failure expectation_for(const call& c, const fs::path& path) {
    const bool temp = is_temp(c.target, path);
    switch (c.what) {
    case op::open:
        // The open of the file a save replaces (held across the rename, to be released after
        // it) may fail: the save goes on and the file is replaced all the same.
        if (c.target == path.string()) return {false, 0, "", true};
        return temp ? expected_failure{true, ckpt::errc::io_open, "create", false}
                    : expected_failure{true, ckpt::errc::io_sync_directory, "open directory", true};
    case op::allocate: return {true, ckpt::errc::io_write, "allocate", false};
    case op::write:
    case op::pwrite: return {true, ckpt::errc::io_write, "write", false};
    case op::fsync:
        return temp
                   ? expected_failure{true, ckpt::errc::io_fsync, "fsync", false}
                   : expected_failure{true, ckpt::errc::io_sync_directory, "fsync directory", true};
    case op::close:
        // The directory's descriptor is read-only and already synced: its close has nothing
        // left to lose, so ckpt ignores its result.
        return temp ? expected_failure{true, ckpt::errc::io_close, "close", false}
                    : expected_failure{false, 0, "", true};
    case op::rename: return {true, ckpt::errc::io_rename, "rename", false};
    default: return {true, -1, "unexpected call in a save", false};
    }
}

/// The calls of a clean save of `s` to `path`, made to a probe file beside it (a copy of the
/// file at `path`, when there is one: a save treats a file it replaces apart) and renamed as if
/// made to `path`.
std::vector<call> calls_of_clean_save(const fs::path& path, const io_state& s,
                                      const ckpt::metadata& m) {
    const std::string probe = (path.parent_path() / "probe.ckpt").string();
    if (fs::exists(path)) fs::copy_file(path, probe, fs::copy_options::overwrite_existing);
    faulty_backend clean;
    ckpt::save(probe, s, m, ckpt::save_options{.backend = &clean});
    fs::remove(probe);
    std::vector<call> calls = clean.calls();
    for (call& c : calls) {
        if (c.target.starts_with(probe)) c.target = path.string() + c.target.substr(probe.size());
    }
    return calls;
}

/// While alive, every operator new sets errno to 0. C and POSIX let a function that succeeds
/// change errno, and C++ promises nothing about it for operator new: this one changes it on
/// purpose, so an error path that reads errno too late reports the wrong cause.
struct errno_clobbering {
    errno_clobbering() {
        test::new_hook = [](std::size_t) { errno = 0; };
    }
    ~errno_clobbering() { test::new_hook = nullptr; }
    errno_clobbering(const errno_clobbering&) = delete;
    errno_clobbering& operator=(const errno_clobbering&) = delete;
};

} // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("a clean save makes the expected calls: create, stream, patch, fsync, close, rename, "
          "sync the directory") {
    const fs::path dir = scratch("clean");
    const fs::path path = dir / "state.ckpt";
    const io_state s = make_state(1);
    const std::size_t fds = open_fds();

    faulty_backend b;
    ckpt::save(path, s, fixed_meta(1), ckpt::save_options{.backend = &b});

    // 1 MiB buffer: the header is flushed when the 4.48 MB tensor does not fit; the tensor goes
    // straight from the matrix in slices that end at 4 MiB marks of the file; then the rest, and
    // the checksum is patched into the header last.
    // Before the space is reserved, and again before the rename, the file it would replace is
    // opened (to let go of its cached pages, then to be released after the rename, see
    // unit-release.cpp): here there is none.
    CHECK(b.ops() == "open open allocate write write write write pwrite fsync close open rename "
                     "open fsync close");
    REQUIRE(b.calls().size() == 15);
    CHECK(is_temp(b.calls()[0].target, path));
    CHECK(b.calls()[0].result >= 0);
    CHECK(b.calls()[1].target == path.string());
    CHECK(b.calls()[1].err == ENOENT);
    CHECK(b.calls()[10].target == path.string());
    CHECK(b.calls()[10].err == ENOENT);
    CHECK(b.calls()[11].target == b.calls()[0].target); // the temp file is what gets renamed
    CHECK(b.calls()[12].target == dir.string());
    CHECK(b.calls()[13].target == dir.string());
    CHECK(b.calls()[14].target == dir.string());
    for (const call& c : b.calls()) {
        INFO(op_name(c.what), " ", c.target);
        if (c.target != path.string()) CHECK(c.err == 0);
    }
    std::int64_t streamed = 0;
    for (const call& c : b.calls()) {
        if (c.what == op::write) streamed += c.result;
    }
    CHECK(streamed == static_cast<std::int64_t>(fs::file_size(path)));
    CHECK(b.calls()[7].result == 16); // the checksum's 16 hex digits

    CHECK(file_bytes(path) == memory_bytes(s, fixed_meta(1)));
    CHECK(identical(load_fresh(path), s));
    CHECK(temp_files(path).empty());
    CHECK(open_fds() == fds);
}

TEST_CASE("every call of a save fails in turn with ENOSPC, EIO and EDQUOT") {
    const fs::path dir = scratch("every-call");
    const fs::path path = dir / "state.ckpt";
    const io_state old_state = make_state(1);
    const io_state new_state = make_state(2);
    ckpt::save(path, old_state, fixed_meta(1));
    const std::vector<char> old_bytes = file_bytes(path);
    REQUIRE(old_bytes == memory_bytes(old_state, fixed_meta(1)));

    const std::vector<call> calls = calls_of_clean_save(path, new_state, fixed_meta(2));
    // open, open and close of the file it replaces (evict), allocate, 4 writes, pwrite, fsync,
    // close, open of the file it replaces, rename, open, fsync and close of the directory, and
    // the close of the replaced file (release).
    REQUIRE(calls.size() == 17);
    // Each outcome is checked byte for byte against these; that they load back is checked once.
    const std::vector<char> new_bytes = memory_bytes(new_state, fixed_meta(2));
    const auto put = [&](const std::vector<char>& bytes) {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    };
    put(new_bytes);
    REQUIRE(identical(load_fresh(path), new_state));
    put(old_bytes);
    REQUIRE(identical(load_fresh(path), old_state));

    for (const int err : {ENOSPC, EIO, EDQUOT}) {
        for (std::size_t k = 0; k < calls.size(); ++k) {
            const call& c = calls[k];
            // A full disk at allocate() is asked again once released files are freed
            // (unit-release.cpp): here the second call succeeds.
            const expected_failure want = c.what == op::allocate && err == ENOSPC
                                              ? expected_failure{false, 0, "", true}
                                              : expectation_for(c, path);
            INFO("call ", k, " (", op_name(c.what), " ", c.target, ") fails with errno ", err);
            const std::size_t fds = open_fds();

            faulty_backend b;
            b.fail_call(k, err);
            const auto e = io_error_of([&] {
                ckpt::save(path, new_state, fixed_meta(2), ckpt::save_options{.backend = &b});
            });

            // The failing call is the one chosen, made as in the clean save, and it was the
            // only failure.
            REQUIRE(b.calls().size() > k);
            CHECK(b.calls()[k].what == c.what);
            CHECK(b.calls()[k].result == -1);
            CHECK(b.calls()[k].err == err);
            for (std::size_t i = 0; i < k; ++i) CHECK(b.calls()[i].what == calls[i].what);

            if (want.throws) {
                REQUIRE(e.has_value());
                CHECK(e->id() == want.id);
                CHECK(e->kind() == "io");
                CHECK(e->operation() == want.operation);
                CHECK(e->code().value() == err);
                CHECK(e->code().category() == std::generic_category());
                CHECK(std::string(e->what()).starts_with("[ckpt.io." + std::to_string(want.id) +
                                                         "] "));
                if (want.id == ckpt::errc::io_sync_directory) {
                    CHECK(e->path() == dir.string());
                    CHECK(std::string(e->what()).find("in place") != std::string::npos);
                } else if (want.id == ckpt::errc::io_open) {
                    CHECK(e->path() == path.string() + ".tmp-*");
                } else {
                    CHECK(is_temp(e->path(), path));
                    CHECK(std::string(e->what()).find("was not changed") != std::string::npos);
                }
            } else {
                CHECK_FALSE(e.has_value());
            }

            if (c.what == op::fsync && !want.after_rename) {
                // A failed fsync ends the attempt: never retried, never renamed.
                CHECK(b.count(op::fsync) == 1);
                CHECK(b.count(op::rename) == 0);
            }
            if (!want.after_rename) {
                CHECK(b.count(op::rename) == (c.what == op::rename ? 1U : 0U));
                CHECK(file_bytes(path) == old_bytes);
            } else {
                CHECK(b.count(op::rename) == 1);
                CHECK(file_bytes(path) == new_bytes);
                put(old_bytes); // back to the old file
                REQUIRE(file_bytes(path) == old_bytes);
            }
            CHECK(temp_files(path).empty());
            CHECK(listing(dir) == std::vector<std::string>{"state.ckpt"});
            CHECK(open_fds() == fds);
        }
    }
}

TEST_CASE("a failed fsync abandons the attempt: close, unlink, and nothing else") {
    const fs::path dir = scratch("fsync");
    const fs::path path = dir / "state.ckpt";
    const io_state old_state = make_state(1, 4);
    ckpt::save(path, old_state, fixed_meta(1));
    const std::vector<char> old_bytes = file_bytes(path);
    const std::size_t fds = open_fds();

    faulty_backend b;
    b.fail_op(op::fsync, 0, EIO);
    const auto e = io_error_of([&] {
        ckpt::save(path, make_state(2, 4), fixed_meta(2), ckpt::save_options{.backend = &b});
    });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_fsync);
    CHECK(e->operation() == "fsync");
    CHECK(e->code() == std::error_code(EIO, std::generic_category()));

    // The file it would replace is opened and let go of (evict: a close here) before the space
    // is reserved; it stays as it is.
    CHECK(b.ops() == "open open close allocate write pwrite fsync close unlink");
    REQUIRE(b.calls().size() == 9);
    const std::string temp = b.calls()[0].target;
    CHECK(is_temp(temp, path));
    CHECK(e->path() == temp);
    CHECK(b.calls()[1].target == path.string());
    CHECK(b.calls()[2].target == path.string());
    CHECK(b.calls()[7].target == temp);
    CHECK(b.calls()[8].target == temp);
    CHECK(b.calls()[8].result == 0);

    CHECK(file_bytes(path) == old_bytes);
    CHECK(identical(load_fresh(path), old_state));
    CHECK(temp_files(path).empty());
    CHECK(open_fds() == fds);
}

TEST_CASE("EINTR is retried: on create, on a write and on the checksum patch") {
    const fs::path dir = scratch("eintr");
    const fs::path path = dir / "state.ckpt";
    const io_state s = make_state(5);
    const std::vector<char> expected = memory_bytes(s, fixed_meta(5));

    SUBCASE("write") {
        for (std::size_t k = 0; k < 4; ++k) {
            INFO("write ", k, " is interrupted");
            fs::remove(path);
            faulty_backend b;
            b.fail_op(op::write, k, EINTR);
            ckpt::save(path, s, fixed_meta(5), ckpt::save_options{.backend = &b});
            CHECK(b.count(op::write) == 5); // the 4 of a clean save, one of them twice
            std::vector<call> writes;
            for (const call& c : b.calls()) {
                if (c.what == op::write) writes.push_back(c);
            }
            REQUIRE(writes.size() == 5);
            CHECK(writes[k].result == -1);
            CHECK(writes[k].err == EINTR);
            CHECK(writes[k + 1].result > 0);
            CHECK(file_bytes(path) == expected);
            CHECK(identical(load_fresh(path), s));
        }
    }
    SUBCASE("pwrite") {
        faulty_backend b;
        b.fail_op(op::pwrite, 0, EINTR);
        ckpt::save(path, s, fixed_meta(5), ckpt::save_options{.backend = &b});
        CHECK(b.count(op::pwrite) == 2);
        CHECK(file_bytes(path) == expected);
    }
    SUBCASE("create") {
        faulty_backend b;
        b.fail_op(op::open, 0, EINTR);
        ckpt::save(path, s, fixed_meta(5), ckpt::save_options{.backend = &b});
        // The temporary twice, the file it replaces twice (there is none), the directory.
        CHECK(b.count(op::open) == 5);
        CHECK(file_bytes(path) == expected);
    }
    CHECK(temp_files(path).empty());
}

/// A state of `count` tensors of 64 KiB, each smaller than the write buffer.
struct small_tensors {
    std::vector<Eigen::MatrixXf> layers;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(layers));
    }
};

TEST_CASE("buffered writes end on 2 MiB boundaries of the file, large ones on 4 MiB boundaries") {
    // Aligned writes of 2 MiB or more leave page-cache folios of 2 MiB, which the kernel maps
    // with one entry each (a huge page) when the file is loaded right after its save; written
    // 1 MiB at a time, a file of 64 KiB tensors took a page table entry per 4 KiB, and its
    // load 1.1x the time of a file of large tensors.
    const fs::path dir = scratch("aligned");
    small_tensors s;
    s.layers.assign(70, Eigen::MatrixXf::Constant(128, 128, 0.5f));  // 70 x 64 KiB: 4.4 MiB
    s.layers.push_back(Eigen::MatrixXf::Constant(1024, 2048, 1.5f)); // 8 MiB: written directly
    faulty_backend b;
    ckpt::save(dir / "s.ckpt", s, fixed_meta(1), ckpt::save_options{.backend = &b});
    std::vector<std::int64_t> ends;
    std::int64_t at = 0;
    for (const call& c : b.calls()) {
        if (c.what != op::write) continue;
        at += c.result;
        ends.push_back(at);
    }
    REQUIRE(ends.size() >= 6);
    CHECK(ends.back() == static_cast<std::int64_t>(fs::file_size(dir / "s.ckpt")));
    constexpr std::int64_t mib = std::int64_t{1} << 20;
    std::string unaligned;
    for (std::size_t i = 0; i + 1 < ends.size(); ++i) {
        if (ends[i] % (2 * mib) != 0) unaligned += std::to_string(i) + " ";
    }
    // Writes 0-1 are the buffer's, ending at 2 and 4 MiB; write 2 flushes what is buffered
    // before the large tensor; 3-5 are its slices, ending at 8 and 12 MiB and where the tensor
    // ends; the last one is the rest of the file.
    CHECK(ends.size() == 7);
    CHECK(ends[0] == 2 * mib);
    CHECK(ends[1] == 4 * mib);
    CHECK(ends[3] == 8 * mib);
    CHECK(ends[4] == 12 * mib);
    CHECK(unaligned == "2 5 ");
    small_tensors back;
    ckpt::load(dir / "s.ckpt", back);
    CHECK(back.layers.size() == 71);
    CHECK(back.layers.back() == s.layers.back());
}

TEST_CASE("a short write is continued and the file is exact") {
    const fs::path dir = scratch("short");
    const fs::path path = dir / "state.ckpt";
    const io_state s = make_state(6);
    const std::vector<char> expected = memory_bytes(s, fixed_meta(6));
    const std::size_t fds = open_fds();

    for (std::size_t k = 0; k < 4; ++k) {
        INFO("write ", k, " is short");
        faulty_backend b;
        b.short_write(op::write, k);
        ckpt::save(path, s, fixed_meta(6), ckpt::save_options{.backend = &b});
        CHECK(b.count(op::write) == 5); // the rest of the short one is a write of its own
        CHECK(file_bytes(path) == expected);
        CHECK(identical(load_fresh(path), s));
    }
    SUBCASE("every write short") {
        faulty_backend b;
        for (std::size_t k = 0; k < 64; ++k) b.short_write(op::write, k);
        b.short_write(op::pwrite, 0);
        ckpt::save(path, s, fixed_meta(6), ckpt::save_options{.backend = &b});
        CHECK(b.count(op::pwrite) == 2); // 8 digits, then the other 8
        CHECK(file_bytes(path) == expected);
        CHECK(identical(load_fresh(path), s));
    }
    CHECK(temp_files(path).empty());
    CHECK(open_fds() == fds);
}

TEST_CASE("a write that returns 0 is an error (EIO), not a retry loop") {
    const fs::path dir = scratch("zero");
    const fs::path path = dir / "state.ckpt";
    const io_state old_state = make_state(1, 4);
    ckpt::save(path, old_state, fixed_meta(1));
    const std::vector<char> old_bytes = file_bytes(path);
    const std::size_t fds = open_fds();

    faulty_backend b;
    b.zero_writes_from(0);
    const auto e = io_error_of([&] {
        ckpt::save(path, make_state(2, 4), fixed_meta(2), ckpt::save_options{.backend = &b});
    });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_write);
    CHECK(e->operation() == "write");
    CHECK(e->code() == std::error_code(EIO, std::generic_category()));
    CHECK(b.count(op::write) == 1);
    CHECK(b.ops() == "open open close allocate write close unlink");

    CHECK(file_bytes(path) == old_bytes);
    CHECK(temp_files(path).empty());
    CHECK(open_fds() == fds);
}

TEST_CASE("saving into a folder that does not exist: io_error 101 naming the path") {
    const fs::path dir = scratch("no-folder");
    const fs::path path = dir / "missing" / "sub" / "state.ckpt";
    const std::size_t fds = open_fds();

    faulty_backend b;
    const auto e = io_error_of([&] {
        ckpt::save(path, make_state(1, 4), fixed_meta(1), ckpt::save_options{.backend = &b});
    });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_open);
    CHECK(e->operation() == "create");
    CHECK(e->code() == std::error_code(ENOENT, std::generic_category()));
    CHECK(e->path() == path.string() + ".tmp-*");
    // The message says what is wrong (the folder is missing), then the call and the OS reason.
    const std::string what = e->what();
    CHECK(what.starts_with("[ckpt.io.101] cannot save '" + path.string() + "': the directory '" +
                           path.parent_path().string() + "' does not exist (create '" +
                           path.string() + ".tmp-*' failed: "));
    CHECK(what.find(std::strerror(ENOENT)) != std::string::npos);
    CHECK(b.ops() == "open open"); // the create, then the look at the directory

    CHECK(listing(dir).empty());
    CHECK(open_fds() == fds);
}

TEST_CASE("saving where a file stands in for the folder: io_error 101 naming the file") {
    const fs::path dir = scratch("file-as-folder");
    std::ofstream(dir / "run") << "not a folder";
    const std::size_t fds = open_fds();

    for (const fs::path& path : {dir / "run" / "last.ckpt", dir / "run" / "sub" / "last.ckpt"}) {
        CAPTURE(path);
        const auto e = io_error_of([&] { ckpt::save(path, make_state(1, 4), fixed_meta(1)); });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_open);
        CHECK(e->operation() == "create");
        CHECK(e->code() == std::error_code(ENOTDIR, std::generic_category()));
        CHECK(e->path() == path.string() + ".tmp-*");
        const std::string what = e->what();
        CHECK(what.starts_with("[ckpt.io.101] cannot save '" + path.string() + "': '" +
                               (dir / "run").string() + "' is not a directory (create '" +
                               path.string() + ".tmp-*' failed: "));
        CHECK(what.find(std::strerror(ENOTDIR)) != std::string::npos);
    }
    CHECK(listing(dir) == std::vector<std::string>{"run"});
    CHECK(open_fds() == fds);
}

TEST_CASE("a create that fails in a folder that exists keeps the plain message") {
    const fs::path dir = scratch("create-fails");
    const fs::path path = dir / "state.ckpt";

    faulty_backend b;
    b.fail_call(0, ENOENT); // as if the folder vanished and came back
    const auto e = io_error_of([&] {
        ckpt::save(path, make_state(1, 4), fixed_meta(1), ckpt::save_options{.backend = &b});
    });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_open);
    CHECK(std::string(e->what()).starts_with("[ckpt.io.101] create '" + path.string() +
                                             ".tmp-*' failed: "));
    CHECK(std::string(e->what()).find("does not exist") == std::string::npos);
    CHECK(b.ops() == "open open close");
}

TEST_CASE("loading a missing file or a folder") {
    const fs::path dir = scratch("load-missing");
    const std::size_t fds = open_fds();
    io_state s = make_state(3, 4);
    const io_state before = s;

    SUBCASE("missing file: 101") {
        const fs::path path = dir / "nothing.ckpt";
        const auto e = io_error_of([&] { ckpt::load(path, s); });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_open);
        CHECK(e->operation() == "open");
        CHECK(e->path() == path.string());
        CHECK(e->code() == std::error_code(ENOENT, std::generic_category()));
    }
    SUBCASE("a folder: 108, EISDIR") {
        const auto e = io_error_of([&] { ckpt::load(dir, s); });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_stat);
        CHECK(e->operation() == "stat");
        CHECK(e->path() == dir.string());
        CHECK(e->code() == std::error_code(EISDIR, std::generic_category()));
    }
    CHECK(identical(s, before));
    CHECK(open_fds() == fds);
}

TEST_CASE("load falls back to pread when the file cannot be mapped") {
    const fs::path dir = scratch("no-map");
    const fs::path path = dir / "state.ckpt";
    const io_state saved = make_state(4);
    ckpt::save(path, saved, fixed_meta(4));
    const std::uint64_t size = fs::file_size(path);
    const std::size_t fds = open_fds();

    faulty_backend b;
    b.fail_op(op::map, 0, ENODEV);
    io_state s;
    const ckpt::metadata meta = ckpt::load(path, s, ckpt::load_options{.backend = &b});
    CHECK(identical(s, saved));
    CHECK(meta == fixed_meta(4));
    CHECK(b.count(op::map) == 1);
    CHECK(b.count(op::unmap) == 0);
    CHECK(b.count(op::pread) >= 1);
    std::int64_t read = 0;
    for (const call& c : b.calls()) {
        if (c.what == op::pread) read += c.result;
    }
    CHECK(read == static_cast<std::int64_t>(size));
    CHECK(b.calls().back().what == op::close);
    CHECK(open_fds() == fds);

    SUBCASE("an interrupted read is retried") {
        faulty_backend b2;
        b2.fail_op(op::map, 0, ENODEV).fail_op(op::pread, 0, EINTR);
        io_state s2;
        ckpt::load(path, s2, ckpt::load_options{.backend = &b2});
        CHECK(identical(s2, saved));
        CHECK(b2.count(op::pread) == 2);
    }
}

TEST_CASE("a pread failing with EIO: io_error 102 and the state is untouched") {
    const fs::path dir = scratch("pread-eio");
    const fs::path path = dir / "state.ckpt";
    ckpt::save(path, make_state(4), fixed_meta(4));
    io_state s = make_state(9);
    const io_state before = s;
    const std::size_t fds = open_fds();

    faulty_backend b;
    b.fail_op(op::map, 0, ENODEV).fail_op(op::pread, 0, EIO);
    const auto e = io_error_of([&] { ckpt::load(path, s, ckpt::load_options{.backend = &b}); });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_read);
    CHECK(e->operation() == "read");
    CHECK(e->path() == path.string());
    CHECK(e->code() == std::error_code(EIO, std::generic_category()));
    CHECK(b.ops() == "open file_size map pread close");
    CHECK(identical(s, before));
    CHECK(open_fds() == fds);
}

TEST_CASE("a really full disk (a 1 MiB tmpfs): ENOSPC, the old checkpoint survives") {
    const fs::path dir = scratch("tmpfs");
    const fs::path mnt = dir / "mnt";
    fs::create_directories(mnt);
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
        const int e = errno;
        const std::string why = "skipped: cannot mount a tmpfs at " + mnt.string() + ": " +
                                std::strerror(e) + " (it needs root with CAP_SYS_ADMIN)";
        MESSAGE(why);
        return;
    }
    struct unmount_guard {
        fs::path at;
        ~unmount_guard() { ::umount2(at.c_str(), MNT_DETACH); }
    } guard{mnt};

    const fs::path path = mnt / "state.ckpt";
    const io_state small = make_state(1, 10);
    ckpt::save(path, small, fixed_meta(1));
    const std::vector<char> old_bytes = file_bytes(path);
    const std::size_t fds = open_fds();

    const io_state big = make_state(2, 600); // 1.92 MB of doubles
    faulty_backend b;
    const auto e = io_error_of(
        [&] { ckpt::save(path, big, fixed_meta(2), ckpt::save_options{.backend = &b}); });
    REQUIRE(e.has_value());
    CHECK((e->id() == ckpt::errc::io_write || e->id() == ckpt::errc::io_fsync));
    CHECK(e->code() == std::error_code(ENOSPC, std::generic_category()));
    CHECK(b.count(op::rename) == 0);
    CHECK(b.calls().back().what == op::unlink);

    CHECK(file_bytes(path) == old_bytes);
    CHECK(identical(load_fresh(path), small));
    CHECK(temp_files(path).empty());
    CHECK(listing(mnt) == std::vector<std::string>{"state.ckpt"});
    CHECK(open_fds() == fds);
}

TEST_CASE("a read-only directory (a tmpfs remounted read-only): EROFS, the old checkpoint loads") {
    const fs::path dir = scratch("readonly");
    const fs::path mnt = dir / "mnt";
    fs::create_directories(mnt);
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") != 0) {
        const int e = errno;
        MESSAGE("skipped: cannot mount a tmpfs at " << mnt.string() << ": " << std::strerror(e)
                                                    << " (it needs root with CAP_SYS_ADMIN)");
        return;
    }
    struct unmount_guard {
        fs::path at;
        ~unmount_guard() { ::umount2(at.c_str(), MNT_DETACH); }
    } guard{mnt};
    const fs::path path = mnt / "state.ckpt";
    const io_state old_state = make_state(1, 10);
    ckpt::save(path, old_state, fixed_meta(1));
    const std::vector<char> old_bytes = file_bytes(path);
    // Root ignores permission bits, so the directory is made read-only at the file system.
    REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") == 0);
    const std::size_t fds = open_fds();

    const auto e = io_error_of([&] { ckpt::save(path, make_state(2, 10), fixed_meta(2)); });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_open);
    CHECK(e->operation() == "create");
    CHECK(e->code() == std::error_code(EROFS, std::generic_category()));
    CHECK(std::string(e->what()).find("the file at '" + path.string() + "' was not changed") !=
          std::string::npos);
    CHECK(file_bytes(path) == old_bytes);
    CHECK(identical(load_fresh(path), old_state));
    CHECK(listing(mnt) == std::vector<std::string>{"state.ckpt"});
    CHECK(open_fds() == fds);
}

TEST_CASE("the errno a failed save reports survives the allocations on its error path") {
    const fs::path dir = scratch("errno");
    const fs::path path = dir / "state.ckpt";
    const io_state old_state = make_state(1, 4);
    const io_state new_state = make_state(2, 4);
    ckpt::save(path, old_state, fixed_meta(1));
    const std::vector<call> calls = calls_of_clean_save(path, new_state, fixed_meta(2));
    // open open(replaced) close(evict) allocate write pwrite fsync close open(replaced) rename
    // open fsync close close(release)
    REQUIRE(calls.size() == 14);

    for (std::size_t k = 0; k < calls.size(); ++k) {
        const expected_failure want = expectation_for(calls[k], path);
        if (!want.throws) continue;
        // ENOSPC from allocate is asked again once released files are freed (unit-release.cpp).
        if (calls[k].what == op::allocate) continue;
        INFO("call ", k, " (", op_name(calls[k].what), " ", calls[k].target, ") fails with ENOSPC");
        faulty_backend b;
        b.fail_call(k, ENOSPC);
        std::optional<ckpt::io_error> e;
        {
            const errno_clobbering clobbering;
            e = io_error_of([&] {
                ckpt::save(path, new_state, fixed_meta(2), ckpt::save_options{.backend = &b});
            });
        }
        REQUIRE(e.has_value());
        INFO("what(): ", std::string(e->what()));
        CHECK(e->id() == want.id);
        CHECK(e->operation() == want.operation);
        CHECK(e->code() == std::error_code(ENOSPC, std::generic_category()));
        CHECK(std::string(e->what()).find("(errno 28)") != std::string::npos);
        if (want.after_rename) ckpt::save(path, old_state, fixed_meta(1));
        CHECK(temp_files(path).empty());
    }
}

TEST_CASE("a file name of NAME_MAX bytes can be saved: the temporary name must fit as well") {
    const fs::path dir = scratch("long-name");
    const long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
    REQUIRE(name_max >= 14);
    const auto length = static_cast<std::size_t>(std::min(name_max, 255L));
    const fs::path path = dir / (std::string(length - 5, 'n') + ".ckpt");
    {
        // The name is valid here: a file of that name can be created.
        std::ofstream probe(path);
        REQUIRE(probe.good());
    }
    fs::remove(path);
    const std::size_t fds = open_fds();

    const io_state s = make_state(1, 4);
    CHECK_NOTHROW(ckpt::save(path, s, fixed_meta(1)));
    if (fs::exists(path)) CHECK(identical(load_fresh(path), s));
    CHECK(listing(dir) == std::vector<std::string>{path.filename().string()});
    CHECK(open_fds() == fds);
}

TEST_CASE("load: a failing stat is io_error 108 and the state is untouched") {
    const fs::path dir = scratch("stat");
    const fs::path path = dir / "state.ckpt";
    ckpt::save(path, make_state(4, 4), fixed_meta(4));
    io_state s = make_state(9, 4);
    const io_state before = s;
    const std::size_t fds = open_fds();

    faulty_backend b;
    b.fail_op(op::file_size, 0, EIO);
    const auto e = io_error_of([&] { ckpt::load(path, s, ckpt::load_options{.backend = &b}); });
    REQUIRE(e.has_value());
    CHECK(e->id() == ckpt::errc::io_stat);
    CHECK(e->operation() == "stat");
    CHECK(e->path() == path.string());
    CHECK(e->code() == std::error_code(EIO, std::generic_category()));
    CHECK(b.ops() == "open file_size close");
    CHECK(identical(s, before));
    CHECK(open_fds() == fds);
}

TEST_CASE("inspect: a missing file is 101, a failing read 102, and nothing leaks") {
    const fs::path dir = scratch("inspect");
    const fs::path path = dir / "state.ckpt";
    ckpt::save(path, make_state(4, 4), fixed_meta(4));
    const std::size_t fds = open_fds();

    SUBCASE("missing") {
        const auto e = io_error_of([&] { (void)ckpt::inspect(dir / "nothing.ckpt"); });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_open);
        CHECK(e->code() == std::error_code(ENOENT, std::generic_category()));
    }
    SUBCASE("the header read fails") {
        faulty_backend b;
        b.fail_op(op::pread, 1, EIO); // the length reads, the header does not
        const auto e =
            io_error_of([&] { (void)ckpt::inspect(path, ckpt::inspect_options{.backend = &b}); });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_read);
        CHECK(e->operation() == "read");
        CHECK(e->code() == std::error_code(EIO, std::generic_category()));
        CHECK(b.ops() == "open file_size pread pread close");
    }
    SUBCASE("verify, unmappable, and the read fails") {
        faulty_backend b;
        // The length and the header read; mapping fails; the first slice's read fails.
        b.fail_op(op::map, 0, ENODEV).fail_op(op::pread, 2, EIO);
        const auto e = io_error_of([&] {
            (void)ckpt::inspect(path, ckpt::inspect_options{.verify = true, .backend = &b});
        });
        REQUIRE(e.has_value());
        CHECK(e->id() == ckpt::errc::io_read);
        CHECK(e->code() == std::error_code(EIO, std::generic_category()));
        CHECK(b.ops() == "open file_size pread pread map pread close");
    }
    SUBCASE("verify, unmappable: read in slices instead") {
        faulty_backend b;
        b.fail_op(op::map, 0, ENODEV);
        const ckpt::info i =
            ckpt::inspect(path, ckpt::inspect_options{.verify = true, .backend = &b});
        CHECK(i.checksum_verified);
        CHECK(b.ops() == "open file_size pread pread map pread close");
        CHECK(i.file_bytes == fs::file_size(path));
        CHECK(i.meta == fixed_meta(4));
    }
    CHECK(open_fds() == fds);
}

// ---------------------------------------------------------------------------------------------
// The manager's own calls: its directory, its lock and the listing of its directory

namespace {

/// Whether a lock on `dir` can be taken now (through the POSIX backend).
bool lock_free(const fs::path& dir) {
    try {
        ckpt::directory_lock lock(dir, "ckpt", ckpt::io::default_backend());
        return lock.held();
    } catch (const ckpt::error&) {
        return false;
    }
}

/// A manager's directory with two checkpoints (steps 1 and 2), a damaged one (3), a foreign
/// file (4) and a temporary file a crashed save left.
struct manager_directory {
    fs::path dir;
    fs::path lock;
    fs::path temp;
    std::vector<char> checkpoint_1;
    explicit manager_directory(const std::string& name)
        : dir(scratch(name)), lock(dir / "ckpt.lock"),
          temp(dir / "ckpt-000000000002.ckpt.tmp-99-0") {
        {
            ckpt::manager m(dir, ckpt::every_steps(1));
            for (int s = 1; s <= 3; ++s) {
                REQUIRE(m.step(make_state(static_cast<std::uint64_t>(s), 4), fixed_meta(s)));
            }
        }
        checkpoint_1 = file_bytes(path(1));
        fs::resize_file(path(3), 100);
        std::ofstream(path(4)) << "some notes, not a checkpoint\n";
        std::ofstream(temp) << "a save that died";
    }
    [[nodiscard]] fs::path path(int step) const {
        return dir / ckpt::detail::checkpoint_file_name("ckpt", step);
    }
};

} // namespace

TEST_CASE("every call of opening and closing a manager fails in turn: its directory, its lock "
          "and the listing") {
    const manager_directory d("manager-calls");
    // The calls of a clean open and close, the temporary file removed. The manager reads the
    // checkpoints' headers (inspect), the first bytes of the files that do not read, and the
    // lock file's holder (scan_directory); its release empties the lock file and unlocks it.
    std::vector<call> calls;
    {
        std::ofstream(d.temp) << "a save that died";
        faulty_backend clean;
        {
            ckpt::manager_options o;
            o.backend = &clean;
            ckpt::manager m(d.dir, ckpt::every_steps(1), ckpt::keep_last(1), o);
            REQUIRE(m.list().size() == 2);
            REQUIRE(m.cleaned() == std::vector<fs::path>{d.temp});
        }
        calls = clean.calls();
    }
    const std::string lock = d.lock.string();
    const auto is = [&](const call& c, op o, const fs::path& target) {
        return c.what == o && c.target == target.string();
    };
    std::size_t lock_opens = 0;
    std::size_t lock_truncates = 0;
    std::string ops;
    for (const call& c : calls) {
        if (c.target == lock && c.what == op::open) ++lock_opens;
        if (c.target == lock && c.what == op::truncate) ++lock_truncates;
        std::string target = fs::path(c.target).filename().string();
        ops += (ops.empty() ? "" : " ") + op_name(c.what) + "(" + target + ")";
    }
    CHECK(
        ops ==
        "mkdir(unit-io-manager-calls) open(ckpt.lock) lock(ckpt.lock) truncate(ckpt.lock) "
        "pwrite(ckpt.lock) list(unit-io-manager-calls) "
        "open(ckpt-000000000001.ckpt) file_size(ckpt-000000000001.ckpt) "
        "pread(ckpt-000000000001.ckpt) pread(ckpt-000000000001.ckpt) "
        "close(ckpt-000000000001.ckpt) "
        "open(ckpt-000000000002.ckpt) file_size(ckpt-000000000002.ckpt) "
        "pread(ckpt-000000000002.ckpt) pread(ckpt-000000000002.ckpt) "
        "close(ckpt-000000000002.ckpt) "
        "open(ckpt-000000000003.ckpt) file_size(ckpt-000000000003.ckpt) "
        "pread(ckpt-000000000003.ckpt) pread(ckpt-000000000003.ckpt) "
        "close(ckpt-000000000003.ckpt) open(ckpt-000000000003.ckpt) pread(ckpt-000000000003.ckpt) "
        "close(ckpt-000000000003.ckpt) "
        "open(ckpt-000000000004.ckpt) file_size(ckpt-000000000004.ckpt) "
        "pread(ckpt-000000000004.ckpt) pread(ckpt-000000000004.ckpt) "
        "close(ckpt-000000000004.ckpt) open(ckpt-000000000004.ckpt) pread(ckpt-000000000004.ckpt) "
        "close(ckpt-000000000004.ckpt) "
        "open(ckpt.lock) pread(ckpt.lock) close(ckpt.lock) "
        "unlink(ckpt-000000000002.ckpt.tmp-99-0) "
        "truncate(ckpt.lock) unlock(ckpt.lock) close(ckpt.lock)");
    REQUIRE(lock_opens == 2);
    REQUIRE(lock_truncates == 2);

    for (const int err : {EIO, EACCES}) {
        std::size_t lock_open = 0;
        std::size_t lock_truncate = 0;
        for (std::size_t k = 0; k < calls.size(); ++k) {
            const call& c = calls[k];
            INFO("call ", k, " (", op_name(c.what), " ", c.target, ") fails with errno ", err);
            const bool first_lock_open = is(c, op::open, d.lock) && lock_open++ == 0;
            const bool first_lock_truncate = is(c, op::truncate, d.lock) && lock_truncate++ == 0;
            std::ofstream(d.temp) << "a save that died";
            const std::size_t fds = open_fds();

            faulty_backend b;
            b.fail_call(k, err);
            ckpt::manager_options o;
            o.backend = &b;
            std::vector<fs::path> listed;
            std::vector<ckpt::skipped_checkpoint> skipped;
            std::vector<fs::path> foreign;
            std::vector<fs::path> cleaned;
            const auto e = io_error_of([&] {
                ckpt::manager m(d.dir, ckpt::every_steps(1), ckpt::keep_last(1), o);
                for (const auto& entry : m.list()) listed.push_back(entry.path);
                skipped = m.skipped();
                foreign = m.foreign();
                cleaned = m.cleaned();
            });
            REQUIRE(b.calls().size() > k);
            CHECK(b.calls()[k].what == c.what);
            CHECK(b.calls()[k].err == err);

            // What the failure must do: an io_error naming the call, or nothing but its own
            // consequence (a file that does not read is skipped, a temporary file stays).
            int id = 0;
            std::string operation;
            std::string path;
            std::vector<fs::path> want_listed = {d.path(1), d.path(2)};
            std::vector<fs::path> want_foreign = {d.path(4)};
            std::vector<int> want_skipped_ids = {ckpt::errc::corrupt_truncated_header};
            std::vector<fs::path> want_skipped = {d.path(3)};
            std::vector<fs::path> want_cleaned = {d.temp};
            if (c.what == op::mkdir) {
                id = ckpt::errc::io_open, operation = "create directory", path = d.dir.string();
            } else if (first_lock_open) {
                id = ckpt::errc::io_open, operation = "create lock file", path = lock;
            } else if (is(c, op::open, d.lock)) {
                id = ckpt::errc::io_open, operation = "open lock file", path = lock;
            } else if (is(c, op::lock, d.lock)) {
                id = ckpt::errc::io_open, operation = "lock", path = lock;
            } else if (first_lock_truncate || is(c, op::pwrite, d.lock)) {
                id = ckpt::errc::io_write, operation = "write lock file", path = lock;
            } else if (is(c, op::pread, d.lock)) {
                id = ckpt::errc::io_read, operation = "read lock file", path = lock;
            } else if (c.what == op::list) {
                id = ckpt::errc::io_read, operation = "list directory", path = d.dir.string();
            } else if (c.what == op::unlink) {
                want_cleaned.clear(); // left for the next start
            } else if (c.what != op::close &&
                       (c.target == d.path(1).string() || c.target == d.path(2).string() ||
                        c.target == d.path(3).string() || c.target == d.path(4).string())) {
                // Reading a file: its header (inspect: open file_size pread...), then, when that
                // fails, its first bytes (open pread), to tell ckpt's from a foreign file.
                const fs::path p = c.target;
                const auto opens =
                    std::count_if(calls.begin(), calls.begin() + static_cast<std::ptrdiff_t>(k),
                                  [&](const call& x) { return is(x, op::open, p); });
                const bool header = opens + (c.what == op::open ? 1 : 0) == 1;
                const int io_id = c.what == op::open        ? ckpt::errc::io_open
                                  : c.what == op::file_size ? ckpt::errc::io_stat
                                                            : ckpt::errc::io_read;
                if (p == d.path(1) || p == d.path(2)) {
                    // A checkpoint whose header does not read now: damaged, never deleted.
                    std::erase(want_listed, p);
                    want_skipped.insert(want_skipped.begin(), p);
                    want_skipped_ids.insert(want_skipped_ids.begin(), io_id);
                } else if (p == d.path(3) && header) {
                    want_skipped_ids = {io_id}; // damaged still: it starts like ckpt's files
                } else if (p == d.path(4) && !header) {
                    // A file whose first bytes do not read is not known to be foreign: it is
                    // skipped with the error of its header (8 bytes of text as a length).
                    want_foreign.clear();
                    want_skipped.push_back(p);
                    want_skipped_ids.push_back(ckpt::errc::limit_header);
                }
            }
            if (id != 0) {
                REQUIRE(e.has_value());
                CHECK(e->id() == id);
                CHECK(e->operation() == operation);
                CHECK(e->path() == path);
                CHECK(e->code().value() == err);
            } else {
                CHECK_FALSE(e.has_value());
                CHECK(listed == want_listed);
                CHECK(foreign == want_foreign);
                std::vector<fs::path> skipped_paths;
                std::vector<int> skipped_ids;
                for (const auto& s : skipped) {
                    skipped_paths.push_back(s.path);
                    skipped_ids.push_back(s.error_id);
                }
                CHECK(skipped_paths == want_skipped);
                CHECK(skipped_ids == want_skipped_ids);
                CHECK(cleaned == want_cleaned);
            }
            // Whatever failed: nothing of the directory is lost, no descriptor leaks, and no
            // lock is left behind (a failed release still closed the descriptor).
            CHECK(fs::exists(d.path(1)));
            CHECK(file_bytes(d.path(1)) == d.checkpoint_1);
            CHECK(fs::exists(d.path(2)));
            CHECK(fs::file_size(d.path(3)) == 100);
            CHECK(fs::exists(d.path(4)));
            CHECK(open_fds() == fds);
            CHECK(lock_free(d.dir));
        }
    }
}
