#pragma once
// A child process (the torch peer's Python) that answers one JSON object per line on its
// stdout, and reads commands on its stdin when interactive.

#include <rapidjson/document.h>

#include <cstdio>
#include <string>
#include <vector>

#include <sys/types.h>

namespace bench {

class python_process {
public:
    /// Starts `argv` (argv[0] looked up in PATH) with its stdout on a pipe, its stderr appended
    /// to `log`, and its stdin on a pipe when `interactive`.
    python_process(const std::vector<std::string>& argv, const std::string& log, bool interactive);
    python_process(const python_process&) = delete;
    python_process& operator=(const python_process&) = delete;
    ~python_process() { finish(); }

    /// The next line of output as JSON; an object with "error" when there is none.
    rapidjson::Document read();

    /// Sends one command line. @returns false when the script is gone
    bool send(const std::string& command);

    /// Closes its stdin and waits for it. @returns its exit status, or -1
    int finish();

private:
    ::pid_t pid_ = -1;
    std::FILE* out_ = nullptr;
    int in_ = -1;
    std::string error_;
};

} // namespace bench
