#include "child_process.hpp"

#include "text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace demo {
namespace {

/// The last file-system call a kill outside lockstep saw the trainer start, in words.
std::string describe_started(const std::string& op, const std::string& file) {
    static const std::map<std::string, std::string> names = {
        {"open", "creating the temporary file"},
        {"allocate", "reserving the temporary file's space"},
        {"write", "writing the checkpoint's bytes"},
        {"pwrite", "writing the checksum"},
        {"fsync", "fsync of the temporary file"},
        {"close", "closing the temporary file"},
        {"rename", "renaming the temporary file into place"},
        {"open-dir", "opening the directory to sync it, after the rename"},
        {"fsync-dir", "fsync of the directory, after the rename"},
        {"close-dir", "closing the directory, after the rename"},
        {"unlink", "retention deleting " + file}};
    const auto it = names.find(op);
    return "the last call it had started: " + (it != names.end() ? it->second : op);
}

/// The call a lockstep kill stopped the trainer before, in words.
std::string describe_op(const std::string& op, const std::string& file) {
    if (op == "open") return "before it created the temporary file";
    if (op == "allocate") return "before it reserved the temporary file's space";
    if (op == "write") return "before it wrote the checkpoint's bytes to the temporary file";
    if (op == "pwrite") return "before it wrote the checksum into the temporary file";
    if (op == "fsync") return "before fsync of the temporary file";
    if (op == "close") return "before it closed the temporary file";
    if (op == "rename") return "before it renamed the temporary file into place";
    if (op == "open-dir") return "after the rename, before it opened the directory to sync it";
    if (op == "fsync-dir") return "after the rename, before fsync of the directory";
    if (op == "close-dir") return "after the rename and the directory's fsync";
    if (op == "unlink") return "after the save, before retention deleted " + file;
    return "at '" + op + "'";
}

} // namespace

std::string self_path(const char* argv0) {
    std::error_code ec;
    const fs::path p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(argv0) : p.string();
}

