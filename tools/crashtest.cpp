// crashtest: kill trials for ckpt::manager. A child trains a tiny MLP on two spirals and saves
// through a manager on every step (every_steps(1) | on_best("val_loss"), keep_last(3) |
// keep_best(1, "val_loss")); the parent SIGKILLs it (at a random moment biased into the save
// window, or, with --white-box, just before and just after every I/O call of one save), then
// opens the folder with a plain synchronous manager, as a restarted run would, and checks it.
//
//   crashtest [--trials N | --seconds S] [--seed X] [--dir D] [--white-box] [--async]
//
// What the parent knows. The child logs "S k <hash> <val_loss>" before m.step() saves step k,
// and then:
//   - sync: "C k" after m.step() returns: save k is committed and retention has run after it.
//   - --async (manager_options::async = async_options{}: one save in flight, when_full::wait):
//     "A k <c...>" after m.step() returns: save k is staged (its snapshot taken), and c... are
//     the saves that call found committed and applied retention after (save_result::committed);
//     "D k" from async_options::on_done, on the background thread, once save k is committed
//     (written, fsynced, renamed, directory synced). D is logged after the commit, so a kill can
//     fall between the rename and D: a logged D is a lower bound on what is committed. Staging
//     save k waits until save k-1 has finished, and on_done runs before that, so "D k-1"
//     precedes "A k" in the log; the parent checks this order.
// Let `known` be the newest save logged committed (C or D; else the step this run resumed
// from), `newest` the newest save started (S), `retained` the newest save after which retention
// is logged to have run (C; or the newest c of an A line). Saves commit one at a time, in step
// order, so whatever committed is a prefix of the saves started. Checked after every kill:
//   1. The log is consistent: R is the step the previous check restored; S steps follow it one
//      by one; C/D steps follow one by one, each after its S; async: "A k" after "D k-1", and
//      the steps an A line reports committed follow one by one and were each logged by D.
//   2. Starting the manager removes every temporary file (none survives), and there was at most
//      one: one save is written at a time (max_in_flight = 1).
//   3. restore_latest succeeds, unless known is 0 (no save ever committed), and restores a step
//      r with known <= r <= min(newest, known + 1); its state's bytes hash to what the child
//      logged before save r; no checkpoint newer than r is listed, and none is damaged. Both
//      bounds are tight: r = known + 1 is a save renamed into place just before the kill, whose
//      C or D line never came. More than one save past known cannot be on disk, in async mode
//      neither: save k+1 is staged only after save k's on_done has run (max_in_flight 1), so
//      D k is logged before save k+1 can commit. How far the log may run ahead is checked too:
//      sync, newest <= known + 1; async, newest <= known + 2 (the child logs S k+1 as soon as
//      step(k) returns, while save k-1 may still be in its on_done).
//   4. The last K = 3 steps <= r are on disk. Retention only deletes indexed (committed) files
//      that are not among the last K or the best of the index, and every committed step is
//      <= r (r is the newest on disk, and the newest is never deleted), so this holds exactly
//      in async mode too: there retention runs later (at the next step() or wait() after the
//      commit), which can only leave more files, never fewer.
//   5. The best step <= r by the logged val_loss (a tie to the newer) is on disk, and
//      restore_best loads exactly it: nothing better ever entered the index, so no retention
//      pass can have dropped it, however late it ran.
//   6. Retention kept up: a file of a step j <= retained is one retention after save
//      `retained` kept: j > retained - K, or the best step <= retained. Async, retention lags
//      by at most two saves: save k-2 committed before step(k-1) returned, so the log check
//      (1) also wants "A k" to report it (or an earlier A line to have).
// White box (both modes): the kills land before and after every I/O call of save 5: in sync
// mode the calls the main thread makes inside m.step(5) (the save, its directory sync, and
// retention's unlinks), in async mode the calls of the background thread writing save 5 (the
// main thread's calls, retention's unlinks, race with it and are left to the random trials).
// On top of the above, the kill must land in save 5 (D 4 logged and no D 5; sync: C 4 and no
// C 5), and r must be 5 exactly when the kill came after save 5's rename call, else 4.
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
#include <thread>
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

ckpt::manager open_manager(const fs::path& dir, ckpt::io::backend* backend,
                           std::optional<ckpt::async_options> async = std::nullopt) {
    ckpt::manager_options o;
    o.backend = backend;
    o.async = std::move(async);
    return ckpt::manager(dir, ckpt::every_steps(1) | ckpt::on_best("val_loss"),
                         ckpt::keep_last(keep_k) | ckpt::keep_best(1, "val_loss"), o);
}

