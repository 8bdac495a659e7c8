// bench/suite: ckpt against the limits of the machine and against what a user would otherwise
// write, on a training state of 1, 64 and 256 MiB (1 GiB with --big).
//
// The state is what a training run checkpoints: a model (an embedding and a projection matrix,
// and 64 to 512 small Linear layers holding about 10% of the parameters), Adam's exp_avg and
// exp_avg_sq shaped like every parameter, an mt19937_64 and a few scalars; float32, so the
// bytes are 3 x 4 x the parameter count. The torch peer (bench/torch_peer.py) builds the same
// tensors as an nn.Module and a torch.optim.Adam after one step.
//
// Each figure is min / median / max over --runs runs. In every run each operation is timed
// once, in an order that rotates from run to run, and the main baselines run right before or
// right after (alternately) the ckpt operation they are compared with, so drift hits both
// alike; a ratio is taken between two operations of the *same* run, then summarised.
//   baselines  memcpy of the tensor bytes into a pre-faulted buffer; open/write/fsync/close of
//              the checkpoint's byte count from one buffer; a pread loop of the checkpoint into
//              a pre-faulted buffer (warm page cache); XXH3_64bits over those bytes, as xxHash
//              builds it for this target; pread + XXH3_64bits (a verified read).
//   ckpt       save (vs write+fsync); load into a pre-shaped state, warm cache (vs pread, and
//              vs pread + XXH3: ckpt verifies the checksum before it decodes); inspect, header
//              only (absolute); inspect with verify (vs pread + XXH3); async_saver: the stall
//              of save() (vs memcpy) and the background time from save() returning to wait()
//              returning (vs write+fsync), in the steady state after a first (cold) save,
//              whose figures are printed once.
//   peers      cereal's BinaryOutputArchive/BinaryInputArchive through std::ofstream/ifstream,
//              Eigen matrices hand-written as rows, cols, binary_data, the file fsynced after;
//              torch.save (then fsync) and torch.load of {"model", "optimizer"} state dicts
//              holding as many float32 parameters, interleaved with the C++ runs through a
//              server process (skipped, with a note, when the Python has no torch).
// A "time / baseline" ratio below 1 is faster than the baseline. Peak RSS of each operation
// is measured in a fresh process (a fork, or the Python process) whose VmHWM is reset just
// before it; "peak - state" includes that process's own baseline (a few MiB for C++, the
// interpreter and torch for Python), "peak - before" is what the operation itself added.
// The targets of issue 6 are printed with PASS/MISS marks; they are informational: the program
// exits 0 unless it cannot run at all. It is built by default and never run by the tests.
// bench/README.md explains every column.
//
// Usage: bench-suite [--runs N] [--sizes 1,64,256 | --big] [--in-flight N] [--dir PATH]
//                    [--python PATH] [--torch-peer PATH] [--no-torch] [--no-rss]
//                    [--json FILE] [--markdown]

#include "bench_stats.hpp"

#include <ckpt/ckpt.hpp>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL // header-only, as ckpt uses it (after ckpt: its choices come first)
#endif
#include <xxhash.h>

#include <Eigen/Core>
#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>
#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT: POSIX, for posix_spawnp

#ifndef CKPT_BENCH_TORCH_PEER
#define CKPT_BENCH_TORCH_PEER "bench/torch_peer.py"
#endif
#ifndef CKPT_BENCH_WORK_DIR
#define CKPT_BENCH_WORK_DIR "."
#endif

namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;

constexpr double mib = 1024.0 * 1024.0;
constexpr std::uint64_t seed = 0x9e3779b97f4a7c15ULL;

// ---------------------------------------------------------------------------------------------
// The state: {model, optimizer} as a training run holds it

struct linear_layer {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
};

struct model_params {
    Eigen::MatrixXf embedding;
    std::vector<linear_layer> layers;
    Eigen::MatrixXf projection;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(embedding), CEREAL_NVP(layers), CEREAL_NVP(projection));
    }
};

struct adam_state {
    std::int64_t step = 0;
    double lr = 3e-4;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    model_params exp_avg;
    model_params exp_avg_sq;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(step), CEREAL_NVP(lr), CEREAL_NVP(beta1), CEREAL_NVP(beta2), CEREAL_NVP(eps),
           CEREAL_NVP(exp_avg), CEREAL_NVP(exp_avg_sq));
    }
};

struct train_state {
    model_params model;
    adam_state optimizer;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    float loss = 0.0f;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(optimizer), CEREAL_NVP(rng), CEREAL_NVP(step),
           CEREAL_NVP(loss));
    }
};

/// The shapes of a state of about `target_mib` MiB (torch_peer.py takes the same four numbers).
struct state_shape {
    Eigen::Index rows = 1; ///< embedding and projection: rows x cols
    Eigen::Index cols = 512;
    std::size_t layers = 64; ///< small layers: weight dim x dim, bias dim
    Eigen::Index dim = 1;
};

state_shape shape_for(std::uint64_t target_mib) {
    const double params_bytes = static_cast<double>(target_mib) * mib / 3.0; // model, m, v
    state_shape s;
    s.layers = static_cast<std::size_t>(std::clamp<std::uint64_t>(2 * target_mib, 64, 512));
    const double per_layer = 0.1 * params_bytes / static_cast<double>(s.layers);
    s.dim = std::max<Eigen::Index>(1, static_cast<Eigen::Index>(std::sqrt(per_layer / 4.0)));
    const double small_bytes =
        static_cast<double>(s.layers) * 4.0 * static_cast<double>(s.dim * s.dim + s.dim);
    const double per_big = std::max(0.0, params_bytes - small_bytes) / 2.0;
    s.rows = std::max<Eigen::Index>(
        1, static_cast<Eigen::Index>(per_big / (4.0 * static_cast<double>(s.cols))));
    return s;
}

/// Calls f(tensor) for every tensor of the model, in order.
template <class Model, class F>
void for_each_tensor(Model& m, F&& f) {
    f(m.embedding);
    for (auto& l : m.layers) {
        f(l.weight);
        f(l.bias);
    }
    f(m.projection);
}

/// Calls f(tensor) for every tensor of the state: model, exp_avg, exp_avg_sq.
template <class State, class F>
void for_each_state_tensor(State& st, F&& f) {
    for_each_tensor(st.model, f);
    for_each_tensor(st.optimizer.exp_avg, f);
    for_each_tensor(st.optimizer.exp_avg_sq, f);
}

/// Fills with incompressible values (xorshift64), fast enough for 1 GiB.
void fill(float* p, Eigen::Index n, std::uint64_t& s) {
    for (Eigen::Index i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = static_cast<float>(static_cast<std::int32_t>(s >> 32)) * 0x1p-31f;
    }
}

/// A state of the given shape: random values when `with_values`, zeros (every page touched)
/// otherwise, as a resuming run has before it loads.
train_state make_state(const state_shape& s, bool with_values) {
    train_state st;
    const auto shape_model = [&](model_params& m) {
        m.embedding.resize(s.rows, s.cols);
        m.projection.resize(s.rows, s.cols);
        m.layers.resize(s.layers);
        for (linear_layer& l : m.layers) {
            l.weight.resize(s.dim, s.dim);
            l.bias.resize(s.dim);
        }
    };
    shape_model(st.model);
    shape_model(st.optimizer.exp_avg);
    shape_model(st.optimizer.exp_avg_sq);
    std::uint64_t x = seed;
    for_each_state_tensor(st, [&](auto& t) {
        if (with_values)
            fill(t.data(), t.size(), x);
        else
            t.setZero();
    });
    if (with_values) {
        st.optimizer.step = 4242;
        st.rng.seed(seed);
        st.rng.discard(1000);
        st.step = 4242;
        st.loss = 1.25f;
    } else {
        st.optimizer.lr = st.optimizer.beta1 = st.optimizer.beta2 = st.optimizer.eps = 0.0;
    }
    return st;
}

std::uint64_t param_count(const train_state& st) {
    std::uint64_t n = 0;
    for_each_tensor(st.model, [&](const auto& t) { n += static_cast<std::uint64_t>(t.size()); });
    return n;
}

std::uint64_t tensor_bytes(const train_state& st) {
    std::uint64_t n = 0;
    for_each_state_tensor(
        st, [&](const auto& t) { n += static_cast<std::uint64_t>(t.size()) * sizeof(float); });
    return n;
}

std::size_t tensor_count(const train_state& st) {
    return 3 * (2 + 2 * st.model.layers.size());
}

bool same_model(const model_params& a, const model_params& b) {
    if (a.embedding != b.embedding || a.projection != b.projection ||
        a.layers.size() != b.layers.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        if (a.layers[i].weight != b.layers[i].weight || a.layers[i].bias != b.layers[i].bias)
            return false;
    }
    return true;
}

