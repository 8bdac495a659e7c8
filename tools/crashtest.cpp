// crashtest: kill trials for ckpt::manager. A child trains a tiny MLP on two spirals and saves
// through a manager on every step; the parent SIGKILLs it (at a random moment biased into the
// save window, or, with --white-box, just before and just after every I/O call of one save),
// then opens the folder as a restarted run would and checks:
//   - restore_latest succeeds (nothing to restore only when no save ever committed);
//   - the state it loads is the last committed one or the one being written, and its bytes hash
//     to what the child logged right before that save;
//   - no temporary file survives the next start;
//   - the last K checkpoints and the best one (by val_loss) are still there, and the best loads.
//
//   crashtest [--trials N | --seconds S] [--seed X] [--dir D] [--white-box]
//
// Exit status 0 when every trial passed, 1 on any failure, 2 on a usage or setup error.
#include <ckpt/ckpt.hpp>
#include <ckpt/nn.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace nn = ckpt::nn;

using state_type = nn::train_state<float>;
constexpr std::size_t keep_k = 3;

state_type fresh_state() {
    state_type s;
    s.model = nn::mlp<float>({2, 16, 16, 2}, nn::activation::relu, 7);
    s.optimizer = nn::adam<float>(s.model, nn::adam_options{});
    s.sampler = nn::sampler(200, 16, 11);
    s.rng.seed(13);
    return s;
}

const nn::dataset<float>& train_data() {
    static const auto d = nn::two_spirals<float>(100, 0.05, 1);
    return d;
}
const nn::dataset<float>& val_data() {
    static const auto d = nn::two_spirals<float>(50, 0.05, 2);
    return d;
}

/// FNV-1a 64 of the state's checkpoint bytes with a fixed time: equal states, equal hashes.
std::uint64_t state_hash(const state_type& s) {
    ckpt::metadata m;
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1));
    const std::vector<std::byte> bytes = ckpt::save_to_memory(s, m);
    std::uint64_t h = 1469598103934665603ULL;
    for (std::byte b : bytes) {
        h ^= static_cast<std::uint64_t>(b);
        h *= 1099511628211ULL;
    }
    return h;
}

ckpt::manager open_manager(const fs::path& dir, ckpt::io::backend* backend) {
    ckpt::manager_options o;
    o.backend = backend;
    return ckpt::manager(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"),
                         ckpt::keep_last(keep_k) | ckpt::keep_best(1, "val_loss"), o);
}

// ---------------------------------------------------------------------------------------------
// The child

/// posix_backend that counts the calls of the armed save and, in white-box mode, kills the
/// process just before or just after call `kill_call` of it.
class counting_backend final : public ckpt::io::backend {
public:
    bool armed = false;
    std::int64_t calls = 0;
    std::int64_t kill_call = -1;
    bool kill_after = false;

    int open(const char* p, int f, ::mode_t m) override {
        before();
        const int r = real_.open(p, f, m);
        after();
        return r;
    }
    ::ssize_t write(int fd, const void* d, std::size_t n) override {
        before();
        const auto r = real_.write(fd, d, n);
        after();
        return r;
    }
    ::ssize_t pwrite(int fd, const void* d, std::size_t n, ::off_t o) override {
        before();
        const auto r = real_.pwrite(fd, d, n, o);
        after();
        return r;
    }
    ::ssize_t pread(int fd, void* d, std::size_t n, ::off_t o) override {
        before();
        const auto r = real_.pread(fd, d, n, o);
        after();
        return r;
    }
    int fsync(int fd) override {
        before();
        const int r = real_.fsync(fd);
        after();
        return r;
    }
    int close(int fd) override {
        before();
        const int r = real_.close(fd);
        after();
        return r;
    }
    int rename(const char* a, const char* b) override {
        before();
        const int r = real_.rename(a, b);
        after();
        return r;
    }
    int unlink(const char* p) override {
        before();
        const int r = real_.unlink(p);
        after();
        return r;
    }
    int file_size(int fd, std::uint64_t& s) override {
        before();
        const int r = real_.file_size(fd, s);
        after();
        return r;
    }
    const void* map(int fd, std::size_t n) override {
        before();
        const void* r = real_.map(fd, n);
        after();
        return r;
    }
    void unmap(const void* d, std::size_t n) override {
        before();
        real_.unmap(d, n);
        after();
    }
    int allocate(int fd, std::uint64_t n) override {
        before();
        const int r = real_.allocate(fd, n);
        after();
        return r;
    }
    void start_writeback(int fd, std::uint64_t o, std::uint64_t n) override {
        before();
        real_.start_writeback(fd, o, n);
        after();
    }

private:
    void before() {
        if (armed && !kill_after && calls == kill_call) ::raise(SIGKILL);
    }
    void after() {
        if (!armed) return;
        if (kill_after && calls == kill_call) ::raise(SIGKILL);
        ++calls;
    }
    ckpt::io::posix_backend real_;
};

