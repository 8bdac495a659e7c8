// bench/tensor_kinds: the new kinds of tensors against the Eigen ones they stand in for, and
// against the machine.
//
// 1. A rank-1 tensor from a standard container: a struct holding one std::vector<float> of
//    64 MiB against a struct holding one Eigen::VectorXf of 64 MiB. Save, and load into a state
//    that already has the length (a resuming run's); then load into an empty state, where the
//    vector's resize zero-fills and Eigen's does not (no target: the difference is the
//    container's, not ckpt's).
// 2. Views of user-owned memory: a flat 256 MiB std::vector<float> arena seen through 64
//    ckpt::tensor views of {1024, 1024} floats (4 MiB each), against the same bytes in 64
//    Eigen::MatrixXf of 1024 x 1024 in a std::vector. Save and load (into the already-shaped
//    state, the only kind a view has).
// 3. The machine: write+fsync of the same bytes from one buffer to a fresh file, and a pread
//    loop of that file (in the page cache) into a page-aligned, pre-faulted buffer, at 64 and
//    256 MiB.
//
// Every memory on both sides is allocated and touched before the timed runs: the sources, the
// shaped destinations (rewritten, untimed, before each load and checked after it), the pread
// buffer. Every timed write goes to a fresh path: the file it replaces is removed and the file
// system synced (syncfs) first, untimed, as bench-suite does (freeing a file's blocks on a file
// system mounted with `discard` would otherwise stall the next writer's fsync). Writers run
// first, then readers, which find the files just written in the page cache. Within each group
// the order rotates from run to run, so no operation always follows the same one. A ratio is
// taken between two operations of the same run, then summarised as min / median / max.
//
// Allocations of 1 MiB or more are counted around every timed operation, two ways: global
// operator new (every unaligned form, replaced by tests/new_hook.hpp), and, on glibc, the whole
// malloc family (malloc, calloc, realloc, memalign, posix_memalign, aligned_alloc, interposed
// below), which also sees what does not go through operator new: Eigen's buffers (Eigen's
// aligned_malloc is malloc) and any buffer of ckpt's own. A load that maps the file maps the page
// cache: that is no allocation and is not counted.
//
// The program always exits 0 unless it cannot run at all: it is a benchmark, not a test.
//
// Usage: tensor_kinds [--runs N] [--dir PATH]

#include "../tests/new_hook.hpp" // replaces operator new and delete; calls test::new_hook
#include "bench_stats.hpp"

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Counting allocators

namespace {
constexpr std::size_t big = std::size_t{1} << 20; ///< what counts: 1 MiB or more
std::atomic<std::uint64_t> g_new_big{0};          ///< operator new of >= 1 MiB
std::atomic<std::uint64_t> g_malloc_big{0};       ///< malloc family, >= 1 MiB
inline void count_new(std::size_t n) {
    if (n >= big) g_new_big.fetch_add(1, std::memory_order_relaxed);
}
inline void count_malloc(std::size_t n) {
    if (n >= big) g_malloc_big.fetch_add(1, std::memory_order_relaxed);
}
} // namespace

#if defined(__GLIBC__)
// glibc's own entry points, exported for exactly this: a program that defines malloc replaces
// it for every library, and these are the allocator underneath. free, malloc_usable_size and
// the rest stay glibc's, which is right: every block still comes from glibc's allocator.
#define CKPT_BENCH_COUNTS_MALLOC 1
extern "C" {
void* __libc_malloc(std::size_t n) noexcept;
void* __libc_calloc(std::size_t count, std::size_t n) noexcept;
void* __libc_realloc(void* p, std::size_t n) noexcept;
void* __libc_memalign(std::size_t alignment, std::size_t n) noexcept;

void* malloc(std::size_t n) noexcept {
    count_malloc(n);
    return __libc_malloc(n);
}
void* calloc(std::size_t count, std::size_t n) noexcept {
    if (n != 0 && count <= SIZE_MAX / n) count_malloc(count * n);
    return __libc_calloc(count, n);
}
void* realloc(void* p, std::size_t n) noexcept {
    count_malloc(n);
    return __libc_realloc(p, n);
}
void* memalign(std::size_t alignment, std::size_t n) noexcept {
    count_malloc(n);
    return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
    count_malloc(n);
    return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
    if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count_malloc(n);
    void* p = __libc_memalign(alignment, n);
    if (p == nullptr && n != 0) return ENOMEM;
    *out = p;
    return 0;
}
} // extern "C"
#else
#define CKPT_BENCH_COUNTS_MALLOC 0
#endif

