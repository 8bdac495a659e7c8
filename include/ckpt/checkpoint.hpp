#pragma once

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>
#include <ckpt/concepts.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/detail/hash.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/header.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/metadata_codec.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/io/file.hpp>
#include <ckpt/metadata.hpp>
#include <ckpt/types/eigen.hpp>
#include <ckpt/version.hpp>

#include <cereal/details/helpers.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ckpt {

/// How save() writes.
struct save_options {
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
};

/// How load() reads.
struct load_options {
    ckpt::limits limits{};          ///< caps on what the file may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
};

/// What inspect() reads.
struct inspect_options {
    bool verify = false;            ///< also read the whole file and check its checksum
    ckpt::limits limits{};          ///< caps on what the file may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
};

namespace detail {

/// A state walked by tensor_oarchive; cereal's errors become ckpt's.
template <class T>
void collect(tensor_oarchive& ar, const T& state) {
    try {
        ar(state);
    } catch (const cereal::Exception& e) {
        throw_error<usage_error>(errc::usage_argument,
                                 std::string("cereal could not serialize the state: ") + e.what());
    }
}

/// The bytes of a checkpoint, ready to stream: the header, then blocks straight from the state.
struct write_plan {
    std::string header;
    std::vector<std::pair<const std::byte*, std::uint64_t>> blocks;
    std::uint64_t total_bytes = 0; ///< of the whole file
};

/// From this size on, save() hashes on a second thread (a thread costs tens of microseconds).
inline constexpr std::uint64_t parallel_hash_bytes = std::uint64_t{8} << 20;

/// XXH3 of the tensors' names, dtypes, shapes and storage orders, in hex.
std::string fingerprint_of(const std::vector<tensor_record>& tensors);

/// Checks the names, orders the tensors so each is aligned to its element size, and builds the
/// header. @throws schema_error, usage_error
write_plan make_plan(const std::vector<tensor_record>& tensors,
                     const std::vector<std::byte>& values, const metadata& meta);

/// Streams a plan to a file or to memory, then writes the checksum into the header. A large
/// checkpoint is hashed on a second thread while it is written.
void write_checkpoint(atomic_file& sink, const write_plan& plan);
void write_checkpoint(memory_sink& sink, const write_plan& plan);

/// A checkpoint's bytes, verified and parsed; refers to the bytes, which must outlive it.
class opened_checkpoint {
public:
    /// Structure, version and (when `verify`) checksum are checked before anything is decoded.
    /// @throws corrupt_error, version_error, limit_error
    opened_checkpoint(const std::byte* p, std::uint64_t size, const limits& lim,
                      const std::string& where, bool verify);
    opened_checkpoint(const opened_checkpoint&) = delete;
    opened_checkpoint& operator=(const opened_checkpoint&) = delete;

    [[nodiscard]] const parsed_header& header() const noexcept { return header_; }
    [[nodiscard]] const metadata& meta() const noexcept { return meta_; }
    [[nodiscard]] int version() const noexcept { return version_; }
    [[nodiscard]] const std::string& checksum() const noexcept { return checksum_; }
    [[nodiscard]] bool verified() const noexcept { return verified_; }
    [[nodiscard]] std::uint64_t header_bytes() const noexcept { return header_bytes_; }

    /// The tensors by name, and the values entry; checks alignment. @throws corrupt_error
    void index(tensor_source& src, std::span<const std::byte>& values) const;

private:
    static bool is_ckpt_header(std::string_view json);

    /// The format version is the second key, at a fixed place, so it is read before anything
    /// that a newer format might have changed. `p` is null when only the header was read.
    void check_version(std::string_view json, const std::byte* p, std::uint64_t size);

    static std::uint64_t content_hash(const std::byte* p, std::uint64_t size);
    static bool checksum_matches(std::string_view json, const std::byte* p, std::uint64_t size);
    void verify_checksum(std::string_view json, const std::byte* p, std::uint64_t size);

    std::string where_;
    parsed_header header_;
    metadata meta_;
    int version_ = 0;
    std::string checksum_;
    bool verified_ = false;
    std::uint64_t header_bytes_ = 0;
    const std::byte* data_ = nullptr;
};

/// "F32 [64, 32]".
std::string describe_side(dtype type, const std::vector<std::uint64_t>& shape);

/// "row-major" or "column-major".
const char* order_name(char order);

/// The differences check_tensors found: the first ones, and how many in all.
struct schema_report {
    std::vector<schema_problem> problems;
    std::size_t total = 0;

    /// Throws them as one schema_error, when there are any.
    void raise();
};

/// Every difference between the state's tensors and the file's, in the state's order. The
/// first `cap` are kept, all are counted: a file cannot make the list longer than the tensors
/// it and the state hold, and the text of those not kept is never built.
schema_report check_tensors(const std::vector<tensor_record>& state, const tensor_source& src,
                            std::size_t cap);

/// The most problems a schema_error of a load keeps: the tensors of the file and of the state.
std::size_t problem_cap(const tensor_source& src, std::uint64_t own_tensors);

/// Whether the state's tensors and the file's have the same names.
bool same_tensor_names(const std::vector<tensor_record>& state, const tensor_source& src);

/// Runs one input pass; cereal's own errors become ckpt's.
template <class T>
void read_pass(T& obj, std::span<const std::byte> values, const tensor_source* tensors,
               read_pass_kind kind, std::uint64_t own_tensors) {
    try {
        tensor_iarchive ar(values, tensors, kind, own_tensors);
        ar(obj);
        ar.finish();
    } catch (const cereal::Exception& e) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   std::string("cereal could not decode the values: ") + e.what());
    }
}

