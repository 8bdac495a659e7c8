#pragma once

#include <ckpt/format/dtype.hpp>
#include <ckpt/format/placement.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ckpt {

/// What a checkpoint records besides the state: where the run was, and what it measured.
struct metadata {
    std::int64_t step = 0;                     ///< training step
    std::int64_t epoch = 0;                    ///< training epoch
    std::map<std::string, double> metrics{};   ///< e.g. {"loss", 0.25}; doubles round-trip exactly
    std::map<std::string, std::string> tags{}; ///< free-form strings
    std::chrono::system_clock::time_point time{}; ///< wall clock; save() fills it when left at 0

    friend bool operator==(const metadata&, const metadata&) = default;
};

/// One tensor of a checkpoint file as inspect() sees it.
struct tensor_info {
    std::string name;                 ///< field path, e.g. "model.layers.0.weight"
    dtype type = dtype::u8;           ///< element type
    std::vector<std::uint64_t> shape; ///< row-major shape of the bytes, as any safetensors reader
    std::uint64_t offset = 0;         ///< byte offset in the data section
    std::uint64_t bytes = 0;          ///< byte length
    char order = '-';                 ///< 'R' row-major, 'C' column-major, '-' vector or unknown
    placement place{};                ///< replicated unless the state declared otherwise
    /// A rank-local tensor of a distributed checkpoint (as ckpt::reader lists them): the rank
    /// it belongs to; otherwise -1.
    std::int64_t rank = -1;

    friend bool operator==(const tensor_info&, const tensor_info&) = default;
};

/// Everything a checkpoint file says about itself, read without knowing the state's type.
struct info {
    int format_version = 0;                          ///< on-disk format version
    std::string library_version;                     ///< ckpt version that wrote the file
    metadata meta;                                   ///< step, epoch, metrics, tags, time
    std::string fingerprint;                         ///< hash of the state's tensor layout
    std::string checksum;                            ///< "xxh3-64:<16 hex digits>"
    bool checksum_verified = false;                  ///< true when inspect() verified it
    std::uint64_t file_bytes = 0;                    ///< file size
    std::uint64_t header_bytes = 0;                  ///< JSON header size (padded)
    std::vector<tensor_info> tensors;                ///< in file order; excludes the values entry
    std::uint64_t value_bytes = 0;                   ///< bytes of the non-tensor values entry
    std::map<std::string, std::string> raw_metadata; ///< the __metadata__ table as stored
};

} // namespace ckpt