namespace {

namespace fs = std::filesystem;
using bench_clock = std::chrono::steady_clock;
using bench::stats;
using bench::stats_of;

// ---------------------------------------------------------------------------------------------
// Sizes and states

constexpr std::size_t mib = std::size_t{1} << 20;
constexpr std::size_t small_bytes = 64 * mib;                     ///< the rank-1 states
constexpr std::size_t small_floats = small_bytes / sizeof(float); ///< 16 Mi
constexpr int views = 64;                                         ///< tensors of the arena
constexpr Eigen::Index side = 1024;                               ///< each is side x side
constexpr std::size_t view_floats = static_cast<std::size_t>(side * side);
constexpr std::size_t large_floats = view_floats * views; ///< 64 Mi
constexpr std::size_t large_bytes = large_floats * sizeof(float);

/// 64 MiB in one std::vector<float>: a rank-1 tensor streamed from the vector's memory.
struct vector_state {
    std::vector<float> w;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w));
    }
};

/// The same in one Eigen::VectorXf.
struct eigen_vector_state {
    Eigen::VectorXf w;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w));
    }
};

const std::array<std::string, views>& view_names() {
    static const std::array<std::string, views> names = [] {
        std::array<std::string, views> out;
        for (int i = 0; i < views; ++i) {
            char s[8];
            std::snprintf(s, sizeof s, "t%02d", i);
            out[static_cast<std::size_t>(i)] = s;
        }
        return out;
    }();
    return names;
}

/// 256 MiB in one flat arena, seen as 64 views of {1024, 1024}.
struct arena_state {
    std::vector<float> arena;

    template <class Archive>
    void serialize(Archive& ar) {
        const auto& names = view_names();
        for (std::size_t i = 0; i < names.size(); ++i) {
            ar(ckpt::tensor(names[i], arena.data() + i * view_floats, {side, side}));
        }
    }
};

/// The same bytes in 64 Eigen matrices.
struct matrices_state {
    std::vector<Eigen::MatrixXf> m;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(m));
    }
};

/// Random floats in [-1, 1) (incompressible; not that ckpt compresses).
void fill_random(float* p, std::size_t n, std::uint64_t seed) {
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = static_cast<float>(static_cast<std::int32_t>(x >> 32)) * (1.0F / 2147483648.0F);
    }
}

// ---------------------------------------------------------------------------------------------
// The machine's side

[[noreturn]] void die_errno(const char* what, const std::string& path) {
    throw std::runtime_error(std::string(what) + " '" + path + "': " + std::strerror(errno));
}

/// Anonymous, page-aligned memory with ordinary pages, touched before use.
class prefaulted {
public:
    explicit prefaulted(std::size_t n) : size_(n) {
        void* p =
            ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die_errno("mmap", std::to_string(n) + " bytes");
        data_ = static_cast<std::byte*>(p);
        std::memset(data_, 0x5a, size_);
    }
    prefaulted(const prefaulted&) = delete;
    prefaulted& operator=(const prefaulted&) = delete;
    ~prefaulted() { ::munmap(data_, size_); }
    [[nodiscard]] std::byte* data() const noexcept { return data_; }

private:
    std::size_t size_;
    std::byte* data_ = nullptr;
};

/// Untimed, before each timed write: removes the file and syncs the file system.
void fresh_target(const fs::path& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) die_errno("unlink", path.string());
    const std::string dir = path.parent_path().string();
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die_errno("open", dir);
    if (::syncfs(fd) != 0) die_errno("syncfs", dir);
    ::close(fd);
}

/// open(O_CREAT|O_TRUNC|O_WRONLY), one write loop from one buffer, fsync, close.
void raw_write(const fs::path& path, const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) die_errno("open", path.string());
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die_errno("write", path.string());
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0) die_errno("fsync", path.string());
    if (::close(fd) != 0) die_errno("close", path.string());
}