/// Values first (tensors untouched, each one accounted for), then a shape check against what
/// the state became, then the tensors. On failure the values are put back from `backup` when
/// given. `own_tensors`: how many tensors the state held before loading.
template <class T>
void decode_into(T& obj, const tensor_source& src, std::span<const std::byte> values,
                 const std::vector<std::byte>* backup, std::uint64_t own_tensors) {
    const auto restore = [&]() noexcept {
        if (backup == nullptr) return;
        try {
            read_pass(obj, *backup, nullptr, read_pass_kind::restore, 0);
        } catch (...) { // the original error is the one to report
        }
    };
    try {
        read_pass(obj, values, &src, read_pass_kind::values, own_tensors);
    } catch (...) {
        restore();
        throw;
    }
    tensor_oarchive shaped(true); // for the tensor list only
    collect(shaped, obj);
    if (schema_report r = check_tensors(shaped.tensors(), src, problem_cap(src, own_tensors));
        !r.problems.empty()) {
        restore();
        r.raise();
    }
    read_pass(obj, values, &src, read_pass_kind::tensors, own_tensors);
}

/// Loads into `state` with the strong guarantee: on any error it is left as it was.
template <class T>
void load_state(T& state, const tensor_source& src, std::span<const std::byte> values) {
    tensor_oarchive now;
    collect(now, state);
    const std::uint64_t own = now.tensors().size();
    if (same_tensor_names(now.tensors(), src)) {
        // Same fields: check every shape before touching anything, then decode in place.
        check_tensors(now.tensors(), src, problem_cap(src, own)).raise();
        decode_into(state, src, values, &now.values(), own);
    } else if constexpr (std::is_copy_constructible_v<T> && std::is_move_assignable_v<T>) {
        // The file has other fields (say, containers the state holds empty): decode into a copy,
        // which the values may reshape, and keep it only if everything fits.
        T staged(state);
        decode_into(staged, src, values, nullptr, own);
        state = std::move(staged);
    } else {
        check_tensors(now.tensors(), src, problem_cap(src, own)).raise();
    }
}

template <class T>
metadata load_bytes(const std::byte* p, std::uint64_t size, T& state, const limits& lim,
                    const std::string& where) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::load: T is not checkpointable: give it a cereal serialize(Archive&) "
                  "member or save()/load() functions (see ckpt::checkpointable)");
    opened_checkpoint file(p, size, lim, where, true);
    tensor_source src;
    std::span<const std::byte> values;
    file.index(src, values);
    load_state(state, src, values);
    return file.meta();
}

/// What inspect() returns for an opened file.
info make_info(const opened_checkpoint& file, std::uint64_t file_bytes);

} // namespace detail

/// Writes `state` to `path` atomically: a crash or error at any point leaves the previous file
/// at `path` intact and no temporary file behind. Tensors stream straight from their buffers.
/// @returns the size of the file written, in bytes
/// @throws io_error, schema_error (duplicate or reserved names), usage_error
template <class T>
std::uint64_t save(const std::filesystem::path& path, const T& state, const metadata& meta = {},
                   const save_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::save: T is not checkpointable: give it a cereal serialize(Archive&) "
                  "member or save()/load() functions (see ckpt::checkpointable)");
    detail::tensor_oarchive ar;
    detail::collect(ar, state);
    const detail::write_plan plan = detail::make_plan(ar.tensors(), ar.values(), meta);
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    detail::atomic_file file(io, path);
    file.allocate(plan.total_bytes);
    detail::write_checkpoint(file, plan);
    file.commit();
    return plan.total_bytes;
}

/// The bytes save() would write, in memory.
template <class T>
std::vector<std::byte> save_to_memory(const T& state, const metadata& meta = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::save_to_memory: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    detail::tensor_oarchive ar;
    detail::collect(ar, state);
    const detail::write_plan plan = detail::make_plan(ar.tensors(), ar.values(), meta);
    detail::memory_sink sink(static_cast<std::size_t>(plan.total_bytes));
    detail::write_checkpoint(sink, plan);
    return sink.take();
}

/// Loads `state` from `path` and returns the checkpoint's metadata. The file's structure and
/// checksum are verified before anything is decoded; tensors must match the state's shapes
/// (an empty dynamic tensor takes the file's). On any error `state` is left as it was.
/// @throws io_error, corrupt_error, version_error, schema_error, limit_error
template <class T>
metadata load(const std::filesystem::path& path, T& state, const load_options& options = {}) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    const detail::file_bytes bytes(io, where);
    return detail::load_bytes(bytes.data(), bytes.size(), state, options.limits, where);
}

/// load() from bytes in memory.
template <class T>
metadata load_from_memory(std::span<const std::byte> bytes, T& state, const limits& lim = {}) {
    return detail::load_bytes(bytes.data(), bytes.size(), state, lim, "<memory>");
}

/// Reads a checkpoint's header, metadata and tensor list without knowing the state's type.
/// Reads only the header unless options.verify asks for the checksum to be checked.
/// Any safetensors file can be inspected; format_version is 0 for one ckpt did not write.
/// @throws io_error, corrupt_error, version_error, limit_error
info inspect(const std::filesystem::path& path, const inspect_options& options = {});

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
#include <ckpt/checkpoint-inl.hpp>
#endif