/// The step in a checkpoint's file name ("ckpt-000000000042.ckpt"), or -1.
std::int64_t step_of_file(const fs::path& p) {
    const std::string name = p.filename().string();
    long long step = -1;
    char tail[8] = {};
    if (std::sscanf(name.c_str(), "ckpt-%lld%7s", &step, tail) != 2 ||
        std::strcmp(tail, ".ckpt") != 0) {
        return -1;
    }
    return step;
}

// ---------------------------------------------------------------------------------------------
// The child

/// posix_backend that counts the I/O calls of one save at a time and, in white-box mode, kills
/// the process just before or just after call `kill_call` of save `kill_save`.
///
/// Which calls are a save's: sync, those the main thread makes inside m.step() (the child
/// arms the tally around it); async, those of the background thread from the end of the
/// previous save (its on_done) to the end of this one: that thread writes the saves one at a
/// time, in step order, and makes no other calls. In async mode the main thread's calls (the
/// scan, restores, retention's unlinks) pass through uncounted. So the tally only ever has one
/// user: the main thread in sync mode; in async mode the background thread, to which the main
/// thread hands it (start()) before the first save is staged (the engine's queue mutex orders
/// the two). The kill settings are set before the manager and its thread exist.
class counting_backend final : public ckpt::io::backend {
public:
    struct tally {
        std::int64_t step = -1;      ///< the save counted
        std::int64_t calls = 0;      ///< its calls so far
        std::int64_t rename_at = -1; ///< index of its rename call; -1: none yet
    };

    counting_backend(bool async, std::int64_t kill_save, std::int64_t kill_call, bool kill_after)
        : async_(async), kill_save_(kill_save), kill_call_(kill_call), kill_after_(kill_after) {}

    /// Counts the calls of save `step` from now on (sync: until disarm()).
    void start(std::int64_t step) {
        tally_ = tally{step, 0, -1};
        armed_ = true;
    }
    /// Sync: stops counting; returns the tally of the save.
    tally disarm() {
        armed_ = false;
        return tally_;
    }
    /// Async, on the background thread (on_done): the tally of the save just finished.
    [[nodiscard]] tally current() const { return tally_; }

    int open(const char* p, int f, ::mode_t m) override {
        tally* t = mine();
        before(t);
        const int r = real_.open(p, f, m);
        after(t);
        return r;
    }
    ::ssize_t write(int fd, const void* d, std::size_t n) override {
        tally* t = mine();
        before(t);
        const auto r = real_.write(fd, d, n);
        after(t);
        return r;
    }
    ::ssize_t pwrite(int fd, const void* d, std::size_t n, ::off_t o) override {
        tally* t = mine();
        before(t);
        const auto r = real_.pwrite(fd, d, n, o);
        after(t);
        return r;
    }
    ::ssize_t pread(int fd, void* d, std::size_t n, ::off_t o) override {
        tally* t = mine();
        before(t);
        const auto r = real_.pread(fd, d, n, o);
        after(t);
        return r;
    }
    int fsync(int fd) override {
        tally* t = mine();
        before(t);
        const int r = real_.fsync(fd);
        after(t);
        return r;
    }
    int close(int fd) override {
        tally* t = mine();
        before(t);
        const int r = real_.close(fd);
        after(t);
        return r;
    }
    int rename(const char* a, const char* b) override {
        tally* t = mine();
        if (t != nullptr && t->rename_at < 0) t->rename_at = t->calls;
        before(t);
        const int r = real_.rename(a, b);
        after(t);
        return r;
    }
    int unlink(const char* p) override {
        tally* t = mine();
        before(t);
        const int r = real_.unlink(p);
        after(t);
        return r;
    }
    int file_size(int fd, std::uint64_t& s) override {
        tally* t = mine();
        before(t);
        const int r = real_.file_size(fd, s);
        after(t);
        return r;
    }
    const void* map(int fd, std::size_t n) override {
        tally* t = mine();
        before(t);
        const void* r = real_.map(fd, n);
        after(t);
        return r;
    }
    void unmap(const void* d, std::size_t n) override {
        tally* t = mine();
        before(t);
        real_.unmap(d, n);
        after(t);
    }
    int allocate(int fd, std::uint64_t n) override {
        tally* t = mine();
        before(t);
        const int r = real_.allocate(fd, n);
        after(t);
        return r;
    }
    void start_writeback(int fd, std::uint64_t o, std::uint64_t n) override {
        tally* t = mine();
        before(t);
        real_.start_writeback(fd, o, n);
        after(t);
    }

private:
    /// The tally this call counts in, or nullptr.
    tally* mine() {
        // Async: armed_ is the background thread's (start() in on_done); not read here.
        if (async_) return std::this_thread::get_id() == main_ ? nullptr : &tally_;
        return armed_ ? &tally_ : nullptr;
    }
    void before(const tally* t) const {
        if (t != nullptr && !kill_after_ && t->step == kill_save_ && t->calls == kill_call_) {
            ::raise(SIGKILL); // from any thread: SIGKILL ends the whole process
        }
    }
    void after(tally* t) const {
        if (t == nullptr) return;
        if (kill_after_ && t->step == kill_save_ && t->calls == kill_call_) ::raise(SIGKILL);
        ++t->calls;
    }