void emit(int fd, const std::string& line) {
    // One write per line: a pipe write of at most PIPE_BUF bytes is atomic.
    const std::string s = line + "\n";
    if (::write(fd, s.data(), s.size()) != static_cast<::ssize_t>(s.size())) std::_Exit(3);
}

std::string hex_double(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", v);
    return buf;
}

/// Resumes from the folder and trains, saving every step, until killed or `steps` saves.
/// Lines on `out`: "R <step>" (resumed), "S <step> <hash> <val_loss>" (a save starts),
/// "C <step> <calls>" (it committed, after that many I/O calls).
int child_main(const fs::path& dir, int out, std::int64_t steps, std::int64_t kill_save,
               std::int64_t kill_call, bool kill_after) {
    counting_backend io;
    state_type s = fresh_state();
    ckpt::manager m = open_manager(dir, &io);
    if (auto meta = m.restore_latest(s)) {
        if (meta->step != s.step) return 4;
    }
    emit(out, "R " + std::to_string(s.step));
    for (std::int64_t save = 1; steps < 0 || save <= steps; ++save) {
        nn::train_step(s, train_data());
        const double v = static_cast<double>(nn::evaluate(s.model, val_data()));
        char hash[32];
        std::snprintf(hash, sizeof hash, "%016" PRIx64, state_hash(s));
        emit(out, "S " + std::to_string(s.step) + " " + hash + " " + hex_double(v));
        io.armed = true;
        io.calls = 0;
        io.kill_call = save == kill_save ? kill_call : -1;
        io.kill_after = kill_after;
        ckpt::metadata meta;
        meta.step = s.step;
        meta.epoch = s.epoch;
        meta.metrics["val_loss"] = v;
        if (!m.step(s, meta)) return 5;
        io.armed = false;
        emit(out, "C " + std::to_string(s.step) + " " + std::to_string(io.calls));
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The parent

struct options {
    std::int64_t trials = 200;
    double seconds = 0;
    std::uint64_t seed = 1;
    fs::path dir = "crashtest-dir";
    bool white_box = false;
    bool verbose = false;
};

struct totals {
    std::int64_t trials = 0;
    std::int64_t kills_in_save = 0;
    std::int64_t kills_outside = 0;
    std::int64_t restored_new = 0;  ///< the checkpoint being written
    std::int64_t restored_prev = 0; ///< the last committed one
    std::int64_t restored_none = 0; ///< nothing committed yet
    std::int64_t temps_cleaned = 0;
    std::int64_t best_checks = 0;
    std::int64_t failures = 0;
};

/// What the parent knows of the folder: every step's logged hash and val_loss (the latest
/// lineage's), and the newest step known to be committed.
struct ledger {
    std::map<std::int64_t, std::uint64_t> hash;
    std::map<std::int64_t, double> val_loss;
    std::int64_t committed = 0; ///< 0: none
};

struct child_run {
    std::vector<std::string> lines;
    int status = 0;
};

std::string self_exe;

/// Starts a child on `dir`; returns its pid and the read end of its pipe.
std::pair<::pid_t, int> start_child(const options& o, std::int64_t steps, std::int64_t kill_save,
                                    std::int64_t kill_call, bool kill_after) {
    int p[2];
    if (::pipe(p) != 0) {
        std::perror("pipe");
        std::exit(2);
    }
    const ::pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        ::close(p[0]);
        const std::string fd = std::to_string(p[1]);
        const std::string st = std::to_string(steps);
        const std::string ks = std::to_string(kill_save);
        const std::string kc = std::to_string(kill_call);
        const char* when = kill_after ? "after" : "before";
        ::execl(self_exe.c_str(), self_exe.c_str(), "--child", o.dir.c_str(), fd.c_str(),
                st.c_str(), ks.c_str(), kc.c_str(), when, static_cast<char*>(nullptr));
        std::_Exit(127);
    }
    ::close(p[1]);
    return {pid, p[0]};
}

/// Reads whole lines from `fd` into `lines`; false at end of file. Waits at most `timeout_ms`
/// (-1: forever) for data.
bool read_lines(int fd, std::string& partial, std::vector<std::string>& lines, int timeout_ms) {
    ::pollfd pfd{fd, POLLIN, 0};
    const int r = ::poll(&pfd, 1, timeout_ms);
    if (r <= 0) return true;
    char buf[4096];
    const ::ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    partial.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
        lines.push_back(partial.substr(0, nl));
        partial.erase(0, nl + 1);
    }
    return true;
}

