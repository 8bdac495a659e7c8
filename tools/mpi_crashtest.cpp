// mpi_crashtest: kill trials for ckpt::mpi::manager. A job of R ranks (launched with mpiexec)
// trains the built-in MLP data-parallel (examples/data_parallel_trainer.hpp) and saves a
// distributed checkpoint on every step (every_steps(1), keep_last(2)); the driver SIGKILLs one
// rank at a random moment (mpiexec then ends the whole job), then restarts the job, as a
// resubmitted run would, and lets it finish.
//
//   mpi_crashtest [--trials N] [--ranks R] [--steps T] [--seed X] [--dir D] [--mpiexec PATH]
//                 [--async]
//
// --async: the manager saves in the background (distributed_manager_options::async): each
// rank's file is written by a thread of its own, and the commit (the manifest) is made by a
// later step() on the training thread; the job logs a commit when step() reports it.
//
// Checked after every kill:
//   1. The job ended (no rank left waiting in a collective): within a timeout.
//   2. Before the restart: the newest committed checkpoint (a directory with its manifest) is
//      the newest step the job logged as committed, or the one after it (its manifest was
//      renamed into place just before the kill, before the log line); nothing newer.
//   3. The restarted job removes every checkpoint directory without a manifest (a save the
//      kill interrupted) and resumes from exactly the newest committed checkpoint: never a
//      partial one, never an older one.
//   4. The restarted job ends with every rank's state byte-identical to a job that never
//      stopped (the reference run, made first): the checkpoint it resumed from was whole and
//      right, down to each rank's own noise generator.
//
// Exit status 0 when every trial passed, 1 on any failure, 2 on a usage or setup error.
#include "../examples/data_parallel_trainer.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef CKPT_MPIEXEC
#define CKPT_MPIEXEC "mpiexec"
#endif

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// The job: one rank of the trainer.

void append_line(const fs::path& file, const std::string& line) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    const std::string text = line + "\n";
    (void)!::write(fd, text.data(), text.size());
    ::close(fd);
}

void write_small_file(const fs::path& file, const std::string& text) {
    const fs::path temp = file.string() + ".tmp";
    std::ofstream(temp) << text;
    fs::rename(temp, file);
}

/// "C <step>" for each checkpoint a call committed.
void log_committed(const fs::path& dir, const ckpt::save_result& r) {
    for (const auto& p : r.committed) {
        append_line(dir / "log",
                    "C " + std::to_string(std::stoll(p.filename().string().substr(5))));
    }
}

std::string state_hash(const data_parallel::state& s) {
    ckpt::metadata same;
    same.time = std::chrono::system_clock::time_point(std::chrono::seconds(1));
    const std::vector<std::byte> bytes = ckpt::save_to_memory(s, same);
    return ckpt::detail::to_hex(ckpt::detail::hash_bytes(bytes.data(), bytes.size()));
}

int run_job(const fs::path& dir, std::int64_t steps, bool async) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    write_small_file(dir / ("pid-" + std::to_string(rank)), std::to_string(::getpid()));
    const auto data = data_parallel::make_data();
    data_parallel::state s = data_parallel::fresh(data, rank);
    ckpt::mpi::manager_options options;
    options.async = async;
    ckpt::mpi::manager m(MPI_COMM_WORLD, dir / "ckpt", ckpt::every_steps(1), ckpt::keep_last(2),
                         options);
    const auto restored = m.restore_latest(s);
    if (rank == 0) {
        append_line(dir / "log", "R " + std::to_string(restored ? restored->step : 0) +
                                     " cleaned " + std::to_string(m.cleaned().size()));
    }
    while (s.step < steps) {
        const double loss = data_parallel::train_step(s, data, MPI_COMM_WORLD);
        const ckpt::save_result r = m.step(s, {.step = s.step, .metrics = {{"loss", loss}}});
        if (rank == 0) log_committed(dir, r);
    }
    const ckpt::save_result last = m.wait();
    if (rank == 0) log_committed(dir, last);
    write_small_file(dir / ("final-" + std::to_string(rank)), state_hash(s));
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The driver.

struct options {
    int trials = 20;
    int ranks = 4;
    std::int64_t steps = 30;
    std::uint64_t seed = 1;
    fs::path dir = "mpi-crashtest";
    std::string mpiexec = CKPT_MPIEXEC;
    std::string self;
    bool async = false;
};