    const bool async_;
    const std::int64_t kill_save_;
    const std::int64_t kill_call_;
    const bool kill_after_;
    const std::thread::id main_ = std::this_thread::get_id();
    bool armed_ = false;
    tally tally_;
    ckpt::io::posix_backend real_;
};

void emit(int fd, const std::string& line) {
    // One write per line: a pipe write of at most PIPE_BUF bytes is atomic, so the lines of the
    // main and the background thread never mix.
    const std::string s = line + "\n";
    if (::write(fd, s.data(), s.size()) != static_cast<::ssize_t>(s.size())) std::_Exit(3);
}

std::string hex_double(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", v);
    return buf;
}

struct child_config {
    fs::path dir;
    int out = -1;
    std::int64_t steps = -1;
    std::int64_t kill_save = -1;
    std::int64_t kill_call = -1;
    bool kill_after = false;
    bool async = false;
};

/// Resumes from the folder and trains, saving every step, until killed or `steps` saves.
/// Lines on `out`: "R <step>" (resumed), "S <step> <hash> <val_loss>" (a save starts), and
/// sync: "C <step> <calls> <rename call>" (it committed, and retention ran, after that many
/// I/O calls); async: "A <step> <committed step>..." (staged; what this step() found committed),
/// "D <step> <calls> <rename call>" (on the background thread: committed), "E <step>" (failed).
/// Exit status 0 after `steps` saves; 4 to 7 when the manager breaks a promise.
int child_main(const child_config& c) {
    counting_backend io(c.async, c.kill_save, c.kill_call, c.kill_after);
    std::optional<ckpt::async_options> async;
    if (c.async) {
        async = ckpt::async_options{};
        async->on_done = [&io, out = c.out](const ckpt::async_done& d) {
            const counting_backend::tally t = io.current();
            if (d.error != nullptr || step_of_file(d.path) != t.step) {
                emit(out, "E " + std::to_string(t.step) + " " + d.path.string());
                return;
            }
            emit(out, "D " + std::to_string(t.step) + " " + std::to_string(t.calls) + " " +
                          std::to_string(t.rename_at));
            io.start(t.step + 1); // the background thread writes the next save next
        };
    }
    state_type s = fresh_state();
    ckpt::manager m = open_manager(c.dir, &io, std::move(async));
    if (auto meta = m.restore_latest(s)) {
        if (meta->step != s.step) return 4;
    }
    if (c.async) io.start(s.step + 1); // before the first save is staged
    emit(c.out, "R " + std::to_string(s.step));
    for (std::int64_t save = 1; c.steps < 0 || save <= c.steps; ++save) {
        nn::train_step(s, train_data());
        const double v = static_cast<double>(nn::evaluate(s.model, val_data()));
        char hash[32];
        std::snprintf(hash, sizeof hash, "%016" PRIx64, state_hash(s));
        emit(c.out, "S " + std::to_string(s.step) + " " + hash + " " + hex_double(v));
        ckpt::metadata meta;
        meta.step = s.step;
        meta.epoch = s.epoch;
        meta.metrics["val_loss"] = v;
        if (!c.async) io.start(s.step);
        const ckpt::save_result r = m.step(s, meta);
        if (!r.saved || step_of_file(r.path) != s.step) return 5;
        if (!c.async) {
            const counting_backend::tally t = io.disarm();
            if (r.pending || r.committed.size() != 1 || r.committed.front() != r.path) return 6;
            emit(c.out, "C " + std::to_string(s.step) + " " + std::to_string(t.calls) + " " +
                            std::to_string(t.rename_at));
        } else {
            if (!r.pending || m.stats().saves_in_flight > 1) return 7;
            std::string line = "A " + std::to_string(s.step);
            for (const auto& p : r.committed) line += " " + std::to_string(step_of_file(p));
            emit(c.out, line);
        }
    }
    m.wait();
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
    bool async = false;
    bool verbose = false;
};