/// open, a pread loop of `n` bytes into `p`, close.
void raw_read(const fs::path& path, std::byte* p, std::size_t n) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die_errno("open", path.string());
    ::off_t offset = 0;
    while (n > 0) {
        const ::ssize_t r = ::pread(fd, p, n, offset);
        if (r < 0) {
            if (errno == EINTR) continue;
            die_errno("pread", path.string());
        }
        if (r == 0) throw std::runtime_error("pread '" + path.string() + "': unexpected end");
        p += r;
        offset += r;
        n -= static_cast<std::size_t>(r);
    }
    ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// The operations

enum op : int {
    // writers, 64 MiB
    write_small,
    save_vector,
    save_eigen_vector,
    // writers, 256 MiB
    write_large,
    save_arena,
    save_matrices,
    // readers, 64 MiB
    read_small,
    load_vector,
    load_eigen_vector,
    load_vector_empty,
    load_eigen_vector_empty,
    // readers, 256 MiB
    read_large,
    load_arena,
    load_matrices,
    op_count
};

struct op_info {
    const char* name;
    std::size_t bytes; ///< tensor bytes moved, for GB/s
    int baseline;      ///< the machine's operation it is compared with, or -1
};

const op_info info[op_count] = {
    {"write+fsync 64 MiB", small_bytes, -1},
    {"save std::vector<float>", small_bytes, write_small},
    {"save Eigen::VectorXf", small_bytes, write_small},
    {"write+fsync 256 MiB", large_bytes, -1},
    {"save arena, 64 ckpt::tensor views", large_bytes, write_large},
    {"save 64 Eigen::MatrixXf", large_bytes, write_large},
    {"pread 64 MiB (warm)", small_bytes, -1},
    {"load std::vector<float>, sized", small_bytes, read_small},
    {"load Eigen::VectorXf, sized", small_bytes, read_small},
    {"load std::vector<float>, empty", small_bytes, read_small},
    {"load Eigen::VectorXf, empty", small_bytes, read_small},
    {"pread 256 MiB (warm)", large_bytes, -1},
    {"load arena, 64 ckpt::tensor views", large_bytes, read_large},
    {"load 64 Eigen::MatrixXf", large_bytes, read_large},
};

/// The groups, run one after the other; the order within a group rotates from run to run.
const std::vector<std::vector<int>> groups = {
    {write_small, save_vector, save_eigen_vector},
    {write_large, save_arena, save_matrices},
    {read_small, load_vector, load_eigen_vector, load_vector_empty, load_eigen_vector_empty},
    {read_large, load_arena, load_matrices},
};

struct measurement {
    std::vector<double> seconds[op_count];
    std::vector<std::uint64_t> new_big[op_count];
    std::vector<std::uint64_t> malloc_big[op_count];
    std::uint64_t file_bytes[op_count] = {};
};

/// Everything the runs touch: sources, destinations, buffers, files.
class fixture {
public:
    explicit fixture(const fs::path& dir) : dir_(dir), read_buffer_(large_bytes) {
        src_vector_.w.resize(small_floats);
        fill_random(src_vector_.w.data(), small_floats, 1);
        src_eigen_.w = Eigen::Map<const Eigen::VectorXf>(src_vector_.w.data(),
                                                         static_cast<Eigen::Index>(small_floats));
        dst_vector_.w.assign(small_floats, -1.0F);
        dst_eigen_.w = Eigen::VectorXf::Constant(static_cast<Eigen::Index>(small_floats), -1.0F);

        src_arena_.arena.resize(large_floats);
        fill_random(src_arena_.arena.data(), large_floats, 2);
        dst_arena_.arena.assign(large_floats, -1.0F);
        for (std::size_t i = 0; i < views; ++i) {
            src_matrices_.m.emplace_back(Eigen::Map<const Eigen::MatrixXf>(
                src_arena_.arena.data() + i * view_floats, side, side));
            dst_matrices_.m.emplace_back(Eigen::MatrixXf::Constant(side, side, -1.0F));
        }
    }

