#pragma once

// Definitions of <ckpt/reader.hpp>; included by it in header-only mode.

#include <ckpt/reader.hpp>

#include <ckpt/detail/hash.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/header.hpp>
#include <ckpt/format/metadata_codec.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

namespace ckpt {

namespace detail {

CKPT_INLINE std::unique_ptr<fd_guard> open_rank_file(io::backend& io, const std::string& path,
                                                     std::uint64_t bytes) {
    auto guard = std::make_unique<fd_guard>(io, open_for_reading(io, path));
    std::uint64_t size = 0;
    if (io.file_size(guard->get(), size) != 0) throw_io(errc::io_stat, "stat", path, errno);
    if (size != bytes) {
        throw_error<corrupt_error>(errc::corrupt_too_small,
                                   "'" + path + "' is " + std::to_string(size) +
                                       " bytes, the manifest says " + std::to_string(bytes) +
                                       ": the file was truncated or replaced");
    }
    return guard;
}

CKPT_INLINE void piece_reader::read(const manifest_piece& p, std::uint64_t begin, std::uint64_t end,
                                    std::byte* out, std::string_view what) {
    if (begin >= end) return;
    const std::uint64_t chunk = m_->chunk_bytes;
    const int fd = open(p.file);
    const std::string& path = paths_[p.file];
    for (std::uint64_t c = begin / chunk; c * chunk < end; ++c) {
        const std::uint64_t cb = c * chunk;
        const std::uint64_t ce = std::min(cb + chunk, p.bytes);
        std::byte* to = nullptr;
        if (cb >= begin && ce <= end) {
            to = out + (cb - begin); // the whole chunk is wanted: straight into place
        } else {
            scratch_.resize(static_cast<std::size_t>(ce - cb));
            to = scratch_.data();
        }
        if (const int e =
                read_all(*io_, fd, to, static_cast<std::size_t>(ce - cb), p.offset + cb)) {
            throw_io(errc::io_read, "read", path, e);
        }
        bytes_read_ += ce - cb;
        if (hash_bytes(to, static_cast<std::size_t>(ce - cb)) !=
            p.chunks[static_cast<std::size_t>(c)]) {
            throw_error<corrupt_error>(errc::corrupt_checksum,
                                       "'" + path + "': bytes [" + std::to_string(p.offset + cb) +
                                           ", " + std::to_string(p.offset + ce) + ") of " +
                                           std::string(what) +
                                           " do not match the manifest's checksum: the file is "
                                           "damaged");
        }
        if (to == scratch_.data()) {
            const std::uint64_t lo = std::max(cb, begin);
            const std::uint64_t hi = std::min(ce, end);
            std::memcpy(out + (lo - begin), to + (lo - cb), static_cast<std::size_t>(hi - lo));
        }
    }
}

CKPT_INLINE int piece_reader::open(std::uint64_t file) {
    const auto it = fds_.find(file);
    if (it != fds_.end()) return it->second->get();
    const std::string path = (dir_ / m_->files[static_cast<std::size_t>(file)].name).string();
    std::unique_ptr<fd_guard> guard =
        open_rank_file(*io_, path, m_->files[static_cast<std::size_t>(file)].bytes);
    const int fd = guard->get();
    paths_[file] = path;
    fds_.emplace(file, std::move(guard));
    return fd;
}

} // namespace detail

struct reader::impl {
    std::filesystem::path path;
    io::backend* io = nullptr;
    ckpt::info info;
    // One file: its descriptor, where its data section starts, its values entry.
    std::unique_ptr<detail::fd_guard> fd;
    std::uint64_t data_offset = 0;
    std::uint64_t values_begin = 0;
    std::uint64_t values_end = 0;
    // A distributed checkpoint: its manifest, and info.tensors[i] is manifest.tensors[i].
    bool distributed = false;
    detail::manifest m;
    std::unique_ptr<detail::piece_reader> pieces;