std::vector<std::string> drain(int fd, std::string& partial, std::vector<std::string> lines) {
    while (read_lines(fd, partial, lines, -1)) {
    }
    ::close(fd);
    return lines;
}

/// Applies the child's lines to the ledger; returns whether the last save started did not
/// commit (the kill landed in a save) and the step of that save.
std::pair<bool, std::int64_t> record(ledger& l, const std::vector<std::string>& lines) {
    bool in_save = false;
    std::int64_t writing = 0;
    for (const std::string& line : lines) {
        std::istringstream in(line);
        char kind = 0;
        std::int64_t step = 0;
        in >> kind >> step;
        if (kind == 'S') {
            std::string hash;
            std::string v;
            in >> hash >> v;
            l.hash[step] = std::stoull(hash, nullptr, 16);
            l.val_loss[step] = std::strtod(v.c_str(), nullptr);
            in_save = true;
            writing = step;
        } else if (kind == 'C') {
            l.committed = step;
            in_save = false;
        }
    }
    return {in_save, writing};
}

bool is_temp(const fs::path& p) {
    return p.filename().string().find(".tmp-") != std::string::npos;
}

/// Opens the folder as a restarted run would and checks every invariant; prints what fails.
bool verify(const options& o, ledger& l, bool in_save, std::int64_t writing, totals& t,
            const std::string& what) {
    bool ok = true;
    const auto fail = [&](const std::string& msg) {
        std::fprintf(stderr, "FAIL (%s): %s\n", what.c_str(), msg.c_str());
        ok = false;
    };
    try {
        ckpt::manager m = open_manager(o.dir, nullptr);
        t.temps_cleaned += static_cast<std::int64_t>(m.cleaned().size());
        for (const auto& de : fs::directory_iterator(o.dir)) {
            if (is_temp(de.path()))
                fail("temporary file survived the start: " + de.path().string());
        }
        if (!m.skipped().empty()) fail("damaged checkpoint: " + m.skipped().front().reason);
        state_type s = fresh_state();
        const auto meta = m.restore_latest(s);
        if (!meta) {
            if (l.committed != 0)
                fail("nothing restored, but step " + std::to_string(l.committed) +
                     " had committed");
            t.restored_none += 1;
            return ok;
        }
        const std::int64_t r = meta->step;
        if (r == l.committed) {
            t.restored_prev += 1;
        } else if (in_save && r == writing) {
            t.restored_new += 1;
        } else {
            fail("restored step " + std::to_string(r) + "; committed " +
                 std::to_string(l.committed) + ", being written " +
                 (in_save ? std::to_string(writing) : std::string("none")));
            return ok;
        }
        if (s.step != r) fail("state step " + std::to_string(s.step) + " != checkpoint step");
        const auto h = l.hash.find(r);
        if (h == l.hash.end() || h->second != state_hash(s)) {
            fail("state of step " + std::to_string(r) + " differs from what the child logged");
        }
        // The last K and the best (by the logged val_loss, a tie to the newer) are on disk.
        const auto entries = m.list();
        const auto has = [&](std::int64_t step) {
            return std::any_of(entries.begin(), entries.end(),
                               [&](const ckpt::checkpoint_entry& e) { return e.step == step; });
        };
        for (std::int64_t k = r; k > r - static_cast<std::int64_t>(keep_k) && k >= 1; --k) {
            if (!has(k)) fail("checkpoint of step " + std::to_string(k) + " (last K) is gone");
        }
        std::int64_t best = 0;
        double best_v = 0;
        for (const auto& [step, v] : l.val_loss) {
            if (step > r) break;
            if (best == 0 || v <= best_v) {
                best = step;
                best_v = v;
            }
        }
        if (!has(best)) {
            fail("best checkpoint (step " + std::to_string(best) + ") is gone");
        } else {
            state_type b = fresh_state();
            const auto bm = m.restore_best(b, "val_loss");
            if (!bm || bm->step != best || state_hash(b) != l.hash[best]) {
                fail("restore_best did not load step " + std::to_string(best) + " exactly");
            }
            t.best_checks += 1;
        }
        for (const auto& e : entries) {
            if (e.step > r) fail("a checkpoint newer than the latest: " + e.path.string());
        }
        // The next run resumes from r: later steps of this lineage are void.
        l.committed = r;
        l.hash.erase(l.hash.upper_bound(r), l.hash.end());
        l.val_loss.erase(l.val_loss.upper_bound(r), l.val_loss.end());
    } catch (const std::exception& e) {
        fail(std::string("exception: ") + e.what());
    }
    return ok;
}

