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
#include <ckpt/ckpt.hpp>
#include <ckpt/nn.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using state_type = ckpt::nn::train_state<float>;

// ---------------------------------------------------------------------------------------------
// The training run: the same in the trainer child and in the in-process reference.

/// What the run trains, and how it checkpoints. The child gets these as flags.
struct config {
    std::int64_t steps = 8000;
    std::int64_t hidden = 128;
    std::int64_t batch = 32;
    double lr = 1e-3;
    std::int64_t per_class = 500; ///< points per spiral arm, in the training and validation sets
    double noise = 0.05;
    std::int64_t eval_every = 200;  ///< validation loss every this many steps
    std::int64_t save_every = 1000; ///< every_steps(n) of the save policy
    std::int64_t smooth = 50;       ///< the picture's training loss: mean of this many steps
};

constexpr std::uint64_t data_seed = 1;
constexpr std::uint64_t validation_seed = 2;
constexpr std::uint64_t model_seed = 7;
constexpr std::uint64_t sampler_seed = 11;
constexpr std::uint64_t noise_seed = 13;
constexpr const char* checkpoint_prefix = "spirals";

ckpt::save_policy save_policy(const config& c) {
    return ckpt::every_steps(c.save_every) | ckpt::on_best("val_loss");
}
ckpt::retention retention() {
    return ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss");
}

std::string architecture(const config& c) {
    return "2-" + std::to_string(c.hidden) + "-" + std::to_string(c.hidden) + "-2";
}

state_type fresh_state(const config& c, std::int64_t data_size) {
    state_type s;
    s.model =
        ckpt::nn::mlp<float>({2, c.hidden, c.hidden, 2}, ckpt::nn::activation::relu, model_seed);
    s.optimizer = ckpt::nn::adam<float>(s.model, {.lr = c.lr});
    s.sampler = ckpt::nn::sampler(data_size, c.batch, sampler_seed);
    s.rng.seed(noise_seed);
    return s;
}

/// One save, as the trainer saw it.
struct save_record {
    std::int64_t step = 0;
    double seconds = 0;
    std::vector<std::string> reasons;
    std::string file;
    std::vector<std::string> deleted;
};

/// The end of a run: its manager's stats.
struct finish_record {
    std::uint64_t written = 0;
    std::uint64_t on_disk = 0;
    std::uint64_t bytes_on_disk = 0;
    double save_seconds = 0;
    double train_seconds = 0;
};

/// Where a training run reports what it does: a pipe to the parent, or the parent itself.
class listener {
public:
    virtual ~listener() = default;
    virtual void restored(std::int64_t step, const std::string& file,
                          const std::vector<ckpt::skipped_checkpoint>& skipped,
                          const std::vector<fs::path>& cleaned) = 0;
    virtual void stepped(std::int64_t step, double loss, std::optional<double> val) = 0;
    virtual void saved(const save_record& r) = 0;
    virtual void finished(const finish_record& f) = 0;
};

/// Trains to c.steps in `dir`, resuming from the newest good checkpoint there; the final state
/// is always saved. `arm` is called once the loop starts (the reporting backend waits for it).
state_type train(const fs::path& dir, const config& c, listener& out, ckpt::io::backend* io,
                 void (*arm)(bool) = nullptr) {
    const auto data = ckpt::nn::two_spirals<float>(c.per_class, c.noise, data_seed);
    const auto validation = ckpt::nn::two_spirals<float>(c.per_class, c.noise, validation_seed);
    state_type s = fresh_state(c, data.size());

    ckpt::manager_options options;
    options.prefix = checkpoint_prefix;
    options.backend = io;
    ckpt::manager m(dir, save_policy(c), retention(), options);

    double val_loss = 0;
    if (const auto meta = m.restore_latest(s)) {
        // The val loss a step passes is the latest evaluated one; the checkpoint has it.
        val_loss = meta->metrics.at("val_loss");
        out.restored(meta->step, m.path_of(meta->step).filename().string(), m.skipped(),
                     m.cleaned());
    } else {
        out.restored(0, "", m.skipped(), m.cleaned());
        val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, validation));
        out.stepped(0, std::nan(""), val_loss);
    }

    if (arm != nullptr) arm(true);
    const auto started = clock_type::now();
    while (s.step < c.steps) {
        const double loss = static_cast<double>(ckpt::nn::train_step(s, data));
        std::optional<double> evaluated;
        if (s.step % c.eval_every == 0) {
            val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, validation));
            evaluated = val_loss;
        }
        out.stepped(s.step, loss, evaluated);

        ckpt::metadata meta;
        meta.step = s.step;
        meta.epoch = s.epoch;
        meta.metrics = {{"val_loss", val_loss}, {"loss", loss}};
        ckpt::save_result r = m.step(s, meta);
        if (!r && s.step == c.steps) r = m.save_now(s, meta); // the final state, always
        if (r) {
            save_record rec{
                s.step, m.stats().last_save_seconds, r.reasons, r.path.filename().string(), {}};
            for (const auto& d : r.deleted) rec.deleted.push_back(d.filename().string());
            out.saved(rec);
        }
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    if (arm != nullptr) arm(false);
    const ckpt::manager_stats st = m.stats();
    out.finished({st.checkpoints_written, st.checkpoints_on_disk, st.bytes_on_disk,
                  st.total_save_seconds, seconds});
    return s;
}

// ---------------------------------------------------------------------------------------------
// The trainer child: reports on a pipe, one line a record, fields separated by tabs.
//
//   R <step> <file>                resumed from (step 0, empty file: a fresh start)
//   C <file>                       a temporary file of a dead save, removed at start
//   K <file> <error id> <message>  a checkpoint restore passed over
//   T <step> <loss> <val or ->     a step done
//   IO <op> <file>                 a file-system call a save is about to make
//   V <step> <s> <file> <reasons> <deleted>    a save committed (lists joined by ';')
//   D <written> <on disk> <bytes> <save s> <train s>
//   E <message>                    an error; the trainer exits 1

void write_fully(int fd, const std::string& s) {
    const char* p = s.data();
    std::size_t n = s.size();
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) std::_Exit(3); // the parent is gone
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\t', ' ');
    return s;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : std::string(sep)) + x;
    return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        const std::size_t at = s.find(sep, start);
        out.emplace_back(s.substr(start, at - start));
        if (at == std::string_view::npos) break;
        start = at + 1;
    }
    return out;
}

std::string number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v); // enough for a float's every digit
    return buf;
}

