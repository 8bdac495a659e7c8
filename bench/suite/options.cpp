#include "options.hpp"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace bench {

namespace {

[[noreturn]] void usage(int status) {
    std::fprintf(
        status == 0 ? stdout : stderr,
        "usage: bench-suite [--runs N] [--sizes 1,64,256 | --big] [--in-flight N] [--dir PATH]\n"
        "                   [--python PATH] [--torch-peer PATH] [--no-torch] [--no-rss]\n"
        "                   [--no-layouts] [--json FILE] [--markdown]\n"
        "  --runs N         timed runs per size (default 7): min / median / max over them\n"
        "  --sizes LIST     state sizes in MiB, comma-separated (default 1,64,256)\n"
        "  --big            the default sizes and 1024 MiB\n"
        "  --in-flight N    async_options::max_in_flight (default 1)\n"
        "  --dir PATH       where the files go (default: a new directory under the build tree,\n"
        "                   removed at the end); it needs about (runs + 8) x the largest size\n"
        "                   free: the manager that never deletes keeps runs + 1 checkpoints\n"
        "  --python PATH    the Python that has torch (default /usr/bin/python3)\n"
        "  --torch-peer P   the peer script (default: bench/torch_peer.py of the source tree)\n"
        "  --no-torch       skip the torch peer\n"
        "  --no-rss         skip the peak RSS measurements\n"
        "  --no-layouts     skip the tensor granularity tables (each size >= 64 MiB as 2, 64,\n"
        "                   64 KiB and 4 KiB tensors)\n"
        "  --json FILE      also write every figure, per run, to FILE\n"
        "  --markdown       print Markdown tables (for the README) instead of plain text\n");
    std::exit(status);
}

} // namespace

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
        } else if (a == "--no-layouts") {
            o.layouts = false;
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

} // namespace bench
