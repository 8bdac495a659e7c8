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
#include <ckpt/placement.hpp>
#include <ckpt/tensor.hpp>
#include <ckpt/types/containers.hpp>
#include <ckpt/types/eigen.hpp>
#include <ckpt/version.hpp>

#include <cereal/details/helpers.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
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

/// What a load left out or renamed, as load_options allowed it.
struct load_report {
    /// The state's tensors the checkpoint lacks (allow_missing): they kept their values. In the
    /// state's order.
    std::vector<std::string> missing;
    /// The checkpoint's tensors the state lacks (ignore_unexpected), by their names in the
    /// file, sorted.
    std::vector<std::string> ignored;
    /// The tensors a rename applied to: {name in the file, name in the state}, sorted.
    std::vector<std::pair<std::string, std::string>> renamed;
};

/// How load() reads.
struct load_options {
    ckpt::limits limits{};          ///< caps on what the file may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    /// A tensor of the state that the checkpoint lacks keeps its value instead of failing the
    /// load (ckpt.schema.301); report->missing lists them. Values are never partial.
    bool allow_missing = false;
    /// A tensor of the checkpoint that the state lacks is skipped instead of failing the load
    /// (ckpt.schema.303); report->ignored lists them.
    bool ignore_unexpected = false;
    /// {old, new}: the checkpoint's tensor `old`, or every one under `old.` (a whole
    /// sub-struct), is matched as `new` (with the rest of its name); an empty `old` matches
    /// every name (a prefix is added), an empty `new` drops the prefix. The longest `old` that
    /// matches wins. A rename that matches no tensor is an error (ckpt.schema.310), so is one
    /// that gives two tensors the same name (ckpt.schema.311).
    std::vector<std::pair<std::string, std::string>> renames{};
    /// When not null, set to what the load left out and renamed, once it has succeeded.
    load_report* report = nullptr;
};

/// Told how far a long read has come: `done` bytes of `total`, called after every slice read
/// (and once with done == total at the end). It may throw to call the read off.
using progress_callback = std::function<void(std::uint64_t done, std::uint64_t total)>;

/// What inspect() reads.
struct inspect_options {
    /// Also check the file's checksum: hashed in place when every page is in memory, otherwise
    /// read in slices (memory use does not grow with the file).
    bool verify = false;
    ckpt::limits limits{};          ///< caps on what the file may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    progress_callback progress{};   ///< told how far verification has come
};

namespace detail {

/// The walks of a state that depend on its type, behind plain function pointers: everything
/// around them (the passes of a load, the checks, the staged copy, the file, the errors) is
/// ordinary code, compiled once rather than once per state type.
struct state_walks {
    void (*write)(tensor_oarchive&, const void*); ///< ar(state)
    void (*read)(tensor_iarchive&, void*);        ///< ar(state)
    /// A copy of the state on the heap, for a load whose tensors differ from the state's by
    /// name; null (with adopt and destroy) when the type cannot be copied and move-assigned.
    void* (*copy)(const void*);
    void (*adopt)(void* state, void* staged); ///< state = std::move(staged)
    void (*destroy)(void* staged) noexcept;
};

template <class T>
void write_walk(tensor_oarchive& ar, const void* state) {
    ar(*static_cast<const T*>(state));
}
template <class T>
void read_walk(tensor_iarchive& ar, void* state) {
    ar(*static_cast<T*>(state));
}
template <class T>
void* copy_state(const void* state) {
    return new T(*static_cast<const T*>(state));
}
template <class T>
void adopt_state(void* state, void* staged) {
    *static_cast<T*>(state) = std::move(*static_cast<T*>(staged));
}
template <class T>
void destroy_state(void* staged) noexcept {
    delete static_cast<T*>(staged);
}

template <class T>
constexpr state_walks make_walks() {
    if constexpr (std::is_copy_constructible_v<T> && std::is_move_assignable_v<T>) {
        return {&write_walk<T>, &read_walk<T>, &copy_state<T>, &adopt_state<T>, &destroy_state<T>};
    } else {
        return {&write_walk<T>, &read_walk<T>, nullptr, nullptr, nullptr};
    }
}

/// The walks of T.
template <class T>
inline constexpr state_walks walks_of = make_walks<T>();

/// A state walked by tensor_oarchive; cereal's errors become ckpt's.
void collect(tensor_oarchive& ar, const state_walks& walks, const void* state);

template <class T>
void collect(tensor_oarchive& ar, const T& state) {
    collect(ar, walks_of<T>, &state);
}

/// The bytes of a checkpoint, ready to stream: the header, then blocks straight from the state.
struct write_plan {
    std::string header;
    std::vector<std::pair<const std::byte*, std::uint64_t>> blocks;
    std::uint64_t total_bytes = 0; ///< of the whole file
    /// The header's entries (the values entry last); their offsets count from data_offset.
    std::vector<file_tensor> entries;
    /// Where the data section starts in the file: 8 + the header's size.
    [[nodiscard]] std::uint64_t data_offset() const noexcept { return 8 + header.size(); }
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
/// @returns the checksum written (XXH3-64 of the file with its checksum digits zero)
std::uint64_t write_checkpoint(atomic_file& sink, const write_plan& plan);
std::uint64_t write_checkpoint(memory_sink& sink, const write_plan& plan);

/// A checkpoint's bytes, verified and parsed; refers to the bytes, which must outlive it.
class opened_checkpoint {
public:
    /// Computes the checksum of a file whose bytes are not all at `p` (the file with its
    /// checksum digits read as zeros, as content_hash does for bytes in memory).
    using content_hasher = std::function<std::uint64_t()>;

