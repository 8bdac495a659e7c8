#include "machine.hpp"

#include "format.hpp"
#include "state.hpp"

#include <ctime>
#include <fstream>
#include <system_error>

#include <sys/utsname.h>
#include <unistd.h>

namespace bench {

namespace {

namespace fs = std::filesystem;

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

} // namespace

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

} // namespace bench