void reset_dir(const options& o, ledger& l) {
    fs::remove_all(o.dir);
    fs::create_directories(o.dir);
    l = ledger{};
}

int run_random(const options& o) {
    std::mt19937_64 rng(o.seed);
    totals t;
    ledger l;
    reset_dir(o, l);
    double save_us = 2000; // running estimates of a save's and a step's duration
    double step_us = 3000;
    const auto start = std::chrono::steady_clock::now();
    const auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    for (std::int64_t trial = 0; o.seconds > 0 ? elapsed() < o.seconds : trial < o.trials;
         ++trial) {
        // Long lineages make the state (its loss log) grow: start over now and then.
        if (trial % 100 == 99) reset_dir(o, l);
        auto [pid, fd] = start_child(o, -1, -1, -1, false);
        std::vector<std::string> lines;
        std::string partial;
        // Skip 0..3 save starts after the resume, then kill: mostly inside the save window
        // (a delay of up to 1.5 save durations after "S"), sometimes anywhere in a step.
        const auto saves_to_skip = static_cast<std::size_t>(rng() % 4);
        const bool aim_at_save = rng() % 4 != 0;
        std::size_t seen_s = 0;
        auto last_s = std::chrono::steady_clock::now();
        bool alive = true;
        while (alive) {
            const std::size_t before = lines.size();
            alive = read_lines(fd, partial, lines, -1);
            for (std::size_t i = before; i < lines.size(); ++i) {
                const auto now = std::chrono::steady_clock::now();
                if (lines[i][0] == 'S') {
                    if (seen_s > 0) {
                        step_us =
                            0.9 * step_us +
                            0.1 * std::chrono::duration<double, std::micro>(now - last_s).count();
                    }
                    last_s = now;
                    ++seen_s;
                } else if (lines[i][0] == 'C') {
                    save_us = 0.9 * save_us +
                              0.1 * std::chrono::duration<double, std::micro>(now - last_s).count();
                }
            }
            if (seen_s > saves_to_skip) break;
        }
        if (!aim_at_save) {
            // Outside a save: after it commits, somewhere in the training between two saves.
            while (alive && lines.back()[0] != 'C') {
                const std::size_t before = lines.size();
                alive = read_lines(fd, partial, lines, -1);
                if (lines.size() > before && lines.back()[0] == 'C') {
                    last_s = std::chrono::steady_clock::now();
                }
            }
        }
        const double window = aim_at_save ? 1.5 * save_us : std::max(step_us - save_us, 1.0);
        const auto delay = std::uniform_real_distribution<double>(0, window)(rng);
        if (delay > 1) {
            const auto until = last_s + std::chrono::microseconds(static_cast<std::int64_t>(delay));
            while (std::chrono::steady_clock::now() < until) {
                if (!read_lines(fd, partial, lines, 0)) break;
            }
        }
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        lines = drain(fd, partial, std::move(lines));
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            std::fprintf(stderr, "FAIL (trial %lld): the child ended by itself, status %d\n",
                         static_cast<long long>(trial), status);
            t.failures += 1;
            t.trials += 1;
            continue;
        }
        const auto [in_save, writing] = record(l, lines);
        (in_save ? t.kills_in_save : t.kills_outside) += 1;
        if (!verify(o, l, in_save, writing, t, "trial " + std::to_string(trial))) t.failures += 1;
        t.trials += 1;
    }
    std::printf("crashtest: %lld trials in %.1f s (seed %llu): %lld kills during a save, %lld "
                "outside; restored the checkpoint being written %lld, the previous one %lld, "
                "none (nothing committed yet) %lld; %lld temporary files cleaned at start; %lld "
                "best checks; %lld failures\n",
                static_cast<long long>(t.trials), elapsed(),
                static_cast<unsigned long long>(o.seed), static_cast<long long>(t.kills_in_save),
                static_cast<long long>(t.kills_outside), static_cast<long long>(t.restored_new),
                static_cast<long long>(t.restored_prev), static_cast<long long>(t.restored_none),
                static_cast<long long>(t.temps_cleaned), static_cast<long long>(t.best_checks),
                static_cast<long long>(t.failures));
    return t.failures == 0 ? 0 : 1;
}