    /// Structure, version and (when `verify`) checksum are checked before anything is decoded.
    /// `hasher`, when given, hashes the file: `p` then needs to hold its length and header only
    /// (`size` is still the whole file's).
    /// @throws corrupt_error, version_error, limit_error
    opened_checkpoint(const std::byte* p, std::uint64_t size, const limits& lim,
                      const std::string& where, bool verify, content_hasher hasher = {});
    opened_checkpoint(const opened_checkpoint&) = delete;
    opened_checkpoint& operator=(const opened_checkpoint&) = delete;

    [[nodiscard]] const parsed_header& header() const noexcept { return header_; }
    [[nodiscard]] const metadata& meta() const noexcept { return meta_; }
    [[nodiscard]] int version() const noexcept { return version_; }
    [[nodiscard]] const std::string& checksum() const noexcept { return checksum_; }
    [[nodiscard]] bool verified() const noexcept { return verified_; }
    [[nodiscard]] std::uint64_t header_bytes() const noexcept { return header_bytes_; }
    [[nodiscard]] const std::byte* data() const noexcept { return data_; } ///< data section

    /// Whether the bytes start with ckpt's header (and so carry its checksum).
    static bool has_ckpt_header(const std::byte* p, std::uint64_t size);

    /// Rejects a BOOL tensor holding a byte other than 0 or 1. @throws corrupt_error
    void check_bools(const file_tensor& e) const;

    /// The tensors by name, and the values entry; checks alignment. @throws corrupt_error
    void index(tensor_source& src, std::span<const std::byte>& values) const;

    /// The check the constructor leaves out when `verify` is false, for the file at `p` whose
    /// content hashes to `actual` (content_hash): it must be ckpt's, and its checksum must match.
    /// @throws corrupt_error (the ids of a verifying constructor)
    void check_checksum(const std::byte* p, std::uint64_t actual);

private:
    static bool is_ckpt_header(std::string_view json);

    /// The format version is the second key, at a fixed place, so it is read before anything
    /// that a newer format might have changed. `p` is null when only the header was read.
    void check_version(std::string_view json, const std::byte* p, std::uint64_t size);

public:
    /// XXH3-64 of a file in memory with its checksum digits read as zeros.
    static std::uint64_t content_hash(const std::byte* p, std::uint64_t size);

private:
    std::uint64_t hash_of(const std::byte* p, std::uint64_t size);
    bool checksum_matches(std::string_view json, const std::byte* p, std::uint64_t size);
    void verify_checksum(std::string_view json, const std::byte* p, std::uint64_t size);
    void compare_checksum(std::string_view json, std::uint64_t actual);

