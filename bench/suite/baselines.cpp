#include "baselines.hpp"

#include "cleanup.hpp"
#include "clock.hpp"

#include <ckpt/ckpt.hpp>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL // header-only, as ckpt uses it (after ckpt: its choices come first)
#endif
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

namespace bench {

namespace {

namespace fs = std::filesystem;

volatile std::uint64_t g_sink = 0; // keeps hashes from being optimised away

} // namespace

prefaulted::prefaulted(std::size_t n, pages kind) : size_(std::max<std::size_t>(n, 1)) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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

prefaulted::~prefaulted() {
    ::munmap(data_, size_);
}

void fresh_target(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) die_errno("unlink", path);
    sync_directory(fs::path(path).parent_path().string());
}

void sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die_errno("open", dir);
    if (::syncfs(fd) != 0) die_errno("syncfs", dir);
    ::close(fd);
}

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

double raw_write_reserved(const std::string& path, const std::byte* p, std::size_t n) {
    constexpr std::size_t slice = std::size_t{4} << 20;      // ckpt's write size
    constexpr std::size_t writeback = std::size_t{32} << 20; // and its write-back interval
    const auto t0 = bench_clock::now();
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) die_errno("open", path);
    (void)::posix_fallocate(fd, 0, static_cast<::off_t>(n)); // no support is no error, as in ckpt
    std::size_t done = 0;
    std::size_t synced = 0;
    while (done < n) {
        const ::ssize_t w = ::write(fd, p + done, std::min(slice, n - done));
        if (w < 0) {
            if (errno == EINTR) continue;
            die_errno("write", path);
        }
        done += static_cast<std::size_t>(w);
        if (done - synced >= writeback) {
            (void)::sync_file_range(fd, static_cast<::off_t>(synced),
                                    static_cast<::off_t>(done - synced), SYNC_FILE_RANGE_WRITE);
            synced = done;
        }
    }
    if (::fsync(fd) != 0) die_errno("fsync", path);
    if (::close(fd) != 0) die_errno("close", path);
    return seconds_since(t0);
}

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

void fsync_path(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die_errno("open", path);
    if (::fsync(fd) != 0) die_errno("fsync", path);
    ::close(fd);
}

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

} // namespace bench