class pipe_listener final : public listener {
public:
    explicit pipe_listener(int fd) : fd_(fd) {}
    void restored(std::int64_t step, const std::string& file,
                  const std::vector<ckpt::skipped_checkpoint>& skipped,
                  const std::vector<fs::path>& cleaned) override {
        for (const auto& c : cleaned) write_fully(fd_, "C\t" + c.filename().string() + "\n");
        for (const auto& k : skipped) {
            write_fully(fd_, "K\t" + k.path.filename().string() + "\t" +
                                 std::to_string(k.error_id) + "\t" + one_line(k.reason) + "\n");
        }
        write_fully(fd_, "R\t" + std::to_string(step) + "\t" + file + "\n");
    }
    void stepped(std::int64_t step, double loss, std::optional<double> val) override {
        write_fully(fd_, "T\t" + std::to_string(step) + "\t" + number(loss) + "\t" +
                             (val ? number(*val) : std::string("-")) + "\n");
    }
    void saved(const save_record& r) override {
        write_fully(fd_, "V\t" + std::to_string(r.step) + "\t" + number(r.seconds) + "\t" + r.file +
                             "\t" + join(r.reasons, ";") + "\t" + join(r.deleted, ";") + "\n");
    }
    void finished(const finish_record& f) override {
        write_fully(fd_, "D\t" + std::to_string(f.written) + "\t" + std::to_string(f.on_disk) +
                             "\t" + std::to_string(f.bytes_on_disk) + "\t" +
                             number(f.save_seconds) + "\t" + number(f.train_seconds) + "\n");
    }

private:
    int fd_;
};

/// The POSIX backend, reporting each call on the status pipe once armed; in lockstep it then
/// waits for one byte from the parent before making the call (the parent may SIGKILL instead).
class reporting_backend final : public ckpt::io::backend {
public:
    reporting_backend(int status_fd, int go_fd) : status_fd_(status_fd), go_fd_(go_fd) {}

    void arm(bool on) noexcept { armed_ = on; }

