#pragma once
// The parent's side of a trainer child: starts it (this program, with --train), reads its
// reports (the records of pipe_protocol.hpp) and kills it, in a save or at a moment in time.

#include "common.hpp"
#include "config.hpp"
#include "run_log.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include <sys/types.h>

namespace demo {

/// Where to kill: in a save (lockstep) or at a moment in time.
struct kill_plan {
    bool in_save = true;
    std::int64_t target_step = 0;          ///< the first save at or after this step
    std::optional<std::size_t> call_index; ///< which of that save's calls; chosen at first save
    std::optional<double> after_ms;        ///< time mode: fixed delay from the start
};

/// What the kill hit.
struct kill_record {
    bool killed = false;
    bool lockstep = false;       ///< the trainer waited before each call: `op` was not made
    std::int64_t last_step = 0;  ///< the last step the trainer completed
    bool during_save = false;    ///< between a save's first file-system call and its report
    bool save_committed = false; ///< the interrupted save's file was in place all the same
    std::int64_t save_step = 0;  ///< the save it interrupted
    std::string op;              ///< the call it was about to make (lockstep) or last started
    std::string op_file;
    std::size_t call = 0; ///< its index in the save
    double seconds = 0;   ///< after the trainer started
};

struct child_result {
    bool exited = false;
    int exit_code = 0;
    int signal = 0;
    std::string error;
};

/// This program's path, to run it again as the trainer child.
std::string self_path(const char* argv0);

class child_process {
public:
    child_process(const std::string& exe, const fs::path& dir, const config& c, bool lockstep);
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process();

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] clock_type::time_point started() const noexcept { return started_; }

    /// Reads the child's reports until it exits; `plan` (if any) says when to kill it.
    child_result run(recorder& rec, run_log& log, kill_plan* plan, kill_record& kill);

    void seed(std::uint64_t s) { rng_.seed(s); }

private:
    /// Lets the child make its next call; a child that died meanwhile is noticed at EOF.
    void send_go() const;

    pid_t pid_ = -1;
    int status_fd_ = -1;
    int go_fd_ = -1;
    bool reaped_ = false;
    clock_type::time_point started_{};
    std::mt19937_64 rng_;
};

/// Where the kill landed in the save it interrupted, in words.
std::string describe_kill(const kill_record& k);

} // namespace demo