    void open_file(const reader_options& options);
    void open_directory(const reader_options& options);
    std::size_t index_of(const tensor_info& t) const;
};

CKPT_INLINE void reader::impl::open_file(const reader_options& options) {
    const std::string where = path.string();
    fd = std::make_unique<detail::fd_guard>(*io, detail::open_for_reading(*io, where));
    std::uint64_t size = 0;
    if (io->file_size(fd->get(), size) != 0) {
        detail::throw_io(errc::io_stat, "stat", where, errno);
    }
    const std::vector<std::byte> head =
        detail::read_head(*io, fd->get(), size, options.limits, where);
    detail::opened_checkpoint::content_hasher hasher;
    if (options.verify) {
        hasher = [&] {
            return detail::stream_content_hash(*io, fd->get(), size, where, options.progress);
        };
    }
    const detail::opened_checkpoint file(head.data(), size, options.limits, where, options.verify,
                                         std::move(hasher));
    info = detail::make_info(file, size);
    data_offset = 8 + file.header_bytes();
    for (const detail::file_tensor& e : file.header().entries) {
        if (e.name == detail::values_entry) {
            values_begin = e.begin;
            values_end = e.end;
        }
    }
}

CKPT_INLINE void reader::impl::open_directory(const reader_options& options) {
    distributed = true;
    std::uint64_t manifest_bytes = 0;
    if (!is_distributed_checkpoint(path, io)) {
        detail::throw_error<io_error>(
            errc::io_open,
            "'" + path.string() + "' is a directory without " + std::string(detail::manifest_name) +
                ": not a committed distributed checkpoint (a distributed save that died before "
                "its commit leaves such a directory)",
            "open", (path / detail::manifest_name).string(),
            std::make_error_code(std::errc::no_such_file_or_directory));
    }
    m = detail::read_manifest(path, *io, options.limits, &manifest_bytes);
    const std::string where = (path / detail::manifest_name).string();
    info.meta = detail::decode_metadata(m.meta, where);
    info.raw_metadata = m.meta;
    info.library_version = m.library_version;
    info.format_version = detail::manifest_version; // parse_manifest refuses others
    if (const auto it = m.meta.find(std::string(detail::key_fingerprint)); it != m.meta.end()) {
        info.fingerprint = it->second;
    }
    info.header_bytes = manifest_bytes;
    info.file_bytes = manifest_bytes;
    std::uint64_t total = 0;
    for (const detail::manifest_file& f : m.files) {
        total += f.bytes;
        info.value_bytes += f.values.bytes;
    }
    info.file_bytes += total;
    for (const detail::manifest_tensor& t : m.tensors) {
        tensor_info ti;
        ti.name = t.name;
        ti.type = t.type;
        ti.shape = t.shape;
        ti.bytes = t.rows() * t.row_bytes(); // parse_manifest checked that it fits
        ti.order = t.order;
        ti.place.kind = t.kind;
        if (t.kind == placement_kind::sharded) ti.place.global_rows = t.rows();
        if (t.kind == placement_kind::rank_local) {
            ti.rank = static_cast<std::int64_t>(t.pieces.front().file);
        }
        info.tensors.push_back(std::move(ti));
    }
    if (options.verify) {
        // Every rank file's own checksum, and that it is the file the manifest names.
        std::uint64_t done = 0;
        for (const detail::manifest_file& f : m.files) {
            const std::string file_path = (path / f.name).string();
            const std::unique_ptr<detail::fd_guard> file_fd =
                detail::open_rank_file(*io, file_path, f.bytes);
            const std::uint64_t size = f.bytes;
            progress_callback each;
            if (options.progress) {
                each = [&](std::uint64_t d, std::uint64_t) { options.progress(done + d, total); };
            }
            const std::vector<std::byte> head =
                detail::read_head(*io, file_fd->get(), size, options.limits, file_path);
            const detail::opened_checkpoint file(
                head.data(), size, options.limits, file_path, true, [&] {
                    return detail::stream_content_hash(*io, file_fd->get(), size, file_path, each);
                });
            const std::string expected = "xxh3-64:" + detail::to_hex(f.checksum);
            if (file.checksum() != expected) {
                detail::throw_error<corrupt_error>(errc::corrupt_checksum,
                                                   "'" + file_path + "' has checksum " +
                                                       file.checksum() + ", the manifest records " +
                                                       expected + ": the file was replaced");
            }
            done += size;
        }
        info.checksum_verified = true;
    }
    pieces = std::make_unique<detail::piece_reader>(*io, path, m);
}

CKPT_INLINE std::size_t reader::impl::index_of(const tensor_info& t) const {
    const tensor_info* first = info.tensors.data();
    if (&t >= first && &t < first + info.tensors.size())
        return static_cast<std::size_t>(&t - first);
    for (std::size_t i = 0; i < info.tensors.size(); ++i) {
        if (info.tensors[i] == t) return i;
    }
    detail::throw_error<usage_error>(errc::usage_argument, "'" + path.string() +
                                                               "' has no tensor '" +
                                                               display_name(t) + "' like this one");
}

CKPT_INLINE reader::reader(const std::filesystem::path& path, const reader_options& options)
    : impl_(std::make_unique<impl>()) {
    impl_->path = path;
    impl_->io = options.backend != nullptr ? options.backend : &io::default_backend();
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        impl_->open_directory(options);
    } else {
        impl_->open_file(options);
    }
}

CKPT_INLINE reader::reader(reader&&) noexcept = default;
CKPT_INLINE reader& reader::operator=(reader&&) noexcept = default;
CKPT_INLINE reader::~reader() = default;

CKPT_INLINE const ckpt::info& reader::info() const noexcept {
    return impl_->info;
}
CKPT_INLINE const std::filesystem::path& reader::path() const noexcept {
    return impl_->path;
}
CKPT_INLINE bool reader::distributed() const noexcept {
    return impl_->distributed;
}
CKPT_INLINE std::uint64_t reader::value_streams() const noexcept {
    return impl_->distributed ? impl_->m.files.size() : 1;
}