    /// Runs `o` once: untimed preparation, the timed call, an untimed check.
    void run(int o, measurement& m) {
        const fs::path path = dir_ / file_of(o);
        prepare(o, path);
        const std::uint64_t n0 = g_new_big.load(std::memory_order_relaxed);
        const std::uint64_t m0 = g_malloc_big.load(std::memory_order_relaxed);
        const auto t0 = bench_clock::now();
        const std::uint64_t file = timed(o, path);
        const auto t1 = bench_clock::now();
        m.new_big[o].push_back(g_new_big.load(std::memory_order_relaxed) - n0);
        m.malloc_big[o].push_back(g_malloc_big.load(std::memory_order_relaxed) - m0);
        m.seconds[o].push_back(std::chrono::duration<double>(t1 - t0).count());
        if (file != 0) m.file_bytes[o] = file;
        check(o);
    }

private:
    static const char* file_of(int o) {
        switch (o) {
        case write_small:
        case read_small: return "raw-64.bin";
        case write_large:
        case read_large: return "raw-256.bin";
        case save_vector:
        case load_vector:
        case load_vector_empty: return "vector.ckpt";
        case save_eigen_vector:
        case load_eigen_vector:
        case load_eigen_vector_empty: return "eigen-vector.ckpt";
        case save_arena:
        case load_arena: return "arena.ckpt";
        default: return "matrices.ckpt";
        }
    }

    void prepare(int o, const fs::path& path) {
        switch (o) {
        case write_small:
        case write_large:
        case save_vector:
        case save_eigen_vector:
        case save_arena:
        case save_matrices: fresh_target(path); break;
        case load_vector: std::fill(dst_vector_.w.begin(), dst_vector_.w.end(), -1.0F); break;
        case load_eigen_vector: dst_eigen_.w.setConstant(-1.0F); break;
        case load_vector_empty: empty_vector_ = vector_state{}; break;
        case load_eigen_vector_empty: empty_eigen_ = eigen_vector_state{}; break;
        case load_arena: std::fill(dst_arena_.arena.begin(), dst_arena_.arena.end(), -1.0F); break;
        case load_matrices:
            for (auto& x : dst_matrices_.m) x.setConstant(-1.0F);
            break;
        default: break;
        }
    }

    std::uint64_t timed(int o, const fs::path& path) {
        switch (o) {
        case write_small: raw_write(path, src_vector_.w.data(), small_bytes); return 0;
        case write_large: raw_write(path, src_arena_.arena.data(), large_bytes); return 0;
        case save_vector: return ckpt::save(path, src_vector_);
        case save_eigen_vector: return ckpt::save(path, src_eigen_);
        case save_arena: return ckpt::save(path, src_arena_);
        case save_matrices: return ckpt::save(path, src_matrices_);
        case read_small: raw_read(path, read_buffer_.data(), small_bytes); return 0;
        case read_large: raw_read(path, read_buffer_.data(), large_bytes); return 0;
        case load_vector: ckpt::load(path, dst_vector_); return 0;
        case load_eigen_vector: ckpt::load(path, dst_eigen_); return 0;
        case load_vector_empty: ckpt::load(path, empty_vector_); return 0;
        case load_eigen_vector_empty: ckpt::load(path, empty_eigen_); return 0;
        case load_arena: ckpt::load(path, dst_arena_); return 0;
        case load_matrices: ckpt::load(path, dst_matrices_); return 0;
        default: return 0;
        }
    }

    /// Every load must have brought back the source's bytes.
    void check(int o) const {
        const auto same = [](const float* a, const float* b, std::size_t n) {
            return std::memcmp(a, b, n * sizeof(float)) == 0;
        };
        const float* small = src_vector_.w.data();
        const float* large = src_arena_.arena.data();
        bool ok = true;
        switch (o) {
        case read_small: ok = std::memcmp(read_buffer_.data(), small, small_bytes) == 0; break;
        case read_large: ok = std::memcmp(read_buffer_.data(), large, large_bytes) == 0; break;
        case load_vector: ok = same(dst_vector_.w.data(), small, small_floats); break;
        case load_eigen_vector: ok = same(dst_eigen_.w.data(), small, small_floats); break;
        case load_vector_empty:
            ok = empty_vector_.w.size() == small_floats &&
                 same(empty_vector_.w.data(), small, small_floats);
            break;
        case load_eigen_vector_empty:
            ok = static_cast<std::size_t>(empty_eigen_.w.size()) == small_floats &&
                 same(empty_eigen_.w.data(), small, small_floats);
            break;
        case load_arena: ok = same(dst_arena_.arena.data(), large, large_floats); break;
        case load_matrices:
            for (std::size_t i = 0; i < views && ok; ++i) {
                ok = same(dst_matrices_.m[i].data(), large + i * view_floats, view_floats);
            }
            break;
        default: break;
        }
        if (!ok) throw std::runtime_error(std::string(info[o].name) + ": wrong bytes loaded");
    }