    std::string where_;
    content_hasher hasher_;
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

/// The C++ element type of a dtype, as errors name it ("float", "half", "int32"); the
/// safetensors name for the F8 kinds, which have none.
std::string_view cpp_name(dtype t) noexcept;

/// A state's tensor as its C++ type holds it: "float 3x6", "double[4]"; an empty dynamic tensor
/// takes the file's shape, so its dynamic sizes show as '?' ("float ?x?", "float[]"), with its
/// compile-time bound. `with_order` adds its storage order.
std::string describe_state(const tensor_record& r, bool with_order);

/// A file's tensor in the terms of the state's tensor `r`: "float 3x5 (column-major, stored as
/// F32 [5, 3])", "double[3]"; as safetensors shows it when the ranks differ ("F32 [2, 3, 4]").
std::string describe_file(const file_tensor& f, const tensor_record& r);

/// The differences check_tensors found: the first ones, and how many in all; and the tensors
/// that the source's allow_missing and ignore_unexpected let through.
struct schema_report {
    std::vector<schema_problem> problems;
    std::size_t total = 0;
    std::vector<std::string> missing;
    std::vector<std::string> ignored;

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

/// What a values pass met: its tensors, and whether a sequence kept elements the values do not
/// describe (keep_tails).
struct pass_result {
    std::uint64_t tensors_met = 0;
    bool kept_tail = false;
    /// The pass met exactly the tensors it was given to expect (see
    /// tensor_iarchive::met_expected_tensors).
    bool met_expected = false;
    class_versions versions;                  ///< the class versions the values store
    std::vector<converted_entry> conversions; ///< the tensors the pass converted
};

/// Runs one input pass; cereal's own errors become ckpt's. `keep_tails`: see tensor_iarchive;
/// `expected`: the tensors a values pass is to meet (tensor_iarchive::expect_tensors).
pass_result read_pass(const state_walks& walks, void* obj, std::span<const std::byte> values,
                      const tensor_source* tensors, read_pass_kind kind, std::uint64_t own_tensors,
                      bool keep_tails = false,
                      const std::vector<tensor_record>* expected = nullptr);

/// What an in-place load puts back when it fails: the state's own values and a copy of the
/// tensors that loading replaces (rebuilt_on_load: in maps, optionals, smart pointers and
/// variants). The other tensors are not touched before the values and every shape have been
/// checked, so they need no copy.
struct state_backup {
    /// `state_values` (kept by reference) and `records` from a walk of the state as it is now,
    /// which wrote standard containers as values when `containers_as_values`.
    state_backup(const std::vector<std::byte>& state_values,
                 const std::vector<tensor_record>& records, bool containers_as_values = false);
    state_backup(const state_backup&) = delete;
    state_backup& operator=(const state_backup&) = delete;

