#pragma once

#include <ckpt/detail/hash.hpp>
#include <ckpt/format/header.hpp>
#include <ckpt/format/manifest.hpp>
#include <ckpt/io/file.hpp>
#include <ckpt/version.hpp>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>

#include <fcntl.h>
#include <set>
#include <string>
#include <utility>

namespace ckpt {

CKPT_INLINE bool is_distributed_checkpoint(const std::filesystem::path& dir, io::backend* backend) {
    io::backend& io = backend != nullptr ? *backend : io::default_backend();
    const std::string path = (dir / detail::manifest_name).string();
    const int fd = io.open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return false;
    io.close(fd);
    return true;
}

} // namespace ckpt

namespace ckpt::detail {

CKPT_INLINE std::string rank_file_name(std::uint64_t rank, std::uint64_t ranks) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "rank-%05llu-of-%05llu.ckpt",
                  static_cast<unsigned long long>(rank), static_cast<unsigned long long>(ranks));
    return buf;
}

CKPT_INLINE std::uint64_t manifest_tensor::row_bytes() const noexcept {
    std::uint64_t n = size_of(type);
    for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return n;
}

namespace manifest_json {

using writer = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                 rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

inline void put(writer& w, std::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
}

inline void put_piece(writer& w, const manifest_piece& p, bool rows) {
    w.StartObject();
    if (rows) {
        put(w, "file");
        w.Uint64(p.file);
        put(w, "rows");
        w.StartArray();
        w.Uint64(p.row_begin);
        w.Uint64(p.row_end);
        w.EndArray();
    }
    put(w, "offset");
    w.Uint64(p.offset);
    put(w, "bytes");
    w.Uint64(p.bytes);
    std::string hex;
    hex.reserve(p.chunks.size() * 16);
    for (const std::uint64_t c : p.chunks) hex += to_hex(c);
    put(w, "chunks");
    put(w, hex);
    w.EndObject();
}

} // namespace manifest_json