child_process::child_process(const std::string& exe, const fs::path& dir, const config& c,
                             bool lockstep) {
    int status[2];
    int go[2];
    if (::pipe2(status, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) {
        throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    std::vector<std::string> args = {exe, "--train", dir.string(), "--status-fd",
                                     std::to_string(status[1])};
    if (lockstep) {
        args.push_back("--go-fd");
        args.push_back(std::to_string(go[0]));
    }
    for (auto& f : config_flags(c)) args.push_back(std::move(f));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    std::fflush(stdout);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
        // Only the child's ends survive exec; SIGPIPE back to its default (the parent ignores
        // it, and an ignored signal stays ignored across exec).
        ::signal(SIGPIPE, SIG_DFL);
        ::fcntl(status[1], F_SETFD, 0);
        if (lockstep) ::fcntl(go[0], F_SETFD, 0);
        ::execv(exe.c_str(), argv.data());
        std::_Exit(127);
    }
    ::close(status[1]);
    ::close(go[0]);
    status_fd_ = status[0];
    if (lockstep) {
        go_fd_ = go[1];
    } else {
        ::close(go[1]);
    }
    started_ = clock_type::now();
}

child_process::~child_process() {
    if (status_fd_ >= 0) ::close(status_fd_);
    if (go_fd_ >= 0) ::close(go_fd_);
    if (pid_ > 0 && !reaped_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

child_result child_process::run(recorder& rec, run_log& log, kill_plan* plan, kill_record& kill) {
    std::string pending;
    std::string error;
    std::optional<clock_type::time_point> deadline;
    if (plan != nullptr && plan->after_ms) {
        deadline = started_ +
                   std::chrono::microseconds(static_cast<std::int64_t>(*plan->after_ms * 1000.0));
    }
    bool in_save = false;
    std::size_t call = 0;
    std::string last_op;
    std::string last_file;
    std::int64_t save_step = 0;
    const auto do_kill = [&](std::string op, std::string file) {
        ::kill(pid_, SIGKILL);
        kill.killed = true;
        kill.lockstep = go_fd_ >= 0;
        kill.during_save = in_save;
        kill.save_step = save_step;
        kill.op = std::move(op);
        kill.op_file = std::move(file);
        kill.call = call;
        kill.seconds = std::chrono::duration<double>(clock_type::now() - started_).count();
    };
    const auto handle = [&](const std::string& text) {
        const auto f = split(text, '\t');
        const std::string& kind = f[0];
        if (kind == "T" && f.size() == 4) {
            const std::int64_t step = std::stoll(f[1]);
            std::optional<double> val;
            if (f[3] != "-") val = std::stod(f[3]);
            rec.stepped(step, std::stod(f[2]), val);
            // Time mode without a fixed delay: a random moment within a few steps of the
            // target step, wherever the trainer is then (computing, or in a save).
            if (plan != nullptr && !plan->in_save && !plan->after_ms && !deadline &&
                step >= plan->target_step) {
                deadline = clock_type::now() +
                           std::chrono::microseconds(
                               std::uniform_int_distribution<std::int64_t>(0, 3000)(rng_));
            }
        } else if (kind == "IO" && f.size() == 3) {
            if (f[1] == "open") {
                in_save = true;
                call = 0;
                save_step = log.last_step();
            } else {
                ++call;
            }
            last_op = f[1];
            last_file = f[2];
            if (go_fd_ >= 0 && plan != nullptr && plan->in_save) {
                const bool target = !kill.killed && in_save && plan->call_index &&
                                    save_step >= plan->target_step && call == *plan->call_index;
                if (target) {
                    do_kill(f[1], f[2]);
                } else if (!kill.killed) {
                    send_go();
                }
            } else if (go_fd_ >= 0) {
                send_go();
            }
        } else if (kind == "V" && f.size() == 6) {
            save_record r{std::stoll(f[1]), std::stod(f[2]), split(f[4], ';'), f[3], {}};
            if (!f[5].empty()) r.deleted = split(f[5], ';');
            rec.saved(r);
            if (plan != nullptr && plan->in_save && !plan->call_index) {
                // The first save tells how many calls a save makes: pick one of them.
                plan->call_index = static_cast<std::size_t>(
                    std::uniform_int_distribution<std::size_t>(0, call)(rng_));
            }
            in_save = false;
        } else if (kind == "R" && f.size() == 3) {
            rec.restored(std::stoll(f[1]), f[2], {}, {});
        } else if (kind == "C" && f.size() == 2) {
            log.cleaned.push_back(f[1]);
        } else if (kind == "K" && f.size() == 4) {
            log.skipped.push_back(f[1] + " (" + f[2] + ": " + f[3] + ")");
        } else if (kind == "D" && f.size() == 6) {
            rec.finished({std::stoull(f[1]), std::stoull(f[2]), std::stoull(f[3]), std::stod(f[4]),
                          std::stod(f[5])});
        } else if (kind == "E" && f.size() >= 2) {
            error = f[1];
        }
    };

    char buf[1 << 16];
    while (true) {
        int timeout = -1;
        if (deadline && !kill.killed) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                *deadline - clock_type::now());
            timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        pollfd p{status_fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, timeout);
        if (ready < 0 && errno != EINTR) break;
        if (deadline && !kill.killed && clock_type::now() >= *deadline) {
            do_kill(last_op, last_file);
        }
        if (ready <= 0) continue;
        const ::ssize_t n = ::read(status_fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; // the child is gone
        pending.append(buf, static_cast<std::size_t>(n));
        std::size_t at = 0;
        while (true) {
            const std::size_t nl = pending.find('\n', at);
            if (nl == std::string::npos) break;
            handle(pending.substr(at, nl - at));
            at = nl + 1;
        }
        pending.erase(0, at);
    }
    if (kill.killed) {
        // Lines the child wrote before it died arrive after the kill: count them all.
        kill.last_step = log.last_step();
        if (plan == nullptr || !plan->in_save) {
            kill.during_save = in_save;
            kill.save_step = save_step;
            kill.op = last_op;
            kill.op_file = last_file;
            kill.call = call;
        }
    }
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    child_result r;
    r.exited = WIFEXITED(wstatus);
    r.exit_code = r.exited ? WEXITSTATUS(wstatus) : 0;
    r.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    r.error = error;
    return r;
}

void child_process::send_go() const {
    while (::write(go_fd_, "g", 1) < 0 && errno == EINTR) {
    }
}

std::string describe_kill(const kill_record& k) {
    return k.lockstep ? describe_op(k.op, k.op_file) : describe_started(k.op, k.op_file);
}

} // namespace demo