    const std::vector<std::byte>* values;
    std::vector<file_tensor> entries; ///< the replaced tensors, laid out in `bytes`
    std::vector<std::byte> bytes;
    tensor_source tensors; ///< over entries and bytes (none when entries is empty)
};

/// Matches the checkpoint's tensors under the names `renames` gives them (see load_options),
/// and lists in `renamed` what each rename applied to. @throws schema_error (310, 311)
void apply_renames(tensor_source& src,
                   const std::vector<std::pair<std::string, std::string>>& renames,
                   std::vector<std::pair<std::string, std::string>>& renamed);

/// Puts back the values, and the tensors loading replaced, from `backup`; errors are dropped
/// (the one that made the load fail is the one to report).
void restore_state(const state_walks& walks, void* obj, const state_backup& backup) noexcept;

/// The last point at which a load can still be called off: everything is read, checked and
/// decoded, and only the copy of the tensors into the state remains. A distributed load passes
/// it only when every rank got there; pass() throws to call the load off, and the state is
/// then put back as it was.
class load_gate {
public:
    virtual void pass() = 0;

protected:
    ~load_gate() = default;
};

/// Values first (tensors untouched, each one accounted for), then a shape check against what
/// the state became, then `gate`, then the tensors. On failure the values, and the tensors
/// loading replaced, are put back from `backup` when given. `own_tensors`: how many tensors
/// the state held before loading. `checked`: the state's tensors before loading, which the
/// file's tensors have passed check_tensors against with nothing to report; when the values
/// pass meets exactly these, the state's list is the one checked, and the walk that lists it
/// again and its check are skipped. @returns the final check, with what it let through
schema_report decode_into(const state_walks& walks, void* obj, const tensor_source& src,
                          std::span<const std::byte> values, const state_backup* backup,
                          std::uint64_t own_tensors, load_gate* gate = nullptr,
                          const std::vector<tensor_record>* checked = nullptr);

/// Files from this size up are loaded with the checksum verified while they decode, when the
/// state holds no tensor memory of its own (see deferred_checksum).
inline constexpr std::uint64_t deferred_checksum_bytes = std::uint64_t{16} << 20;

/// A file's checksum, checked while the load decodes (defined with load_state).
class deferred_checksum;

/// Loads into `state` with the strong guarantee: on any error it is left as it was. With
/// `deferred`, the file's checksum has not been checked yet: it is checked here, while decoding
/// when the state holds no tensor memory of its own, and before anything otherwise.
/// @returns the tensors the source's options let through
schema_report load_state(const state_walks& walks, void* state, tensor_source& src,
                         std::span<const std::byte> values, load_gate* gate = nullptr,
                         deferred_checksum* deferred = nullptr);

/// Loads `state` from an opened file. With `deferred`, the file's checksum has not been checked
/// yet, and load_state checks it.
metadata load_opened(opened_checkpoint& file, const state_walks& walks, void* state,
                     const load_options& options, deferred_checksum* deferred);

/// Verifies, opens and loads a checkpoint held in memory; `where` names it in errors.
metadata load_bytes(const std::byte* p, std::uint64_t size, const state_walks& walks, void* state,
                    const load_options& options, const std::string& where);

/// load() and save() for a state known by its walks.
metadata load_file(const std::filesystem::path& path, const state_walks& walks, void* state,
                   const load_options& options);
std::uint64_t save_file(const std::filesystem::path& path, const state_walks& walks,
                        const void* state, const metadata& meta, const save_options& options);
std::vector<std::byte> save_bytes(const state_walks& walks, const void* state,
                                  const metadata& meta);

/// The first bytes of a file: its length and its header, or only the length when the length
/// cannot be right (opened_checkpoint then says why). @throws io_error
std::vector<std::byte> read_head(io::backend& io, int fd, std::uint64_t size, const limits& lim,
                                 const std::string& where);

/// opened_checkpoint::content_hash of the file at `fd`, hashed in 8 MiB slices, telling
/// `progress` after each: in place when the backend maps it (every page in memory), otherwise
/// read slice by slice into one buffer. @throws io_error
std::uint64_t stream_content_hash(io::backend& io, int fd, std::uint64_t size,
                                  const std::string& where, const progress_callback& progress);

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
    return detail::save_file(path, detail::walks_of<T>, &state, meta, options);
}

/// The bytes save() would write, in memory.
template <class T>
std::vector<std::byte> save_to_memory(const T& state, const metadata& meta = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::save_to_memory: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    return detail::save_bytes(detail::walks_of<T>, &state, meta);
}

/// Loads `state` from `path` and returns the checkpoint's metadata. The file's structure and
/// checksum are verified before anything is decoded (a file of 16 MiB or more loaded into a state
/// holding no tensor memory is decoded into a copy while its checksum is computed, and the state
/// takes the copy once it matches: see detail::deferred_checksum); tensors must match the state's
/// shapes (an empty dynamic tensor takes the file's). On any error `state` is left as it was.
/// @throws io_error, corrupt_error, version_error, schema_error, limit_error
template <class T>
metadata load(const std::filesystem::path& path, T& state, const load_options& options = {}) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::load: T is not checkpointable: give it a cereal serialize(Archive&) "
                  "member or save()/load() functions (see ckpt::checkpointable)");
    return detail::load_file(path, detail::walks_of<T>, &state, options);
}

/// load() from bytes in memory (options.backend is not used).
template <class T>
metadata load_from_memory(std::span<const std::byte> bytes, T& state, const load_options& options) {
    static_assert(is_checkpointable<T>::value,
                  "ckpt::load_from_memory: T is not checkpointable: give it a cereal "
                  "serialize(Archive&) member or save()/load() functions");
    return detail::load_bytes(bytes.data(), bytes.size(), detail::walks_of<T>, &state, options,
                              "<memory>");
}

/// load() from bytes in memory, within `lim`.
template <class T>
metadata load_from_memory(std::span<const std::byte> bytes, T& state, const limits& lim = {}) {
    load_options options;
    options.limits = lim;
    return load_from_memory(bytes, state, options);
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
