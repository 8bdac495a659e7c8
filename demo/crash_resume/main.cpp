// ckpt's crash-and-resume demo: `cmake --workflow --preset demo`.
//
// Trains the built-in MLP on two spirals with a ckpt::manager, in a child process that the
// parent kills for real (SIGKILL) at a random moment, by default in the middle of a save. The
// parent restarts the trainer on the same folder; it resumes from the newest good checkpoint and
// finishes. Then the parent trains an uninterrupted reference in a fresh folder and compares the
// two final training states byte for byte. It writes loss.csv and loss.svg.
//
//     ckpt_crash_resume [--out DIR] [--seed N] [--kill-after-ms MS] [--in-save-share P]
//                       [--steps N] [--hidden N]
//
// The trainer is the same program, run as `ckpt_crash_resume --train DIR --status-fd N
// [--go-fd N]`; the parent's reference run calls the same training function in-process.
//
// How a kill lands inside a save: the trainer's ckpt::io::backend (a wrapper around the POSIX
// one) reports every file-system call of a save on a pipe and, in the run the parent means to
// kill there, waits for the parent's go-ahead before making it. The parent picks a save and one
// of its calls at random and sends SIGKILL instead of the go-ahead: the trainer dies between two
// system calls of the save, a state any real crash can leave.
//
// The files (each .hpp declares what the others use, its .cpp defines it):
//   main.cpp           the command line: the parent's flags, or the trainer child's (--train)
//   config.hpp         what the run trains, and how it checkpoints (the child gets it as flags)
//   parent.hpp         the parent's script: kill, resume, reference, verdict
//   child_process.hpp  the parent's side of a trainer child: start it, read it, kill it
//   trainer.hpp        the training run, and the trainer child around it
//   listener.hpp       where a training run reports what it does (no .cpp)
//   pipe_protocol.hpp  the child's records on the pipe; the backend that reports a save's calls
//   run_log.hpp        what the parent records of a run, and its progress on the console
//   console.hpp        the console: a live status line on a terminal, plain lines otherwise
//   plot.hpp           loss.csv and loss.svg
//   text.hpp           join, split, number, format
//   common.hpp         the names every file uses: fs, clock_type (no .cpp)

#include "child_process.hpp"
#include "config.hpp"
#include "parent.hpp"
#include "trainer.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <signal.h>
#include <unistd.h>

namespace {

[[noreturn]] void usage(const char* message, int code = 2) {
    std::fprintf(code == 0 ? stdout : stderr,
                 "%s\nusage: ckpt_crash_resume [--out DIR] [--seed N] [--kill-after-ms MS]\n"
                 "                         [--in-save-share P] [--steps N] [--hidden N]\n"
                 "  --out DIR           where loss.csv, loss.svg and runs/ go (default: .)\n"
                 "  --seed N            the seed of the kill's choices (default: from the clock)\n"
                 "  --kill-after-ms MS  kill at this time after the trainer starts\n"
                 "  --in-save-share P   the chance that the kill lands inside a save (default 1)\n"
                 "  --steps N           training steps (default 8000)\n"
                 "  --hidden N          hidden layer width (default 128)\n",
                 message);
    std::exit(code);
}

} // namespace

int main(int argc, char** argv) {
    demo::config c;
    demo::parent_options o;
    std::optional<demo::fs::path> train_dir;
    int status_fd = STDOUT_FILENO;
    int go_fd = -1;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            const auto value = [&]() -> std::string {
                if (i + 1 >= argc) usage(("missing value after " + std::string(a)).c_str());
                return argv[++i];
            };
            if (a == "--out") {
                o.out = value();
            } else if (a == "--seed") {
                o.seed = std::stoull(value());
            } else if (a == "--kill-after-ms") {
                o.kill_after_ms = std::stod(value());
            } else if (a == "--in-save-share") {
                o.in_save_share = std::stod(value());
            } else if (a == "--steps") {
                c.steps = std::stoll(value());
            } else if (a == "--hidden") {
                c.hidden = std::stoll(value());
            } else if (a == "--train") {
                train_dir = value();
            } else if (a == "--status-fd") {
                status_fd = std::stoi(value());
            } else if (a == "--go-fd") {
                go_fd = std::stoi(value());
            } else if (a == "--help" || a == "-h") {
                usage("ckpt's crash-and-resume demo: trains, is killed with SIGKILL, resumes, "
                      "compares",
                      0);
            } else {
                usage(("unknown argument " + std::string(a)).c_str());
            }
        }
    } catch (const std::exception&) {
        usage("a number was expected");
    }
    if (c.steps < 1000 || c.hidden < 1) usage("--steps must be >= 1000, --hidden >= 1");

    if (train_dir) return demo::run_trainer(*train_dir, c, status_fd, go_fd);
    ::signal(SIGPIPE, SIG_IGN); // a child that dies is seen as EOF on its pipe
    try {
        return demo::run_parent(demo::self_path(argv[0]), c, o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
}
