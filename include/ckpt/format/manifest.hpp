#pragma once

// The manifest of a distributed checkpoint: a directory holding one ckpt file per writing rank
// and `manifest.json`, which says how the files make up the global tensors. The manifest is
// written last and renamed into place: the checkpoint exists if and only if it does.

#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/placement.hpp>
#include <ckpt/io/backend.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// Whether `dir` holds a committed distributed checkpoint (its manifest is in place).
bool is_distributed_checkpoint(const std::filesystem::path& dir, io::backend* backend = nullptr);

} // namespace ckpt

namespace ckpt::detail {

/// The manifest's file name in a distributed checkpoint's directory.
inline constexpr std::string_view manifest_name = "manifest.json";
/// The value of its "format" key, and the version this build writes and reads.
inline constexpr std::string_view manifest_format = "ckpt-distributed";
inline constexpr int manifest_version = 1;
/// The size of the pieces' checksummed chunks that save() uses.
inline constexpr std::uint64_t default_chunk_bytes = std::uint64_t{1} << 20;
/// The chunk sizes a manifest may declare.
inline constexpr std::uint64_t min_chunk_bytes = std::uint64_t{1} << 12;
inline constexpr std::uint64_t max_chunk_bytes = std::uint64_t{1} << 30;
/// The most ranks a manifest may declare.
inline constexpr std::uint64_t max_manifest_ranks = std::uint64_t{1} << 20;

/// "rank-00002-of-00004.ckpt": the file rank 2 of 4 writes.
std::string rank_file_name(std::uint64_t rank, std::uint64_t ranks);

/// Contiguous bytes of one file, checksummed per chunk.
struct manifest_piece {
    std::uint64_t file = 0;      ///< index into manifest::files (the rank that wrote it)
    std::uint64_t row_begin = 0; ///< the rows of the global tensor it holds: [begin, end)
    std::uint64_t row_end = 0;
    std::uint64_t offset = 0; ///< in the file
    std::uint64_t bytes = 0;
    /// XXH3-64 of each manifest::chunk_bytes of the piece, the last chunk possibly shorter.
    std::vector<std::uint64_t> chunks;
};

/// A global tensor (replicated or sharded: its pieces cover its rows exactly once), or one
/// rank's rank-local tensor (one piece, in that rank's file).
struct manifest_tensor {
    std::string name;
    dtype type = dtype::u8;
    char order = '-';                                 ///< as ckpt.layout has it
    placement_kind kind = placement_kind::replicated; ///< how it was saved
    std::vector<std::uint64_t> shape;                 ///< global, row-major view
    std::vector<manifest_piece> pieces;               ///< by row_begin

    /// Rows of the shape's first axis (1 for a tensor of rank 0), and bytes per row.
    [[nodiscard]] std::uint64_t rows() const noexcept { return shape.empty() ? 1 : shape[0]; }
    [[nodiscard]] std::uint64_t row_bytes() const noexcept;
};

/// One rank's file.
struct manifest_file {
    std::string name;           ///< in the checkpoint's directory, never a path
    std::uint64_t bytes = 0;    ///< its size
    std::uint64_t checksum = 0; ///< its ckpt checksum (the header's ckpt.checksum)
    manifest_piece values;      ///< its values entry (rows unused)
};

struct manifest {
    std::uint64_t ranks = 0;       ///< how many ranks saved it (one file each)
    std::uint64_t chunk_bytes = 0; ///< of every piece's checksummed chunks
    std::string library_version;
    std::map<std::string, std::string> meta; ///< as a file's __metadata__ holds it
    std::vector<manifest_file> files;        ///< files[r] is rank r's
    /// Global tensors by name, then rank-local ones by name and rank.
    std::vector<manifest_tensor> tensors;
};

/// The manifest as JSON.
std::string encode_manifest(const manifest& m);

/// Parses and validates a manifest before anything it declares is allocated: its structure,
/// the file names (plain names inside the directory), every size (overflow-checked, within
/// `lim`), and that the pieces of every global tensor cover its rows exactly once and lie
/// inside their files. @throws corrupt_error, limit_error, version_error
manifest parse_manifest(std::string_view json, const limits& lim, const std::string& where);

/// A distributed checkpoint's manifest, read from its directory and parsed.
/// @throws io_error, corrupt_error, limit_error, version_error
/// `manifest_bytes`, when given, is set to the manifest's size.
manifest read_manifest(const std::filesystem::path& dir, io::backend& io, const limits& lim,
                       std::uint64_t* manifest_bytes = nullptr);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/format/manifest-inl.hpp>
#endif
