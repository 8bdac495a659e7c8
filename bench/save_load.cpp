// bench/save_load: ckpt::save and ckpt::load against raw POSIX I/O of the same bytes.
//
// For each state size (default 1, 64 and 256 MiB: four large MatrixXf plus many small layers,
// about 10% of the bytes in 128 to 1024 small tensors, an mt19937_64 and a few scalars) it
// measures, in the same run and interleaved so that drift hits both sides alike:
//   - ckpt::save (which fsyncs) against open/write/fsync/close of the same number of bytes;
//   - ckpt::load into a pre-shaped state against a pread loop of the same file into a
//     preallocated buffer (warm page cache);
//   - the peak RSS of one save and one load, each in a fresh child process.
// Throughput ratios are raw time / ckpt time of the same run pair: >= 1 is faster than raw.
// The program always exits 0 unless it cannot run at all: it is a benchmark, not a test.
//
// Usage: save_load [--runs N] [--sizes 1,64,256] [--dir PATH]

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>
#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;

constexpr double mib = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// The state

struct small_layer {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    float scale = 1.0f;
    std::int64_t updates = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(scale), CEREAL_NVP(updates));
    }
};

struct train_state {
    Eigen::MatrixXf embedding;
    Eigen::MatrixXf projection;
    Eigen::MatrixXf adam_m;
    Eigen::MatrixXf adam_v;
    std::vector<small_layer> layers;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    double learning_rate = 0.0;
    float loss = 0.0f;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(embedding), CEREAL_NVP(projection), CEREAL_NVP(adam_m), CEREAL_NVP(adam_v),
           CEREAL_NVP(layers), CEREAL_NVP(rng), CEREAL_NVP(step), CEREAL_NVP(learning_rate),
           CEREAL_NVP(loss));
    }
};

/// The shapes of a state of about `target_mib` MiB.
struct state_shape {
    Eigen::Index big_rows = 1;
    Eigen::Index big_cols = 512;
    std::size_t layers = 64;
    Eigen::Index small_dim = 1; ///< each small layer: weight small_dim^2, bias small_dim
};

state_shape shape_for(std::uint64_t target_mib) {
    const double total = static_cast<double>(target_mib) * mib;
    state_shape s;
    s.layers = static_cast<std::size_t>(std::clamp<std::uint64_t>(2 * target_mib, 64, 512));
    // About 10% of the bytes in the small layers, the rest in four large matrices.
    const double per_layer = 0.1 * total / static_cast<double>(s.layers);
    s.small_dim = std::max<Eigen::Index>(1, static_cast<Eigen::Index>(std::sqrt(per_layer / 4.0)));
    const double small_bytes = static_cast<double>(s.layers) * 4.0 *
                               static_cast<double>(s.small_dim * s.small_dim + s.small_dim);
    const double per_big = std::max(0.0, total - small_bytes) / 4.0;
    s.big_rows = std::max<Eigen::Index>(
        1, static_cast<Eigen::Index>(per_big / (4.0 * static_cast<double>(s.big_cols))));
    return s;
}

/// Fills with incompressible values (xorshift64), fast enough for 256 MiB.
void fill(float* p, Eigen::Index n, std::uint64_t& s) {
    for (Eigen::Index i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = static_cast<float>(static_cast<std::int32_t>(s >> 32)) * 0x1p-31f;
    }
}

/// A state of the given shape: random values when `seed` != 0, zeros (every page touched)
/// otherwise, as a resuming run would have before loading.
train_state make_state(const state_shape& s, std::uint64_t seed) {
    train_state st;
    std::uint64_t x = seed != 0 ? seed : 1;
    const auto init = [&](auto& m, Eigen::Index rows, Eigen::Index cols) {
        m.resize(rows, cols);
        if (seed != 0)
            fill(m.data(), m.size(), x);
        else
            m.setZero();
    };
    init(st.embedding, s.big_rows, s.big_cols);
    init(st.projection, s.big_rows, s.big_cols);
    init(st.adam_m, s.big_rows, s.big_cols);
    init(st.adam_v, s.big_rows, s.big_cols);
    st.layers.resize(s.layers);
    for (small_layer& l : st.layers) {
        init(l.weight, s.small_dim, s.small_dim);
        init(l.bias, s.small_dim, 1);
        l.scale = seed != 0 ? 0.5f : 0.0f;
        l.updates = seed != 0 ? 12345 : 0;
    }
    if (seed != 0) {
        st.rng.seed(seed);
        st.rng.discard(1000);
        st.step = 4242;
        st.learning_rate = 3e-4;
        st.loss = 1.25f;
    }
    return st;
}