    int open(const char* path, int flags, ::mode_t mode) override {
        const bool dir = (flags & O_DIRECTORY) != 0;
        const bool creates = (flags & O_CREAT) != 0;
        report(dir ? "open-dir" : creates ? "open" : "open-read", path);
        const int fd = real_.open(path, flags, mode);
        if (fd >= 0 && dir) dir_fd_ = fd;
        return fd;
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        report("write", "");
        return real_.write(fd, data, n);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        report("pwrite", "");
        return real_.pwrite(fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        return real_.pread(fd, data, n, offset);
    }
    int fsync(int fd) override {
        report(fd == dir_fd_ ? "fsync-dir" : "fsync", "");
        return real_.fsync(fd);
    }
    int close(int fd) override {
        report(fd == dir_fd_ ? "close-dir" : "close", "");
        if (fd == dir_fd_) dir_fd_ = -1;
        return real_.close(fd);
    }
    int rename(const char* from, const char* to) override {
        report("rename", to);
        return real_.rename(from, to);
    }
    int unlink(const char* path) override {
        report("unlink", path);
        return real_.unlink(path);
    }
    int file_size(int fd, std::uint64_t& size) override { return real_.file_size(fd, size); }
    const void* map(int fd, std::size_t size) override { return real_.map(fd, size); }
    void unmap(const void* data, std::size_t size) override { real_.unmap(data, size); }
    int allocate(int fd, std::uint64_t size) override {
        report("allocate", "");
        return real_.allocate(fd, size);
    }
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override {
        real_.start_writeback(fd, offset, size);
    }

private:
    void report(const char* op, const char* path) {
        if (!armed_) return;
        const int saved_errno = errno;
        write_fully(status_fd_,
                    std::string("IO\t") + op + "\t" + fs::path(path).filename().string() + "\n");
        if (go_fd_ >= 0) {
            char go = 0;
            while (::read(go_fd_, &go, 1) < 0 && errno == EINTR) {
            }
        }
        errno = saved_errno;
    }

    ckpt::io::posix_backend real_;
    int status_fd_;
    int go_fd_;
    bool armed_ = false;
    int dir_fd_ = -1;
};

reporting_backend* g_backend = nullptr;
void arm_backend(bool on) {
    if (g_backend != nullptr) g_backend->arm(on);
}

int run_trainer(const fs::path& dir, const config& c, int status_fd, int go_fd) {
    pipe_listener out(status_fd);
    reporting_backend io(status_fd, go_fd);
    g_backend = &io;
    try {
        train(dir, c, out, &io, &arm_backend);
    } catch (const std::exception& e) {
        write_fully(status_fd, "E\t" + one_line(e.what()) + "\n");
        std::fprintf(stderr, "trainer: %s\n", e.what());
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The console: a live status line on a terminal, plain lines at a modest rate otherwise.

class console {
public:
    console() : tty_(::isatty(STDOUT_FILENO) == 1) {}

    [[nodiscard]] bool tty() const noexcept { return tty_; }

    void line(const std::string& s) {
        clear_status();
        std::fputs(s.c_str(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
    }

    /// On a terminal: redraws the status line (at most ~30 times a second unless `force`).
    void status(const std::string& s, bool force = false) {
        if (!tty_) return;
        const auto now = clock_type::now();
        if (!force && shown_ && now - last_ < std::chrono::milliseconds(33)) return;
        last_ = now;
        std::fputs(("\r\x1b[K" + s).c_str(), stdout);
        std::fflush(stdout);
        shown_ = true;
    }

    void clear_status() {
        if (tty_ && shown_) std::fputs("\r\x1b[K", stdout);
        shown_ = false;
    }

private:
    bool tty_;
    bool shown_ = false;
    clock_type::time_point last_{};
};

console& out() {
    static console c;
    return c;
}

std::string format(const char* fmt, auto... args) {
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, args...);
    return buf;
}

std::string human_bytes(std::uint64_t b) {
    if (b < 1024) return std::to_string(b) + " B";
    if (b < 1024 * 1024) return format("%.1f KiB", static_cast<double>(b) / 1024.0);
    return format("%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
}

std::string describe_reasons(const std::vector<std::string>& reasons) {
    std::vector<std::string> shown;
    for (const auto& r : reasons) shown.push_back(r == "save_now" ? "save_now (final state)" : r);
    return join(shown, " + ");
}

// ---------------------------------------------------------------------------------------------
// What the parent records of a run (a child's, or the reference's).

struct step_row {
    std::int64_t step = 0;
    double loss = std::nan(""); ///< NaN at step 0
    std::optional<double> val;
};

struct run_log {
    std::string name;  ///< "interrupted", "resumed", "reference" (loss.csv's run column)
    std::string label; ///< on the console
    std::vector<step_row> rows;
    std::vector<save_record> saves;
    std::int64_t resumed_from = 0;
    std::string resumed_file;
    std::vector<std::string> cleaned;
    std::vector<std::string> skipped;
    std::optional<finish_record> finish;
    std::optional<double> latest_val;

    [[nodiscard]] std::int64_t last_step() const { return rows.empty() ? 0 : rows.back().step; }
    /// The latest validation loss at `step` (what the manager was given).
    [[nodiscard]] double val_at(std::int64_t step) const {
        double v = std::nan("");
        for (const auto& r : rows) {
            if (r.step > step) break;
            if (r.val) v = *r.val;
        }
        return v;
    }
};

/// Records a run and shows its progress.
class recorder final : public listener {
public:
    recorder(run_log& log, const config& c, bool show_saves)
        : log_(log), c_(c), show_saves_(show_saves) {}

    void restored(std::int64_t step, const std::string& file,
                  const std::vector<ckpt::skipped_checkpoint>& skipped,
                  const std::vector<fs::path>& cleaned) override {
        for (const auto& p : cleaned) log_.cleaned.push_back(p.filename().string());
        for (const auto& k : skipped) {
            log_.skipped.push_back(k.path.filename().string() + " (" + std::to_string(k.error_id) +
                                   ": " + k.reason + ")");
        }
        log_.resumed_from = step;
        log_.resumed_file = file;
        if (!show_saves_) return;
        for (const auto& c : log_.cleaned) {
            out().line("    cleaned " + c +
                       ": the temporary file of the save the kill interrupted");
        }
        for (const auto& k : log_.skipped) out().line("    skipped " + k);
        if (step == 0) {
            out().line("    no checkpoint yet: a fresh start");
        } else {
            out().line(format("    resumed from %s (step %lld), the newest checkpoint that loads "
                              "cleanly",
                              file.c_str(), static_cast<long long>(step)));
        }
    }
    void stepped(std::int64_t step, double loss, std::optional<double> val) override {
        log_.rows.push_back({step, loss, val});
        if (val) log_.latest_val = val;
        if (step == 0) return;
        const std::string s = status_text(step, loss);
        if (out().tty()) {
            out().status(s, step == c_.steps);
        } else if (step % (c_.steps / 8) == 0) {
            out().line(s);
        }
    }
    void saved(const save_record& r) override {
        log_.saves.push_back(r);
        if (!show_saves_) return;
        std::string s = format("    save  step %5lld  %-46s -> %s", static_cast<long long>(r.step),
                               describe_reasons(r.reasons).c_str(), r.file.c_str());
        if (!r.deleted.empty()) s += "  (retention deleted " + join(r.deleted, ", ") + ")";
        out().line(s);
    }
    void finished(const finish_record& f) override {
        log_.finish = f;
        out().clear_status();
    }

private:
    std::string status_text(std::int64_t step, double loss) const {
        constexpr int width = 24;
        const auto filled = static_cast<int>(width * step / c_.steps);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '.');
        return format("  %-11s [%s] step %5lld/%lld  loss %.4f  val %.4f  saves %zu",
                      log_.label.c_str(), bar.c_str(), static_cast<long long>(step),
                      static_cast<long long>(c_.steps), loss,
                      log_.latest_val ? *log_.latest_val : std::nan(""), log_.saves.size());
    }

    run_log& log_;
    const config& c_;
    bool show_saves_;
};

// ---------------------------------------------------------------------------------------------
// The parent: starts a trainer child, reads its reports, kills it.

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

std::string self_path(const char* argv0) {
    std::error_code ec;
    const fs::path p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(argv0) : p.string();
}

std::vector<std::string> config_flags(const config& c) {
    return {"--steps", std::to_string(c.steps), "--hidden", std::to_string(c.hidden)};
}

class child_process {
public:
    child_process(const std::string& exe, const fs::path& dir, const config& c, bool lockstep) {
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
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process() {
        if (status_fd_ >= 0) ::close(status_fd_);
        if (go_fd_ >= 0) ::close(go_fd_);
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] clock_type::time_point started() const noexcept { return started_; }

    /// Reads the child's reports until it exits; `plan` (if any) says when to kill it.
    child_result run(recorder& rec, run_log& log, kill_plan* plan, kill_record& kill) {
        std::string pending;
        std::string error;
        std::optional<clock_type::time_point> deadline;
        if (plan != nullptr && plan->after_ms) {
            deadline = started_ + std::chrono::microseconds(
                                      static_cast<std::int64_t>(*plan->after_ms * 1000.0));
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
                rec.finished({std::stoull(f[1]), std::stoull(f[2]), std::stoull(f[3]),
                              std::stod(f[4]), std::stod(f[5])});
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

    void seed(std::uint64_t s) { rng_.seed(s); }

private:
    /// Lets the child make its next call; a child that died meanwhile is noticed at EOF.
    void send_go() const {
        while (::write(go_fd_, "g", 1) < 0 && errno == EINTR) {
        }
    }

    pid_t pid_ = -1;
    int status_fd_ = -1;
    int go_fd_ = -1;
    bool reaped_ = false;
    clock_type::time_point started_{};
    std::mt19937_64 rng_;
};

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

std::string describe_kill(const kill_record& k) {
    return k.lockstep ? describe_op(k.op, k.op_file) : describe_started(k.op, k.op_file);
}

/// Files in a directory with their sizes, by name.
std::vector<std::pair<std::string, std::uint64_t>> listing(const fs::path& dir) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::error_code size_ec;
        const auto size = e.is_regular_file() ? e.file_size(size_ec) : 0;
        out.emplace_back(e.path().filename().string(), size_ec ? 0 : size);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string comment_for(const std::string& name) {
    if (name.find(".ckpt.tmp-") != std::string::npos)
        return "  <- the interrupted save's temporary file";
    if (name.ends_with(".lock")) return "  (the manager's lock file)";
    return "";
}

// ---------------------------------------------------------------------------------------------
// loss.csv

void write_csv(const fs::path& path, const std::vector<const run_log*>& runs, const config& c,
               const kill_record& kill, const run_log& resumed) {
    std::ofstream f(path);
    f << "# ckpt crash-and-resume demo: MLP " << architecture(c) << " (ReLU), Adam lr " << c.lr
      << ", two spirals (" << 2 * c.per_class << " points, noise " << c.noise << "), batch "
      << c.batch << "\n"
      << "# run: interrupted = the trainer process that was killed, resumed = the process that\n"
      << "#      restarted from the newest good checkpoint, reference = the uninterrupted run\n"
      << "# Step rows: train_loss = that step's batch loss, val_loss = the validation loss when "
         "it\n"
      << "#      was evaluated at that step (every " << c.eval_every
      << " steps and at step 0), else empty; event empty.\n"
      << "# Event rows: train_loss and val_loss empty; event = save (detail: the rules that fired\n"
      << "#      and the file), crash (detail: where the SIGKILL landed), resume (detail: the "
         "file\n"
      << "#      resumed from), cleaned (detail: a dead save's temporary file removed at start).\n"
      << "run,step,train_loss,val_loss,event,detail\n";
    for (const run_log* r : runs) {
        for (const auto& row : r->rows) {
            f << r->name << ',' << row.step << ',' << (std::isnan(row.loss) ? "" : number(row.loss))
              << ',' << (row.val ? number(*row.val) : "") << ",,\n";
        }
        if (r == &resumed) {
            for (const auto& c2 : r->cleaned)
                f << r->name << ',' << r->resumed_from << ",,,cleaned," << c2 << '\n';
            f << r->name << ',' << r->resumed_from << ",,,resume," << r->resumed_file << '\n';
        }
        for (const auto& s : r->saves) {
            f << r->name << ',' << s.step << ",,,save,\"" << join(s.reasons, " + ") << " -> "
              << s.file << "\"\n";
        }
        if (r->name == "interrupted" && kill.save_committed) {
            f << r->name << ',' << kill.save_step << ",,,save,\"(interrupted by the SIGKILL after "
              << "its rename) -> " << checkpoint_prefix << "-"
              << format("%012lld", static_cast<long long>(kill.save_step)) << ".ckpt\"\n";
        }
        if (r->name == "interrupted" && kill.killed) {
            f << r->name << ',' << kill.last_step << ",,,crash,\"SIGKILL"
              << (kill.during_save ? " during the save of step " + std::to_string(kill.save_step) +
                                         " " + describe_kill(kill)
                                   : std::string(" between saves"))
              << "\"\n";
        }
    }
}

// ---------------------------------------------------------------------------------------------
// loss.svg: a self-made plot, no dependencies.

std::string escape(std::string_view s) {
    std::string out;
    for (const char ch : s) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += ch;
        }
    }
    return out;
}

std::string fixed1(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

/// (step, mean training loss) over whole windows [k*w+1, (k+1)*w] the run trained completely.
std::vector<std::pair<double, double>> smoothed(const run_log& r, std::int64_t w) {
    std::vector<std::pair<double, double>> out;
    std::map<std::int64_t, std::pair<double, std::int64_t>> sums;
    for (const auto& row : r.rows) {
        if (row.step == 0) continue;
        auto& s = sums[(row.step - 1) / w];
        s.first += row.loss;
        s.second += 1;
    }
    for (const auto& [k, s] : sums) {
        if (s.second == w) {
            out.emplace_back(static_cast<double>((k + 1) * w), s.first / static_cast<double>(w));
        }
    }
    return out;
}

std::vector<std::pair<double, double>> validation_points(const run_log& r) {
    std::vector<std::pair<double, double>> out;
    for (const auto& row : r.rows) {
        if (row.val) out.emplace_back(static_cast<double>(row.step), *row.val);
    }
    return out;
}

struct plot_frame {
    double left, right, top, bottom;
    double x_max;
    double y_lo, y_hi; // log10
    [[nodiscard]] double x(double step) const { return left + (right - left) * step / x_max; }
    [[nodiscard]] double y(double v) const {
        return bottom - (bottom - top) * (std::log10(v) - y_lo) / (y_hi - y_lo);
    }
};

std::string polyline(const plot_frame& f, const std::vector<std::pair<double, double>>& pts,
                     const std::string& style) {
    std::string s = "<polyline fill=\"none\" " + style + " points=\"";
    for (const auto& [x, y] : pts) s += fixed1(f.x(x)) + "," + fixed1(f.y(y)) + " ";
    return s + "\"/>\n";
}

/// A save marker: circle for on_best, square for every_steps, diamond for both, ring for the
/// final save_now.
std::string marker(double cx, double cy, const std::vector<std::string>& reasons,
                   const std::string& colour) {
    bool best = false;
    bool every = false;
    bool final_save = false;
    for (const auto& r : reasons) {
        best = best || r.starts_with("on_best");
        every = every || r.starts_with("every_steps");
        final_save = final_save || r == "save_now";
    }
    const std::string x = fixed1(cx);
    const std::string y = fixed1(cy);
    const std::string fill = "fill=\"" + colour + "\" stroke=\"white\" stroke-width=\"1\"";
    if (best && every) {
        return "<path d=\"M" + x + "," + fixed1(cy - 6) + " l6,6 l-6,6 l-6,-6 z\" " + fill + "/>\n";
    }
    if (every) {
        return "<rect x=\"" + fixed1(cx - 4.5) + "\" y=\"" + fixed1(cy - 4.5) +
               "\" width=\"9\" height=\"9\" " + fill + "/>\n";
    }
    if (final_save && !best) {
        return "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"5\" fill=\"white\" stroke=\"" +
               colour + "\" stroke-width=\"2.5\"/>\n";
    }
    return "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"4.5\" " + fill + "/>\n";
}

/// Splits `text` into lines of at most `width` characters, at spaces.
std::vector<std::string> wrap(const std::string& text, std::size_t width) {
    std::vector<std::string> lines;
    std::string line;
    for (const auto& word : split(text, ' ')) {
        if (!line.empty() && line.size() + 1 + word.size() > width) {
            lines.push_back(line);
            line.clear();
        }
        line += (line.empty() ? "" : " ") + word;
    }
    if (!line.empty()) lines.push_back(line);
    return lines;
}

/// The highest and lowest pixel rows of a curve between two steps.
std::pair<double, double> extent(const plot_frame& f,
                                 const std::vector<std::pair<double, double>>& pts, double from,
                                 double to) {
    double top = f.bottom;
    double bottom = f.top;
    for (const auto& [x, y] : pts) {
        if (x < from || x > to) continue;
        top = std::min(top, f.y(y));
        bottom = std::max(bottom, f.y(y));
    }
    return {top, bottom};
}

void write_svg(const fs::path& path, const config& c, const run_log& reference,
               const run_log& interrupted, const run_log& resumed, const kill_record& kill,
               bool identical) {
    constexpr double width = 1000;
    constexpr double height = 760;
    const std::string ref_colour = "#4a90d9";
    const std::string first_colour = "#e8590c";
    const std::string second_colour = "#7b2cbf";
    const std::string crash_colour = "#d62728";
    const std::string resume_colour = "#2b8a3e";

    const auto ref_train = smoothed(reference, c.smooth);
    const auto ref_val = validation_points(reference);
    const auto a_train = smoothed(interrupted, c.smooth);
    const auto a_val = validation_points(interrupted);
    const auto b_train = smoothed(resumed, c.smooth);
    const auto b_val = validation_points(resumed);

    double lo = 1e300;
    double hi = -1e300;
    for (const auto* v : {&ref_train, &ref_val, &a_train, &a_val, &b_train, &b_val}) {
        for (const auto& [x, y] : *v) {
            if (y > 0 && std::isfinite(y)) {
                lo = std::min(lo, y);
                hi = std::max(hi, y);
            }
        }
    }
    if (lo > hi) {
        lo = 0.01;
        hi = 1;
    }
    const double pad = 0.06 * (std::log10(hi) - std::log10(lo));
    const plot_frame f{82,
                       width - 36,
                       118,
                       520,
                       static_cast<double>(c.steps),
                       std::log10(lo) - pad,
                       std::log10(hi) + pad};

    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height
      << "\" font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";

    // Title and subtitle.
    s << "<text x=\"" << f.left << "\" y=\"34\" font-size=\"21\" font-weight=\"600\" fill=\"#222\">"
      << "Killed mid-run, resumed, " << (identical ? "bit-identical" : "NOT identical")
      << ": ckpt's crash-and-resume demo</text>\n"
      << "<text x=\"" << f.left << "\" y=\"58\" font-size=\"13.5\" fill=\"#555\">"
      << escape("MLP " + architecture(c) + " (ReLU), Adam lr " + format("%g", c.lr) + ", batch " +
                std::to_string(c.batch) + ", two spirals with noise " + format("%g", c.noise) +
                ". Cross-entropy loss against training step (log scale).")
      << "</text>\n";

    // Grid, ticks and labels.
    s << "<g font-size=\"12\" fill=\"#444\">\n";
    for (int d = static_cast<int>(std::floor(f.y_lo)); d <= static_cast<int>(std::ceil(f.y_hi));
         ++d) {
        for (const double m : {1.0, 2.0, 5.0}) {
            const double v = m * std::pow(10.0, d);
            if (std::log10(v) < f.y_lo || std::log10(v) > f.y_hi) continue;
            const double y = f.y(v);
            s << "<line x1=\"" << f.left << "\" x2=\"" << f.right << "\" y1=\"" << fixed1(y)
              << "\" y2=\"" << fixed1(y) << "\" stroke=\"" << (m == 1.0 ? "#d8d8d8" : "#eeeeee")
              << "\"/>\n<text x=\"" << f.left - 8 << "\" y=\"" << fixed1(y + 4)
              << "\" text-anchor=\"end\">" << format("%g", v) << "</text>\n";
        }
    }
    const double raw_step = static_cast<double>(c.steps) / 8.0;
    const double mag = std::pow(10.0, std::floor(std::log10(raw_step)));
    double tick = mag;
    for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
        if (m * mag >= raw_step) {
            tick = m * mag;
            break;
        }
    }
    for (double t = 0; t <= static_cast<double>(c.steps) + 0.5; t += tick) {
        const double x = f.x(t);
        s << "<line x1=\"" << fixed1(x) << "\" x2=\"" << fixed1(x) << "\" y1=\"" << f.top
          << "\" y2=\"" << f.bottom << "\" stroke=\"#f0f0f0\"/>\n"
          << "<line x1=\"" << fixed1(x) << "\" x2=\"" << fixed1(x) << "\" y1=\"" << f.bottom
          << "\" y2=\"" << f.bottom + 5 << "\" stroke=\"#888\"/>\n"
          << "<text x=\"" << fixed1(x) << "\" y=\"" << f.bottom + 20 << "\" text-anchor=\"middle\">"
          << format("%.0f", t) << "</text>\n";
    }
    s << "<rect x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << f.right - f.left
      << "\" height=\"" << f.bottom - f.top << "\" fill=\"none\" stroke=\"#888\"/>\n"
      << "<text x=\"" << (f.left + f.right) / 2 << "\" y=\"" << f.bottom + 40
      << "\" text-anchor=\"middle\" font-size=\"13\">training step</text>\n"
      << "<text transform=\"translate(24," << (f.top + f.bottom) / 2
      << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">loss (log scale)</text>\n"
      << "</g>\n";

    // The crash: the steps lost between the checkpoint resumed from and the kill.
    const double xr = f.x(static_cast<double>(resumed.resumed_from));
    const double xk = f.x(static_cast<double>(kill.last_step));
    s << "<rect x=\"" << fixed1(xr) << "\" y=\"" << f.top << "\" width=\""
      << fixed1(std::max(0.0, xk - xr)) << "\" height=\"" << f.bottom - f.top << "\" fill=\""
      << crash_colour << "\" fill-opacity=\"0.10\"/>\n"
      << "<line x1=\"" << fixed1(xr) << "\" x2=\"" << fixed1(xr) << "\" y1=\"" << f.top - 4
      << "\" y2=\"" << f.bottom << "\" stroke=\"" << resume_colour
      << "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n"
      << "<line x1=\"" << fixed1(xk) << "\" x2=\"" << fixed1(xk) << "\" y1=\"" << f.top - 4
      << "\" y2=\"" << f.bottom << "\" stroke=\"" << crash_colour << "\" stroke-width=\"2\"/>\n";
    // Labels above the plot: the crash to the right of its line, the resume to the left of its.
    const std::int64_t lost = kill.last_step - resumed.resumed_from;
    s << "<g font-size=\"12.5\">\n"
      << "<text x=\"" << fixed1(xk + 6) << "\" y=\"" << f.top - 22 << "\" fill=\"" << crash_colour
      << "\" font-weight=\"600\">SIGKILL after step " << kill.last_step << "</text>\n"
      << "<text x=\"" << fixed1(xk + 6) << "\" y=\"" << f.top - 8 << "\" fill=\"" << crash_colour
      << "\">"
      << escape(kill.during_save ? "during the save of step " + std::to_string(kill.save_step)
                                 : std::string("between saves"))
      << "</text>\n"
      << "<text x=\"" << fixed1(xr - 6) << "\" y=\"" << f.top - 22 << "\" fill=\"" << resume_colour
      << "\" font-weight=\"600\" text-anchor=\"end\">resumed from step " << resumed.resumed_from
      << "</text>\n"
      << "<text x=\"" << fixed1(xr - 6) << "\" y=\"" << f.top - 8 << "\" fill=\"" << resume_colour
      << "\" text-anchor=\"end\">"
      << (lost == 0
              ? std::string("no step lost")
              : std::to_string(lost) + (lost == 1 ? " step" : " steps") + " lost, trained again")
      << "</text>\n</g>\n";

    // The runs: the reference wide and pale underneath, the two processes thin on top.
    const std::string wide = "stroke=\"" + ref_colour +
                             "\" stroke-opacity=\"0.35\" stroke-width=\"7\" "
                             "stroke-linejoin=\"round\" stroke-linecap=\"round\"";
    s << polyline(f, ref_train, wide) << polyline(f, ref_val, wide);
    for (const auto& [pts, colour, dashed] :
         {std::tuple{&a_train, first_colour, false}, std::tuple{&a_val, first_colour, true},
          std::tuple{&b_train, second_colour, false}, std::tuple{&b_val, second_colour, true}}) {
        s << polyline(f, *pts,
                      "stroke=\"" + colour + "\" stroke-width=\"1.6\" stroke-linejoin=\"round\"" +
                          (dashed ? " stroke-dasharray=\"5,3\"" : ""));
    }

    // Direct labels for the two quantities where the curves leave room: the validation loss
    // above its curve, the training loss below its, early in the plateau.
    {
        const std::string val_text =
            "validation loss (dashed), " + std::to_string(2 * c.per_class) + " held-out points";
        // (A fixed-width guess at the text's length: good enough to dodge the crash band.)
        const std::string train_text =
            "training loss, mean of " + std::to_string(c.smooth) + " steps";
        const auto steps_of = [&](const std::string& text) { // ~7 px a character at 12.5 px
            return 7.0 * static_cast<double>(text.size()) / (f.right - f.left) * f.x_max;
        };
        // The first place from a fifth of the way in whose text stays clear of the crash band.
        const auto place = [&](const std::string& text) {
            const double band_from = static_cast<double>(resumed.resumed_from) - 0.02 * f.x_max;
            const double band_to = static_cast<double>(kill.last_step) + 0.02 * f.x_max;
            for (double at = 0.2; at < 0.75; at += 0.02) {
                const double x0 = at * f.x_max;
                if (x0 + steps_of(text) < band_from || x0 > band_to) return x0;
            }
            return 0.2 * f.x_max;
        };
        const double val_at = place(val_text);
        const double train_at = place(train_text);
        const double val_top = extent(f, ref_val, val_at, val_at + steps_of(val_text)).first;
        const double train_bottom =
            extent(f, ref_train, train_at, train_at + steps_of(train_text)).second;
        s << "<g font-size=\"12.5\" fill=\"#333\">\n"
          << "<text x=\"" << fixed1(f.x(val_at)) << "\" y=\""
          << fixed1(std::max(val_top - 14, f.top + 14)) << "\">" << escape(val_text) << "</text>\n"
          << "<text x=\"" << fixed1(f.x(train_at)) << "\" y=\""
          << fixed1(std::min(train_bottom + 20, f.bottom - 6)) << "\">" << escape(train_text)
          << "</text>\n</g>\n";
    }

    // Saves: markers on the validation curve (the value the manager was given at that step).
    for (const auto& [log, colour] :
         {std::pair{&interrupted, first_colour}, std::pair{&resumed, second_colour}}) {
        for (const auto& sv : log->saves) {
            const double v = log->val_at(sv.step);
            if (!(v > 0)) continue;
            s << marker(f.x(static_cast<double>(sv.step)), f.y(v), sv.reasons, colour);
        }
    }
    const auto cross = [&](double cx, double cy) {
        return "<path d=\"M" + fixed1(cx - 6) + "," + fixed1(cy - 6) +
               " l12,12 m0,-12 l-12,12\" stroke=\"" + crash_colour +
               "\" stroke-width=\"3\" stroke-linecap=\"round\"/>\n";
    };
    if (kill.during_save) {
        const double v = interrupted.val_at(kill.save_step);
        if (v > 0) s << cross(f.x(static_cast<double>(kill.save_step)), f.y(v));
    }

    // Legend: two rows of three, under the axis title.
    {
        const double ly = f.bottom + 70;
        const double col = (f.right - f.left) / 3;
        std::size_t i = 0;
        s << "<g font-size=\"12.5\" fill=\"#222\">\n";
        const auto entry = [&](const std::string& swatch, const std::string& text) {
            const double x = f.left + col * static_cast<double>(i % 3);
            const double y = ly + 22 * static_cast<double>(i / 3);
            s << "<g transform=\"translate(" << fixed1(x) << "," << fixed1(y) << ")\">" << swatch
              << "<text x=\"40\" y=\"4.5\">" << escape(text) << "</text></g>\n";
            ++i;
        };
        const auto line_swatch = [](const std::string& style) {
            return "<line x1=\"2\" x2=\"32\" y1=\"0\" y2=\"0\" " + style + "/>";
        };
        entry(
            line_swatch("stroke=\"" + ref_colour + "\" stroke-opacity=\"0.35\" stroke-width=\"7\""),
            "uninterrupted reference run");
        entry(line_swatch("stroke=\"" + first_colour + "\" stroke-width=\"2\""),
              "killed run, process 1 (until SIGKILL)");
        entry(line_swatch("stroke=\"" + second_colour + "\" stroke-width=\"2\""),
              "killed run, process 2 (after resume)");
        entry(marker(9, 0, {"on_best"}, "#555") + marker(25, 0, {"every_steps"}, "#555"),
              "save: on_best / every_steps(" + std::to_string(c.save_every) + ")");
        bool final_save = false;
        for (const auto* log : {&interrupted, &resumed}) {
            for (const auto& sv : log->saves) {
                final_save = final_save || std::find(sv.reasons.begin(), sv.reasons.end(),
                                                     "save_now") != sv.reasons.end();
            }
        }
        if (final_save) {
            entry(marker(9, 0, {"every_steps", "on_best"}, "#555") +
                      marker(25, 0, {"save_now"}, "#555"),
                  "save: both rules / final save_now");
        } else {
            entry(marker(17, 0, {"every_steps", "on_best"}, "#555"), "save: both rules at once");
        }
        if (kill.during_save) entry(cross(17, 0), "the save the SIGKILL interrupted");
        s << "</g>\n";
    }

    // Caption.
    std::vector<std::string> caption =
        wrap("Process 1 was killed with SIGKILL after step " + std::to_string(kill.last_step) +
                 (kill.during_save
                      ? ", in the middle of the save of step " + std::to_string(kill.save_step) +
                            " (" + describe_kill(kill) + ")."
                      : ", between two saves.") +
                 " Process 2, started on the same folder, resumed from the newest good checkpoint "
                 "(step " +
                 std::to_string(resumed.resumed_from) + ") and finished" +
                 (lost == 0 ? std::string(": no step was lost.")
                            : ": " + std::to_string(lost) +
                                  (lost == 1 ? " step was" : " steps were") + " trained twice."),
             128);
    double cy = f.bottom + 134;
    s << "<g font-size=\"13\" fill=\"#333\">\n";
    for (const auto& l : caption) {
        s << "<text x=\"" << f.left << "\" y=\"" << cy << "\">" << escape(l) << "</text>\n";
        cy += 19;
    }
    s << "<text x=\"" << f.left << "\" y=\"" << cy << "\" font-weight=\"600\">"
      << escape(std::string("Final training state bit-identical to the uninterrupted run: ") +
                (identical ? "yes; the thin curves lie exactly on the wide one." : "NO."))
      << "</text>\n";
    cy += 21;
    for (const auto& l :
         wrap("Saved by ckpt::manager with every_steps(" + std::to_string(c.save_every) +
                  ") | on_best(\"val_loss\") and kept with keep_last(3) | keep_best(1, "
                  "\"val_loss\"); validation every " +
                  std::to_string(c.eval_every) + " steps. Every step's numbers: loss.csv.",
              140)) {
        s << "<text x=\"" << f.left << "\" y=\"" << cy << "\" fill=\"#666\" font-size=\"12\">"
          << escape(l) << "</text>\n";
        cy += 17;
    }
    s << "</g>\n</svg>\n";

    std::ofstream(path) << s.str();
}

// ---------------------------------------------------------------------------------------------
// The parent's script.

struct parent_options {
    fs::path out = ".";
    std::optional<std::uint64_t> seed;
    std::optional<double> kill_after_ms;
    double in_save_share = 1.0;
};

std::uint64_t time_seed() {
    const auto t = std::chrono::system_clock::now().time_since_epoch().count();
    return (static_cast<std::uint64_t>(t) ^ (static_cast<std::uint64_t>(::getpid()) << 32)) %
           1000000;
}

bool same_saves_after(const run_log& a, const run_log& b, std::int64_t after) {
    std::vector<std::pair<std::int64_t, std::vector<std::string>>> x;
    std::vector<std::pair<std::int64_t, std::vector<std::string>>> y;
    for (const auto& s : a.saves) {
        if (s.step > after) x.emplace_back(s.step, s.reasons);
    }
    for (const auto& s : b.saves) {
        if (s.step > after) y.emplace_back(s.step, s.reasons);
    }
    return x == y;
}

int run_parent(const std::string& exe, const config& c, const parent_options& o) {
    const auto demo_started = clock_type::now();
    const std::uint64_t seed = o.seed.value_or(time_seed());
    std::mt19937_64 rng(seed);
    const bool in_save =
        !o.kill_after_ms && std::uniform_real_distribution<double>(0, 1)(rng) < o.in_save_share;
    kill_plan plan;
    plan.in_save = in_save;
    plan.target_step =
        std::uniform_int_distribution<std::int64_t>(c.steps * 3 / 10, c.steps * 7 / 10)(rng);
    plan.after_ms = o.kill_after_ms;

    const fs::path runs = o.out / "runs";
    const fs::path dir = runs / "interrupted";
    const fs::path ref_dir = runs / "reference";
    fs::remove_all(dir);
    fs::remove_all(ref_dir);
    fs::create_directories(runs);

    out().line("ckpt crash-and-resume demo");
    out().line(format("  model MLP %s (ReLU), Adam lr %g, batch %lld; two spirals, %lld points, "
                      "noise %g; %lld steps",
                      architecture(c).c_str(), c.lr, static_cast<long long>(c.batch),
                      static_cast<long long>(2 * c.per_class), c.noise,
                      static_cast<long long>(c.steps)));
    out().line(format("  saves every_steps(%lld) | on_best(\"val_loss\") (evaluated every %lld "
                      "steps); keeps keep_last(3) | keep_best(1, \"val_loss\")",
                      static_cast<long long>(c.save_every), static_cast<long long>(c.eval_every)));
    std::string how;
    if (o.kill_after_ms) {
        how = format("SIGKILL %.0f ms after the start", *o.kill_after_ms);
    } else if (in_save) {
        how = format("SIGKILL in the middle of the first save at or after step %lld",
                     static_cast<long long>(plan.target_step));
    } else {
        how = format("SIGKILL at a random moment, around step %lld",
                     static_cast<long long>(plan.target_step));
    }
    out().line(format("  seed %llu (rerun with --seed %llu): %s",
                      static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
                      how.c_str()));
    out().line("");

    // 1. The trainer, killed.
    run_log first{"interrupted", "process 1", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    kill_record kill;
    child_result r1;
    {
        recorder rec(first, c, true);
        child_process child(exe, dir, c, plan.in_save);
        child.seed(rng());
        out().line(format("[1] trainer process %d: training in %s", static_cast<int>(child.pid()),
                          dir.string().c_str()));
        r1 = child.run(rec, first, &plan, kill);
    }
    if (!kill.killed || r1.signal != SIGKILL) {
        out().line(format("error: the trainer was not killed (exit %d, signal %d) %s", r1.exit_code,
                          r1.signal, r1.error.c_str()));
        return 2;
    }
    out().line(format("  >>> SIGKILL after %.2f s: the process had completed step %lld",
                      kill.seconds, static_cast<long long>(kill.last_step)));
    if (kill.during_save) {
        out().line(format("      it was in the middle of the save of step %lld, %s",
                          static_cast<long long>(kill.save_step), describe_kill(kill).c_str()));
    } else {
        out().line("      it was between saves");
    }
    // The interrupted save's checkpoint is there if the kill came after its rename.
    const std::string interrupted_name =
        format("%s-%012lld.ckpt", checkpoint_prefix, static_cast<long long>(kill.save_step));
    const bool interrupted_committed = kill.during_save && fs::exists(dir / interrupted_name);
    kill.save_committed = interrupted_committed;
    out().line("      on disk after the kill:");
    for (const auto& [name, size] : listing(dir)) {
        std::string note = comment_for(name);
        if (interrupted_committed && name == interrupted_name) {
            note = "  <- the interrupted save: renamed into place before the kill";
        }
        out().line(
            format("        %-44s %10s%s", name.c_str(), human_bytes(size).c_str(), note.c_str()));
    }
    out().line("");

    // 2. The trainer again, on the same folder: resumes and finishes.
    run_log second{"resumed", "process 2", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    child_result r2;
    {
        recorder rec(second, c, true);
        child_process child(exe, dir, c, false);
        out().line(format("[2] trainer process %d: restarted on the same folder",
                          static_cast<int>(child.pid())));
        kill_record none;
        r2 = child.run(rec, second, nullptr, none);
    }
    if (!r2.exited || r2.exit_code != 0 || !second.finish) {
        out().line(format("error: the restarted trainer failed (exit %d, signal %d): %s",
                          r2.exit_code, r2.signal, r2.error.c_str()));
        return 2;
    }

    // 3. The reference, in this process, in a fresh folder.
    out().line("");
    out().line("[3] uninterrupted reference run, in " + ref_dir.string());
    run_log reference{"reference", "reference", {}, {}, 0, "", {}, {}, std::nullopt, std::nullopt};
    state_type ref_final;
    {
        recorder rec(reference, c, false);
        ref_final = train(ref_dir, c, rec, nullptr);
    }
    const finish_record& rf = *reference.finish;
    out().line(format("    %lld steps in %.2f s, %llu saves taking %.1f ms in all",
                      static_cast<long long>(c.steps), rf.train_seconds,
                      static_cast<unsigned long long>(rf.written), rf.save_seconds * 1e3));

    // 4. The verdict: load the killed run's final checkpoint, compare with the reference's state.
    state_type resumed_final;
    std::uint64_t bytes_on_disk = 0;
    std::uint64_t checkpoints_on_disk = 0;
    std::int64_t final_step = 0;
    {
        ckpt::manager_options options;
        options.prefix = checkpoint_prefix;
        ckpt::manager m(dir, save_policy(c), retention(), options);
        if (const auto meta = m.restore_latest(resumed_final)) final_step = meta->step;
        const auto st = m.stats();
        bytes_on_disk = st.bytes_on_disk;
        checkpoints_on_disk = st.checkpoints_on_disk;
    }
    ckpt::metadata fixed;
    fixed.step = c.steps;
    fixed.time = std::chrono::system_clock::time_point(std::chrono::seconds(0)) +
                 std::chrono::hours(24 * 365 * 30); // any fixed time: only the state differs
    const auto a = ckpt::save_to_memory(resumed_final, fixed);
    const auto b = ckpt::save_to_memory(ref_final, fixed);
    const bool identical = final_step == c.steps && a == b && resumed_final == ref_final;
    const bool schedule = same_saves_after(second, reference, second.resumed_from);

    const std::int64_t lost = kill.last_step - second.resumed_from;
    const std::uint64_t written =
        first.saves.size() + (interrupted_committed ? 1 : 0) + second.saves.size();
    const double overhead = 100.0 * rf.save_seconds / rf.train_seconds;

    out().line("");
    out().line("Verdict");
    out().line(
        format("  final state bit-identical:   %s  (%zu bytes of state: weights, Adam moments, "
               "sampler, RNG, all %lld losses)",
               identical ? "yes" : "NO", a.size(), static_cast<long long>(c.steps)));
    out().line(format("  steps lost to the crash:     %lld  (killed after step %lld, resumed from "
                      "step %lld)",
                      static_cast<long long>(lost), static_cast<long long>(kill.last_step),
                      static_cast<long long>(second.resumed_from)));
    out().line(format("  checkpoint overhead:         %.1f%% of training time  (reference: %llu "
                      "saves, %.1f ms of %.2f s)",
                      overhead, static_cast<unsigned long long>(rf.written), rf.save_seconds * 1e3,
                      rf.train_seconds));
    out().line(format(
        "  bytes on disk:               %s in %llu checkpoints  (reference: %s in "
        "%llu)",
        human_bytes(bytes_on_disk).c_str(), static_cast<unsigned long long>(checkpoints_on_disk),
        human_bytes(rf.bytes_on_disk).c_str(), static_cast<unsigned long long>(rf.on_disk)));
    out().line(format("  checkpoints written:         %llu  (%zu before the kill%s, %zu after the "
                      "restart; the reference: %llu)",
                      static_cast<unsigned long long>(written), first.saves.size(),
                      interrupted_committed ? " + the one it interrupted after its rename" : "",
                      second.saves.size(), static_cast<unsigned long long>(rf.written)));
    out().line(format("  saves after the resume:      %s the reference's (same steps, same rules)",
                      schedule ? "the same as" : "NOT the same as"));
    out().line("  files left on disk (" + dir.string() + "):");
    for (const auto& [name, size] : listing(dir)) {
        out().line(format("    %-44s %10s%s", name.c_str(), human_bytes(size).c_str(),
                          comment_for(name).c_str()));
    }

    // 5. loss.csv and loss.svg.
    const fs::path csv = o.out / "loss.csv";
    const fs::path svg = o.out / "loss.svg";
    write_csv(csv, {&first, &second, &reference}, c, kill, second);
    write_svg(svg, c, reference, first, second, kill, identical);
    out().line("");
    out().line("Wrote " + fs::absolute(csv).lexically_normal().string());
    out().line("      " + fs::absolute(svg).lexically_normal().string() +
               "  (open it in a browser)");
    out().line(format("The demo took %.1f s.",
                      std::chrono::duration<double>(clock_type::now() - demo_started).count()));
    return identical && schedule ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

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
    config c;
    parent_options o;
    std::optional<fs::path> train_dir;
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

    if (train_dir) return run_trainer(*train_dir, c, status_fd, go_fd);
    ::signal(SIGPIPE, SIG_IGN); // a child that dies is seen as EOF on its pipe
    try {
        return run_parent(self_path(argv[0]), c, o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
}