bool same_state(const train_state& a, const train_state& b) {
    const adam_state& x = a.optimizer;
    const adam_state& y = b.optimizer;
    return same_model(a.model, b.model) && same_model(x.exp_avg, y.exp_avg) &&
           same_model(x.exp_avg_sq, y.exp_avg_sq) && x.step == y.step && x.lr == y.lr &&
           x.beta1 == y.beta1 && x.beta2 == y.beta2 && x.eps == y.eps && a.rng == b.rng &&
           a.step == b.step && a.loss == b.loss;
}

} // namespace

// The cereal peer: what a user of plain cereal writes for Eigen (cereal has no Eigen support),
// for its binary archives only, so ckpt's own archives keep theirs.
namespace cereal {

template <class S, int R, int C, int O, int MR, int MC>
void save(BinaryOutputArchive& ar, const Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    const Eigen::Index rows = m.rows();
    const Eigen::Index cols = m.cols();
    ar(rows, cols);
    ar(binary_data(m.data(), static_cast<std::size_t>(m.size()) * sizeof(S)));
}

template <class S, int R, int C, int O, int MR, int MC>
void load(BinaryInputArchive& ar, Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    Eigen::Index rows = 0;
    Eigen::Index cols = 0;
    ar(rows, cols);
    if (rows != m.rows() || cols != m.cols()) m.resize(rows, cols);
    ar(binary_data(m.data(), static_cast<std::size_t>(m.size()) * sizeof(S)));
}

} // namespace cereal

namespace {

// ---------------------------------------------------------------------------------------------
// Files, cleanup, failure

/// Every file this program creates in the work directory, by name; a save that is cut short
/// leaves "<name>.tmp-<pid>-<n>" beside it. Whatever starts with one of these names is removed
/// at the end, and by the SIGINT/SIGTERM handler, which makes system calls only.
constexpr std::array<const char*, 9> work_files = {
    "state.ckpt",     "async.ckpt",     "raw.bin",      "cereal.bin",    "torch.pt",
    "rss-state.ckpt", "rss-cereal.bin", "rss-torch.pt", "torch_peer.log"};

struct cleanup_paths {
    std::array<char, 4096> dir{};
    bool own_dir = false; ///< this program created the directory: remove it too
    ::pid_t owner = 0;
};
cleanup_paths g_cleanup;

bool is_work_file(const char* name) noexcept {
    for (const char* w : work_files) {
        const std::size_t n = std::strlen(w);
        if (std::strncmp(name, w, n) == 0 && (name[n] == '\0' || name[n] == '.')) return true;
    }
    return false;
}

/// Async-signal-safe: open, getdents64, unlinkat, close, rmdir.
void remove_work_files() noexcept {
    if (g_cleanup.dir[0] == '\0' || ::getpid() != g_cleanup.owner) return; // not in a fork
    const int fd = ::open(g_cleanup.dir.data(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        alignas(8) char buf[8192];
        for (;;) {
            const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
                unsigned short reclen = 0;
                std::memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char* name = buf + off + 19;
                if (is_work_file(name)) ::unlinkat(fd, name, 0);
                off += reclen;
            }
        }
        ::close(fd);
    }
    if (g_cleanup.own_dir) ::rmdir(g_cleanup.dir.data());
}

extern "C" void on_signal(int sig) {
    remove_work_files();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench-suite: %s\n", what.c_str());
    remove_work_files();
    std::exit(2);
}
[[noreturn]] void die_errno(const std::string& what, const std::string& path) {
    die(what + " '" + path + "': " + std::strerror(errno));
}

double seconds_since(bench_clock::time_point t0) {
    return std::chrono::duration<double>(bench_clock::now() - t0).count();
}

void progress(const char* format, ...) __attribute__((format(printf, 1, 2)));
void progress(const char* format, ...) {
    std::fprintf(stderr, "[bench-suite] ");
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fprintf(stderr, "\n");
}

// ---------------------------------------------------------------------------------------------
// Baselines

/// Which pages a baseline buffer gets. Page size changes copy speed by a third here (TLB), so
/// each baseline writes to memory of the kind its ckpt counterpart writes to.
enum class pages {
    plain, ///< like a state's Eigen buffers: malloc'd, 4 KiB pages (THP only if "always")
    huge   ///< like async_saver's staging buffers: madvise(MADV_HUGEPAGE)
};

/// Anonymous memory touched page by page before use, so no timed copy pays a page fault.
class prefaulted {
public:
    prefaulted(std::size_t n, pages kind) : size_(std::max<std::size_t>(n, 1)) {
        void* p =
            ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("mmap of " + std::to_string(size_) + " bytes failed");
#ifdef MADV_HUGEPAGE
        if (kind == pages::huge) ::madvise(p, size_, MADV_HUGEPAGE);
#else
        (void)kind;
#endif
        data_ = static_cast<std::byte*>(p);
        std::memset(data_, 0, size_);
#if defined(__linux__)
        // Whether a fault gets a huge page depends on fragmentation at that moment; collapse
        // what did not (Linux >= 6.1; an error is ignored), so the baseline is the best case.
        constexpr int madv_collapse = 25; // MADV_COLLAPSE, missing from older libc headers
        if (kind == pages::huge) ::madvise(p, size_, madv_collapse);
#endif
    }
    prefaulted(const prefaulted&) = delete;
    prefaulted& operator=(const prefaulted&) = delete;
    ~prefaulted() {
        ::munmap(data_, size_);
    }
    [[nodiscard]] std::byte* data() const noexcept {
        return data_;
    }

private:
    std::size_t size_;
    std::byte* data_ = nullptr;
};

/// Untimed, before each timed write: removes the file the write will replace and syncs the file
/// system, so that every writer starts on an idle disk and pays for its own work only. On a file
/// system mounted with `discard` (ext4 here), freeing a file's blocks sends a discard to the
/// device at the next journal commit, which the next fsync, whoever makes it, would wait for.
void fresh_target(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) die_errno("unlink", path);
    const std::string dir = fs::path(path).parent_path().string();
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die_errno("open", dir);
    if (::syncfs(fd) != 0) die_errno("syncfs", dir);
    ::close(fd);
}

/// open(O_CREAT|O_TRUNC|O_WRONLY), one write loop from one buffer, fsync, close.
double raw_write(const std::string& path, const std::byte* p, std::size_t n) {
    const auto t0 = bench_clock::now();
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) die_errno("open", path);
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die_errno("write", path);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0) die_errno("fsync", path);
    if (::close(fd) != 0) die_errno("close", path);
    return seconds_since(t0);
}

/// open, pread loop of `n` bytes into a preallocated buffer, close.
double raw_read(const std::string& path, std::byte* p, std::size_t n) {
    const auto t0 = bench_clock::now();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die_errno("open", path);
    ::off_t offset = 0;
    while (n > 0) {
        const ::ssize_t r = ::pread(fd, p, n, offset);
        if (r < 0) {
            if (errno == EINTR) continue;
            die_errno("pread", path);
        }
        if (r == 0) die("pread '" + path + "': unexpected end of file");
        p += r;
        offset += r;
        n -= static_cast<std::size_t>(r);
    }
    ::close(fd);
    return seconds_since(t0);
}

/// Opens a written file and fsyncs it, as a careful user of a stream library does.
void fsync_path(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die_errno("open", path);
    if (::fsync(fd) != 0) die_errno("fsync", path);
    ::close(fd);
}

volatile std::uint64_t g_sink = 0; // keeps hashes from being optimised away

/// memcpy of every tensor of the state, back to back, into `out`.
double copy_state(const train_state& st, std::byte* out) {
    const auto t0 = bench_clock::now();
    for_each_state_tensor(st, [&](const auto& t) {
        const std::size_t n = static_cast<std::size_t>(t.size()) * sizeof(float);
        std::memcpy(out, t.data(), n);
        out += n;
    });
    return seconds_since(t0);
}

double hash_bytes(const std::byte* p, std::size_t n) {
    const auto t0 = bench_clock::now();
    g_sink = g_sink + XXH3_64bits(p, n);
    return seconds_since(t0);
}

// ---------------------------------------------------------------------------------------------
// ckpt and cereal, timed

double cereal_save(const std::string& path, const train_state& st) {
    const auto t0 = bench_clock::now();
    {
        std::ofstream os(path, std::ios::binary | std::ios::trunc);
        if (!os) die_errno("open", path);
        cereal::BinaryOutputArchive ar(os);
        ar(st);
        os.close();
        if (!os) die("cereal: writing '" + path + "' failed");
    }
    fsync_path(path);
    return seconds_since(t0);
}

double cereal_load(const std::string& path, train_state& st) {
    const auto t0 = bench_clock::now();
    std::ifstream is(path, std::ios::binary);
    if (!is) die_errno("open", path);
    cereal::BinaryInputArchive ar(is);
    ar(st);
    return seconds_since(t0);
}

// ---------------------------------------------------------------------------------------------
// Peak RSS, in a fresh process per measurement