std::uint64_t tensor_bytes(const train_state& st) {
    std::uint64_t n = 4 * static_cast<std::uint64_t>(st.embedding.size());
    n += 4 * static_cast<std::uint64_t>(st.projection.size() + st.adam_m.size() + st.adam_v.size());
    for (const small_layer& l : st.layers) {
        n += 4 * static_cast<std::uint64_t>(l.weight.size() + l.bias.size());
    }
    return n;
}

std::size_t tensor_count(const train_state& st) {
    return 4 + 2 * st.layers.size();
}

bool same_state(const train_state& a, const train_state& b) {
    if (a.embedding != b.embedding || a.projection != b.projection || a.adam_m != b.adam_m ||
        a.adam_v != b.adam_v || a.layers.size() != b.layers.size() || a.rng != b.rng ||
        a.step != b.step || a.learning_rate != b.learning_rate || a.loss != b.loss) {
        return false;
    }
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        const small_layer& x = a.layers[i];
        const small_layer& y = b.layers[i];
        if (x.weight != y.weight || x.bias != y.bias || x.scale != y.scale ||
            x.updates != y.updates) {
            return false;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Raw baselines and helpers

/// The directory this program created (removed on every exit path), and by which process.
fs::path g_own_dir;
::pid_t g_owner = 0;

void remove_own_dir() {
    if (g_own_dir.empty() || ::getpid() != g_owner) return;
    std::error_code ec;
    fs::remove_all(g_own_dir, ec);
    g_own_dir.clear();
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "save_load: %s\n", what.c_str());
    remove_own_dir();
    std::exit(2);
}
[[noreturn]] void die_errno(const std::string& what, const std::string& path) {
    die(what + " '" + path + "': " + std::strerror(errno));
}

double seconds_since(bench_clock::time_point t0) {
    return std::chrono::duration<double>(bench_clock::now() - t0).count();
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

/// open, pread loop of the whole file into a preallocated buffer, close.
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

double timed_save(const std::string& path, const train_state& st) {
    const auto t0 = bench_clock::now();
    ckpt::save(path, st);
    return seconds_since(t0);
}

double timed_load(const std::string& path, train_state& st) {
    const auto t0 = bench_clock::now();
    ckpt::load(path, st);
    return seconds_since(t0);
}

struct stats {
    double min = 0;
    double median = 0;
    double max = 0;
};

stats stats_of(std::vector<double> v) {
    stats s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    s.min = v.front();
    s.max = v.back();
    s.median = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return s;
}

/// raw time / ckpt time of each run pair.
std::vector<double> ratios(const std::vector<double>& raw, const std::vector<double>& ours) {
    std::vector<double> r;
    for (std::size_t i = 0; i < raw.size() && i < ours.size(); ++i) r.push_back(raw[i] / ours[i]);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Peak RSS, in a fresh child per measurement

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
    double rss_before_mib = 0; ///< VmRSS just before the save or load
    double peak_mib = 0;       ///< VmHWM after it (since the reset, or absolute)
    char error[256] = {};
};

/// Runs `body` in a fresh child and returns what it measured.
template <class Body>
rss_result in_child(Body body) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe: " + std::string(std::strerror(errno)));
    std::fflush(stdout);
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

/// The peak of one ckpt operation on a state of `shape`: the child builds the state, resets
/// VmHWM, runs `op`, and reads VmHWM.
template <class Op>
rss_result measure_peak(const state_shape& shape, std::uint64_t seed, Op op) {
    return in_child([&]() {
        rss_result r;
        r.reset_works = hwm_reset_works() ? 1 : 0;
        train_state st = make_state(shape, seed);
        r.state_mib = static_cast<double>(tensor_bytes(st)) / mib;
        if (r.reset_works != 0) reset_hwm();
        r.rss_before_mib = status_mib("VmRSS");
        op(st);
        r.peak_mib = status_mib("VmHWM");
        return r;
    });
}

// ---------------------------------------------------------------------------------------------
// Command line

struct options {
    int runs = 5;
    std::vector<std::uint64_t> sizes{1, 64, 256};
    std::string dir;
};

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: save_load [--runs N] [--sizes 1,64,256] [--dir PATH]\n"
                 "  --runs N      timed runs per size and operation (default 5)\n"
                 "  --sizes LIST  state sizes in MiB, comma-separated (default 1,64,256)\n"
                 "  --dir PATH    where the files go (default: a fresh directory under the\n"
                 "                current one, removed at the end)\n");
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
        if (a == "--help" || a == "-h") {
            usage(0);
        } else if (a == "--runs") {
            const long n = std::strtol(value().c_str(), nullptr, 10);
            if (n < 1 || n > 1000) usage(2);
            o.runs = static_cast<int>(n);
        } else if (a == "--sizes") {
            o.sizes.clear();
            std::stringstream ss(value());
            std::string item;
            while (std::getline(ss, item, ',')) {
                const unsigned long long n = std::strtoull(item.c_str(), nullptr, 10);
                if (n < 1 || n > 65536) usage(2);
                o.sizes.push_back(static_cast<std::uint64_t>(n));
            }
            if (o.sizes.empty()) usage(2);
        } else if (a == "--dir") {
            o.dir = value();
        } else {
            usage(2);
        }
    }
    return o;
}