/// Every I/O call of the 5th save (one that replaces nothing but lets retention delete):
/// a kill just before and just after call k, for every k.
int run_white_box(const options& o) {
    constexpr std::int64_t saves = 6;
    constexpr std::int64_t target = 5;
    totals t;
    ledger l;
    // A clean run tells how many calls each save makes.
    reset_dir(o, l);
    auto [pid, fd] = start_child(o, saves, -1, -1, false);
    std::string partial;
    const auto lines = drain(fd, partial, {});
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::int64_t calls = -1;
    for (const auto& line : lines) {
        std::istringstream in(line);
        char kind = 0;
        std::int64_t step = 0;
        std::int64_t n = 0;
        in >> kind >> step >> n;
        if (kind == 'C' && step == target) calls = n;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || calls <= 0) {
        std::fprintf(stderr, "crashtest: the probe run failed (status %d)\n", status);
        return 2;
    }
    for (std::int64_t k = 0; k < calls; ++k) {
        for (const bool after : {false, true}) {
            reset_dir(o, l);
            auto [p, f] = start_child(o, saves, target, k, after);
            std::string part;
            const auto got = drain(f, part, {});
            int st = 0;
            ::waitpid(p, &st, 0);
            const std::string what = std::string("white box: kill ") +
                                     (after ? "after" : "before") + " call " + std::to_string(k) +
                                     " of " + std::to_string(calls) + " of save " +
                                     std::to_string(target);
            t.trials += 1;
            if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
                std::fprintf(stderr, "FAIL (%s): the child was not killed, status %d\n",
                             what.c_str(), st);
                t.failures += 1;
                continue;
            }
            const auto [in_save, writing] = record(l, got);
            if (!in_save || writing != target) {
                std::fprintf(stderr, "FAIL (%s): the kill was not in save %lld\n", what.c_str(),
                             static_cast<long long>(target));
                t.failures += 1;
                continue;
            }
            t.kills_in_save += 1;
            const std::int64_t before_new = t.restored_new;
            if (!verify(o, l, in_save, writing, t, what)) t.failures += 1;
            if (o.verbose) {
                std::printf("  %s: restored %s\n", what.c_str(),
                            t.restored_new > before_new ? "the new one" : "the previous one");
            }
        }
    }
    std::printf("crashtest --white-box: %lld calls in save %lld, %lld kills (before and after "
                "each): restored the new checkpoint %lld, the previous one %lld; %lld temporary "
                "files cleaned at start; %lld failures\n",
                static_cast<long long>(calls), static_cast<long long>(target),
                static_cast<long long>(t.trials), static_cast<long long>(t.restored_new),
                static_cast<long long>(t.restored_prev), static_cast<long long>(t.temps_cleaned),
                static_cast<long long>(t.failures));
    return t.failures == 0 ? 0 : 1;
}

int usage() {
    std::fprintf(stderr, "usage: crashtest [--trials N | --seconds S] [--seed X] [--dir D] "
                         "[--white-box] [--verbose]\n");
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 8 && std::strcmp(argv[1], "--child") == 0) {
        try {
            return child_main(argv[2], std::atoi(argv[3]), std::atoll(argv[4]), std::atoll(argv[5]),
                              std::atoll(argv[6]), std::strcmp(argv[7], "after") == 0);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "crashtest child: %s\n", e.what());
            return 6;
        }
    }
    self_exe = fs::canonical("/proc/self/exe").string();
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--trials" && has_value) {
            o.trials = std::atoll(argv[++i]);
        } else if (a == "--seconds" && has_value) {
            o.seconds = std::atof(argv[++i]);
        } else if (a == "--seed" && has_value) {
            o.seed = std::strtoull(argv[++i], nullptr, 10);
        } else if (a == "--dir" && has_value) {
            o.dir = argv[++i];
        } else if (a == "--white-box") {
            o.white_box = true;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else {
            return usage();
        }
    }
    o.dir = fs::absolute(o.dir);
    ::signal(SIGPIPE, SIG_IGN);
    return o.white_box ? run_white_box(o) : run_random(o);
}
