#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/header.hpp>
#include <ckpt/manager/directory.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>

namespace ckpt {
namespace detail {

CKPT_INLINE std::string checkpoint_file_name(std::string_view prefix, std::int64_t step) {
    std::string digits = std::to_string(step);
    if (digits.size() < 12) digits.insert(0, 12 - digits.size(), '0');
    std::string name(prefix);
    name += '-';
    name += digits;
    name += ".ckpt";
    return name;
}

CKPT_INLINE std::string checkpoint_dir_name(std::string_view prefix, std::int64_t step) {
    std::string name = checkpoint_file_name(prefix, step);
    name.resize(name.size() - 5); // ".ckpt"
    return name;
}

CKPT_INLINE checkpoint_entry read_distributed_entry(const std::filesystem::path& dir,
                                                    io::backend& io, const limits& lim) {
    const std::string path = (dir / manifest_name).string();
    std::uint64_t size = 0;
    const manifest m = read_manifest(dir, io, lim, &size);
    const metadata meta = decode_metadata(m.meta, path);
    checkpoint_entry e;
    e.path = dir;
    e.step = meta.step;
    e.epoch = meta.epoch;
    e.time = meta.time;
    e.metrics = meta.metrics;
    e.bytes = size;
    for (const manifest_file& f : m.files) e.bytes += f.bytes;
    e.distributed = true;
    return e;
}

CKPT_INLINE std::optional<std::int64_t> step_of_name(std::string_view name, std::string_view prefix,
                                                     std::string_view suffix) {
    if (name.size() <= prefix.size() + 1 + suffix.size() || !name.starts_with(prefix) ||
        name[prefix.size()] != '-' || !name.ends_with(suffix)) {
        return std::nullopt;
    }
    const std::string_view digits =
        name.substr(prefix.size() + 1, name.size() - prefix.size() - 1 - suffix.size());
    if (digits.empty() || digits.size() > 18) return std::nullopt;
    std::int64_t v = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

CKPT_INLINE bool is_temp_suffix(std::string_view s) {
    const auto dash = s.find('-');
    const auto digits = [](std::string_view d) {
        return !d.empty() && d.find_first_not_of("0123456789") == std::string_view::npos;
    };
    return dash != std::string_view::npos && digits(s.substr(0, dash)) &&
           digits(s.substr(dash + 1));
}

CKPT_INLINE std::optional<bool> has_ckpt_prefix(const std::filesystem::path& p, io::backend& io) {
    const int fd = io.open(p.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    char buf[8 + checksum_prefix.size()];
    const ::ssize_t n = io.pread(fd, buf, sizeof buf, 0);
    io.close(fd);
    if (n < 0) return std::nullopt;
    return n == static_cast<::ssize_t>(sizeof buf) &&
           std::string_view(buf + 8, checksum_prefix.size()) == checksum_prefix;
}

CKPT_INLINE void check_prefix(const std::string& prefix, std::string_view who) {
    if (prefix.empty() || prefix.find('/') != std::string::npos) {
        throw_error<usage_error>(errc::usage_argument,
                                 std::string(who) +
                                     ": the prefix must be a non-empty file name "
                                     "(no '/'), not '" +
                                     prefix + "'");
    }
}

} // namespace detail

CKPT_INLINE std::uint64_t directory_listing::checkpoint_bytes() const noexcept {
    std::uint64_t total = 0;
    for (const auto& c : checkpoints) total += c.bytes;
    return total;
}

CKPT_INLINE directory_listing scan_directory(const std::filesystem::path& dir,
                                             const directory_options& options) {
    const std::string& prefix = options.prefix;
    detail::check_prefix(prefix, "scan_directory");
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    std::vector<io::dir_entry> names;
    if (io.list(dir.c_str(), names) != 0) {
        const int e = errno;
        detail::throw_io(errc::io_read, "list directory", dir.string(), e);
    }
    std::sort(names.begin(), names.end(),
              [](const io::dir_entry& a, const io::dir_entry& b) { return a.name < b.name; });
    directory_listing out;
    out.directory = dir;
    const std::string lock_name = prefix + ".lock";
    for (const io::dir_entry& de : names) {
        const std::string& name = de.name;
        std::filesystem::path path = dir / name;
        if (de.type == io::dir_entry::kind::directory) {
            // A distributed checkpoint: <prefix>-<step>/, committed once its manifest is there.
            const auto step = detail::step_of_name(name, prefix, "");
            if (!step || detail::checkpoint_dir_name(prefix, *step) != name) {
                out.others.push_back(std::move(path));
                continue;
            }
            if (!is_distributed_checkpoint(path, &io)) {
                out.incomplete.push_back(std::move(path));
                continue;
            }
            try {
                out.checkpoints.push_back(detail::read_distributed_entry(path, io, options.limits));
            } catch (const error& err) {
                out.unreadable.push_back({path, err.id(), err.what()});
            }
            continue;
        }
        if (de.type != io::dir_entry::kind::regular) {
            out.others.push_back(std::move(path));
            continue;
        }
        if (name == lock_name) continue;
        // A temporary file of a save that died: <prefix>-<step>.ckpt.tmp-<pid>-<n>.
        if (const auto at = name.find(".ckpt.tmp-"); at != std::string::npos) {
            const std::string_view target = std::string_view(name).substr(0, at + 5);
            const auto step = detail::step_of_name(target, prefix, ".ckpt");
            if (step && detail::checkpoint_file_name(prefix, *step) == target &&
                detail::is_temp_suffix(std::string_view(name).substr(at + 10))) {
                out.temporaries.push_back(std::move(path));
            } else {
                out.others.push_back(std::move(path));
            }
            continue;
        }
        // Only the exact names a manager writes: "ckpt-7.ckpt" is someone else's.
        const auto step = detail::step_of_name(name, prefix, ".ckpt");
        if (!step || detail::checkpoint_file_name(prefix, *step) != name) {
            out.others.push_back(std::move(path));
            continue;
        }
        try {
            const info inf = ckpt::inspect(path, inspect_options{false, options.limits, &io});
            if (inf.format_version < 1) { // a safetensors file ckpt did not write
                out.foreign.push_back(std::move(path));
                continue;
            }
            checkpoint_entry e;
            e.path = std::move(path);
            e.step = inf.meta.step;
            e.epoch = inf.meta.epoch;
            e.time = inf.meta.time;
            e.metrics = inf.meta.metrics;
            e.bytes = inf.file_bytes;
            out.checkpoints.push_back(std::move(e));
        } catch (const error& err) {
            // A damaged file ckpt wrote (its header starts with ckpt's checksum) may be replaced
            // by a new save of its step; a file that does not start so is not ckpt's at all
            // (a text file reads as a huge header length: not "damaged", but foreign).
            if (detail::has_ckpt_prefix(path, io) == false) {
                out.foreign.push_back(std::move(path));
            } else {
                out.unreadable.push_back({path, err.id(), err.what()});
            }
        }
    }
    std::stable_sort(
        out.checkpoints.begin(), out.checkpoints.end(),
        [](const checkpoint_entry& a, const checkpoint_entry& b) { return a.step < b.step; });
    if (!out.checkpoints.empty()) out.checkpoints.back().latest = true;
    out.lock = read_lock_holder(dir, prefix, io);
    return out;
}

} // namespace ckpt
