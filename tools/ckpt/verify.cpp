// ckpt verify PATH...: every checksum of every file, one line per checkpoint.

#include "tool.hpp"

#include <algorithm>
#include <cstdio>
#include <system_error>

namespace ckpt_tool {

namespace {

/// Bars are shown from this size on (automatic mode).
constexpr std::uint64_t bar_from_bytes = std::uint64_t{256} << 20;

struct outcome {
    std::filesystem::path path;
    bool ok = false;
    int error_id = 0;
    std::string error;
    std::uint64_t bytes = 0;
    std::int64_t step = 0;
    bool distributed = false;
};

/// What `path` asks to verify: itself, or the checkpoints of a directory (its *.ckpt files and
/// its distributed checkpoints, sorted by name).
std::vector<std::filesystem::path> targets_of(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec) || ckpt::is_distributed_checkpoint(path)) {
        return {path};
    }
    std::vector<std::filesystem::path> out;
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
        const std::filesystem::path& p = entry.path();
        if (entry.is_symlink(ec)) continue; // as a manager, never follow one
        if (entry.is_regular_file(ec) && p.extension() == ".ckpt") {
            out.push_back(p);
        } else if (entry.is_directory(ec) && ckpt::is_distributed_checkpoint(p)) {
            out.push_back(p);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

class progress_bar {
public:
    progress_bar(progress_mode mode, bool tty, std::string name)
        : mode_(mode), tty_(tty), name_(std::move(name)) {}
    ~progress_bar() { finish(); }
    progress_bar(const progress_bar&) = delete;
    progress_bar& operator=(const progress_bar&) = delete;

    void operator()(std::uint64_t done, std::uint64_t total) {
        if (!shown_) {
            shown_ = mode_ == progress_mode::always ||
                     (mode_ == progress_mode::automatic && tty_ && total > bar_from_bytes);
            if (!shown_) return;
        }
        const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
        if (percent == last_) return;
        last_ = percent;
        constexpr int width = 30;
        const int filled = percent * width / 100;
        std::fprintf(stderr, "%sverifying %s [%s%s] %3d%% %s of %s%s", tty_ ? "\r" : "",
                     name_.c_str(), std::string(static_cast<std::size_t>(filled), '#').c_str(),
                     std::string(static_cast<std::size_t>(width - filled), ' ').c_str(), percent,
                     human_bytes(done).c_str(), human_bytes(total).c_str(), tty_ ? "" : "\n");
        std::fflush(stderr);
    }

    void finish() {
        if (shown_ && tty_) std::fprintf(stderr, "\r\x1b[K");
        shown_ = false;
    }

private:
    progress_mode mode_;
    bool tty_;
    std::string name_;
    bool shown_ = false;
    int last_ = -1;
};

outcome verify_one(const std::filesystem::path& path, const verify_args& args,
                   const terminal& term) {
    outcome out;
    out.path = path;
    progress_bar bar(args.progress, term.stderr_is_tty, path.filename().string());
    try {
        ckpt::reader_options options;
        options.verify = true;
        options.progress = [&bar](std::uint64_t done, std::uint64_t total) { bar(done, total); };
        const ckpt::reader r(path, options);
        out.ok = true;
        out.bytes = r.info().file_bytes;
        out.step = r.info().meta.step;
        out.distributed = r.distributed();
    } catch (const ckpt::error& e) {
        out.error_id = e.id();
        out.error = e.what();
    } catch (const std::exception& e) {
        out.error = e.what();
    }
    bar.finish();
    return out;
}

} // namespace

int run_verify(const verify_args& args, const terminal& term) {
    std::vector<outcome> results;
    bool all_ok = true;
    for (const std::filesystem::path& path : args.paths) {
        const auto failed = [&](std::string why) {
            if (!args.json) {
                std::printf("%s  %s: %s\n", term.red("FAILED").c_str(), path.c_str(), why.c_str());
            }
            outcome o;
            o.path = path;
            o.error = std::move(why);
            results.push_back(std::move(o));
            all_ok = false;
        };
        std::vector<std::filesystem::path> targets;
        try {
            targets = targets_of(path);
        } catch (const std::filesystem::filesystem_error& e) {
            failed("cannot list the directory: " + e.code().message());
            continue;
        }
        if (targets.empty()) {
            failed("no checkpoints in this directory (*.ckpt files or distributed checkpoints)");
            continue;
        }
        for (const std::filesystem::path& target : targets) {
            outcome o = verify_one(target, args, term);
            all_ok = all_ok && o.ok;
            if (!args.json) {
                if (o.ok) {
                    std::printf("%s      %s (%s, step %lld%s)\n", term.green("ok").c_str(),
                                target.c_str(), human_bytes(o.bytes).c_str(),
                                static_cast<long long>(o.step),
                                o.distributed ? ", distributed" : "");
                } else {
                    std::printf("%s  %s: %s\n", term.red("FAILED").c_str(), target.c_str(),
                                o.error.c_str());
                }
                std::fflush(stdout);
            }
            results.push_back(std::move(o));
        }
    }
    if (args.json) {
        rapidjson::StringBuffer buffer;
        json_writer w(buffer);
        w.StartObject();
        w.Key("ok");
        w.Bool(all_ok);
        w.Key("results");
        w.StartArray();
        for (const outcome& o : results) {
            w.StartObject();
            w.Key("path");
            write_string(w, o.path.string());
            w.Key("ok");
            w.Bool(o.ok);
            if (o.ok) {
                w.Key("bytes");
                w.Uint64(o.bytes);
                w.Key("step");
                w.Int64(o.step);
                w.Key("distributed");
                w.Bool(o.distributed);
            } else {
                w.Key("error_id");
                w.Int(o.error_id);
                w.Key("error");
                write_string(w, o.error);
            }
            w.EndObject();
        }
        w.EndArray();
        w.EndObject();
        print_json(buffer);
    }
    return all_ok ? exit_ok : exit_differ;
}

} // namespace ckpt_tool