/// A field of /proc/self/status in MiB (kB in the file), or -1.
double status_mib(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t len = std::strlen(field);
    while (std::getline(in, line)) {
        if (line.compare(0, len, field) == 0 && line.size() > len && line[len] == ':') {
            return std::strtod(line.c_str() + len + 1, nullptr) / 1024.0;
        }
    }
    return -1.0;
}

/// Resets VmHWM to VmRSS (Linux >= 4.0). @returns whether the write was accepted
bool reset_hwm() {
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, "5", 1) == 1;
    ::close(fd);
    return ok;
}

/// Whether resetting VmHWM works here: raise it by 64 MiB, reset, and see it drop.
bool hwm_reset_works() {
    constexpr std::size_t probe = std::size_t{64} << 20;
    void* p = ::mmap(nullptr, probe, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    std::memset(p, 1, probe);
    ::munmap(p, probe);
    const double before = status_mib("VmHWM");
    if (!reset_hwm()) return false;
    const double after = status_mib("VmHWM");
    return before > 0 && after > 0 && after + 32.0 < before;
}

struct rss_result {
    int ok = 0;
    int reset_works = 0;
    double state_mib = 0;      ///< tensor bytes of the state
    double rss_before_mib = 0; ///< VmRSS just before the operation, state built
    double peak_mib = 0;       ///< VmHWM after it (since the reset, or absolute)
    char error[256] = {};
};

/// Runs `body` in a forked child and returns what it measured. Call it while this process is
/// small: the child inherits (and counts) the parent's resident pages.
template <class Body>
rss_result in_child(Body body) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe: " + std::string(std::strerror(errno)));
    std::fflush(stdout);
    std::fflush(stderr);
    const ::pid_t pid = ::fork();
    if (pid < 0) die("fork: " + std::string(std::strerror(errno)));
    if (pid == 0) {
        ::close(fds[0]);
        rss_result r;
        try {
            r = body();
            r.ok = 1;
        } catch (const std::exception& e) {
            std::snprintf(r.error, sizeof r.error, "%s", e.what());
        }
        const ::ssize_t w = ::write(fds[1], &r, sizeof r);
        ::_exit(w == static_cast<::ssize_t>(sizeof r) ? 0 : 1);
    }
    ::close(fds[1]);
    rss_result r;
    std::size_t got = 0;
    auto* out = reinterpret_cast<char*>(&r);
    while (got < sizeof r) {
        const ::ssize_t n = ::read(fds[0], out + got, sizeof r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (got != sizeof r) {
        r = rss_result{};
        std::snprintf(r.error, sizeof r.error, "the child died (status %d)", status);
    }
    return r;
}

/// The peak of one operation on a state of `shape`: the child builds the state (with values,
/// or zeros for a load), resets VmHWM, runs `op`, and reads VmHWM.
template <class Op>
rss_result measure_peak(const state_shape& shape, bool with_values, Op op) {
    return in_child([&]() {
        rss_result r;
        r.reset_works = hwm_reset_works() ? 1 : 0;
        train_state st = make_state(shape, with_values);
        r.state_mib = static_cast<double>(tensor_bytes(st)) / mib;
        if (r.reset_works != 0) reset_hwm();
        r.rss_before_mib = status_mib("VmRSS");
        op(st);
        r.peak_mib = status_mib("VmHWM");
        return r;
    });
}

// ---------------------------------------------------------------------------------------------
// The torch peer: bench/torch_peer.py in a child process, one JSON object per line

double number(const rapidjson::Value& v, const char* key, double fallback = -1.0) {
    if (!v.IsObject() || !v.HasMember(key) || !v[key].IsNumber()) return fallback;
    return v[key].GetDouble();
}
std::string text(const rapidjson::Value& v, const char* key) {
    if (!v.IsObject() || !v.HasMember(key) || !v[key].IsString()) return {};
    return v[key].GetString();
}

class python_process {
public:
    /// Starts `argv` (argv[0] looked up in PATH) with its stdout on a pipe, its stderr appended
    /// to `log`, and its stdin on a pipe when `interactive`.
    python_process(const std::vector<std::string>& argv, const std::string& log, bool interactive) {
        int out[2] = {-1, -1};
        int in[2] = {-1, -1};
        if (::pipe2(out, O_CLOEXEC) != 0) die("pipe: " + std::string(std::strerror(errno)));
        if (interactive && ::pipe2(in, O_CLOEXEC) != 0)
            die("pipe: " + std::string(std::strerror(errno)));
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (interactive)
            posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        else
            posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        std::vector<char*> args;
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        const int e = ::posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(out[1]);
        if (interactive) ::close(in[0]);
        if (e != 0) {
            pid_ = -1;
            error_ = "cannot run " + argv[0] + ": " + std::strerror(e);
            ::close(out[0]);
            if (interactive) ::close(in[1]);
            return;
        }
        out_ = ::fdopen(out[0], "r");
        in_ = interactive ? in[1] : -1;
    }
    python_process(const python_process&) = delete;
    python_process& operator=(const python_process&) = delete;
    ~python_process() { finish(); }

    /// The next line of output as JSON; an object with "error" when there is none.
    rapidjson::Document read() {
        rapidjson::Document d;
        std::string line;
        if (out_ != nullptr) {
            char* buf = nullptr;
            std::size_t cap = 0;
            const ::ssize_t n = ::getline(&buf, &cap, out_);
            if (n > 0) line.assign(buf, static_cast<std::size_t>(n));
            std::free(buf);
        }
        if (!line.empty()) d.Parse(line.c_str());
        if (line.empty() || d.HasParseError() || !d.IsObject()) {
            const std::string why = !error_.empty() ? error_
                                    : line.empty()
                                        ? "the script ended without an answer"
                                        : "the script answered something that is not JSON: " + line;
            d.SetObject();
            d.AddMember("error", rapidjson::Value(why.c_str(), d.GetAllocator()), d.GetAllocator());
        }
        return d;
    }

    /// Sends one command line. @returns false when the script is gone
    bool send(const std::string& command) {
        if (in_ < 0) return false;
        const std::string line = command + "\n";
        return ::write(in_, line.data(), line.size()) == static_cast<::ssize_t>(line.size());
    }

    /// Closes its stdin and waits for it. @returns its exit status, or -1
    int finish() {
        if (in_ >= 0) ::close(std::exchange(in_, -1));
        if (out_ != nullptr) std::fclose(std::exchange(out_, nullptr));
        if (pid_ <= 0) return -1;
        int status = 0;
        while (::waitpid(std::exchange(pid_, -1), &status, 0) < 0 && errno == EINTR) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    ::pid_t pid_ = -1;
    std::FILE* out_ = nullptr;
    int in_ = -1;
    std::string error_;
};

struct torch_config {
    bool enabled = true;
    std::string python = "/usr/bin/python3";
    std::string script = CKPT_BENCH_TORCH_PEER;
    std::string log;
};

std::vector<std::string> torch_argv(const torch_config& tc, const state_shape& s,
                                    const std::string& file) {
    return {tc.python,  tc.script,
            "--rows",   std::to_string(s.rows),
            "--cols",   std::to_string(s.cols),
            "--layers", std::to_string(s.layers),
            "--dim",    std::to_string(s.dim),
            "--file",   file};
}

/// What the torch side said about itself.
struct torch_info {
    std::string error; ///< empty when torch runs
    std::string version;
    std::string python;
    int threads = 0;
    std::uint64_t params = 0;
    std::uint64_t tensors = 0;
    std::uint64_t tensor_bytes = 0;
};

torch_info torch_info_of(const rapidjson::Value& v) {
    torch_info t;
    t.error = text(v, "error");
    t.version = text(v, "torch");
    t.python = text(v, "python");
    t.threads = static_cast<int>(number(v, "threads", 0));
    t.params = static_cast<std::uint64_t>(number(v, "params", 0));
    t.tensors = static_cast<std::uint64_t>(number(v, "tensors", 0));
    t.tensor_bytes = static_cast<std::uint64_t>(number(v, "tensor_bytes", 0));
    return t;
}

/// Ends the program when the torch peer fails in the middle of the runs, with its stderr.
[[noreturn]] void torch_failed(const torch_config& tc, const std::string& what) {
    std::ifstream in(tc.log);
    std::stringstream log;
    log << in.rdbuf();
    die("torch_peer.py: " + what + "\n" + log.str());
}

/// One torch operation in a fresh Python process (--rss save|load).
rss_result torch_peak(const torch_config& tc, const state_shape& s, const std::string& file,
                      const char* op, torch_info& info) {
    std::vector<std::string> argv = torch_argv(tc, s, file);
    argv.insert(argv.end(), {"--rss", op});
    python_process p(argv, tc.log, false);
    const rapidjson::Document d = p.read();
    p.finish();
    info = torch_info_of(d);
    rss_result r;
    if (!info.error.empty()) {
        std::snprintf(r.error, sizeof r.error, "%s", info.error.c_str());
        return r;
    }
    r.ok = 1;
    r.reset_works = d.HasMember("reset_works") && d["reset_works"].IsTrue() ? 1 : 0;
    r.state_mib = static_cast<double>(info.tensor_bytes) / mib;
    r.rss_before_mib = number(d, "rss_before_mib");
    r.peak_mib = number(d, "peak_mib");
    return r;
}

// ---------------------------------------------------------------------------------------------
// Results

using bench::stats;
using bench::stats_of;

/// One timed operation: its seconds in each run, and the baseline it is compared with.
struct series {
    std::string key;         ///< for --json
    std::string label;       ///< for the table
    std::string baseline;    ///< key of the baseline, empty for a baseline or an absolute figure
    std::uint64_t bytes = 0; ///< moved per operation, for GB/s; 0: no throughput shown
    std::vector<double> seconds;
};

struct rss_row {
    std::string key;
    std::string label;
    rss_result r;
};

struct size_result {
    std::uint64_t target_mib = 0;
    state_shape shape;
    std::uint64_t params = 0;
    std::size_t tensors = 0;
    std::uint64_t state_bytes = 0;
    std::uint64_t file_bytes = 0;   ///< ckpt
    std::uint64_t cereal_bytes = 0; ///< cereal peer
    std::uint64_t torch_bytes = 0;  ///< torch peer (0: not run)
    torch_info torch;
    bool ckpt_exact = false;
    bool cereal_exact = false;
    double cold_stall = 0; ///< first async save: its staging buffers fault in
    double cold_background = 0;
    double reserve_seconds = 0; ///< async_saver::reserve on a new saver: its buffers fault in
    double reserved_stall = 0;  ///< the first save after it: only the copy
    std::vector<series> ops;
    std::vector<rss_row> rss;

    series& op(const std::string& key) {
        for (series& s : ops) {
            if (s.key == key) return s;
        }
        die("no series " + key);
    }
    const series* find(const std::string& key) const {
        for (const series& s : ops) {
            if (s.key == key) return &s;
        }
        return nullptr;
    }
    const rss_row* find_rss(const std::string& key) const {
        for (const rss_row& r : rss) {
            if (r.key == key) return &r;
        }
        return nullptr;
    }
};

/// "64 MiB", "1 GiB".
std::string size_name(std::uint64_t target_mib) {
    return target_mib % 1024 == 0 ? std::to_string(target_mib / 1024) + " GiB"
                                  : std::to_string(target_mib) + " MiB";
}

/// a[i] / b[i] for each run that has both.
std::vector<double> per_run_ratio(const series& a, const series& b) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.seconds.size() && i < b.seconds.size(); ++i) {
        if (b.seconds[i] > 0) r.push_back(a.seconds[i] / b.seconds[i]);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// The measurements

struct options {
    int runs = 7;
    std::vector<std::uint64_t> sizes{1, 64, 256};
    std::size_t in_flight = 1;
    std::string dir;
    std::string json;
    bool markdown = false;
    bool rss = true;
    torch_config torch;
};

struct work_paths {
    std::string ckpt, async, raw, cereal, torch, rss_ckpt, rss_cereal, rss_torch;
};

/// Peak RSS of every operation at one size, each in a fresh process.
void measure_rss(size_result& r, const options& opt, const work_paths& p) {
    const state_shape& shape = r.shape;
    r.rss.push_back({"save", "ckpt save", measure_peak(shape, true, [&](const train_state& st) {
                         ckpt::save(p.rss_ckpt, st);
                     })});
    r.rss.push_back({"async_save",
                     "ckpt async save (" + std::to_string(opt.in_flight) + " in flight)",
                     measure_peak(shape, true, [&](const train_state& st) {
                         ckpt::async_options o;
                         o.max_in_flight = opt.in_flight;
                         ckpt::async_saver saver(o);
                         // max_in_flight + 1 back to back: the last waits for room. Twice, so
                         // reused staging buffers show too.
                         for (int round = 0; round < 2; ++round) {
                             for (std::size_t k = 0; k <= opt.in_flight; ++k)
                                 saver.save(p.rss_ckpt, st);
                             saver.wait();
                         }
                     })});
    r.rss.push_back({"load", "ckpt load", measure_peak(shape, false, [&](train_state& st) {
                         ckpt::load(p.rss_ckpt, st);
                     })});
    r.rss.push_back(
        {"cereal_save", "cereal save",
         measure_peak(shape, true, [&](const train_state& st) { cereal_save(p.rss_cereal, st); })});
    r.rss.push_back({"cereal_load", "cereal load", measure_peak(shape, false, [&](train_state& st) {
                         cereal_load(p.rss_cereal, st);
                     })});
    fs::remove(p.rss_ckpt);
    fs::remove(p.rss_cereal);
    if (!opt.torch.enabled) return;
    torch_info info;
    const rss_result saved = torch_peak(opt.torch, shape, p.rss_torch, "save", info);
    r.torch = info;
    if (info.error.empty()) {
        r.rss.push_back({"torch_save", "torch.save", saved});
        r.rss.push_back({"torch_load", "torch.load + load_state_dict",
                         torch_peak(opt.torch, shape, p.rss_torch, "load", info)});
    }
    fs::remove(p.rss_torch);
}

/// One operation of a run: times itself and appends to its series.
using step = std::function<void()>;

/// Runs every step of `steps` once, starting at a place that rotates with the run and going
/// backwards on odd runs, so that no operation always follows the same one.
void run_rotated(std::vector<step>& steps, int run) {
    const std::size_t n = steps.size();
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t start = static_cast<std::size_t>(run) % n;
        const std::size_t i = run % 2 == 0 ? (start + k) % n : (start + n - k) % n;
        steps[i]();
    }
}

void measure_times(size_result& r, const options& opt, const work_paths& p) {
    const state_shape& shape = r.shape;
    const train_state state = make_state(shape, true);
    train_state loaded = make_state(shape, false);
    train_state cereal_loaded = make_state(shape, false);
    r.params = param_count(state);
    r.tensors = tensor_count(state);
    r.state_bytes = tensor_bytes(state);

    // Warm-up: one save gives the byte count; the baselines move those very bytes.
    r.file_bytes = ckpt::save(p.ckpt, state);
    const auto n = static_cast<std::size_t>(r.file_bytes);
    // The file's bytes: written by the write baseline, read into by pread (as load fills the
    // state's memory), hashed by XXH3. The copy: memcpy's target, like a staging buffer.
    const prefaulted buffer(n, pages::plain);
    const prefaulted copy(static_cast<std::size_t>(r.state_bytes), pages::huge);
    raw_read(p.ckpt, buffer.data(), n);
    raw_write(p.raw, buffer.data(), n);
    copy_state(state, copy.data());
    cereal_save(p.cereal, state);
    r.cereal_bytes = static_cast<std::uint64_t>(fs::file_size(p.cereal));
    ckpt::load(p.ckpt, loaded);
    cereal_load(p.cereal, cereal_loaded);

    ckpt::async_options aopt;
    aopt.max_in_flight = opt.in_flight;
    ckpt::async_saver saver(aopt);
    {
        const auto t0 = bench_clock::now();
        saver.save(p.async, state);
        r.cold_stall = seconds_since(t0);
        const auto t1 = bench_clock::now();
        saver.wait();
        r.cold_background = seconds_since(t1);
    }
    {
        ckpt::async_saver reserved(aopt);
        const auto t0 = bench_clock::now();
        reserved.reserve(state);
        r.reserve_seconds = seconds_since(t0);
        const auto t1 = bench_clock::now();
        reserved.save(p.async, state);
        r.reserved_stall = seconds_since(t1);
        reserved.wait();
    }

    std::optional<python_process> torch;
    if (opt.torch.enabled) {
        std::vector<std::string> argv = torch_argv(opt.torch, shape, p.torch);
        argv.push_back("--serve");
        torch.emplace(argv, opt.torch.log, true);
        r.torch = torch_info_of(torch->read());
        if (r.torch.error.empty()) { // warm-up save and load
            torch->send("save");
            const rapidjson::Document s = torch->read();
            torch->send("load");
            const rapidjson::Document l = torch->read();
            if (s.HasMember("error") || l.HasMember("error"))
                r.torch.error = text(s, "error") + text(l, "error");
            r.torch_bytes = static_cast<std::uint64_t>(number(s, "file_bytes", 0));
        }
        if (!r.torch.error.empty()) torch.reset();
    }

    const std::uint64_t fb = r.file_bytes;
    r.ops = {
        {"memcpy", "memcpy", "", r.state_bytes, {}},
        {"write", "write+fsync", "", fb, {}},
        {"pread", "pread (warm)", "", fb, {}},
        {"xxh3", "XXH3_64bits", "", fb, {}},
        {"pread_xxh3", "pread + XXH3_64bits", "", fb, {}},
        {"save", "ckpt save", "write", fb, {}},
        {"async_stall", "ckpt async save: stall", "memcpy", r.state_bytes, {}},
        {"async_background", "ckpt async save: background", "write", fb, {}},
        {"load", "ckpt load (warm)", "pread", fb, {}},
        {"load_verified", "ckpt load (warm)", "pread_xxh3", fb, {}}, // the same runs
        {"inspect", "ckpt inspect (header only)", "", 0, {}},
        {"inspect_verify", "ckpt inspect, verify", "pread_xxh3", fb, {}},
        {"cereal_save", "cereal save + fsync", "write", r.cereal_bytes, {}},
        {"cereal_load", "cereal load (warm)", "pread", r.cereal_bytes, {}},
    };
    if (torch) {
        r.ops.push_back({"torch_save", "torch.save + fsync", "write", r.torch_bytes, {}});
        r.ops.push_back({"torch_load", "torch.load (warm)", "pread", r.torch_bytes, {}});
        r.ops.push_back(
            {"torch_restore", "torch.load + load_state_dict", "pread", r.torch_bytes, {}});
    }
    const auto add = [&](const char* key, double s) { r.op(key).seconds.push_back(s); };

    // The timed operations. A baseline and its ckpt counterpart run back to back, in an order
    // that alternates from run to run (`pair`), so that both see the same state of the machine.
    const auto write = [&] {
        fresh_target(p.raw);
        add("write", raw_write(p.raw, buffer.data(), n));
    };
    const auto save = [&] {
        fresh_target(p.ckpt);
        const auto t0 = bench_clock::now();
        ckpt::save(p.ckpt, state);
        add("save", seconds_since(t0));
    };
    const auto memcpy_state = [&] { add("memcpy", copy_state(state, copy.data())); };
    const auto async_save = [&] { // memcpy before it, or after wait(): the worker is idle then
        fresh_target(p.async);
        const auto t0 = bench_clock::now();
        const ckpt::async_ticket ticket = saver.save(p.async, state);
        add("async_stall", seconds_since(t0));
        if (!ticket) die("async save not staged: " + ticket.skipped);
        const auto t1 = bench_clock::now();
        saver.wait();
        add("async_background", seconds_since(t1));
    };
    const auto pread = [&] { add("pread", raw_read(p.ckpt, buffer.data(), n)); };
    const auto load = [&] {
        const auto t0 = bench_clock::now();
        ckpt::load(p.ckpt, loaded);
        add("load", seconds_since(t0));
    };
    const auto pread_xxh3 = [&] {
        const double t = raw_read(p.ckpt, buffer.data(), n);
        add("pread_xxh3", t + hash_bytes(buffer.data(), n));
    };
    const auto inspect_verify = [&] {
        ckpt::inspect_options o;
        o.verify = true;
        const auto t0 = bench_clock::now();
        const ckpt::info i = ckpt::inspect(p.ckpt, o);
        add("inspect_verify", seconds_since(t0));
        if (!i.checksum_verified) die("inspect: checksum not verified");
    };
    int run = 0;
    const auto pair = [&run](step a, step b) -> step {
        return [&run, a = std::move(a), b = std::move(b)] {
            (run % 2 == 0 ? a : b)();
            (run % 2 == 0 ? b : a)();
        };
    };

    // Writers first in each run, each on a fresh target and an idle disk (fresh_target), then
    // readers, which find the files just written in the page cache.
    std::vector<step> writers = {
        pair(write, save),
        pair(memcpy_state, async_save),
        [&] {
            fresh_target(p.cereal);
            add("cereal_save", cereal_save(p.cereal, state));
        },
    };
    std::vector<step> readers = {
        pair(pread, load),
        pair(pread_xxh3, inspect_verify),
        [&] { add("xxh3", hash_bytes(buffer.data(), n)); },
        [&] {
            const auto t0 = bench_clock::now();
            const ckpt::info i = ckpt::inspect(p.ckpt);
            add("inspect", seconds_since(t0));
            if (i.tensors.size() != r.tensors) die("inspect: wrong tensor count");
        },
        [&] { add("cereal_load", cereal_load(p.cereal, cereal_loaded)); },
    };
    if (torch) {
        writers.push_back([&] { // the script makes its own fresh_target
            torch->send("save");
            const rapidjson::Document d = torch->read();
            if (d.HasMember("error")) torch_failed(opt.torch, text(d, "error"));
            add("torch_save", number(d, "save"));
        });
        readers.push_back([&] {
            torch->send("load");
            const rapidjson::Document d = torch->read();
            if (d.HasMember("error")) torch_failed(opt.torch, text(d, "error"));
            add("torch_load", number(d, "load"));
            add("torch_restore", number(d, "load") + number(d, "restore"));
        });
    }

    for (run = 0; run < opt.runs; ++run) {
        progress("%s: run %d of %d", size_name(r.target_mib).c_str(), run + 1, opt.runs);
        run_rotated(writers, run);
        run_rotated(readers, run);
    }

    r.op("load_verified").seconds = r.op("load").seconds;
    r.ckpt_exact = same_state(state, loaded);
    r.cereal_exact = same_state(state, cereal_loaded);
    if (torch) {
        torch->send("quit");
        torch->finish();
    }
    saver.wait();
    for (const std::string* f : {&p.ckpt, &p.async, &p.raw, &p.cereal, &p.torch}) fs::remove(*f);
}

// ---------------------------------------------------------------------------------------------
// Targets (issue 6)

struct verdict {
    bool measured = false;
    bool pass = false;
    std::string value; ///< the achieved figure, as printed
};

struct target {
    std::string key;
    std::string label;
    std::string stated_at; ///< "256 MiB" or "every size"
    std::function<verdict(const size_result&)> check;
};

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

/// Median of the per-run ratio a/b, or nothing when either is missing.
std::optional<double> median_ratio(const size_result& r, const char* a, const char* b) {
    const series* x = r.find(a);
    const series* y = r.find(b);
    if (x == nullptr || y == nullptr || x->seconds.empty()) return std::nullopt;
    return stats_of(per_run_ratio(*x, *y)).median;
}

std::vector<target> targets_for(const options& opt) {
    const double n = static_cast<double>(opt.in_flight);
    std::vector<target> t;
    t.push_back({"save_throughput", "sync save throughput >= 0.90x write+fsync", "256 MiB",
                 [](const size_result& r) {
                     verdict v;
                     if (auto q = median_ratio(r, "write", "save")) {
                         v = {true, *q >= 0.9, fmt("%.2fx", *q)};
                     }
                     return v;
                 }});
    t.push_back(
        {"load_throughput", "load throughput >= 0.80x pread", "256 MiB", [](const size_result& r) {
             verdict v;
             if (auto q = median_ratio(r, "pread", "load")) {
                 v = {true, *q >= 0.8, fmt("%.2fx", *q)};
             }
             return v;
         }});
    t.push_back(
        {"async_stall", "async stall <= 1.25x memcpy + 1 ms", "every size",
         [](const size_result& r) {
             verdict v;
             const series* s = r.find("async_stall");
             const series* m = r.find("memcpy");
             if (s == nullptr || m == nullptr || s->seconds.empty()) return v;
             // Per run, against that run's memcpy; the median of the margins decides.
             std::vector<double> over;
             for (std::size_t i = 0; i < s->seconds.size() && i < m->seconds.size(); ++i)
                 over.push_back(s->seconds[i] - (1.25 * m->seconds[i] + 1e-3));
             const double stall = stats_of(s->seconds).median * 1e3;
             const double limit = (1.25 * stats_of(m->seconds).median + 1e-3) * 1e3;
             v = {true, stats_of(over).median <= 0, fmt("%.2f", stall) + fmt(" / %.2f ms", limit)};
             return v;
         }});
    // ckpt's time against torch's, median of the per-run ratios.
    const auto against_torch = [](const char* ours, const char* theirs, double limit) {
        return [=](const size_result& r) {
            verdict v;
            if (auto q = median_ratio(r, ours, theirs)) v = {true, *q <= limit, fmt("%.2fx", *q)};
            return v;
        };
    };
    t.push_back({"torch_save", "save time <= 0.80x torch.save", "every size",
                 against_torch("save", "torch_save", 0.8)});
    t.push_back({"torch_load", "load time <= 0.50x torch.load", "every size",
                 against_torch("load", "torch_load", 0.5)});
    t.push_back({"torch_size", "file size <= 1.01x torch", "every size", [](const size_result& r) {
                     verdict v;
                     if (r.torch_bytes > 0) {
                         const double q =
                             static_cast<double>(r.file_bytes) / static_cast<double>(r.torch_bytes);
                         v = {true, q <= 1.01, fmt("%.4fx", q)};
                     }
                     return v;
                 }});
    t.push_back({"save_rss", "sync save peak RSS <= state + 16 MiB", "every size",
                 [](const size_result& r) {
                     verdict v;
                     const rss_row* x = r.find_rss("save");
                     if (x != nullptr && x->r.ok != 0) {
                         const double over = x->r.peak_mib - x->r.state_mib;
                         v = {true, over <= 16.0, fmt("%+.1f MiB", over)};
                     }
                     return v;
                 }});
    t.push_back(
        {"async_rss",
         "async peak RSS <= state x (1 + " + std::to_string(opt.in_flight) + ") + 16 MiB",
         "every size", [n](const size_result& r) {
             verdict v;
             const rss_row* x = r.find_rss("async_save");
             if (x != nullptr && x->r.ok != 0) {
                 const double over = x->r.peak_mib - x->r.state_mib;
                 const double allowed = x->r.state_mib * n + 16.0;
                 v = {true, over <= allowed, fmt("%+.1f", over) + fmt(" / %+.1f MiB", allowed)};
             }
             return v;
         }});
    return t;
}

// ---------------------------------------------------------------------------------------------
// Printing: aligned plain text, or Markdown

class table {
public:
    table(std::vector<std::string> head, std::vector<bool> right)
        : head_(std::move(head)), right_(std::move(right)) {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

    void print(bool markdown) const {
        std::vector<std::size_t> w(head_.size(), 0);
        const auto width = [](const std::string& s) { // UTF-8 code points
            std::size_t n = 0;
            for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
            return n;
        };
        for (std::size_t c = 0; c < head_.size(); ++c) {
            w[c] = width(head_[c]);
            for (const auto& row : rows_) {
                if (c < row.size()) w[c] = std::max(w[c], width(row[c]));
            }
        }
        const auto cell = [&](const std::string& s, std::size_t c) {
            const std::string pad(w[c] - width(s), ' ');
            return right_[c] ? pad + s : s + pad;
        };
        const auto line = [&](const std::vector<std::string>& row) {
            std::string out = markdown ? "| " : "  ";
            for (std::size_t c = 0; c < head_.size(); ++c) {
                out += cell(c < row.size() ? row[c] : std::string(), c);
                out += markdown ? " |" : "  ";
                if (markdown && c + 1 < head_.size()) out += " ";
            }
            while (!markdown && !out.empty() && out.back() == ' ') out.pop_back();
            std::printf("%s\n", out.c_str());
        };
        line(head_);
        if (markdown) {
            std::string sep = "|";
            for (std::size_t c = 0; c < head_.size(); ++c)
                sep += (right_[c] ? std::string(w[c] + 1, '-') + ":|"
                                  : ":" + std::string(w[c] + 1, '-') + "|");
            std::printf("%s\n", sep.c_str());
        }
        for (const auto& row : rows_) line(row);
    }

private:
    std::vector<std::string> head_;
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

std::string ms(double seconds) {
    const double v = seconds * 1e3;
    return fmt(v < 10 ? "%.3f" : v < 1000 ? "%.1f" : "%.0f", v);
}

std::string mib_text(double bytes) {
    return fmt("%.2f", bytes / mib);
}

std::string ratio_text(const stats& q) {
    return fmt("%.2f", q.min) + " / " + fmt("%.2f", q.median) + " / " + fmt("%.2f", q.max);
}

void heading(bool markdown, const std::string& title) {
    if (markdown)
        std::printf("\n#### %s\n\n", title.c_str());
    else
        std::printf("\n%s\n", title.c_str());
}

void print_times(const size_result& r, const options& opt) {
    std::string title = size_name(r.target_mib) + " state: " + std::to_string(r.tensors) +
                        " tensors, " + std::to_string(r.params) +
                        " float32 parameters x 3 (model, exp_avg, exp_avg_sq) = " +
                        mib_text(static_cast<double>(r.state_bytes)) + " MiB; ckpt file " +
                        mib_text(static_cast<double>(r.file_bytes)) + " MiB";
    heading(opt.markdown, title);
    table t({"operation", "min ms", "median ms", "max ms", "GB/s",
             "time / baseline (min / median / max)", "baseline"},
            {false, true, true, true, true, true, false});
    for (const series& s : r.ops) {
        if (s.seconds.empty()) continue;
        const stats q = stats_of(s.seconds);
        std::string gbps = s.bytes > 0 && q.median > 0
                               ? fmt("%.2f", static_cast<double>(s.bytes) / q.median / 1e9)
                               : "-";
        std::string ratio = "-";
        std::string base = s.baseline.empty() ? "(baseline)" : "";
        if (s.key == "inspect") base = "(absolute)";
        if (const series* b = s.baseline.empty() ? nullptr : r.find(s.baseline)) {
            ratio = ratio_text(stats_of(per_run_ratio(s, *b)));
            base = b->label;
        }
        t.add({s.label, ms(q.min), ms(q.median), ms(q.max), gbps, ratio, base});
    }
    t.print(opt.markdown);
    std::printf("%sfirst (cold) async save: stall %s ms (its staging buffer faults in), "
                "background %s ms\n",
                opt.markdown ? "\n" : "  ", ms(r.cold_stall).c_str(),
                ms(r.cold_background).c_str());
    std::printf("%sfirst async save after reserve(): stall %s ms (reserve() took %s ms, "
                "before the first save)\n",
                opt.markdown ? "\n" : "  ", ms(r.reserved_stall).c_str(),
                ms(r.reserve_seconds).c_str());
    if (r.torch_bytes > 0) {
        const bool same = r.torch.params == r.params && r.torch.tensor_bytes == r.state_bytes &&
                          r.torch.tensors == r.tensors;
        std::printf("%storch peer: %llu parameters, %llu tensors, %llu tensor bytes; ckpt: %llu, "
                    "%zu, %llu (%s)\n",
                    opt.markdown ? "\n" : "  ", static_cast<unsigned long long>(r.torch.params),
                    static_cast<unsigned long long>(r.torch.tensors),
                    static_cast<unsigned long long>(r.torch.tensor_bytes),
                    static_cast<unsigned long long>(r.params), r.tensors,
                    static_cast<unsigned long long>(r.state_bytes), same ? "equal" : "DIFFERENT");
    }
}

void print_peers(const std::vector<size_result>& results, const options& opt) {
    heading(opt.markdown,
            "ckpt against the peers: ckpt time / peer time of the same run (min / median / max; "
            "< 1: ckpt is faster), ckpt file size / peer file size");
    table t(
        {"size", "peer", "save", "load", "file size", "peer file MiB", "parameters (ckpt / peer)"},
        {false, false, true, true, true, true, true});
    for (const size_result& r : results) {
        // `full`: the save and file columns too; the restore row repeats torch's save.
        const auto row = [&](const char* peer, const char* save, const char* load,
                             std::uint64_t bytes, std::uint64_t params, bool full) {
            const series* s = r.find(save);
            const series* l = r.find(load);
            if (s == nullptr || l == nullptr || s->seconds.empty()) return;
            const std::string same = "(as above)";
            t.add({size_name(r.target_mib), peer,
                   full ? ratio_text(stats_of(per_run_ratio(*r.find("save"), *s))) : same,
                   ratio_text(stats_of(per_run_ratio(*r.find("load"), *l))),
                   full
                       ? fmt("%.4f", static_cast<double>(r.file_bytes) / static_cast<double>(bytes))
                       : same,
                   full ? mib_text(static_cast<double>(bytes)) : same,
                   full ? std::to_string(r.params) + " / " + std::to_string(params) : same});
        };
        row("cereal binary", "cereal_save", "cereal_load", r.cereal_bytes, r.params, true);
        row("torch.save/load", "torch_save", "torch_load", r.torch_bytes, r.torch.params, true);
        row("torch + load_state_dict", "torch_save", "torch_restore", r.torch_bytes, r.torch.params,
            false);
    }
    t.print(opt.markdown);
}

void print_rss(const std::vector<size_result>& results, const options& opt) {
    bool reset_ok = true;
    for (const size_result& r : results) {
        for (const rss_row& x : r.rss) reset_ok = reset_ok && (x.r.ok == 0 || x.r.reset_works);
    }
    heading(opt.markdown,
            std::string("peak RSS in MiB, one operation in a fresh process; VmHWM ") +
                (reset_ok ? "reset (/proc/self/clear_refs) just before it"
                          : "could NOT be reset: absolute figures, building the state included"));
    table t({"size", "operation", "state", "RSS before", "peak", "peak - state", "peak - before"},
            {false, false, true, true, true, true, true});
    for (const size_result& r : results) {
        for (const rss_row& x : r.rss) {
            if (x.r.ok == 0) {
                t.add({size_name(r.target_mib), x.label, "failed: " + std::string(x.r.error)});
                continue;
            }
            t.add({size_name(r.target_mib), x.label, fmt("%.1f", x.r.state_mib),
                   fmt("%.1f", x.r.rss_before_mib), fmt("%.1f", x.r.peak_mib),
                   fmt("%+.1f", x.r.peak_mib - x.r.state_mib),
                   fmt("%+.1f", x.r.peak_mib - x.r.rss_before_mib)});
        }
    }
    t.print(opt.markdown);
    std::printf("%s(a load maps the file when it is in the page cache: those shared, clean pages "
                "count in VmHWM%s)\n",
                opt.markdown ? "\n" : "  ",
                opt.torch.enabled ? (opt.markdown ? ";\ntorch.load allocates a second copy of the "
                                                    "state before load_state_dict copies it in"
                                                  : ";\n   torch.load allocates a second copy of "
                                                    "the state before load_state_dict copies it in")
                                  : "");
}

void print_targets(const std::vector<size_result>& results, const options& opt) {
    heading(opt.markdown, "targets of issue 6 (informational; the exit status is 0 regardless)");
    std::vector<std::string> head{"target", "stated at"};
    std::vector<bool> right{false, false};
    for (const size_result& r : results) {
        head.push_back(size_name(r.target_mib));
        right.push_back(true);
    }
    table t(head, right);
    int passed = 0;
    int missed = 0;
    for (const target& g : targets_for(opt)) {
        std::vector<std::string> row{g.label, g.stated_at};
        for (const size_result& r : results) {
            const verdict v = g.check(r);
            const bool counts =
                g.stated_at == "every size" || size_name(r.target_mib) == g.stated_at;
            if (!v.measured) {
                row.push_back("n/a");
                continue;
            }
            row.push_back(v.value + (v.pass ? " PASS" : " MISS") + (counts ? "" : " (info)"));
            if (counts) (v.pass ? passed : missed)++;
        }
        t.add(std::move(row));
    }
    t.print(opt.markdown);
    std::printf("%s%d PASS, %d MISS where the targets are stated; (info): a size the target is "
                "not stated for\n",
                opt.markdown ? "\n" : "  ", passed, missed);
}

// ---------------------------------------------------------------------------------------------
// --json

template <class Writer>
void write_stats(Writer& w, const stats& s) {
    w.StartObject();
    w.Key("min");
    w.Double(s.min);
    w.Key("median");
    w.Double(s.median);
    w.Key("max");
    w.Double(s.max);
    w.EndObject();
}

template <class Writer>
void write_rss(Writer& w, const rss_result& r) {
    w.StartObject();
    w.Key("ok");
    w.Bool(r.ok != 0);
    if (r.ok == 0) {
        w.Key("error");
        w.String(r.error);
    } else {
        w.Key("reset_works");
        w.Bool(r.reset_works != 0);
        w.Key("state_mib");
        w.Double(r.state_mib);
        w.Key("rss_before_mib");
        w.Double(r.rss_before_mib);
        w.Key("peak_mib");
        w.Double(r.peak_mib);
    }
    w.EndObject();
}

void write_json(const std::string& path, const std::vector<size_result>& results,
                const options& opt, const std::vector<std::pair<std::string, std::string>>& env) {
    rapidjson::StringBuffer buf;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
    w.SetIndent(' ', 2);
    w.StartObject();
    w.Key("program");
    w.String("bench-suite");
    w.Key("ckpt_version");
    w.String(CKPT_VERSION_STRING);
    w.Key("runs");
    w.Int(opt.runs);
    w.Key("max_in_flight");
    w.Uint64(opt.in_flight);
    w.Key("environment");
    w.StartObject();
    for (const auto& [k, v] : env) {
        w.Key(k.c_str());
        w.String(v.c_str());
    }
    w.EndObject();
    w.Key("sizes");
    w.StartArray();
    const std::vector<target> targets = targets_for(opt);
    for (const size_result& r : results) {
        w.StartObject();
        w.Key("target_mib");
        w.Uint64(r.target_mib);
        w.Key("shape");
        w.StartObject();
        w.Key("rows");
        w.Int64(r.shape.rows);
        w.Key("cols");
        w.Int64(r.shape.cols);
        w.Key("layers");
        w.Uint64(r.shape.layers);
        w.Key("dim");
        w.Int64(r.shape.dim);
        w.EndObject();
        w.Key("params");
        w.Uint64(r.params);
        w.Key("tensors");
        w.Uint64(r.tensors);
        w.Key("state_bytes");
        w.Uint64(r.state_bytes);
        w.Key("file_bytes");
        w.Uint64(r.file_bytes);
        w.Key("cereal_file_bytes");
        w.Uint64(r.cereal_bytes);
        w.Key("ckpt_load_exact");
        w.Bool(r.ckpt_exact);
        w.Key("cereal_load_exact");
        w.Bool(r.cereal_exact);
        w.Key("async_cold_stall_s");
        w.Double(r.cold_stall);
        w.Key("async_cold_background_s");
        w.Double(r.cold_background);
        w.Key("async_reserve_s");
        w.Double(r.reserve_seconds);
        w.Key("async_reserved_first_stall_s");
        w.Double(r.reserved_stall);
        w.Key("torch");
        w.StartObject();
        if (!r.torch.error.empty() || r.torch.version.empty()) {
            w.Key("skipped");
            w.String(r.torch.error.empty() ? "--no-torch" : r.torch.error.c_str());
        } else {
            w.Key("version");
            w.String(r.torch.version.c_str());
            w.Key("python");
            w.String(r.torch.python.c_str());
            w.Key("threads");
            w.Int(r.torch.threads);
            w.Key("params");
            w.Uint64(r.torch.params);
            w.Key("tensors");
            w.Uint64(r.torch.tensors);
            w.Key("tensor_bytes");
            w.Uint64(r.torch.tensor_bytes);
            w.Key("file_bytes");
            w.Uint64(r.torch_bytes);
        }
        w.EndObject();
        w.Key("operations");
        w.StartObject();
        for (const series& s : r.ops) {
            if (s.seconds.empty()) continue;
            w.Key(s.key.c_str());
            w.StartObject();
            w.Key("label");
            w.String(s.label.c_str());
            w.Key("bytes");
            w.Uint64(s.bytes);
            w.Key("seconds");
            w.StartArray();
            for (const double x : s.seconds) w.Double(x);
            w.EndArray();
            w.Key("seconds_stats");
            write_stats(w, stats_of(s.seconds));
            if (const series* b = s.baseline.empty() ? nullptr : r.find(s.baseline)) {
                w.Key("baseline");
                w.String(s.baseline.c_str());
                w.Key("time_ratio_stats");
                write_stats(w, stats_of(per_run_ratio(s, *b)));
            }
            w.EndObject();
        }
        w.EndObject();
        w.Key("peak_rss");
        w.StartObject();
        for (const rss_row& x : r.rss) {
            w.Key(x.key.c_str());
            write_rss(w, x.r);
        }
        w.EndObject();
        w.Key("targets");
        w.StartObject();
        for (const target& g : targets) {
            const verdict v = g.check(r);
            if (!v.measured) continue;
            w.Key(g.key.c_str());
            w.StartObject();
            w.Key("label");
            w.String(g.label.c_str());
            w.Key("stated_at");
            w.String(g.stated_at.c_str());
            w.Key("value");
            w.String(v.value.c_str());
            w.Key("pass");
            w.Bool(v.pass);
            w.EndObject();
        }
        w.EndObject();
        w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    std::ofstream out(path, std::ios::trunc);
    out << buf.GetString() << '\n';
    if (!out) die("cannot write '" + path + "'");
}

// ---------------------------------------------------------------------------------------------
// The machine

std::string read_first_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

/// The file system under `dir`: the longest mount point of /proc/self/mounts that contains it.
std::string filesystem_of(const fs::path& dir) {
    std::error_code ec;
    const std::string target = fs::canonical(dir, ec).string();
    std::ifstream in("/proc/self/mounts");
    std::string device, mount, type, rest, best = "unknown";
    std::size_t best_len = 0;
    while (in >> device >> mount >> type && std::getline(in, rest)) {
        const bool contains =
            target == mount ||
            (target.compare(0, mount.size(), mount) == 0 &&
             (mount == "/" || (target.size() > mount.size() && target[mount.size()] == '/')));
        if (contains && mount.size() >= best_len) {
            best_len = mount.size();
            best = type + " (" + device + " on " + mount + ")";
        }
    }
    return best;
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const std::size_t colon = line.find(':');
            if (colon != std::string::npos) return line.substr(colon + 2);
        }
    }
    return "unknown";
}

std::vector<std::pair<std::string, std::string>> environment(const fs::path& dir,
                                                             const options& opt) {
    std::vector<std::pair<std::string, std::string>> env;
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    env.emplace_back("date", date);
    env.emplace_back("nproc", std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)));
    env.emplace_back("cpu", cpu_model());
    const auto ram = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                     static_cast<double>(::sysconf(_SC_PAGESIZE));
    env.emplace_back("memory", fmt("%.1f GiB", ram / (mib * 1024.0)));
    struct ::utsname u {};
    ::uname(&u);
    env.emplace_back("kernel", std::string(u.sysname) + " " + u.release);
    env.emplace_back("filesystem", filesystem_of(dir));
    env.emplace_back("directory", dir.string());
    env.emplace_back("transparent_hugepages",
                     read_first_line("/sys/kernel/mm/transparent_hugepage/enabled"));
#if defined(__clang__)
    env.emplace_back("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
    env.emplace_back("compiler", std::string("gcc ") + __VERSION__);
#endif
    env.emplace_back("python", opt.torch.enabled ? opt.torch.python : "(--no-torch)");
    return env;
}

// ---------------------------------------------------------------------------------------------
// Command line

[[noreturn]] void usage(int status) {
    std::fprintf(
        status == 0 ? stdout : stderr,
        "usage: bench-suite [--runs N] [--sizes 1,64,256 | --big] [--in-flight N] [--dir PATH]\n"
        "                   [--python PATH] [--torch-peer PATH] [--no-torch] [--no-rss]\n"
        "                   [--json FILE] [--markdown]\n"
        "  --runs N         timed runs per size (default 7): min / median / max over them\n"
        "  --sizes LIST     state sizes in MiB, comma-separated (default 1,64,256)\n"
        "  --big            the default sizes and 1024 MiB\n"
        "  --in-flight N    async_options::max_in_flight (default 1)\n"
        "  --dir PATH       where the files go (default: a new directory under the build tree,\n"
        "                   removed at the end); it needs about 5 x the largest size free\n"
        "  --python PATH    the Python that has torch (default /usr/bin/python3)\n"
        "  --torch-peer P   the peer script (default: bench/torch_peer.py of the source tree)\n"
        "  --no-torch       skip the torch peer\n"
        "  --no-rss         skip the peak RSS measurements\n"
        "  --json FILE      also write every figure, per run, to FILE\n"
        "  --markdown       print Markdown tables (for the README) instead of plain text\n");
    std::exit(status);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        const auto count = [&](long lo, long hi) {
            const std::string v = value();
            char* end = nullptr;
            const long n = std::strtol(v.c_str(), &end, 10);
            if (end == v.c_str() || *end != '\0' || n < lo || n > hi) usage(2);
            return n;
        };
        if (a == "--help" || a == "-h") {
            usage(0);
        } else if (a == "--runs") {
            o.runs = static_cast<int>(count(1, 1000));
        } else if (a == "--sizes") {
            o.sizes.clear();
            std::stringstream ss(value());
            std::string item;
            while (std::getline(ss, item, ',')) {
                char* end = nullptr;
                const unsigned long long n = std::strtoull(item.c_str(), &end, 10);
                if (end == item.c_str() || *end != '\0' || n < 1 || n > 65536) usage(2);
                o.sizes.push_back(static_cast<std::uint64_t>(n));
            }
            if (o.sizes.empty()) usage(2);
        } else if (a == "--big") {
            o.sizes = {1, 64, 256, 1024};
        } else if (a == "--in-flight") {
            o.in_flight = static_cast<std::size_t>(count(1, 64));
        } else if (a == "--dir") {
            o.dir = value();
        } else if (a == "--python") {
            o.torch.python = value();
        } else if (a == "--torch-peer") {
            o.torch.script = value();
        } else if (a == "--no-torch") {
            o.torch.enabled = false;
        } else if (a == "--no-rss") {
            o.rss = false;
        } else if (a == "--json") {
            o.json = value();
        } else if (a == "--markdown") {
            o.markdown = true;
        } else {
            usage(2);
        }
    }
    return o;
}

} // namespace

