#include "measure.hpp"

#include "baselines.hpp"
#include "cereal_peer.hpp"
#include "cleanup.hpp"
#include "clock.hpp"
#include "format.hpp"
#include "python_process.hpp"

#include <ckpt/ckpt.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bench {

namespace {

namespace fs = std::filesystem;

/// One operation of a run: times itself and appends to its series.
using step = std::function<void()>;

/// Runs every step of `steps` once, starting at a place that rotates with the run and going
/// backwards on odd runs, so that no operation always follows the same one.
void run_rotated(std::vector<step>& steps, int run) {
    const std::size_t n = steps.size();
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t start = static_cast<std::size_t>(run) % n;
        const std::size_t i = run % 2 == 0 ? (start + k) % n : (start + n - k) % n;
        steps[i]();
    }
}

} // namespace

void measure_rss(size_result& r, const options& opt, const work_paths& p) {
    const state_shape& shape = r.shape;
    r.rss.push_back({"save", "ckpt save", measure_peak(shape, true, [&](const train_state& st) {
                         ckpt::save(p.rss_ckpt, st);
                     })});
    r.rss.push_back({"async_save",
                     "ckpt async save (" + std::to_string(opt.in_flight) + " in flight)",
                     measure_peak(shape, true, [&](const train_state& st) {
                         ckpt::async_options o;
                         o.max_in_flight = opt.in_flight;
                         ckpt::async_saver saver(o);
                         // max_in_flight + 1 back to back: the last waits for room. Twice, so
                         // reused staging buffers show too.
                         for (int round = 0; round < 2; ++round) {
                             for (std::size_t k = 0; k <= opt.in_flight; ++k)
                                 saver.save(p.rss_ckpt, st);
                             saver.wait();
                         }
                     })});
    r.rss.push_back(
        {"load", "ckpt load (shaped state)",
         measure_peak(shape, false, [&](train_state& st) { ckpt::load(p.rss_ckpt, st); })});
    r.rss.push_back(
        {"cereal_save", "cereal save",
         measure_peak(shape, true, [&](const train_state& st) { cereal_save(p.rss_cereal, st); })});
    r.rss.push_back(
        {"cereal_load", "cereal load (shaped state)",
         measure_peak(shape, false, [&](train_state& st) { cereal_load(p.rss_cereal, st); })});
    fs::remove(p.rss_ckpt);
    fs::remove(p.rss_cereal);
    if (!opt.torch.enabled) return;
    torch_info info;
    const rss_result saved = torch_peak(opt.torch, shape, p.rss_torch, "save", info);
    r.torch = info;
    if (info.error.empty()) {
        r.rss.push_back({"torch_save", "torch.save", saved});
        r.rss.push_back({"torch_load", "torch.load + load_state_dict",
                         torch_peak(opt.torch, shape, p.rss_torch, "load", info)});
    }
    fs::remove(p.rss_torch);
}