struct totals {
    std::int64_t trials = 0;
    std::int64_t kills_in_save = 0; ///< a save was started and not yet logged committed
    std::int64_t kills_outside = 0;
    std::int64_t restored_new = 0;  ///< a save not yet logged committed (renamed just before)
    std::int64_t restored_prev = 0; ///< the newest save logged committed
    std::int64_t restored_none = 0; ///< nothing committed yet
    std::int64_t temps_cleaned = 0;
    std::int64_t best_checks = 0;
    std::int64_t retention_checks = 0; ///< trials where some save's retention was logged
    std::int64_t failures = 0;
};

/// What the parent knows of the folder: every step's logged hash and val_loss (the latest
/// lineage's), and the step the last check restored (where the next child resumes).
struct ledger {
    std::map<std::int64_t, std::uint64_t> hash;
    std::map<std::int64_t, double> val_loss;
    std::int64_t committed = 0; ///< 0: none
};

/// What one child's log says about its saves at the kill.
struct run_log {
    std::int64_t resumed = 0;   ///< the step it resumed from
    std::int64_t started = 0;   ///< newest save started (S); 0: none
    std::int64_t committed = 0; ///< newest save logged committed (C, D); 0: none
    std::int64_t retained = 0;  ///< newest save retention is logged to have run after; 0: none
    struct io_calls {
        std::int64_t calls = 0;
        std::int64_t rename_at = -1;
    };
    std::map<std::int64_t, io_calls> io; ///< per committed save, from C or D
    std::vector<std::string> problems;   ///< where the log breaks the manager's promises

