#pragma once

#include <ckpt/import.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE import_report import_bytes(const std::byte* p, std::uint64_t size,
                                       const state_walks& walks, void* state,
                                       const import_options& options, const std::string& where) {
    if (options.xxh3_64) {
        const std::uint64_t actual = hash_bytes(p, static_cast<std::size_t>(size));
        if (actual != *options.xxh3_64) {
            throw_error<corrupt_error>(errc::corrupt_checksum,
                                       "'" + where + "': the file's XXH3-64 is " + to_hex(actual) +
                                           ", import_options::xxh3_64 expects " +
                                           to_hex(*options.xxh3_64) +
                                           ": the file is damaged or not the one meant");
        }
    }
    // A file ckpt wrote carries its checksum: verify it (its values are not read).
    const opened_checkpoint file(p, size, options.limits, where,
                                 opened_checkpoint::has_ckpt_header(p, size));

    // The tensors, without ckpt's values entry. safetensors' data is row-major (C order), so a
    // tensor of rank 2 or more of a file that names no storage order is row-major: it fills a
    // column-major one transposed, the way numpy and torch read it.
    std::vector<file_tensor> entries;
    entries.reserve(file.header().entries.size());
    for (const file_tensor& e : file.header().entries) {
        if (e.name == values_entry) continue;
        file.check_bools(e);
        entries.push_back(e);
        if (entries.back().order == '-' && e.shape.size() >= 2) entries.back().order = 'R';
    }
    tensor_source src;
    src.entries = &entries;
    src.data = file.data();
    src.allow_missing = options.allow_missing;
    src.ignore_unexpected = options.ignore_unexpected;
    src.widen = options.widen;
    src.narrow = options.narrow;
    src.offers_conversion = true;
    for (std::size_t i = 0; i < entries.size(); ++i) src.by_name.emplace(entries[i].name, i);

    import_report report;
    apply_renames(src, options.renames, report.renamed);

    // Every tensor is checked against the state as it is; then one tensor pass over the state's
    // own values fills them. The values are the state's, so nothing but tensors changes.
    tensor_oarchive now;
    collect(now, walks, state);
    const std::uint64_t own = now.tensors().size();
    schema_report checked = check_tensors(now.tensors(), src, problem_cap(src, own));
    checked.raise();
    const state_backup backup(now.values(), now.tensors());
    if (src.allow_missing && !backup.entries.empty()) src.fallback = &backup.tensors;
    pass_result met;
    try {
        met = read_pass(walks, state, now.values(), &src, read_pass_kind::tensors, own);
    } catch (...) {
        restore_state(walks, state, backup);
        throw;
    }

    report.missing = std::move(checked.missing);
    report.ignored = std::move(checked.ignored);
    std::sort(report.ignored.begin(), report.ignored.end());
    std::sort(report.renamed.begin(), report.renamed.end());
    for (const converted_entry& c : met.conversions) {
        const file_tensor& e = entries[c.entry];
        report.converted.push_back({e.name, e.type, c.to, c.inexact});
        report.inexact += c.inexact;
    }
    std::sort(report.converted.begin(), report.converted.end(),
              [](const converted_tensor& a, const converted_tensor& b) { return a.name < b.name; });
    report.metadata = file.header().meta;
    return report;
}

CKPT_INLINE import_report import_file(const std::filesystem::path& path, const state_walks& walks,
                                      void* state, const import_options& options) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    const file_bytes bytes(io, where);
    return import_bytes(bytes.data(), bytes.size(), walks, state, options, where);
}

} // namespace ckpt::detail