    fs::path dir_;
    prefaulted read_buffer_;
    vector_state src_vector_, dst_vector_, empty_vector_;
    eigen_vector_state src_eigen_, dst_eigen_, empty_eigen_;
    arena_state src_arena_, dst_arena_;
    matrices_state src_matrices_, dst_matrices_;
};

// ---------------------------------------------------------------------------------------------
// The report

std::vector<double> ratios(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(a[i] / b[i]);
    return r;
}

/// "N" when every run counted N, "min-max" otherwise.
std::string count_text(const std::vector<std::uint64_t>& v) {
    if (v.empty()) return "-";
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    if (*lo == *hi) return std::to_string(*lo);
    return std::to_string(*lo) + "-" + std::to_string(*hi);
}

std::string ratio_text(const stats& s) {
    char out[64];
    std::snprintf(out, sizeof out, "%.2f / %.2f / %.2f", s.min, s.median, s.max);
    return out;
}

void print_table(const measurement& m, int runs) {
    std::printf("time in ms, min / median / max over %d runs; GB/s = tensor bytes / median time; "
                "ratio = time / the\nbaseline's time in the same run; allocs = allocations of "
                ">= 1 MiB during one call, operator new / malloc family\n\n",
                runs);
    std::printf("%-36s %8s %9s %8s %6s   %-22s %-20s %s\n", "operation", "min ms", "median ms",
                "max ms", "GB/s", "ratio min/median/max", "baseline", "allocs new/malloc");
    for (int o = 0; o < op_count; ++o) {
        const stats t = stats_of(m.seconds[o]);
        const double gbs = static_cast<double>(info[o].bytes) / t.median / 1e9;
        std::string ratio = "-";
        std::string base = "(baseline)";
        if (info[o].baseline >= 0) {
            ratio = ratio_text(stats_of(ratios(m.seconds[o], m.seconds[info[o].baseline])));
            base = info[info[o].baseline].name;
        }
#if CKPT_BENCH_COUNTS_MALLOC
        const std::string mallocs = count_text(m.malloc_big[o]);
#else
        const std::string mallocs = "n/a";
#endif
        const std::string allocs = count_text(m.new_big[o]) + " / " + mallocs;
        std::printf("%-36s %8.2f %9.2f %8.2f %6.2f   %-22s %-20s %s\n", info[o].name, t.min * 1e3,
                    t.median * 1e3, t.max * 1e3, gbs, ratio.c_str(), base.c_str(), allocs.c_str());
    }
}

struct comparison {
    const char* name;
    int a;
    int b;
    double target; ///< <= 0: none
};

void print_comparisons(const measurement& m) {
    const comparison list[] = {
        {"save:  std::vector<float> / Eigen::VectorXf", save_vector, save_eigen_vector, 1.1},
        {"load:  std::vector<float> / Eigen::VectorXf, sized", load_vector, load_eigen_vector, 1.1},
        {"load:  std::vector<float> / Eigen::VectorXf, empty", load_vector_empty,
         load_eigen_vector_empty, 0},
        {"save:  arena of views / 64 Eigen::MatrixXf", save_arena, save_matrices, 1.1},
        {"load:  arena of views / 64 Eigen::MatrixXf", load_arena, load_matrices, 0},
    };
    std::printf("\nnew kind / Eigen, time ratio of the same run (< 1: the new kind is faster)\n\n");
    std::printf("%-52s %-22s %s\n", "comparison", "ratio min/median/max", "target (median)");
    for (const comparison& c : list) {
        const stats s = stats_of(ratios(m.seconds[c.a], m.seconds[c.b]));
        char target[48] = "(no target)";
        if (c.target > 0) {
            std::snprintf(target, sizeof target, "<= %.2f  %s", c.target,
                          s.median <= c.target ? "PASS" : "MISS");
        }
        std::printf("%-52s %-22s %s\n", c.name, ratio_text(s).c_str(), target);
    }
}

