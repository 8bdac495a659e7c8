#pragma once

#include <ckpt/io/backend.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ckpt::io {

CKPT_INLINE backend& default_backend() {
    static posix_backend instance;
    return instance;
}

CKPT_INLINE int posix_backend::file_size(int fd, std::uint64_t& size) {
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    size = static_cast<std::uint64_t>(st.st_size);
    return 0;
}

CKPT_INLINE const void* posix_backend::map(int fd, std::size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    // A page that is not resident would be read on first touch, and a read error there is
    // a SIGBUS, not an errno: use the mapping only when every page is already in memory.
    if (!all_resident(p, size)) {
        ::munmap(p, size);
        errno = EAGAIN;
        return nullptr;
    }
    return p;
}

CKPT_INLINE int posix_backend::allocate(int fd, std::uint64_t size) {
    const int e = ::posix_fallocate(fd, 0, static_cast<::off_t>(size));
    if (e == 0 || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) return 0;
    errno = e;
    return -1;
}

CKPT_INLINE void posix_backend::start_writeback(int fd, std::uint64_t offset, std::uint64_t size) {
#if defined(__linux__)
    ::sync_file_range(fd, static_cast<::off_t>(offset), static_cast<::off_t>(size),
                      SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    (void)offset;
    (void)size;
#endif
}

CKPT_INLINE bool posix_backend::all_resident(void* p, std::size_t size) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t pages = (size + page - 1) / page;
    constexpr std::size_t batch = 4096;
    unsigned char flags[batch];
    for (std::size_t first = 0; first < pages; first += batch) {
        const std::size_t n = pages - first < batch ? pages - first : batch;
        auto* start = static_cast<char*>(p) + first * page;
        const std::size_t len = first + n == pages ? size - first * page : n * page;
        if (::mincore(start, len, flags) != 0) return false;
        for (std::size_t i = 0; i < n; ++i) {
            if ((flags[i] & 1U) == 0) return false;
        }
    }
    return true;
}

} // namespace ckpt::io
