// ckpt inspect FILE: what a checkpoint holds, read from its header (or a distributed
// checkpoint's manifest) without knowing the state's type.

#include "tool.hpp"

#include <algorithm>
#include <cstdio>

namespace ckpt_tool {

namespace {

void print_table(const std::vector<std::vector<std::string>>& rows, std::size_t right_from) {
    std::vector<std::size_t> width;
    for (const auto& row : rows) {
        width.resize(std::max(width.size(), row.size()));
        for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    for (const auto& row : rows) {
        std::string line = " ";
        for (std::size_t c = 0; c < row.size(); ++c) {
            const std::string pad(width[c] - row[c].size(), ' ');
            line += " ";
            line += c >= right_from ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : "");
        }
        std::printf("%s\n", line.c_str());
    }
}

void write_json(const ckpt::reader& r) {
    const ckpt::info& in = r.info();
    rapidjson::StringBuffer buffer;
    json_writer w(buffer);
    w.StartObject();
    w.Key("path");
    write_string(w, r.path().string());
    w.Key("distributed");
    w.Bool(r.distributed());
    w.Key("ranks");
    w.Uint64(r.distributed() ? r.value_streams() : 0);
    w.Key("format_version");
    w.Int(in.format_version);
    w.Key("library_version");
    write_string(w, in.library_version);
    w.Key("checksum");
    write_string(w, in.checksum);
    w.Key("checksum_verified");
    w.Bool(in.checksum_verified);
    w.Key("file_bytes");
    w.Uint64(in.file_bytes);
    w.Key("header_bytes");
    w.Uint64(in.header_bytes);
    w.Key("value_bytes");
    w.Uint64(in.value_bytes);
    w.Key("fingerprint");
    write_string(w, in.fingerprint);
    write_metadata_members(w, in.meta);
    w.Key("tensors");
    w.StartArray();
    for (const ckpt::tensor_info& t : in.tensors) {
        w.StartObject();
        w.Key("name");
        write_string(w, t.name);
        w.Key("dtype");
        write_string(w, ckpt::to_string(t.type));
        w.Key("shape");
        write_uints(w, t.shape);
        w.Key("eigen_shape");
        write_string(w, eigen_shape_text(t));
        w.Key("order");
        write_string(w, order_text(t.order));
        w.Key("bytes");
        w.Uint64(t.bytes);
        w.Key("offset");
        w.Uint64(t.offset);
        w.Key("placement");
        write_string(w, placement_text(t.place.kind));
        if (t.rank >= 0) {
            w.Key("rank");
            w.Int64(t.rank);
        }
        w.EndObject();
    }
    w.EndArray();
    w.Key("metadata");
    w.StartObject();
    for (const auto& [k, v] : in.raw_metadata) {
        write_string(w, k);
        write_string(w, v);
    }
    w.EndObject();
    w.EndObject();
    print_json(buffer);
}

void write_text(const ckpt::reader& r, const terminal& term) {
    const ckpt::info& in = r.info();
    std::uint64_t tensor_bytes = 0;
    for (const ckpt::tensor_info& t : in.tensors) tensor_bytes += t.bytes;
    std::printf("%s\n", term.bold(r.path().string()).c_str());
    if (r.distributed()) {
        std::printf(
            "  format      distributed checkpoint of %llu ranks (manifest version %d), ckpt %s\n",
            static_cast<unsigned long long>(r.value_streams()), in.format_version,
            in.library_version.c_str());
    } else if (in.format_version == 0) {
        std::printf("  format      safetensors (not written by ckpt)\n");
    } else {
        std::printf("  format      ckpt format %d, written by ckpt %s\n", in.format_version,
                    in.library_version.c_str());
    }
    if (!in.checksum.empty()) {
        std::printf("  checksum    %s (%s)\n", in.checksum.c_str(),
                    in.checksum_verified ? term.green("verified").c_str()
                                         : "not verified: ckpt verify checks it");
    } else if (r.distributed()) {
        std::printf("  checksums   %s\n", in.checksum_verified
                                              ? term.green("every rank file verified").c_str()
                                              : "in the manifest: ckpt verify checks them");
    }
    if (in.format_version != 0) { // a plain safetensors file has none of these
        std::printf("  step        %lld\n", static_cast<long long>(in.meta.step));
        std::printf("  epoch       %lld\n", static_cast<long long>(in.meta.epoch));
        std::printf("  time        %s\n", iso_time(in.meta.time).c_str());
    }
    for (const auto& [k, v] : in.meta.metrics) {
        std::printf("  metric      %s = %s\n", k.c_str(), number_text(v).c_str());
    }
    for (const auto& [k, v] : in.meta.tags) {
        std::printf("  tag         %s = %s\n", k.c_str(), v.c_str());
    }
    std::printf("  size        %s (%llu bytes): header %llu, tensors %llu, values %llu\n",
                human_bytes(in.file_bytes).c_str(), static_cast<unsigned long long>(in.file_bytes),
                static_cast<unsigned long long>(in.header_bytes),
                static_cast<unsigned long long>(tensor_bytes),
                static_cast<unsigned long long>(in.value_bytes));
    if (!in.fingerprint.empty()) std::printf("  fingerprint %s\n", in.fingerprint.c_str());
    std::printf("  tensors     %zu\n", in.tensors.size());
    if (in.tensors.empty()) return;
    std::vector<std::vector<std::string>> rows;
    const bool placed = std::any_of(in.tensors.begin(), in.tensors.end(), [](const auto& t) {
        return t.place.kind != ckpt::placement_kind::replicated;
    });
    rows.push_back({"name", "dtype", "as the state holds it", "safetensors shape", "bytes"});
    if (placed) rows.back().insert(rows.back().begin() + 4, "placement");
    for (const ckpt::tensor_info& t : in.tensors) {
        rows.push_back({ckpt::display_name(t), std::string(ckpt::to_string(t.type)),
                        eigen_shape_text(t), shape_text(t.shape), std::to_string(t.bytes)});
        if (placed)
            rows.back().insert(rows.back().begin() + 4, std::string(placement_text(t.place.kind)));
    }
    print_table(rows, placed ? 5 : 4);
}

} // namespace

int run_inspect(const inspect_args& args, const terminal& term) {
    ckpt::reader_options options;
    options.verify = args.verify;
    const ckpt::reader r(args.path, options);
    if (args.json) {
        write_json(r);
    } else {
        write_text(r, term);
    }
    return exit_ok;
}

} // namespace ckpt_tool