/// Starts the job; its output goes to `dir`/job.log. @returns the mpiexec process
pid_t launch(const options& o, const fs::path& dir) {
    const std::string ranks = std::to_string(o.ranks);
    const std::string steps = std::to_string(o.steps);
    const std::string dir_s = dir.string();
    const std::string log = (dir / "job.log").string();
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
        }
        const std::vector<const char*> argv = {o.mpiexec.c_str(),
                                               "-n",
                                               ranks.c_str(),
                                               o.self.c_str(),
                                               "--job",
                                               dir_s.c_str(),
                                               steps.c_str(),
                                               o.async ? "async" : "sync",
                                               nullptr};
        ::execvp(argv[0], const_cast<char* const*>(argv.data()));
        std::_Exit(127);
    }
    return pid;
}

/// Waits for `pid` at most `limit`. @returns its status, or nothing (then it is killed)
std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return std::nullopt;
}

std::vector<std::string> read_lines(const fs::path& file) {
    std::vector<std::string> out;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

/// Waits until the job in `dir` has logged its restore (training begins), or has ended, or
/// `limit` passed (the job is then killed). @returns whether it logged it
bool wait_for_start(pid_t job, const fs::path& dir, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        for (const auto& line : read_lines(dir / "log")) {
            if (line.rfind("R ", 0) == 0) return true;
        }
        int status = 0;
        if (::waitpid(job, &status, WNOHANG) == job) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ::kill(job, SIGKILL);
    int status = 0;
    ::waitpid(job, &status, 0);
    return false;
}

std::string read_text(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> final_hashes(const options& o, const fs::path& dir) {
    std::vector<std::string> out;
    for (int r = 0; r < o.ranks; ++r)
        out.push_back(read_text(dir / ("final-" + std::to_string(r))));
    return out;
}

/// The newest committed checkpoint's step in the job's directory (0: none), and how many
/// checkpoint directories have no manifest.
std::pair<std::int64_t, std::size_t> committed_on_disk(const fs::path& dir) {
    if (!fs::exists(dir / "ckpt")) return {0, 0};
    const ckpt::directory_listing found = ckpt::scan_directory(dir / "ckpt");
    std::int64_t newest = 0;
    for (const auto& e : found.checkpoints) {
        if (e.distributed) newest = std::max(newest, e.step);
    }
    return {newest, found.incomplete.size()};
}

int drive(const options& o) {
    // OpenMPI refuses root and more ranks than cores unless told.
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    ::setenv("OMPI_MCA_btl", "self,vader", 0);
    fs::remove_all(o.dir);
    fs::create_directories(o.dir);

    // The reference: a job that never stops. It also measures how long training takes once
    // the job has started (its "R" line), the window the kills aim at.
    const fs::path ref = o.dir / "reference";
    fs::create_directories(ref);
    const pid_t ref_job = launch(o, ref);
    const bool ref_started = wait_for_start(ref_job, ref, std::chrono::seconds(60));
    const auto t0 = std::chrono::steady_clock::now();
    const auto ref_status = wait_for(ref_job, std::chrono::seconds(120));
    const auto ref_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (!ref_started || !ref_status || !WIFEXITED(*ref_status) || WEXITSTATUS(*ref_status) != 0) {
        std::fprintf(stderr, "mpi_crashtest: the reference job failed; see %s\n",
                     (ref / "job.log").c_str());
        return 2;
    }
    const std::vector<std::string> reference = final_hashes(o, ref);
    std::printf("reference: %d ranks, %lld steps, %lld ms of training\n", o.ranks,
                static_cast<long long>(o.steps), static_cast<long long>(ref_ms));

    std::mt19937_64 rng(o.seed);
    int failures = 0;
    int killed = 0;
    int in_save = 0;
    int no_checkpoint = 0;
    const fs::path trial_dir = o.dir / "trial";
    for (int t = 1; t <= o.trials; ++t) {
        const auto fail = [&](const std::string& why) {
            ++failures;
            std::printf("trial %d: FAILED: %s (kept in %s-%d)\n", t, why.c_str(), trial_dir.c_str(),
                        t);
            std::error_code ec;
            fs::rename(trial_dir, trial_dir.string() + "-" + std::to_string(t), ec);
        };
        fs::remove_all(trial_dir);
        fs::create_directories(trial_dir);
        const pid_t job = launch(o, trial_dir);
        // Anywhere in the training, once the job has started (restored, or found nothing).
        std::uniform_int_distribution<long long> when(0, ref_ms);
        const auto delay = std::chrono::milliseconds(when(rng));
        if (!wait_for_start(job, trial_dir, std::chrono::seconds(60))) {
            fail("the job did not start within 60 s");
            continue;
        }
        std::uniform_int_distribution<int> who(0, o.ranks - 1);
        const int victim = who(rng);
        bool ended = false;
        const auto deadline = std::chrono::steady_clock::now() + delay;
        int status = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(job, &status, WNOHANG) == job) {
                ended = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        if (!ended) {
            const std::string pid_text = read_text(trial_dir / ("pid-" + std::to_string(victim)));
            if (!pid_text.empty() && ::kill(std::stoi(pid_text), SIGKILL) == 0) {
                ++killed;
            } else {
                ::kill(job, SIGKILL); // the rank has not started: end the launch itself
            }
            if (!wait_for(job, std::chrono::seconds(60))) {
                fail("the job did not end within 60 s after a rank was killed");
                continue;
            }
        }
        // 2. What is committed: the newest logged commit, or the one after it.
        std::int64_t logged = 0;
        for (const auto& line : read_lines(trial_dir / "log")) {
            if (line.rfind("C ", 0) == 0) logged = std::stoll(line.substr(2));
        }
        const auto [newest, incomplete] = committed_on_disk(trial_dir);
        if (incomplete != 0) ++in_save;
        if (newest == 0) ++no_checkpoint;
        if (newest < logged || newest > logged + 1) {
            fail("committed on disk: step " + std::to_string(newest) + ", logged: step " +
                 std::to_string(logged));
            continue;
        }
        // 3 and 4. The restart resumes from it and ends where the reference ended.
        const std::size_t log_lines = read_lines(trial_dir / "log").size();
        const auto restart = wait_for(launch(o, trial_dir), std::chrono::seconds(120));
        if (!restart || !WIFEXITED(*restart) || WEXITSTATUS(*restart) != 0) {
            fail("the restarted job failed");
            continue;
        }
        const std::vector<std::string> lines = read_lines(trial_dir / "log");
        if (lines.size() <= log_lines || lines[log_lines].rfind("R ", 0) != 0) {
            fail("the restarted job logged no restore");
            continue;
        }
        std::istringstream restored_line(lines[log_lines].substr(2));
        std::int64_t restored = -1;
        std::string word;
        std::size_t cleaned = 0;
        restored_line >> restored >> word >> cleaned;
        if (restored != newest) {
            fail("resumed from step " + std::to_string(restored) + ", the newest committed is " +
                 std::to_string(newest));
            continue;
        }
        if (cleaned != incomplete || committed_on_disk(trial_dir).second != 0) {
            fail("the restart cleaned " + std::to_string(cleaned) + " of " +
                 std::to_string(incomplete) + " incomplete checkpoints");
            continue;
        }
        if (final_hashes(o, trial_dir) != reference) {
            fail("the resumed job's final state differs from the reference's");
            continue;
        }
    }
    std::printf("mpi_crashtest%s: %d trials, %d ranks killed during the job, %d kills inside a "
                "save (a checkpoint directory without its manifest), %d before any commit; "
                "%d failures\n",
                o.async ? " --async" : "", o.trials, killed, in_save, no_checkpoint, failures);
    return failures == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::strcmp(argv[1], "--job") == 0) {
        MPI_Init(&argc, &argv);
        int status = 0;
        try {
            status = run_job(argv[2], std::stoll(argv[3]), std::strcmp(argv[4], "async") == 0);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mpi_crashtest job: %s\n", e.what());
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        MPI_Finalize();
        return status;
    }
    options o;
    o.self = fs::absolute(argv[0]).string();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "mpi_crashtest: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--trials") {
            o.trials = std::stoi(next());
        } else if (a == "--ranks") {
            o.ranks = std::stoi(next());
        } else if (a == "--steps") {
            o.steps = std::stoll(next());
        } else if (a == "--seed") {
            o.seed = std::stoull(next());
        } else if (a == "--dir") {
            o.dir = next();
        } else if (a == "--mpiexec") {
            o.mpiexec = next();
        } else if (a == "--async") {
            o.async = true;
        } else {
            std::fprintf(stderr,
                         "usage: mpi_crashtest [--trials N] [--ranks R] [--steps T] [--seed X] "
                         "[--dir D] [--mpiexec PATH] [--async]\n");
            return 2;
        }
    }
    if (o.trials < 1 || o.ranks < 1 || o.steps < 1) {
        std::fprintf(stderr, "mpi_crashtest: trials, ranks and steps must be >= 1\n");
        return 2;
    }
    return drive(o);
}
