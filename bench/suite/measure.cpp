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
    r.rss.push_back({"load", "ckpt load", measure_peak(shape, false, [&](train_state& st) {
                         ckpt::load(p.rss_ckpt, st);
                     })});
    r.rss.push_back(
        {"cereal_save", "cereal save",
         measure_peak(shape, true, [&](const train_state& st) { cereal_save(p.rss_cereal, st); })});
    r.rss.push_back({"cereal_load", "cereal load", measure_peak(shape, false, [&](train_state& st) {
                         cereal_load(p.rss_cereal, st);
                     })});
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
        if (r.torch.error.empty()) { // warm-up save and load
            torch->send("save");
            const rapidjson::Document s = torch->read();
            torch->send("load");
            const rapidjson::Document l = torch->read();
            if (s.HasMember("error") || l.HasMember("error"))
                r.torch.error = text(s, "error") + text(l, "error");
            r.torch_bytes = static_cast<std::uint64_t>(number(s, "file_bytes", 0));
        }
        if (!r.torch.error.empty()) torch.reset();
    }

    const std::uint64_t fb = r.file_bytes;
    r.ops = {
        {"memcpy", "memcpy", "", r.state_bytes, {}},
        {"write", "write+fsync", "", fb, {}},
        {"pread", "pread (warm)", "", fb, {}},
        {"xxh3", "XXH3_64bits", "", fb, {}},
        {"pread_xxh3", "pread + XXH3_64bits", "", fb, {}},
        {"save", "ckpt save", "write", fb, {}},
        {"async_stall", "ckpt async save: stall", "memcpy", r.state_bytes, {}},
        {"async_background", "ckpt async save: background", "write", fb, {}},
        {"load", "ckpt load (warm)", "pread", fb, {}},
        {"load_verified", "ckpt load (warm)", "pread_xxh3", fb, {}}, // the same runs
        {"inspect", "ckpt inspect (header only)", "", 0, {}},
        {"inspect_verify", "ckpt inspect, verify", "pread_xxh3", fb, {}},
        {"cereal_save", "cereal save + fsync", "write", r.cereal_bytes, {}},
        {"cereal_load", "cereal load (warm)", "pread", r.cereal_bytes, {}},
    };
    if (torch) {
        r.ops.push_back({"torch_save", "torch.save + fsync", "write", r.torch_bytes, {}});
        r.ops.push_back({"torch_load", "torch.load (warm)", "pread", r.torch_bytes, {}});
        r.ops.push_back(
            {"torch_restore", "torch.load + load_state_dict", "pread", r.torch_bytes, {}});
    }
    const auto add = [&](const char* key, double s) { r.op(key).seconds.push_back(s); };

    // The timed operations. A baseline and its ckpt counterpart run back to back, in an order
    // that alternates from run to run (`pair`), so that both see the same state of the machine.
    const auto write = [&] {
        fresh_target(p.raw);
        add("write", raw_write(p.raw, buffer.data(), n));
    };
    const auto save = [&] {
        fresh_target(p.ckpt);
        const auto t0 = bench_clock::now();
        ckpt::save(p.ckpt, state);
        add("save", seconds_since(t0));
    };
    const auto memcpy_state = [&] { add("memcpy", copy_state(state, copy.data())); };
    const auto async_save = [&] { // memcpy before it, or after wait(): the worker is idle then
        fresh_target(p.async);
        const auto t0 = bench_clock::now();
        const ckpt::async_ticket ticket = saver.save(p.async, state);
        add("async_stall", seconds_since(t0));
        if (!ticket) die("async save not staged: " + ticket.skipped);
        const auto t1 = bench_clock::now();
        saver.wait();
        add("async_background", seconds_since(t1));
    };
    const auto pread = [&] { add("pread", raw_read(p.ckpt, buffer.data(), n)); };
    const auto load = [&] {
        const auto t0 = bench_clock::now();
        ckpt::load(p.ckpt, loaded);
        add("load", seconds_since(t0));
    };
    const auto pread_xxh3 = [&] {
        const double t = raw_read(p.ckpt, buffer.data(), n);
        add("pread_xxh3", t + hash_bytes(buffer.data(), n));
    };
    const auto inspect_verify = [&] {
        ckpt::inspect_options o;
        o.verify = true;
        const auto t0 = bench_clock::now();
        const ckpt::info i = ckpt::inspect(p.ckpt, o);
        add("inspect_verify", seconds_since(t0));
        if (!i.checksum_verified) die("inspect: checksum not verified");
    };
    int run = 0;
    const auto pair = [&run](step a, step b) -> step {
        return [&run, a = std::move(a), b = std::move(b)] {
            (run % 2 == 0 ? a : b)();
            (run % 2 == 0 ? b : a)();
        };
    };

    // Writers first in each run, each on a fresh target and an idle disk (fresh_target), then
    // readers, which find the files just written in the page cache.
    std::vector<step> writers = {
        pair(write, save),
        pair(memcpy_state, async_save),
        [&] {
            fresh_target(p.cereal);
            add("cereal_save", cereal_save(p.cereal, state));
        },
    };
    std::vector<step> readers = {
        pair(pread, load),
        pair(pread_xxh3, inspect_verify),
        [&] { add("xxh3", hash_bytes(buffer.data(), n)); },
        [&] {
            const auto t0 = bench_clock::now();
            const ckpt::info i = ckpt::inspect(p.ckpt);
            add("inspect", seconds_since(t0));
            if (i.tensors.size() != r.tensors) die("inspect: wrong tensor count");
        },
        [&] { add("cereal_load", cereal_load(p.cereal, cereal_loaded)); },
    };
    if (torch) {
        writers.push_back([&] { // the script makes its own fresh_target
            torch->send("save");
            const rapidjson::Document d = torch->read();
            if (d.HasMember("error")) torch_failed(opt.torch, text(d, "error"));
            add("torch_save", number(d, "save"));
        });
        readers.push_back([&] {
            torch->send("load");
            const rapidjson::Document d = torch->read();
            if (d.HasMember("error")) torch_failed(opt.torch, text(d, "error"));
            add("torch_load", number(d, "load"));
            add("torch_restore", number(d, "load") + number(d, "restore"));
        });
    }

    for (run = 0; run < opt.runs; ++run) {
        progress("%s: run %d of %d", size_name(r.target_mib).c_str(), run + 1, opt.runs);
        run_rotated(writers, run);
        run_rotated(readers, run);
    }

    r.op("load_verified").seconds = r.op("load").seconds;
    r.ckpt_exact = same_state(state, loaded);
    r.cereal_exact = same_state(state, cereal_loaded);
    if (torch) {
        torch->send("quit");
        torch->finish();
    }
    saver.wait();
    for (const std::string* f : {&p.ckpt, &p.async, &p.raw, &p.cereal, &p.torch}) fs::remove(*f);
}

} // namespace bench