CKPT_INLINE std::string encode_manifest(const manifest& m) {
    using namespace manifest_json;
    rapidjson::StringBuffer buf;
    writer w(buf);
    w.StartObject();
    put(w, "format");
    put(w, manifest_format);
    put(w, "version");
    w.Int(manifest_version);
    put(w, "library_version");
    put(w, m.library_version);
    put(w, "ranks");
    w.Uint64(m.ranks);
    put(w, "chunk_bytes");
    w.Uint64(m.chunk_bytes);
    put(w, "metadata");
    w.StartObject();
    for (const auto& [k, v] : m.meta) {
        put(w, k);
        put(w, v);
    }
    w.EndObject();
    put(w, "files");
    w.StartArray();
    for (const manifest_file& f : m.files) {
        w.StartObject();
        put(w, "name");
        put(w, f.name);
        put(w, "bytes");
        w.Uint64(f.bytes);
        put(w, "checksum");
        put(w, "xxh3-64:" + to_hex(f.checksum));
        put(w, "values");
        put_piece(w, f.values, false);
        w.EndObject();
    }
    w.EndArray();
    put(w, "tensors");
    w.StartArray();
    for (const manifest_tensor& t : m.tensors) {
        w.StartObject();
        put(w, "name");
        put(w, t.name);
        put(w, "dtype");
        put(w, to_string(t.type));
        put(w, "shape");
        w.StartArray();
        for (const std::uint64_t d : t.shape) w.Uint64(d);
        w.EndArray();
        put(w, "order");
        put(w, std::string(1, t.order));
        put(w, "placement");
        put(w, t.kind == placement_kind::sharded      ? "sharded"
               : t.kind == placement_kind::rank_local ? "rank_local"
                                                      : "replicated");
        put(w, "pieces");
        w.StartArray();
        for (const manifest_piece& p : t.pieces) put_piece(w, p, true);
        w.EndArray();
        w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return {buf.GetString(), buf.GetSize()};
}

namespace manifest_json {

/// The checks of one parse, with the manifest's path in every message.
struct reader {
    const limits& lim;
    const std::string& where;

    [[noreturn]] void corrupt(const std::string& what) const {
        throw_error<corrupt_error>(errc::corrupt_header, "'" + where + "': " + what);
    }
    const rapidjson::Value& member(const rapidjson::Value& obj, const char* key,
                                   const std::string& in) const {
        if (!obj.IsObject()) corrupt(in + " is not a JSON object");
        const auto it = obj.FindMember(key);
        if (it == obj.MemberEnd()) corrupt(in + " has no \"" + key + "\"");
        return it->value;
    }
    std::uint64_t number(const rapidjson::Value& obj, const char* key,
                         const std::string& in) const {
        const rapidjson::Value& v = member(obj, key, in);
        if (!v.IsUint64()) corrupt(in + ": \"" + key + "\" is not a whole number >= 0");
        return v.GetUint64();
    }
    std::string text(const rapidjson::Value& obj, const char* key, const std::string& in) const {
        const rapidjson::Value& v = member(obj, key, in);
        if (!v.IsString()) corrupt(in + ": \"" + key + "\" is not a string");
        return {v.GetString(), v.GetStringLength()};
    }
    const rapidjson::Value& array(const rapidjson::Value& obj, const char* key,
                                  const std::string& in) const {
        const rapidjson::Value& v = member(obj, key, in);
        if (!v.IsArray()) corrupt(in + ": \"" + key + "\" is not an array");
        return v;
    }
    std::string name(const rapidjson::Value& obj, const std::string& in) const {
        std::string s = text(obj, "name", in);
        if (s.size() > lim.max_name_bytes) {
            throw_error<limit_error>(
                errc::limit_name, "'" + where + "': " + in + " has a name of " +
                                      std::to_string(s.size()) + " bytes, more than the limit of " +
                                      std::to_string(lim.max_name_bytes));
        }
        return s;
    }
    manifest_piece piece(const rapidjson::Value& v, const std::string& in, bool rows,
                         std::uint64_t chunk_bytes) const {
        manifest_piece p;
        if (rows) {
            p.file = number(v, "file", in);
            const rapidjson::Value& r = array(v, "rows", in);
            if (r.Size() != 2 || !r[0].IsUint64() || !r[1].IsUint64()) {
                corrupt(in + ": \"rows\" is not [begin, end]");
            }
            p.row_begin = r[0].GetUint64();
            p.row_end = r[1].GetUint64();
            if (p.row_end < p.row_begin) corrupt(in + ": its rows end before they begin");
        }
        p.offset = number(v, "offset", in);
        p.bytes = number(v, "bytes", in);
        const std::string hex = text(v, "chunks", in);
        const std::uint64_t want = p.bytes / chunk_bytes + (p.bytes % chunk_bytes != 0 ? 1 : 0);
        if (hex.size() != want * 16) {
            corrupt(in + " has " + std::to_string(hex.size() / 16) + " chunk checksums; its " +
                    std::to_string(p.bytes) + " bytes make " + std::to_string(want) +
                    " chunks of " + std::to_string(chunk_bytes));
        }
        p.chunks.reserve(static_cast<std::size_t>(want));
        for (std::size_t i = 0; i < hex.size(); i += 16) {
            const auto c = from_hex(std::string_view(hex).substr(i, 16));
            if (!c) corrupt(in + ": a chunk checksum is not 16 lowercase hex digits");
            p.chunks.push_back(*c);
        }
        return p;
    }
};

} // namespace manifest_json

CKPT_INLINE manifest parse_manifest(std::string_view json, const limits& lim,
                                    const std::string& where) {
    if (json.size() > lim.max_header_bytes) {
        throw_error<limit_error>(errc::limit_header, "'" + where + "': the manifest is " +
                                                         std::to_string(json.size()) +
                                                         " bytes, more than the limit of " +
                                                         std::to_string(lim.max_header_bytes));
    }
    const manifest_json::reader rd{lim, where};
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(json.data(),
                                                                                      json.size());
    if (doc.HasParseError()) {
        throw_error<corrupt_error>(errc::corrupt_json,
                                   "'" + where + "': the manifest is not valid JSON: " +
                                       rapidjson::GetParseError_En(doc.GetParseError()) +
                                       " at byte " + std::to_string(doc.GetErrorOffset()));
    }
    if (!doc.IsObject()) rd.corrupt("the manifest is not a JSON object");
    if (rd.text(doc, "format", "the manifest") != manifest_format) {
        rd.corrupt("the manifest's \"format\" is not \"" + std::string(manifest_format) + "\"");
    }
    const rapidjson::Value& ver = rd.member(doc, "version", "the manifest");
    if (!ver.IsInt() || ver.GetInt() < 1) {
        throw_error<version_error>(errc::version_invalid,
                                   "'" + where + "': the manifest's version is not a number >= 1");
    }
    if (ver.GetInt() > manifest_version) {
        throw_error<version_error>(errc::version_newer,
                                   "'" + where + "': manifest version " +
                                       std::to_string(ver.GetInt()) + " is newer than the " +
                                       std::to_string(manifest_version) + " this build of ckpt " +
                                       CKPT_VERSION_STRING + " reads; upgrade ckpt");
    }
    manifest m;
    m.library_version = rd.text(doc, "library_version", "the manifest");
    m.ranks = rd.number(doc, "ranks", "the manifest");
    if (m.ranks == 0 || m.ranks > max_manifest_ranks) {
        rd.corrupt("the manifest declares " + std::to_string(m.ranks) + " ranks (1 to " +
                   std::to_string(max_manifest_ranks) + ")");
    }
    m.chunk_bytes = rd.number(doc, "chunk_bytes", "the manifest");
    if (m.chunk_bytes < min_chunk_bytes || m.chunk_bytes > max_chunk_bytes) {
        rd.corrupt("the manifest's chunk size " + std::to_string(m.chunk_bytes) + " is outside [" +
                   std::to_string(min_chunk_bytes) + ", " + std::to_string(max_chunk_bytes) + "]");
    }
    const rapidjson::Value& meta = rd.member(doc, "metadata", "the manifest");
    if (!meta.IsObject()) rd.corrupt("the manifest's \"metadata\" is not an object");
    for (const auto& kv : meta.GetObject()) {
        if (!kv.value.IsString()) rd.corrupt("a metadata value is not a string");
        m.meta[std::string(kv.name.GetString(), kv.name.GetStringLength())] =
            std::string(kv.value.GetString(), kv.value.GetStringLength());
    }

    const rapidjson::Value& files = rd.array(doc, "files", "the manifest");
    if (files.Size() != m.ranks) {
        rd.corrupt("the manifest lists " + std::to_string(files.Size()) + " files for " +
                   std::to_string(m.ranks) + " ranks");
    }
    std::set<std::string> file_names;
    m.files.reserve(files.Size());
    for (rapidjson::SizeType i = 0; i < files.Size(); ++i) {
        const std::string in = "file " + std::to_string(i);
        manifest_file f;
        f.name = rd.name(files[i], in);
        if (f.name.empty() || f.name == "." || f.name == ".." ||
            f.name.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos) {
            rd.corrupt(in + " is named '" + f.name +
                       "', which is not a plain file name inside the checkpoint's directory");
        }
        if (f.name == manifest_name || !file_names.insert(f.name).second) {
            rd.corrupt(in + " is named '" + f.name + "', which another file of the checkpoint has");
        }
        f.bytes = rd.number(files[i], "bytes", in);
        const std::string sum = rd.text(files[i], "checksum", in);
        const auto digest =
            sum.starts_with("xxh3-64:") ? from_hex(std::string_view(sum).substr(8)) : std::nullopt;
        if (!digest) rd.corrupt(in + ": the checksum is not \"xxh3-64:\" and 16 hex digits");
        f.checksum = *digest;
        f.values =
            rd.piece(rd.member(files[i], "values", in), in + "'s values", false, m.chunk_bytes);
        f.values.file = i;
        if (f.values.offset > f.bytes || f.values.bytes > f.bytes - f.values.offset) {
            rd.corrupt(in + "'s values lie outside its " + std::to_string(f.bytes) + " bytes");
        }
        m.files.push_back(std::move(f));
    }

    const rapidjson::Value& tensors = rd.array(doc, "tensors", "the manifest");
    if (tensors.Size() > lim.max_tensors) {
        throw_error<limit_error>(
            errc::limit_tensor_count,
            "'" + where + "': the manifest declares " + std::to_string(tensors.Size()) +
                " tensors, more than the limit of " + std::to_string(lim.max_tensors));
    }
    std::set<std::string> global_names;
    std::set<std::pair<std::string, std::uint64_t>> local_names;
    m.tensors.reserve(tensors.Size());
    for (rapidjson::SizeType i = 0; i < tensors.Size(); ++i) {
        const rapidjson::Value& v = tensors[i];
        manifest_tensor t;
        t.name = rd.name(v, "tensor " + std::to_string(i));
        const std::string in = "tensor '" + t.name + "'";
        const auto type = dtype_from_string(rd.text(v, "dtype", in));
        if (!type) rd.corrupt(in + " has a dtype outside safetensors' set");
        t.type = *type;
        const std::string order = rd.text(v, "order", in);
        if (order.size() != 1 || (order[0] != '-' && order[0] != 'R' && order[0] != 'C')) {
            rd.corrupt(in + ": \"order\" is not \"-\", \"R\" or \"C\"");
        }
        t.order = order[0];
        const std::string kind = rd.text(v, "placement", in);
        if (kind == "replicated") {
            t.kind = placement_kind::replicated;
        } else if (kind == "sharded") {
            t.kind = placement_kind::sharded;
        } else if (kind == "rank_local") {
            t.kind = placement_kind::rank_local;
        } else {
            rd.corrupt(in + ": \"placement\" is not replicated, sharded or rank_local");
        }
        const rapidjson::Value& shape = rd.array(v, "shape", in);
        if (shape.Size() > lim.max_rank) {
            throw_error<limit_error>(errc::limit_rank, "'" + where + "': " + in + " has " +
                                                           std::to_string(shape.Size()) +
                                                           " dimensions, more than the limit of " +
                                                           std::to_string(lim.max_rank));
        }
        std::uint64_t total = size_of(t.type);
        for (const auto& d : shape.GetArray()) {
            if (!d.IsUint64()) rd.corrupt(in + ": a dimension is not a whole number >= 0");
            t.shape.push_back(d.GetUint64());
            if (!checked_mul(total, d.GetUint64(), total)) {
                throw_error<limit_error>(errc::limit_tensor_bytes,
                                         "'" + where + "': " + in + " of shape " +
                                             shape_string(t.shape) +
                                             "... has more bytes than 64 bits count");
            }
        }
        if (t.kind == placement_kind::sharded && t.shape.empty()) {
            rd.corrupt(in + " is sharded but has rank 0, which has no rows");
        }
        const rapidjson::Value& pieces = rd.array(v, "pieces", in);
        const std::uint64_t row_bytes = t.row_bytes();
        t.pieces.reserve(std::min<std::size_t>(pieces.Size(), m.ranks));
        if (pieces.Size() > m.ranks) {
            rd.corrupt(in + " has " + std::to_string(pieces.Size()) + " pieces, more than the " +
                       std::to_string(m.ranks) + " files");
        }
        for (rapidjson::SizeType k = 0; k < pieces.Size(); ++k) {
            const std::string pin = in + " piece " + std::to_string(k);
            manifest_piece p = rd.piece(pieces[k], pin, true, m.chunk_bytes);
            if (p.file >= m.ranks) {
                rd.corrupt(pin + " names file " + std::to_string(p.file) + " of " +
                           std::to_string(m.ranks));
            }
            if (p.row_end > t.rows()) {
                rd.corrupt(pin + " holds rows [" + std::to_string(p.row_begin) + ", " +
                           std::to_string(p.row_end) + ") of a tensor of " +
                           std::to_string(t.rows()));
            }
            // row_end <= rows, and rows * row_bytes fits (checked above).
            if (p.bytes != (p.row_end - p.row_begin) * row_bytes) {
                rd.corrupt(pin + " is " + std::to_string(p.bytes) + " bytes; its rows make " +
                           std::to_string((p.row_end - p.row_begin) * row_bytes));
            }
            const manifest_file& f = m.files[static_cast<std::size_t>(p.file)];
            if (p.offset > f.bytes || p.bytes > f.bytes - p.offset) {
                rd.corrupt(pin + " lies outside the " + std::to_string(f.bytes) + " bytes of '" +
                           f.name + "'");
            }
            t.pieces.push_back(std::move(p));
        }
        std::sort(t.pieces.begin(), t.pieces.end(),
                  [](const manifest_piece& a, const manifest_piece& b) {
                      return a.row_begin < b.row_begin;
                  });
        if (t.kind == placement_kind::rank_local) {
            if (t.pieces.size() != 1 || t.pieces[0].row_begin != 0 ||
                t.pieces[0].row_end != t.rows()) {
                rd.corrupt(in + " is rank-local and must be one piece holding all its rows");
            }
            if (global_names.count(t.name) != 0 ||
                !local_names.emplace(t.name, t.pieces[0].file).second) {
                rd.corrupt(in + " appears twice");
            }
        } else {
            if (global_names.count(t.name) != 0 || !global_names.insert(t.name).second) {
                rd.corrupt(in + " appears twice");
            }
            // The pieces cover [0, rows) exactly once.
            std::uint64_t next = 0;
            for (const manifest_piece& p : t.pieces) {
                if (p.row_begin > next) {
                    rd.corrupt(in + " has no piece holding rows [" + std::to_string(next) + ", " +
                               std::to_string(p.row_begin) + ")");
                }
                if (p.row_begin < next) {
                    rd.corrupt(in + " has pieces that overlap at row " +
                               std::to_string(p.row_begin));
                }
                next = p.row_end;
            }
            if (next != t.rows() && !(t.rows() == 0 && t.pieces.empty())) {
                rd.corrupt(in + " has no piece holding rows [" + std::to_string(next) + ", " +
                           std::to_string(t.rows()) + ")");
            }
            if (t.kind == placement_kind::replicated && t.pieces.size() != 1) {
                rd.corrupt(in + " is replicated and must be one piece, it has " +
                           std::to_string(t.pieces.size()));
            }
        }
        m.tensors.push_back(std::move(t));
    }
    for (const auto& [name, file] : local_names) {
        if (global_names.count(name) != 0) rd.corrupt("tensor '" + name + "' appears twice");
    }
    return m;
}

CKPT_INLINE manifest read_manifest(const std::filesystem::path& dir, io::backend& io,
                                   const limits& lim, std::uint64_t* manifest_bytes) {
    const std::string path = (dir / manifest_name).string();
    fd_guard fd(io, open_for_reading(io, path));
    std::uint64_t size = 0;
    if (io.file_size(fd.get(), size) != 0) throw_io(errc::io_stat, "stat", path, errno);
    if (size > lim.max_header_bytes) {
        throw_error<limit_error>(errc::limit_header, "'" + path + "': the manifest is " +
                                                         std::to_string(size) +
                                                         " bytes, more than the limit of " +
                                                         std::to_string(lim.max_header_bytes));
    }
    std::string json(static_cast<std::size_t>(size), '\0');
    if (const int e =
            read_all(io, fd.get(), reinterpret_cast<std::byte*>(json.data()), json.size(), 0)) {
        throw_io(errc::io_read, "read", path, e);
    }
    if (manifest_bytes != nullptr) *manifest_bytes = size;
    return parse_manifest(json, lim, path);
}

} // namespace ckpt::detail
