#pragma once

#include <ckpt/checkpoint.hpp>
#include <ckpt/concepts.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/io/backend.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace ckpt {

/// How import_safetensors() reads a safetensors file that ckpt did not write.
struct import_options {
    ckpt::limits limits{};          ///< caps on what the file may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    /// The XXH3-64 (seed 0) of the whole file, as `xxhsum -H3` prints it or Python's
    /// `xxhash.xxh3_64_intdigest` returns it: when given, the file must hash to it
    /// (ckpt.corrupt.204). A plain safetensors file carries no checksum of its own, so this is
    /// the only way to know it arrived intact. (A file ckpt wrote is checked against its own.)
    std::optional<std::uint64_t> xxh3_64{};
    /// A tensor of the state that the file lacks keeps its value (see load_options).
    bool allow_missing = false;
    /// A tensor of the file that the state lacks is skipped (see load_options).
    bool ignore_unexpected = false;
    /// {old, new} prefixes of the file's tensor names, as in load_options: `{"0", "layers.0"}`
    /// loads torch's `0.weight` as `layers.0.weight`.
    std::vector<std::pair<std::string, std::string>> renames{};
    /// An F16 or BF16 tensor loads into F32 or F64, and F32 into F64: every value is exact.
    bool widen = false;
    /// F64 loads into F32, F16 or BF16; F32 into F16 or BF16; F16 and BF16 into each other:
    /// values round to nearest, ties to even, and a value beyond the range becomes an infinity.
    /// import_report counts the values that changed.
    bool narrow = false;
};

/// A tensor import_safetensors() converted.
struct converted_tensor {
    std::string name; ///< in the file
    dtype from = dtype::f32;
    dtype to = dtype::f32;
    std::uint64_t inexact = 0; ///< values that rounded or overflowed (narrowing only)
};

/// What import_safetensors() did: what it left out and renamed (as load_report), what it
/// converted, and the file's metadata.
struct import_report : load_report {
    std::vector<converted_tensor> converted;     ///< by name in the file
    std::uint64_t inexact = 0;                   ///< values that changed, over every tensor
    std::map<std::string, std::string> metadata; ///< the file's __metadata__
};

namespace detail {

import_report import_bytes(const std::byte* p, std::uint64_t size, const state_walks& walks,
                           void* state, const import_options& options, const std::string& where);
import_report import_file(const std::filesystem::path& path, const state_walks& walks, void* state,
                          const import_options& options);

} // namespace detail

/// Loads the tensors of a safetensors file written by anyone (PyTorch, Hugging Face, JAX,
/// numpy) into `state`, by name: its tensors whose paths the file has are filled, everything
/// else in the state (its non-tensor values, and its tensors under allow_missing) keeps its
/// value. The file's structure and limits are validated as strictly as load()'s; it has no
/// checksum unless ckpt wrote it (then it is verified) or options.xxh3_64 gives one. A 2-D
/// tensor is row-major, as safetensors defines it: [r, c] fills an r x c matrix of either
/// storage order. A dtype other than the state's is an error unless options.widen or
/// options.narrow converts it. On any error `state` is left as it was.
/// @throws io_error, corrupt_error, version_error, schema_error, limit_error
template <class T>
import_report import_safetensors(const std::filesystem::path& path, T& state,
                                 const import_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::import_safetensors: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    return detail::import_file(path, detail::walks_of<T>, &state, options);
}

/// import_safetensors() from bytes in memory (options.backend is not used).
template <class T>
import_report import_safetensors_from_memory(std::span<const std::byte> bytes, T& state,
                                             const import_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::import_safetensors_from_memory: T is not checkpointable: give it a "
                  "cereal serialize(Archive&) member or save()/load() functions");
    return detail::import_bytes(bytes.data(), bytes.size(), detail::walks_of<T>, &state, options,
                                "<memory>");
}

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/import-inl.hpp>
#endif
