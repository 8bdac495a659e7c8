#include "cleanup.hpp"

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace bench {

namespace {

/// Every file this program creates in the work directory, by name; a save that is cut short
/// leaves "<name>.tmp-<pid>-<n>" beside it. Whatever starts with one of these names is removed
/// at the end, and by the SIGINT/SIGTERM handler, which makes system calls only.
constexpr std::array<const char*, 10> work_files = {
    "state.ckpt",     "async.ckpt",     "raw.bin",      "cereal.bin",     "torch.pt",
    "rss-state.ckpt", "rss-cereal.bin", "rss-torch.pt", "torch_peer.log", "layout.ckpt"};

/// The directories this program creates in the work directory (the managers'): removed with
/// everything in them (files only: a manager of one process makes no subdirectory).
constexpr std::array<const char*, 2> work_dirs = {"manager-keep", "manager-delete"};

bool starts_with_one_of(const char* name, const char* const* list, std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t n = std::strlen(list[i]);
        if (std::strncmp(name, list[i], n) == 0 && (name[n] == '\0' || name[n] == '.')) return true;
    }
    return false;
}

bool is_work_file(const char* name) noexcept {
    return starts_with_one_of(name, work_files.data(), work_files.size());
}

bool is_work_dir(const char* name) noexcept {
    for (const char* w : work_dirs) {
        if (std::strcmp(name, w) == 0) return true;
    }
    return false;
}

/// Calls f(name) for every entry of the open directory `fd` but "." and "..".
template <class F>
void for_each_entry(int fd, F f) noexcept {
    alignas(8) char buf[8192];
    for (;;) {
        const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
            unsigned short reclen = 0;
            std::memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char* name = buf + off + 19;
            if (std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0) f(name);
            off += reclen;
        }
    }
}

} // namespace

cleanup_paths g_cleanup;

/// Async-signal-safe: open, openat, getdents64, unlinkat, close, rmdir.
void remove_work_files() noexcept {
    if (g_cleanup.dir[0] == '\0' || ::getpid() != g_cleanup.owner) return; // not in a fork
    const int fd = ::open(g_cleanup.dir.data(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        for_each_entry(fd, [fd](const char* name) {
            if (is_work_file(name)) {
                ::unlinkat(fd, name, 0);
            } else if (is_work_dir(name)) {
                const int sub = ::openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (sub < 0) return;
                for_each_entry(sub, [sub](const char* entry) { ::unlinkat(sub, entry, 0); });
                ::close(sub);
                ::unlinkat(fd, name, AT_REMOVEDIR);
            }
        });
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

} // namespace bench
