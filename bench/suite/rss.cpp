#include "rss.hpp"

#include <cstdlib>
#include <fstream>

#include <fcntl.h>
#include <sys/mman.h>

namespace bench {

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

bool reset_hwm() {
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, "5", 1) == 1;
    ::close(fd);
    return ok;
}

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

} // namespace bench