int main(int argc, char** argv) {
    options opt = parse(argc, argv);
    std::signal(SIGPIPE, SIG_IGN); // a torch peer that dies must not take this program with it

    // Where the files go: a new directory (removed at the end), or the given one (only the
    // files this program writes are removed).
    fs::path dir;
    g_cleanup.owner = ::getpid();
    if (opt.dir.empty()) {
        std::error_code ec;
        const fs::path base = fs::is_directory(CKPT_BENCH_WORK_DIR, ec)
                                  ? fs::path(CKPT_BENCH_WORK_DIR)
                                  : fs::current_path();
        std::string templ = (base / "bench-suite-XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) die_errno("mkdtemp", templ);
        dir = templ;
        g_cleanup.own_dir = true;
    } else {
        dir = opt.dir;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) die("cannot create '" + dir.string() + "': " + ec.message());
    }
    std::snprintf(g_cleanup.dir.data(), g_cleanup.dir.size(), "%s", dir.string().c_str());
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const work_paths paths{(dir / "state.ckpt").string(),     (dir / "async.ckpt").string(),
                           (dir / "raw.bin").string(),        (dir / "cereal.bin").string(),
                           (dir / "torch.pt").string(),       (dir / "rss-state.ckpt").string(),
                           (dir / "rss-cereal.bin").string(), (dir / "rss-torch.pt").string()};
    opt.torch.log = (dir / "torch_peer.log").string();
    if (opt.torch.enabled && !fs::exists(opt.torch.script)) {
        progress("no torch peer script at %s: torch skipped", opt.torch.script.c_str());
        opt.torch.enabled = false;
    }
    const auto env = environment(dir, opt);

    std::string torch_skipped = opt.torch.enabled ? "" : "--no-torch, or no peer script";
    std::vector<size_result> results;
    for (const std::uint64_t target : opt.sizes) {
        size_result r;
        r.target_mib = target;
        r.shape = shape_for(target);
        results.push_back(std::move(r));
    }
    try {
        // Peak RSS first, while this process is small: a forked child counts its pages.
        // Once the torch peer fails to start, it is not tried again.
        const auto torch_gone = [&](const size_result& r) {
            if (!opt.torch.enabled || r.torch.error.empty()) return;
            torch_skipped = r.torch.error;
            opt.torch.enabled = false;
        };
        if (opt.rss) {
            for (size_result& r : results) {
                progress("%s: peak RSS of each operation", size_name(r.target_mib).c_str());
                measure_rss(r, opt, paths);
                torch_gone(r);
            }
        }
        for (size_result& r : results) {
            progress("%s: timing, %d runs", size_name(r.target_mib).c_str(), opt.runs);
            measure_times(r, opt, paths);
            torch_gone(r);
        }
    } catch (const std::exception& e) {
        die(std::string("failed: ") + e.what());
    }
    std::string torch_log;
    {
        std::ifstream in(opt.torch.log);
        std::stringstream ss;
        ss << in.rdbuf();
        torch_log = ss.str();
    }
    remove_work_files();

    // --- What was measured, where
    const size_result& first = results.front();
    std::vector<std::pair<std::string, std::string>> shown;
    for (const auto& kv : env) {
        if (kv.first != "directory") shown.push_back(kv);
    }
    if (torch_skipped.empty() && !first.torch.version.empty()) {
        shown.emplace_back("torch", first.torch.version + " (Python " + first.torch.python +
                                        ", torch.get_num_threads() = " +
                                        std::to_string(first.torch.threads) + ")");
    } else {
        shown.emplace_back("torch", "skipped: " + torch_skipped);
    }
    std::printf(opt.markdown ? "ckpt `bench-suite` %s, %d runs per size, every figure min / "
                               "median / max:\n\n"
                             : "ckpt bench-suite %s: %d runs per size, every figure min / median "
                               "/ max\n",
                CKPT_VERSION_STRING, opt.runs);
    for (const auto& [k, v] : shown)
        std::printf(opt.markdown ? "- %s: %s\n" : "  %-22s %s\n", k.c_str(), v.c_str());

    for (const size_result& r : results) print_times(r, opt);
    print_peers(results, opt);
    if (opt.rss) print_rss(results, opt);
    print_targets(results, opt);

    // --- Notes and warnings
    std::printf("\n");
    for (const size_result& r : results) {
        if (!r.ckpt_exact)
            std::printf("WARNING: the %s ckpt load did not give back the saved state\n",
                        size_name(r.target_mib).c_str());
        if (!r.cereal_exact)
            std::printf("WARNING: the %s cereal load did not give back the saved state\n",
                        size_name(r.target_mib).c_str());
        if (r.torch_bytes > 0 && r.torch.params != r.params)
            std::printf("WARNING: the %s torch state has %llu parameters, ckpt's %llu\n",
                        size_name(r.target_mib).c_str(),
                        static_cast<unsigned long long>(r.torch.params),
                        static_cast<unsigned long long>(r.params));
    }
    if (!torch_skipped.empty()) {
        std::printf("note: the torch peer was skipped: %s\n", torch_skipped.c_str());
        if (!torch_log.empty()) std::printf("torch_peer.log:\n%s\n", torch_log.c_str());
    }
    const bool tmpfs = std::any_of(env.begin(), env.end(), [](const auto& kv) {
        return kv.first == "filesystem" && kv.second.rfind("tmpfs", 0) == 0;
    });
    if (tmpfs) {
        std::printf("note: the files are on tmpfs: fsync costs nothing there, and the write "
                    "figures say nothing about a disk\n");
    }
    if (!opt.json.empty()) write_json(opt.json, results, opt, env);
    return 0;
}
