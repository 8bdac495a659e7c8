#include "python_process.hpp"

#include "cleanup.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ; // NOLINT: POSIX, for posix_spawnp

namespace bench {

python_process::python_process(const std::vector<std::string>& argv, const std::string& log,
                               bool interactive) {
    int out[2] = {-1, -1};
    int in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0) die("pipe: " + std::string(std::strerror(errno)));
    if (interactive && ::pipe2(in, O_CLOEXEC) != 0)
        die("pipe: " + std::string(std::strerror(errno)));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (interactive)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int e = ::posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (interactive) ::close(in[0]);
    if (e != 0) {
        pid_ = -1;
        error_ = "cannot run " + argv[0] + ": " + std::strerror(e);
        ::close(out[0]);
        if (interactive) ::close(in[1]);
        return;
    }
    out_ = ::fdopen(out[0], "r");
    in_ = interactive ? in[1] : -1;
}

rapidjson::Document python_process::read() {
    rapidjson::Document d;
    std::string line;
    if (out_ != nullptr) {
        char* buf = nullptr;
        std::size_t cap = 0;
        const ::ssize_t n = ::getline(&buf, &cap, out_);
        if (n > 0) line.assign(buf, static_cast<std::size_t>(n));
        std::free(buf);
    }
    if (!line.empty()) d.Parse(line.c_str());
    if (line.empty() || d.HasParseError() || !d.IsObject()) {
        const std::string why = !error_.empty() ? error_
                                : line.empty()
                                    ? "the script ended without an answer"
                                    : "the script answered something that is not JSON: " + line;
        d.SetObject();
        d.AddMember("error", rapidjson::Value(why.c_str(), d.GetAllocator()), d.GetAllocator());
    }
    return d;
}

bool python_process::send(const std::string& command) {
    if (in_ < 0) return false;
    const std::string line = command + "\n";
    return ::write(in_, line.data(), line.size()) == static_cast<::ssize_t>(line.size());
}

int python_process::finish() {
    if (in_ >= 0) ::close(std::exchange(in_, -1));
    if (out_ != nullptr) std::fclose(std::exchange(out_, nullptr));
    if (pid_ <= 0) return -1;
    int status = 0;
    while (::waitpid(std::exchange(pid_, -1), &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace bench