    /// The newest save known committed: logged, or the one it resumed from.
    [[nodiscard]] std::int64_t known() const { return committed != 0 ? committed : resumed; }
    /// The newest save that may be on disk.
    [[nodiscard]] std::int64_t newest() const { return std::max(started, known()); }
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
        const char* mode = o.async ? "async" : "sync";
        ::execl(self_exe.c_str(), self_exe.c_str(), "--child", o.dir.c_str(), fd.c_str(),
                st.c_str(), ks.c_str(), kc.c_str(), when, mode, static_cast<char*>(nullptr));
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

/// Applies the child's lines to the ledger (the hash and val_loss of every save started) and
/// reads what they say about its saves, checking their order (invariant 1).
run_log record(ledger& l, const std::vector<std::string>& lines, bool async) {
    run_log g;
    g.resumed = l.committed;
    const auto problem = [&](const std::string& line, const std::string& why) {
        g.problems.push_back("\"" + line + "\": " + why);
    };
    for (const std::string& line : lines) {
        std::istringstream in(line);
        char kind = 0;
        std::int64_t step = 0;
        in >> kind >> step;
        if (kind == 'R') {
            if (step != l.committed) {
                problem(line,
                        "resumed, but the last check restored step " + std::to_string(l.committed));
            }
            g.resumed = step;
        } else if (kind == 'S') {
            std::string hash;
            std::string v;
            in >> hash >> v;
            l.hash[step] = std::stoull(hash, nullptr, 16);
            l.val_loss[step] = std::strtod(v.c_str(), nullptr);
            if (step != std::max(g.started, g.resumed) + 1) problem(line, "not the next step");
            g.started = step;
        } else if (kind == 'C' || kind == 'D') {
            if (kind != (async ? 'D' : 'C')) problem(line, "wrong mode");
            run_log::io_calls c;
            in >> c.calls >> c.rename_at;
            g.io[step] = c;
            if (step != g.known() + 1 || step > g.started) {
                problem(line, "not the save after the last one committed, or never started");
            }
            g.committed = step;
            if (kind == 'C') g.retained = step;
        } else if (kind == 'A') {
            if (!async) problem(line, "wrong mode");
            if (step != g.started) problem(line, "not the save started last");
            if (step - 1 > g.known()) {
                problem(line, "step() returned (staged save " + std::to_string(step) +
                                  ") before save " + std::to_string(step - 1) +
                                  " committed, with max_in_flight 1 and when_full::wait");
            }
            for (std::int64_t c = 0; in >> c;) {
                if (c != std::max(g.retained, g.resumed) + 1 || c > g.committed) {
                    problem(line, "reports save " + std::to_string(c) +
                                      " committed: out of order, or before its on_done");
                }
                g.retained = c;
            }
            // Save k-2 committed before step(k-1) returned (staging k-1 waited for it), so
            // step(k) is a step() after its commit: it must have indexed it and run retention.
            if (step - 2 > g.resumed && g.retained < step - 2) {
                problem(line, "step() returned without applying retention after save " +
                                  std::to_string(step - 2) +
                                  ", committed before the step() "
                                  "before it returned");
            }
        } else {
            problem(line, "a save failed, or an unknown line");
        }
    }
    return g;
}

bool is_temp(const fs::path& p) {
    return p.filename().string().find(".tmp-") != std::string::npos;
}

/// The best step <= `upto` by the logged val_loss (a tie to the newer), or 0.
std::int64_t best_upto(const ledger& l, std::int64_t upto) {
    std::int64_t best = 0;
    double best_v = 0;
    for (const auto& [step, v] : l.val_loss) {
        if (step > upto) break;
        if (best == 0 || v <= best_v) {
            best = step;
            best_v = v;
        }
    }
    return best;
}

/// Opens the folder as a restarted run would (a synchronous manager, whatever the child used)
/// and checks every invariant; prints what fails. `restored`: the step restore_latest loaded.
bool verify(const options& o, ledger& l, const run_log& g, totals& t, const std::string& what,
            std::optional<std::int64_t>& restored) {
    bool ok = true;
    const auto fail = [&](const std::string& msg) {
        std::fprintf(stderr, "FAIL (%s): %s\n", what.c_str(), msg.c_str());
        ok = false;
    };
    for (const auto& p : g.problems) fail("the log: " + p);
    const std::int64_t known = g.known();
    const std::int64_t newest = g.newest();
    if (newest > known + (o.async ? 2 : 1)) {
        fail("saves " + std::to_string(known + 1) + " to " + std::to_string(newest) +
             " started while save " + std::to_string(known) + " is the newest committed");
    }
    try {
        ckpt::manager m = open_manager(o.dir, nullptr);
        t.temps_cleaned += static_cast<std::int64_t>(m.cleaned().size());
        if (m.cleaned().size() > 1) {
            fail(std::to_string(m.cleaned().size()) +
                 " temporary files at start, with one save written at a time");
        }
        for (const auto& de : fs::directory_iterator(o.dir)) {
            if (is_temp(de.path()))
                fail("temporary file survived the start: " + de.path().string());
        }
        if (!m.skipped().empty()) fail("damaged checkpoint: " + m.skipped().front().reason);
        state_type s = fresh_state();
        const auto meta = m.restore_latest(s);
        if (!meta) {
            if (known != 0)
                fail("nothing restored, but step " + std::to_string(known) + " had committed");
            t.restored_none += 1;
            return ok;
        }
        const std::int64_t r = meta->step;
        restored = r;
        if (r < known || r > std::min(newest, known + 1)) {
            fail("restored step " + std::to_string(r) + "; committed " + std::to_string(known) +
                 ", newest started " + std::to_string(newest));
            return ok;
        }
        (r == known ? t.restored_prev : t.restored_new) += 1;
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
        const std::int64_t best = best_upto(l, r);
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
        // Retention kept up: after save c it kept only the last K steps <= c and the best.
        if (const std::int64_t c = g.retained; c > 0) {
            const std::int64_t best_c = best_upto(l, c);
            for (const auto& e : entries) {
                if (e.step <= c - static_cast<std::int64_t>(keep_k) && e.step != best_c) {
                    fail("step " + std::to_string(e.step) + " is still on disk, though retention" +
                         " ran after save " + std::to_string(c) + " (best then: step " +
                         std::to_string(best_c) + ")");
                }
            }
            t.retention_checks += 1;
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

const char* mode_name(const options& o) {
    return o.async ? " --async" : "";
}

int run_random(const options& o) {
    using clock = std::chrono::steady_clock;
    std::mt19937_64 rng(o.seed);
    totals t;
    ledger l;
    reset_dir(o, l);
    const char commit_kind = o.async ? 'D' : 'C';
    // Running estimates of a save's duration (from its S line to its commit line; async, that
    // includes waiting for the save before it) and of a step's (from one S line to the next).
    double save_us = 2000;
    double step_us = 3000;
    const auto start = clock::now();
    const auto elapsed = [&] {
        return std::chrono::duration<double>(clock::now() - start).count();
    };
    for (std::int64_t trial = 0; o.seconds > 0 ? elapsed() < o.seconds : trial < o.trials;
         ++trial) {
        // Long lineages make the state (its loss log) grow: start over now and then.
        if (trial % 100 == 99) reset_dir(o, l);
        auto [pid, fd] = start_child(o, -1, -1, -1, false);
        std::vector<std::string> lines;
        std::string partial;
        std::map<std::int64_t, clock::time_point> started_at;
        std::int64_t last_s_step = 0;
        std::int64_t last_commit_step = 0;
        auto last_s = clock::now();
        auto last_commit = clock::now();
        std::size_t seen_s = 0;
        const auto take = [&](std::size_t first) {
            const auto now = clock::now();
            for (std::size_t i = first; i < lines.size(); ++i) {
                std::istringstream in(lines[i]);
                char kind = 0;
                std::int64_t step = 0;
                in >> kind >> step;
                if (kind == 'S') {
                    if (seen_s > 0) {
                        step_us =
                            0.9 * step_us +
                            0.1 * std::chrono::duration<double, std::micro>(now - last_s).count();
                    }
                    started_at[step] = now;
                    last_s = now;
                    last_s_step = step;
                    ++seen_s;
                } else if (kind == commit_kind) {
                    if (const auto it = started_at.find(step); it != started_at.end()) {
                        save_us =
                            0.9 * save_us +
                            0.1 *
                                std::chrono::duration<double, std::micro>(now - it->second).count();
                    }
                    last_commit = now;
                    last_commit_step = step;
                }
            }
        };
        // Skip 0..3 save starts after the resume, then kill: mostly in the save window (a delay
        // of up to 1.5 save durations after "S"), sometimes just after a commit (sync: anywhere
        // in the training up to the next save; async: in the time that follows it, when the
        // main thread collects the commit and applies retention while the next save is written).
        const auto saves_to_skip = static_cast<std::size_t>(rng() % 4);
        const bool aim_at_save = rng() % 4 != 0;
        bool alive = true;
        while (alive && seen_s <= saves_to_skip) {
            const std::size_t before = lines.size();
            alive = read_lines(fd, partial, lines, -1);
            take(before);
        }
        auto from = last_s;
        double window = 1.5 * save_us;
        if (!aim_at_save) {
            const std::int64_t wanted = last_s_step;
            while (alive && last_commit_step < wanted) {
                const std::size_t before = lines.size();
                alive = read_lines(fd, partial, lines, -1);
                take(before);
            }
            from = last_commit;
            window = o.async ? 0.5 * save_us : std::max(step_us - save_us, 1.0);
        }
        const auto delay = std::uniform_real_distribution<double>(0, window)(rng);
        if (delay > 1) {
            const auto until = from + std::chrono::microseconds(static_cast<std::int64_t>(delay));
            while (clock::now() < until) {
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
        const run_log g = record(l, lines, o.async);
        (g.newest() > g.known() ? t.kills_in_save : t.kills_outside) += 1;
        std::optional<std::int64_t> restored;
        if (!verify(o, l, g, t, "trial " + std::to_string(trial), restored)) t.failures += 1;
        t.trials += 1;
    }
    std::printf("crashtest%s: %lld trials in %.1f s (seed %llu): %lld kills during a save, %lld "
                "outside; restored the newest save logged committed %lld, a newer one (renamed "
                "before its commit was logged) %lld, none (nothing committed "
                "yet) %lld; %lld temporary files cleaned at start; %lld best checks, %lld "
                "retention checks; %lld failures\n",
                mode_name(o), static_cast<long long>(t.trials), elapsed(),
                static_cast<unsigned long long>(o.seed), static_cast<long long>(t.kills_in_save),
                static_cast<long long>(t.kills_outside), static_cast<long long>(t.restored_prev),
                static_cast<long long>(t.restored_new), static_cast<long long>(t.restored_none),
                static_cast<long long>(t.temps_cleaned), static_cast<long long>(t.best_checks),
                static_cast<long long>(t.retention_checks), static_cast<long long>(t.failures));
    return t.failures == 0 ? 0 : 1;
}

/// Every I/O call of the 5th save (one that replaces nothing but lets retention delete):
/// a kill just before and just after call k, for every k. Sync: the main thread's calls in
/// m.step(5); async: the background thread's calls writing save 5.
int run_white_box(const options& o) {
    constexpr std::int64_t saves = 6;
    constexpr std::int64_t target = 5;
    totals t;
    ledger l;
    // A clean run tells how many calls each save makes, and which one is the rename.
    reset_dir(o, l);
    auto [pid, fd] = start_child(o, saves, -1, -1, false);
    std::string partial;
    const auto lines = drain(fd, partial, {});
    int status = 0;
    ::waitpid(pid, &status, 0);
    const run_log probe = record(l, lines, o.async);
    for (const auto& p : probe.problems)
        std::fprintf(stderr, "crashtest: probe run: %s\n", p.c_str());
    const auto it = probe.io.find(target);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !probe.problems.empty() ||
        it == probe.io.end() || it->second.calls <= 0 || it->second.rename_at < 0) {
        std::fprintf(stderr, "crashtest: the probe run failed (status %d)\n", status);
        return 2;
    }
    const std::int64_t calls = it->second.calls;
    const std::int64_t rename_at = it->second.rename_at;
    for (std::int64_t k = 0; k < calls; ++k) {
        for (const bool after : {false, true}) {
            reset_dir(o, l);
            auto [p, f] = start_child(o, saves, target, k, after);
            std::string part;
            const auto got = drain(f, part, {});
            int st = 0;
            ::waitpid(p, &st, 0);
            const std::string what = std::string("white box") + mode_name(o) + ": kill " +
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
            const run_log g = record(l, got, o.async);
            if (g.committed != target - 1 || g.started < target) {
                std::fprintf(stderr, "FAIL (%s): the kill was not in save %lld\n", what.c_str(),
                             static_cast<long long>(target));
                t.failures += 1;
                continue;
            }
            t.kills_in_save += 1;
            std::optional<std::int64_t> restored;
            bool ok = verify(o, l, g, t, what, restored);
            // The rename is the commit point: before it the old state, after it the new one.
            const bool renamed = k > rename_at || (k == rename_at && after);
            const std::int64_t expected = renamed ? target : target - 1;
            if (restored != expected) {
                std::fprintf(stderr,
                             "FAIL (%s): restored step %lld, expected %lld (the rename "
                             "is call %lld)\n",
                             what.c_str(), static_cast<long long>(restored.value_or(-1)),
                             static_cast<long long>(expected), static_cast<long long>(rename_at));
                ok = false;
            }
            if (!ok) t.failures += 1;
            if (o.verbose) {
                std::printf("  %s: restored step %lld\n", what.c_str(),
                            static_cast<long long>(restored.value_or(-1)));
            }
        }
    }
    std::printf("crashtest --white-box%s: %lld calls in save %lld (rename: call %lld), %lld kills "
                "(before and after each): restored the new checkpoint %lld, the previous one "
                "%lld; %lld temporary files cleaned at start; %lld failures\n",
                mode_name(o), static_cast<long long>(calls), static_cast<long long>(target),
                static_cast<long long>(rename_at), static_cast<long long>(t.trials),
                static_cast<long long>(t.restored_new), static_cast<long long>(t.restored_prev),
                static_cast<long long>(t.temps_cleaned), static_cast<long long>(t.failures));
    return t.failures == 0 ? 0 : 1;
}

int usage() {
    std::fprintf(stderr, "usage: crashtest [--trials N | --seconds S] [--seed X] [--dir D] "
                         "[--white-box] [--async] [--verbose]\n");
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 9 && std::strcmp(argv[1], "--child") == 0) {
        try {
            child_config c;
            c.dir = argv[2];
            c.out = std::atoi(argv[3]);
            c.steps = std::atoll(argv[4]);
            c.kill_save = std::atoll(argv[5]);
            c.kill_call = std::atoll(argv[6]);
            c.kill_after = std::strcmp(argv[7], "after") == 0;
            c.async = std::strcmp(argv[8], "async") == 0;
            return child_main(c);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "crashtest child: %s\n", e.what());
            return 8;
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
        } else if (a == "--async") {
            o.async = true;
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