CKPT_INLINE const tensor_info* reader::find(std::string_view name, std::int64_t rank) const {
    for (const tensor_info& t : impl_->info.tensors) {
        if (t.name == name && (rank < 0 || t.rank < 0 || t.rank == rank)) return &t;
    }
    return nullptr;
}

CKPT_INLINE void reader::read(const tensor_info& t, std::span<std::byte> out) const {
    const std::size_t i = impl_->index_of(t);
    const tensor_info& own = impl_->info.tensors[i];
    if (out.size() != own.bytes) {
        detail::throw_error<usage_error>(
            errc::usage_argument,
            "reading '" + display_name(own) + "' of '" + impl_->path.string() + "': it has " +
                std::to_string(own.bytes) + " bytes, the buffer " + std::to_string(out.size()));
    }
    if (!impl_->distributed) {
        if (const int e = detail::read_all(*impl_->io, impl_->fd->get(), out.data(), out.size(),
                                           impl_->data_offset + own.offset)) {
            detail::throw_io(errc::io_read, "read", impl_->path.string(), e);
        }
        return;
    }
    const detail::manifest_tensor& mt = impl_->m.tensors[i];
    const std::uint64_t row_bytes = mt.row_bytes();
    const std::string what = "tensor '" + display_name(own) + "'";
    for (const detail::manifest_piece& p : mt.pieces) {
        impl_->pieces->read(p, 0, p.bytes, out.data() + p.row_begin * row_bytes, what);
    }
}

CKPT_INLINE std::vector<std::byte> reader::read(const tensor_info& t) const {
    std::vector<std::byte> out(
        static_cast<std::size_t>(impl_->info.tensors[impl_->index_of(t)].bytes));
    read(t, out);
    return out;
}

CKPT_INLINE std::vector<std::byte> reader::values(std::uint64_t stream) const {
    if (stream >= value_streams()) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "'" + impl_->path.string() + "' has " +
                                             std::to_string(value_streams()) +
                                             " value streams, not " + std::to_string(stream + 1));
    }
    if (!impl_->distributed) {
        std::vector<std::byte> out(
            static_cast<std::size_t>(impl_->values_end - impl_->values_begin));
        if (const int e = detail::read_all(*impl_->io, impl_->fd->get(), out.data(), out.size(),
                                           impl_->data_offset + impl_->values_begin)) {
            detail::throw_io(errc::io_read, "read", impl_->path.string(), e);
        }
        return out;
    }
    const detail::manifest_piece& p = impl_->m.files[static_cast<std::size_t>(stream)].values;
    std::vector<std::byte> out(static_cast<std::size_t>(p.bytes));
    impl_->pieces->read(p, 0, p.bytes, out.data(), "the values of rank " + std::to_string(stream));
    return out;
}

CKPT_INLINE std::string display_name(const tensor_info& t) {
    return t.rank < 0 ? t.name : t.name + "@rank" + std::to_string(t.rank);
}

CKPT_INLINE std::uint64_t save_safetensors(const reader& from, const std::filesystem::path& to,
                                           const safetensors_options& options) {
    // Largest element size first, so that every tensor is aligned to its element size.
    std::vector<const tensor_info*> order;
    for (const tensor_info& t : from.info().tensors) order.push_back(&t);
    std::stable_sort(order.begin(), order.end(), [](const tensor_info* a, const tensor_info* b) {
        return size_of(a->type) > size_of(b->type);
    });
    std::vector<detail::file_tensor> entries;
    std::set<std::string> names;
    std::uint64_t at = 0;
    for (const tensor_info* t : order) {
        detail::file_tensor e;
        e.name = display_name(*t);
        if (!names.insert(e.name).second) {
            std::vector<schema_problem> problems{
                {errc::schema_duplicate, e.name,
                 "'" + from.path().string() +
                     "' has two tensors of this name once rank-local ones are named by their "
                     "rank"}};
            detail::throw_error<schema_error>(std::move(problems));
        }
        e.type = t->type;
        e.shape = t->shape;
        e.begin = at;
        e.end = at + t->bytes;
        at = e.end;
        entries.push_back(std::move(e));
    }
    const std::string header = detail::build_header({}, entries);
    const std::uint64_t length = header.size();
    const std::uint64_t total = 8 + length + at;
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    detail::atomic_file file(io, to);
    file.allocate(total);
    file.write(&length, sizeof length);
    file.write(header.data(), header.size());
    std::vector<std::byte> bytes;
    for (const tensor_info* t : order) {
        bytes.resize(static_cast<std::size_t>(t->bytes));
        from.read(*t, bytes);
        file.write(bytes.data(), bytes.size());
    }
    file.commit();
    return total;
}

} // namespace ckpt
