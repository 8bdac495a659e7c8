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
constexpr std::array<const char*, 9> work_files = {
    "state.ckpt",     "async.ckpt",     "raw.bin",      "cereal.bin",    "torch.pt",
    "rss-state.ckpt", "rss-cereal.bin", "rss-torch.pt", "torch_peer.log"};

bool is_work_file(const char* name) noexcept {
    for (const char* w : work_files) {
        const std::size_t n = std::strlen(w);
        if (std::strncmp(name, w, n) == 0 && (name[n] == '\0' || name[n] == '.')) return true;
    }
    return false;
}

} // namespace

cleanup_paths g_cleanup;

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

} // namespace bench