void print_allocations(const measurement& m, int runs) {
    std::printf("\nallocations of >= 1 MiB during one load (every one of the %d timed runs):\n",
                runs);
    const int loads[] = {load_arena,        load_matrices,     load_vector,
                         load_eigen_vector, load_vector_empty, load_eigen_vector_empty};
    for (const int o : loads) {
#if CKPT_BENCH_COUNTS_MALLOC
        std::printf("  %-36s operator new: %-4s malloc family: %s\n", info[o].name,
                    count_text(m.new_big[o]).c_str(), count_text(m.malloc_big[o]).c_str());
#else
        std::printf("  %-36s operator new: %s\n", info[o].name, count_text(m.new_big[o]).c_str());
#endif
    }
    std::uint64_t arena = 0;
    for (const auto n : m.new_big[load_arena]) arena += n;
    for (const auto n : m.malloc_big[load_arena]) arena += n;
    std::printf("  (controls: an empty std::vector's resize goes through operator new, an empty "
                "VectorXf's through malloc)\n");
    std::printf("allocations >= 1 MiB during the arena load: %llu   target 0  %s\n",
                static_cast<unsigned long long>(arena), arena == 0 ? "PASS" : "MISS");
#if CKPT_BENCH_COUNTS_MALLOC
    std::uint64_t control = 0;
    for (const auto n : m.malloc_big[load_eigen_vector_empty]) control += n;
    if (control == 0) {
        std::printf("  warning: the malloc counter saw no allocation where one is expected\n");
    }
#endif
}

// ---------------------------------------------------------------------------------------------
// The command line

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: tensor_kinds [--runs N] [--dir PATH]\n"
                 "  --runs N    timed runs of every operation (default 7)\n"
                 "  --dir PATH  where the files go (default: the system's temporary directory);\n"
                 "              a new folder inside it, about 1 GiB, is removed at the end\n");
    std::exit(status);
}

} // namespace

int main(int argc, char** argv) {
    test::new_hook = count_new;
    int runs = 7;
    fs::path base;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") usage(0);
        if (i + 1 >= argc) usage(2);
        if (arg == "--runs") {
            runs = std::atoi(argv[++i]);
            if (runs < 1 || runs > 1000) usage(2);
        } else if (arg == "--dir") {
            base = argv[++i];
        } else {
            usage(2);
        }
    }
    fs::path dir;
    try {
        if (base.empty()) base = fs::temp_directory_path();
        dir = base / ("ckpt-bench-tensor_kinds-" + std::to_string(::getpid()));
        fs::create_directories(dir);
        std::printf("ckpt %s bench/tensor_kinds: %d runs, files in %s\n"
                    "64 MiB: std::vector<float> against Eigen::VectorXf (one tensor each)\n"
                    "256 MiB: an arena of %d ckpt::tensor views {%ld, %ld} against %d "
                    "Eigen::MatrixXf %ld x %ld\n\n",
                    CKPT_VERSION_STRING, runs, dir.c_str(), views, static_cast<long>(side),
                    static_cast<long>(side), views, static_cast<long>(side),
                    static_cast<long>(side));
        std::fflush(stdout);

        fixture f(dir);
        measurement warm_up;
        for (const auto& g : groups) {
            for (const int o : g) f.run(o, warm_up); // files, page cache, code
        }
        measurement m;
        for (int r = 0; r < runs; ++r) {
            for (const auto& g : groups) {
                const std::size_t n = g.size();
                for (std::size_t k = 0; k < n; ++k) {
                    f.run(g[(k + static_cast<std::size_t>(r)) % n], m);
                }
            }
            std::fprintf(stderr, "run %d of %d done\n", r + 1, runs);
        }
        std::error_code ec;
        fs::remove_all(dir, ec);

        print_table(m, runs);
        std::printf("\nckpt files: vector %llu, Eigen vector %llu, arena %llu, matrices %llu "
                    "bytes\n",
                    static_cast<unsigned long long>(m.file_bytes[save_vector]),
                    static_cast<unsigned long long>(m.file_bytes[save_eigen_vector]),
                    static_cast<unsigned long long>(m.file_bytes[save_arena]),
                    static_cast<unsigned long long>(m.file_bytes[save_matrices]));
        print_comparisons(m);
        print_allocations(m, runs);
        std::printf("(a benchmark, not a test: the exit status is 0 whatever the verdict)\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tensor_kinds: %s\n", e.what());
        std::error_code ec;
        if (!dir.empty()) fs::remove_all(dir, ec);
        return 2;
    }
    return 0;
}