// ---------------------------------------------------------------------------------------------
// The benchmark

struct size_result {
    std::uint64_t target_mib = 0;
    std::size_t tensors = 0;
    double state_mib = 0;
    double file_mib = 0;
    std::uint64_t file_bytes = 0;
    std::vector<double> raw_write, save, raw_read, load;
    rss_result save_rss, load_rss;
    bool verified = false;
};

void print_row(const size_result& r, const char* op, const std::vector<double>& times,
               const std::vector<double>* ratio) {
    const stats t = stats_of(times);
    const double gbps = t.median > 0 ? static_cast<double>(r.file_bytes) / t.median / 1e9 : 0.0;
    std::printf("%5llu MiB  %-16s %9.4f %9.4f %9.4f %8.3f",
                static_cast<unsigned long long>(r.target_mib), op, t.min, t.median, t.max, gbps);
    if (ratio != nullptr) {
        const stats q = stats_of(*ratio);
        std::printf("   %5.2fx / %5.2fx / %5.2fx", q.min, q.median, q.max);
    }
    std::printf("\n");
}

} // namespace

int main(int argc, char** argv) {
    const options opt = parse(argc, argv);

    // Where the files go.
    bool own_dir = false;
    fs::path dir;
    if (opt.dir.empty()) {
        std::string templ = (fs::current_path() / "ckpt-bench-XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) die_errno("mkdtemp", templ);
        dir = templ;
        own_dir = true;
        g_own_dir = dir;
        g_owner = ::getpid();
    } else {
        dir = opt.dir;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) die("cannot create '" + dir.string() + "': " + ec.message());
    }

    std::printf("ckpt bench/save_load: %d runs per size, files in %s%s\n", opt.runs,
                dir.string().c_str(), own_dir ? " (removed at the end)" : "");
    std::printf("state: 4 large MatrixXf + N small layers (MatrixXf weight d x d, VectorXf bias d, "
                "2 scalars), mt19937_64, 3 scalars\n\n");

    std::vector<size_result> results;
    try {
        // Peak RSS first, while this process is small (a forked child shares its pages).
        for (const std::uint64_t target : opt.sizes) {
            size_result r;
            r.target_mib = target;
            const state_shape shape = shape_for(target);
            const std::string path = (dir / ("rss-" + std::to_string(target) + ".ckpt")).string();
            r.save_rss = measure_peak(shape, 0x9e3779b97f4a7c15ULL,
                                      [&](const train_state& st) { ckpt::save(path, st); });
            r.load_rss = measure_peak(shape, 0, [&](train_state& st) { ckpt::load(path, st); });
            fs::remove(path);
            results.push_back(std::move(r));
        }

        for (size_result& r : results) {
            const state_shape shape = shape_for(r.target_mib);
            const train_state state = make_state(shape, 0x9e3779b97f4a7c15ULL);
            train_state loaded = make_state(shape, 0);
            r.tensors = tensor_count(state);
            r.state_mib = static_cast<double>(tensor_bytes(state)) / mib;
            const std::string ckpt_path =
                (dir / ("state-" + std::to_string(r.target_mib) + ".ckpt")).string();
            const std::string raw_path =
                (dir / ("raw-" + std::to_string(r.target_mib) + ".bin")).string();

            // Warm-up: one save gives the byte count; the raw side writes those very bytes.
            ckpt::save(ckpt_path, state);
            r.file_bytes = static_cast<std::uint64_t>(fs::file_size(ckpt_path));
            r.file_mib = static_cast<double>(r.file_bytes) / mib;
            const auto n = static_cast<std::size_t>(r.file_bytes);
            std::vector<std::byte> buffer(n);
            raw_read(ckpt_path, buffer.data(), n);
            raw_write(raw_path, buffer.data(), n);

            // Save: alternate which side goes first.
            for (int i = 0; i < opt.runs; ++i) {
                if (i % 2 == 0) {
                    r.raw_write.push_back(raw_write(raw_path, buffer.data(), n));
                    r.save.push_back(timed_save(ckpt_path, state));
                } else {
                    r.save.push_back(timed_save(ckpt_path, state));
                    r.raw_write.push_back(raw_write(raw_path, buffer.data(), n));
                }
            }
            fs::remove(raw_path);

            // Load, warm cache: the file was just written, and is read once more untimed.
            raw_read(ckpt_path, buffer.data(), n);
            ckpt::load(ckpt_path, loaded);
            for (int i = 0; i < opt.runs; ++i) {
                if (i % 2 == 0) {
                    r.raw_read.push_back(raw_read(ckpt_path, buffer.data(), n));
                    r.load.push_back(timed_load(ckpt_path, loaded));
                } else {
                    r.load.push_back(timed_load(ckpt_path, loaded));
                    r.raw_read.push_back(raw_read(ckpt_path, buffer.data(), n));
                }
            }
            r.verified = same_state(state, loaded);
            fs::remove(ckpt_path);
        }
    } catch (const std::exception& e) {
        die(std::string("ckpt failed: ") + e.what());
    }
    remove_own_dir();

    // --- States
    std::printf("%9s  %7s  %9s  %9s  %s\n", "size", "tensors", "state MiB", "file MiB",
                "load round-trip");
    for (const size_result& r : results) {
        std::printf("%5llu MiB  %7zu  %9.2f  %9.2f  %s\n",
                    static_cast<unsigned long long>(r.target_mib), r.tensors, r.state_mib,
                    r.file_mib, r.verified ? "exact" : "MISMATCH");
    }

    // --- Throughput
    std::printf(
        "\nthroughput: min/median/max seconds over %d runs, GB/s at the median; ratio = raw time / "
        "ckpt time\nof the same run pair (>= 1: ckpt is faster than raw), min/median/max over "
        "the pairs\n",
        opt.runs);
    std::printf("%9s  %-16s %9s %9s %9s %8s   %s\n", "size", "operation", "min s", "median s",
                "max s", "GB/s", "ratio min/median/max");
    for (const size_result& r : results) {
        const std::vector<double> save_ratio = ratios(r.raw_write, r.save);
        const std::vector<double> load_ratio = ratios(r.raw_read, r.load);
        print_row(r, "raw write+fsync", r.raw_write, nullptr);
        print_row(r, "ckpt save", r.save, &save_ratio);
        print_row(r, "raw pread", r.raw_read, nullptr);
        print_row(r, "ckpt load", r.load, &load_ratio);
    }

    // --- Peak RSS
    const bool reset_ok = std::all_of(results.begin(), results.end(), [](const size_result& r) {
        return r.save_rss.reset_works != 0 && r.load_rss.reset_works != 0;
    });
    std::printf(
        "\npeak RSS: one save / one load in a fresh child; VmHWM %s\n",
        reset_ok
            ? "reset through /proc/self/clear_refs just before the operation"
            : "could NOT be reset: the figures are absolute VmHWM (include building the state)");
    std::printf("%9s  %9s  %11s  %9s  %11s  %9s  %11s\n", "size", "state MiB", "RSS before",
                "save peak", "peak-state", "load peak", "peak-state");
    for (const size_result& r : results) {
        if (r.save_rss.ok == 0 || r.load_rss.ok == 0) {
            std::printf("%5llu MiB  failed: %s%s\n", static_cast<unsigned long long>(r.target_mib),
                        r.save_rss.error, r.load_rss.error);
            continue;
        }
        std::printf("%5llu MiB  %9.2f  %11.2f  %9.2f  %11.2f  %9.2f  %11.2f\n",
                    static_cast<unsigned long long>(r.target_mib), r.save_rss.state_mib,
                    r.save_rss.rss_before_mib, r.save_rss.peak_mib,
                    r.save_rss.peak_mib - r.save_rss.state_mib, r.load_rss.peak_mib,
                    r.load_rss.peak_mib - r.load_rss.state_mib);
    }
    std::printf(
        "(peak-state includes the process's own baseline RSS, %.1f MiB before the state was "
        "built;\n a warm-cache load maps the file, and its mapped page-cache pages count in "
        "VmHWM)\n",
        results.empty()
            ? 0.0
            : results.front().save_rss.rss_before_mib - results.front().save_rss.state_mib);

    // --- Verdict, on the largest size measured (256 MiB by default)
    if (results.empty()) return 0;
    const size_result& big = *std::max_element(
        results.begin(), results.end(),
        [](const size_result& a, const size_result& b) { return a.target_mib < b.target_mib; });
    const double save_ratio = stats_of(ratios(big.raw_write, big.save)).median;
    const double load_ratio = stats_of(ratios(big.raw_read, big.load)).median;
    const double save_over = big.save_rss.peak_mib - big.save_rss.state_mib;
    std::printf("\nsave peak RSS over state: %.2f MiB (target <= 16 MiB)\n", save_over);
    std::printf("\nverdict at %llu MiB, median of the per-run ratios%s:\n",
                static_cast<unsigned long long>(big.target_mib),
                big.target_mib == 256 ? "" : " (the targets are stated for 256 MiB)");
    std::printf("  save >= 0.90x raw write+fsync   %6.2fx      %s\n", save_ratio,
                save_ratio >= 0.9 ? "PASS" : "MISS");
    std::printf("  load >= 0.80x raw pread         %6.2fx      %s\n", load_ratio,
                load_ratio >= 0.8 ? "PASS" : "MISS");
    if (big.save_rss.ok != 0) {
        std::printf("  save peak RSS <= state + 16 MiB %+7.2f MiB  %s%s\n", save_over,
                    save_over <= 16.0 ? "PASS" : "MISS", reset_ok ? "" : " (absolute VmHWM)");
    } else {
        std::printf("  save peak RSS <= state + 16 MiB  not measured: %s\n", big.save_rss.error);
    }
    for (const size_result& r : results) {
        if (!r.verified)
            std::printf("  WARNING: the %llu MiB load did not give back the saved state\n",
                        static_cast<unsigned long long>(r.target_mib));
    }
    std::printf("(a benchmark, not a test: the exit status is 0 whatever the verdict)\n");
    return 0;
}
