// The README's C++ blocks as one program (tools/readme_snippets.py writes one file per block):
// `readme_snippets <line>` runs the block whose fence is on that line of README.md, in a fresh
// empty folder made inside the working directory, and removes the folder when the block
// succeeds (a failed block's folder is kept and named). Exit status 0 when the block returns 0
// without throwing.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace readme {

struct block {
    int line;
    int (*run)();
    /// {name in the working folder, file to copy there}
    std::vector<std::pair<std::string, std::string>> files;
};

} // namespace readme

#include "readme-blocks.hpp"

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    const std::string wanted = argc == 2 ? argv[1] : "";
    for (const readme::block& b : readme_blocks) {
        if (std::to_string(b.line) != wanted) continue;
        std::string dir = (fs::current_path() / ("line-" + wanted + "-XXXXXX")).string();
        if (::mkdtemp(dir.data()) == nullptr) {
            std::cerr << "mkdtemp " << dir << ": " << std::strerror(errno) << '\n';
            return 2;
        }
        fs::current_path(dir);
        for (const auto& [name, from] : b.files) fs::copy_file(from, name);
        int status = 1;
        try {
            status = b.run();
        } catch (const std::exception& e) {
            std::cerr << "README.md, the block at line " << b.line << " threw: " << e.what()
                      << '\n';
        }
        fs::current_path(fs::path(dir).parent_path());
        if (status == 0) {
            fs::remove_all(dir);
        } else {
            std::cerr << "its folder is kept: " << dir << '\n';
        }
        return status;
    }
    std::cerr << "usage: " << argv[0] << " <line>: the line of a block of README.md, one of";
    for (const readme::block& b : readme_blocks) std::cerr << ' ' << b.line;
    std::cerr << '\n';
    return 2;
}