void measure_times(size_result& r, const options& opt, const work_paths& p) {
    const state_shape& shape = r.shape;
    const train_state state = make_state(shape, true);
    train_state loaded = make_state(shape, false);
    train_state cereal_loaded = make_state(shape, false);
    bool other_loads_exact = true; // the loads into an empty state and the resumes
    r.params = param_count(state);
    r.tensors = tensor_count(state);
    r.state_bytes = tensor_bytes(state);

    // Warm-up: one save gives the byte count; the baselines move those very bytes.
    r.file_bytes = ckpt::save(p.ckpt, state);
    const auto n = static_cast<std::size_t>(r.file_bytes);
    // The file's bytes: written by the write baseline, read into by pread (as load fills the
    // state's memory), hashed by XXH3. The copy: memcpy's target, like a staging buffer.
    const prefaulted buffer(n, pages::plain);
    const prefaulted copy(static_cast<std::size_t>(r.state_bytes), pages::huge);
    raw_read(p.ckpt, buffer.data(), n);
    raw_write(p.raw, buffer.data(), n);
    copy_state(state, copy.data());
    cereal_save(p.cereal, state);
    r.cereal_bytes = static_cast<std::uint64_t>(fs::file_size(p.cereal));
    ckpt::load(p.ckpt, loaded);
    cereal_load(p.cereal, cereal_loaded);

    ckpt::async_options aopt;
    aopt.max_in_flight = opt.in_flight;
    ckpt::async_saver saver(aopt);
    {
        const auto t0 = bench_clock::now();
        saver.save(p.async, state);
        r.cold_stall = seconds_since(t0);
        const auto t1 = bench_clock::now();
        saver.wait();
        r.cold_background = seconds_since(t1);
    }
    {
        ckpt::async_saver reserved(aopt);
        const auto t0 = bench_clock::now();
        reserved.reserve(state);
        r.reserve_seconds = seconds_since(t0);
        const auto t1 = bench_clock::now();
        reserved.save(p.async, state);
        r.reserved_stall = seconds_since(t1);
        reserved.wait();
    }

    std::optional<python_process> torch;
    if (opt.torch.enabled) {
        std::vector<std::string> argv = torch_argv(opt.torch, shape, p.torch);
        argv.push_back("--serve");
        torch.emplace(argv, opt.torch.log, true);
        r.torch = torch_info_of(torch->read());
        if (r.torch.error.empty()) { // warm-up save, load and resume
            std::string error;
            for (const char* command : {"save", "load", "resume"}) {
                torch->send(command);
                const rapidjson::Document d = torch->read();
                error += text(d, "error");
                if (std::string(command) == "save")
                    r.torch_bytes = static_cast<std::uint64_t>(number(d, "file_bytes", 0));
            }
            r.torch.error = error;
        }
        if (!r.torch.error.empty()) torch.reset();
    }

    // The managers live through every run of this size, each in its own directory; a warm-up
    // step each (its first save deletes nothing in either). keep_last(runs + 2) never deletes.
    const std::size_t keep_all_runs = static_cast<std::size_t>(opt.runs) + 2;
    std::optional<ckpt::manager> keeper;
    std::optional<ckpt::manager> deleter;
    ckpt::metadata keeper_meta;
    ckpt::metadata deleter_meta;
    for (const std::string* d : {&p.manager_keep, &p.manager_delete}) fs::remove_all(*d);
    keeper.emplace(p.manager_keep, ckpt::every_steps(1), ckpt::keep_last(keep_all_runs));
    deleter.emplace(p.manager_delete, ckpt::every_steps(1), ckpt::keep_last(1));
    for (auto [m, meta] :
         {std::pair{&*keeper, &keeper_meta}, std::pair{&*deleter, &deleter_meta}}) {
        meta->step = 1;
        (void)m->step(state, *meta);
    }
    ckpt::io::default_backend().flush_releases();

    const std::uint64_t fb = r.file_bytes;
    r.ops = {
        make_series("memcpy", "memcpy", "", r.state_bytes),
        make_series("write", "write+fsync", "", fb),
        make_series("write_reserved", "write+fsync (fallocate, sync_file_range)", "", fb),
        make_series("pread", "pread (warm)", "", fb),
        make_series("xxh3", "XXH3_64bits", "", fb),
        make_series("pread_xxh3", "pread + XXH3_64bits", "", fb),
        make_series("save", "ckpt save", "write", fb),
        make_series("save_reserved", "ckpt save", "write_reserved", fb), // the same runs
        make_series("save_replace", "ckpt save, replacing the file", "save", fb),
        make_series("manager_keep", "manager step, no delete", "save", fb),
        make_series("manager_delete", "manager step, retention deletes", "manager_keep", fb),
        make_series("async_stall", "ckpt async save: stall", "memcpy", r.state_bytes),
        make_series("async_background", "ckpt async save: background", "write", fb),
        make_series("load", "ckpt load (warm, shaped state)", "pread", fb),
        make_series("load_verified", "ckpt load (warm, shaped state)", "pread_xxh3", fb), // same
        make_series("load_empty", "ckpt load (warm, empty state)", "pread_xxh3", fb),
        absolute_series("resume", "resume: build state + ckpt load", fb),
        absolute_series("resume_build", "resume: of which build state (zero-filled)"),
        absolute_series("inspect", "ckpt inspect (header only)"),
        make_series("inspect_verify", "ckpt inspect, verify", "pread_xxh3", fb),
        make_series("cereal_save", "cereal save + fsync", "write", r.cereal_bytes),
        make_series("cereal_load", "cereal load (warm, shaped state)", "pread", r.cereal_bytes),
    };
    if (torch) {
        const std::uint64_t tb = r.torch_bytes;
        r.ops.push_back(make_series("torch_save", "torch.save + fsync", "write", tb));
        r.ops.push_back(make_series("torch_load", "torch.load (warm, new tensors)", "pread", tb));
        r.ops.push_back(make_series(
            "torch_restore", "torch.load + load_state_dict (warm, live model)", "pread", tb));
        r.ops.push_back(absolute_series(
            "torch_resume", "resume: build model + Adam + torch.load + load_state_dict", tb));
        r.ops.push_back(
            absolute_series("torch_resume_build", "resume: of which build model + Adam"));
    }
    const auto add = [&](const char* key, sample x) {
        series& s = r.op(key);
        s.seconds.push_back(x.seconds);
        s.faults.push_back(x.faults);
    };

    // The timed operations, each with the minor page faults around it. A baseline and its ckpt
    // counterpart run back to back, in an order that alternates from run to run (`pair`), so
    // that both see the same state of the machine.
    const auto write = [&] {
        fresh_target(p.raw);
        add("write", counted([&] { return raw_write(p.raw, buffer.data(), n); }));
    };
    const auto write_reserved = [&] {
        fresh_target(p.raw);
        add("write_reserved", counted([&] { return raw_write_reserved(p.raw, buffer.data(), n); }));
    };
    const auto save = [&] {
        fresh_target(p.ckpt);
        add("save", timed([&] { ckpt::save(p.ckpt, state); }));
    };
    const auto save_replace = [&] { // over the file the last save left, on an idle disk
        sync_directory(fs::path(p.ckpt).parent_path().string());
        add("save_replace", timed([&] { ckpt::save(p.ckpt, state); }));
        // ckpt closes the replaced file on a background thread (freeing its blocks takes a
        // while); the next operation must not inherit that.
        ckpt::io::default_backend().flush_releases();
    };
    const auto manager_step = [&](ckpt::manager& m, ckpt::metadata& meta, const std::string& d,
                                  const char* key, std::size_t deletes) {
        sync_directory(d);
        ++meta.step;
        ckpt::save_result res;
        add(key, timed([&] { res = m.step(state, meta); }));
        if (!res.saved || res.deleted.size() != deletes)
            die(std::string(key) + ": the manager's step did not save, or deleted " +
                std::to_string(res.deleted.size()) + " files");
        ckpt::io::default_backend().flush_releases(); // the deleted file's blocks, untimed
    };
    const auto memcpy_state = [&] {
        add("memcpy", counted([&] { return copy_state(state, copy.data()); }));
    };
    const auto async_save = [&] { // memcpy before it, or after wait(): the worker is idle then
        fresh_target(p.async);
        ckpt::async_ticket ticket;
        add("async_stall", timed([&] { ticket = saver.save(p.async, state); }));
        if (!ticket) die("async save not staged: " + ticket.skipped);
        add("async_background", timed([&] { saver.wait(); }));
    };
    const auto pread = [&] {
        add("pread", counted([&] { return raw_read(p.ckpt, buffer.data(), n); }));
    };
    const auto load = [&] { add("load", timed([&] { ckpt::load(p.ckpt, loaded); })); };
    const auto load_empty = [&] {
        train_state fresh; // load creates every tensor; freed outside the timing
        add("load_empty", timed([&] { ckpt::load(p.ckpt, fresh); }));
        if (!same_state(state, fresh)) other_loads_exact = false;
    };
    const auto resume = [&] {          // a program that starts, builds its state and resumes
        std::optional<train_state> st; // freed outside the timing
        const long f0 = minor_faults();
        const auto t0 = bench_clock::now();
        st.emplace(make_state(shape, false));
        const double built = seconds_since(t0);
        const long f1 = minor_faults();
        ckpt::load(p.ckpt, *st);
        const double all = seconds_since(t0);
        add("resume", {all, static_cast<double>(minor_faults() - f0)});
        add("resume_build", {built, static_cast<double>(f1 - f0)});
        if (!same_state(state, *st)) other_loads_exact = false;
    };
    const auto pread_xxh3 = [&] {
        add("pread_xxh3", counted([&] {
                const double t = raw_read(p.ckpt, buffer.data(), n);
                return t + hash_bytes(buffer.data(), n);
            }));
    };
    const auto inspect_verify = [&] {
        ckpt::inspect_options o;
        o.verify = true;
        ckpt::info i;
        add("inspect_verify", timed([&] { i = ckpt::inspect(p.ckpt, o); }));
        if (!i.checksum_verified) die("inspect: checksum not verified");
    };
    int run = 0;
    const auto pair = [&run](step a, step b) -> step {
        return [&run, a = std::move(a), b = std::move(b)] {
            (run % 2 == 0 ? a : b)();
            (run % 2 == 0 ? b : a)();
        };
    };

    // Writers first in each run, each on an idle disk (fresh_target, sync_directory), then
    // readers, which find the files just written in the page cache. The two raw writes and the
    // two saves run back to back, in an order that reverses on odd runs: the fresh save sits
    // between the plain write and the save that replaces its file.
    std::vector<step> writers = {
        pair(pair(write_reserved, write), pair(save, save_replace)),
        pair(memcpy_state, async_save),
        pair([&] { manager_step(*keeper, keeper_meta, p.manager_keep, "manager_keep", 0); },
             [&] { manager_step(*deleter, deleter_meta, p.manager_delete, "manager_delete", 1); }),
        [&] {
            fresh_target(p.cereal);
            add("cereal_save", counted([&] { return cereal_save(p.cereal, state); }));
        },
    };
    std::vector<step> readers = {
        pair(pread, load),
        pair(pair(inspect_verify, pread_xxh3), load_empty),
        [&] { add("xxh3", counted([&] { return hash_bytes(buffer.data(), n); })); },
        [&] {
            ckpt::info i;
            add("inspect", timed([&] { i = ckpt::inspect(p.ckpt); }));
            if (i.tensors.size() != r.tensors) die("inspect: wrong tensor count");
        },
        [&] { add("cereal_load", counted([&] { return cereal_load(p.cereal, cereal_loaded); })); },
    };
    // The torch figures are timed in Python, and its minor faults counted there.
    const auto ask = [&](const char* command) {
        torch->send(command);
        rapidjson::Document d = torch->read();
        if (d.HasMember("error")) torch_failed(opt.torch, text(d, "error"));
        return d;
    };
    if (torch) {
        writers.push_back([&] { // the script makes its own fresh_target
            const rapidjson::Document d = ask("save");
            add("torch_save", {number(d, "save"), number(d, "faults")});
        });
        readers.push_back([&] {
            const rapidjson::Document d = ask("load");
            add("torch_load", {number(d, "load"), number(d, "load_faults")});
            add("torch_restore", {number(d, "load") + number(d, "restore"),
                                  number(d, "load_faults") + number(d, "restore_faults")});
        });
        readers.push_back(pair(resume, [&] {
            const rapidjson::Document d = ask("resume");
            add("torch_resume", {number(d, "build") + number(d, "load") + number(d, "restore"),
                                 number(d, "faults")});
            add("torch_resume_build", {number(d, "build"), number(d, "build_faults")});
        }));
    } else {
        readers.push_back(resume);
    }

    for (run = 0; run < opt.runs; ++run) {
        progress("%s: run %d of %d", size_name(r.target_mib).c_str(), run + 1, opt.runs);
        run_rotated(writers, run);
        run_rotated(readers, run);
    }

    for (const auto& [copy_to, from] :
         {std::pair{"load_verified", "load"}, std::pair{"save_reserved", "save"}}) {
        r.op(copy_to).seconds = r.op(from).seconds;
        r.op(copy_to).faults = r.op(from).faults;
    }
    r.ckpt_exact = same_state(state, loaded) && other_loads_exact;
    r.cereal_exact = same_state(state, cereal_loaded);
    if (torch) {
        torch->send("quit");
        torch->finish();
    }
    saver.wait();
    keeper.reset();
    deleter.reset();
    for (const std::string* f : {&p.ckpt, &p.async, &p.raw, &p.cereal, &p.torch}) fs::remove(*f);
    for (const std::string* d : {&p.manager_keep, &p.manager_delete}) fs::remove_all(*d);
}

} // namespace bench
