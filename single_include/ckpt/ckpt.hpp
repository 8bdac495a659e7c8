// DO NOT EDIT: generated from include/ by tools/amalgamate.py
// ckpt 0.1.0
// SPDX-License-Identifier: MIT

#ifndef CKPT_CKPT_HPP
#define CKPT_CKPT_HPP

/// ckpt: exact, safe, fast checkpoints of training state for C++20.
/// Include this header; it brings save/load/inspect, asynchronous save, the manager, the Eigen
/// and <random> support, the built-in nn, and the cereal support for the standard containers a
/// training state usually holds.

// begin ckpt/async.hpp

// begin ckpt/checkpoint.hpp

// begin ckpt/archive/input.hpp

// begin ckpt/detail/config.hpp

// How ckpt is compiled: header-only (the default), or compiled, like spdlog's and Asio's
// separate compilation.
//
// - Header-only: every translation unit compiles the non-template definitions it uses, as
//   inline functions. Nothing to define.
// - Compiled: every translation unit defines CKPT_COMPILED and sees declarations only (and the
//   templates, which depend on the user's types); exactly one also defines CKPT_IMPLEMENTATION
//   and compiles the definitions, and the explicit instantiations of the built-in nn for float
//   and double. With CMake, link ckpt::ckpt_compiled, which carries CKPT_COMPILED and compiles
//   src/ckpt.cpp; with the single header, define both in one file of your own.
//
// CKPT_INLINE marks a non-template definition: `inline` in header-only mode, nothing in the
// implementation file. CKPT_DEFINITIONS is defined where the definitions are compiled.
#if defined(CKPT_IMPLEMENTATION)
#define CKPT_INLINE
#define CKPT_DEFINITIONS 1
#elif defined(CKPT_COMPILED)
#define CKPT_INLINE
#else
#define CKPT_INLINE inline
#define CKPT_DEFINITIONS 1
#endif
// end ckpt/detail/config.hpp

// begin ckpt/archive/output.hpp


// begin ckpt/archive/path.hpp


#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ckpt::detail {

/// Tracks where an archive is in the state, so tensors and errors get a field path such as
/// "model.layers.0.weight". Named fields (cereal NVPs) use their name; unnamed ones their
/// position among their siblings. Paths are built only when asked for.
class path_tracker {
public:
    /// The next item pushed is named `name` (must outlive that item).
    void name_next(const char* name) noexcept { next_name_ = name; }

    void push() {
        if (nodes_.empty()) {
            nodes_.push_back({nullptr, 0, 0});
        } else {
            node& parent = nodes_.back();
            nodes_.push_back({next_name_, parent.children++, 0});
        }
        next_name_ = nullptr;
    }
    void pop() noexcept {
        if (!nodes_.empty()) nodes_.pop_back();
    }

    /// The current item's path; the root state is "" and a bare root tensor is "value".
    [[nodiscard]] std::string path() const;
    /// path(), written into `out` (whose memory is reused from call to call).
    void path_into(std::string& out) const;
    /// The path of a child of the current item named `name`.
    [[nodiscard]] std::string child_path(const char* name) const;
    /// The current item's path, or "(the state)" for the root object itself.
    [[nodiscard]] std::string object_path() const {
        return nodes_.size() <= 1 ? std::string("(the state)") : path();
    }

private:
    /// The names of the nodes below the root, joined by dots, appended to `s`.
    void join_into(std::string& s) const;
    struct node {
        const char* name;
        std::uint64_t index;
        std::uint64_t children;
    };
    std::vector<node> nodes_;
    const char* next_name_ = nullptr;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/archive/path-inl.hpp


#include <charconv>
#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string path_tracker::path() const {
    std::string s;
    path_into(s);
    return s;
}

CKPT_INLINE void path_tracker::path_into(std::string& out) const {
    out.clear();
    join_into(out);
    if (out.empty()) out = "value";
}

CKPT_INLINE std::string path_tracker::child_path(const char* name) const {
    if (nodes_.empty()) return name; // the root item itself
    std::string s;
    join_into(s);
    if (!s.empty()) s += '.';
    return s + name;
}

CKPT_INLINE void path_tracker::join_into(std::string& s) const {
    // Asked for every tensor of every walk: digits go straight into the string (no temporary),
    // and path_into's string is reused from tensor to tensor.
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
        if (i > 1) s += '.';
        if (nodes_[i].name != nullptr) {
            s += nodes_[i].name;
        } else {
            char digits[20];
            const auto end = std::to_chars(digits, digits + sizeof digits, nodes_[i].index).ptr;
            s.append(digits, end);
        }
    }
}

} // namespace ckpt::detail
// end ckpt/archive/path-inl.hpp
#endif
// end ckpt/archive/path.hpp
// begin ckpt/error.hpp


#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt {

/// Base of every exception ckpt throws; what() starts with "[ckpt.<kind>.<id>]".
class error : public std::runtime_error {
public:
    error(int id, std::string_view kind, const std::string& message);
    error(const error&) = default;
    error& operator=(const error&) = default;
    ~error() override;

    /// The numeric id listed in the README's table of errors.
    [[nodiscard]] int id() const noexcept { return id_; }
    /// "io", "corrupt", "version", "schema", "limit" or "usage".
    [[nodiscard]] std::string_view kind() const noexcept { return kind_; }

private:
    int id_;
    std::string_view kind_;
};

/// A file-system call failed; the OS error is kept.
class io_error : public error {
public:
    io_error(int id, const std::string& message, std::string operation, std::string path,
             std::error_code code);

    /// The call that failed: "open", "write", "fsync", "close", "rename", ...
    [[nodiscard]] const std::string& operation() const noexcept { return operation_; }
    /// The path the call was made on.
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// The OS error (errno) the call returned.
    [[nodiscard]] std::error_code code() const noexcept { return code_; }

private:
    std::string operation_;
    std::string path_;
    std::error_code code_;
};

/// The file is damaged or is not a ckpt checkpoint: checksum, structure or encoding is wrong.
class corrupt_error : public error {
public:
    corrupt_error(int id, const std::string& message) : error(id, "corrupt", message) {}
};

/// The file was written in a format version this build does not read.
class version_error : public error {
public:
    version_error(int id, const std::string& message) : error(id, "version", message) {}
};

/// One difference between the checkpoint and the state it is loaded into.
struct schema_problem {
    int id;           ///< the schema error id of this problem
    std::string path; ///< field path, e.g. "model.layers.1.weight"
    std::string text; ///< the problem with both sides, without the path
};

/// The checkpoint does not fit the state: missing, unexpected or mismatched fields.
/// id() is that of the first problem; the message lists the first 10 and counts the rest.
class schema_error : public error {
public:
    /// `total`: how many problems there were, when `problems` holds only the first of them.
    explicit schema_error(std::vector<schema_problem> problems, std::size_t total = 0);

    /// The differences found, in the state's order: all of them, or on load the first as many
    /// as the checkpoint and the state have tensors (problem_count() tells how many in all).
    [[nodiscard]] const std::vector<schema_problem>& problems() const noexcept { return problems_; }
    /// How many differences there were in all.
    [[nodiscard]] std::size_t problem_count() const noexcept { return total_; }

    /// The most problems the message lists.
    static constexpr std::size_t listed = 10;

private:
    static std::string describe(const std::vector<schema_problem>& problems, std::size_t total);
    std::vector<schema_problem> problems_;
    std::size_t total_;
};

/// A size in the file is beyond what ckpt accepts; nothing of that size was allocated.
class limit_error : public error {
public:
    limit_error(int id, const std::string& message) : error(id, "limit", message) {}
};

/// The library was called wrongly (a bad argument, a name ckpt reserves, ...).
class usage_error : public error {
public:
    usage_error(int id, const std::string& message) : error(id, "usage", message) {}
};

/// Error ids, one per distinct failure; the README lists them.
namespace errc {
// io: a file-system call failed
inline constexpr int io_open = 101;
inline constexpr int io_read = 102;
inline constexpr int io_write = 103;
inline constexpr int io_fsync = 104;
inline constexpr int io_close = 105;
inline constexpr int io_rename = 106;
inline constexpr int io_sync_directory = 107;
inline constexpr int io_stat = 108;
inline constexpr int io_remove = 109;
// corrupt: the bytes are not a valid checkpoint
inline constexpr int corrupt_too_small = 201;
inline constexpr int corrupt_truncated_header = 202;
inline constexpr int corrupt_not_ckpt = 203;
inline constexpr int corrupt_checksum = 204;
inline constexpr int corrupt_json = 205;
inline constexpr int corrupt_header = 206;
inline constexpr int corrupt_offsets = 207;
inline constexpr int corrupt_values = 208;
// schema: the checkpoint does not fit the state
inline constexpr int schema_missing = 301;
inline constexpr int schema_mismatch = 302;
inline constexpr int schema_unexpected = 303;
inline constexpr int schema_storage_order = 304;
inline constexpr int schema_value_type = 305;
inline constexpr int schema_value_count = 306;
inline constexpr int schema_duplicate = 307;
inline constexpr int schema_reserved = 308;
inline constexpr int schema_class_version = 309;
inline constexpr int schema_rename_unmatched = 310;
inline constexpr int schema_rename_collision = 311;
inline constexpr int schema_placement = 312;
inline constexpr int schema_replica_divergence = 313;
inline constexpr int schema_rank_values = 314;
// version
inline constexpr int version_newer = 401;
inline constexpr int version_invalid = 402;
// limit: a declared size is too large
inline constexpr int limit_header = 501;
inline constexpr int limit_tensor_count = 502;
inline constexpr int limit_rank = 503;
inline constexpr int limit_tensor_bytes = 504;
inline constexpr int limit_value_size = 505;
inline constexpr int limit_name = 506;
// usage
inline constexpr int usage_argument = 601;
inline constexpr int usage_missing_metric = 602;
inline constexpr int usage_directory_locked = 603;
inline constexpr int usage_foreign_file = 604;
inline constexpr int usage_staging_cap = 605;
inline constexpr int usage_checkpoint_exists = 606;
/// A rank of a collective call failed with an exception that is not a ckpt::error.
inline constexpr int usage_rank_exception = 607;
} // namespace errc

namespace detail {

/// The one place ckpt throws from.
template <class Error, class... Args>
[[noreturn]] void throw_error(Args&&... args) {
    throw Error(std::forward<Args>(args)...);
}

/// Throws io_error for a failed call, with the OS error's name and text.
[[noreturn]] void throw_io(int id, std::string_view operation, const std::string& path, int err,
                           std::string_view consequence = {});

} // namespace detail
} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/error-inl.hpp


#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt {

CKPT_INLINE error::error(int id, std::string_view kind, const std::string& message)
    : std::runtime_error("[ckpt." + std::string(kind) + "." + std::to_string(id) + "] " + message),
      id_(id), kind_(kind) {}

CKPT_INLINE error::~error() = default;

CKPT_INLINE io_error::io_error(int id, const std::string& message, std::string operation,
                               std::string path, std::error_code code)
    : error(id, "io", message), operation_(std::move(operation)), path_(std::move(path)),
      code_(code) {}

CKPT_INLINE schema_error::schema_error(std::vector<schema_problem> problems, std::size_t total)
    : error(problems.front().id, "schema", describe(problems, std::max(total, problems.size()))),
      problems_(std::move(problems)), total_(std::max(total, problems_.size())) {}

CKPT_INLINE std::string schema_error::describe(const std::vector<schema_problem>& problems,
                                               std::size_t total) {
    std::string s = problems.front().path + ": " + problems.front().text;
    if (total > 1) {
        s += " (and " + std::to_string(total - 1) + " more:";
        const std::size_t shown = std::min({problems.size(), total, listed});
        for (std::size_t i = 1; i < shown; ++i) {
            s += "\n  [ckpt.schema." + std::to_string(problems[i].id) + "] " + problems[i].path +
                 ": " + problems[i].text;
        }
        if (total > shown) s += "\n  ... " + std::to_string(total - shown) + " not listed";
        s += ")";
    }
    return s;
}

namespace detail {

CKPT_INLINE void throw_io(int id, std::string_view operation, const std::string& path, int err,
                          std::string_view consequence) {
    std::string message = std::string(operation) + " '" + path + "' failed: " + std::strerror(err) +
                          " (errno " + std::to_string(err) + ")";
    if (!consequence.empty()) {
        message += "; ";
        message += consequence;
    }
    throw_error<io_error>(id, message, std::string(operation), path,
                          std::error_code(err, std::generic_category()));
}

} // namespace detail
} // namespace ckpt
// end ckpt/error-inl.hpp
#endif
// end ckpt/error.hpp
// begin ckpt/format/dtype.hpp

#include <Eigen/Core>

#include <bit>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace ckpt {

static_assert(std::endian::native == std::endian::little,
              "ckpt: the checkpoint format is little-endian; big-endian hosts are not supported");

/// Element types of a tensor: the safetensors dtypes ckpt reads and writes.
enum class dtype : std::uint8_t {
    boolean = 1,
    u8,
    i8,
    u16,
    i16,
    f16,
    bf16,
    u32,
    i32,
    f32,
    u64,
    i64,
    f64,
    f8_e4m3,
    f8_e5m2,
};

/// The safetensors name of a dtype ("F32", "BOOL", ...).
[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: return "BOOL";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::u16: return "U16";
    case dtype::i16: return "I16";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::u32: return "U32";
    case dtype::i32: return "I32";
    case dtype::f32: return "F32";
    case dtype::u64: return "U64";
    case dtype::i64: return "I64";
    case dtype::f64: return "F64";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
    }
    return "?";
}

/// The dtype named by a safetensors string, or nothing for a name outside the closed set.
[[nodiscard]] constexpr std::optional<dtype> dtype_from_string(std::string_view s) noexcept {
    for (int i = 1; i <= static_cast<int>(dtype::f8_e5m2); ++i) {
        if (to_string(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
    }
    return std::nullopt;
}

/// Bytes per element.
[[nodiscard]] constexpr std::uint64_t size_of(dtype t) noexcept {
    switch (t) {
    case dtype::boolean:
    case dtype::u8:
    case dtype::i8:
    case dtype::f8_e4m3:
    case dtype::f8_e5m2: return 1;
    case dtype::u16:
    case dtype::i16:
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::u32:
    case dtype::i32:
    case dtype::f32: return 4;
    case dtype::u64:
    case dtype::i64:
    case dtype::f64: return 8;
    }
    return 0;
}

namespace detail {
template <class T>
inline constexpr bool dependent_false = false;

template <class T>
constexpr dtype dtype_of_impl() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, bool>) {
        return dtype::boolean;
    } else if constexpr (std::is_same_v<U, float>) {
        return dtype::f32;
    } else if constexpr (std::is_same_v<U, double>) {
        return dtype::f64;
    } else if constexpr (std::is_same_v<U, Eigen::half>) {
        return dtype::f16;
    } else if constexpr (std::is_same_v<U, Eigen::bfloat16>) {
        return dtype::bf16;
    } else if constexpr (std::is_integral_v<U>) {
        constexpr bool s = std::is_signed_v<U>;
        if constexpr (sizeof(U) == 1)
            return s ? dtype::i8 : dtype::u8;
        else if constexpr (sizeof(U) == 2)
            return s ? dtype::i16 : dtype::u16;
        else if constexpr (sizeof(U) == 4)
            return s ? dtype::i32 : dtype::u32;
        else if constexpr (sizeof(U) == 8)
            return s ? dtype::i64 : dtype::u64;
        else
            static_assert(dependent_false<T>, "ckpt: integer type of unsupported width");
    } else {
        static_assert(dependent_false<T>,
                      "ckpt: unsupported scalar type (use bool, an integer of 8 to 64 bits, "
                      "float, double, Eigen::half or Eigen::bfloat16)");
    }
}
} // namespace detail

/// True for the scalar types a tensor or value can hold.
template <class T>
inline constexpr bool
    is_supported_scalar_v = std::is_same_v<std::remove_cv_t<T>, bool> ||
                            std::is_same_v<std::remove_cv_t<T>, float> ||
                            std::is_same_v<std::remove_cv_t<T>, double> ||
                            std::is_same_v<std::remove_cv_t<T>, Eigen::half> ||
                            std::is_same_v<std::remove_cv_t<T>, Eigen::bfloat16> ||
                            (std::is_integral_v<T> && sizeof(T) <= 8);

/// The dtype of a C++ scalar type.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<T>();

} // namespace ckpt
// end ckpt/format/dtype.hpp
// begin ckpt/format/placement.hpp

#include <cstdint>

namespace ckpt {

/// Where a tensor of a distributed state lives; see ckpt::sharded and ckpt::rank_local.
enum class placement_kind : char {
    replicated = '-', ///< the same on every rank (the default)
    sharded = 'S',    ///< this rank holds some rows (first axis) of a larger global tensor
    rank_local = 'L', ///< each rank's own value, restored to the rank of the same number
};

/// A tensor's placement: what the file records for it in `ckpt.placement` and `ckpt.shards`.
struct placement {
    placement_kind kind = placement_kind::replicated;
    /// Sharded: the global row of this tensor's first row, and the rows of the global tensor,
    /// whose other axes are this tensor's.
    std::uint64_t row_offset = 0;
    std::uint64_t global_rows = 0;

    friend bool operator==(const placement&, const placement&) = default;
};

} // namespace ckpt
// end ckpt/format/placement.hpp

#include <Eigen/Core>
#include <cereal/cereal.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <typeindex>
#include <unordered_map>
#include <variant>
#include <vector>

namespace ckpt::detail {

/// Tags of the non-tensor values stream; a scalar is tagged with its dtype's code.
inline constexpr std::uint8_t tag_size = 0x40;
inline constexpr std::uint8_t tag_bytes = 0x41;
/// A cereal class version (format 2 on): the tag, then a u32, at the first node of each
/// versioned type. A format-1 file stored it as a plain U32 scalar.
inline constexpr std::uint8_t tag_version = 0x42;

/// The cereal class version of each type met by a walk, by cereal's type hash.
using class_versions = std::unordered_map<std::size_t, std::uint32_t>;

/// The most axes a tensor of the state may have.
inline constexpr std::size_t max_rank = 8;
/// Sizes per axis, first axis first; only the first `rank` are used.
using tensor_dims = std::array<std::int64_t, max_rank>;
/// No compile-time bound on any axis.
inline constexpr tensor_dims unbounded = {-1, -1, -1, -1, -1, -1, -1, -1};

/// One tensor met while walking a state: an Eigen object, a standard container of numbers, an
/// Eigen::Tensor or a view of the user's memory.
struct tensor_record {
    std::string name;
    dtype type = dtype::u8;
    std::uint8_t rank = 0;  ///< axes, as the C++ type indexes them (an Eigen vector has one)
    char order = '-';       ///< 'R' or 'C' from rank 2 on, '-' below
    std::uint8_t fixed = 0; ///< bit i: the type fixes the size of axis i
    /// Takes the file's size on every axis the type does not fix, whatever it holds now (a
    /// std::vector). An empty dynamic Eigen object takes it too; see holds_shape.
    bool resizes = false;
    /// Memory the user owns (ckpt::tensor): filled only once everything else has loaded.
    bool view = false;
    /// Inside an object that loading replaces (see rebuilt_on_load): a load that fails after
    /// its values pass cannot put this tensor back from the state's values alone.
    bool rebuilt = false;
    placement place{}; ///< as declared by ckpt::sharded or ckpt::rank_local around it
    tensor_dims dims{};
    tensor_dims max = unbounded; ///< compile-time bounds of dynamic axes; -1: none
    const std::byte* data = nullptr;
    std::uint64_t bytes = 0;

    [[nodiscard]] bool fixed_axis(std::size_t i) const noexcept { return ((fixed >> i) & 1U) != 0; }
    [[nodiscard]] bool all_fixed() const noexcept {
        return fixed == static_cast<std::uint8_t>((1U << rank) - 1U);
    }
    [[nodiscard]] std::int64_t elements() const noexcept {
        std::int64_t n = 1;
        for (std::size_t i = 0; i < rank; ++i) n *= dims[i];
        return n;
    }
    /// The row-major shape of the bytes, as written to the file: a column-major tensor's axes
    /// in reverse.
    [[nodiscard]] std::vector<std::uint64_t> shape() const {
        std::vector<std::uint64_t> s(rank);
        for (std::size_t i = 0; i < rank; ++i) {
            s[i] = static_cast<std::uint64_t>(order == 'C' ? dims[rank - 1 - i] : dims[i]);
        }
        return s;
    }
};

/// A record of `rank` axes of `dims` over contiguous memory of `type` elements.
tensor_record make_record(dtype type, const void* data, std::size_t rank, const std::int64_t* dims,
                          char order, std::uint8_t fixed, bool resizes);

/// Describes an Eigen plain object type for a tensor record: rank 1 for a compile-time vector,
/// 2 for a matrix.
template <class Derived>
tensor_record describe_tensor(const Eigen::PlainObjectBase<Derived>& m) {
    using scalar = typename Derived::Scalar;
    static_assert(is_supported_scalar_v<scalar>,
                  "ckpt: Eigen tensor with an unsupported scalar type (use bool, an integer, "
                  "float, double, Eigen::half or Eigen::bfloat16)");
    tensor_record r;
    r.type = dtype_of<scalar>;
    if constexpr (Derived::IsVectorAtCompileTime) {
        r.rank = 1;
        r.dims[0] = static_cast<std::int64_t>(m.size());
        r.fixed = Derived::SizeAtCompileTime != Eigen::Dynamic ? 1 : 0;
        if constexpr (Derived::MaxSizeAtCompileTime != Eigen::Dynamic) {
            r.max[0] = Derived::MaxSizeAtCompileTime;
        }
    } else {
        r.rank = 2;
        r.order = Derived::IsRowMajor ? 'R' : 'C';
        r.dims[0] = static_cast<std::int64_t>(m.rows());
        r.dims[1] = static_cast<std::int64_t>(m.cols());
        r.fixed = static_cast<std::uint8_t>((Derived::RowsAtCompileTime != Eigen::Dynamic ? 1 : 0) |
                                            (Derived::ColsAtCompileTime != Eigen::Dynamic ? 2 : 0));
        if constexpr (Derived::MaxRowsAtCompileTime != Eigen::Dynamic) {
            r.max[0] = Derived::MaxRowsAtCompileTime;
        }
        if constexpr (Derived::MaxColsAtCompileTime != Eigen::Dynamic) {
            r.max[1] = Derived::MaxColsAtCompileTime;
        }
    }
    r.data = reinterpret_cast<const std::byte*>(m.data());
    r.bytes = static_cast<std::uint64_t>(m.size()) * sizeof(scalar);
    return r;
}

/// cereal output archive that records every Eigen tensor (by field path, without copying it) and
/// writes every other value to a compact tagged byte stream.
class tensor_oarchive
    : public cereal::OutputArchive<tensor_oarchive, cereal::AllowEmptyClassElision>,
      public path_tracker {
public:
    /// `tensors_only`: the walk is for the tensor list alone (a shape check), so costly value
    /// encoders (random engines' text) may write a placeholder instead; see values_wanted().
    explicit tensor_oarchive(bool tensors_only = false)
        : cereal::OutputArchive<tensor_oarchive, cereal::AllowEmptyClassElision>(this),
          tensors_only_(tensors_only) {}

    /// False when only the tensors of this walk are used.
    [[nodiscard]] bool values_wanted() const noexcept { return !tensors_only_; }

    /// Standard containers of numbers (std::vector, std::array, C arrays) are written as values,
    /// the way format 2 and older stored them, rather than as tensors: for the walks of a load
    /// from such a file, whose tensors and values must match the file's.
    void containers_as_values(bool on) noexcept { containers_as_values_ = on; }
    [[nodiscard]] bool containers_as_values() const noexcept { return containers_as_values_; }

    template <class T>
    void write_scalar(const T& v) {
        static_assert(is_supported_scalar_v<T>,
                      "ckpt: unsupported arithmetic type (long double and wide characters "
                      "have no portable representation)");
        if (trace_ != nullptr) note_value();
        values_.push_back(static_cast<std::byte>(dtype_of<T>));
        append(&v, sizeof(T));
    }
    void write_size(std::uint64_t n);
    void write_bytes(const void* data, std::size_t n);
    void write_class_version(std::uint32_t version);

    /// Walks each versioned type met by a load's values pass with the version the checkpoint
    /// stored for it, not the one compiled in, so the walk lists the tensors that version has.
    /// Types the values pass did not meet keep the compiled version. `versions` must outlive
    /// the walk.
    void use_versions(const class_versions* versions) noexcept { versions_ = versions; }
    /// The version a walk gives a type: the checkpoint's when use_versions knows it.
    [[nodiscard]] std::uint32_t class_version(std::size_t hash,
                                              std::uint32_t compiled) const noexcept {
        if (versions_ == nullptr) return compiled;
        const auto it = versions_->find(hash);
        return it == versions_->end() ? compiled : it->second;
    }
    template <class Derived>
    void write_tensor(const Eigen::PlainObjectBase<Derived>& m) {
        add_tensor(describe_tensor(m));
    }
    /// Records a tensor met at the current path.
    void add_tensor(tensor_record&& r);

    /// The tensors met until end_placement() have placement `p`: `what` ("ckpt::sharded",
    /// "ckpt::rank_local") declared it around the field `name` that the walk meets next.
    /// @throws usage_error (601) inside another placement
    void begin_placement(const char* what, const char* name, const placement& p);
    /// @throws usage_error (601) when a sharded declaration did not wrap exactly one tensor
    /// whose rows are contiguous and inside the global tensor
    void end_placement();

    /// The walk enters (leaves) an object that loading replaces rather than loads into.
    void enter_rebuilt() noexcept { ++rebuilt_depth_; }
    void leave_rebuilt() noexcept { --rebuilt_depth_; }

    [[nodiscard]] std::vector<tensor_record>& tensors() noexcept { return tensors_; }
    [[nodiscard]] std::vector<std::byte>& values() noexcept { return values_; }
    [[nodiscard]] const std::vector<std::byte>& values() const noexcept { return values_; }

    /// The byte ranges [begin, end) of values() written inside ckpt::rank_local declarations:
    /// each rank's own, left out when the ranks' values are compared.
    [[nodiscard]] const std::vector<std::pair<std::uint64_t, std::uint64_t>>&
    rank_local_values() const noexcept {
        return local_values_;
    }
    /// How many ckpt::rank_local declarations the walk met.
    [[nodiscard]] std::uint64_t rank_local_declarations() const noexcept { return local_count_; }

    /// Where each value starts in values(), and the path of its field: `out` receives one
    /// entry per value written from now on (for an error that names a field; costs a string
    /// per value, so only a walk made for that asks for it). Must outlive the walk.
    void trace_values(std::vector<std::pair<std::uint64_t, std::string>>* out) noexcept {
        trace_ = out;
    }
    /// Room for `n` tensors before the walk (a load knows how many the file has): a state of
    /// thousands of tensors otherwise grows the list a dozen times, into fresh pages each time.
    void reserve_tensors(std::size_t n) { tensors_.reserve(n); }

private:
    void append(const void* data, std::size_t n);
    void note_value();
    std::vector<std::pair<std::uint64_t, std::string>>* trace_ = nullptr;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> local_values_;
    std::uint64_t local_count_ = 0;
    std::uint64_t placement_values_ = 0; ///< values_.size() at begin_placement
    std::vector<tensor_record> tensors_;
    std::vector<std::byte> values_;
    bool tensors_only_ = false;
    bool containers_as_values_ = false;
    std::uint32_t rebuilt_depth_ = 0;
    const class_versions* versions_ = nullptr;
    placement place_{};
    const char* placement_what_ = nullptr; ///< "ckpt::sharded" while inside one
    std::string placement_path_;           ///< the declaration's path
    std::size_t placement_first_ = 0;      ///< tensors_.size() at begin_placement
};

} // namespace ckpt::detail

/// cereal asks its archive for the class version of each versioned type, once per type and
/// walk; ckpt's output archive answers with the version of the checkpoint being loaded when it
/// has one (see use_versions) and writes it with its own tag. (An explicit specialization of
/// the member template for this one archive: cereal's versioning, not its encoding, is kept.)
template <>
template <class T>
std::uint32_t cereal::OutputArchive<ckpt::detail::tensor_oarchive,
                                    cereal::AllowEmptyClassElision>::registerClassVersion() {
    static const auto hash = std::type_index(typeid(T)).hash_code();
    const std::uint32_t version = self->class_version(hash, cereal::detail::Version<T>::version);
    if (itsVersionedTypes.insert(hash).second) self->write_class_version(version);
    return version;
}

namespace ckpt::detail {

/// Objects whose cereal load makes a new object instead of loading into the existing one: a map
/// item (std::map, std::unordered_map and the other maps clear and re-insert), std::optional
/// (emplace), the smart pointers (a new pointee) and std::variant (a new alternative). The
/// tensors inside them are backed up before an in-place load (see load_state), because the
/// state's values alone cannot bring their data back.
template <class T>
struct rebuilt_on_load : std::false_type {};
template <class K, class V>
struct rebuilt_on_load<cereal::MapItem<K, V>> : std::true_type {};
template <class T>
struct rebuilt_on_load<std::optional<T>> : std::true_type {};
template <class T, class D>
struct rebuilt_on_load<std::unique_ptr<T, D>> : std::true_type {};
template <class T>
struct rebuilt_on_load<std::shared_ptr<T>> : std::true_type {};
template <class... T>
struct rebuilt_on_load<std::variant<T...>> : std::true_type {};

// Every item but names, sizes and raw bytes is a node of the field path.
template <class T>
void prologue(tensor_oarchive& ar, const T&) {
    ar.push();
    if constexpr (rebuilt_on_load<T>::value) ar.enter_rebuilt();
}
template <class T>
void epilogue(tensor_oarchive& ar, const T&) {
    if constexpr (rebuilt_on_load<T>::value) ar.leave_rebuilt();
    ar.pop();
}
template <class T>
void prologue(tensor_oarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(tensor_oarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void prologue(tensor_oarchive&, const cereal::BinaryData<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const cereal::BinaryData<T>&) {}
// A base class's fields belong to the derived object's node.
template <class T>
void prologue(tensor_oarchive&, const cereal::base_class<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const cereal::base_class<T>&) {}
template <class T>
void prologue(tensor_oarchive&, const cereal::virtual_base_class<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const cereal::virtual_base_class<T>&) {}

template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const T& v) {
    ar.write_scalar(v);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const cereal::NameValuePair<T>& nvp) {
    ar.name_next(nvp.name);
    ar(nvp.value);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const cereal::SizeTag<T>& tag) {
    ar.write_size(static_cast<std::uint64_t>(tag.size));
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const cereal::BinaryData<T>& bd) {
    ar.write_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/archive/output-inl.hpp


#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace ckpt::detail {

CKPT_INLINE tensor_record make_record(dtype type, const void* data, std::size_t rank,
                                      const std::int64_t* dims, char order, std::uint8_t fixed,
                                      bool resizes) {
    tensor_record r;
    r.type = type;
    r.rank = static_cast<std::uint8_t>(rank);
    r.order = rank >= 2 ? order : '-';
    r.fixed = fixed;
    r.resizes = resizes;
    for (std::size_t i = 0; i < rank; ++i) r.dims[i] = dims[i];
    r.data = static_cast<const std::byte*>(data);
    r.bytes = static_cast<std::uint64_t>(r.elements()) * size_of(type);
    return r;
}

CKPT_INLINE void tensor_oarchive::note_value() {
    trace_->emplace_back(values_.size(), path());
}

CKPT_INLINE void tensor_oarchive::write_size(std::uint64_t n) {
    if (trace_ != nullptr) note_value();
    values_.push_back(static_cast<std::byte>(tag_size));
    append(&n, sizeof n);
}

CKPT_INLINE void tensor_oarchive::write_bytes(const void* data, std::size_t n) {
    if (trace_ != nullptr) note_value();
    values_.push_back(static_cast<std::byte>(tag_bytes));
    const auto len = static_cast<std::uint64_t>(n);
    append(&len, sizeof len);
    append(data, n);
}

CKPT_INLINE void tensor_oarchive::write_class_version(std::uint32_t version) {
    if (trace_ != nullptr) note_value();
    values_.push_back(static_cast<std::byte>(tag_version));
    append(&version, sizeof version);
}

CKPT_INLINE void tensor_oarchive::add_tensor(tensor_record&& r) {
    path_into(r.name);
    r.rebuilt = rebuilt_depth_ != 0;
    r.place = place_;
    tensors_.push_back(std::move(r));
}

CKPT_INLINE void tensor_oarchive::begin_placement(const char* what, const char* name,
                                                  const placement& p) {
    std::string here = child_path(name);
    if (placement_what_ != nullptr) {
        throw_error<usage_error>(errc::usage_argument, std::string(what) + " '" + here +
                                                           "' is inside " + placement_what_ + " '" +
                                                           placement_path_ +
                                                           "': a tensor has one placement");
    }
    place_ = p;
    placement_what_ = what;
    placement_path_ = std::move(here);
    placement_first_ = tensors_.size();
    placement_values_ = values_.size();
}

CKPT_INLINE void tensor_oarchive::end_placement() {
    const std::string what = placement_what_ != nullptr ? placement_what_ : "";
    const placement p = place_;
    const std::size_t met = tensors_.size() - placement_first_;
    place_ = {};
    placement_what_ = nullptr;
    if (p.kind == placement_kind::rank_local) {
        ++local_count_;
        if (values_.size() > placement_values_) {
            local_values_.emplace_back(placement_values_, values_.size());
        }
    }
    if (p.kind != placement_kind::sharded) return;
    const auto fail = [&](const std::string& why) {
        throw_error<usage_error>(errc::usage_argument, what + " '" + placement_path_ + "': " + why);
    };
    // A file of format 2 or older holds containers among the values: nothing to place then.
    if (met == 0 && containers_as_values_) return;
    if (met != 1) {
        fail("wraps " + std::to_string(met) +
             " tensors; it must wrap exactly one (its rows are the shard)");
    }
    const tensor_record& r = tensors_.back();
    if (r.rank == 0) fail("wraps a tensor of rank 0, which has no rows");
    if (r.order == 'C') {
        fail("wraps a column-major tensor, whose rows are not contiguous; make it row-major");
    }
    const auto rows = static_cast<std::uint64_t>(r.dims[0]);
    if (p.row_offset > p.global_rows || rows > p.global_rows - p.row_offset) {
        fail("rows [" + std::to_string(p.row_offset) + ", " + std::to_string(p.row_offset) + " + " +
             std::to_string(rows) + ") are outside the global tensor's " +
             std::to_string(p.global_rows) + " rows");
    }
}

CKPT_INLINE void tensor_oarchive::append(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    values_.insert(values_.end(), p, p + n);
}

} // namespace ckpt::detail
// end ckpt/archive/output-inl.hpp
#endif
// end ckpt/archive/output.hpp
// begin ckpt/detail/memory.hpp


#include <cstddef>

namespace ckpt::detail {

/// Copies below this many bytes go through memcpy; from here up, copy_tensor_bytes streams.
inline constexpr std::size_t streaming_copy_bytes = std::size_t{64} << 10;

/// Copies `n` bytes of a tensor into the state's memory, as memcpy does. From
/// streaming_copy_bytes up, on x86-64, the stores are non-temporal: the destination's lines are
/// not read first and the copy does not evict what the cache holds. glibc makes that choice only
/// above a threshold tied to the cache size (tens of MiB on a large server part), so a tensor of a
/// few MiB was copied through the cache: 1.6x the time on the CI machine.
///
/// Non-temporal stores are weakly ordered: the calling thread reads the bytes back as it wrote
/// them, but before another thread may see them, call publish_tensor_copies() once (a fence).
/// A fence after every tensor cost a load of 4,096 tensors of 64 KiB about 1 ms: each one
/// waited for the write-combining buffers to drain.
void copy_tensor_bytes(void* dst, const void* src, std::size_t n) noexcept;

/// Orders the stores of every copy_tensor_bytes before it (an sfence on x86-64).
void publish_tensor_copies() noexcept;

/// Advice for `n` bytes that ckpt has just allocated and is about to fill entirely (a tensor that
/// loading gave a new size): every page of its page-aligned part is faulted in by one call
/// (Linux 5.14's MADV_POPULATE_WRITE) rather than one fault at a time; older kernels refuse the
/// advice, which is then skipped. Never used on memory the user's state already held. Below
/// 64 KiB it does nothing; errors are ignored (the copy faults the pages in anyway). No
/// transparent huge pages: in a virtual machine whose free memory goes back to its host, a huge
/// page comes back from the host whole, and an empty-state load of 256 MiB took 500 ms with them
/// against 122 ms without on the CI machine.
void prepare_new_storage(void* p, std::size_t n) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/detail/memory-inl.hpp


#include <cstdint>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace ckpt::detail {

CKPT_INLINE void copy_tensor_bytes(void* dst, const void* src, std::size_t n) noexcept {
    if (n == 0) return; // an empty tensor's pointers may be null, which memcpy may not take
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (n >= streaming_copy_bytes) {
        // SSE2 (every x86-64 has it), written with the compilers' builtins: <immintrin.h> costs
        // every including translation unit a noticeable share of its compile time.
        using v2di = long long __attribute__((__vector_size__(16)));
        auto* out = static_cast<unsigned char*>(dst);
        const auto* in = static_cast<const unsigned char*>(src);
        const auto misalign = static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(out) & 63);
        const std::size_t head = misalign == 0 ? 0 : 64 - misalign;
        std::memcpy(out, in, head); // the stores below are to whole, aligned lines
        out += head;
        in += head;
        n -= head;
        const std::size_t body = n & ~std::size_t{63};
        for (std::size_t i = 0; i < body; i += 64) {
            v2di a;
            v2di b;
            v2di c;
            v2di d;
            std::memcpy(&a, in + i, 16);
            std::memcpy(&b, in + i + 16, 16);
            std::memcpy(&c, in + i + 32, 16);
            std::memcpy(&d, in + i + 48, 16);
#if defined(__clang__)
            __builtin_nontemporal_store(a, reinterpret_cast<v2di*>(out + i));
            __builtin_nontemporal_store(b, reinterpret_cast<v2di*>(out + i + 16));
            __builtin_nontemporal_store(c, reinterpret_cast<v2di*>(out + i + 32));
            __builtin_nontemporal_store(d, reinterpret_cast<v2di*>(out + i + 48));
#else
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i), a);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 16), b);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 32), c);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 48), d);
#endif
        }
        std::memcpy(out + body, in + body, n - body); // publish_tensor_copies() fences
        return;
    }
#endif
    std::memcpy(dst, src, n);
}

CKPT_INLINE void publish_tensor_copies() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_sfence();
#endif
}

CKPT_INLINE void prepare_new_storage(void* p, std::size_t n) noexcept {
#if defined(__linux__)
    if (n < streaming_copy_bytes) return;
    const auto begin = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t end = begin + n;
    static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t page_begin = (begin + page - 1) & ~(page - 1);
    const std::uintptr_t page_end = end & ~(page - 1);
    constexpr int populate_write = 23; // MADV_POPULATE_WRITE, missing from older headers
    if (page_end > page_begin) {
        (void)::madvise(reinterpret_cast<void*>(page_begin), page_end - page_begin, populate_write);
    }
#else
    (void)p;
    (void)n;
#endif
}

} // namespace ckpt::detail
// end ckpt/detail/memory-inl.hpp
#endif
// end ckpt/detail/memory.hpp
// begin ckpt/detail/name_index.hpp

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// A file's tensor names to their entries: what every load asks for each tensor, several
/// times. An open-addressing table of (hash, item) slots over the items in insertion order:
/// a lookup reads one slot array and the name it finds, where a node-based map chased a
/// bucket, a node and the name (about 50 ns a lookup at 4,096 tensors, 1.4 ms of a load).
///
/// The names are views: whoever fills the index keeps them alive and in place. Pointers to
/// items stay valid until the next emplace.
class name_index {
public:
    struct item {
        std::string_view first; ///< the name
        std::size_t second;     ///< its entry
    };

    [[nodiscard]] const item* end() const noexcept { return nullptr; }
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

    /// The item named `name`, or end().
    [[nodiscard]] const item* find(std::string_view name) const noexcept {
        if (slots_.empty()) return nullptr;
        const std::uint64_t h = hash(name);
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t i = static_cast<std::size_t>(h) & mask_;; i = (i + 1) & mask_) {
            const slot& s = slots_[i];
            if (s.item == 0) return nullptr;
            if (s.tag == tag && items_[s.item - 1].first == name) return &items_[s.item - 1];
        }
    }
    [[nodiscard]] std::size_t count(std::string_view name) const noexcept {
        return find(name) != nullptr ? 1 : 0;
    }

    /// Adds `name` unless it is there. @returns its item, and whether it was added
    std::pair<const item*, bool> emplace(std::string_view name, std::size_t entry) {
        if (const item* found = find(name)) return {found, false};
        if ((items_.size() + 1) * 2 > slots_.size()) grow();
        if (items_.size() >= 0xFFFFFFFEU) throw std::length_error("ckpt: more than 2^32 names");
        items_.push_back({name, entry});
        place(hash(name), static_cast<std::uint32_t>(items_.size()));
        return {&items_.back(), true};
    }
    /// `name` now gives `entry`, whether it was there or not.
    void insert_or_assign(std::string_view name, std::size_t entry) {
        const auto [it, added] = emplace(name, entry);
        if (!added) items_[static_cast<std::size_t>(it - items_.data())].second = entry;
    }

    void reserve(std::size_t n) {
        items_.reserve(n);
        std::size_t want = 16;
        while (want < n * 2) want *= 2;
        if (want > slots_.size()) rehash(want);
    }
    void clear() noexcept {
        items_.clear();
        slots_.clear();
        mask_ = 0;
    }

private:
    struct slot {
        std::uint32_t tag;  ///< the hash's high half
        std::uint32_t item; ///< 1 + its index in items_; 0: empty
    };

    /// 8 bytes at a time, mixed as in MurmurHash3's finalizer: names differ mostly in their
    /// last digits, which the low bits (the slot) must feel.
    static std::uint64_t hash(std::string_view s) noexcept {
        std::uint64_t h = 0x9E3779B97F4A7C15ULL ^ s.size();
        const char* p = s.data();
        std::size_t n = s.size();
        const auto mix = [&h](std::uint64_t w) {
            h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
            h ^= h >> 33;
        };
        for (; n >= 8; n -= 8, p += 8) {
            std::uint64_t w = 0;
            std::memcpy(&w, p, 8);
            mix(w);
        }
        if (n != 0) {
            std::uint64_t w = 0;
            for (std::size_t i = 0; i < n; ++i) {
                w |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
            }
            mix(w);
        }
        h *= 0xC4CEB9FE1A85EC53ULL;
        return h ^ (h >> 33);
    }

    void place(std::uint64_t h, std::uint32_t item_number) noexcept {
        std::size_t i = static_cast<std::size_t>(h) & mask_;
        while (slots_[i].item != 0) i = (i + 1) & mask_;
        slots_[i] = {static_cast<std::uint32_t>(h >> 32), item_number};
    }
    void grow() { rehash(slots_.empty() ? 16 : slots_.size() * 2); }
    void rehash(std::size_t n) {
        slots_.assign(n, slot{0, 0});
        mask_ = n - 1;
        for (std::size_t k = 0; k < items_.size(); ++k) {
            place(hash(items_[k].first), static_cast<std::uint32_t>(k + 1));
        }
    }

    std::vector<item> items_;
    std::vector<slot> slots_;
    std::size_t mask_ = 0;
};

} // namespace ckpt::detail
// end ckpt/detail/name_index.hpp
// begin ckpt/format/convert.hpp


#include <cstddef>
#include <cstdint>

namespace ckpt::detail {

/// How a tensor stored as one floating-point dtype loads into another.
enum class conversion : std::uint8_t {
    same,      ///< the same dtype: a copy
    widening,  ///< every value is exact: F16 or BF16 to F32 or F64, F32 to F64
    narrowing, ///< values round to nearest, ties to even: the other pairs of F16, BF16, F32, F64
    none,      ///< no conversion (integers, bools, F8)
};

/// The conversion from `from` to `to`.
[[nodiscard]] conversion classify_conversion(dtype from, dtype to) noexcept;

/// Converts `count` elements of `from` at `src` to `to` at `dst` (both unaligned, not
/// overlapping; the pair is widening or narrowing). NaN stays NaN and keeps its sign; a finite
/// value beyond the target's range becomes an infinity of its sign.
/// @returns how many values changed: finite values that rounded or overflowed
std::uint64_t convert_elements(dtype from, const std::byte* src, dtype to, std::byte* dst,
                               std::uint64_t count) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/format/convert-inl.hpp


#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace ckpt::detail {

CKPT_INLINE conversion classify_conversion(dtype from, dtype to) noexcept {
    if (from == to) return conversion::same;
    // Precision (significand bits) and exponent range, smallest first.
    const auto rank = [](dtype t) -> int {
        switch (t) {
        case dtype::f16: return 1;
        case dtype::bf16: return 2;
        case dtype::f32: return 3;
        case dtype::f64: return 4;
        default: return 0;
        }
    };
    const int a = rank(from);
    const int b = rank(to);
    if (a == 0 || b == 0) return conversion::none;
    // F16 and BF16 each hold values the other cannot (precision one way, range the other).
    if (b > a && !(from == dtype::f16 && to == dtype::bf16)) return conversion::widening;
    return conversion::narrowing;
}

namespace convert_impl {

inline std::uint16_t load16(const std::byte* p) noexcept {
    std::uint16_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// F16 to F32, exactly (NaN payloads included).
inline float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { // zero or subnormal: mant * 2^-24, exact in a float
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign != 0 ? -v : v;
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline float bf16_to_f32(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Any of the four as a double, exactly.
inline double load_double(dtype t, const std::byte* p) noexcept {
    switch (t) {
    case dtype::f16: return f16_to_f32(load16(p));
    case dtype::bf16: return bf16_to_f32(load16(p));
    case dtype::f32: {
        float f = 0;
        std::memcpy(&f, p, sizeof f);
        return f;
    }
    default: {
        double d = 0;
        std::memcpy(&d, p, sizeof d);
        return d;
    }
    }
}

/// `v` rounded once, to nearest with ties to even, to a binary format of `mant_bits` stored
/// significand bits and `exp_bits` exponent bits (F16: 10, 5; BF16: 7, 8). Sets `changed` when
/// a finite value is not exact.
inline std::uint16_t round_to_16(double v, int mant_bits, int exp_bits, bool& changed) noexcept {
    const auto sign = static_cast<std::uint16_t>(std::signbit(v) ? 0x8000u : 0u);
    const int bias = (1 << (exp_bits - 1)) - 1;
    const int exp_all = (1 << exp_bits) - 1;
    const auto inf = static_cast<std::uint16_t>(sign | (exp_all << mant_bits));
    if (std::isnan(v)) return static_cast<std::uint16_t>(inf | (1 << (mant_bits - 1)));
    const double a = std::fabs(v);
    if (std::isinf(a)) return inf;
    if (a == 0) return sign;
    int e = 0;
    (void)std::frexp(a, &e);                             // a in [2^(e-1), 2^e)
    const int q = std::max(e - 1, 1 - bias) - mant_bits; // the unit in the last place
    const double t = std::ldexp(a, -q);                  // < 2^(mant_bits + 1): exact
    double r = std::floor(t);
    const double rest = t - r;
    if (rest > 0.5 || (rest == 0.5 && std::fmod(r, 2.0) != 0)) r += 1;
    changed = r != t;
    auto sig = static_cast<std::uint32_t>(r);
    int unit = q;
    if (sig == (2u << mant_bits)) { // rounding carried into the next binade
        sig >>= 1;
        ++unit;
    }
    if (sig < (1u << mant_bits)) return static_cast<std::uint16_t>(sign | sig); // subnormal
    const int field = unit + mant_bits + bias;
    if (field >= exp_all) {
        changed = true;
        return inf;
    }
    const auto exponent = static_cast<std::uint32_t>(field) << mant_bits; // field > 0 here
    return static_cast<std::uint16_t>(sign | exponent | (sig - (1u << mant_bits)));
}

/// `v` rounded to a float as the hardware does (to nearest, ties to even), without the cast of
/// an out-of-range double, which C++ leaves undefined.
inline float round_to_f32(double v) noexcept {
    // FLT_MAX is 2^128 - 2^104; from halfway to the next power, 2^128 - 2^103, on (ties go to
    // the even 2^128), a value rounds to infinity.
    constexpr double to_infinity = 0x1.ffffffp+127;
    const double a = std::fabs(v);
    if (a >= to_infinity && !std::isinf(a)) {
        return std::copysign(std::numeric_limits<float>::infinity(),
                             static_cast<float>(std::signbit(v) ? -1 : 1));
    }
    if (a > static_cast<double>(std::numeric_limits<float>::max()) && !std::isinf(a)) {
        return std::copysign(std::numeric_limits<float>::max(),
                             static_cast<float>(std::signbit(v) ? -1 : 1));
    }
    return static_cast<float>(v);
}

} // namespace convert_impl

CKPT_INLINE std::uint64_t convert_elements(dtype from, const std::byte* src, dtype to,
                                           std::byte* dst, std::uint64_t count) noexcept {
    using namespace convert_impl;
    const std::uint64_t in = size_of(from);
    const std::uint64_t out = size_of(to);
    std::uint64_t changed = 0;
    // The common widenings bit by bit; everything else through one exact double.
    if (to == dtype::f32 && (from == dtype::f16 || from == dtype::bf16)) {
        for (std::uint64_t i = 0; i < count; ++i) {
            const std::uint16_t h = load16(src + i * in);
            const float f = from == dtype::f16 ? f16_to_f32(h) : bf16_to_f32(h);
            std::memcpy(dst + i * out, &f, sizeof f);
        }
        return 0;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
        const double v = load_double(from, src + i * in);
        std::byte* d = dst + i * out;
        switch (to) {
        case dtype::f64: std::memcpy(d, &v, sizeof v); break;
        case dtype::f32: {
            const float f = round_to_f32(v);
            if (!std::isnan(v) && static_cast<double>(f) != v) ++changed;
            std::memcpy(d, &f, sizeof f);
            break;
        }
        default: {
            bool c = false;
            const std::uint16_t h =
                to == dtype::f16 ? round_to_16(v, 10, 5, c) : round_to_16(v, 7, 8, c);
            if (c) ++changed;
            std::memcpy(d, &h, sizeof h);
            break;
        }
        }
    }
    return changed;
}

} // namespace ckpt::detail
// end ckpt/format/convert-inl.hpp
#endif
// end ckpt/format/convert.hpp
// begin ckpt/format/header.hpp

// begin ckpt/format/limits.hpp

#include <cstdint>

namespace ckpt {

/// Caps applied to a file before anything it declares is allocated.
struct limits {
    /// JSON header bytes (safetensors' own cap).
    std::uint64_t max_header_bytes = 100'000'000;
    /// Number of tensors in one file.
    std::uint64_t max_tensors = 1'000'000;
    /// Dimensions of one tensor.
    std::uint64_t max_rank = 8;
    /// Bytes of one tensor or field name.
    std::uint64_t max_name_bytes = 4096;
};

} // namespace ckpt
// end ckpt/format/limits.hpp

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Name of the entry that holds every non-tensor value of the state.
inline constexpr std::string_view values_entry = "__ckpt_values__";
/// Every ckpt file's JSON header starts with these bytes, then 16 hex digits and a quote.
inline constexpr std::string_view checksum_prefix = R"({"__metadata__":{"ckpt.checksum":"xxh3-64:)";
/// Offset of the checksum's hex digits in the file.
inline constexpr std::uint64_t checksum_digits_offset = 8 + checksum_prefix.size();

/// One tensor entry of a safetensors header.
struct file_tensor {
    std::string name;
    dtype type = dtype::u8;
    std::vector<std::uint64_t> shape;
    std::uint64_t begin = 0; ///< offset in the data section
    std::uint64_t end = 0;
    char order = '-';  ///< from ckpt.layout: 'R', 'C', or '-'
    placement place{}; ///< from ckpt.placement and ckpt.shards
};

/// A validated safetensors header.
struct parsed_header {
    std::map<std::string, std::string> meta;
    std::vector<file_tensor> entries; ///< every entry (values entry included), header order
    std::uint64_t data_bytes = 0;
};

/// Overflow-checked a * b; false when it does not fit.
[[nodiscard]] inline bool checked_mul(std::uint64_t a, std::uint64_t b,
                                      std::uint64_t& out) noexcept {
    return !__builtin_mul_overflow(a, b, &out);
}

/// "[a, b, c]".
std::string shape_string(const std::vector<std::uint64_t>& shape);

/// Serializes a header: metadata first (its first pair must be the checksum; no __metadata__ at
/// all when `meta` is empty), then the entries.
/// The result is padded with spaces so that the data section starts 8-byte aligned.
std::string build_header(const std::vector<std::pair<std::string, std::string>>& meta,
                         const std::vector<file_tensor>& entries);

/// Parses and validates a safetensors JSON header against the data section's size: closed dtype
/// set, caps, overflow-checked sizes, offsets contiguous and covering the data exactly.
/// @throws corrupt_error, limit_error
parsed_header parse_header(std::string_view json, std::uint64_t data_bytes, const limits& lim,
                           const std::string& where);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/format/header-inl.hpp


#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::string shape_string(const std::vector<std::uint64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

CKPT_INLINE std::string build_header(const std::vector<std::pair<std::string, std::string>>& meta,
                                     const std::vector<file_tensor>& entries) {
    // Written by hand, byte for byte what rapidjson::Writer writes: a state of thousands of
    // tensors spent most of its plan here, half of it validating UTF-8 one character at a time.
    // A string of printable ASCII without '"' or '\\' (every field path in practice) is copied
    // as it is; any other goes through rapidjson's writer, which escapes and validates it.
    std::size_t reserve = 64 + entries.size() * 96;
    for (const auto& [k, v] : meta) reserve += k.size() + v.size() + 6;
    std::string json;
    json.reserve(reserve);
    const auto str = [&json](std::string_view s) {
        const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u >= 0x20 && u < 0x7F && c != '"' && c != '\\';
        });
        if (plain) {
            json += '"';
            json.append(s);
            json += '"';
            return;
        }
        rapidjson::StringBuffer buf;
        rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                          rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
            w(buf);
        if (s.size() > 0xFFFFFFFFu ||
            !w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true)) {
            throw_error<usage_error>(errc::usage_argument,
                                     "a name or metadata string is not valid UTF-8: '" +
                                         std::string(s.substr(0, 64)) + "'");
        }
        json.append(buf.GetString(), buf.GetSize());
    };
    const auto number = [&json](std::uint64_t v) {
        char digits[24];
        const auto r = std::to_chars(digits, digits + sizeof digits, v);
        json.append(digits, r.ptr);
    };
    json += '{';
    bool first = true;
    if (!meta.empty()) {
        str("__metadata__");
        json += ":{";
        for (const auto& [k, v] : meta) {
            if (!first) json += ',';
            first = false;
            str(k);
            json += ':';
            str(v);
        }
        json += '}';
    }
    for (const auto& e : entries) {
        if (!meta.empty() || &e != entries.data()) json += ',';
        str(e.name);
        json += ":{\"dtype\":";
        str(to_string(e.type));
        json += ",\"shape\":[";
        for (std::size_t i = 0; i < e.shape.size(); ++i) {
            if (i > 0) json += ',';
            number(e.shape[i]);
        }
        json += "],\"data_offsets\":[";
        number(e.begin);
        json += ',';
        number(e.end);
        json += "]}";
    }
    json += '}';
    json.append((8 - json.size() % 8) % 8, ' ');
    return json;
}

/// A decimal number of at most 19 digits (below 2^63), no sign, no leading zero; nullopt else.
CKPT_INLINE std::optional<std::uint64_t> parse_row_count(std::string_view text) {
    if (text.empty() || text.size() > 19 || (text.size() > 1 && text[0] == '0')) return {};
    std::uint64_t n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') return {};
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n > static_cast<std::uint64_t>(INT64_MAX)) return {};
    return n;
}

/// ckpt.placement (one placement_kind character per entry) and ckpt.shards ("offset/global"
/// per sharded entry, comma-separated, in header order); both absent: every entry replicated.
CKPT_INLINE void parse_placement(parsed_header& h, const std::string& where) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    const auto pit = h.meta.find("ckpt.placement");
    const auto sit = h.meta.find("ckpt.shards");
    if (pit == h.meta.end()) {
        if (sit != h.meta.end())
            corrupt(errc::corrupt_header, "ckpt.shards without ckpt.placement");
        return;
    }
    const std::string& kinds = pit->second;
    if (kinds.size() != h.entries.size()) {
        corrupt(errc::corrupt_header, "ckpt.placement has " + std::to_string(kinds.size()) +
                                          " characters for " + std::to_string(h.entries.size()) +
                                          " entries");
    }
    std::string_view shards =
        sit != h.meta.end() ? std::string_view(sit->second) : std::string_view();
    bool any_shard = false;
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        file_tensor& e = h.entries[i];
        const char c = kinds[i];
        if (c != '-' && c != 'S' && c != 'L') {
            corrupt(errc::corrupt_header, std::string("ckpt.placement holds '") + c + "'");
        }
        if (c != '-' && e.name == values_entry) {
            corrupt(errc::corrupt_header, "ckpt.placement places the values entry");
        }
        e.place.kind = static_cast<placement_kind>(c);
        if (c != 'S') continue;
        if (e.shape.empty() || e.order == 'C') {
            corrupt(errc::corrupt_header,
                    "ckpt.placement shards '" + e.name + "', which " +
                        (e.shape.empty() ? "has no rows" : "is column-major"));
        }
        if (sit == h.meta.end()) {
            corrupt(errc::corrupt_header,
                    "ckpt.placement shards '" + e.name + "' but there is no ckpt.shards");
        }
        if (any_shard) {
            if (shards.empty() || shards[0] != ',') {
                corrupt(errc::corrupt_header, "ckpt.shards has fewer items than sharded entries");
            }
            shards.remove_prefix(1);
        }
        any_shard = true;
        const std::size_t end = std::min(shards.find(','), shards.size());
        const std::string_view item = shards.substr(0, end);
        shards.remove_prefix(end);
        const std::size_t slash = item.find('/');
        const auto offset = parse_row_count(item.substr(0, std::min(slash, item.size())));
        const auto global = slash == std::string_view::npos
                                ? std::nullopt
                                : parse_row_count(item.substr(slash + 1));
        if (!offset || !global) {
            corrupt(errc::corrupt_header, "ckpt.shards item '" + std::string(item) + "' of '" +
                                              e.name + "' is not offset/global_rows");
        }
        // Sharded along the first axis of the row-major shape: this entry's rows.
        const std::uint64_t rows = e.shape[0];
        if (*offset > *global || rows > *global - *offset) {
            corrupt(errc::corrupt_header,
                    "ckpt.shards puts the " + std::to_string(rows) + " rows of '" + e.name +
                        "' at " + std::to_string(*offset) + ", outside the global tensor's " +
                        std::to_string(*global) + " rows");
        }
        e.place.row_offset = *offset;
        e.place.global_rows = *global;
    }
    if (!shards.empty() || (sit != h.meta.end() && !any_shard)) {
        corrupt(errc::corrupt_header, "ckpt.shards has more items than sharded entries");
    }
}

/// Reads a safetensors header from rapidjson's SAX events straight into parse_header's result:
/// no document tree. A header of thousands of tensors cost more as a tree (built, searched by
/// member name, freed) than every other per-tensor step of a load together.
///
/// It reports what parse_header reported when it walked a tree, in the same order: invalid JSON
/// first (the events never stop early, so a syntax error anywhere wins), then a root that is not
/// an object, then too many tensors, then the first problem of the members in document order
/// (within a member: its name's length, then a repeated name, then its value). An entry's fields
/// are checked once its object closes, in a fixed order whatever order they come in.
class header_reader {
public:
    header_reader(parsed_header& h, const limits& lim) : h_(h), lim_(lim) {}

    bool Null() { return other(); }
    bool Bool(bool) { return other(); }
    bool Int(int i) { return i >= 0 ? number(static_cast<std::uint64_t>(i)) : other(); }
    bool Uint(unsigned u) { return number(u); }
    bool Int64(std::int64_t i) { return i >= 0 ? number(static_cast<std::uint64_t>(i)) : other(); }
    bool Uint64(std::uint64_t u) { return number(u); }
    bool Double(double) { return other(); }
    bool RawNumber(const char*, rapidjson::SizeType, bool) { return other(); }
    bool String(const char* s, rapidjson::SizeType n, bool) { return string({s, n}); }
    bool StartObject() { return open(true); }
    bool Key(const char* s, rapidjson::SizeType n, bool) { return key({s, n}); }
    bool EndObject(rapidjson::SizeType) { return close(); }
    bool StartArray() { return open(false); }
    bool EndArray(rapidjson::SizeType) { return close(); }

    /// After a parse without a syntax error: throws what the header's members got wrong.
    void raise(const std::string& where) {
        const auto fail = [&](const problem& p) {
            const std::string what = "'" + where + "': " + p.what;
            if (p.limit) throw_error<limit_error>(p.id, what);
            throw_error<corrupt_error>(p.id, what);
        };
        if (!root_is_object_) fail({errc::corrupt_header, false, "header is not a JSON object"});
        const std::uint64_t tensors = members_ - (meta_positions_.empty() ? 0 : 1);
        if (tensors > lim_.max_tensors) {
            fail({errc::limit_tensor_count, true,
                  "header declares " + std::to_string(tensors) +
                      " tensors, more than the limit of " + std::to_string(lim_.max_tensors)});
        }
        // A repeated name is reported where it repeats, if that comes before the first problem
        // (or at it, unless that problem is the name's length).
        const std::uint64_t until = first_ ? first_at_ : members_;
        std::string_view repeated;
        const std::uint64_t repeat = first_repeat(until, repeated);
        if (repeat < until || (first_ && repeat == until && !first_name_limit_)) {
            fail({errc::corrupt_header, false,
                  "entry '" + std::string(repeated) + "' appears twice"});
        }
        if (first_) fail(*first_);
    }

private:
    enum class expecting : std::uint8_t {
        root,         ///< before the root value
        members,      ///< in the root object: a name, or its end
        skip,         ///< a value nobody reads (skip_ counts its open objects and arrays)
        meta,         ///< __metadata__'s value
        meta_members, ///< in __metadata__: a key, or its end
        meta_value,   ///< a metadata value
        entry,        ///< an entry's value
        fields,       ///< in an entry: a field name, or its end
        dtype,
        shape,
        shape_items,
        offsets,
        offset_items,
        done,
    };
    struct problem {
        int id;
        bool limit; ///< a limit_error, else a corrupt_error
        std::string what;
    };
    /// The fields of the entry being read, checked when it closes.
    struct fields {
        unsigned count = 0;
        bool has_dtype = false;
        bool has_shape = false;
        bool has_offsets = false;
        bool dtype_is_string = false;
        std::optional<dtype> type;
        std::string dtype_text; ///< an unknown dtype's text, for the message
        bool shape_is_array = false;
        std::uint64_t rank = 0; ///< items of the shape array, whatever they are
        bool shape_numbers = true;
        bool offsets_is_array = false;
        std::uint64_t offset_items = 0;
        bool offset_numbers = true;
        std::uint64_t offset[2] = {0, 0};
    };

    /// The first problem of the members, at member `first_at_`; storing stops there.
    void report(problem p, bool name_limit = false) {
        if (first_) return;
        first_ = std::move(p);
        first_at_ = members_ - 1;
        first_name_limit_ = name_limit;
        first_name_ = at_meta_ ? std::string("__metadata__") : std::move(t_.name);
    }
    /// Nothing more is kept: a problem was found, or there are too many tensors to keep.
    [[nodiscard]] bool stopped() const noexcept {
        return first_.has_value() || h_.entries.size() > lim_.max_tensors;
    }

    /// The value that comes next is read by nobody; then `resume`.
    void skip_value(expecting resume) {
        state_ = expecting::skip;
        resume_ = resume;
    }
    /// A value other than the one expected has begun: an object or array is skipped whole.
    bool skip_opened(expecting resume) {
        state_ = expecting::skip;
        resume_ = resume;
        skip_ = 1;
        return true;
    }

    /// A value that is not what the state reads (the number, string or container it wants).
    bool other() {
        switch (state_) {
        case expecting::root:
            root_is_object_ = false;
            state_ = expecting::done;
            break;
        case expecting::skip:
            if (skip_ == 0) state_ = resume_;
            break;
        case expecting::meta:
            report({errc::corrupt_header, false, "__metadata__ is not an object"});
            state_ = expecting::members;
            break;
        case expecting::meta_value:
            report({errc::corrupt_header, false,
                    "__metadata__ value of '" + key_ + "' is not a string"});
            state_ = expecting::meta_members;
            break;
        case expecting::entry:
            report({errc::corrupt_header, false, "entry '" + t_.name + "' is not an object"});
            state_ = expecting::members;
            break;
        case expecting::dtype:
        case expecting::shape:
        case expecting::offsets: state_ = expecting::fields; break;
        case expecting::shape_items:
            ++f_.rank;
            f_.shape_numbers = false;
            break;
        case expecting::offset_items:
            ++f_.offset_items;
            f_.offset_numbers = false;
            break;
        default: break; // the reader allows nothing else here
        }
        return true;
    }

    bool number(std::uint64_t v) {
        if (state_ == expecting::shape_items) {
            if (++f_.rank <= lim_.max_rank) {
                if (f_.rank == 1) t_.shape.reserve(4); // one allocation for most shapes
                t_.shape.push_back(v);
            }
            return true;
        }
        if (state_ == expecting::offset_items) {
            if (f_.offset_items < 2) f_.offset[f_.offset_items] = v;
            ++f_.offset_items;
            return true;
        }
        return other();
    }

    bool string(std::string_view s) {
        if (state_ == expecting::dtype) {
            f_.dtype_is_string = true;
            f_.type = dtype_from_string(s);
            if (!f_.type) f_.dtype_text = s;
            state_ = expecting::fields;
            return true;
        }
        if (state_ == expecting::meta_value) {
            state_ = expecting::meta_members;
            if (stopped()) return true;
            const auto [it, fresh] = h_.meta.try_emplace(key_, s);
            if (!fresh) {
                report(
                    {errc::corrupt_header, false, "__metadata__ key '" + key_ + "' appears twice"});
            }
            return true;
        }
        return other();
    }

    bool key(std::string_view name) {
        switch (state_) {
        case expecting::members: {
            ++members_;
            at_meta_ = name == "__metadata__";
            if (at_meta_) meta_positions_.push_back(members_ - 1);
            if (stopped()) {
                skip_value(expecting::members);
                return true;
            }
            if (!at_meta_) {
                t_ = file_tensor{};
                t_.name = name;
                f_ = fields{};
            }
            if (name.size() > lim_.max_name_bytes) {
                report({errc::limit_name, true,
                        "an entry name of " + std::to_string(name.size()) +
                            " bytes exceeds the limit of " + std::to_string(lim_.max_name_bytes)},
                       true);
                skip_value(expecting::members);
                return true;
            }
            state_ = at_meta_ ? expecting::meta : expecting::entry;
            return true;
        }
        case expecting::meta_members:
            key_ = name;
            state_ = expecting::meta_value;
            return true;
        case expecting::fields:
            ++f_.count;
            if (name == "dtype" && !f_.has_dtype) {
                f_.has_dtype = true;
                state_ = expecting::dtype;
            } else if (name == "shape" && !f_.has_shape) {
                f_.has_shape = true;
                state_ = expecting::shape;
            } else if (name == "data_offsets" && !f_.has_offsets) {
                f_.has_offsets = true;
                state_ = expecting::offsets;
            } else {
                skip_value(expecting::fields); // a field too many: the count says so
            }
            return true;
        default: return true; // inside a skipped value
        }
    }

    bool open(bool object) {
        switch (state_) {
        case expecting::root:
            if (object) {
                state_ = expecting::members;
                return true;
            }
            root_is_object_ = false;
            return skip_opened(expecting::done);
        case expecting::skip: ++skip_; return true;
        case expecting::meta:
            if (object) {
                state_ = expecting::meta_members;
                return true;
            }
            other();
            return skip_opened(expecting::members);
        case expecting::meta_value: other(); return skip_opened(expecting::meta_members);
        case expecting::entry:
            if (object) {
                state_ = expecting::fields;
                return true;
            }
            other();
            return skip_opened(expecting::members);
        case expecting::dtype: return skip_opened(expecting::fields);
        case expecting::shape:
            if (object) return skip_opened(expecting::fields);
            f_.shape_is_array = true;
            state_ = expecting::shape_items;
            return true;
        case expecting::offsets:
            if (object) return skip_opened(expecting::fields);
            f_.offsets_is_array = true;
            state_ = expecting::offset_items;
            return true;
        case expecting::shape_items:
        case expecting::offset_items: {
            const expecting here = state_;
            other();
            return skip_opened(here);
        }
        default: return true;
        }
    }

    bool close() {
        switch (state_) {
        case expecting::skip:
            if (--skip_ == 0) state_ = resume_;
            return true;
        case expecting::members: state_ = expecting::done; return true;
        case expecting::meta_members: state_ = expecting::members; return true;
        case expecting::fields:
            finish_entry();
            state_ = expecting::members;
            return true;
        case expecting::shape_items:
        case expecting::offset_items: state_ = expecting::fields; return true;
        default: return true;
        }
    }

    /// The entry's object has closed: its checks, in parse_header's order.
    void finish_entry() {
        const std::string& name = t_.name;
        const auto bad = [&](const std::string& what) {
            report({errc::corrupt_header, false, "entry '" + name + "'" + what});
        };
        if (f_.count != 3 || !f_.has_dtype || !f_.has_shape || !f_.has_offsets) {
            return bad(" must have exactly dtype, shape and data_offsets");
        }
        if (!f_.dtype_is_string) return bad(": dtype is not a string");
        if (!f_.type) return bad(": unknown dtype '" + f_.dtype_text + "'");
        t_.type = *f_.type;
        if (!f_.shape_is_array) return bad(": shape is not an array");
        if (f_.rank > lim_.max_rank) {
            return report({errc::limit_rank, true,
                           "tensor '" + name + "' has rank " + std::to_string(f_.rank) +
                               ", more than the limit of " + std::to_string(lim_.max_rank)});
        }
        if (!f_.shape_numbers) {
            return bad(": shape holds something other than a non-negative integer");
        }
        std::uint64_t count = 1;
        bool overflow = false;
        for (const std::uint64_t d : t_.shape) {
            // Dimensions become Eigen's signed sizes: one beyond 2^63 - 1 is refused even when
            // another dimension is 0 and the byte count comes out small.
            overflow = overflow || d > static_cast<std::uint64_t>(INT64_MAX);
            overflow = overflow || !checked_mul(count, d, count);
        }
        std::uint64_t bytes = 0;
        overflow = overflow || !checked_mul(count, size_of(t_.type), bytes);
        if (overflow || bytes > h_.data_bytes) {
            return report({errc::limit_tensor_bytes, true,
                           "tensor '" + name + "' declares " + std::string(to_string(t_.type)) +
                               " " + shape_string(t_.shape) + ", " +
                               (overflow ? std::string("more bytes than 2^64")
                                         : std::to_string(bytes) + " bytes") +
                               ", but the file holds only " + std::to_string(h_.data_bytes) +
                               " bytes of data"});
        }
        if (!f_.offsets_is_array || f_.offset_items != 2 || !f_.offset_numbers) {
            return bad(": data_offsets is not [begin, end]");
        }
        t_.begin = f_.offset[0];
        t_.end = f_.offset[1];
        if (t_.end < t_.begin || t_.end - t_.begin != bytes) {
            return report({errc::corrupt_offsets, false,
                           "tensor '" + name + "' spans bytes [" + std::to_string(t_.begin) + ", " +
                               std::to_string(t_.end) + ") but its dtype and shape need " +
                               std::to_string(bytes) + " bytes"});
        }
        h_.entries.push_back(std::move(t_));
    }

    /// The member, before `until`, whose name an earlier member has (`until` itself counts:
    /// first_name_ is its name); members_ when none does.
    std::uint64_t first_repeat(std::uint64_t until, std::string_view& name) const {
        name_index seen;
        seen.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(until + 1, members_)));
        std::size_t entry = 0;
        std::size_t meta = 0;
        for (std::uint64_t m = 0; m <= until && m < members_; ++m) {
            if (meta < meta_positions_.size() && meta_positions_[meta] == m) {
                ++meta;
                name = "__metadata__";
            } else if (m == until) {
                name = first_name_;
            } else {
                name = h_.entries[entry++].name;
            }
            if (!seen.emplace(name, 0).second) return m;
        }
        return members_;
    }

    parsed_header& h_;
    const limits& lim_;
    expecting state_ = expecting::root;
    expecting resume_ = expecting::root;
    std::uint64_t skip_ = 0;
    std::uint64_t members_ = 0;
    std::vector<std::uint64_t> meta_positions_; ///< members named __metadata__
    bool at_meta_ = false;                      ///< the current member is __metadata__
    bool root_is_object_ = true;
    std::string key_; ///< the metadata key whose value comes next
    file_tensor t_;   ///< the entry being read
    fields f_;
    std::optional<problem> first_;
    std::uint64_t first_at_ = 0;
    bool first_name_limit_ = false;
    std::string first_name_; ///< the name of member first_at_
};

/// Gives `handler` the SAX events of `json` when it is written the way ckpt writes headers: no
/// whitespace but spaces after the root, strings of printable ASCII without escapes, unsigned
/// integers in plain decimal, nesting at most 8 deep. For such text the events are exactly
/// rapidjson's, read many times faster. Returns false at the first byte outside that form, having
/// given some events perhaps: the caller starts again with rapidjson.
template <class Handler>
bool read_plain_json(std::string_view json, Handler& handler) {
    const char* p = json.data();
    const char* const end = p + json.size();
    char open[8]; // '{' or '[' per level
    std::size_t depth = 0;
    const auto plain_string = [&](const char*& s, rapidjson::SizeType& n) {
        s = ++p; // past the opening quote
        while (p != end && *p != '"') {
            const auto c = static_cast<unsigned char>(*p);
            if (c < 0x20 || c >= 0x7F || c == '\\') return false;
            ++p;
        }
        if (p == end || p - s > 0x7FFFFFFF) return false;
        n = static_cast<rapidjson::SizeType>(p - s);
        ++p; // past the closing quote
        return true;
    };
    // One value; containers push a level and return, their items come from the loop below.
    const auto value = [&]() {
        if (p == end) return false;
        const char c = *p;
        if (c == '{' || c == '[') {
            if (depth == sizeof open) return false;
            open[depth++] = c;
            ++p;
            return c == '{' ? handler.StartObject() : handler.StartArray();
        }
        if (c == '"') {
            const char* s = nullptr;
            rapidjson::SizeType n = 0;
            return plain_string(s, n) && handler.String(s, n, false);
        }
        if (c < '0' || c > '9') return false;
        std::uint64_t v = 0;
        const char* const first = p;
        while (p != end && *p >= '0' && *p <= '9') ++p;
        const std::ptrdiff_t digits = p - first;
        if (digits > 20 || (*first == '0' && digits > 1)) return false; // a leading zero
        for (const char* d = first; d != p; ++d) {
            const auto digit = static_cast<unsigned>(*d - '0');
            if (d - first < 19) {
                v = v * 10 + digit; // 19 digits always fit
            } else if (!checked_mul(v, 10, v) || __builtin_add_overflow(v, digit, &v)) {
                return false; // beyond 2^64 - 1: rapidjson reads a double
            }
        }
        return handler.Uint64(v);
    };
    // An item of the open container, after its '{', '[' or ','.
    const auto item = [&]() {
        if (open[depth - 1] == '[') return value();
        if (p == end || *p != '"') return false;
        const char* s = nullptr;
        rapidjson::SizeType n = 0;
        if (!plain_string(s, n) || !handler.Key(s, n, false)) return false;
        if (p == end || *p != ':') return false;
        ++p;
        return value();
    };
    if (!value()) return false;
    while (depth != 0) {
        if (p == end) return false;
        const char c = *p;
        const char close = open[depth - 1] == '{' ? '}' : ']';
        if (c == close) { // an empty container, or the end of one after its last item
            ++p;
            --depth;
            if (!(close == '}' ? handler.EndObject(0) : handler.EndArray(0))) return false;
            continue;
        }
        if (c == ',' && p[-1] != '{' && p[-1] != '[')
            ++p; // between items
        else if (p[-1] != '{' && p[-1] != '[')
            return false;
        if (!item()) return false;
    }
    return std::all_of(p, end, [](char c) { return c == ' '; });
}

/// Reads a header laid out exactly as build_header lays out one whose strings need no escape
/// (safetensors' Python writer lays them out the same way): `{`, then `"__metadata__":{...}` of
/// strings perhaps, then entries `"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}`,
/// `}`, spaces. Every check header_reader makes passes, or this returns false, having filled
/// `h` partly perhaps: the caller starts again with header_reader, which reports the problem.
/// An entry costs about 1,900 instructions here (most of them for its name, its shape and the
/// check that no name repeats), against some 3,500 as SAX events.
CKPT_INLINE bool read_ckpt_header(std::string_view json, parsed_header& h, const limits& lim) {
    const char* p = json.data();
    const char* end = p + json.size();
    while (end != p && end[-1] == ' ') --end;
    // A string of printable ASCII without escapes, at p; p ends past its closing quote.
    const auto plain_string = [&](std::string_view& s) {
        if (p == end || *p != '"') return false;
        const char* const first = ++p;
        for (; p != end && *p != '"'; ++p) {
            const auto c = static_cast<unsigned char>(*p);
            if (c < 0x20 || c >= 0x7F || c == '\\') return false;
        }
        if (p == end) return false;
        s = {first, static_cast<std::size_t>(p - first)};
        ++p;
        return true;
    };
    // The text of a string literal (its length a constant, so the comparison is inlined).
    const auto literal = [&](const auto& text) {
        constexpr std::size_t n = sizeof text - 1;
        if (static_cast<std::size_t>(end - p) < n || std::memcmp(p, text, n) != 0) return false;
        p += n;
        return true;
    };
    // An unsigned decimal below 2^63, without a leading zero.
    const auto number = [&](std::uint64_t& v) {
        const char* const first = p;
        v = 0;
        while (p != end && *p >= '0' && *p <= '9' && p - first < 19) {
            v = v * 10 + static_cast<std::uint64_t>(*p - '0');
            ++p;
        }
        const std::ptrdiff_t digits = p - first;
        return digits != 0 && (*first != '0' || digits == 1) &&
               (p == end || *p < '0' || *p > '9') && v <= static_cast<std::uint64_t>(INT64_MAX);
    };
    if (!literal("{")) return false;
    std::string_view name;
    if (literal("\"__metadata__\":{")) {
        if (!literal("}")) {
            do {
                std::string_view key;
                std::string_view value;
                if (!plain_string(key) || !literal(":") || !plain_string(value)) return false;
                if (!h.meta.try_emplace(std::string(key), value).second) return false;
            } while (literal(","));
            if (!literal("}")) return false;
        }
        if (!literal(",")) return literal("}") && p == end;
    }
    if (literal("}")) return p == end;
    // An entry takes 49 bytes at least, most of them more. (Room for 2^16 entries at most: a
    // header of garbage makes no room for millions.)
    h.entries.reserve(static_cast<std::size_t>(
        std::min<std::uint64_t>({json.size() / 48 + 1, lim.max_tensors, 65536})));
    do {
        if (!plain_string(name) || name.size() > lim.max_name_bytes || name == "__metadata__" ||
            h.entries.size() == lim.max_tensors) {
            return false;
        }
        std::string_view type_text;
        if (!literal(":{\"dtype\":") || !plain_string(type_text) || !literal(",\"shape\":[")) {
            return false;
        }
        const std::optional<dtype> type = dtype_from_string(type_text);
        if (!type) return false;
        std::uint64_t dims[8]; // ranks above 8 are read the general way
        std::size_t rank = 0;
        std::uint64_t bytes = size_of(*type);
        if (!literal("]")) {
            do {
                if (rank == std::size(dims) || rank == lim.max_rank || !number(dims[rank]) ||
                    !checked_mul(bytes, dims[rank], bytes)) {
                    return false;
                }
                ++rank;
            } while (literal(","));
            if (!literal("]")) return false;
        }
        std::uint64_t first = 0;
        std::uint64_t last = 0;
        if (!literal(",\"data_offsets\":[") || !number(first) || !literal(",") || !number(last) ||
            !literal("]}") || bytes > h.data_bytes || last < first || last - first != bytes) {
            return false;
        }
        file_tensor& t = h.entries.emplace_back();
        t.name = name;
        t.type = *type;
        t.shape.assign(dims, dims + rank);
        t.begin = first;
        t.end = last;
    } while (literal(","));
    if (!literal("}") || p != end) return false;
    // Names are told apart once every entry is in place (the views point into them).
    name_index seen;
    seen.reserve(h.entries.size());
    for (const file_tensor& t : h.entries) {
        if (!seen.emplace(t.name, 0).second) return false;
    }
    return true;
}

CKPT_INLINE parsed_header parse_header(std::string_view json, std::uint64_t data_bytes,
                                       const limits& lim, const std::string& where) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    parsed_header h;
    h.data_bytes = data_bytes;
    // ckpt's own headers take the direct reader, then the fast SAX reader; any other text (or
    // damage) starts again with rapidjson, which gives the same events for what both read, and
    // reports the rest.
    bool read = read_ckpt_header(json, h, lim);
    if (!read) {
        h = parsed_header{};
        h.data_bytes = data_bytes;
        header_reader reader(h, lim);
        read = read_plain_json(json, reader);
        if (read) reader.raise(where);
    }
    if (!read) {
        h = parsed_header{};
        h.data_bytes = data_bytes;
        header_reader reader(h, lim);
        rapidjson::Reader json_reader;
        rapidjson::MemoryStream bytes(json.data(), json.size());
        rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> stream(bytes);
        // Iterative: a deeply nested value costs heap, never stack.
        json_reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(
            stream, reader);
        if (json_reader.HasParseError()) {
            corrupt(errc::corrupt_json,
                    std::string("header is not valid JSON: ") +
                        rapidjson::GetParseError_En(json_reader.GetParseErrorCode()) + " at byte " +
                        std::to_string(json_reader.GetErrorOffset()));
        }
        reader.raise(where);
    }

    // Offsets must tile the data section exactly: no gap, no overlap, nothing after the end.
    // (ckpt writes its entries in the order of their offsets: no sort then.)
    std::vector<const file_tensor*> by_offset;
    by_offset.reserve(h.entries.size());
    for (const auto& t : h.entries) by_offset.push_back(&t);
    const auto earlier = [](const file_tensor* a, const file_tensor* b) {
        return a->begin < b->begin;
    };
    if (!std::is_sorted(by_offset.begin(), by_offset.end(), earlier)) {
        std::stable_sort(by_offset.begin(), by_offset.end(), earlier);
    }
    std::uint64_t expect = 0;
    for (const file_tensor* t : by_offset) {
        if (t->begin != expect) {
            corrupt(errc::corrupt_offsets,
                    "tensor '" + t->name + "' starts at byte " + std::to_string(t->begin) +
                        " of the data section, expected " + std::to_string(expect) +
                        (t->begin < expect ? " (it overlaps the previous tensor)" : " (a gap)"));
        }
        expect = t->end;
    }
    if (expect != data_bytes) {
        corrupt(errc::corrupt_offsets, "tensors cover " + std::to_string(expect) +
                                           " bytes but the data section holds " +
                                           std::to_string(data_bytes));
    }

    // ckpt.layout: one storage-order character per entry, in header order.
    if (const auto it = h.meta.find("ckpt.layout"); it != h.meta.end()) {
        const std::string& layout = it->second;
        if (layout.size() != h.entries.size()) {
            corrupt(errc::corrupt_header, "ckpt.layout has " + std::to_string(layout.size()) +
                                              " characters for " +
                                              std::to_string(h.entries.size()) + " entries");
        }
        for (std::size_t i = 0; i < layout.size(); ++i) {
            const char c = layout[i];
            if (c != 'R' && c != 'C' && c != '-') {
                corrupt(errc::corrupt_header, std::string("ckpt.layout holds '") + c + "'");
            }
            if (c != '-' && h.entries[i].shape.size() < 2) {
                corrupt(errc::corrupt_header, "ckpt.layout gives a storage order to '" +
                                                  h.entries[i].name +
                                                  "', which has fewer than 2 axes");
            }
            h.entries[i].order = c;
        }
    }
    parse_placement(h, where);
    return h;
}

} // namespace ckpt::detail
// end ckpt/format/header-inl.hpp
#endif
// end ckpt/format/header.hpp

#include <Eigen/Core>
#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <iterator>
#include <limits>
#include <list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// The tensors of a verified file, by name, with their bytes.
struct tensor_source {
    const std::vector<file_tensor>* entries = nullptr;
    name_index by_name;
    const std::byte* data = nullptr; ///< start of the data section
    /// The values come from a format-1 file, which stored class versions as plain U32 scalars.
    bool legacy_versions = false;
    /// The values come from a file of format 2 or older, which stored standard containers of
    /// numbers as values (see tensor_oarchive::containers_as_values).
    bool containers_as_values = false;
    /// A state's tensor the file lacks keeps its value (load_options::allow_missing).
    bool allow_missing = false;
    /// A file's tensor the state lacks is skipped (load_options::ignore_unexpected).
    bool ignore_unexpected = false;
    /// Per entry, the name the state knows it by when a rename applies (by_name's keys then
    /// point here); empty when nothing was renamed.
    std::vector<std::string> renamed_names;
    /// A tensor stored with a narrower floating-point dtype loads into a wider one
    /// (import_options::widen); `narrow`, the other way, rounding (import_options::narrow).
    bool widen = false;
    bool narrow = false;
    /// The conversions are on offer (an import): a dtype mismatch says which option converts.
    bool offers_conversion = false;
    /// Where the tensor pass finds a tensor the file lacks (allow_missing) that loading
    /// recreates (in a map, optional, smart pointer or variant), so it keeps its value: the
    /// backup of those tensors. May be null.
    const tensor_source* fallback = nullptr;

    tensor_source() = default;
    tensor_source(const tensor_source&) = delete; // by_name's keys may point into this
    tensor_source& operator=(const tensor_source&) = delete;

    /// The name entry `i` is matched by.
    [[nodiscard]] std::string_view name_of(std::size_t i) const {
        return renamed_names.empty() ? std::string_view((*entries)[i].name) : renamed_names[i];
    }

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    /// The entry matched by `name` (never the values entry), or npos. Entry `next` is tried
    /// first, and becomes the one after the entry found: a walk meets the tensors in the
    /// file's order more often than not (always when they share a dtype), and reading entries
    /// in order stays in the caches, where the index's slots lie anywhere in memory.
    [[nodiscard]] std::size_t find(std::string_view name, std::size_t& next) const {
        std::size_t found = npos;
        if (next < entries->size() && name_of(next) == name &&
            (*entries)[next].name != values_entry) {
            found = next;
        } else if (const auto* it = by_name.find(name); it != by_name.end()) {
            found = it->second;
        }
        if (found != npos) next = found + 1;
        return found;
    }

    /// Whether a tensor stored as `from` loads into one of `to` with the conversions allowed.
    [[nodiscard]] bool loads_as(dtype from, dtype to) const noexcept {
        switch (classify_conversion(from, to)) {
        case conversion::same: return true;
        case conversion::widening: return widen;
        case conversion::narrowing: return narrow;
        case conversion::none: break;
        }
        return false;
    }
};

/// A tensor the tensor pass converted: its entry in the file, and how many values changed.
struct converted_entry {
    std::size_t entry = 0;
    dtype to = dtype::u8; ///< the state's dtype
    std::uint64_t inexact = 0;
};

/// The sizes, axis by axis as the state's tensor indexes them, that it must have to hold a file
/// tensor (a column-major file tensor's row-major shape is its axes in reverse); false when the
/// ranks differ.
bool dims_of(const file_tensor& f, const tensor_record& want, tensor_dims& dims);

/// Whether the state's tensor can hold a tensor of `dims`: its own shape, or any shape within
/// its fixed sizes and compile-time bounds when it takes the file's shape (a std::vector, or an
/// empty dynamic Eigen object).
bool holds_shape(const tensor_record& want, const tensor_dims& dims);

/// What one walk of tensor_iarchive over a state does.
enum class read_pass_kind {
    /// Decodes the values and accounts for every tensor the walk meets; tensors are untouched.
    values,
    /// Decodes the values again (same bytes, same object) and copies the tensors in.
    tensors,
    /// Puts back values taken from the state itself, and the tensors of a backup (tensors that
    /// loading replaced, see rebuilt_on_load) when one is given; the other tensors are untouched,
    /// nothing is bounded.
    restore,
};

/// cereal input archive matching tensor_oarchive: reads values from the tagged stream and,
/// in the tensor pass, copies tensors from a verified file. Shapes were checked before that.
///
/// A count read from the file never reaches an allocation unchecked. Each element of a
/// container costs at least one byte of values or one tensor, and tensors are accounted for as
/// the values pass meets them: one the file has (by name, unclaimed, at least as many bytes as
/// the state's object already holds) is paid for by the file's bytes; any other one is paid for
/// by the tensors the state held before loading (`own_tensors`), and there are no more of those
/// than it held. Elements of the standard sequences are created one at a time as the walk
/// reaches them (see load_sequence), so a walk stops at the first tensor nobody pays for.
class tensor_iarchive
    : public cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>,
      public path_tracker {
public:
    /// `tensors` may be null only in a restore pass (which then restores no tensor).
    /// `keep_tails`: a sequence the values make shorter keeps its extra elements, unwalked,
    /// until the tensor pass (see load_sequence); for a values pass over the state itself.
    tensor_iarchive(std::span<const std::byte> values, const tensor_source* tensors,
                    read_pass_kind kind, std::uint64_t own_tensors, bool keep_tails = false);
    /// The tensors copied are ordered for every thread (see copy_tensor_bytes), however the
    /// walk ended.
    ~tensor_iarchive() { publish_tensor_copies(); }
    tensor_iarchive(const tensor_iarchive&) = delete;
    tensor_iarchive& operator=(const tensor_iarchive&) = delete;

    /// Standard containers of numbers are read from the values (see
    /// tensor_oarchive::containers_as_values).
    void containers_as_values(bool on) noexcept { containers_as_values_ = on; }
    [[nodiscard]] bool containers_as_values() const noexcept { return containers_as_values_; }

    /// Whether a sequence the values make shorter keeps its extra elements for now.
    [[nodiscard]] bool keeps_tails() const noexcept { return keep_tails_; }
    /// A sequence kept elements the values do not describe (keep_tails only).
    void note_kept_tail() noexcept { kept_tail_ = true; }
    [[nodiscard]] bool kept_tail() const noexcept { return kept_tail_; }
    /// How many tensors a values pass has met.
    [[nodiscard]] std::uint64_t tensors_met() const noexcept { return claimed_count_ + unpaid_; }

    /// False in the tensor pass, which always follows a values pass over the same object with
    /// the same values (see load_state): costly value decoders (random engines' text) may read
    /// their bytes and skip the decoding, whose result the object already holds. True inside an
    /// object that loading makes anew (rebuilt_on_load: a map's item, an optional's value, a
    /// pointee, a variant's alternative), which holds nothing decoded yet.
    [[nodiscard]] bool decodes_values() const noexcept {
        return kind_ != read_pass_kind::tensors || rebuilt_depth_ != 0;
    }
    void enter_rebuilt() noexcept { ++rebuilt_depth_; }
    void leave_rebuilt() noexcept { --rebuilt_depth_; }

    /// A values pass compares the tensors it meets with `tensors`: the list a walk of the state
    /// made before loading, which the file's tensors were checked against (see decode_into).
    void expect_tensors(const std::vector<tensor_record>* tensors) noexcept { expected_ = tensors; }
    /// The values pass met exactly the expected tensors, in their order, each with the same
    /// path, dtype, axes, bounds, storage order and placement, and none inside an object it
    /// made anew: the state's list of tensors is still the one checked.
    [[nodiscard]] bool met_expected_tensors() const noexcept {
        return expected_ != nullptr && as_expected_ && expected_at_ == expected_->size();
    }
    /// The tensors read until end_placement() have placement `p` (ckpt::sharded and
    /// ckpt::rank_local declare it; the file's entries carry it).
    void begin_placement(const placement& p) noexcept { place_ = p; }
    void end_placement() noexcept { place_ = {}; }

    template <class T>
    void read_scalar(T& v) {
        static_assert(is_supported_scalar_v<T>,
                      "ckpt: unsupported arithmetic type (long double and wide characters "
                      "have no portable representation)");
        expect_tag(static_cast<std::uint8_t>(dtype_of<T>));
        need(sizeof(T));
        if constexpr (std::is_same_v<T, bool>) {
            const auto b = static_cast<std::uint8_t>(values_[pos_]);
            if (b > 1) {
                throw_error<corrupt_error>(errc::corrupt_values,
                                           path() + ": a bool stored as " + std::to_string(b));
            }
            v = b == 1;
        } else {
            std::memcpy(&v, values_.data() + pos_, sizeof(T));
        }
        pos_ += sizeof(T);
    }
    std::uint64_t read_size();
    /// The class version the values store for a type whose version in this program is
    /// `compiled`, recorded in versions(). A format-2 type node with no version was written by
    /// a serialize that took none: version 0. @throws schema_error (309) when the stored
    /// version is newer than `compiled`
    std::uint32_t read_class_version(std::size_t hash, std::uint32_t compiled);
    /// The versions read, by cereal's type hash; moved out, for after the walk.
    [[nodiscard]] class_versions take_versions() noexcept { return std::move(versions_); }
    /// The tensors the tensor pass converted, in the walk's order; moved out.
    [[nodiscard]] std::vector<converted_entry> take_conversions() noexcept {
        return std::move(conversions_);
    }
    /// Checks, before the state allocates for it, that the next value is a byte string of
    /// `count` elements of `element_size` bytes; reads nothing.
    void expect_bytes(std::uint64_t count, std::size_t element_size);
    void read_bytes(void* data, std::size_t n);

    /// Reads the tensor `want` describes: `resize(dims)` gives it the shape the file's tensor
    /// has (the check has made sure it can hold it) and returns where its elements go. Memory
    /// the user owns (a view) is written only by finish_views(), at the end of the walk.
    template <class Resize>
    void read_tensor_as(const tensor_record& want, Resize&& resize) {
        tensor_fill fill;
        if (!fill_for(want, fill)) return;
        void* dst = resize(static_cast<const tensor_dims&>(fill.dims));
        if (want.view) {
            views_.emplace_back(fill, dst);
        } else {
            copy_tensor(fill, dst);
        }
    }

    template <class Derived>
    void read_tensor(Eigen::PlainObjectBase<Derived>& m) {
        read_tensor_as(describe_tensor(m), [&m](const tensor_dims& d) -> void* {
            Eigen::Index rows = 0;
            Eigen::Index cols = 0;
            if constexpr (!Derived::IsVectorAtCompileTime) {
                rows = static_cast<Eigen::Index>(d[0]);
                cols = static_cast<Eigen::Index>(d[1]);
            } else if constexpr (Derived::RowsAtCompileTime == 1 &&
                                 Derived::ColsAtCompileTime != 1) {
                rows = 1;
                cols = static_cast<Eigen::Index>(d[0]);
            } else {
                rows = static_cast<Eigen::Index>(d[0]);
                cols = 1;
            }
            if (rows * cols != m.size()) {
                m.resize(rows, cols); // new storage, which nothing of the user's is in
                prepare_new_storage(m.data(), static_cast<std::size_t>(m.size()) *
                                                  sizeof(typename Derived::Scalar));
            } else if (rows != m.rows() || cols != m.cols()) {
                m.resize(rows, cols); // the same storage, reshaped
            }
            return m.data();
        });
    }

    /// Throws when values are left over: the checkpoint holds more than the state reads.
    void finish() const;
    /// Fills the views the tensor pass met (after finish(): nothing can fail any more).
    void finish_views();

private:
    /// Where the tensor pass finds a state's tensor in the file, and the shape it gives it.
    struct tensor_fill {
        const std::byte* src = nullptr;
        std::uint64_t bytes = 0;      ///< in the file
        tensor_dims dims{};           ///< as the state indexes them
        const file_tensor* stored{};  ///< the file's entry: its row-major shape
        std::size_t element_size = 0; ///< in the state
        dtype from = dtype::u8;       ///< the file's dtype
        dtype to = dtype::u8;         ///< the state's
        std::size_t entry = 0;        ///< in the file, for the record of a conversion
        bool transpose = false;       ///< the file holds the other storage order
    };

    /// What this pass does with a tensor the walk meets: in the values pass it is accounted for
    /// (false: nothing to copy); in the tensor pass `fill` says where it comes from; in a restore
    /// pass, only the tensors `tensors` holds (the backup of those that loading replaced) are
    /// copied back, the others are untouched.
    bool fill_for(const tensor_record& want, tensor_fill& fill);

    /// Where entry `entry` of `src` fills `want`; false when its dtype cannot load into
    /// want's (with src's conversions) or its rank differs.
    static bool locate(const tensor_source& src, std::size_t entry, const tensor_record& want,
                       tensor_fill& fill);

    /// The fallback's tensor at `name` (the current path), when it has one that fits `want`.
    [[nodiscard]] bool find_fallback(const tensor_record& want, std::string_view name,
                                     tensor_fill& fill) const;

    /// Copies a found tensor into the state's buffer, which holds fill.dims,
    /// converting its dtype when it differs (and recording that).
    void copy_tensor(const tensor_fill& fill, void* dst);

    /// The entry of tensors_ named `name` (the renamed name, when renames apply), or no_entry.
    std::size_t entry_named(std::string_view name);
    static constexpr std::size_t no_entry = static_cast<std::size_t>(-1);

    /// Tensors the rest of the walk may still meet (see read_size).
    [[nodiscard]] std::uint64_t tensors_left() const noexcept;

    /// The values pass meets tensor `want`, which holds want.bytes bytes now: the file pays for
    /// it, or the state's own tensors do, or the walk stops here. Compared with the expected
    /// tensors, when there are any.
    void account_tensor(const tensor_record& want);

    static std::string tag_name(std::uint8_t tag);
    void expect_tag(std::uint8_t tag);
    void need(std::size_t n) const;

    std::span<const std::byte> values_;
    std::size_t pos_ = 0;
    const tensor_source* tensors_;
    read_pass_kind kind_;
    std::uint64_t own_tensors_;
    bool keep_tails_;
    bool kept_tail_ = false;
    std::vector<char> claimed_; ///< per file entry: paid for a tensor of this walk
    std::uint64_t claimed_count_ = 0;
    std::size_t next_entry_ = 0; ///< the entry after the last one entry_named found
    std::uint64_t unpaid_ = 0;
    std::uint32_t rebuilt_depth_ = 0;
    const std::vector<tensor_record>* expected_ = nullptr;
    std::size_t expected_at_ = 0; ///< the expected tensor the next one met is compared with
    bool as_expected_ = true;
    placement place_{};
    std::string name_; ///< the current tensor's path (its memory serves every tensor)
    bool containers_as_values_ = false;
    class_versions versions_;
    std::vector<converted_entry> conversions_;
    std::vector<std::pair<tensor_fill, void*>> views_; ///< found, to fill at the end
};

} // namespace ckpt::detail

/// The input side of the output archive's versioning: the version comes from the values, and
/// one newer than the program's is refused (see read_class_version).
template <>
template <class T>
std::uint32_t cereal::InputArchive<ckpt::detail::tensor_iarchive,
                                   cereal::AllowEmptyClassElision>::loadClassVersion() {
    static const auto hash = std::type_index(typeid(T)).hash_code();
    if (const auto it = itsVersionedTypes.find(hash); it != itsVersionedTypes.end()) {
        return it->second;
    }
    const std::uint32_t version =
        self->read_class_version(hash, cereal::detail::Version<T>::version);
    itsVersionedTypes.emplace(hash, version);
    return version;
}

namespace ckpt::detail {

template <class T>
void prologue(tensor_iarchive& ar, const T&) {
    ar.push();
    if constexpr (rebuilt_on_load<T>::value) ar.enter_rebuilt();
}
template <class T>
void epilogue(tensor_iarchive& ar, const T&) {
    if constexpr (rebuilt_on_load<T>::value) ar.leave_rebuilt();
    ar.pop();
}
template <class T>
void prologue(tensor_iarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::BinaryData<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::BinaryData<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::base_class<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::base_class<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::virtual_base_class<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::virtual_base_class<T>&) {}

template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, T& v) {
    ar.read_scalar(v);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, cereal::NameValuePair<T>& nvp) {
    ar.name_next(nvp.name);
    ar(nvp.value);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, cereal::SizeTag<T>& tag) {
    tag.size = static_cast<std::remove_reference_t<T>>(ar.read_size());
}
/// A serialize, not a load, as cereal's binary input archive has it: cereal's C-array support
/// picks binary_data for both directions by asking whether the archive can *output* BinaryData,
/// which only a serialize overload answers for an input archive. With a load here, `float a[3]`
/// was saved as one byte string and loaded element by element, and could not load.
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(tensor_iarchive& ar, cereal::BinaryData<T>& bd) {
    ar.read_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

// The standard sequences cereal loads with resize(count) before the first element: ckpt loads
// them itself (these overloads are more specialized than cereal's), growing one element at a
// time as the walk reaches it, so a count from the file never allocates for elements that cost
// no value bytes (tensors alone) before the tensor accounting has seen them. The file's order
// and encoding are cereal's; an existing element is loaded in place, extra ones are removed.

/// Loads `count` elements into `seq` (vector, deque or list): reuses, then appends, then trims.
/// A values pass over the state itself (keeps_tails) does not trim: the elements it would remove
/// may hold tensors, which putting the values back cannot recreate. If they hold tensors, the
/// checks after the values pass fail (decode_into) and the state is put back as it was; if not,
/// the tensor pass trims.
template <class Seq>
void load_sequence(tensor_iarchive& ar, Seq& seq) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    const auto n = static_cast<std::size_t>(count);
    if (n < seq.size()) {
        if (ar.keeps_tails()) {
            ar.note_kept_tail();
        } else {
            seq.resize(n); // shrinking allocates nothing
        }
    }
    std::size_t i = 0;
    for (auto it = seq.begin(); it != seq.end() && i < n; ++it, ++i) ar(*it);
    for (; i < n; ++i) ar(seq.emplace_back());
}

/// A vector of numbers stored in the values: a count, then one byte string whose length is
/// checked against the count before the resize.
template <class T, class A>
void load_vector_values(tensor_iarchive& ar, std::vector<T, A>& v) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    ar.expect_bytes(count, sizeof(T));
    v.resize(static_cast<std::size_t>(count));
    ar(cereal::binary_data(v.data(), static_cast<std::size_t>(count) * sizeof(T)));
}

template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::vector<T, A>& v) {
    if constexpr (is_supported_scalar_v<T>) {
        if (!std::is_arithmetic_v<T> || !ar.containers_as_values()) {
            // A tensor of rank 1 that takes the file's length.
            const std::int64_t n = static_cast<std::int64_t>(v.size());
            ar.read_tensor_as(make_record(dtype_of<T>, v.data(), 1, &n, '-', 0, true),
                              [&v](const tensor_dims& d) -> void* {
                                  const auto len = static_cast<std::size_t>(d[0]);
                                  if (len != v.size()) v.resize(len);
                                  return v.data();
                              });
            return;
        }
    }
    if constexpr (std::is_arithmetic_v<T>) {
        load_vector_values(ar, v); // format 2 and older
    } else if constexpr (!is_supported_scalar_v<T>) {
        load_sequence(ar, v);
    }
}
template <class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::vector<bool, A>& v) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count)); // each bool is two bytes of values: the bound holds
    v.resize(static_cast<std::size_t>(count));
    for (auto&& bit : v) {
        bool b = false;
        ar(b);
        bit = b;
    }
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::deque<T, A>& d) {
    load_sequence(ar, d);
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::list<T, A>& l) {
    load_sequence(ar, l);
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::forward_list<T, A>& l) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    auto before = l.before_begin();
    for (cereal::size_type i = 0; i < count; ++i) {
        if (std::next(before) == l.end()) l.emplace_after(before);
        ++before;
        ar(*before);
    }
    if (std::next(before) == l.end()) return;
    if (ar.keeps_tails()) {
        ar.note_kept_tail(); // see load_sequence
    } else {
        l.erase_after(before, l.end());
    }
}

} // namespace ckpt::detail

CEREAL_SETUP_ARCHIVE_TRAITS(ckpt::detail::tensor_iarchive, ckpt::detail::tensor_oarchive)

#ifdef CKPT_DEFINITIONS
// begin ckpt/archive/input-inl.hpp


#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE bool dims_of(const file_tensor& f, const tensor_record& want, tensor_dims& dims) {
    const std::size_t rank = want.rank;
    if (f.shape.size() != rank) return false;
    const char order = f.order == '-' ? want.order : f.order;
    for (std::size_t i = 0; i < rank; ++i) {
        const std::uint64_t n = order == 'C' ? f.shape[rank - 1 - i] : f.shape[i];
        // A size no object can have (the file's data bounds the others, not an axis of an
        // empty tensor): the shapes differ.
        if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 16)) {
            return false;
        }
        dims[i] = static_cast<std::int64_t>(n);
    }
    return true;
}

CKPT_INLINE bool holds_shape(const tensor_record& r, const tensor_dims& dims) {
    bool same = true;
    for (std::size_t i = 0; i < r.rank; ++i) same = same && dims[i] == r.dims[i];
    if (same) return true;
    // A std::vector takes the file's shape; so does an empty Eigen object of dynamic size.
    if (!r.resizes && (r.elements() != 0 || r.all_fixed())) return false;
    for (std::size_t i = 0; i < r.rank; ++i) {
        if (r.fixed_axis(i) && dims[i] != r.dims[i]) return false;
        if (r.max[i] >= 0 && dims[i] > r.max[i]) return false;
    }
    return true;
}

CKPT_INLINE tensor_iarchive::tensor_iarchive(std::span<const std::byte> values,
                                             const tensor_source* tensors, read_pass_kind kind,
                                             std::uint64_t own_tensors, bool keep_tails)
    : cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>(this), values_(values),
      tensors_(tensors), kind_(kind), own_tensors_(own_tensors), keep_tails_(keep_tails) {
    if (kind_ == read_pass_kind::values) claimed_.assign(tensors_->entries->size(), 0);
}

CKPT_INLINE bool tensor_iarchive::fill_for(const tensor_record& want, tensor_fill& fill) {
    if (kind_ == read_pass_kind::values) {
        account_tensor(want);
        return false;
    }
    if (tensors_ == nullptr) return false; // a restore with no tensors to put back
    // A view's memory is written only once the load has succeeded: there is nothing to restore.
    if (kind_ == read_pass_kind::restore && want.view) return false;
    path_into(name_);
    const std::string& name = name_;
    const std::size_t entry = entry_named(name);
    if (entry == no_entry) {
        // A restore puts back only the tensors its backup holds. A tensor the file lacks was
        // let through by the check (allow_missing): it keeps its value, from the fallback
        // when loading recreated it.
        if (kind_ == read_pass_kind::restore) return false;
        if (tensors_->allow_missing) return find_fallback(want, name, fill);
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_missing, name, "the checkpoint has no such tensor"}});
    }
    if (!locate(*tensors_, entry, want, fill)) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_mismatch, name, "the tensor changed while loading"}});
    }
    return true;
}

CKPT_INLINE bool tensor_iarchive::locate(const tensor_source& src, std::size_t entry,
                                         const tensor_record& want, tensor_fill& fill) {
    const file_tensor& f = (*src.entries)[entry];
    if (!src.loads_as(f.type, want.type) || !dims_of(f, want, fill.dims)) return false;
    fill.src = src.data + f.begin;
    fill.bytes = f.end - f.begin;
    fill.stored = &f;
    fill.element_size = static_cast<std::size_t>(size_of(want.type));
    fill.from = f.type;
    fill.to = want.type;
    fill.entry = entry;
    const char order = f.order == '-' ? want.order : f.order;
    fill.transpose = want.rank >= 2 && order != want.order;
    return true;
}

CKPT_INLINE bool tensor_iarchive::find_fallback(const tensor_record& want, std::string_view name,
                                                tensor_fill& fill) const {
    const tensor_source* back = tensors_->fallback;
    if (back == nullptr) return false;
    const auto it = back->by_name.find(name);
    // The backup holds the state's own tensor at this path, unless the values put another kind
    // of object there (a variant's other alternative): then it is not used.
    return it != back->by_name.end() && locate(*back, it->second, want, fill) &&
           holds_shape(want, fill.dims);
}

/// Reverses the axes of a dense array of N-byte elements: `src` is row-major over `shape` (of
/// `rank` >= 2 axes), `dst` becomes row-major over the reversed shape, which is `src`'s
/// column-major order. For a matrix, the transpose.
template <std::size_t N>
void reverse_axes(std::byte* dst, const std::byte* src, const std::vector<std::uint64_t>& shape) {
    const std::size_t rank = shape.size();
    std::array<std::uint64_t, max_rank> stride{}; // in dst, of each axis of src
    stride[0] = 1;
    for (std::size_t k = 1; k < rank; ++k) stride[k] = stride[k - 1] * shape[k - 1];
    const std::uint64_t inner = shape[rank - 1];
    const std::uint64_t step = stride[rank - 1];
    std::uint64_t runs = 1;
    for (std::size_t k = 0; k + 1 < rank; ++k) runs *= shape[k];
    std::array<std::uint64_t, max_rank> at{}; // index over the outer axes
    for (std::uint64_t run = 0; run < runs; ++run) {
        std::uint64_t base = 0;
        for (std::size_t k = 0; k + 1 < rank; ++k) base += at[k] * stride[k];
        for (std::uint64_t i = 0; i < inner; ++i, src += N) {
            std::memcpy(dst + (base + i * step) * N, src, N);
        }
        for (std::size_t k = rank - 1; k-- > 0;) {
            if (++at[k] < shape[k]) break;
            at[k] = 0;
        }
    }
}

CKPT_INLINE void tensor_iarchive::copy_tensor(const tensor_fill& fill, void* dst) {
    if (fill.bytes == 0) return;
    const std::byte* from = fill.src;
    std::vector<std::byte> converted; // the converted values, when they are transposed next
    if (fill.from != fill.to) {
        const std::uint64_t count = fill.bytes / size_of(fill.from);
        std::byte* into = static_cast<std::byte*>(dst);
        if (fill.transpose) {
            converted.resize(static_cast<std::size_t>(count * fill.element_size));
            into = converted.data();
        }
        conversions_.push_back(
            {fill.entry, fill.to, convert_elements(fill.from, fill.src, fill.to, into, count)});
        if (!fill.transpose) return;
        from = converted.data();
    } else if (!fill.transpose) {
        copy_tensor_bytes(dst, fill.src, static_cast<std::size_t>(fill.bytes));
        return;
    }
    // Same values, other storage order: the file's bytes are row-major over its shape, the
    // state's over the reversed shape.
    auto* out = static_cast<std::byte*>(dst);
    const std::vector<std::uint64_t>& shape = fill.stored->shape;
    switch (fill.element_size) {
    case 1: reverse_axes<1>(out, from, shape); break;
    case 2: reverse_axes<2>(out, from, shape); break;
    case 4: reverse_axes<4>(out, from, shape); break;
    default: reverse_axes<8>(out, from, shape); break;
    }
}

CKPT_INLINE void tensor_iarchive::finish_views() {
    for (const auto& [fill, dst] : views_) copy_tensor(fill, dst);
    views_.clear();
}

CKPT_INLINE std::uint64_t tensor_iarchive::read_size() {
    expect_tag(tag_size);
    std::uint64_t n = 0;
    need(sizeof n);
    std::memcpy(&n, values_.data() + pos_, sizeof n);
    pos_ += sizeof n;
    // Every element takes at least one byte of values or one tensor: a count beyond what is
    // left is a lie. (Elements that store nothing at all, empty structs, are bounded the
    // same way.)
    const std::uint64_t left = values_.size() - pos_;
    const std::uint64_t tensors = tensors_left();
    if (n > left && n - left > tensors) {
        throw_error<limit_error>(errc::limit_value_size,
                                 path() + ": the checkpoint declares " + std::to_string(n) +
                                     " elements, but only " + std::to_string(left) +
                                     " bytes of values and " + std::to_string(tensors) +
                                     " tensors remain");
    }
    return n;
}

CKPT_INLINE std::uint32_t tensor_iarchive::read_class_version(std::size_t hash,
                                                              std::uint32_t compiled) {
    std::uint32_t version = 0;
    if (tensors_ != nullptr && tensors_->legacy_versions) {
        read_scalar(version);
    } else if (pos_ < values_.size() && static_cast<std::uint8_t>(values_[pos_]) == tag_version) {
        ++pos_;
        need(sizeof version);
        std::memcpy(&version, values_.data() + pos_, sizeof version);
        pos_ += sizeof version;
    }
    if (version > compiled) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_class_version, object_path(),
             "the checkpoint was written with class version " + std::to_string(version) +
                 " of this type, this program has version " + std::to_string(compiled) +
                 " (CEREAL_CLASS_VERSION): load it with the program that wrote it, or a newer "
                 "one"}});
    }
    versions_.emplace(hash, version);
    return version;
}

CKPT_INLINE void tensor_iarchive::expect_bytes(std::uint64_t count, std::size_t element_size) {
    const std::size_t at = pos_;
    expect_tag(tag_bytes);
    std::uint64_t len = 0;
    need(sizeof len);
    std::memcpy(&len, values_.data() + pos_, sizeof len);
    pos_ = at;
    if (count > len / element_size || count * element_size != len) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + std::to_string(len) + " bytes, state expects " + std::to_string(count) +
                 " elements of " + std::to_string(element_size) + " bytes"}});
    }
}

CKPT_INLINE void tensor_iarchive::read_bytes(void* data, std::size_t n) {
    expect_tag(tag_bytes);
    std::uint64_t len = 0;
    need(sizeof len);
    std::memcpy(&len, values_.data() + pos_, sizeof len);
    pos_ += sizeof len;
    if (len != n) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + std::to_string(len) + " bytes, state expects " + std::to_string(n)}});
    }
    need(n);
    if (n > 0) std::memcpy(data, values_.data() + pos_, n);
    pos_ += n;
}

CKPT_INLINE void tensor_iarchive::finish() const {
    if (pos_ != values_.size()) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_count, "value",
             std::to_string(values_.size() - pos_) +
                 " bytes of values were not read: the checkpoint holds more non-tensor "
                 "fields than the state"}});
    }
}

CKPT_INLINE std::uint64_t tensor_iarchive::tensors_left() const noexcept {
    if (kind_ == read_pass_kind::restore) return std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t in_file = tensors_->by_name.size();
    if (kind_ == read_pass_kind::tensors) return in_file + own_tensors_;
    return (in_file - claimed_count_) + (own_tensors_ - unpaid_);
}

CKPT_INLINE std::size_t tensor_iarchive::entry_named(std::string_view name) {
    const std::size_t found = tensors_->find(name, next_entry_);
    return found == tensor_source::npos ? no_entry : found;
}

/// Whether a tensor met now is the one `before` describes: everything the check of the file's
/// tensors read of it (the data pointer is not: it may move).
CKPT_INLINE bool same_tensor(const tensor_record& before, const tensor_record& now,
                             std::string_view name, const placement& place) {
    if (before.name != name || before.type != now.type || before.rank != now.rank ||
        before.order != now.order || before.fixed != now.fixed || before.resizes != now.resizes ||
        before.view != now.view || before.bytes != now.bytes || before.place != place) {
        return false;
    }
    for (std::size_t i = 0; i < now.rank; ++i) {
        if (before.dims[i] != now.dims[i] || before.max[i] != now.max[i]) return false;
    }
    return true;
}

CKPT_INLINE void tensor_iarchive::account_tensor(const tensor_record& want) {
    const std::uint64_t bytes_held = want.bytes;
    path_into(name_);
    const std::string& name = name_;
    if (expected_ != nullptr && as_expected_) {
        as_expected_ = rebuilt_depth_ == 0 && expected_at_ < expected_->size() &&
                       same_tensor((*expected_)[expected_at_], want, name, place_);
        ++expected_at_;
    }
    const std::size_t entry = entry_named(name);
    if (entry != no_entry && claimed_[entry] == 0) {
        const file_tensor& f = (*tensors_->entries)[entry];
        if (bytes_held <= f.end - f.begin) {
            claimed_[entry] = 1;
            ++claimed_count_;
            return;
        }
    }
    if (unpaid_ < own_tensors_) {
        ++unpaid_;
        return;
    }
    std::string why = "the checkpoint has no such tensor";
    if (entry != no_entry) {
        const file_tensor& f = (*tensors_->entries)[entry];
        why = claimed_[entry] != 0
                  ? "another tensor of the state has this path"
                  : "the checkpoint's tensor holds " + std::to_string(f.end - f.begin) +
                        " bytes, the state's " + std::to_string(bytes_held);
    }
    throw_error<limit_error>(
        errc::limit_value_size,
        name + ": " + why + ", and the state held only " + std::to_string(own_tensors_) +
            " tensors before loading: the checkpoint's values declare more elements than it "
            "has tensors for (if the element type gained a tensor, load into a state that "
            "already holds its elements to see every difference)");
}

CKPT_INLINE std::string tensor_iarchive::tag_name(std::uint8_t tag) {
    if (tag == tag_size) return "a container size";
    if (tag == tag_bytes) return "a byte string";
    if (tag == tag_version) return "a class version";
    if (tag >= static_cast<std::uint8_t>(dtype::boolean) &&
        tag <= static_cast<std::uint8_t>(dtype::f8_e5m2)) {
        return std::string(to_string(static_cast<dtype>(tag)));
    }
    return "unknown tag " + std::to_string(tag);
}

CKPT_INLINE void tensor_iarchive::expect_tag(std::uint8_t tag) {
    if (pos_ >= values_.size()) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_count, path(),
             "the state reads " + tag_name(tag) +
                 " here, but the checkpoint's values end: the state has more non-tensor "
                 "fields than the checkpoint"}});
    }
    auto got = static_cast<std::uint8_t>(values_[pos_]);
    if (got == tag_version && tag != tag_version) {
        // Written by a serialize that took a version, read by one that takes none: version 0
        // is the same as none; any other is a newer type than this program's.
        std::uint32_t version = 0;
        need(1 + sizeof version);
        std::memcpy(&version, values_.data() + pos_ + 1, sizeof version);
        if (version != 0) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_class_version, path(),
                 "the checkpoint holds class version " + std::to_string(version) +
                     " of the type this field is in, whose serialize in this program takes no "
                     "version"}});
        }
        pos_ += 1 + sizeof version;
        if (pos_ >= values_.size()) {
            expect_tag(tag); // the values end here
            return;
        }
        got = static_cast<std::uint8_t>(values_[pos_]);
    }
    if (got != tag) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + tag_name(got) + ", state expects " + tag_name(tag)}});
    }
    ++pos_;
}

CKPT_INLINE void tensor_iarchive::need(std::size_t n) const {
    if (n > values_.size() - pos_) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   path() + ": the values entry ends inside a value");
    }
}

} // namespace ckpt::detail
// end ckpt/archive/input-inl.hpp
#endif
// end ckpt/archive/input.hpp
// begin ckpt/concepts.hpp


#include <cereal/details/traits.hpp>

#include <type_traits>

namespace ckpt {

/// True when T round-trips through ckpt's archives: it has a cereal serialize(), or save() and
/// load(), and so do its members (checked when they are reached).
template <class T>
struct is_checkpointable
    : std::bool_constant<
          cereal::traits::is_output_serializable<T, detail::tensor_oarchive>::value &&
          cereal::traits::is_input_serializable<T, detail::tensor_iarchive>::value> {};

/// A state ckpt can save and load: any struct cereal can serialize, with Eigen tensors,
/// <random> engines and ordinary values as members.
template <class T>
concept checkpointable = is_checkpointable<T>::value;

} // namespace ckpt
// end ckpt/concepts.hpp
// begin ckpt/detail/hash.hpp


#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckpt::detail {

/// Streaming XXH3-64 over everything written or read, in order. The state is XXH3_state_t, kept
/// opaque here so that only the definitions include xxHash.
class hasher {
public:
    hasher() noexcept;
    void update(const void* data, std::size_t n) noexcept;
    [[nodiscard]] std::uint64_t digest() const noexcept;

private:
    alignas(64) unsigned char state_[640];
};

/// XXH3-64 of one buffer (the streaming and one-shot forms give the same value).
[[nodiscard]] std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept;

/// 16 lowercase hex digits.
[[nodiscard]] std::string to_hex(std::uint64_t v);

/// Parses exactly 16 lowercase hex digits.
[[nodiscard]] std::optional<std::uint64_t> from_hex(std::string_view s) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/detail/hash-inl.hpp


// XXH3, inlined. On x86-64 with GCC an AVX2 kernel is compiled as well (with a target
// attribute, so the rest of the program needs no -mavx2) and chosen at run time: 26 GB/s instead
// of SSE2's 18 on this project's CI machine, with the same hash values. (Clang's SSE2 code is
// already as fast as that here.) The kernel is xxHash's own AVX2 kernel written with GCC's vector
// extensions and builtins rather than <immintrin.h>, whose parsing alone costs about 0.4 s in
// every translation unit that includes ckpt. It plugs into the internals of xxHash 0.8.0 and
// 0.8.1 (Debian 12's and the FetchContent pin); with another version, or when the program
// included xxHash's implementation before ckpt, the plain inlined functions are used.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) &&       \
    !defined(XXH_IMPLEM_13a8737387) && !defined(XXH_INLINE_ALL_31684351384) &&                     \
    !defined(CKPT_NO_XXH_DISPATCH)
// The kernel keeps the accumulators in aligned 32-byte vectors; XXH3_update keeps them on the
// stack with XXH_ACC_ALIGN, which the SSE2 build sets to 16.
#ifndef XXH_ACC_ALIGN
#define XXH_ACC_ALIGN 32
#endif
#if XXH_ACC_ALIGN >= 32
#define CKPT_XXH_DISPATCH_CANDIDATE 1
#endif
#endif

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#define CKPT_DEFINED_XXH_INLINE_ALL
#endif
#include <xxhash.h>
#ifdef CKPT_DEFINED_XXH_INLINE_ALL
#undef XXH_INLINE_ALL
#undef CKPT_DEFINED_XXH_INLINE_ALL
#endif

#if defined(CKPT_XXH_DISPATCH_CANDIDATE) && XXH_VERSION_NUMBER >= 800 && XXH_VERSION_NUMBER < 802
#define CKPT_XXH_AVX2 1
#endif

#include <cstring>
#include <new>

namespace ckpt::detail {

#ifdef CKPT_XXH_AVX2
namespace xxh_avx2 {

using u64x4 = unsigned long long __attribute__((__vector_size__(32)));
using i32x8 = int __attribute__((__vector_size__(32)));

#define CKPT_XXH_AVX2_FN __attribute__((__target__("avx2"), __always_inline__)) inline

CKPT_XXH_AVX2_FN u64x4 load(const void* p) noexcept {
    u64x4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// _mm256_shuffle_epi32 and _mm256_mul_epu32.
#define CKPT_XXH_SHUFFLE(v, imm) ((u64x4)__builtin_ia32_pshufd256((i32x8)(v), (imm)))
#define CKPT_XXH_MUL32(a, b) ((u64x4)__builtin_ia32_pmuludq256((i32x8)(a), (i32x8)(b)))

/// XXH3_accumulate_512_avx2: one 64-byte stripe into the eight accumulators.
CKPT_XXH_AVX2_FN void accumulate_512(void* __restrict acc, const void* __restrict input,
                                     const void* __restrict secret) noexcept {
    auto* const xacc = static_cast<u64x4*>(acc);
    for (int i = 0; i < 2; ++i) {
        const u64x4 data = load(static_cast<const unsigned char*>(input) + 32 * i);
        const u64x4 data_key = data ^ load(static_cast<const unsigned char*>(secret) + 32 * i);
        const u64x4 product = CKPT_XXH_MUL32(data_key, CKPT_XXH_SHUFFLE(data_key, 0x31));
        xacc[i] = xacc[i] + CKPT_XXH_SHUFFLE(data, 0x4E) + product;
    }
}

/// XXH3_scrambleAcc_avx2.
CKPT_XXH_AVX2_FN void scramble(void* __restrict acc, const void* __restrict secret) noexcept {
    auto* const xacc = static_cast<u64x4*>(acc);
    constexpr int p = static_cast<int>(XXH_PRIME32_1);
    const i32x8 prime32 = {p, p, p, p, p, p, p, p};
    for (int i = 0; i < 2; ++i) {
        u64x4 v = xacc[i];
        v ^= v >> 47;
        v ^= load(static_cast<const unsigned char*>(secret) + 32 * i);
        xacc[i] =
            CKPT_XXH_MUL32(v, prime32) + (CKPT_XXH_MUL32(CKPT_XXH_SHUFFLE(v, 0x31), prime32) << 32);
    }
}

#undef CKPT_XXH_SHUFFLE
#undef CKPT_XXH_MUL32
#undef CKPT_XXH_AVX2_FN

} // namespace xxh_avx2

/// XXH3_64bits_update with the AVX2 kernel.
__attribute__((__target__("avx2"))) inline void
xxh3_update_avx2(XXH3_state_t* state, const void* data, std::size_t n) noexcept {
    XXH3_update(state, static_cast<const xxh_u8*>(data), n, xxh_avx2::accumulate_512,
                xxh_avx2::scramble);
}

/// Whether this CPU (and its operating system) runs AVX2; asked once.
inline bool cpu_has_avx2() noexcept {
    static const bool yes = __builtin_cpu_supports("avx2") != 0;
    return yes;
}
#endif

static_assert(sizeof(XXH3_state_t) <= 640 && alignof(XXH3_state_t) <= 64,
              "ckpt: hasher's storage does not fit this xxHash's XXH3_state_t");

CKPT_INLINE hasher::hasher() noexcept {
    XXH3_64bits_reset(::new (static_cast<void*>(state_)) XXH3_state_t{});
}

CKPT_INLINE void hasher::update(const void* data, std::size_t n) noexcept {
    auto* state = std::launder(reinterpret_cast<XXH3_state_t*>(state_));
#ifdef CKPT_XXH_AVX2
    if (cpu_has_avx2()) {
        xxh3_update_avx2(state, data, n);
        return;
    }
#endif
    XXH3_64bits_update(state, data, n);
}

CKPT_INLINE std::uint64_t hasher::digest() const noexcept {
    return XXH3_64bits_digest(std::launder(reinterpret_cast<const XXH3_state_t*>(state_)));
}

CKPT_INLINE std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept {
    hasher h;
    h.update(data, n);
    return h.digest();
}

CKPT_INLINE std::string to_hex(std::uint64_t v) {
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) {
        s[static_cast<std::size_t>(i)] = "0123456789abcdef"[v & 0xF];
    }
    return s;
}

CKPT_INLINE std::optional<std::uint64_t> from_hex(std::string_view s) noexcept {
    if (s.size() != 16) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
    }
    return v;
}

} // namespace ckpt::detail
// end ckpt/detail/hash-inl.hpp
#endif
// end ckpt/detail/hash.hpp
// begin ckpt/format/metadata_codec.hpp

// begin ckpt/metadata.hpp


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
// end ckpt/metadata.hpp

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt::detail {

// __metadata__ keys. Metrics are "metric.<name>", tags "tag.<name>"; "ckpt." is the library's.
inline constexpr std::string_view key_format_version = "ckpt.format_version";
inline constexpr std::string_view key_library_version = "ckpt.library_version";
inline constexpr std::string_view key_step = "ckpt.step";
inline constexpr std::string_view key_epoch = "ckpt.epoch";
inline constexpr std::string_view key_time = "ckpt.time";
inline constexpr std::string_view key_fingerprint = "ckpt.fingerprint";
inline constexpr std::string_view key_layout = "ckpt.layout";
/// One placement_kind character per entry, written only when a tensor is not replicated.
inline constexpr std::string_view key_placement = "ckpt.placement";
/// "offset/global_rows" of each sharded entry, in header order, comma-separated.
inline constexpr std::string_view key_shards = "ckpt.shards";
inline constexpr std::string_view metric_prefix = "metric.";
inline constexpr std::string_view tag_prefix = "tag.";

/// Shortest text that reads back as the same double ("nan", "inf" and "-inf" included).
std::string format_double(double v);

/// A double written by format_double (or any from_chars reads whole), or nothing.
std::optional<double> parse_double(std::string_view s);

/// A whole decimal int64, or nothing.
std::optional<std::int64_t> parse_int(std::string_view s);

/// "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", UTC, to the nanosecond.
std::string format_time(std::chrono::system_clock::time_point t);

/// What format_time writes, for the times system_clock holds, or nothing.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s);

/// The user's part of the metadata as __metadata__ pairs, in a fixed order.
void encode_user_metadata(const metadata& m, std::vector<std::pair<std::string, std::string>>& out);

/// The metadata of a ckpt file. @throws corrupt_error
metadata decode_metadata(const std::map<std::string, std::string>& raw, const std::string& where);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/format/metadata_codec-inl.hpp


#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::string format_double(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

CKPT_INLINE std::optional<double> parse_double(std::string_view s) {
    double v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

CKPT_INLINE std::optional<std::int64_t> parse_int(std::string_view s) {
    std::int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

CKPT_INLINE std::string format_time(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto ns = duration_cast<nanoseconds>(t.time_since_epoch());
    const auto day = floor<days>(sys_time<nanoseconds>(ns));
    const year_month_day ymd(day);
    const hh_mm_ss<nanoseconds> hms(sys_time<nanoseconds>(ns) - day);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%09lldZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                  static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                  static_cast<long long>(hms.subseconds().count()));
    return buf;
}

CKPT_INLINE std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s) {
    using namespace std::chrono;
    // Offsets of the fields in the fixed-width form.
    if (s.size() != 30 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[29] != 'Z') {
        return std::nullopt;
    }
    const auto field = [&](std::size_t at, std::size_t n) -> std::optional<std::int64_t> {
        std::int64_t v = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (s[i] < '0' || s[i] > '9') return std::nullopt;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    const auto y = field(0, 4), mo = field(5, 2), d = field(8, 2), h = field(11, 2),
               mi = field(14, 2), sec = field(17, 2), ns = field(20, 9);
    if (!y || !mo || !d || !h || !mi || !sec || !ns || *h > 23 || *mi > 59 || *sec > 59) {
        return std::nullopt;
    }
    const year_month_day ymd{year(static_cast<int>(*y)), month(static_cast<unsigned>(*mo)),
                             day(static_cast<unsigned>(*d))};
    if (!ymd.ok()) return std::nullopt;
    // The clock counts nanoseconds in 64 bits (years 1677 to 2262): refuse what it cannot hold
    // instead of overflowing.
    const std::int64_t secs =
        static_cast<std::int64_t>(sys_days(ymd).time_since_epoch().count()) * 86400 + *h * 3600 +
        *mi * 60 + *sec;
    std::int64_t total = 0;
    if (__builtin_mul_overflow(secs, std::int64_t{1'000'000'000}, &total) ||
        __builtin_add_overflow(total, *ns, &total)) {
        return std::nullopt;
    }
    return system_clock::time_point(duration_cast<system_clock::duration>(nanoseconds(total)));
}

CKPT_INLINE void encode_user_metadata(const metadata& m,
                                      std::vector<std::pair<std::string, std::string>>& out) {
    out.emplace_back(key_step, std::to_string(m.step));
    out.emplace_back(key_epoch, std::to_string(m.epoch));
    out.emplace_back(key_time, format_time(m.time));
    for (const auto& [k, v] : m.metrics)
        out.emplace_back(std::string(metric_prefix) + k, format_double(v));
    for (const auto& [k, v] : m.tags) out.emplace_back(std::string(tag_prefix) + k, v);
}

CKPT_INLINE metadata decode_metadata(const std::map<std::string, std::string>& raw,
                                     const std::string& where) {
    const auto bad = [&](std::string_view key, const std::string& value) {
        throw_error<corrupt_error>(errc::corrupt_header, "'" + where + "': __metadata__ " +
                                                             std::string(key) + " = '" + value +
                                                             "' does not parse");
    };
    metadata m;
    for (const auto& [k, v] : raw) {
        const std::string_view key(k);
        if (key == key_step || key == key_epoch) {
            const auto n = parse_int(v);
            if (!n) bad(key, v);
            (key == key_step ? m.step : m.epoch) = *n;
        } else if (key == key_time) {
            const auto t = parse_time(v);
            if (!t) bad(key, v);
            m.time = *t;
        } else if (key.starts_with(metric_prefix)) {
            const auto d = parse_double(v);
            if (!d) bad(key, v);
            m.metrics.emplace(std::string(key.substr(metric_prefix.size())), *d);
        } else if (key.starts_with(tag_prefix)) {
            m.tags.emplace(std::string(key.substr(tag_prefix.size())), v);
        }
    }
    return m;
}

} // namespace ckpt::detail
// end ckpt/format/metadata_codec-inl.hpp
#endif
// end ckpt/format/metadata_codec.hpp
// begin ckpt/io/backend.hpp


#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace ckpt::io {

/// One name in a directory, as backend::list gives it.
struct dir_entry {
    enum class kind { regular, directory, symlink, other };
    std::string name; ///< the file name, never "." or ".."
    kind type = kind::other;

    friend bool operator==(const dir_entry&, const dir_entry&) = default;
};

/// The file-system calls ckpt makes, POSIX-style: a failure returns -1 (or nullptr) and sets
/// errno. Every byte ckpt reads or writes goes through one of these, so a test can replace the
/// backend to fail any call, shorten a write, or simulate a crash.
class backend {
public:
    virtual ~backend() = default;
    virtual int open(const char* path, int flags, ::mode_t mode) = 0;
    virtual ::ssize_t write(int fd, const void* data, std::size_t n) = 0;
    virtual ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) = 0;
    virtual ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) = 0;
    virtual int fsync(int fd) = 0;
    virtual int close(int fd) = 0;
    virtual int rename(const char* from, const char* to) = 0;
    virtual int unlink(const char* path) = 0;
    /// Size of an open file in bytes.
    virtual int file_size(int fd, std::uint64_t& size) = 0;
    /// A read-only view of a whole file, or nullptr (errno set) when mapping is not possible;
    /// ckpt then reads the file with pread instead.
    virtual const void* map(int fd, std::size_t size) = 0;
    virtual void unmap(const void* data, std::size_t size) = 0;
    /// Reserves `size` bytes for a new file, so a full disk shows before anything is written;
    /// a file system that cannot (EOPNOTSUPP, EINVAL) is no error. Default: nothing.
    virtual int allocate(int /*fd*/, std::uint64_t /*size*/) { return 0; }
    /// Starts writing a range back to the disk without waiting, so the final fsync has less to
    /// do; advisory, errors are ignored (fsync reports them). Default: nothing.
    virtual void start_writeback(int /*fd*/, std::uint64_t /*offset*/, std::uint64_t /*size*/) {}
    /// Lets go of an open file whose name is gone (the checkpoint a save replaced, one that
    /// retention deleted): the file system frees a file's blocks when its last descriptor
    /// closes, which for a large file takes as long as writing a good part of it. ckpt holds
    /// such a file open across the rename or unlink, then calls this. Default: close(fd) now.
    /// posix_backend closes it on a background thread instead (see flush_releases).
    virtual void release(int fd) { close(fd); }
    /// Lets go of an open file whose cached pages will not be read again: the checkpoint a save
    /// is about to replace, or one that retention will delete once the save is committed. The
    /// file and its name stay as they are; only its pages leave the page cache, so that the new
    /// file's pages can reuse that memory, as they do when the old file was removed before the
    /// save. Without it the save takes other free memory, which in a virtual machine that hands
    /// free memory back to its host costs far more than reused memory (the writes of a 256 MiB
    /// save took 3 to 6 times as long on the CI machine). Advice: nothing fails. Default:
    /// close(fd) now. posix_backend drops the pages (posix_fadvise POSIX_FADV_DONTNEED) and
    /// closes fd on its background thread; flush_releases() waits for that too.
    virtual void evict(int fd) { close(fd); }
    /// Returns once every file given to release() so far is closed. ckpt calls it when a save
    /// finds the disk full (then retries), and in wait() and the destructors of its managers
    /// and async saver. Default: nothing.
    virtual void flush_releases() {}

    // The directory calls of ckpt::manager and scan_directory. Their defaults are the POSIX
    // calls, so a backend written before them keeps compiling and keeps working.

    /// Creates one directory (its parent must exist); EEXIST when it does. Default: ::mkdir.
    virtual int mkdir(const char* path, ::mode_t mode);
    /// Replaces `out` with the names in a directory, in no particular order, without "." and
    /// "..". Default: opendir/readdir (a type readdir does not know is read with lstat).
    virtual int list(const char* path, std::vector<dir_entry>& out);
    /// Takes an exclusive lock on an open file without waiting: -1 with EWOULDBLOCK when
    /// another open file description holds it. The kernel releases it when its holder dies.
    /// Default: flock(LOCK_EX | LOCK_NB).
    virtual int lock(int fd);
    /// Releases lock(). Default: flock(LOCK_UN).
    virtual int unlock(int fd);
    /// Sets an open file's size. Default: ::ftruncate.
    virtual int truncate(int fd, std::uint64_t size);
    /// Removes an empty directory. Default: ::rmdir.
    virtual int rmdir(const char* path);
};

/// The real thing: direct POSIX calls.
class posix_backend final : public backend {
public:
    int open(const char* path, int flags, ::mode_t mode) override {
        return ::open(path, flags, mode);
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        return ::write(fd, data, n);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        return ::pwrite(fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        return ::pread(fd, data, n, offset);
    }
    int fsync(int fd) override { return ::fsync(fd); }
    int close(int fd) override { return ::close(fd); }
    int rename(const char* from, const char* to) override { return ::rename(from, to); }
    int unlink(const char* path) override { return ::unlink(path); }
    int file_size(int fd, std::uint64_t& size) override;
    const void* map(int fd, std::size_t size) override;
    void unmap(const void* data, std::size_t size) override {
        ::munmap(const_cast<void*>(data), size);
    }
    int allocate(int fd, std::uint64_t size) override;
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override;
    /// Closes `fd` on a background thread, one per process, started on first use: the
    /// caller does not wait for a large file's blocks to be freed. A child of fork() starts
    /// with nothing queued (the parent closes what it queued); process exit closes the rest.
    void release(int fd) override;
    void evict(int fd) override;
    void flush_releases() override;

private:
    /// Whether every page of the file's first `size` bytes is in the page cache: 1 or 0, or -1
    /// when the kernel cannot tell (cachestat missing or refused).
    static int all_cached(int fd, std::size_t size);
    static bool all_resident(void* p, std::size_t size);
};

/// The backend ckpt uses when none is given.
backend& default_backend();

} // namespace ckpt::io

#ifdef CKPT_DEFINITIONS
// begin ckpt/io/backend-inl.hpp


#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

namespace ckpt::io {

CKPT_INLINE int backend::mkdir(const char* path, ::mode_t mode) {
    return ::mkdir(path, mode);
}

CKPT_INLINE int backend::list(const char* path, std::vector<dir_entry>& out) {
    out.clear();
    DIR* d = ::opendir(path);
    if (d == nullptr) return -1;
    const int dfd = ::dirfd(d);
    for (;;) {
        errno = 0;
        const ::dirent* de = ::readdir(d);
        if (de == nullptr) break;
        const std::string_view name(de->d_name);
        if (name == "." || name == "..") continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct ::stat st {};
            if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; // gone
            type = S_ISREG(st.st_mode)   ? DT_REG
                   : S_ISDIR(st.st_mode) ? DT_DIR
                   : S_ISLNK(st.st_mode) ? DT_LNK
                                         : DT_UNKNOWN;
        }
        const dir_entry::kind kind = type == DT_REG   ? dir_entry::kind::regular
                                     : type == DT_DIR ? dir_entry::kind::directory
                                     : type == DT_LNK ? dir_entry::kind::symlink
                                                      : dir_entry::kind::other;
        out.push_back({std::string(name), kind});
    }
    const int e = errno;
    ::closedir(d);
    if (e != 0) {
        out.clear();
        errno = e;
        return -1;
    }
    return 0;
}

CKPT_INLINE int backend::lock(int fd) {
    return ::flock(fd, LOCK_EX | LOCK_NB);
}

CKPT_INLINE int backend::unlock(int fd) {
    return ::flock(fd, LOCK_UN);
}

CKPT_INLINE int backend::truncate(int fd, std::uint64_t size) {
    return ::ftruncate(fd, static_cast<::off_t>(size));
}

CKPT_INLINE int backend::rmdir(const char* path) {
    return ::rmdir(path);
}

namespace detail {

/// The background thread of posix_backend::release: closes descriptors of files whose names
/// are gone, so that freeing their blocks costs the caller nothing. One per process.
class background_closer {
public:
    /// The most descriptors it holds; beyond that a release closes in the caller's thread.
    static constexpr std::size_t max_queued = 256;

    static background_closer& instance() {
        // Never destroyed: a thread of a static object would be joined after other statics
        // are gone. Process exit closes what is still queued.
        static background_closer* closer = new background_closer();
        return *closer;
    }

    /// Closes fd; `evict`: drops its cached pages first.
    void release(int fd, bool evict = false) {
        std::unique_lock lock(mutex_);
        if (queue_.size() >= max_queued || !start_locked()) {
            lock.unlock();
            finish(job{fd, evict});
            return;
        }
        queue_.push_back(job{fd, evict});
        ++pending_;
        work_.notify_one();
    }

    void flush() {
        std::unique_lock lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
    }

private:
    background_closer() {
        ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                         [] { instance().after_fork_in_child(); });
    }

    /// Starts the thread if it is not running; false when it cannot be started.
    bool start_locked() {
        if (worker_) return true;
        try {
            worker_ = std::make_unique<std::thread>([this] { run(); });
            worker_->detach();
        } catch (const std::system_error&) {
            worker_.reset();
            return false;
        }
        return true;
    }

    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            work_.wait(lock, [this] { return !queue_.empty(); });
            const job j = queue_.front();
            queue_.pop_front();
            lock.unlock();
            finish(j);
            lock.lock();
            if (--pending_ == 0) done_.notify_all();
        }
    }

    struct job {
        int fd;
        bool evict;
    };

    static void finish(const job& j) {
#if defined(POSIX_FADV_DONTNEED)
        if (j.evict) (void)::posix_fadvise(j.fd, 0, 0, POSIX_FADV_DONTNEED);
#endif
        ::close(j.fd); // a file whose name is gone: its blocks are freed here
    }

    /// The child of fork() has no thread: its copies of the queued descriptors are closed (the
    /// parent's stay open until its own thread closes them), and a release starts a new one.
    /// The fork handlers hold the mutex across fork(), so the queue is whole here; the
    /// condition variables may remember the parent's waiting thread, so they start afresh.
    void after_fork_in_child() {
        new (&work_) std::condition_variable();
        new (&done_) std::condition_variable();
        for (const job& j : queue_) ::close(j.fd);
        queue_.clear();
        pending_ = 0;
        worker_.reset(); // detached: the parent's thread, which does not exist here
        mutex_.unlock();
    }

    std::mutex mutex_;
    std::condition_variable work_;
    std::condition_variable done_;
    std::deque<job> queue_;
    std::size_t pending_ = 0; ///< queued, or being closed
    std::unique_ptr<std::thread> worker_;
};

} // namespace detail

CKPT_INLINE void posix_backend::release(int fd) {
    detail::background_closer::instance().release(fd);
}

CKPT_INLINE void posix_backend::evict(int fd) {
    detail::background_closer::instance().release(fd, true);
}

CKPT_INLINE void posix_backend::flush_releases() {
    detail::background_closer::instance().flush();
}

CKPT_INLINE backend& default_backend() {
    static posix_backend instance;
    return instance;
}

CKPT_INLINE int posix_backend::file_size(int fd, std::uint64_t& size) {
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    size = static_cast<std::uint64_t>(st.st_size);
    return 0;
}

CKPT_INLINE const void* posix_backend::map(int fd, std::size_t size) {
    // No MAP_POPULATE: when the file is in the page cache, the first touch of each page maps it
    // and its neighbours (the kernel's fault-around), a quarter cheaper than populating the
    // whole range up front (21 ms against 16 ms for 256 MiB hashed through the mapping, on the
    // CI machine).
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    // A page that is not resident would be read on first touch, and a read error there is
    // a SIGBUS, not an errno: use the mapping only when every page is already in memory.
    if (all_cached(fd, size) == 1) return p;
    // mincore() tells that only for a file the process owns or may write (for any other, it
    // says every page is resident); for the others, and for pages that are not resident yet,
    // MADV_POPULATE_READ (Linux 5.14) reads and maps them all, and reports a read error as an
    // error. Where it is not known, the caller reads the file instead.
    struct ::stat st {};
    const bool mincore_tells =
        ::fstat(fd, &st) == 0 && (st.st_uid == ::geteuid() || ::geteuid() == 0);
    if (mincore_tells && all_resident(p, size)) return p;
    constexpr int populate_read = 22; // MADV_POPULATE_READ, missing from older headers
    if (::madvise(p, size, populate_read) == 0 && (!mincore_tells || all_resident(p, size))) {
        return p;
    }
    ::munmap(p, size);
    errno = EAGAIN;
    return nullptr;
}

CKPT_INLINE int posix_backend::allocate(int fd, std::uint64_t size) {
    const int e = ::posix_fallocate(fd, 0, static_cast<::off_t>(size));
    if (e == 0 || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) return 0;
    errno = e;
    return -1;
}

CKPT_INLINE void posix_backend::start_writeback(int fd, std::uint64_t offset, std::uint64_t size) {
#if defined(__linux__)
    ::sync_file_range(fd, static_cast<::off_t>(offset), static_cast<::off_t>(size),
                      SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
    (void)offset;
    (void)size;
#endif
}

CKPT_INLINE int posix_backend::all_cached(int fd, std::size_t size) {
#if defined(__linux__)
    // cachestat() (Linux 6.5) counts a range's cached pages in one walk over the page cache's
    // folios: 0.2 ms for 256 MiB on the CI machine, where mincore() on the mapping takes 3.8 ms,
    // one lookup per page. Kernels that restrict it (to files the process owns or may write,
    // like mincore) refuse with EPERM instead of answering, and older ones have no such call.
#if defined(SYS_cachestat)
    constexpr long cachestat_call = SYS_cachestat;
#else
    constexpr long cachestat_call = 451; // the same number on every architecture Linux has
#endif
    struct {
        std::uint64_t offset, length;
    } range{0, size};
    struct {
        std::uint64_t cache, dirty, writeback, evicted, recently_evicted;
    } counts{};
    if (::syscall(cachestat_call, fd, &range, &counts, 0U) != 0) return -1;
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return counts.cache >= (size + page - 1) / page ? 1 : 0;
#else
    (void)fd;
    (void)size;
    return -1;
#endif
}

CKPT_INLINE bool posix_backend::all_resident(void* p, std::size_t size) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t pages = (size + page - 1) / page;
    constexpr std::size_t batch = 4096;
    unsigned char flags[batch];
    for (std::size_t first = 0; first < pages; first += batch) {
        const std::size_t n = pages - first < batch ? pages - first : batch;
        auto* start = static_cast<char*>(p) + first * page;
        const std::size_t len = first + n == pages ? size - first * page : n * page;
        if (::mincore(start, len, flags) != 0) return false;
        for (std::size_t i = 0; i < n; ++i) {
            if ((flags[i] & 1U) == 0) return false;
        }
    }
    return true;
}

} // namespace ckpt::io
// end ckpt/io/backend-inl.hpp
#endif
// end ckpt/io/backend.hpp
// begin ckpt/io/file.hpp



#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Writes all of `n` bytes at the file position, retrying short writes and EINTR.
/// @returns 0, or the errno of the failure
int write_all(io::backend& io, int fd, const std::byte* p, std::size_t n);

/// Reads exactly `n` bytes at `offset`, retrying short reads and EINTR.
/// @returns 0, or the errno of the failure (EIO for an early end of file)
int read_all(io::backend& io, int fd, std::byte* p, std::size_t n, std::uint64_t offset);

/// An open descriptor, closed on destruction (the close result only matters on the write path,
/// where it is checked explicitly).
class fd_guard {
public:
    fd_guard(io::backend& io, int fd) noexcept : io_(&io), fd_(fd) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() { reset(); }
    [[nodiscard]] int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) io_->close(std::exchange(fd_, -1));
    }

private:
    io::backend* io_;
    int fd_;
};

/// Opens a file for reading. @throws io_error
int open_for_reading(io::backend& io, const std::string& path);

/// The whole content of a file: mapped when every page is in memory, read otherwise.
class file_bytes {
public:
    file_bytes(io::backend& io, const std::string& path);
    file_bytes(const file_bytes&) = delete;
    file_bytes& operator=(const file_bytes&) = delete;
    ~file_bytes();
    [[nodiscard]] const std::byte* data() const noexcept {
        return mapped_ != nullptr ? mapped_ : buffer_.get();
    }
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

private:
    io::backend* io_;
    std::uint64_t size_ = 0;
    const std::byte* mapped_ = nullptr;
    std::unique_ptr<std::byte[]> buffer_;
};

/// A read-only descriptor of the file at `path`, held so that its blocks are freed by
/// backend::release rather than by the rename or unlink that removes its name; -1 when there
/// is none (errno is left as it was).
int open_to_release(io::backend& io, const char* path);

/// unlink(path), with the file's blocks freed by backend::release. @returns 0, or -1 with
/// errno set by unlink
int unlink_and_release(io::backend& io, const char* path);

/// Writes a new file beside `target` and, on commit(), puts it in place atomically and durably:
/// write all, fsync, close (both checked), rename, fsync the directory. Until commit() succeeds
/// the target is untouched, and a failed or abandoned attempt removes its temporary file.
class atomic_file {
public:
    static constexpr std::size_t buffer_bytes = std::size_t{2} << 20;
    static constexpr std::size_t slice_bytes = std::size_t{4} << 20;
    static constexpr std::uint64_t writeback_bytes = std::uint64_t{32} << 20;

    atomic_file(io::backend& io, const std::filesystem::path& target);

    /// "<target>.tmp-<pid>-<n>", with the target's name shortened so that the temporary name
    /// still fits in NAME_MAX.
    static std::string temp_name(const std::filesystem::path& target, std::uint64_t n);
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() { abandon(); }

    void write(const void* data, std::size_t n);

    /// Reserves the file's final size: a full disk fails here, before a byte is written. First
    /// hands the file it will replace, if any, to backend::evict.
    void allocate(std::uint64_t bytes);

    /// Overwrites bytes already written.
    void patch(std::uint64_t offset, const void* data, std::size_t n);

    [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_ + buffer_.size(); }

    /// Makes the file the target. A failed fsync ends the attempt: the file is never renamed.
    /// @throws io_error
    void commit();

private:
    /// Why `dir` cannot hold a new file, "the directory 'run' does not exist" or "'a' is not a
    /// directory" (asked through `io`), or "" when it is a directory.
    static std::string missing_directory(io::backend& io, const std::string& dir);
    std::string unchanged() const;
    [[noreturn]] void fail(int id, const char* operation, int err);
    void abandon() noexcept;
    void put(const std::byte* p, std::size_t n);
    void flush();
    void sync_directory();

    io::backend* io_;
    std::string target_;
    std::string dir_;
    std::string temp_;
    int fd_ = -1;
    std::vector<std::byte> buffer_;
    std::uint64_t written_ = 0;
    std::uint64_t written_back_ = 0;
};

/// Collects a checkpoint in memory (the same bytes as a file).
class memory_sink {
public:
    explicit memory_sink(std::size_t expected_bytes) { bytes_.reserve(expected_bytes); }
    void write(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::byte*>(data);
        bytes_.insert(bytes_.end(), p, p + n);
    }
    void patch(std::uint64_t offset, const void* data, std::size_t n) {
        std::memcpy(bytes_.data() + offset, data, n);
    }
    std::vector<std::byte> take() noexcept { return std::move(bytes_); }

private:
    std::vector<std::byte> bytes_;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/io/file-inl.hpp


#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE int write_all(io::backend& io, int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        const ::ssize_t w = io.write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO; // no progress and no error: do not spin
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return 0;
}

CKPT_INLINE int read_all(io::backend& io, int fd, std::byte* p, std::size_t n,
                         std::uint64_t offset) {
    while (n > 0) {
        const ::ssize_t r = io.pread(fd, p, n, static_cast<::off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return EIO;
        p += r;
        n -= static_cast<std::size_t>(r);
        offset += static_cast<std::uint64_t>(r);
    }
    return 0;
}

CKPT_INLINE int open_for_reading(io::backend& io, const std::string& path) {
    for (;;) {
        const int fd = io.open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) return fd;
        if (errno != EINTR) throw_io(errc::io_open, "open", path, errno);
    }
}

CKPT_INLINE file_bytes::file_bytes(io::backend& io, const std::string& path) : io_(&io) {
    fd_guard fd(io, open_for_reading(io, path));
    if (io.file_size(fd.get(), size_) != 0) throw_io(errc::io_stat, "stat", path, errno);
    if (size_ == 0) return;
    if (size_ > static_cast<std::uint64_t>(PTRDIFF_MAX)) {
        throw_io(errc::io_read, "read", path, EFBIG);
    }
    if (const void* m = io.map(fd.get(), static_cast<std::size_t>(size_)); m != nullptr) {
        mapped_ = static_cast<const std::byte*>(m);
        return;
    }
    buffer_ = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(size_));
    if (const int e = read_all(io, fd.get(), buffer_.get(), static_cast<std::size_t>(size_), 0)) {
        throw_io(errc::io_read, "read", path, e);
    }
}

CKPT_INLINE file_bytes::~file_bytes() {
    if (mapped_ != nullptr) io_->unmap(mapped_, static_cast<std::size_t>(size_));
}

CKPT_INLINE atomic_file::atomic_file(io::backend& io, const std::filesystem::path& target)
    : io_(&io), target_(target.string()) {
    const std::filesystem::path dir = target.parent_path();
    dir_ = dir.empty() ? std::string(".") : dir.string();
    buffer_.reserve(buffer_bytes);
    static std::atomic<std::uint64_t> counter{0};
    for (int attempt = 0;; ++attempt) {
        temp_ = temp_name(target, counter.fetch_add(1));
        fd_ = io.open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ >= 0) break;
        const int e = errno;
        if (e == EINTR || (e == EEXIST && attempt < 64)) continue;
        temp_.clear();
        if (e == ENOENT || e == ENOTDIR) {
            // The usual cause is a folder that was never made: say so, with the OS's reason.
            if (const std::string why = missing_directory(io, dir_); !why.empty()) {
                const std::string temp = target_ + ".tmp-*";
                throw_error<io_error>(errc::io_open,
                                      "cannot save '" + target_ + "': " + why + " (create '" +
                                          temp + "' failed: " + std::strerror(e) + ", errno " +
                                          std::to_string(e) + ")",
                                      "create", temp, std::error_code(e, std::generic_category()));
            }
        }
        throw_io(errc::io_open, "create", target_ + ".tmp-*", e, unchanged());
    }
}

CKPT_INLINE std::string atomic_file::missing_directory(io::backend& io, const std::string& dir) {
    const auto probe = [&io](const std::string& path) {
        int fd = -1;
        do {
            fd = io.open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) return errno;
        io.close(fd);
        return 0;
    };
    const int e = probe(dir);
    if (e == ENOENT) return "the directory '" + dir + "' does not exist";
    if (e != ENOTDIR) return {};
    // Name the first part of the path that is not a directory.
    std::filesystem::path p(dir);
    while (p.has_relative_path() && p.parent_path() != p && !p.parent_path().empty() &&
           probe(p.parent_path().string()) == ENOTDIR) {
        p = p.parent_path();
    }
    return "'" + p.string() + "' is not a directory";
}

CKPT_INLINE std::string atomic_file::temp_name(const std::filesystem::path& target,
                                               std::uint64_t n) {
    const std::string suffix = ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(n);
    constexpr std::size_t name_max = 255;
    std::string name = target.filename().string();
    if (name.size() + suffix.size() > name_max) name.resize(name_max - suffix.size());
    return (target.parent_path() / (name + suffix)).string();
}

CKPT_INLINE void atomic_file::write(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    // Buffered bytes are written in blocks that end on multiples of buffer_bytes in the file
    // (after the first): like the slices below, aligned writes leave large page-cache folios.
    // Written at arbitrary offsets, a file of 64 KiB tensors was cached in small folios and
    // took 1.2x the time to load just after its save as after being read back.
    const auto end = written_ + buffer_.size();
    const std::size_t to_boundary = buffer_bytes - static_cast<std::size_t>(end % buffer_bytes);
    if (n < to_boundary) {
        buffer_.insert(buffer_.end(), p, p + n);
        return;
    }
    if (n <= buffer_bytes) {
        buffer_.insert(buffer_.end(), p, p + to_boundary);
        flush(); // ends on a multiple of buffer_bytes
        buffer_.insert(buffer_.end(), p + to_boundary, p + n);
        return;
    }
    flush();
    // Large blocks go straight from the caller's memory, in slices that end on multiples of
    // the slice size in the file: large aligned writes leave large page-cache folios, which
    // makes mapping the file cheap when it is loaded.
    while (n > 0) {
        const std::size_t room = slice_bytes - static_cast<std::size_t>(written_ % slice_bytes);
        const std::size_t k = n < room ? n : room;
        put(p, k);
        written_ += k;
        p += k;
        n -= k;
        // Let the disk start on what is written while the rest is copied in.
        if (written_ - written_back_ >= writeback_bytes) {
            io_->start_writeback(fd_, written_back_, written_ - written_back_);
            written_back_ = written_;
        }
    }
}

CKPT_INLINE void atomic_file::allocate(std::uint64_t bytes) {
    // The file this save replaces will not be read again: its cached pages can make room for
    // this one's (backend::evict). It stays whole on disk until the rename.
    if (const int old = open_to_release(*io_, target_.c_str()); old >= 0) io_->evict(old);
    if (io_->allocate(fd_, bytes) == 0) return;
    int e = errno;
    if (e == ENOSPC) {
        // Files replaced or deleted before may still hold their blocks (backend::release):
        // wait until they are freed, then ask once more.
        io_->flush_releases();
        if (io_->allocate(fd_, bytes) == 0) return;
        e = errno;
    }
    fail(errc::io_write, "allocate", e);
}

CKPT_INLINE void atomic_file::patch(std::uint64_t offset, const void* data, std::size_t n) {
    flush();
    const auto* p = static_cast<const std::byte*>(data);
    while (n > 0) {
        const ::ssize_t w = io_->pwrite(fd_, p, n, static_cast<::off_t>(offset));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail(errc::io_write, "write", w < 0 ? errno : EIO);
        p += w;
        n -= static_cast<std::size_t>(w);
        offset += static_cast<std::uint64_t>(w);
    }
}

CKPT_INLINE void atomic_file::commit() {
    flush();
    if (io_->fsync(fd_) != 0) fail(errc::io_fsync, "fsync", errno);
    const int fd = std::exchange(fd_, -1);
    if (io_->close(fd) != 0) fail(errc::io_close, "close", errno);
    // The file this one replaces stays open across the rename: its blocks are then freed when
    // that descriptor is released (on a background thread, with the POSIX backend), not inside
    // rename(), which frees a large file's blocks when it removes its last name.
    const int replaced = open_to_release(*io_, target_.c_str());
    if (io_->rename(temp_.c_str(), target_.c_str()) != 0) {
        const int e = errno;
        if (replaced >= 0) io_->close(replaced);
        fail(errc::io_rename, "rename", e);
    }
    temp_.clear();
    // Released once the new name is durable, whatever sync_directory() says.
    try {
        sync_directory();
    } catch (...) {
        if (replaced >= 0) io_->release(replaced);
        throw;
    }
    if (replaced >= 0) io_->release(replaced);
}

CKPT_INLINE std::string atomic_file::unchanged() const {
    return "the file at '" + target_ + "' was not changed";
}

CKPT_INLINE void atomic_file::fail(int id, const char* operation, int err) {
    const std::string where = temp_;
    abandon();
    throw_io(id, operation, where, err, unchanged());
}

CKPT_INLINE void atomic_file::abandon() noexcept {
    if (fd_ >= 0) io_->close(std::exchange(fd_, -1));
    if (!temp_.empty()) io_->unlink(std::exchange(temp_, std::string()).c_str());
}

CKPT_INLINE void atomic_file::put(const std::byte* p, std::size_t n) {
    if (const int e = write_all(*io_, fd_, p, n)) fail(errc::io_write, "write", e);
}

CKPT_INLINE void atomic_file::flush() {
    if (buffer_.empty()) return;
    put(buffer_.data(), buffer_.size());
    written_ += buffer_.size();
    buffer_.clear();
    // A file of small tensors is all buffered writes: start write-back for them too.
    if (written_ - written_back_ >= writeback_bytes) {
        io_->start_writeback(fd_, written_back_, written_ - written_back_);
        written_back_ = written_;
    }
}

CKPT_INLINE void atomic_file::sync_directory() {
    int fd = -1;
    do {
        fd = io_->open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    } while (fd < 0 && errno == EINTR);
    const int open_errno = errno; // before anything that allocates can change it
    const std::string done = "the file is in place at '" + target_ +
                             "', but its directory entry may not survive a power loss";
    if (fd < 0) throw_io(errc::io_sync_directory, "open directory", dir_, open_errno, done);
    fd_guard guard(*io_, fd);
    // Some file systems cannot sync a directory (EINVAL): there is nothing more to do there.
    if (io_->fsync(fd) != 0 && errno != EINVAL) {
        const int sync_errno = errno;
        throw_io(errc::io_sync_directory, "fsync directory", dir_, sync_errno, done);
    }
}

CKPT_INLINE int open_to_release(io::backend& io, const char* path) {
    // O_NONBLOCK: a FIFO at that name must not block; O_NOFOLLOW: a symbolic link is replaced
    // itself, so there is nothing of its target to hold.
    const int saved = errno;
    const int fd = io.open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    errno = saved;
    return fd;
}

CKPT_INLINE int unlink_and_release(io::backend& io, const char* path) {
    const int fd = open_to_release(io, path);
    if (io.unlink(path) != 0) {
        const int e = errno;
        if (fd >= 0) io.close(fd);
        errno = e;
        return -1;
    }
    if (fd >= 0) io.release(fd);
    return 0;
}

} // namespace ckpt::detail
// end ckpt/io/file-inl.hpp
#endif
// end ckpt/io/file.hpp
// begin ckpt/placement.hpp

// Where each tensor of a distributed state lives, declared where the state is serialized, in the
// spirit of CEREAL_NVP. The declarations are plain data the archives carry into the file
// (`ckpt.placement`, `ckpt.shards`); nothing here knows how the ranks talk to each other.


#include <cereal/cereal.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace ckpt {

/// The rows of a global tensor that this rank's tensor holds: `[offset, offset + its rows)` of
/// `global_rows`. The other axes are the tensor's own.
struct rows {
    std::uint64_t offset = 0;
    std::uint64_t global_rows = 0;
};

namespace detail {
/// See ckpt::sharded and ckpt::rank_local.
template <class T>
struct placed {
    std::string name;
    T& value;
    placement place;
    const char* what;
};
} // namespace detail

/// A tensor of which this rank holds some rows (its first axis): ZeRO-style optimizer moments,
/// a sharded embedding. `ar(ckpt::sharded("m", m_local, {.offset = begin, .global_rows = n}))`.
/// The tensor must be row-major (or have one axis) so that its rows are contiguous. A save
/// writes the rows this rank holds and records their place; a load requires the same place.
/// Other cereal archives see the field as if it were `cereal::make_nvp(name, value)`.
template <class T>
detail::placed<T> sharded(std::string name, T& value, rows where) {
    return {std::move(name), value,
            placement{placement_kind::sharded, where.offset, where.global_rows}, "ckpt::sharded"};
}

/// A field that is each rank's own (its data sampler's cursor, its random engine): every tensor
/// in it is rank-local.
template <class T>
detail::placed<T> rank_local(std::string name, T& value) {
    return {std::move(name), value, placement{placement_kind::rank_local, 0, 0},
            "ckpt::rank_local"};
}

namespace detail {

// The declaration is not a node of its own: the field it wraps is, under the declared name.
template <class T>
void prologue(tensor_oarchive&, const placed<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const placed<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const placed<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const placed<T>&) {}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const placed<T>& p) {
    ar.begin_placement(p.what, p.name.c_str(), p.place);
    ar.name_next(p.name.c_str());
    ar(static_cast<const T&>(p.value));
    ar.end_placement();
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, placed<T>& p) {
    ar.begin_placement(p.place);
    ar.name_next(p.name.c_str());
    ar(p.value);
    ar.end_placement();
}

template <class Archive, class T>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const placed<T>& p) {
    ar(cereal::make_nvp(p.name, static_cast<const T&>(p.value)));
}

template <class Archive, class T>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, placed<T>& p) {
    ar(cereal::make_nvp(p.name, p.value));
}

} // namespace detail

} // namespace ckpt
// end ckpt/placement.hpp
// begin ckpt/tensor.hpp


#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

namespace ckpt {

/// How the elements of a tensor view are laid out: the last axis varies fastest (C order, as
/// safetensors, NumPy and PyTorch store them) or the first (Fortran order, as Eigen's default).
enum class storage_order : char { row_major = 'R', column_major = 'C' };

/// The sizes of a tensor view's axes, first axis first: `{vocab, dim}`, any integer types;
/// `{}` is a single element (rank 0). At most 8 axes.
class tensor_shape {
public:
    tensor_shape() = default;
    template <std::integral... I>
    requires(sizeof...(I) > 0)
        tensor_shape(I... sizes) { // NOLINT: implicit, so that `{vocab, dim}` reads as a shape
        static_assert(sizeof...(I) <= detail::max_rank, "ckpt: a tensor has at most 8 axes");
        (add(sizes), ...);
    }
    /// From sizes known at run time. @throws usage_error (601) for more than 8 axes
    explicit tensor_shape(std::span<const std::int64_t> sizes);

    [[nodiscard]] std::size_t rank() const noexcept { return rank_; }
    [[nodiscard]] std::int64_t operator[](std::size_t axis) const noexcept { return dims_[axis]; }
    [[nodiscard]] const detail::tensor_dims& dims() const noexcept { return dims_; }
    /// The number of elements. @throws usage_error (601) when it overflows
    [[nodiscard]] std::uint64_t elements() const;

private:
    template <class I>
    void add(I n) {
        if constexpr (std::is_signed_v<I>) {
            if (n < 0) negative(static_cast<std::int64_t>(n));
        }
        if constexpr (sizeof(I) >= sizeof(std::int64_t) && std::is_unsigned_v<I>) {
            if (n > static_cast<I>(INT64_MAX)) too_large();
        }
        dims_[rank_++] = static_cast<std::int64_t>(n);
    }
    [[noreturn]] static void negative(std::int64_t n);
    [[noreturn]] static void too_large();

    detail::tensor_dims dims_{};
    std::size_t rank_ = 0;
};

namespace detail {
void check_view(const std::string& name, bool null, const tensor_shape& shape);
void check_span_size(const std::string& name, std::size_t size, const tensor_shape& shape);
} // namespace detail

/// A shaped view of memory the user owns, named like a field: see ckpt::tensor().
template <class T>
class tensor_view {
    using element = std::remove_const_t<T>;
    static_assert(is_supported_scalar_v<element>,
                  "ckpt::tensor: unsupported element type (use bool, an integer of 8 to 64 bits, "
                  "float, double, Eigen::half or Eigen::bfloat16)");

public:
    /// @throws usage_error (601) for a null pointer to a non-empty shape
    tensor_view(std::string name, T* data, tensor_shape shape, storage_order order)
        : name_(std::move(name)), data_(data), shape_(shape), order_(order) {
        detail::check_view(name_, data_ == nullptr, shape_);
    }

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] T* data() const noexcept { return data_; }
    [[nodiscard]] const tensor_shape& shape() const noexcept { return shape_; }
    [[nodiscard]] storage_order order() const noexcept { return order_; }

    /// The record the archives walk: every size fixed, filled only once a load has succeeded.
    [[nodiscard]] detail::tensor_record record() const {
        detail::tensor_record r =
            detail::make_record(dtype_of<element>, data_, shape_.rank(), shape_.dims().data(),
                                static_cast<char>(order_),
                                static_cast<std::uint8_t>((1U << shape_.rank()) - 1U), false);
        r.view = true;
        return r;
    }

private:
    std::string name_;
    T* data_;
    tensor_shape shape_;
    storage_order order_;
};

/// A named tensor over memory the user owns, to write inside `serialize` like a field:
/// `ar(ckpt::tensor("embedding", arena + offset, {vocab, dim}))`. Saving streams the memory as
/// it is; loading fills it in place, with no allocation, and requires the file's shape to be
/// exactly `shape` (with the dtype of T). The memory is written only once everything else of
/// the load has been verified and read, so a load that fails leaves it untouched. The name is
/// the last part of the tensor's path, as a CEREAL_NVP's is. A view of const memory saves only.
/// @throws usage_error (601) for a null pointer to a non-empty shape
template <class T>
tensor_view<T> tensor(std::string name, T* data, tensor_shape shape,
                      storage_order order = storage_order::row_major) {
    return tensor_view<T>(std::move(name), data, shape, order);
}

/// The same over a span, whose size must be the shape's number of elements.
/// @throws usage_error (601) when it is not
template <class T, std::size_t E>
tensor_view<T> tensor(std::string name, std::span<T, E> data, tensor_shape shape,
                      storage_order order = storage_order::row_major) {
    detail::check_span_size(name, data.size(), shape);
    return tensor_view<T>(std::move(name), data.data(), shape, order);
}

namespace detail {

// A view names its own node of the field path, as a CEREAL_NVP does.
template <class T>
void prologue(tensor_oarchive&, const tensor_view<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const tensor_view<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const tensor_view<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const tensor_view<T>&) {}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const tensor_view<T>& v) {
    ar.name_next(v.name().c_str());
    ar.push();
    ar.add_tensor(v.record());
    ar.pop();
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, tensor_view<T>& v) {
    static_assert(!std::is_const_v<T>, "ckpt::tensor: a view of const memory cannot be loaded");
    ar.name_next(v.name().c_str());
    ar.push();
    ar.read_tensor_as(v.record(), [&v](const tensor_dims&) -> void* { return v.data(); });
    ar.pop();
}

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/tensor-inl.hpp


#include <cstdint>
#include <string>

namespace ckpt {

CKPT_INLINE tensor_shape::tensor_shape(std::span<const std::int64_t> sizes) {
    if (sizes.size() > detail::max_rank) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "ckpt::tensor_shape: " + std::to_string(sizes.size()) +
                                             " axes; a tensor has at most 8");
    }
    for (const std::int64_t n : sizes) add(n);
}

CKPT_INLINE std::uint64_t tensor_shape::elements() const {
    std::uint64_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) {
        if (!detail::checked_mul(n, static_cast<std::uint64_t>(dims_[i]), n) ||
            n > static_cast<std::uint64_t>(INT64_MAX)) {
            detail::throw_error<usage_error>(
                errc::usage_argument, "ckpt::tensor_shape: the number of elements overflows");
        }
    }
    return n;
}

CKPT_INLINE void tensor_shape::negative(std::int64_t n) {
    detail::throw_error<usage_error>(errc::usage_argument, "ckpt::tensor_shape: a size of " +
                                                               std::to_string(n) + " elements");
}

CKPT_INLINE void tensor_shape::too_large() {
    detail::throw_error<usage_error>(errc::usage_argument,
                                     "ckpt::tensor_shape: a size larger than 2^63 - 1 elements");
}

namespace detail {

CKPT_INLINE void check_view(const std::string& name, bool null, const tensor_shape& shape) {
    if (null && shape.elements() != 0) {
        throw_error<usage_error>(errc::usage_argument,
                                 "ckpt::tensor '" + name + "': a null pointer for " +
                                     std::to_string(shape.elements()) + " elements");
    }
}

CKPT_INLINE void check_span_size(const std::string& name, std::size_t size,
                                 const tensor_shape& shape) {
    if (size != shape.elements()) {
        throw_error<usage_error>(errc::usage_argument,
                                 "ckpt::tensor '" + name + "': the span holds " +
                                     std::to_string(size) + " elements, the shape " +
                                     std::to_string(shape.elements()));
    }
}

} // namespace detail
} // namespace ckpt
// end ckpt/tensor-inl.hpp
#endif
// end ckpt/tensor.hpp
// begin ckpt/types/containers.hpp


#include <cereal/cereal.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace ckpt {
namespace detail {
/// See ckpt::as_value.
template <class C>
struct as_value_t {
    C& container;
};
} // namespace detail

/// Keeps a std::vector or std::array of numbers in the checkpoint's values, as format 2 stored
/// every one, instead of making it a tensor: for small fields that describe the state rather
/// than hold its data (say, a network's layer sizes), so that files of weights written
/// elsewhere need not have them. `ar(cereal::make_nvp("sizes", ckpt::as_value(sizes_)))`.
/// Other cereal archives see the container itself, one level down.
template <class C>
detail::as_value_t<C> as_value(C& container) noexcept {
    return {container};
}

} // namespace ckpt

namespace ckpt::detail {

// Standard contiguous containers of numbers are named tensors of rank 1 (a C array of more
// extents has one axis per extent, row-major), whatever their length: std::vector<T> (which
// takes the file's length when loading), std::array<T, N> and T[N], for every element type
// with a dtype. std::vector<bool> is not contiguous and stays a value. Format 2 and older
// stored them as values; the walks of a load from such a file read them that way
// (containers_as_values). These overloads are more specialized than cereal's, which write
// them as byte strings.

/// An element type of a container that is a tensor.
template <class T>
concept tensor_element = is_supported_scalar_v<T>;
/// The same for std::vector, whose bool specialization is not contiguous.
template <class T>
concept vector_element = tensor_element<T> && !std::is_same_v<T, bool>;
/// A number cereal writes as bytes in a container (what format 2 stored).
template <class T>
concept arithmetic = std::is_arithmetic_v<T>;

template <class Archive, class C>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const as_value_t<C>& v) {
    ar(v.container);
}
template <class Archive, class C>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, as_value_t<C>& v) {
    ar(v.container);
}
/// A vector of numbers in the values: a count, then one byte string.
template <arithmetic T, class A>
void save_vector_values(tensor_oarchive& ar, const std::vector<T, A>& v) {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(v.size())));
    ar(cereal::binary_data(v.data(), v.size() * sizeof(T)));
}
template <arithmetic T, class A>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const as_value_t<std::vector<T, A>>& v) {
    save_vector_values(ar, v.container);
}
template <arithmetic T, class A>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const as_value_t<const std::vector<T, A>>& v) {
    save_vector_values(ar, v.container);
}
template <arithmetic T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, as_value_t<std::vector<T, A>>& v) {
    load_vector_values(ar, v.container);
}
template <arithmetic T, std::size_t N>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const as_value_t<std::array<T, N>>& v) {
    ar(cereal::binary_data(v.container.data(), sizeof(v.container)));
}
template <arithmetic T, std::size_t N>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const as_value_t<const std::array<T, N>>& v) {
    ar(cereal::binary_data(v.container.data(), sizeof(v.container)));
}
template <arithmetic T, std::size_t N>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, as_value_t<std::array<T, N>>& v) {
    ar(cereal::binary_data(v.container.data(), sizeof(v.container)));
}

template <vector_element T, class A>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const std::vector<T, A>& v) {
    if constexpr (std::is_arithmetic_v<T>) {
        if (ar.containers_as_values()) {
            save_vector_values(ar, v);
            return;
        }
    }
    const auto n = static_cast<std::int64_t>(v.size());
    ar.add_tensor(make_record(dtype_of<T>, v.data(), 1, &n, '-', 0, true));
}

template <tensor_element T, std::size_t N>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const std::array<T, N>& a) {
    if constexpr (std::is_arithmetic_v<T>) {
        if (ar.containers_as_values()) {
            ar(cereal::binary_data(a.data(), sizeof(a)));
            return;
        }
    }
    constexpr auto n = static_cast<std::int64_t>(N);
    ar.add_tensor(make_record(dtype_of<T>, a.data(), 1, &n, '-', 1, false));
}

template <tensor_element T, std::size_t N>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::array<T, N>& a) {
    if constexpr (std::is_arithmetic_v<T>) {
        if (ar.containers_as_values()) {
            ar(cereal::binary_data(a.data(), sizeof(a)));
            return;
        }
    }
    constexpr auto n = static_cast<std::int64_t>(N);
    ar.read_tensor_as(make_record(dtype_of<T>, a.data(), 1, &n, '-', 1, false),
                      [&a](const tensor_dims&) -> void* { return a.data(); });
}

/// The extents of a C array type, outermost first.
template <class A>
constexpr std::array<std::int64_t, std::rank_v<A>> extents_of() {
    std::array<std::int64_t, std::rank_v<A>> out{};
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((out[I] = static_cast<std::int64_t>(std::extent_v<A, I>)), ...);
    }
    (std::make_index_sequence<std::rank_v<A>>{});
    return out;
}

/// The record of a C array: one axis per extent, row-major, every size fixed.
template <class A>
tensor_record c_array_record(const A& a) {
    static_assert(std::rank_v<A> <= max_rank, "ckpt: a C array of more than 8 extents");
    static constexpr auto dims = extents_of<A>();
    return make_record(dtype_of<std::remove_all_extents_t<A>>, &a, dims.size(), dims.data(), 'R',
                       static_cast<std::uint8_t>((1U << dims.size()) - 1U), false);
}

/// A C array whose elements are numbers.
template <class T>
concept numeric_c_array = std::is_array_v<T> && tensor_element<std::remove_all_extents_t<T>>;

// C arrays: a serialize, as cereal's own is (a save beside it would be ambiguous to cereal).
template <class T, std::size_t N>
requires numeric_c_array<T[N]>
void CEREAL_SERIALIZE_FUNCTION_NAME(tensor_oarchive& ar, T (&a)[N]) {
    if constexpr (std::is_arithmetic_v<std::remove_all_extents_t<T>>) {
        if (ar.containers_as_values()) {
            ar(cereal::binary_data(a, sizeof(a)));
            return;
        }
    }
    ar.add_tensor(c_array_record(a));
}

template <class T, std::size_t N>
requires numeric_c_array<T[N]>
void CEREAL_SERIALIZE_FUNCTION_NAME(tensor_iarchive& ar, T (&a)[N]) {
    if constexpr (std::is_arithmetic_v<std::remove_all_extents_t<T>>) {
        if (ar.containers_as_values()) {
            ar(cereal::binary_data(a, sizeof(a)));
            return;
        }
    }
    ar.read_tensor_as(c_array_record(a), [&a](const tensor_dims&) -> void* { return &a; });
}

} // namespace ckpt::detail
// end ckpt/types/containers.hpp
// begin ckpt/types/eigen.hpp


#include <Eigen/Core>

namespace ckpt::detail {

// Every dense Eigen Matrix and Array (dynamic or fixed, either storage order) is a named tensor
// of the checkpoint. Expressions, Map and Block must be evaluated into a plain object first.

template <class S, int R, int C, int O, int MR, int MC>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    ar.write_tensor(m);
}
template <class S, int R, int C, int O, int MR, int MC>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    ar.read_tensor(m);
}
template <class S, int R, int C, int O, int MR, int MC>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const Eigen::Array<S, R, C, O, MR, MC>& m) {
    ar.write_tensor(m);
}
template <class S, int R, int C, int O, int MR, int MC>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, Eigen::Array<S, R, C, O, MR, MC>& m) {
    ar.read_tensor(m);
}

} // namespace ckpt::detail
// end ckpt/types/eigen.hpp
// begin ckpt/version.hpp

/// ckpt's version; the single source of truth read by CMake.
#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0
#define CKPT_VERSION_STRING "0.1.0"

namespace ckpt {
/// The on-disk format version this build writes; files with a newer one are refused, older ones
/// load. 1: the first format. 2: cereal class versions in the values have a tag of their own.
/// 3: standard containers of numbers (std::vector, std::array, C arrays) are tensors, and
/// tensors of rank 0 to 8 carry a storage order from rank 2 on.
inline constexpr int format_version = 3;
} // namespace ckpt
// end ckpt/version.hpp

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
// begin ckpt/checkpoint-inl.hpp


#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace ckpt {
namespace detail {

CKPT_INLINE std::string fingerprint_of(const std::vector<tensor_record>& tensors) {
    hasher h;
    for (const auto& t : tensors) {
        h.update(t.name.data(), t.name.size() + 1); // with the terminating NUL as a separator
        const auto type = static_cast<std::uint8_t>(t.type);
        h.update(&type, 1);
        for (const std::uint64_t d : t.shape()) h.update(&d, sizeof d);
        h.update(&t.order, 1);
    }
    return to_hex(h.digest());
}

CKPT_INLINE write_plan make_plan(const std::vector<tensor_record>& tensors,
                                 const std::vector<std::byte>& values, const metadata& meta) {
    std::vector<schema_problem> problems;
    std::unordered_set<std::string_view> seen;
    for (const auto& t : tensors) {
        if (t.name.starts_with("__")) {
            problems.push_back({errc::schema_reserved, t.name,
                                "names starting with '__' are reserved by safetensors and ckpt"});
        } else if (!seen.insert(t.name).second) {
            problems.push_back({errc::schema_duplicate, t.name,
                                "two tensors of the state have this path; name them apart"});
        } else if (t.name.size() > limits{}.max_name_bytes) {
            problems.push_back({errc::schema_reserved, t.name.substr(0, 64) + "...",
                                "the path is longer than the " +
                                    std::to_string(limits{}.max_name_bytes) + " bytes ckpt reads"});
        }
    }
    if (!problems.empty()) throw_error<schema_error>(std::move(problems));

    std::vector<std::size_t> order(tensors.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return size_of(tensors[a].type) > size_of(tensors[b].type);
    });

    write_plan plan;
    std::vector<file_tensor>& entries = plan.entries;
    entries.reserve(tensors.size() + 1);
    std::string layout;
    std::string placements;
    std::string shards;
    bool placed = false;
    std::uint64_t offset = 0;
    for (const std::size_t i : order) {
        const tensor_record& t = tensors[i];
        entries.push_back({t.name, t.type, t.shape(), offset, offset + t.bytes, t.order, t.place});
        plan.blocks.emplace_back(t.data, t.bytes);
        layout += t.order;
        placements += static_cast<char>(t.place.kind);
        placed = placed || t.place.kind != placement_kind::replicated;
        if (t.place.kind == placement_kind::sharded) {
            if (!shards.empty()) shards += ',';
            shards +=
                std::to_string(t.place.row_offset) + "/" + std::to_string(t.place.global_rows);
        }
        offset += t.bytes;
    }
    entries.push_back({std::string(values_entry),
                       dtype::u8,
                       {values.size()},
                       offset,
                       offset + values.size(),
                       '-'});
    plan.blocks.emplace_back(values.data(), values.size());
    layout += '-';

    metadata m = meta;
    if (m.time == std::chrono::system_clock::time_point{})
        m.time = std::chrono::system_clock::now();
    if (!parse_time(format_time(m.time))) {
        throw_error<usage_error>(errc::usage_argument, "metadata time " + format_time(m.time) +
                                                           " is outside years 0 to 9999");
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.emplace_back("ckpt.checksum", "xxh3-64:" + std::string(16, '0'));
    pairs.emplace_back(key_format_version, std::to_string(format_version));
    pairs.emplace_back(key_library_version, CKPT_VERSION_STRING);
    encode_user_metadata(m, pairs);
    pairs.emplace_back(key_fingerprint, fingerprint_of(tensors));
    pairs.emplace_back(key_layout, std::move(layout));
    if (placed) {
        pairs.emplace_back(key_placement,
                           placements + static_cast<char>(placement_kind::replicated));
        if (!shards.empty()) pairs.emplace_back(key_shards, std::move(shards));
    }
    plan.header = build_header(pairs, entries);
    plan.total_bytes = 8 + plan.header.size() + offset + values.size();
    return plan;
}

/// Streams a plan to a sink (a file or memory), then writes the checksum into the header.
/// A large checkpoint is hashed on a second thread while it is written: the hash reads the same
/// (unchanging) memory the writes copy from, and costs no time on the writing thread.
template <class Sink>
std::uint64_t write_checkpoint_to(Sink& sink, const write_plan& plan) {
    const std::uint64_t n = plan.header.size();
    hasher hash;
    const auto hash_all = [&]() noexcept {
        hash.update(&n, sizeof n);
        hash.update(plan.header.data(), plan.header.size());
        for (const auto& [data, bytes] : plan.blocks) {
            if (bytes > 0) hash.update(data, static_cast<std::size_t>(bytes));
        }
    };
    std::jthread hashing;
    if (plan.total_bytes >= parallel_hash_bytes) {
        hashing = std::jthread(hash_all);
    } else {
        hash_all();
    }
    sink.write(&n, sizeof n);
    sink.write(plan.header.data(), plan.header.size());
    for (const auto& [data, bytes] : plan.blocks) {
        if (bytes > 0) sink.write(data, static_cast<std::size_t>(bytes));
    }
    if (hashing.joinable()) hashing.join();
    const std::uint64_t digest = hash.digest();
    const std::string hex = to_hex(digest);
    sink.patch(checksum_digits_offset, hex.data(), hex.size());
    return digest;
}

CKPT_INLINE std::uint64_t write_checkpoint(atomic_file& sink, const write_plan& plan) {
    return write_checkpoint_to(sink, plan);
}

CKPT_INLINE std::uint64_t write_checkpoint(memory_sink& sink, const write_plan& plan) {
    return write_checkpoint_to(sink, plan);
}

CKPT_INLINE opened_checkpoint::opened_checkpoint(const std::byte* p, std::uint64_t size,
                                                 const limits& lim, const std::string& where,
                                                 bool verify, content_hasher hasher)
    : where_(where), hasher_(std::move(hasher)) {
    const auto corrupt = [&](int id, const std::string& what) {
        throw_error<corrupt_error>(id, "'" + where + "': " + what);
    };
    if (size < 8) {
        corrupt(errc::corrupt_too_small, "the file is " + std::to_string(size) +
                                             " bytes long, too short to be a checkpoint");
    }
    std::uint64_t n = 0;
    std::memcpy(&n, p, sizeof n);
    if (n > lim.max_header_bytes) {
        throw_error<limit_error>(errc::limit_header, "'" + where + "': the header declares " +
                                                         std::to_string(n) +
                                                         " bytes, more than the limit of " +
                                                         std::to_string(lim.max_header_bytes));
    }
    if (n > size - 8) {
        corrupt(errc::corrupt_truncated_header, "the header declares " + std::to_string(n) +
                                                    " bytes but only " + std::to_string(size - 8) +
                                                    " follow: the file is truncated or damaged");
    }
    const std::string_view json(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
    const bool ours = is_ckpt_header(json);
    if (verify && !ours) {
        corrupt(errc::corrupt_not_ckpt,
                "the header does not start with ckpt's checksum: the file is damaged or was "
                "not written by ckpt");
    }
    if (ours) {
        check_version(json, verify ? p : nullptr, size);
        checksum_ = std::string(json.substr(checksum_prefix.size() - 8, 24));
    }
    if (verify) {
        verify_checksum(json, p, size);
        verified_ = true;
    }
    header_ = parse_header(json, size - 8 - n, lim, where);
    header_bytes_ = n;
    data_ = p + 8 + n;
    const auto v = header_.meta.find(std::string(key_format_version));
    if (v != header_.meta.end()) version_ = static_cast<int>(parse_int(v->second).value_or(0));
    meta_ = decode_metadata(header_.meta, where);
}

CKPT_INLINE void opened_checkpoint::index(tensor_source& src,
                                          std::span<const std::byte>& values) const {
    src.entries = &header_.entries;
    src.data = data_;
    src.legacy_versions = version_ < 2;
    src.containers_as_values = version_ < 3;
    bool have_values = false;
    src.by_name.reserve(header_.entries.size());
    for (std::size_t i = 0; i < header_.entries.size(); ++i) {
        const file_tensor& e = header_.entries[i];
        if (e.begin % size_of(e.type) != 0) {
            throw_error<corrupt_error>(errc::corrupt_offsets,
                                       "'" + where_ + "': tensor '" + e.name +
                                           "' is not aligned to its element size");
        }
        check_bools(e);
        if (e.name == values_entry) {
            if (e.type != dtype::u8 || e.shape.size() != 1) {
                throw_error<corrupt_error>(errc::corrupt_header,
                                           "'" + where_ + "': " + e.name + " is not a U8 vector");
            }
            values = {data_ + e.begin, static_cast<std::size_t>(e.end - e.begin)};
            have_values = true;
        } else {
            src.by_name.emplace(e.name, i);
        }
    }
    if (!have_values) {
        throw_error<corrupt_error>(errc::corrupt_header, "'" + where_ + "': the file has no " +
                                                             std::string(values_entry) + " entry");
    }
}

CKPT_INLINE void opened_checkpoint::check_bools(const file_tensor& e) const {
    if (e.type != dtype::boolean) return;
    // A bool must be 0 or 1: anything else would be undefined once copied in.
    for (std::uint64_t b = e.begin; b < e.end; ++b) {
        if (static_cast<unsigned char>(data_[b]) > 1) {
            throw_error<corrupt_error>(errc::corrupt_values,
                                       "'" + where_ + "': BOOL tensor '" + e.name +
                                           "' holds a byte other than 0 or 1");
        }
    }
}

CKPT_INLINE bool opened_checkpoint::has_ckpt_header(const std::byte* p, std::uint64_t size) {
    if (size < 8) return false;
    std::uint64_t n = 0;
    std::memcpy(&n, p, sizeof n);
    if (n > size - 8) return false;
    return is_ckpt_header(
        std::string_view(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n)));
}

CKPT_INLINE bool opened_checkpoint::is_ckpt_header(std::string_view json) {
    return json.size() > checksum_prefix.size() + 16 && json.starts_with(checksum_prefix) &&
           from_hex(json.substr(checksum_prefix.size(), 16)).has_value() &&
           json[checksum_prefix.size() + 16] == '"';
}

CKPT_INLINE void opened_checkpoint::check_version(std::string_view json, const std::byte* p,
                                                  std::uint64_t size) {
    constexpr std::string_view key = R"(,"ckpt.format_version":")";
    const std::size_t at = checksum_prefix.size() + 17;
    const std::size_t end = json.find('"', at + key.size());
    const auto v = json.substr(at, key.size()) == key && end != std::string_view::npos
                       ? parse_int(json.substr(at + key.size(), end - at - key.size()))
                       : std::nullopt;
    if (!v || *v < 1) {
        throw_error<version_error>(errc::version_invalid,
                                   "'" + where_ + "': the header holds no valid format version");
    }
    if (*v > format_version) {
        std::string message = "'" + where_ + "' uses checkpoint format version " +
                              std::to_string(*v) +
                              "; this ckpt (" CKPT_VERSION_STRING ") reads versions up to " +
                              std::to_string(format_version) + ": load it with a newer ckpt";
        if (p != nullptr && !checksum_matches(json, p, size))
            message += " (or the file is damaged)";
        throw_error<version_error>(errc::version_newer, message);
    }
}

CKPT_INLINE std::uint64_t opened_checkpoint::content_hash(const std::byte* p, std::uint64_t size) {
    hasher h;
    h.update(p, checksum_digits_offset);
    static constexpr char zeros[16] = {'0', '0', '0', '0', '0', '0', '0', '0',
                                       '0', '0', '0', '0', '0', '0', '0', '0'};
    h.update(zeros, sizeof zeros);
    h.update(p + checksum_digits_offset + 16,
             static_cast<std::size_t>(size - checksum_digits_offset - 16));
    return h.digest();
}

CKPT_INLINE std::uint64_t opened_checkpoint::hash_of(const std::byte* p, std::uint64_t size) {
    return hasher_ ? hasher_() : content_hash(p, size);
}

CKPT_INLINE bool opened_checkpoint::checksum_matches(std::string_view json, const std::byte* p,
                                                     std::uint64_t size) {
    return from_hex(json.substr(checksum_prefix.size(), 16)) == hash_of(p, size);
}

CKPT_INLINE void opened_checkpoint::verify_checksum(std::string_view json, const std::byte* p,
                                                    std::uint64_t size) {
    compare_checksum(json, hash_of(p, size));
}

CKPT_INLINE void opened_checkpoint::compare_checksum(std::string_view json, std::uint64_t actual) {
    const std::uint64_t stored = *from_hex(json.substr(checksum_prefix.size(), 16));
    if (stored != actual) {
        throw_error<corrupt_error>(errc::corrupt_checksum,
                                   "'" + where_ + "': checksum mismatch: the header says " +
                                       to_hex(stored) + ", the content hashes to " +
                                       to_hex(actual) + ": the file is damaged");
    }
}

CKPT_INLINE void opened_checkpoint::check_checksum(const std::byte* p, std::uint64_t actual) {
    const std::string_view json(reinterpret_cast<const char*>(p + 8),
                                static_cast<std::size_t>(header_bytes_));
    if (!is_ckpt_header(json)) {
        throw_error<corrupt_error>(errc::corrupt_not_ckpt,
                                   "'" + where_ +
                                       "': the header does not start with ckpt's checksum: the "
                                       "file is damaged or was not written by ckpt");
    }
    compare_checksum(json, actual);
    verified_ = true;
}

/// The checksum of a file that is loaded into a state holding no tensor memory of its own (an
/// empty state: every tensor it ends up with, the load allocates). Nothing the user owns can be
/// overwritten there, so the file is hashed on a second thread while the load decodes into a
/// staged copy of the state, and checked before the state takes the copy: one pass over the file
/// on the loading thread instead of two, with the strong guarantee kept (a damaged file leaves
/// the state as it was, and is reported as damaged). The one exception to "verify first, then
/// decode": values are decoded from bytes not yet verified, by the same bounded reader that
/// reads any file (inspect() parses unverified headers too). Any other state is verified first.
class deferred_checksum {
public:
    deferred_checksum(opened_checkpoint& file, const std::byte* p, std::uint64_t size) noexcept
        : file_(&file), p_(p), size_(size) {}
    deferred_checksum(const deferred_checksum&) = delete;
    deferred_checksum& operator=(const deferred_checksum&) = delete;
    ~deferred_checksum();

    /// Starts hashing on another thread (if none can be started, check() hashes).
    void start() noexcept;
    /// Waits for the hash (or hashes here) and checks it. @throws corrupt_error
    void check();
    /// Whether check() has run (and so reported a mismatch, if there was one).
    [[nodiscard]] bool checked() const noexcept { return checked_; }

private:
    opened_checkpoint* file_;
    const std::byte* p_;
    std::uint64_t size_;
    std::thread worker_;
    std::uint64_t actual_ = 0;
    bool checked_ = false;
};

CKPT_INLINE deferred_checksum::~deferred_checksum() {
    if (worker_.joinable()) worker_.join();
}

CKPT_INLINE void deferred_checksum::start() noexcept {
    try {
        worker_ = std::thread([this] { actual_ = opened_checkpoint::content_hash(p_, size_); });
    } catch (...) { // no thread: check() hashes
    }
}

CKPT_INLINE void deferred_checksum::check() {
    checked_ = true;
    if (worker_.joinable()) {
        worker_.join();
    } else {
        actual_ = opened_checkpoint::content_hash(p_, size_);
    }
    file_->check_checksum(p_, actual_);
}

CKPT_INLINE std::string describe_side(dtype type, const std::vector<std::uint64_t>& shape) {
    return std::string(to_string(type)) + " " + shape_string(shape);
}

CKPT_INLINE const char* order_name(char order) {
    return order == 'R' ? "row-major" : "column-major";
}

CKPT_INLINE std::string_view cpp_name(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: return "bool";
    case dtype::u8: return "uint8";
    case dtype::i8: return "int8";
    case dtype::u16: return "uint16";
    case dtype::i16: return "int16";
    case dtype::f16: return "half";
    case dtype::bf16: return "bfloat16";
    case dtype::u32: return "uint32";
    case dtype::i32: return "int32";
    case dtype::f32: return "float";
    case dtype::u64: return "uint64";
    case dtype::i64: return "int64";
    case dtype::f64: return "double";
    case dtype::f8_e4m3:
    case dtype::f8_e5m2: break;
    }
    return to_string(t);
}

CKPT_INLINE std::string describe_state(const tensor_record& r, bool with_order) {
    std::string out(cpp_name(r.type));
    if (r.rank == 0) return out + " (rank 0)";
    // A tensor that takes the file's shape shows its sizes that are not fixed as '?'.
    const bool takes_shape = r.resizes || (r.elements() == 0 && !r.all_fixed());
    const auto dim = [&](std::size_t i) {
        return takes_shape && !r.fixed_axis(i) ? std::string("?") : std::to_string(r.dims[i]);
    };
    bool bounded = false;
    for (std::size_t i = 0; i < r.rank; ++i)
        bounded = bounded || (!r.fixed_axis(i) && r.max[i] >= 0);
    if (r.rank == 1) {
        out += "[" + (takes_shape && !r.fixed_axis(0) ? std::string() : std::to_string(r.dims[0])) +
               "]";
        if (takes_shape && bounded) out += " (at most " + std::to_string(r.max[0]) + ")";
        return out;
    }
    out += ' ';
    for (std::size_t i = 0; i < r.rank; ++i) out += (i == 0 ? "" : "x") + dim(i);
    if (takes_shape && bounded) {
        out += " (at most ";
        for (std::size_t i = 0; i < r.rank; ++i) {
            out +=
                (i == 0 ? "" : "x") + (r.max[i] < 0 ? std::string("?") : std::to_string(r.max[i]));
        }
        out += ")";
    }
    if (with_order) out += std::string(" (") + order_name(r.order) + ")";
    return out;
}

CKPT_INLINE std::string describe_file(const file_tensor& f, const tensor_record& r) {
    tensor_dims dims{};
    if (!dims_of(f, r, dims)) return describe_side(f.type, f.shape); // other rank
    std::string out(cpp_name(f.type));
    if (r.rank == 0) return out + " (rank 0)";
    if (r.rank == 1) return out + "[" + std::to_string(dims[0]) + "]";
    out += ' ';
    for (std::size_t i = 0; i < r.rank; ++i) out += (i == 0 ? "" : "x") + std::to_string(dims[i]);
    if (f.order == 'R') out += " (row-major)";
    if (f.order == 'C') out += " (column-major, stored as " + describe_side(f.type, f.shape) + ")";
    return out;
}

CKPT_INLINE void schema_report::raise() {
    if (!problems.empty()) throw_error<schema_error>(std::move(problems), total);
}

/// "rows [4, 8) of 10 (sharded)", "a replicated tensor", "a rank-local tensor".
CKPT_INLINE std::string describe_placement(const placement& p, std::uint64_t rows) {
    switch (p.kind) {
    case placement_kind::sharded:
        return "rows [" + std::to_string(p.row_offset) + ", " +
               std::to_string(p.row_offset + rows) + ") of " + std::to_string(p.global_rows) +
               " (sharded)";
    case placement_kind::rank_local: return "a rank-local tensor";
    default: return "a replicated tensor";
    }
}

CKPT_INLINE schema_report check_tensors(const std::vector<tensor_record>& state,
                                        const tensor_source& src, std::size_t cap) {
    schema_report out;
    const auto add = [&](int id, std::string_view path, const auto& text) {
        if (out.problems.size() < cap) out.problems.push_back({id, std::string(path), text()});
        ++out.total;
    };
    // Which file entries a state tensor names; the names the file lacks, only to find two
    // state tensors of the same name among them.
    std::vector<char> expected(src.entries->size(), 0);
    std::unordered_set<std::string_view> absent;
    std::size_t next = 0;
    for (const tensor_record& r : state) {
        const std::size_t entry = src.find(r.name, next);
        const bool found = entry != tensor_source::npos;
        const bool repeated =
            found ? std::exchange(expected[entry], 1) != 0 : !absent.insert(r.name).second;
        if (repeated) {
            add(errc::schema_duplicate, r.name,
                [] { return "two tensors of the state have this path; name them apart"; });
            continue;
        }
        if (!found) {
            if (src.allow_missing) {
                out.missing.push_back(r.name);
                continue;
            }
            add(errc::schema_missing, r.name, [&] {
                return "state expects " + describe_state(r, false) +
                       ", the checkpoint has no such tensor";
            });
            continue;
        }
        const file_tensor& f = (*src.entries)[entry];
        tensor_dims dims{};
        const bool ranks_match = dims_of(f, r, dims);
        const bool orders_differ = r.rank >= 2 && f.order != '-' && f.order != r.order;
        const auto both = [&] { // both sides, built only when there is something to say
            // The state's order matters only where it cannot be transposed into: fixed sizes.
            return "file has " + describe_file(f, r) + ", state expects " +
                   describe_state(r, orders_differ && ranks_match && r.all_fixed());
        };
        if (!src.loads_as(f.type, r.type)) {
            add(errc::schema_mismatch, r.name, [&] {
                if (!src.offers_conversion || !ranks_match) return both();
                switch (classify_conversion(f.type, r.type)) {
                case conversion::widening: return both() + " (import_options::widen converts it)";
                case conversion::narrowing:
                    return both() + " (import_options::narrow converts it, rounding)";
                default: return both();
                }
            });
            continue;
        }
        if (!ranks_match) {
            add(errc::schema_mismatch, r.name, both);
            continue;
        }
        if (r.all_fixed() && orders_differ) {
            add(errc::schema_storage_order, r.name,
                [&] { return both() + ": a fixed-size tensor must keep its storage order"; });
            continue;
        }
        // An empty dynamic tensor takes the file's shape, within its compile-time bounds.
        if (!holds_shape(r, dims)) {
            add(errc::schema_mismatch, r.name, both);
            continue;
        }
        if (f.place != r.place) {
            add(errc::schema_placement, r.name, [&] {
                const std::uint64_t rows = f.shape.empty() ? 0 : f.shape[0];
                return "file has " + describe_placement(f.place, rows) + ", state expects " +
                       describe_placement(r.place, rows);
            });
        }
    }
    for (std::size_t i = 0; i < src.entries->size(); ++i) {
        const file_tensor& f = (*src.entries)[i];
        const std::string_view name = src.name_of(i);
        if (expected[i] != 0 || f.name == values_entry) continue;
        if (src.ignore_unexpected) {
            out.ignored.push_back(f.name);
            continue;
        }
        add(errc::schema_unexpected, name, [&] {
            return "file has " + describe_side(f.type, f.shape) +
                   (name != f.name ? " (named " + f.name + " in the file)" : std::string()) +
                   ", the state has no such tensor";
        });
    }
    return out;
}

CKPT_INLINE std::size_t problem_cap(const tensor_source& src, std::uint64_t own_tensors) {
    return src.by_name.size() + static_cast<std::size_t>(own_tensors);
}

CKPT_INLINE bool same_tensor_names(const std::vector<tensor_record>& state,
                                   const tensor_source& src) {
    if (state.size() != src.by_name.size()) return false;
    std::size_t next = 0;
    return std::all_of(state.begin(), state.end(), [&](const tensor_record& r) {
        return src.find(r.name, next) != tensor_source::npos;
    });
}

CKPT_INLINE void collect(tensor_oarchive& ar, const state_walks& walks, const void* state) {
    try {
        walks.write(ar, state);
    } catch (const cereal::Exception& e) {
        throw_error<usage_error>(errc::usage_argument,
                                 std::string("cereal could not serialize the state: ") + e.what());
    }
}

CKPT_INLINE pass_result read_pass(const state_walks& walks, void* obj,
                                  std::span<const std::byte> values, const tensor_source* tensors,
                                  read_pass_kind kind, std::uint64_t own_tensors, bool keep_tails,
                                  const std::vector<tensor_record>* expected) {
    try {
        tensor_iarchive ar(values, tensors, kind, own_tensors, keep_tails);
        ar.containers_as_values(tensors != nullptr && tensors->containers_as_values);
        ar.expect_tensors(expected);
        walks.read(ar, obj);
        ar.finish();
        ar.finish_views();
        return {ar.tensors_met(), ar.kept_tail(), ar.met_expected_tensors(), ar.take_versions(),
                ar.take_conversions()};
    } catch (const cereal::Exception& e) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   std::string("cereal could not decode the values: ") + e.what());
    }
}

CKPT_INLINE state_backup::state_backup(const std::vector<std::byte>& state_values,
                                       const std::vector<tensor_record>& records,
                                       bool containers_as_values)
    : values(&state_values) {
    tensors.containers_as_values = containers_as_values;
    tensors.entries = &entries; // empty when no tensor is rebuilt: a restore then copies none
    std::uint64_t total = 0;
    for (const tensor_record& r : records) {
        if (!r.rebuilt) continue;
        entries.push_back({r.name, r.type, r.shape(), total, total + r.bytes, r.order, r.place});
        total += r.bytes;
    }
    if (entries.empty()) return;
    bytes.resize(static_cast<std::size_t>(total));
    std::size_t i = 0;
    for (const tensor_record& r : records) {
        if (!r.rebuilt) continue;
        if (r.bytes != 0) std::memcpy(bytes.data() + entries[i].begin, r.data, r.bytes);
        ++i;
    }
    tensors.data = bytes.data();
    for (std::size_t k = 0; k < entries.size(); ++k)
        tensors.by_name.insert_or_assign(entries[k].name, k);
}

CKPT_INLINE void restore_state(const state_walks& walks, void* obj,
                               const state_backup& backup) noexcept {
    try {
        read_pass(walks, obj, *backup.values, &backup.tensors, read_pass_kind::restore, 0);
    } catch (...) { // the original error is the one to report
    }
}

CKPT_INLINE schema_report decode_into(const state_walks& walks, void* obj, const tensor_source& src,
                                      std::span<const std::byte> values, const state_backup* backup,
                                      std::uint64_t own_tensors, load_gate* gate,
                                      const std::vector<tensor_record>* checked_before) {
    const auto restore = [&]() noexcept {
        if (backup != nullptr) restore_state(walks, obj, *backup);
    };
    pass_result met;
    try {
        // In place (a backup is given), no element that may hold tensors is removed yet.
        met = read_pass(walks, obj, values, &src, read_pass_kind::values, own_tensors,
                        backup != nullptr, checked_before);
    } catch (...) {
        restore();
        throw;
    }
    schema_report checked;
    if (!met.met_expected) {
        // The values may have changed what the state holds: list its tensors again, as the
        // checkpoint's class versions have it, and check them.
        tensor_oarchive shaped(true); // for the tensor list only
        shaped.reserve_tensors(static_cast<std::size_t>(met.tensors_met));
        shaped.use_versions(&met.versions);
        shaped.containers_as_values(src.containers_as_values);
        collect(shaped, walks, obj);
        checked = check_tensors(shaped.tensors(), src, problem_cap(src, own_tensors));
        if (!checked.problems.empty()) {
            restore();
            checked.raise();
        }
        if (met.kept_tail && met.tensors_met != shaped.tensors().size()) {
            // The kept elements hold tensors the values no longer describe, while the header lists
            // them: the file contradicts itself.
            restore();
            throw_error<corrupt_error>(
                errc::corrupt_values,
                "the checkpoint's values describe " + std::to_string(met.tensors_met) +
                    " tensors, its header " + std::to_string(shaped.tensors().size()) +
                    ": a container is shorter in the values than in the tensors");
        }
    }
    if (gate != nullptr) {
        try {
            gate->pass();
        } catch (...) {
            restore();
            throw;
        }
    }
    read_pass(walks, obj, values, &src, read_pass_kind::tensors, own_tensors);
    return checked;
}

CKPT_INLINE schema_report load_state(const state_walks& walks, void* state, tensor_source& src,
                                     std::span<const std::byte> values, load_gate* gate,
                                     deferred_checksum* deferred) {
    tensor_oarchive now;
    now.reserve_tensors(src.by_name.size());
    now.containers_as_values(src.containers_as_values);
    collect(now, walks, state);
    const std::uint64_t own = now.tensors().size();
    const bool same_names = same_tensor_names(now.tensors(), src);
    // A state that holds no tensor memory (every tensor empty, nothing of the user's to
    // overwrite) is decoded into a staged copy while the checksum is computed; any other state
    // is verified first (see deferred_checksum).
    const bool holds_no_tensor_bytes =
        std::all_of(now.tensors().begin(), now.tensors().end(),
                    [](const tensor_record& r) { return r.bytes == 0 && !r.view; });
    const bool overlap = deferred != nullptr && walks.copy != nullptr && holds_no_tensor_bytes;
    if (deferred != nullptr) {
        if (overlap) {
            deferred->start();
        } else {
            deferred->check();
        }
    }
    if ((!same_names || overlap) && walks.copy != nullptr) {
        // The file has other fields (say, containers the state holds empty): decode into a copy,
        // which the values may reshape, and keep it only if everything fits. A tensor the file
        // lacks that loading recreates keeps its value from the backup.
        const std::unique_ptr<void, void (*)(void*) noexcept> staged(walks.copy(state),
                                                                     walks.destroy);
        std::optional<state_backup> kept; // only a partial load needs it
        if (src.allow_missing) {
            kept.emplace(now.values(), now.tensors(), src.containers_as_values);
            if (!kept->entries.empty()) src.fallback = &kept->tensors;
        }
        schema_report checked = decode_into(walks, staged.get(), src, values, nullptr, own, gate);
        if (overlap) deferred->check(); // before the state takes anything
        walks.adopt(state, staged.get());
        src.fallback = nullptr;
        return checked;
    }
    // Same fields: check every shape before touching anything. Either way decode in place; the
    // backup puts the state back if anything fails (a type that cannot be copied gets here with
    // other fields too, say a file written with an older class version).
    if (same_names) check_tensors(now.tensors(), src, problem_cap(src, own)).raise();
    const state_backup backup(now.values(), now.tensors(), src.containers_as_values);
    if (src.allow_missing && !backup.entries.empty()) src.fallback = &backup.tensors;
    // With the same names (so nothing missing or ignored to report) and no tensor that loading
    // makes anew, the check just made stands if the values pass meets the same tensors.
    const bool checked_now = same_names && backup.entries.empty();
    schema_report checked = decode_into(walks, state, src, values, &backup, own, gate,
                                        checked_now ? &now.tensors() : nullptr);
    src.fallback = nullptr;
    return checked;
}

CKPT_INLINE void apply_renames(tensor_source& src,
                               const std::vector<std::pair<std::string, std::string>>& renames,
                               std::vector<std::pair<std::string, std::string>>& renamed) {
    if (renames.empty()) return;
    const auto matches = [](std::string_view name, std::string_view old) {
        return old.empty() || name == old ||
               (name.size() > old.size() && name.substr(0, old.size()) == old &&
                name[old.size()] == '.');
    };
    std::vector<char> used(renames.size(), 0);
    const std::vector<file_tensor>& entries = *src.entries;
    src.renamed_names.assign(entries.size(), std::string());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const std::string& name = entries[i].name;
        std::string& now = src.renamed_names[i];
        now = name;
        if (name == values_entry) continue;
        std::size_t best = renames.size();
        for (std::size_t k = 0; k < renames.size(); ++k) {
            if (!matches(name, renames[k].first)) continue;
            used[k] = 1; // matches a name, even where a longer rename wins
            if (best == renames.size() || renames[k].first.size() > renames[best].first.size()) {
                best = k;
            }
        }
        if (best == renames.size()) continue;
        const auto& [old, to] = renames[best];
        std::string_view rest = std::string_view(name).substr(old.size());
        if (!old.empty() && !rest.empty()) rest.remove_prefix(1); // the '.'
        now = to;
        if (!rest.empty()) {
            if (!now.empty()) now += '.';
            now += rest;
        }
        if (now != name) renamed.emplace_back(name, now);
    }
    std::vector<schema_problem> problems;
    for (std::size_t k = 0; k < renames.size(); ++k) {
        if (used[k] == 0) {
            problems.push_back(
                {errc::schema_rename_unmatched, renames[k].first,
                 "the rename to '" + renames[k].second + "' matches no tensor of the checkpoint"});
        }
    }
    src.by_name.clear();
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].name == values_entry) continue;
        const auto [it, fresh] = src.by_name.emplace(src.renamed_names[i], i);
        if (fresh) continue;
        const std::string& a = entries[it->second].name;
        const std::string& b = entries[i].name;
        problems.push_back({errc::schema_rename_collision, src.renamed_names[i],
                            "the checkpoint's tensors " + std::min(a, b) + " and " +
                                std::max(a, b) + " both have this name after the renames"});
    }
    if (!problems.empty()) {
        const std::size_t total = problems.size();
        throw_error<schema_error>(std::move(problems), total);
    }
}

CKPT_INLINE metadata load_bytes(const std::byte* p, std::uint64_t size, const state_walks& walks,
                                void* state, const load_options& options,
                                const std::string& where) {
    if (size < deferred_checksum_bytes) {
        opened_checkpoint file(p, size, options.limits, where, true);
        return load_opened(file, walks, state, options, nullptr);
    }
    // The checksum is checked later (deferred_checksum). Whatever fails before it is reported as
    // verifying first would report it: a damaged file as damaged, anything else as it is.
    std::optional<opened_checkpoint> file;
    try {
        file.emplace(p, size, options.limits, where, false);
    } catch (...) {
        const opened_checkpoint verified(p, size, options.limits, where, true);
        throw;
    }
    deferred_checksum deferred(*file, p, size);
    try {
        return load_opened(*file, walks, state, options, &deferred);
    } catch (...) {
        if (!deferred.checked()) deferred.check();
        throw;
    }
}

CKPT_INLINE metadata load_opened(opened_checkpoint& file, const state_walks& walks, void* state,
                                 const load_options& options, deferred_checksum* deferred) {
    tensor_source src;
    std::span<const std::byte> values;
    file.index(src, values);
    src.allow_missing = options.allow_missing;
    src.ignore_unexpected = options.ignore_unexpected;
    load_report report;
    apply_renames(src, options.renames, report.renamed);
    schema_report checked = load_state(walks, state, src, values, nullptr, deferred);
    if (options.report != nullptr) {
        report.missing = std::move(checked.missing);
        report.ignored = std::move(checked.ignored);
        // By name: the file's order is its layout's (tensors by element size).
        std::sort(report.ignored.begin(), report.ignored.end());
        std::sort(report.renamed.begin(), report.renamed.end());
        *options.report = std::move(report);
    }
    return file.meta();
}

CKPT_INLINE metadata load_file(const std::filesystem::path& path, const state_walks& walks,
                               void* state, const load_options& options) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    const file_bytes bytes(io, where);
    return load_bytes(bytes.data(), bytes.size(), walks, state, options, where);
}

CKPT_INLINE std::uint64_t save_file(const std::filesystem::path& path, const state_walks& walks,
                                    const void* state, const metadata& meta,
                                    const save_options& options) {
    tensor_oarchive ar;
    collect(ar, walks, state);
    const write_plan plan = make_plan(ar.tensors(), ar.values(), meta);
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    atomic_file file(io, path);
    file.allocate(plan.total_bytes);
    write_checkpoint(file, plan);
    file.commit();
    return plan.total_bytes;
}

CKPT_INLINE std::vector<std::byte> save_bytes(const state_walks& walks, const void* state,
                                              const metadata& meta) {
    tensor_oarchive ar;
    collect(ar, walks, state);
    const write_plan plan = make_plan(ar.tensors(), ar.values(), meta);
    memory_sink sink(static_cast<std::size_t>(plan.total_bytes));
    write_checkpoint(sink, plan);
    return sink.take();
}

CKPT_INLINE std::vector<std::byte> read_head(io::backend& io, int fd, std::uint64_t size,
                                             const limits& lim, const std::string& where) {
    std::uint64_t n = 0;
    if (size >= 8) {
        if (const int e = read_all(io, fd, reinterpret_cast<std::byte*>(&n), 8, 0)) {
            throw_io(errc::io_read, "read", where, e);
        }
    }
    // A length that the file cannot hold is left for opened_checkpoint to report.
    const std::uint64_t head = size < 8 || n > lim.max_header_bytes || n > size - 8 ? 8 : 8 + n;
    std::vector<std::byte> bytes(static_cast<std::size_t>(std::min(head, size)));
    if (!bytes.empty()) {
        if (const int e = read_all(io, fd, bytes.data(), bytes.size(), 0)) {
            throw_io(errc::io_read, "read", where, e);
        }
    }
    return bytes;
}

CKPT_INLINE std::uint64_t stream_content_hash(io::backend& io, int fd, std::uint64_t size,
                                              const std::string& where,
                                              const progress_callback& progress) {
    constexpr std::uint64_t slice = std::uint64_t{8} << 20;
    const std::uint64_t digits_end = checksum_digits_offset + 16;
    static constexpr char zeros[16] = {'0', '0', '0', '0', '0', '0', '0', '0',
                                       '0', '0', '0', '0', '0', '0', '0', '0'};
    hasher h;
    // Bytes [at, at + n) of the file at `p`, with the checksum's own digits read as zeros.
    const auto update = [&](const std::byte* p, std::uint64_t at, std::uint64_t n) {
        const std::uint64_t lo = std::max(at, checksum_digits_offset);
        const std::uint64_t hi = std::min(at + n, digits_end);
        if (lo >= hi) {
            h.update(p, static_cast<std::size_t>(n));
            return;
        }
        h.update(p, static_cast<std::size_t>(lo - at));
        h.update(zeros + (lo - checksum_digits_offset), static_cast<std::size_t>(hi - lo));
        h.update(p + (hi - at), static_cast<std::size_t>(at + n - hi));
    };
    // A file whose pages are all in memory is hashed where it is (no copy); any other is read
    // in slices, so that memory does not grow with the file.
    const void* mapped = size > 0 && size <= static_cast<std::uint64_t>(PTRDIFF_MAX)
                             ? io.map(fd, static_cast<std::size_t>(size))
                             : nullptr;
    std::vector<std::byte> buffer;
    if (mapped == nullptr) buffer.resize(static_cast<std::size_t>(std::min(size, slice)));
    try {
        for (std::uint64_t at = 0; at < size;) {
            const std::uint64_t n = std::min(slice, size - at);
            const std::byte* p = nullptr;
            if (mapped != nullptr) {
                p = static_cast<const std::byte*>(mapped) + at;
            } else {
                if (const int e =
                        read_all(io, fd, buffer.data(), static_cast<std::size_t>(n), at)) {
                    throw_io(errc::io_read, "read", where, e);
                }
                p = buffer.data();
            }
            update(p, at, n);
            at += n;
            if (progress) progress(at, size);
        }
    } catch (...) {
        if (mapped != nullptr) io.unmap(mapped, static_cast<std::size_t>(size));
        throw;
    }
    if (mapped != nullptr) io.unmap(mapped, static_cast<std::size_t>(size));
    if (size == 0 && progress) progress(0, 0);
    return h.digest();
}

CKPT_INLINE info make_info(const opened_checkpoint& file, std::uint64_t file_bytes) {
    info out;
    out.format_version = file.version();
    out.meta = file.meta();
    out.checksum = file.checksum();
    out.checksum_verified = file.verified();
    out.file_bytes = file_bytes;
    out.header_bytes = file.header_bytes();
    out.raw_metadata = file.header().meta;
    if (const auto it = out.raw_metadata.find(std::string(key_library_version));
        it != out.raw_metadata.end()) {
        out.library_version = it->second;
    }
    if (const auto it = out.raw_metadata.find(std::string(key_fingerprint));
        it != out.raw_metadata.end()) {
        out.fingerprint = it->second;
    }
    for (const file_tensor& e : file.header().entries) {
        if (e.name == values_entry) {
            out.value_bytes = e.end - e.begin;
            continue;
        }
        out.tensors.push_back(
            {e.name, e.type, e.shape, e.begin, e.end - e.begin, e.order, e.place, -1});
    }
    return out;
}

} // namespace detail

CKPT_INLINE info inspect(const std::filesystem::path& path, const inspect_options& options) {
    io::backend& io = options.backend != nullptr ? *options.backend : io::default_backend();
    const std::string where = path.string();
    detail::fd_guard fd(io, detail::open_for_reading(io, where));
    std::uint64_t size = 0;
    if (io.file_size(fd.get(), size) != 0) detail::throw_io(errc::io_stat, "stat", where, errno);
    const std::vector<std::byte> head =
        detail::read_head(io, fd.get(), size, options.limits, where);
    detail::opened_checkpoint::content_hasher hasher;
    if (options.verify) {
        hasher = [&] {
            return detail::stream_content_hash(io, fd.get(), size, where, options.progress);
        };
    }
    const detail::opened_checkpoint file(head.data(), size, options.limits, where, options.verify,
                                         std::move(hasher));
    return detail::make_info(file, size);
}

} // namespace ckpt
// end ckpt/checkpoint-inl.hpp
#endif
// end ckpt/checkpoint.hpp

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ckpt {

/// What an asynchronous save does when the saves in flight or the staging memory are at their cap.
enum class when_full {
    wait, ///< block until an earlier save is committed and there is room
    skip  ///< take no snapshot and say why (async_ticket::skipped)
};

/// One background save, finished: committed, or failed with `error`.
struct async_done {
    std::uint64_t id = 0;
    std::filesystem::path path{};
    std::uint64_t bytes = 0;    ///< of the file
    double write_seconds = 0;   ///< in the background: hash, write, fsync, rename
    std::exception_ptr error{}; ///< null when the checkpoint is committed
};

/// How an async_saver (or a manager with manager_options::async) saves in the background.
struct async_options {
    /// Saves staged or being written at once; a save beyond it waits or is skipped.
    std::size_t max_in_flight = 1;
    /// Cap on the staging memory held for snapshots, in bytes; 0: max_in_flight snapshots.
    std::uint64_t max_staging_bytes = 0;
    when_full on_full = when_full::wait;
    io::backend* backend = nullptr; ///< file-system calls, made on the background thread
    /// Called on the background thread after each save, committed or failed. An exception it
    /// throws is raised like a failed save's.
    std::function<void(const async_done&)> on_done{};
};

/// What async_saver::save() did.
struct async_ticket {
    bool staged = false;       ///< the snapshot is taken; the file is written in the background
    std::string skipped{};     ///< why no snapshot was taken (when_full::skip); empty if staged
    std::uint64_t id = 0;      ///< increasing from 1; async_done::id of the same save
    std::uint64_t bytes = 0;   ///< of the file it writes
    double stall_seconds = 0;  ///< how long save() held the caller
    double waited_seconds = 0; ///< of that, waiting for room (when_full::wait)

    explicit operator bool() const noexcept { return staged; }
};

namespace detail {

/// Page-aligned anonymous memory for a snapshot. It asks for transparent huge pages: the first
/// copy into it then faults once per 2 MiB instead of once per 4 KiB.
class staging_buffer {
public:
    static constexpr std::uint64_t page = 4096;

    /// `capacity`: whole pages, at least one (see async_engine::capacity_for)
    explicit staging_buffer(std::uint64_t capacity);
    staging_buffer(const staging_buffer&) = delete;
    staging_buffer& operator=(const staging_buffer&) = delete;
    ~staging_buffer();
    /// Touches every page, so that the kernel backs the buffer with memory now (and compacts
    /// memory for its huge pages now) rather than during a snapshot's copy.
    void fault_in() noexcept;
    [[nodiscard]] std::byte* data() const noexcept { return data_; }
    [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }

private:
    std::byte* data_ = nullptr;
    std::uint64_t capacity_ = 0;
};

/// For an error a destructor cannot raise (a second one, or one during stack unwinding).
void report_unraised(const char* who, const std::exception_ptr& e) noexcept;

std::string mib_text(std::uint64_t bytes);

/// The machinery under async_saver and the manager's async mode: snapshots into a pool of
/// reused staging buffers on the caller's thread, one background thread that writes them in
/// order, and a completion callback. Errors go to the callback only; callers decide how to
/// raise them.
class async_engine {
public:
    using done_fn = std::function<void(async_done&&)>;

    async_engine(const async_options& options, done_fn done);
    async_engine(const async_engine&) = delete;
    async_engine& operator=(const async_engine&) = delete;
    ~async_engine();

    /// Takes a snapshot of `state` and queues it. @throws usage_error (605: one snapshot is
    /// larger than the staging cap; what save() throws for a state it cannot serialize)
    template <class T>
    async_ticket stage(const std::filesystem::path& path, const T& state, const metadata& meta) {
        const auto started = std::chrono::steady_clock::now();
        if (std::optional<async_ticket> refused = refuse_at_once(started)) return *refused;
        tensor_oarchive ar;
        collect(ar, state);
        return stage_plan(path, make_plan(ar.tensors(), ar.values(), meta), started);
    }

    /// Allocates and faults in staging memory for snapshots of `state` now, on the caller's
    /// thread: as many buffers as saves may be in flight (as many as the cap allows), each
    /// with room for the snapshot and 1/256 more. A save then only copies. Buffers already
    /// held that are large enough count; free ones that are too small are given back.
    /// @returns the staging bytes held @throws usage_error (605: larger than the cap)
    template <class T>
    std::uint64_t reserve(const T& state) {
        tensor_oarchive ar;
        collect(ar, state);
        return reserve_bytes(staged_bytes(make_plan(ar.tensors(), ar.values(), metadata{})));
    }

    /// Blocks until every staged save is committed or failed (its callback has run). In a
    /// child of fork() (forked()), returns at once: the saves are the parent's.
    void drain();
    /// This is a copy in a child of fork(): the background thread and the saves in flight are
    /// the parent's. Such a copy can only be destroyed; that neither waits nor writes.
    [[nodiscard]] bool forked() const noexcept;
    /// Waits until the files its saves replaced are released (backend::flush_releases).
    void flush_releases() const { io_->flush_releases(); }

    [[nodiscard]] std::size_t in_flight() const;

    /// Staging memory held, in use or kept for the next snapshot.
    [[nodiscard]] std::uint64_t staging_bytes() const;

private:
    /// With when_full::skip and every slot taken, the ticket of a save refused before any walk.
    std::optional<async_ticket> refuse_at_once(std::chrono::steady_clock::time_point started);
    /// Copies a planned snapshot into a staging buffer and queues it (the blocks still point
    /// into the caller's state, so this returns only once they are copied).
    async_ticket stage_plan(const std::filesystem::path& path, write_plan plan,
                            std::chrono::steady_clock::time_point started);
    /// reserve() for snapshots of `bytes`.
    std::uint64_t reserve_bytes(std::uint64_t bytes);

    struct job {
        std::uint64_t id = 0;
        std::filesystem::path path;
        std::string header;
        staging_buffer* buffer = nullptr;
        std::uint64_t data_bytes = 0;
        std::uint64_t total_bytes = 0;
    };
    struct slot {
        std::unique_ptr<staging_buffer> buffer;
        bool in_use = false;
    };

    /// What a snapshot stages: the file's data section (the header is kept apart).
    static std::uint64_t staged_bytes(const write_plan& plan) noexcept {
        return plan.total_bytes - 8 - plan.header.size();
    }

    /// Whether a new buffer of `capacity` may join `held` bytes under the cap. The first buffer
    /// always may: check_cap has refused a snapshot larger than the cap.
    bool room_for(std::uint64_t held, std::uint64_t capacity) const noexcept {
        return cap_ == 0 || held == 0 || held + capacity <= cap_;
    }

    /// @throws usage_error 605 when a snapshot of `bytes` can never fit under the cap
    void check_cap(const std::string& what, std::uint64_t bytes) const;

    std::string in_flight_text() const;
    std::string saves_text() const;

    std::uint64_t held_bytes() const;

    /// The capacity of a new buffer for `bytes`-byte snapshots: whole pages, with 1/256 to
    /// spare (within the cap), so that a snapshot a little larger than the last one (a
    /// longer random engine text, a new metric) still fits and faults nothing in.
    std::uint64_t capacity_for(std::uint64_t bytes) const noexcept;

    /// A buffer of at least `bytes` for a new snapshot, or nullptr and why not. Holds the mutex.
    /// The pool keeps at most max_in_flight buffers and, with a cap, at most the cap's bytes.
    staging_buffer* acquire(std::uint64_t bytes, std::string& why);

    void release(const staging_buffer* buffer) noexcept;

    void run();

    const std::size_t max_in_flight_;
    const std::uint64_t cap_;
    const when_full on_full_;
    io::backend* io_;
    done_fn done_;

    mutable std::mutex mutex_;
    std::condition_variable work_; ///< a job was queued, or stop
    std::condition_variable room_; ///< a save finished: a slot and maybe memory are free
    std::deque<job> queue_;
    std::vector<slot> pool_;
    std::size_t in_flight_ = 0;
    std::uint64_t last_id_ = 0;
    bool stop_ = false;
    std::int64_t owner_; ///< the pid of the process that started worker_
    std::thread worker_; // last: started after everything it uses exists
};

} // namespace detail

/// Saves in the background: save() copies the state into a staging buffer (the only time it
/// holds the caller) and returns; a background thread hashes, writes, fsyncs and commits the
/// file exactly as ckpt::save does. Changing the state after save() returns does not change what
/// is written. An error in the background is raised by the next save(), wait() or the
/// destructor; none is lost.
///
///     ckpt::async_saver saver;                       // one save in flight, the next one waits
///     saver.save("run/step-100.ckpt", state, {.step = 100});
///     train_more(state);                             // safe: the snapshot is already taken
///     saver.wait();                                  // committed (or throws the save's error)
class async_saver {
public:
    explicit async_saver(async_options options = {});
    async_saver(const async_saver&) = delete;
    async_saver& operator=(const async_saver&) = delete;

    /// Waits for the saves in flight, then raises the first background error not raised yet,
    /// unless the destructor runs during stack unwinding. Errors it cannot raise go to stderr
    /// (on_done saw every one).
    ~async_saver() noexcept(false);

    /// Snapshots `state` for `path` and returns once the copy is taken. First raises the error
    /// of an earlier save, if any (this save is then not taken).
    /// @throws what ckpt::save throws (from this or an earlier save), usage_error 605
    template <class T>
    async_ticket save(const std::filesystem::path& path, const T& state,
                      const metadata& meta = {}) {
        static_assert(is_checkpointable<T>::value,
                      "ckpt::async_saver::save: T is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        rethrow_pending();
        return engine_.stage(path, state, meta);
    }

    /// Blocks until every save so far is committed. @throws the first error of a background save
    void wait();

    /// Saves staged or being written.
    [[nodiscard]] std::size_t in_flight() const { return engine_.in_flight(); }

    /// Staging memory held, in bytes (kept between saves, so later snapshots do not fault).
    [[nodiscard]] std::uint64_t staging_bytes() const { return engine_.staging_bytes(); }

    /// Takes the staging memory for snapshots of `state` now, before training starts, so that
    /// even the first save() only copies (otherwise its copy faults the memory in: about 0.1 s
    /// per 256 MiB, more while the kernel compacts memory for huge pages). Blocks the caller for
    /// that time; nothing is written. @returns staging_bytes()
    /// @throws usage_error (605: one snapshot is larger than async_options::max_staging_bytes)
    template <class T>
    std::uint64_t reserve(const T& state) {
        static_assert(is_checkpointable<T>::value,
                      "ckpt::async_saver::reserve: T is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        return engine_.reserve(state);
    }

private:
    void finished(async_done&& d);
    std::exception_ptr take_error();
    void rethrow_pending();

    std::function<void(const async_done&)> on_done_;
    int unwinding_;
    std::mutex errors_mutex_;
    std::deque<std::exception_ptr> errors_;
    detail::async_engine engine_; // last: its thread calls finished(), which uses the above
};

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/async-inl.hpp


#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace ckpt {
namespace detail {

/// Seconds from `t` to now.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

CKPT_INLINE void report_unraised(const char* who, const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        std::fprintf(stderr, "%s: a background save failed: %s\n", who, x.what());
    } catch (...) {
        std::fprintf(stderr, "%s: a background save failed\n", who);
    }
}

CKPT_INLINE std::string mib_text(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

CKPT_INLINE staging_buffer::staging_buffer(std::uint64_t capacity) : capacity_(capacity) {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(capacity_), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    ::madvise(p, static_cast<std::size_t>(capacity_), MADV_HUGEPAGE); // a hint; may fail
#endif
    data_ = static_cast<std::byte*>(p);
}

CKPT_INLINE staging_buffer::~staging_buffer() {
    ::munmap(data_, static_cast<std::size_t>(capacity_));
}

CKPT_INLINE void staging_buffer::fault_in() noexcept {
    volatile std::byte* p = data_;
    for (std::uint64_t i = 0; i < capacity_; i += page) p[i] = std::byte{0};
}

CKPT_INLINE std::optional<async_ticket>
async_engine::refuse_at_once(std::chrono::steady_clock::time_point started) {
    if (on_full_ != when_full::skip) return std::nullopt;
    // The common refusal costs no snapshot: say so before walking the state.
    std::lock_guard lock(mutex_);
    if (in_flight_ < max_in_flight_) return std::nullopt;
    async_ticket ticket;
    ticket.skipped = in_flight_text();
    ticket.stall_seconds = seconds_since(started);
    return ticket;
}

CKPT_INLINE async_ticket async_engine::stage_plan(const std::filesystem::path& path,
                                                  write_plan plan,
                                                  std::chrono::steady_clock::time_point started) {
    async_ticket ticket;
    const std::uint64_t data_bytes = staged_bytes(plan);
    check_cap("the snapshot for '" + path.string() + "'", data_bytes);

    job j;
    j.path = path;
    j.header = std::move(plan.header);
    j.data_bytes = data_bytes;
    j.total_bytes = plan.total_bytes;
    {
        std::unique_lock lock(mutex_);
        const auto wait_started = std::chrono::steady_clock::now();
        for (;;) {
            std::string why;
            j.buffer = acquire(data_bytes, why);
            if (j.buffer != nullptr) break;
            if (on_full_ == when_full::skip) {
                ticket.skipped = std::move(why);
                ticket.stall_seconds = seconds_since(started);
                return ticket;
            }
            room_.wait(lock);
        }
        ticket.waited_seconds = seconds_since(wait_started);
        j.id = ticket.id = ++last_id_;
        ++in_flight_;
    }

    // The copy: the only part of a save that must hold the caller. The checksum is computed
    // in the background, from the snapshot.
    std::byte* out = j.buffer->data();
    for (const auto& [data, bytes] : plan.blocks) {
        if (bytes == 0) continue;
        std::memcpy(out, data, static_cast<std::size_t>(bytes));
        out += bytes;
    }
    {
        std::lock_guard lock(mutex_);
        try {
            queue_.push_back(std::move(j));
        } catch (...) { // out of memory for the queue: give the slot back
            release(j.buffer);
            --in_flight_;
            room_.notify_all();
            throw;
        }
    }
    work_.notify_one();
    ticket.staged = true;
    ticket.bytes = plan.total_bytes;
    ticket.stall_seconds = seconds_since(started);
    return ticket;
}

CKPT_INLINE std::uint64_t async_engine::reserve_bytes(std::uint64_t bytes) {
    check_cap("a snapshot of this state", bytes);
    const std::uint64_t capacity = capacity_for(bytes);
    std::size_t wanted = 0;
    {
        std::lock_guard lock(mutex_);
        std::erase_if(pool_,
                      [&](const slot& s) { return !s.in_use && s.buffer->capacity() < bytes; });
        std::uint64_t held = held_bytes();
        while (pool_.size() + wanted < max_in_flight_ && room_for(held, capacity)) {
            ++wanted;
            held += capacity;
        }
    }
    // Faulting takes a while (the kernel may compact memory for huge pages): not under the
    // lock, which the background thread needs to finish a save.
    std::vector<std::unique_ptr<staging_buffer>> fresh;
    for (std::size_t i = 0; i < wanted; ++i) {
        fresh.push_back(std::make_unique<staging_buffer>(capacity));
        fresh.back()->fault_in();
    }
    std::lock_guard lock(mutex_);
    // Another thread's save may have taken a slot or memory meanwhile: check again.
    for (auto& b : fresh) {
        if (pool_.size() < max_in_flight_ && room_for(held_bytes(), capacity)) {
            pool_.push_back({std::move(b), false});
        }
    }
    return held_bytes();
}

CKPT_INLINE async_engine::async_engine(const async_options& options, done_fn done)
    : max_in_flight_(options.max_in_flight), cap_(options.max_staging_bytes),
      on_full_(options.on_full),
      io_(options.backend != nullptr ? options.backend : &io::default_backend()),
      done_(std::move(done)), owner_(::getpid()) {
    if (max_in_flight_ == 0) {
        throw_error<usage_error>(errc::usage_argument,
                                 "async_options::max_in_flight must be at least 1");
    }
    worker_ = std::thread([this] { run(); });
}

CKPT_INLINE async_engine::~async_engine() {
    if (forked()) {
        // The parent's thread does not exist here, and the copies of the mutex and condition
        // variables may say that it holds or waits on them (a condition variable with a waiter
        // would block its destructor): start them afresh and let the thread's handle go.
        new (&mutex_) std::mutex();
        new (&work_) std::condition_variable();
        new (&room_) std::condition_variable();
        new (&worker_) std::thread();
        return;
    }
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    work_.notify_all();
    worker_.join(); // the worker finishes every staged save first
}

CKPT_INLINE bool async_engine::forked() const noexcept {
    return owner_ != static_cast<std::int64_t>(::getpid());
}

CKPT_INLINE void async_engine::drain() {
    if (forked()) return;
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return in_flight_ == 0; });
}

CKPT_INLINE std::size_t async_engine::in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
}

CKPT_INLINE std::uint64_t async_engine::staging_bytes() const {
    std::lock_guard lock(mutex_);
    return held_bytes();
}

CKPT_INLINE void async_engine::check_cap(const std::string& what, std::uint64_t bytes) const {
    if (cap_ != 0 && bytes > cap_) {
        throw_error<usage_error>(errc::usage_staging_cap,
                                 what + " needs " + mib_text(bytes) +
                                     " of staging memory, more than "
                                     "async_options::max_staging_bytes = " +
                                     mib_text(cap_) + "; raise the cap or save synchronously");
    }
}

CKPT_INLINE std::string async_engine::in_flight_text() const {
    return std::to_string(in_flight_) + (in_flight_ == 1 ? " save is" : " saves are") +
           " in flight (async_options::max_in_flight = " + std::to_string(max_in_flight_) + ")";
}

CKPT_INLINE std::string async_engine::saves_text() const {
    return std::to_string(in_flight_) + (in_flight_ == 1 ? " save" : " saves") + " in flight";
}

CKPT_INLINE std::uint64_t async_engine::held_bytes() const {
    std::uint64_t n = 0;
    for (const auto& s : pool_) n += s.buffer->capacity();
    return n;
}

CKPT_INLINE std::uint64_t async_engine::capacity_for(std::uint64_t bytes) const noexcept {
    constexpr std::uint64_t page = staging_buffer::page;
    std::uint64_t spare = bytes / 256;
    if (cap_ != 0) spare = std::min(spare, cap_ > bytes ? cap_ - bytes : 0);
    return std::max<std::uint64_t>((bytes + spare + page - 1) / page * page, page);
}

CKPT_INLINE staging_buffer* async_engine::acquire(std::uint64_t bytes, std::string& why) {
    if (in_flight_ >= max_in_flight_) {
        why = in_flight_text();
        return nullptr;
    }
    slot* fit = nullptr;
    for (auto& s : pool_) {
        if (!s.in_use && s.buffer->capacity() >= bytes &&
            (fit == nullptr || s.buffer->capacity() < fit->buffer->capacity())) {
            fit = &s;
        }
    }
    if (fit != nullptr) {
        fit->in_use = true;
        return fit->buffer.get();
    }
    // No free buffer fits: give back the free ones (too small), then see if a new one fits.
    std::erase_if(pool_, [](const slot& s) { return !s.in_use; });
    const std::uint64_t held = held_bytes();
    if (!room_for(held, capacity_for(bytes))) {
        why = "the snapshot needs " + mib_text(bytes) + " of staging memory and " + mib_text(held) +
              " are held by the " + saves_text() +
              ", at async_options::max_staging_bytes = " + mib_text(cap_);
        return nullptr;
    }
    pool_.push_back({std::make_unique<staging_buffer>(capacity_for(bytes)), true});
    return pool_.back().buffer.get();
}

CKPT_INLINE void async_engine::release(const staging_buffer* buffer) noexcept {
    for (auto& s : pool_) {
        if (s.buffer.get() == buffer) s.in_use = false;
    }
}

CKPT_INLINE void async_engine::run() {
    for (;;) {
        job j;
        {
            std::unique_lock lock(mutex_);
            work_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return; // stopping, and nothing left to write
            j = std::move(queue_.front());
            queue_.pop_front();
        }
        async_done done;
        done.id = j.id;
        done.bytes = j.total_bytes;
        const auto started = std::chrono::steady_clock::now();
        try {
            write_plan plan;
            plan.header = std::move(j.header);
            plan.blocks.emplace_back(j.buffer->data(), j.data_bytes);
            plan.total_bytes = j.total_bytes;
            atomic_file file(*io_, j.path);
            file.allocate(plan.total_bytes);
            write_checkpoint(file, plan);
            file.commit();
        } catch (...) {
            done.error = std::current_exception();
        }
        done.path = std::move(j.path); // a move: nothing here may throw
        done.write_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        {
            std::lock_guard lock(mutex_);
            release(j.buffer);
        }
        // Before the save stops counting as in flight: once drain() returns, every
        // callback has run, and this thread holds no reference to the error any more.
        try {
            done_(std::move(done));
        } catch (...) { // out of memory to record the outcome: stderr is all that is left
            if (done.error != nullptr) report_unraised("ckpt: background save", done.error);
        }
        done.error = nullptr;
        {
            std::lock_guard lock(mutex_);
            --in_flight_;
        }
        room_.notify_all();
    }
}

} // namespace detail

CKPT_INLINE async_saver::async_saver(async_options options)
    : on_done_(std::move(options.on_done)), unwinding_(std::uncaught_exceptions()),
      engine_(options, [this](async_done&& d) { finished(std::move(d)); }) {}

CKPT_INLINE async_saver::~async_saver() noexcept(false) {
    if (engine_.forked()) return; // a child of fork(): the saves and their errors are the parent's
    engine_.drain();
    engine_.flush_releases();
    std::exception_ptr e = take_error();
    const bool can_throw = std::uncaught_exceptions() <= unwinding_;
    if (e != nullptr && !can_throw) detail::report_unraised("ckpt::async_saver", e);
    for (const auto& other : errors_) detail::report_unraised("ckpt::async_saver", other);
    if (e != nullptr && can_throw) std::rethrow_exception(e);
}

CKPT_INLINE void async_saver::wait() {
    engine_.drain();
    engine_.flush_releases(); // the blocks of the files the saves replaced are free
    rethrow_pending();
}

CKPT_INLINE void async_saver::finished(async_done&& d) {
    if (on_done_) {
        try {
            on_done_(d);
        } catch (...) {
            if (d.error == nullptr) d.error = std::current_exception();
        }
    }
    if (d.error != nullptr) {
        std::lock_guard lock(errors_mutex_);
        errors_.push_back(d.error);
    }
}

CKPT_INLINE std::exception_ptr async_saver::take_error() {
    std::lock_guard lock(errors_mutex_);
    if (errors_.empty()) return nullptr;
    std::exception_ptr e = errors_.front();
    errors_.pop_front();
    return e;
}

CKPT_INLINE void async_saver::rethrow_pending() {
    if (std::exception_ptr e = take_error()) std::rethrow_exception(e);
}

} // namespace ckpt
// end ckpt/async-inl.hpp
#endif
// end ckpt/async.hpp
// begin ckpt/format/manifest.hpp

// The manifest of a distributed checkpoint: a directory holding one ckpt file per writing rank
// and `manifest.json`, which says how the files make up the global tensors. The manifest is
// written last and renamed into place: the checkpoint exists if and only if it does.


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
// begin ckpt/format/manifest-inl.hpp


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
// end ckpt/format/manifest-inl.hpp
#endif
// end ckpt/format/manifest.hpp
// begin ckpt/import.hpp


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
// begin ckpt/import-inl.hpp


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
// end ckpt/import-inl.hpp
#endif
// end ckpt/import.hpp
// begin ckpt/manager.hpp

// begin ckpt/manager/directory.hpp

// begin ckpt/manager/lock.hpp


#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace ckpt {

/// Who holds, or last held, a manager's lock: the pid its lock file holds.
struct lock_holder {
    std::int64_t pid = 0;
    /// A process with that pid exists now (a holder that died released its lock with it, and a
    /// new process may have its pid since).
    bool running = false;
    bool this_process = false; ///< the pid is this process's own

    friend bool operator==(const lock_holder&, const lock_holder&) = default;
};

/// The exclusive lock of a manager on a directory: `<dir>/<prefix>.lock`, held with the
/// backend's lock() (flock by default, which the kernel releases when its holder dies, so a
/// lock file left by a crash is no obstacle). The file holds the holder's pid while it is held,
/// for the message another manager gets, and nothing once it is released.
///
/// Only the process that took it holds it. Its descriptor is closed on exec (O_CLOEXEC), and in
/// a child of fork() that does not exec (a data-loader worker) it is closed as fork() returns
/// there (a pthread_atfork handler), so the lock ends with its holder, not with the last of
/// its children: a flock lock belongs to the open file description, which fork() shares, and
/// the kernel releases it at the last close of it. Closing the child's copy leaves the
/// parent's lock as it is. A child's copy of a directory_lock is not a holder: its release()
/// and destructor do nothing. (POSIX fcntl() record locks are not inherited by fork(), but any
/// close of the file by the process drops them, scan_directory's read of the lock file
/// included, and two managers of one process would not exclude each other: not used.)
/// fork() alone runs the handler; a child made by a raw clone() or _Fork() keeps the
/// descriptor until it exits or execs.
class directory_lock {
public:
    /// Creates the directory (and its parents) when it does not exist, then takes the lock.
    /// @throws io_error (the directory cannot be created, or the lock file created or
    /// written), usage_error 603 (another holder has it; the message names its pid)
    directory_lock(const std::filesystem::path& dir, const std::string& prefix, io::backend& io);
    directory_lock(const directory_lock&) = delete;
    directory_lock& operator=(const directory_lock&) = delete;
    directory_lock(directory_lock&& other) noexcept;
    directory_lock& operator=(directory_lock&& other) noexcept;
    /// Empties the lock file, then releases the lock.
    ~directory_lock();

    /// Releases the lock now (see the destructor); a second call does nothing.
    void release() noexcept;

    [[nodiscard]] bool held() const noexcept { return fd_ >= 0; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
    io::backend* io_;
    int fd_ = -1;
    std::int64_t owner_ = 0; ///< the pid of the process that took it
};

/// The lock file of `prefix` in `dir`: nothing when there is none or it is empty (no manager
/// holds the directory, or the last one released it). Reads only: takes no lock.
/// @throws io_error (the file exists and cannot be read)
std::optional<lock_holder> read_lock_holder(const std::filesystem::path& dir,
                                            const std::string& prefix, io::backend& io);

namespace detail {

/// Creates `dir` and its missing parents with io.mkdir. @throws io_error
void create_directories(const std::filesystem::path& dir, io::backend& io);

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/manager/lock-inl.hpp


#include <cerrno>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pthread.h>

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

namespace ckpt {

namespace detail {

CKPT_INLINE void create_directories(const std::filesystem::path& dir, io::backend& io) {
    if (dir.empty()) return;
    if (io.mkdir(dir.c_str(), 0777) == 0) return;
    int e = errno;
    if (e == ENOENT && dir.has_relative_path() && dir.parent_path() != dir) {
        create_directories(dir.parent_path(), io);
        if (io.mkdir(dir.c_str(), 0777) == 0) return;
        e = errno;
    }
    if (e == EEXIST) {
        std::error_code ec;
        if (std::filesystem::is_directory(dir, ec)) return;
        throw_io(errc::io_open, "create directory", dir.string(), ENOTDIR,
                 "a file that is not a directory has its name");
    }
    throw_io(errc::io_open, "create directory", dir.string(), e);
}

/// The descriptors of the directory locks this process holds, closed in a child of fork() as
/// fork() returns there (see directory_lock). One per process, registered with pthread_atfork
/// on first use and never destroyed: fork handlers cannot be removed.
class fork_closed_descriptors {
public:
    static fork_closed_descriptors& instance() {
        static fork_closed_descriptors* fds = new fork_closed_descriptors();
        return *fds;
    }

    /// fork() waits while this is held: hold it from the open of a descriptor to its add(),
    /// and from its remove() to its close, so that no child sees one unregistered.
    [[nodiscard]] std::unique_lock<std::mutex> hold() { return std::unique_lock(mutex_); }
    /// Under hold(). @throws std::bad_alloc
    void add(int fd) { fds_.push_back(fd); }
    /// Under hold().
    void remove(int fd) noexcept { std::erase(fds_, fd); }

private:
    fork_closed_descriptors() {
        fds_.reserve(8);
        ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                         [] { instance().after_fork_in_child(); });
    }

    /// Only close(), which is async-signal-safe: the child of a multi-threaded process may do
    /// nothing else before it execs. The descriptors are the parent's locks; clear() frees
    /// nothing.
    void after_fork_in_child() noexcept {
        for (const int fd : fds_) ::close(fd);
        fds_.clear();
        mutex_.unlock();
    }

    std::mutex mutex_;
    std::vector<int> fds_;
};

/// Opens the lock file, retrying EINTR.
inline int open_lock_file(io::backend& io, const std::string& path, int flags) {
    int fd = -1;
    do {
        fd = io.open(path.c_str(), flags | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/// The lock file's text: a pid, or nothing. -1 with errno on a read error.
inline int read_lock_text(io::backend& io, int fd, std::string& text) {
    char buf[32] = {};
    const ::ssize_t n = io.pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) return -1;
    text.assign(buf, static_cast<std::size_t>(n));
    return 0;
}

inline std::optional<lock_holder> holder_of(const std::string& text) {
    const auto pid = parse_int(text);
    if (!pid || *pid <= 0) return std::nullopt;
    lock_holder h;
    h.pid = *pid;
    h.this_process = *pid == static_cast<std::int64_t>(::getpid());
    h.running = h.this_process || ::kill(static_cast<::pid_t>(*pid), 0) == 0 || errno == EPERM;
    return h;
}

} // namespace detail

CKPT_INLINE directory_lock::directory_lock(const std::filesystem::path& dir,
                                           const std::string& prefix, io::backend& io)
    : path_(dir / (prefix + ".lock")), io_(&io), owner_(::getpid()) {
    detail::create_directories(dir, io);
    const std::string path = path_.string();
    detail::fork_closed_descriptors& forked = detail::fork_closed_descriptors::instance();
    const std::unique_lock hold = forked.hold(); // no fork() from the open to the add()
    const int fd = detail::open_lock_file(io, path, O_RDWR | O_CREAT);
    if (fd < 0) {
        const int e = errno;
        detail::throw_io(errc::io_open, "create lock file", path, e,
                         "the directory cannot be written");
    }
    if (io.lock(fd) != 0) {
        const int e = errno;
        std::string text;
        const bool read = detail::read_lock_text(io, fd, text) == 0;
        io.close(fd);
        if (e != EWOULDBLOCK && e != EAGAIN) {
            detail::throw_io(errc::io_open, "lock", path, e, "the lock could not be taken");
        }
        const std::optional<lock_holder> h = read ? detail::holder_of(text) : std::nullopt;
        const std::string owner = h ? std::to_string(h->pid) : "?";
        detail::throw_error<usage_error>(
            errc::usage_directory_locked,
            "directory '" + dir.string() + "' is in use by another ckpt::manager (pid " + owner +
                (h && h->this_process ? ", this process" : "") +
                "); two managers on one directory would delete each other's checkpoints");
    }
    const std::string pid = std::to_string(::getpid());
    if (io.truncate(fd, 0) != 0 ||
        io.pwrite(fd, pid.data(), pid.size(), 0) != static_cast<::ssize_t>(pid.size())) {
        const int e = errno;
        io.unlock(fd);
        io.close(fd);
        detail::throw_io(errc::io_write, "write lock file", path, e,
                         "the directory cannot be written");
    }
    try {
        forked.add(fd);
    } catch (...) {
        (void)io.truncate(fd, 0);
        io.unlock(fd);
        io.close(fd);
        throw;
    }
    fd_ = fd;
}

CKPT_INLINE directory_lock::directory_lock(directory_lock&& other) noexcept
    : path_(std::move(other.path_)), io_(other.io_), fd_(std::exchange(other.fd_, -1)),
      owner_(other.owner_) {}

CKPT_INLINE directory_lock& directory_lock::operator=(directory_lock&& other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        io_ = other.io_;
        fd_ = std::exchange(other.fd_, -1);
        owner_ = other.owner_;
    }
    return *this;
}

CKPT_INLINE directory_lock::~directory_lock() {
    release();
}

CKPT_INLINE void directory_lock::release() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    // A copy in a child of fork(): its descriptor was closed at the fork (the number may name
    // another file by now), and the lock, shared with the parent, is the parent's to release.
    if (owner_ != static_cast<std::int64_t>(::getpid())) return;
    detail::fork_closed_descriptors& forked = detail::fork_closed_descriptors::instance();
    const std::unique_lock hold = forked.hold(); // no fork() from the remove() to the close
    forked.remove(fd);
    // Emptied while still held: a reader then never takes a released lock's pid for a holder.
    (void)io_->truncate(fd, 0);
    (void)io_->unlock(fd);
    (void)io_->close(fd);
}

CKPT_INLINE std::optional<lock_holder>
read_lock_holder(const std::filesystem::path& dir, const std::string& prefix, io::backend& io) {
    const std::string path = (dir / (prefix + ".lock")).string();
    const int fd = detail::open_lock_file(io, path, O_RDONLY);
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT) return std::nullopt;
        detail::throw_io(errc::io_open, "open lock file", path, e);
    }
    std::string text;
    const int rc = detail::read_lock_text(io, fd, text);
    const int e = errno;
    io.close(fd);
    if (rc != 0) detail::throw_io(errc::io_read, "read lock file", path, e);
    return detail::holder_of(text);
}

} // namespace ckpt
// end ckpt/manager/lock-inl.hpp
#endif
// end ckpt/manager/lock.hpp

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// One checkpoint in a manager's directory.
struct checkpoint_entry {
    std::filesystem::path path{};
    std::int64_t step = 0;
    std::int64_t epoch = 0;
    std::chrono::system_clock::time_point time{};
    std::map<std::string, double> metrics{};
    std::uint64_t bytes = 0;
    bool latest = false; ///< the newest, by the step recorded in it
    bool best = false;   ///< the best by a metric a policy or retention ranks
    /// A distributed checkpoint: `path` is a directory of rank files and a manifest (bytes:
    /// all of them), written by ckpt::mpi.
    bool distributed = false;

    friend bool operator==(const checkpoint_entry&, const checkpoint_entry&) = default;
};

/// A checkpoint restore passed over, and why.
struct skipped_checkpoint {
    std::filesystem::path path{};
    int error_id = 0;   ///< the ckpt error id loading it gave
    std::string reason; ///< the error's message

    friend bool operator==(const skipped_checkpoint&, const skipped_checkpoint&) = default;
};

/// How scan_directory reads a directory: the names a manager with these options writes.
struct directory_options {
    std::string prefix = "ckpt";    ///< checkpoints are <prefix>-<step>.ckpt
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    ckpt::limits limits{};          ///< caps on what a header may declare
};

/// What a directory of checkpoints holds, as a manager with the same prefix sees it.
struct directory_listing {
    std::filesystem::path directory{};
    /// The checkpoints that read (header and metadata; the tensors are not verified), oldest
    /// step first; the newest is marked `latest`. `best` is left false: which metric ranks
    /// them is the manager's to say.
    std::vector<checkpoint_entry> checkpoints{};
    /// Damaged checkpoints: files of this prefix's names that start like every file ckpt
    /// writes (or whose first bytes cannot be read at all) but whose header does not read, with
    /// the error. A manager skips them, never deletes them, and restore reports them in
    /// skipped(); a new save of the same step may replace one.
    std::vector<skipped_checkpoint> unreadable{};
    /// Foreign files: files of this prefix's names that are not ckpt files at all (a text file,
    /// a safetensors file ckpt did not write, a file too short to start like one). Not in
    /// `unreadable`: a manager ignores them (manager::foreign()), never deletes them and never
    /// writes over them (a save of such a step is usage error 604).
    std::vector<std::filesystem::path> foreign{};
    /// Temporary files a save that died left (<prefix>-<step>.ckpt.tmp-<pid>-<n>): a manager
    /// removes them when it starts.
    std::vector<std::filesystem::path> temporaries{};
    /// Distributed checkpoint directories (<prefix>-<step>/) without a committed manifest: a
    /// distributed save died before its commit point, so they are no checkpoint. The
    /// distributed manager removes them when it starts.
    std::vector<std::filesystem::path> incomplete{};
    /// Every other name: other prefixes, other files, subdirectories, symbolic links (a manager
    /// never follows one). The lock file is not among them.
    std::vector<std::filesystem::path> others{};
    /// Who holds the directory's lock (or held it and died), from the lock file.
    std::optional<lock_holder> lock{};
    /// The checkpoints' bytes, together.
    [[nodiscard]] std::uint64_t checkpoint_bytes() const noexcept;
};

/// Reads a manager's directory: every list is sorted by name, except the checkpoints (by step).
/// Takes no lock and changes nothing, so it can run beside a manager that holds the directory
/// (what that manager commits or deletes meanwhile may or may not show).
/// @throws io_error (the directory does not exist or cannot be listed), usage_error (an empty
/// prefix or one with '/')
directory_listing scan_directory(const std::filesystem::path& dir,
                                 const directory_options& options = {});

namespace detail {

/// "<prefix>-<step, 12 digits at least>.ckpt": the name a manager gives a checkpoint.
std::string checkpoint_file_name(std::string_view prefix, std::int64_t step);

/// "<prefix>-<step, 12 digits at least>": the directory a distributed manager gives one.
std::string checkpoint_dir_name(std::string_view prefix, std::int64_t step);

/// The entry of a committed distributed checkpoint, from its manifest.
/// @throws io_error, corrupt_error, limit_error, version_error
checkpoint_entry read_distributed_entry(const std::filesystem::path& dir, io::backend& io,
                                        const limits& lim);

/// Step of a file named <prefix>-<digits><suffix>, or nothing.
std::optional<std::int64_t> step_of_name(std::string_view name, std::string_view prefix,
                                         std::string_view suffix);

/// "<pid>-<n>", the tail of atomic_file's temporary names.
bool is_temp_suffix(std::string_view s);

/// Whether the file starts like every file ckpt writes (a length, then ckpt's checksum key);
/// nothing when its first bytes cannot be read (open or pread failed).
std::optional<bool> has_ckpt_prefix(const std::filesystem::path& p, io::backend& io);

/// Throws usage_error when `prefix` cannot name files.
void check_prefix(const std::string& prefix, std::string_view who);

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/manager/directory-inl.hpp


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
// end ckpt/manager/directory-inl.hpp
#endif
// end ckpt/manager/directory.hpp
// begin ckpt/manager/policy_state.hpp

// begin ckpt/manager/selection.hpp

// begin ckpt/policy/retention.hpp


// begin ckpt/policy/save_policy.hpp



#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

/// Which way a metric improves.
enum class goal { minimize, maximize };

/// True when `v` is better than `than` by more than `min_delta`; NaN is never better.
[[nodiscard]] inline bool improves(double v, double than, goal g, double min_delta = 0.0) noexcept {
    if (std::isnan(v)) return false;
    if (std::isnan(than)) return true;
    return g == goal::minimize ? v < than - min_delta : v > than + min_delta;
}

namespace detail {

struct rule_every_steps {
    std::int64_t n;
    std::int64_t last = 0; ///< step of this rule's last save
};
struct rule_every_time {
    std::chrono::nanoseconds period;
    std::chrono::system_clock::time_point last{}; ///< time of this rule's last save (or start)
};
struct rule_on_best {
    std::string metric;
    goal direction;
    double min_delta;
    std::optional<double> best{}; ///< best value saved so far
    std::int64_t best_step = 0;
};
struct rule_at_steps {
    std::vector<std::int64_t> steps; ///< sorted
};
struct rule_on_request {
    std::atomic<bool>* flag;
};

/// What a save costs the training loop, smoothed over recent saves: an exponentially weighted
/// mean, C_1 = c_1, C_k = C_(k-1) + (c_k - C_(k-1)) / 4. A lasting change (a larger state, a
/// slower disk) is mostly taken in within 4 saves; one slow save moves C by a quarter of the
/// difference.
struct save_cost {
    double seconds = 0;       ///< C, the smoothed cost
    double last = 0;          ///< the cost of the last save measured
    std::int64_t samples = 0; ///< saves measured; 0: C is not known yet
};
inline constexpr double save_cost_weight = 0.25;

/// Adds the cost of one save (seconds >= 0) to `c`.
void add_sample(save_cost& c, double seconds) noexcept;

/// Daly's (2006) interval of compute between saves that minimises the expected total time, for
/// a save costing `cost` and a mean time between failures `mtbf` (seconds): for C < 2M,
/// sqrt(2CM) [1 + sqrt(C/2M)/3 + (C/2M)/9] - C, else M.
[[nodiscard]] double daly_interval(double cost, double mtbf) noexcept;

/// The least compute between saves that keeps the time spent saving at or under `fraction` of
/// the wall time: C / (T + C) <= f when T >= C (1 - f) / f.
[[nodiscard]] double budget_interval(double cost, double fraction) noexcept;

struct rule_every_optimal {
    double mtbf;                                      ///< M, seconds
    save_cost cost{};                                 ///< C as measured
    double interval = 0;                              ///< daly_interval(C, M), seconds
    std::chrono::system_clock::time_point last_end{}; ///< end of the last save (or start)
};
struct rule_overhead_at_most {
    double fraction;                                  ///< f, in (0, 1)
    save_cost cost{};                                 ///< C as measured
    double interval = 0;                              ///< budget_interval(cost.last, f), seconds
    std::chrono::system_clock::time_point last_end{}; ///< end of the last save (or start)
};
using save_rule = std::variant<rule_every_steps, rule_every_time, rule_on_best, rule_at_steps,
                               rule_on_request, rule_every_optimal, rule_overhead_at_most>;

/// A rule's identity in a checkpoint's metadata: its kind and parameters, so that state saved
/// under one configuration is never applied to another.
std::string rule_key(const save_rule& r);

} // namespace detail

/// When to save: a union of rules, each of which can fire on a step. Build one with
/// every_steps(), every(), on_best(), at_steps(), on_request(), every_optimal(),
/// overhead_at_most(), and combine with | or any_of().
class save_policy {
public:
    save_policy() = default;
    explicit save_policy(detail::save_rule r) { rules_.push_back(std::move(r)); }

    /// Fires when either fires.
    friend save_policy operator|(save_policy a, const save_policy& b) {
        a.rules_.insert(a.rules_.end(), b.rules_.begin(), b.rules_.end());
        return a;
    }

    [[nodiscard]] const std::vector<detail::save_rule>& rules() const noexcept { return rules_; }
    [[nodiscard]] std::vector<detail::save_rule>& rules() noexcept { return rules_; }

private:
    std::vector<detail::save_rule> rules_;
};

/// Every `n` steps: at steps n, 2n, ... counted from this rule's last save (n > 0).
/// @throws usage_error
save_policy every_steps(std::int64_t n);

/// Every `period` of wall-clock time since this rule's last save (or the manager's start).
/// @throws usage_error
template <class Rep, class Period>
save_policy every(std::chrono::duration<Rep, Period> period) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(period);
    if (ns.count() <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument, "every(): the period must be > 0");
    }
    return save_policy(detail::rule_every_time{ns});
}

/// At the interval that minimises the expected total time of a run whose failures come every
/// `mtbf` on average (Daly's; see detail::daly_interval): fires when the time since the end of
/// the last save (of any rule, or since the manager's start) reaches the interval for the
/// measured cost C of a save. C is what the training loop lost per save (sync: the save; async:
/// the stall, including any wait for the save before), smoothed (detail::save_cost), and measured
/// on manager_options::clock when one is given, else on steady_clock. Until a save has been
/// measured, it fires at once, to measure one. C and the interval are kept in the checkpoints'
/// policy state, so a restart does not measure again; the interval then counts from the restart.
/// @throws usage_error (mtbf <= 0)
template <class Rep, class Period>
save_policy every_optimal(std::chrono::duration<Rep, Period> mtbf) {
    const double seconds = std::chrono::duration<double>(mtbf).count();
    if (!(seconds > 0) || !std::isfinite(seconds)) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "every_optimal(): the mean time between failures must "
                                         "be > 0");
    }
    return save_policy(detail::rule_every_optimal{seconds});
}

/// As often as the time spent saving stays at or under `fraction` of the wall time: fires when
/// the time T since the end of the last save reaches c (1 - fraction) / fraction, c the cost of
/// that save, measured as for every_optimal() but not smoothed: each save is paid for by the
/// compute after it, so c / (T + c) <= fraction holds for every save and the compute after it,
/// and so for the whole run, however the cost varies (one slow save is followed by a long
/// interval). Until a save has been measured, it fires at once. The cost survives restarts.
/// @throws usage_error (fraction not in (0, 1))
save_policy overhead_at_most(double fraction);

/// When metric `name` improves on the best value saved so far by more than `min_delta`
/// ("best loss"). NaN never improves. The best value survives restarts.
save_policy on_best(std::string name, goal direction = goal::minimize, double min_delta = 0.0);

/// At exactly these steps.
save_policy at_steps(std::vector<std::int64_t> steps);

/// When `flag` is set (say, by a SIGTERM or SIGUSR1 handler before preemption); the manager
/// clears it when it saves. The flag must outlive the manager.
save_policy on_request(std::atomic<bool>& flag);

/// Fires when any of `policies` fires.
template <class... Policies>
save_policy any_of(save_policy first, const Policies&... rest) {
    ((first = first | rest), ...);
    return first;
}

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/policy/save_policy-inl.hpp


#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

namespace detail {

CKPT_INLINE void add_sample(save_cost& c, double seconds) noexcept {
    c.seconds = c.samples == 0 ? seconds : c.seconds + (seconds - c.seconds) * save_cost_weight;
    c.last = seconds;
    c.samples += 1;
}

CKPT_INLINE double daly_interval(double cost, double mtbf) noexcept {
    if (cost >= 2 * mtbf) return mtbf;
    const double x = cost / (2 * mtbf);
    return std::sqrt(2 * cost * mtbf) * (1 + std::sqrt(x) / 3 + x / 9) - cost;
}

CKPT_INLINE double budget_interval(double cost, double fraction) noexcept {
    return cost * (1 - fraction) / fraction;
}

CKPT_INLINE std::string rule_key(const save_rule& r) {
    return std::visit(
        [](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, rule_every_steps>) {
                return "every_steps(" + std::to_string(x.n) + ")";
            } else if constexpr (std::is_same_v<T, rule_every_time>) {
                return "every(" + std::to_string(x.period.count()) + "ns)";
            } else if constexpr (std::is_same_v<T, rule_on_best>) {
                return "on_best(" + x.metric + "," +
                       (x.direction == goal::minimize ? "min" : "max") + "," +
                       format_double(x.min_delta) + ")";
            } else if constexpr (std::is_same_v<T, rule_at_steps>) {
                return "at_steps";
            } else if constexpr (std::is_same_v<T, rule_every_optimal>) {
                return "every_optimal(" + format_double(x.mtbf) + "s)";
            } else if constexpr (std::is_same_v<T, rule_overhead_at_most>) {
                return "overhead_at_most(" + format_double(x.fraction) + ")";
            } else {
                return "on_request";
            }
        },
        r);
}

} // namespace detail

CKPT_INLINE save_policy every_steps(std::int64_t n) {
    if (n <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "every_steps(" + std::to_string(n) + "): n must be > 0");
    }
    return save_policy(detail::rule_every_steps{n});
}

CKPT_INLINE save_policy overhead_at_most(double fraction) {
    if (!(fraction > 0 && fraction < 1)) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "overhead_at_most(" + detail::format_double(fraction) +
                                             "): the fraction must be in (0, 1)");
    }
    return save_policy(detail::rule_overhead_at_most{fraction});
}

CKPT_INLINE save_policy on_best(std::string name, goal direction, double min_delta) {
    return save_policy(detail::rule_on_best{std::move(name), direction, min_delta});
}

CKPT_INLINE save_policy at_steps(std::vector<std::int64_t> steps) {
    std::sort(steps.begin(), steps.end());
    return save_policy(detail::rule_at_steps{std::move(steps)});
}

CKPT_INLINE save_policy on_request(std::atomic<bool>& flag) {
    return save_policy(detail::rule_on_request{&flag});
}

} // namespace ckpt
// end ckpt/policy/save_policy-inl.hpp
#endif
// end ckpt/policy/save_policy.hpp

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt {

namespace detail {
struct keep_last_rule {
    std::size_t k;
};
struct keep_best_rule {
    std::size_t k;
    std::string metric;
    goal direction;
};
struct keep_every_steps_rule {
    std::int64_t n;
};
struct keep_every_time_rule {
    std::chrono::nanoseconds period;
};
struct keep_all_rule {};
using keep_rule = std::variant<keep_last_rule, keep_best_rule, keep_every_steps_rule,
                               keep_every_time_rule, keep_all_rule>;
} // namespace detail

/// What to keep: a union of rules; a checkpoint that no rule keeps is deleted once a newer one
/// is committed. The newest checkpoint and the best one are always kept as well.
class retention {
public:
    retention() = default;
    explicit retention(detail::keep_rule r) { rules_.push_back(std::move(r)); }

    /// Keeps what either keeps.
    friend retention operator|(retention a, const retention& b) {
        a.rules_.insert(a.rules_.end(), b.rules_.begin(), b.rules_.end());
        return a;
    }

    [[nodiscard]] const std::vector<detail::keep_rule>& rules() const noexcept { return rules_; }

private:
    std::vector<detail::keep_rule> rules_;
};

/// The `k` newest checkpoints (by the step recorded in them).
retention keep_last(std::size_t k);

/// The `k` best by metric `name`; checkpoints without it, or with NaN, never rank.
retention keep_best(std::size_t k, std::string name, goal direction = goal::minimize);

/// One checkpoint per `n` steps: the earliest in each span [i*n, (i+1)*n). @throws usage_error
retention keep_every_steps(std::int64_t n);

/// One checkpoint per `period` of wall-clock time: the earliest in each span. @throws usage_error
template <class Rep, class Period>
retention keep_every(std::chrono::duration<Rep, Period> period) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(period);
    if (ns.count() <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "keep_every(): the period must be > 0");
    }
    return retention(detail::keep_every_time_rule{ns});
}

/// Every checkpoint.
retention keep_all();

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/policy/retention-inl.hpp


#include <string>
#include <utility>

namespace ckpt {

CKPT_INLINE retention keep_last(std::size_t k) {
    return retention(detail::keep_last_rule{k});
}

CKPT_INLINE retention keep_best(std::size_t k, std::string name, goal direction) {
    return retention(detail::keep_best_rule{k, std::move(name), direction});
}

CKPT_INLINE retention keep_every_steps(std::int64_t n) {
    if (n <= 0) {
        detail::throw_error<usage_error>(
            errc::usage_argument, "keep_every_steps(" + std::to_string(n) + "): n must be > 0");
    }
    return retention(detail::keep_every_steps_rule{n});
}

CKPT_INLINE retention keep_all() {
    return retention(detail::keep_all_rule{});
}

} // namespace ckpt
// end ckpt/policy/retention-inl.hpp
#endif
// end ckpt/policy/retention.hpp

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// Metrics checkpoints are ranked by, each with the way it improves.
using ranked_metrics = std::vector<std::pair<std::string, goal>>;

/// Indices of `entries` sorted best first by `metric` (a tie goes to the newer step); entries
/// without it, or with NaN, left out.
std::vector<std::size_t> ranked(const std::vector<checkpoint_entry>& entries,
                                const std::string& metric, goal direction);

/// Indices of `entries`, newest step first.
std::vector<std::size_t> newest_first(const std::vector<checkpoint_entry>& entries);

/// Which entries retention keeps: the union of its rules, the newest, and the best by every
/// metric in `always_best`. Pure: the same files give the same answer, before and after a
/// restart.
std::vector<bool> select_kept(const std::vector<checkpoint_entry>& entries, const retention& keep,
                              const ranked_metrics& always_best);

/// Adds `metric` to `metrics` once. @throws usage_error (it is there, ranked the other way)
void add_ranked(ranked_metrics& metrics, const std::string& metric, goal direction);

/// A manager's index as list() shows it: oldest step first, the newest marked `latest`, the
/// best by each of `metrics` marked `best`.
std::vector<checkpoint_entry> listed(std::vector<checkpoint_entry> entries,
                                     const ranked_metrics& metrics);

/// The metrics a policy and a retention rank checkpoints by, in that order.
ranked_metrics ranked_by(const save_policy& policy, const retention& keep);

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/manager/selection-inl.hpp


#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE std::vector<std::size_t> ranked(const std::vector<checkpoint_entry>& entries,
                                            const std::string& metric, goal direction) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto it = entries[i].metrics.find(metric);
        if (it != entries[i].metrics.end() && !std::isnan(it->second)) idx.push_back(i);
    }
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
        const double va = entries[a].metrics.at(metric);
        const double vb = entries[b].metrics.at(metric);
        if (va != vb) return direction == goal::minimize ? va < vb : va > vb;
        return entries[a].step > entries[b].step; // a tie goes to the newer
    });
    return idx;
}

CKPT_INLINE std::vector<std::size_t> newest_first(const std::vector<checkpoint_entry>& entries) {
    std::vector<std::size_t> order(entries.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return entries[a].step > entries[b].step;
    });
    return order;
}

CKPT_INLINE std::vector<bool> select_kept(const std::vector<checkpoint_entry>& entries,
                                          const retention& keep,
                                          const ranked_metrics& always_best) {
    std::vector<bool> kept(entries.size(), false);
    if (entries.empty()) return kept;
    const std::vector<std::size_t> by_step = newest_first(entries);
    kept[by_step.front()] = true; // the newest, always
    for (const auto& [metric, direction] : always_best) {
        const auto order = ranked(entries, metric, direction);
        if (!order.empty()) kept[order.front()] = true; // the best, always
    }
    const auto earliest_per_bucket = [&](auto bucket_of) {
        std::map<std::int64_t, std::size_t> first;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const std::int64_t b = bucket_of(entries[i]);
            const auto it = first.find(b);
            if (it == first.end() || entries[i].step < entries[it->second].step) first[b] = i;
        }
        for (const auto& [b, i] : first) kept[i] = true;
    };
    for (const auto& rule : keep.rules()) {
        std::visit(
            [&](const auto& r) {
                using R = std::decay_t<decltype(r)>;
                if constexpr (std::is_same_v<R, keep_last_rule>) {
                    for (std::size_t i = 0; i < r.k && i < by_step.size(); ++i)
                        kept[by_step[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_best_rule>) {
                    const auto order = ranked(entries, r.metric, r.direction);
                    for (std::size_t i = 0; i < r.k && i < order.size(); ++i) kept[order[i]] = true;
                } else if constexpr (std::is_same_v<R, keep_every_steps_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) { return e.step / r.n; });
                } else if constexpr (std::is_same_v<R, keep_every_time_rule>) {
                    earliest_per_bucket([&](const checkpoint_entry& e) {
                        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            e.time.time_since_epoch());
                        const auto q = ns.count() / r.period.count();
                        return ns.count() < 0 && ns.count() % r.period.count() != 0 ? q - 1 : q;
                    });
                } else {
                    std::fill(kept.begin(), kept.end(), true);
                }
            },
            rule);
    }
    return kept;
}

CKPT_INLINE void add_ranked(ranked_metrics& metrics, const std::string& metric, goal direction) {
    for (const auto& [m, d] : metrics) {
        if (m == metric) {
            if (d != direction) {
                throw_error<usage_error>(errc::usage_argument,
                                         "manager: metric '" + metric +
                                             "' is ranked both ways (minimize and maximize)");
            }
            return;
        }
    }
    metrics.emplace_back(metric, direction);
}

CKPT_INLINE ranked_metrics ranked_by(const save_policy& policy, const retention& keep) {
    ranked_metrics out;
    for (const auto& rule : policy.rules()) {
        if (const auto* b = std::get_if<rule_on_best>(&rule))
            add_ranked(out, b->metric, b->direction);
    }
    for (const auto& rule : keep.rules()) {
        if (const auto* b = std::get_if<keep_best_rule>(&rule))
            add_ranked(out, b->metric, b->direction);
    }
    return out;
}

CKPT_INLINE std::vector<checkpoint_entry> listed(std::vector<checkpoint_entry> entries,
                                                 const ranked_metrics& metrics) {
    std::sort(entries.begin(), entries.end(),
              [](const checkpoint_entry& a, const checkpoint_entry& b) { return a.step < b.step; });
    if (!entries.empty()) entries.back().latest = true;
    for (const auto& [metric, direction] : metrics) {
        const auto order = ranked(entries, metric, direction);
        if (!order.empty()) entries[order.front()].best = true;
    }
    return entries;
}

} // namespace ckpt::detail
// end ckpt/manager/selection-inl.hpp
#endif
// end ckpt/manager/selection.hpp

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt::detail {

/// Tags of a checkpoint that hold its policy's state: ckpt.policy.<rule_key>.
inline constexpr std::string_view policy_tag_prefix = "ckpt.policy.";

/// The state a rule carries from one run to the next, as text; empty for none.
std::string encode_rule_state(const save_rule& r);

/// Applies a rule's saved state; false when the text does not parse (the rule is left alone).
bool decode_rule_state(save_rule& r, std::string_view text);

/// Whether `rule` fires at `meta` (time `t`). An on_best rule's metric must be in `meta`.
bool fires(const save_rule& rule, const metadata& meta, std::chrono::system_clock::time_point t);

/// What `rule` remembers of a save at `meta` (time `t`).
void advance(save_rule& rule, const metadata& meta, std::chrono::system_clock::time_point t);

/// What a cost-aware rule (every_optimal, overhead_at_most) learns from a save taken, whichever
/// rule fired: it cost the training loop `seconds`, and ended at `end`. Others ignore it.
void measured(save_rule& rule, double seconds, std::chrono::system_clock::time_point end);

/// The compute time between saves a cost-aware rule aims for, in seconds; nullopt for another
/// rule, or before its first save is measured.
std::optional<double> target_interval(const save_rule& rule);

/// A save policy as a manager runs it: which rules fire on a step, what they remember of the
/// saves taken, and how that memory travels in a checkpoint's tags to the next run.
class policy_state {
public:
    /// The rules, and which fired on the last step asked, to put back when a save fails.
    struct snapshot {
        std::vector<save_rule> rules;
        std::vector<char> fired;
    };

    explicit policy_state(save_policy policy);

    [[nodiscard]] const save_policy& policy() const noexcept { return policy_; }
    /// Some rule reads the wall clock (every()).
    [[nodiscard]] bool uses_clock() const noexcept { return uses_clock_; }

    /// Every time rule counts from `t`.
    void start(std::chrono::system_clock::time_point t);
    /// A save was taken: see detail::measured.
    void measured(double seconds, std::chrono::system_clock::time_point end);
    /// The smallest target_interval of the rules; nullopt when none has one.
    [[nodiscard]] std::optional<double> target_interval() const;
    /// Asks every rule about this step. @returns whether one fires
    bool ask(const metadata& meta, std::chrono::system_clock::time_point t);
    /// As if no rule fired (a forced save).
    void clear_fired();
    /// The rules as they will be after a save at `meta`: the fired ones advanced, their keys
    /// appended to `reasons`.
    [[nodiscard]] std::vector<save_rule> advanced(const metadata& meta,
                                                  std::chrono::system_clock::time_point t,
                                                  std::vector<std::string>& reasons) const;
    /// Writes the state of the rules `after` into the tags of the checkpoint they describe.
    static void write_tags(const std::vector<save_rule>& after, metadata& stored);
    /// The save is taken: the rules become `after`; an on_request flag is cleared unless the
    /// save was forced (then no rule fired).
    void commit(std::vector<save_rule>&& after, bool forced);

    [[nodiscard]] snapshot save() const { return {policy_.rules(), fired_}; }
    /// A save taken at `before` failed: the rules go back, so that they ask again, and the
    /// on_request flags that fired are set again.
    void roll_back(snapshot&& before);

    /// Puts the rules where they were when `meta` was saved; a rule the checkpoint holds no
    /// state for (the policy changed) starts from the checkpoint's step and time, and an on_best
    /// rule from the best of `index`. A cost-aware rule takes the checkpoint's measured cost only
    /// while it has measured none itself (the cost is the machine's, not the training state's),
    /// and counts its interval from its own start or last save, not the checkpoint's: the work
    /// since the checkpoint was lost with the run that did it.
    void restore(const metadata& meta, const std::vector<checkpoint_entry>& index);

private:
    save_policy policy_;
    std::vector<char> fired_;
    bool uses_clock_ = false;
};

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
// begin ckpt/manager/policy_state-inl.hpp


#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ckpt::detail {

namespace cost_rules {

// A cost-aware rule's state: "none" before a save is measured, else
// "<C> <last save's cost> <saves> <interval>" (seconds). The interval is recomputed from the
// costs when read back; it is written for people reading the tags.
template <class Rule>
std::string encode_cost_state(const Rule& r) {
    if (r.cost.samples == 0) return "none";
    return format_double(r.cost.seconds) + " " + format_double(r.cost.last) + " " +
           std::to_string(r.cost.samples) + " " + format_double(r.interval);
}

template <class Rule>
bool decode_cost_state(Rule& r, std::string_view text) {
    if (text == "none") {
        r.cost = {};
        r.interval = 0;
        return true;
    }
    std::string_view fields[4];
    std::string_view rest = text;
    for (std::size_t i = 0; i < 4; ++i) {
        const auto space = rest.find(' ');
        if ((space == std::string_view::npos) != (i == 3)) return false; // 4 fields, no more
        fields[i] = rest.substr(0, space);
        if (space != std::string_view::npos) rest = rest.substr(space + 1);
    }
    const auto cost = parse_double(fields[0]);
    const auto last = parse_double(fields[1]);
    const auto samples = parse_int(fields[2]);
    const auto interval = parse_double(fields[3]);
    const auto valid = [](std::optional<double> v) { return v && std::isfinite(*v) && *v >= 0; };
    if (!valid(cost) || !valid(last) || !samples || *samples < 1 || !interval) return false;
    r.cost = {*cost, *last, *samples};
    return true;
}

inline double interval_for(const rule_every_optimal& r) {
    return daly_interval(r.cost.seconds, r.mtbf);
}
inline double interval_for(const rule_overhead_at_most& r) {
    return budget_interval(r.cost.last, r.fraction);
}

template <class Rule>
bool cost_rule_fires(const Rule& r, std::chrono::system_clock::time_point t) {
    if (r.cost.samples == 0) return true; // to measure a save
    return std::chrono::duration<double>(t - r.last_end).count() >= r.interval;
}

} // namespace cost_rules

CKPT_INLINE std::string encode_rule_state(const save_rule& r) {
    if (const auto* s = std::get_if<rule_every_steps>(&r)) return std::to_string(s->last);
    if (const auto* t = std::get_if<rule_every_time>(&r)) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t->last.time_since_epoch())
                .count());
    }
    if (const auto* b = std::get_if<rule_on_best>(&r)) {
        return b->best ? format_double(*b->best) + " " + std::to_string(b->best_step) : "none";
    }
    if (const auto* o = std::get_if<rule_every_optimal>(&r))
        return cost_rules::encode_cost_state(*o);
    if (const auto* f = std::get_if<rule_overhead_at_most>(&r))
        return cost_rules::encode_cost_state(*f);
    return {};
}

CKPT_INLINE bool decode_rule_state(save_rule& r, std::string_view text) {
    if (auto* s = std::get_if<rule_every_steps>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        s->last = *v;
        return true;
    }
    if (auto* t = std::get_if<rule_every_time>(&r)) {
        const auto v = parse_int(text);
        if (!v) return false;
        t->last = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::nanoseconds(*v)));
        return true;
    }
    if (auto* b = std::get_if<rule_on_best>(&r)) {
        if (text == "none") {
            b->best.reset();
            return true;
        }
        const auto space = text.find(' ');
        if (space == std::string_view::npos) return false;
        const auto v = parse_double(text.substr(0, space));
        const auto step = parse_int(text.substr(space + 1));
        if (!v || !step) return false;
        b->best = *v;
        b->best_step = *step;
        return true;
    }
    if (auto* o = std::get_if<rule_every_optimal>(&r)) {
        if (!cost_rules::decode_cost_state(*o, text)) return false;
        o->interval = o->cost.samples == 0 ? 0 : cost_rules::interval_for(*o);
        return true;
    }
    if (auto* f = std::get_if<rule_overhead_at_most>(&r)) {
        if (!cost_rules::decode_cost_state(*f, text)) return false;
        f->interval = f->cost.samples == 0 ? 0 : cost_rules::interval_for(*f);
        return true;
    }
    return true;
}

CKPT_INLINE bool fires(const save_rule& rule, const metadata& meta,
                       std::chrono::system_clock::time_point t) {
    if (const auto* s = std::get_if<rule_every_steps>(&rule)) return meta.step - s->last >= s->n;
    if (const auto* e = std::get_if<rule_every_time>(&rule)) return t - e->last >= e->period;
    if (const auto* b = std::get_if<rule_on_best>(&rule)) {
        const double v = meta.metrics.find(b->metric)->second;
        return !std::isnan(v) && (!b->best || improves(v, *b->best, b->direction, b->min_delta));
    }
    if (const auto* a = std::get_if<rule_at_steps>(&rule)) {
        return std::binary_search(a->steps.begin(), a->steps.end(), meta.step);
    }
    if (const auto* o = std::get_if<rule_every_optimal>(&rule))
        return cost_rules::cost_rule_fires(*o, t);
    if (const auto* f = std::get_if<rule_overhead_at_most>(&rule))
        return cost_rules::cost_rule_fires(*f, t);
    return std::get<rule_on_request>(rule).flag->load(std::memory_order_relaxed);
}

CKPT_INLINE void advance(save_rule& rule, const metadata& meta,
                         std::chrono::system_clock::time_point t) {
    if (auto* s = std::get_if<rule_every_steps>(&rule)) s->last = meta.step;
    if (auto* e = std::get_if<rule_every_time>(&rule)) e->last = t;
    if (auto* b = std::get_if<rule_on_best>(&rule)) {
        b->best = meta.metrics.at(b->metric);
        b->best_step = meta.step;
    }
}

CKPT_INLINE void measured(save_rule& rule, double seconds,
                          std::chrono::system_clock::time_point end) {
    const auto learn = [&](auto& r) {
        add_sample(r.cost, seconds);
        r.interval = cost_rules::interval_for(r);
        r.last_end = end;
    };
    if (auto* o = std::get_if<rule_every_optimal>(&rule)) learn(*o);
    if (auto* f = std::get_if<rule_overhead_at_most>(&rule)) learn(*f);
}

CKPT_INLINE std::optional<double> target_interval(const save_rule& rule) {
    if (const auto* o = std::get_if<rule_every_optimal>(&rule); o && o->cost.samples > 0) {
        return o->interval;
    }
    if (const auto* f = std::get_if<rule_overhead_at_most>(&rule); f && f->cost.samples > 0) {
        return f->interval;
    }
    return std::nullopt;
}

CKPT_INLINE policy_state::policy_state(save_policy policy)
    : policy_(std::move(policy)), fired_(policy_.rules().size(), 0) {
    for (const auto& rule : policy_.rules()) {
        uses_clock_ = uses_clock_ || std::holds_alternative<rule_every_time>(rule) ||
                      std::holds_alternative<rule_every_optimal>(rule) ||
                      std::holds_alternative<rule_overhead_at_most>(rule);
    }
}

CKPT_INLINE void policy_state::start(std::chrono::system_clock::time_point t) {
    for (auto& rule : policy_.rules()) {
        if (auto* e = std::get_if<rule_every_time>(&rule)) e->last = t;
        if (auto* o = std::get_if<rule_every_optimal>(&rule)) o->last_end = t;
        if (auto* f = std::get_if<rule_overhead_at_most>(&rule)) f->last_end = t;
    }
}

CKPT_INLINE void policy_state::measured(double seconds, std::chrono::system_clock::time_point end) {
    for (auto& rule : policy_.rules()) detail::measured(rule, seconds, end);
}

CKPT_INLINE std::optional<double> policy_state::target_interval() const {
    std::optional<double> least;
    for (const auto& rule : policy_.rules()) {
        const auto i = detail::target_interval(rule);
        if (i && (!least || *i < *least)) least = i;
    }
    return least;
}

CKPT_INLINE bool policy_state::ask(const metadata& meta, std::chrono::system_clock::time_point t) {
    bool any = false;
    for (std::size_t i = 0; i < fired_.size(); ++i) {
        fired_[i] = fires(policy_.rules()[i], meta, t) ? 1 : 0;
        any = any || fired_[i] != 0;
    }
    return any;
}

CKPT_INLINE void policy_state::clear_fired() {
    std::fill(fired_.begin(), fired_.end(), 0);
}

CKPT_INLINE std::vector<save_rule> policy_state::advanced(const metadata& meta,
                                                          std::chrono::system_clock::time_point t,
                                                          std::vector<std::string>& reasons) const {
    std::vector<save_rule> after = policy_.rules();
    for (std::size_t i = 0; i < after.size(); ++i) {
        if (fired_[i] == 0) continue;
        reasons.push_back(rule_key(after[i]));
        advance(after[i], meta, t);
    }
    return after;
}

CKPT_INLINE void policy_state::write_tags(const std::vector<save_rule>& after, metadata& stored) {
    for (const auto& rule : after) {
        const std::string text = encode_rule_state(rule);
        if (!text.empty()) stored.tags[std::string(policy_tag_prefix) + rule_key(rule)] = text;
    }
}

CKPT_INLINE void policy_state::commit(std::vector<save_rule>&& after, bool forced) {
    policy_.rules() = std::move(after);
    if (forced) return;
    for (auto& rule : policy_.rules()) {
        if (auto* r = std::get_if<rule_on_request>(&rule)) r->flag->store(false);
    }
}

CKPT_INLINE void policy_state::roll_back(snapshot&& before) {
    policy_.rules() = std::move(before.rules);
    for (std::size_t i = 0; i < policy_.rules().size(); ++i) {
        auto* r = std::get_if<rule_on_request>(&policy_.rules()[i]);
        if (r != nullptr && before.fired[i] != 0) r->flag->store(true);
    }
}

CKPT_INLINE void policy_state::restore(const metadata& meta,
                                       const std::vector<checkpoint_entry>& index) {
    for (auto& rule : policy_.rules()) {
        if (detail::target_interval(rule)) continue; // a cost-aware rule that has measured its own
        const auto tag = meta.tags.find(std::string(policy_tag_prefix) + rule_key(rule));
        if (tag != meta.tags.end() && decode_rule_state(rule, tag->second)) continue;
        if (auto* s = std::get_if<rule_every_steps>(&rule)) s->last = meta.step;
        if (auto* t = std::get_if<rule_every_time>(&rule)) t->last = meta.time;
        if (auto* b = std::get_if<rule_on_best>(&rule)) {
            const auto order = ranked(index, b->metric, b->direction);
            if (!order.empty()) {
                b->best = index[order.front()].metrics.at(b->metric);
                b->best_step = index[order.front()].step;
            }
        }
    }
}

} // namespace ckpt::detail
// end ckpt/manager/policy_state-inl.hpp
#endif
// end ckpt/manager/policy_state.hpp

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt {

/// What step(), save_now() or wait() did.
struct save_result {
    bool saved = false;   ///< a checkpoint was written (or, async, its snapshot taken)
    bool pending = false; ///< async: the snapshot is taken; the file is written in the background
    std::string
        skipped{}; ///< async, when_full::skip: why the save the policy asked for was not taken
    std::vector<std::string> reasons{};             ///< the rules that fired, e.g. "every_steps(5)"
    std::filesystem::path path{};                   ///< the checkpoint written (or being written)
    std::vector<std::filesystem::path> committed{}; ///< checkpoints committed during this call
    std::vector<std::filesystem::path> deleted{};   ///< what retention removed after them

    explicit operator bool() const noexcept { return saved; }
};

/// The tradeoff made visible: what checkpointing costs, and what a crash now would lose.
struct manager_stats {
    std::uint64_t checkpoints_written = 0; ///< committed by this manager
    std::uint64_t checkpoints_on_disk = 0;
    std::uint64_t bytes_on_disk = 0;
    /// Time the caller spent in saves (async: taking the snapshots).
    double total_save_seconds = 0;
    double last_save_seconds = 0;
    double total_background_seconds = 0; ///< async: writing, syncing and committing
    std::uint64_t saves_in_flight = 0;   ///< async: staged, not yet committed
    std::uint64_t saves_skipped = 0;     ///< async, when_full::skip: not taken
    std::uint64_t saves_failed = 0;      ///< async: failed in the background (and raised)
    std::int64_t steps_at_risk = 0;      ///< steps since the last committed checkpoint
    double seconds_at_risk = 0;          ///< wall-clock seconds since then
    std::uint64_t delete_failures = 0;   ///< retention could not remove a file (kept, retried)

    // The save-frequency tradeoff (see every_optimal() and overhead_at_most()), in seconds.
    /// C: what a save cost the training loop (sync: the save; async: the stall, including any
    /// wait for room), smoothed over recent saves (detail::save_cost); on the manager's clock
    /// when one is injected, else on steady_clock. 0 before the first save.
    double save_cost_seconds = 0;
    /// T: the compute between saves: the target of the cost-aware rules (the smallest), else
    /// the last observed time from the end of one save to the start of the next.
    double interval_seconds = 0;
    /// R: what the last restore took (the checkpoint's load), the cost of a restart beside the
    /// lost work. 0 before a restore.
    double restart_seconds = 0;
    /// L, async: a save's background write, smoothed as C is. The work since a snapshot is safe
    /// only once its file commits, so it adds to the exposure. 0 when sync.
    double commit_latency_seconds = 0;
    /// The work a failure is expected to cost: (T + C) / 2 + L + R. A failure strikes a cycle of
    /// compute and save of length T + C at a uniform point, losing the time since the start of
    /// the last committed save: half a cycle on average, plus the latency L for the cycles in
    /// which the last save had not committed yet (exact for L < T + C), plus the restart.
    double expected_loss_seconds = 0;
};

/// How a manager names, times and reads its checkpoints.
struct manager_options {
    std::string prefix = "ckpt"; ///< files are <prefix>-<step>.ckpt
    /// Wall clock for time-based policies and retention; nullptr: system_clock::now.
    std::function<std::chrono::system_clock::time_point()> clock{};
    /// Called for every checkpoint a restore passes over (they are also in skipped()).
    std::function<void(const skipped_checkpoint&)> on_skipped{};
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    ckpt::limits limits{};
    /// Save in the background (see async_saver; its backend is the one above): step() returns
    /// once the snapshot is taken. Retention, list() and restores see a checkpoint only once it
    /// is committed; a background error is raised by the next step(), save_now(), wait(),
    /// restore or the destructor.
    std::optional<async_options> async{};
};

/// Checkpoints in one directory: decides when to save (a save_policy), what to keep (a
/// retention), and resumes from the newest good checkpoint. Holds a lock on the directory.
///
///     ckpt::manager m("run", ckpt::every_steps(500) | ckpt::on_best("val_loss"),
///                     ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss"));
///     if (auto meta = m.restore_latest(state)) first_step = meta->step + 1;
///     for (...) { train(state); m.step(state, {.step = s, .metrics = {{"val_loss", v}}}); }
class manager {
public:
    /// Opens (creating it if needed) and locks `dir`, removes temporary files a crashed save of
    /// this manager's naming left, and indexes the checkpoints there.
    /// @throws io_error (the directory cannot be created or written), usage_error 603 (another
    /// manager holds the directory)
    manager(std::filesystem::path dir, save_policy when, retention keep = keep_all(),
            manager_options options = {});
    manager(const manager&) = delete;
    manager& operator=(const manager&) = delete;

    /// Async: waits for the saves in flight and applies retention after them; raises a
    /// background error unless the destructor runs during stack unwinding (then it goes to
    /// stderr). Releases the directory's lock.
    ~manager() noexcept(false);

    /// Call once per training step: saves when the policy fires, then applies retention. Without
    /// a save this is a few comparisons: no system call, no allocation.
    /// @throws usage_error 602 (a metric a policy or retention ranks by is missing), and what
    /// save() throws
    template <class State>
    save_result step(const State& state, const metadata& meta) {
        save_result result;
        std::chrono::system_clock::time_point t{};
        if (begin_step(meta, result, t)) commit(result, state, meta, t, nullptr);
        return result;
    }

    /// Saves now, whatever the policy says (the policy's state still advances for no rule).
    template <class State>
    save_result save_now(const State& state, const metadata& meta) {
        save_result result;
        const auto t = begin_save_now(meta, result);
        commit(result, state, meta, t, "save_now");
        return result;
    }

    /// Async: takes the staging memory for snapshots of `state` now (async_saver::reserve), so
    /// that the first save the policy fires stalls training only for the copy. Call it before
    /// the training loop. Sync: nothing to take. @returns the staging bytes held (0 when sync)
    /// @throws usage_error (605: one snapshot is larger than async_options::max_staging_bytes)
    template <class State>
    std::uint64_t reserve(const State& state) {
        static_assert(is_checkpointable<State>::value,
                      "ckpt::manager::reserve: the state is not checkpointable: give it a cereal "
                      "serialize(Archive&) member or save()/load() functions");
        return engine_ ? engine_->reserve(state) : 0;
    }

    /// Async: blocks until every save so far is committed, then applies retention after them.
    /// Sync: returns at once. @returns what was committed and deleted
    /// @throws the first error of a background save
    save_result wait();

    /// Loads the newest checkpoint that loads cleanly, passing over (and reporting in skipped()
    /// and to options.on_skipped) damaged ones; training continues from it: the policy's state
    /// and the work at risk (stats().steps_at_risk) restart from it. Nothing on disk: nullopt,
    /// and `state` is untouched.
    /// `options` as for ckpt::load (partial restore, renames, the report), except that the
    /// manager's own limits and backend replace its `limits` and `backend`.
    /// @throws schema_error, version_error (the state or the library does not fit the newest
    /// readable checkpoint: falling back past that would hide a bug)
    template <class State>
    std::optional<metadata> restore_latest(State& state, const load_options& options = {}) {
        wait();
        return restore_first(state, detail::newest_first(index_), options, true);
    }

    /// Like restore_latest, from the best checkpoint by `metric` (then the next best, ...):
    /// training continues from it, so the save schedule and the work at risk restart from its
    /// step. To fetch the best weights without that (to evaluate or export them), use load_best.
    template <class State>
    std::optional<metadata> restore_best(State& state, const std::string& metric,
                                         goal direction = goal::minimize,
                                         const load_options& options = {}) {
        wait();
        return restore_first(state, detail::ranked(index_, metric, direction), options, true);
    }

    /// Loads the best checkpoint by `metric` (then the next best, ...) as restore_best does,
    /// read-only: the save schedule, the policy's state and the work at risk stay as they are,
    /// so training goes on from where it is. Damaged files it passes over are reported as by a
    /// restore. @throws as restore_latest
    template <class State>
    std::optional<metadata> load_best(State& state, const std::string& metric,
                                      goal direction = goal::minimize,
                                      const load_options& options = {}) {
        wait();
        return restore_first(state, detail::ranked(index_, metric, direction), options, false);
    }

    /// The checkpoints in the directory, oldest first.
    [[nodiscard]] std::vector<checkpoint_entry> list() const;

    /// What the last restore (and the scan at start) passed over: damaged checkpoints.
    [[nodiscard]] const std::vector<skipped_checkpoint>& skipped() const noexcept {
        return skipped_;
    }

    /// Files with this manager's names that are not ckpt files (directory_listing::foreign):
    /// not in skipped(), never read as checkpoints, deleted or written over.
    [[nodiscard]] const std::vector<std::filesystem::path>& foreign() const noexcept {
        return foreign_;
    }

    /// Temporary files of a crashed save removed at start.
    [[nodiscard]] const std::vector<std::filesystem::path>& cleaned() const noexcept {
        return cleaned_;
    }

    [[nodiscard]] manager_stats stats() const;

    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }

    /// The path a checkpoint of `step` has.
    [[nodiscard]] std::filesystem::path path_of(std::int64_t step) const;

private:
    std::chrono::system_clock::time_point now() const;

    [[noreturn]] static void missing_metric(const metadata& meta, const std::string& metric);

    /// Saves, then on success advances the fired rules, indexes the file and applies retention.
    /// Async: takes the snapshot and advances the rules; the rest happens in collect_finished().
    template <class State>
    void commit(save_result& result, const State& state, const metadata& meta,
                std::chrono::system_clock::time_point t, const char* forced) {
        planned_save plan = plan_save(result, meta, t, forced);
        const stopwatch started = start_watch();
        if (engine_) {
            const async_ticket ticket = engine_->stage(result.path, state, plan.stored);
            staged(result, std::move(plan), ticket, forced, started);
            return;
        }
        plan.entry.bytes = ckpt::save(result.path, state, plan.stored, save_options{io_});
        saved(result, std::move(plan), forced, started);
    }

    /// When a save or a restore began, on both clocks.
    struct stopwatch {
        std::chrono::steady_clock::time_point steady;
        std::chrono::system_clock::time_point clock; ///< the manager's (now())
    };
    stopwatch start_watch() const;
    /// Seconds since `w` on the injected clock when there is one (a test's or a simulation's
    /// time), else on steady_clock (a step of the wall clock does not count); never negative.
    double seconds_since(const stopwatch& w) const;
    /// A save that began at `started` cost the training loop `cost` seconds: the cost-aware
    /// rules, C and T learn it.
    void measured(const stopwatch& started, double cost);

    /// What commit() writes, and the policy's rules after it.
    struct planned_save {
        metadata stored;
        checkpoint_entry entry;
        std::vector<detail::save_rule> after;
    };
    /// Checks the step, advances the fired rules in a copy, and names the file.
    planned_save plan_save(save_result& result, const metadata& meta,
                           std::chrono::system_clock::time_point t, const char* forced);
    /// Hands the checkpoints that retention will delete once `next` is committed to
    /// backend::evict, before the save writes (see apply_retention).
    void evict_victims(const checkpoint_entry& next);
    /// Async: the snapshot is taken (or skipped).
    void staged(save_result& result, planned_save&& plan, const async_ticket& ticket,
                const char* forced, const stopwatch& started);
    /// Sync: the file is committed.
    void saved(save_result& result, planned_save&& plan, const char* forced,
               const stopwatch& started);
    /// step() before its save: checks the metrics, collects background saves, asks the rules.
    /// @returns whether a rule fires (t: the clock's time, when a rule reads it)
    bool begin_step(const metadata& meta, save_result& result,
                    std::chrono::system_clock::time_point& t);
    /// save_now() before its save. @returns the clock's time
    std::chrono::system_clock::time_point begin_save_now(const metadata& meta, save_result& result);
    /// A checkpoint is on disk: it becomes the newest, enters the index, and retention runs.
    void record_committed(checkpoint_entry&& entry, save_result& result);

    /// Async: indexes what the background committed, in order, with retention after each; a
    /// failed save puts the policy back where it was before it, when no later save was taken,
    /// so that the policy asks again. @throws the first background error not raised yet
    void collect_finished(save_result& result);

    /// Deletes what retention does not keep; only indexed files (this manager's names with a
    /// valid ckpt header), and only after the newest save is committed.
    std::vector<std::filesystem::path> apply_retention(const std::filesystem::path& just_written);
    /// Which of `entries` retention keeps: its rules, the newest save (`newest`), and every file
    /// a save in flight replaces. Shared by apply_retention and evict_victims, which asks it
    /// before the save about the index the save will leave.
    std::vector<bool> retained(const std::vector<checkpoint_entry>& entries,
                               const std::filesystem::path& newest) const;

    const checkpoint_entry* newest() const;

    /// `continues`: training continues from what loads (restore_*), not only reads it (load_*).
    template <class State>
    std::optional<metadata> restore_first(State& state, const std::vector<std::size_t>& order,
                                          const load_options& options, bool continues) {
        std::vector<std::filesystem::path> damaged = begin_restore();
        load_options own = options;
        own.limits = options_.limits;
        own.backend = io_;
        for (const std::size_t i : order) {
            const std::filesystem::path path = index_[i].path;
            try {
                metadata meta = ckpt::load(path, state, own);
                restored(damaged, meta, continues);
                return meta;
            } catch (const schema_error&) {
                forget_damaged(damaged);
                throw;
            } catch (const version_error&) {
                forget_damaged(damaged);
                throw;
            } catch (const error& err) {
                restore_failed(damaged, path, err);
            }
        }
        forget_damaged(damaged);
        return std::nullopt;
    }

    /// restore_first() before its first load: reports the files known to be unreadable.
    std::vector<std::filesystem::path> begin_restore();
    /// A checkpoint that does not load is no longer the newest or the best: retention must
    /// neither count it nor delete it, and later restores report it.
    void forget_damaged(const std::vector<std::filesystem::path>& damaged);
    /// `meta` loaded; `continues`: the policy and the counters continue from it.
    void restored(const std::vector<std::filesystem::path>& damaged, const metadata& meta,
                  bool continues);
    /// `path` did not load: skipped, reported, remembered.
    void restore_failed(std::vector<std::filesystem::path>& damaged,
                        const std::filesystem::path& path, const error& err);

    /// Indexes the directory (scan_directory) and removes the temporary files of crashed saves.
    void scan();

    std::filesystem::path dir_;
    detail::policy_state policy_;
    retention keep_;
    manager_options options_;
    io::backend* io_;
    detail::ranked_metrics ranked_metrics_;
    directory_lock lock_;
    std::vector<checkpoint_entry> index_; ///< committed, in no particular order
    std::vector<skipped_checkpoint> unreadable_;
    std::vector<std::filesystem::path> foreign_; ///< our names, not ckpt's files: never touched
    std::vector<skipped_checkpoint> skipped_;
    std::vector<std::filesystem::path> cleaned_;
    manager_stats stats_;
    std::int64_t seen_step_ = 0;
    std::int64_t committed_step_ = 0;
    std::chrono::system_clock::time_point committed_time_{};
    detail::save_cost cost_;                           ///< C, for stats()
    detail::save_cost latency_;                        ///< L, for stats()
    double observed_interval_ = 0;                     ///< T when no cost-aware rule sets it
    std::chrono::system_clock::time_point save_end_{}; ///< end of the last save (or start)
    stopwatch restore_started_{};

    // Async mode.
    struct pending_save {
        std::uint64_t id = 0;
        checkpoint_entry entry;
        detail::policy_state::snapshot policy_before; ///< put back if the save fails
    };
    std::vector<pending_save> pending_;      ///< staged, oldest first
    std::vector<std::exception_ptr> errors_; ///< background errors not raised yet
    int unwinding_ = std::uncaught_exceptions();
    std::uint64_t applied_ = 0; ///< done_count_ when collect_finished last ran
    std::mutex done_mutex_;
    std::vector<async_done> done_; ///< finished in the background, not yet applied
    std::atomic<std::uint64_t> done_count_{0};
    std::unique_ptr<detail::async_engine> engine_; // last: its thread uses the members above
};

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/manager-inl.hpp


#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckpt {
CKPT_INLINE manager::manager(std::filesystem::path dir, save_policy when, retention keep,
                             manager_options options)
    : dir_(std::move(dir)), policy_(std::move(when)), keep_(std::move(keep)), options_([&] {
          detail::check_prefix(options.prefix, "manager");
          return std::move(options);
      }()),
      io_(options_.backend != nullptr ? options_.backend : &io::default_backend()),
      ranked_metrics_(detail::ranked_by(policy_.policy(), keep_)),
      lock_(dir_, options_.prefix, *io_) {
    scan();
    const auto start = now();
    policy_.start(start);
    save_end_ = start;
    if (const checkpoint_entry* latest = newest()) {
        committed_step_ = latest->step;
        committed_time_ = latest->time;
        seen_step_ = latest->step;
    } else {
        committed_time_ = start;
    }
    if (options_.async) {
        async_options async = *options_.async;
        async.backend = io_;
        engine_ = std::make_unique<detail::async_engine>(
            async, [this, user = std::move(async.on_done)](async_done&& d) {
                if (user) {
                    try {
                        user(d);
                    } catch (...) {
                        if (d.error == nullptr) d.error = std::current_exception();
                    }
                }
                std::lock_guard lock(done_mutex_);
                done_.push_back(std::move(d));
                done_count_.fetch_add(1, std::memory_order_release);
            });
    }
}

CKPT_INLINE manager::~manager() noexcept(false) {
    if (engine_ && engine_->forked()) {
        // A copy in a child of fork(): the saves in flight, their errors and the lock are the
        // parent's. Nothing to wait for, nothing to raise; the lock's copy does nothing.
        engine_.reset();
        lock_.release();
        return;
    }
    std::exception_ptr error;
    if (engine_) {
        try {
            wait();
        } catch (...) {
            error = std::current_exception();
        }
        engine_.reset();
    }
    io_->flush_releases();
    lock_.release();
    // One error can be raised, and only outside stack unwinding; the others go to stderr
    // (options.async->on_done saw every one).
    const bool can_throw = std::uncaught_exceptions() <= unwinding_;
    if (error != nullptr && !can_throw) detail::report_unraised("ckpt::manager", error);
    for (const auto& e : errors_) detail::report_unraised("ckpt::manager", e);
    if (error != nullptr && can_throw) std::rethrow_exception(error);
}

CKPT_INLINE save_result manager::wait() {
    save_result result;
    if (engine_) engine_->drain();
    io_->flush_releases(); // the blocks of replaced and deleted checkpoints are free
    collect_finished(result);
    return result;
}

CKPT_INLINE std::vector<checkpoint_entry> manager::list() const {
    return detail::listed(index_, ranked_metrics_);
}

CKPT_INLINE manager_stats manager::stats() const {
    manager_stats s = stats_;
    s.checkpoints_on_disk = index_.size();
    s.bytes_on_disk = 0;
    for (const auto& e : index_) s.bytes_on_disk += e.bytes;
    s.steps_at_risk = seen_step_ - committed_step_;
    s.seconds_at_risk = std::chrono::duration<double>(now() - committed_time_).count();
    s.saves_in_flight = engine_ ? engine_->in_flight() : 0;
    s.save_cost_seconds = cost_.seconds;
    s.interval_seconds = policy_.target_interval().value_or(observed_interval_);
    s.commit_latency_seconds = engine_ ? latency_.seconds : 0;
    s.expected_loss_seconds = (s.interval_seconds + s.save_cost_seconds) / 2 +
                              s.commit_latency_seconds + s.restart_seconds;
    return s;
}

CKPT_INLINE std::filesystem::path manager::path_of(std::int64_t step) const {
    return dir_ / detail::checkpoint_file_name(options_.prefix, step);
}

CKPT_INLINE std::chrono::system_clock::time_point manager::now() const {
    return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

CKPT_INLINE manager::stopwatch manager::start_watch() const {
    return {std::chrono::steady_clock::now(), now()};
}

CKPT_INLINE double manager::seconds_since(const stopwatch& w) const {
    const double s =
        options_.clock
            ? std::chrono::duration<double>(options_.clock() - w.clock).count()
            : std::chrono::duration<double>(std::chrono::steady_clock::now() - w.steady).count();
    return s > 0 ? s : 0;
}

CKPT_INLINE void manager::measured(const stopwatch& started, double cost) {
    const auto end = now();
    policy_.measured(cost, end);
    detail::add_sample(cost_, cost);
    const double gap = std::chrono::duration<double>(started.clock - save_end_).count();
    observed_interval_ = gap > 0 ? gap : 0;
    save_end_ = end;
}

CKPT_INLINE void manager::missing_metric(const metadata& meta, const std::string& metric) {
    std::string given;
    for (const auto& [k, v] : meta.metrics) given += (given.empty() ? "" : ", ") + k;
    detail::throw_error<usage_error>(
        errc::usage_missing_metric,
        "step " + std::to_string(meta.step) + " supplies no metric '" + metric +
            "', which the save policy or retention ranks checkpoints by (metrics given: " +
            (given.empty() ? std::string("none") : given) +
            "); pass its latest value on every step");
}

CKPT_INLINE void manager::record_committed(checkpoint_entry&& entry, save_result& result) {
    stats_.checkpoints_written += 1;
    committed_step_ = entry.step;
    committed_time_ = entry.time;
    const std::filesystem::path path = entry.path;
    std::erase_if(index_, [&](const checkpoint_entry& e) { return e.path == path; });
    // A damaged file this save replaced is damaged no more.
    std::erase_if(unreadable_, [&](const skipped_checkpoint& u) { return u.path == path; });
    index_.push_back(std::move(entry));
    result.committed.push_back(path);
    std::vector<std::filesystem::path> deleted = apply_retention(path);
    result.deleted.insert(result.deleted.end(), std::make_move_iterator(deleted.begin()),
                          std::make_move_iterator(deleted.end()));
}

CKPT_INLINE void manager::collect_finished(save_result& result) {
    std::vector<async_done> done;
    {
        std::lock_guard lock(done_mutex_);
        done.swap(done_);
        applied_ = done_count_.load(std::memory_order_acquire);
    }
    for (async_done& d : done) {
        const auto it = std::find_if(pending_.begin(), pending_.end(),
                                     [&](const pending_save& p) { return p.id == d.id; });
        if (it == pending_.end()) continue; // not ours: cannot happen
        pending_save p = std::move(*it);
        const bool newest = std::next(it) == pending_.end();
        pending_.erase(it);
        if (d.error != nullptr) {
            stats_.saves_failed += 1;
            if (newest) policy_.roll_back(std::move(p.policy_before));
            errors_.push_back(d.error);
            continue;
        }
        stats_.total_background_seconds += d.write_seconds;
        detail::add_sample(latency_, d.write_seconds);
        p.entry.bytes = d.bytes;
        record_committed(std::move(p.entry), result);
    }
    if (!errors_.empty()) {
        std::exception_ptr e = errors_.front();
        errors_.erase(errors_.begin());
        std::rethrow_exception(e);
    }
}

CKPT_INLINE std::vector<bool> manager::retained(const std::vector<checkpoint_entry>& entries,
                                                const std::filesystem::path& newest) const {
    std::vector<bool> kept = detail::select_kept(entries, keep_, ranked_metrics_);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].path == newest) kept[i] = true; // never the newest save
        // Nor a file a save in flight replaces: the unlink could land after its rename.
        for (const auto& p : pending_) {
            if (p.entry.path == entries[i].path) kept[i] = true;
        }
    }
    return kept;
}

CKPT_INLINE std::vector<std::filesystem::path>
manager::apply_retention(const std::filesystem::path& just_written) {
    const std::vector<bool> kept = retained(index_, just_written);
    std::vector<std::filesystem::path> deleted;
    std::vector<checkpoint_entry> remaining;
    for (std::size_t i = 0; i < index_.size(); ++i) {
        if (kept[i]) {
            remaining.push_back(std::move(index_[i]));
        } else if (detail::unlink_and_release(*io_, index_[i].path.c_str()) == 0 ||
                   errno == ENOENT) {
            deleted.push_back(index_[i].path);
        } else {
            stats_.delete_failures += 1;
            remaining.push_back(std::move(index_[i]));
        }
    }
    index_ = std::move(remaining);
    return deleted;
}

CKPT_INLINE const checkpoint_entry* manager::newest() const {
    const checkpoint_entry* best = nullptr;
    for (const auto& e : index_) {
        if (best == nullptr || e.step > best->step) best = &e;
    }
    return best;
}

CKPT_INLINE void manager::scan() {
    directory_listing found =
        scan_directory(dir_, directory_options{options_.prefix, io_, options_.limits});
    for (auto& temp : found.temporaries) {
        if (io_->unlink(temp.c_str()) == 0) cleaned_.push_back(std::move(temp));
    }
    index_ = std::move(found.checkpoints);
    // Distributed checkpoints are ckpt::mpi::manager's.
    std::erase_if(index_, [](const checkpoint_entry& e) { return e.distributed; });
    for (auto& e : index_) e.latest = false; // list() marks it, as the index changes
    unreadable_ = std::move(found.unreadable);
    std::erase_if(unreadable_, [](const skipped_checkpoint& u) {
        return u.path.extension() != ".ckpt"; // a distributed checkpoint's directory
    });
    foreign_ = std::move(found.foreign);
    skipped_ = unreadable_;
}

CKPT_INLINE bool manager::begin_step(const metadata& meta, save_result& result,
                                     std::chrono::system_clock::time_point& t) {
    for (const auto& [metric, direction] : ranked_metrics_) {
        if (meta.metrics.find(metric) == meta.metrics.end()) missing_metric(meta, metric);
    }
    if ((engine_ && done_count_.load(std::memory_order_acquire) != applied_) || !errors_.empty()) {
        collect_finished(result);
    }
    seen_step_ = meta.step;
    t = policy_.uses_clock() ? now() : std::chrono::system_clock::time_point{};
    return policy_.ask(meta, t);
}

CKPT_INLINE std::chrono::system_clock::time_point manager::begin_save_now(const metadata& meta,
                                                                          save_result& result) {
    if (engine_) collect_finished(result);
    seen_step_ = meta.step;
    policy_.clear_fired();
    return now();
}

CKPT_INLINE manager::planned_save manager::plan_save(save_result& result, const metadata& meta,
                                                     std::chrono::system_clock::time_point t,
                                                     const char* forced) {
    if (meta.step < 0) {
        detail::throw_error<usage_error>(
            errc::usage_argument, "manager: step " + std::to_string(meta.step) + " is negative");
    }
    planned_save plan;
    plan.after = policy_.advanced(meta, t, result.reasons);
    if (forced != nullptr) result.reasons.emplace_back(forced);
    metadata& stored = plan.stored;
    stored = meta;
    if (stored.time == std::chrono::system_clock::time_point{}) stored.time = now();
    detail::policy_state::write_tags(plan.after, stored);
    result.path = path_of(meta.step);
    if (std::find(foreign_.begin(), foreign_.end(), result.path) != foreign_.end()) {
        detail::throw_error<usage_error>(
            errc::usage_foreign_file,
            "'" + result.path.string() +
                "' has this manager's name but was not written by ckpt; it is left alone, so "
                "step " +
                std::to_string(meta.step) +
                " cannot be saved there: move the file or use another prefix");
    }
    checkpoint_entry& entry = plan.entry;
    entry.path = result.path;
    entry.step = meta.step;
    entry.epoch = meta.epoch;
    entry.time = stored.time;
    entry.metrics = meta.metrics;
    evict_victims(entry);
    return plan;
}

CKPT_INLINE void manager::evict_victims(const checkpoint_entry& next) {
    // Retention as it will run once `next` is committed (apply_retention): the files it will
    // delete are not read again, so the new file's pages can reuse their memory. Only advice:
    // should the save fail, they stay where they are, and only their cached pages are gone.
    if (index_.empty()) return;
    std::vector<checkpoint_entry> after;
    after.reserve(index_.size() + 1);
    for (const auto& e : index_) {
        if (e.path != next.path) after.push_back(e); // the save's own target: atomic_file's
    }
    after.push_back(next);
    const std::vector<bool> kept = retained(after, next.path);
    for (std::size_t i = 0; i < after.size(); ++i) {
        if (kept[i]) continue;
        if (const int fd = detail::open_to_release(*io_, after[i].path.c_str()); fd >= 0) {
            io_->evict(fd);
        }
    }
}

CKPT_INLINE void manager::staged(save_result& result, planned_save&& plan,
                                 const async_ticket& ticket, const char* forced,
                                 const stopwatch& started) {
    stats_.last_save_seconds = ticket.stall_seconds;
    stats_.total_save_seconds += ticket.stall_seconds;
    if (!ticket) {
        // The policy still wants this save: its rules do not advance, so it fires again.
        stats_.saves_skipped += 1;
        result.skipped = ticket.skipped;
        return;
    }
    pending_.push_back({ticket.id, std::move(plan.entry), policy_.save()});
    policy_.commit(std::move(plan.after), forced != nullptr);
    // The stall includes the wait for room, if the save before was still being written.
    measured(started, options_.clock ? seconds_since(started) : ticket.stall_seconds);
    result.saved = true;
    result.pending = true;
}

CKPT_INLINE void manager::saved(save_result& result, planned_save&& plan, const char* forced,
                                const stopwatch& started) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started.steady).count();
    policy_.commit(std::move(plan.after), forced != nullptr);
    measured(started, seconds_since(started));
    stats_.last_save_seconds = seconds;
    stats_.total_save_seconds += seconds;
    result.saved = true;
    record_committed(std::move(plan.entry), result);
}

CKPT_INLINE std::vector<std::filesystem::path> manager::begin_restore() {
    restore_started_ = start_watch();
    skipped_ = unreadable_;
    for (const auto& s : unreadable_) {
        if (options_.on_skipped) options_.on_skipped(s);
    }
    return {};
}

CKPT_INLINE void manager::forget_damaged(const std::vector<std::filesystem::path>& damaged) {
    std::erase_if(index_, [&](const checkpoint_entry& e) {
        return std::find(damaged.begin(), damaged.end(), e.path) != damaged.end();
    });
}

CKPT_INLINE void manager::restored(const std::vector<std::filesystem::path>& damaged,
                                   const metadata& meta, bool continues) {
    forget_damaged(damaged);
    if (!continues) return; // load_best: the schedule stays where training is
    stats_.restart_seconds = seconds_since(restore_started_);
    policy_.restore(meta, index_);
    committed_step_ = meta.step;
    committed_time_ = meta.time;
    seen_step_ = meta.step;
}

CKPT_INLINE void manager::restore_failed(std::vector<std::filesystem::path>& damaged,
                                         const std::filesystem::path& path, const error& err) {
    skipped_.push_back({path, err.id(), err.what()});
    unreadable_.push_back(skipped_.back());
    damaged.push_back(path);
    if (options_.on_skipped) options_.on_skipped(skipped_.back());
}

} // namespace ckpt
// end ckpt/manager-inl.hpp
#endif
// end ckpt/manager.hpp
// begin ckpt/nn.hpp

/// The built-in reference user of ckpt: a small MLP, Adam and SGD, synthetic data sets, a
/// resumable sampler and a train_state whose checkpoints resume bit for bit.

// begin ckpt/nn/data.hpp


// begin ckpt/nn/mlp.hpp



#include <Eigen/Core>
#include <cereal/cereal.hpp>
#include <cereal/types/common.hpp>
#include <cereal/types/vector.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace ckpt::nn {

/// Row-major matrices throughout: a weight is stored [out, in], as torch.nn.Linear's, so a
/// checkpoint's tensors load into torch with no transpose.
template <class Scalar>
using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// The nonlinearity after a hidden layer (the output layer has none).
enum class activation : std::uint8_t { relu, tanh, identity };

/// One fully connected layer: y = x W^T + b.
template <class Scalar>
struct linear {
    matrix<Scalar> weight; ///< [out, in]
    vector<Scalar> bias;   ///< [out]

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
    friend bool operator==(const linear& a, const linear& b) {
        return a.weight == b.weight && a.bias == b.bias;
    }
};

/// What forward() keeps for backward(): each layer's input and pre-activation.
template <class Scalar>
struct forward_cache {
    std::vector<matrix<Scalar>> inputs; ///< [batch, in] per layer
    std::vector<matrix<Scalar>> pre;    ///< [batch, out] per layer, before the activation
};

/// A multilayer perceptron: layer sizes, one activation for the hidden layers, He or Xavier
/// initialization from a seeded std::mt19937_64, batched forward and backward.
template <class Scalar>
class mlp {
public:
    static_assert(std::is_floating_point_v<Scalar>,
                  "ckpt::nn::mlp: Scalar must be float or double");

    mlp() = default;

    /// Layers of `sizes` (input first), `hidden` after each hidden layer. He initialization for
    /// relu, Xavier (Glorot uniform) otherwise; biases start at zero.
    /// @throws usage_error
    mlp(std::vector<std::int64_t> sizes, activation hidden, std::uint64_t seed)
        : sizes_(std::move(sizes)), hidden_(hidden) {
        if (sizes_.size() < 2) {
            detail::throw_error<usage_error>(errc::usage_argument,
                                             "mlp: give at least an input and an output size");
        }
        std::mt19937_64 rng(seed);
        for (std::size_t i = 0; i + 1 < sizes_.size(); ++i) {
            const auto in = static_cast<Eigen::Index>(sizes_[i]);
            const auto out = static_cast<Eigen::Index>(sizes_[i + 1]);
            if (in <= 0 || out <= 0) {
                detail::throw_error<usage_error>(errc::usage_argument,
                                                 "mlp: layer sizes must be > 0");
            }
            linear<Scalar> l;
            l.weight.resize(out, in);
            l.bias = vector<Scalar>::Zero(out);
            if (hidden_ == activation::relu) {
                std::normal_distribution<double> he(0.0, std::sqrt(2.0 / static_cast<double>(in)));
                for (Eigen::Index k = 0; k < l.weight.size(); ++k) {
                    l.weight.data()[k] = static_cast<Scalar>(he(rng));
                }
            } else {
                const double a = std::sqrt(6.0 / static_cast<double>(in + out));
                std::uniform_real_distribution<double> glorot(-a, a);
                for (Eigen::Index k = 0; k < l.weight.size(); ++k) {
                    l.weight.data()[k] = static_cast<Scalar>(glorot(rng));
                }
            }
            layers_.push_back(std::move(l));
        }
    }

    /// Outputs for a batch of inputs [batch, in]; fills `cache` for backward().
    matrix<Scalar> forward(const matrix<Scalar>& x, forward_cache<Scalar>& cache) const {
        cache.inputs.resize(layers_.size());
        cache.pre.resize(layers_.size());
        matrix<Scalar> a = x;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            cache.inputs[i] = a;
            matrix<Scalar> z = a * layers_[i].weight.transpose();
            z.rowwise() += layers_[i].bias.transpose();
            cache.pre[i] = z;
            a = i + 1 < layers_.size() ? activate(z) : z;
        }
        return a;
    }

    /// Outputs without keeping a cache.
    matrix<Scalar> predict(const matrix<Scalar>& x) const {
        forward_cache<Scalar> cache;
        return forward(x, cache);
    }

    /// Gradients of the loss with respect to every parameter, given d loss / d output.
    std::vector<linear<Scalar>> backward(const forward_cache<Scalar>& cache,
                                         const matrix<Scalar>& d_out) const {
        std::vector<linear<Scalar>> grads(layers_.size());
        matrix<Scalar> d = d_out;
        for (std::size_t j = layers_.size(); j-- > 0;) {
            if (j + 1 < layers_.size()) d = d.cwiseProduct(activate_derivative(cache.pre[j]));
            grads[j].weight = d.transpose() * cache.inputs[j];
            grads[j].bias = d.colwise().sum().transpose();
            if (j > 0) d = d * layers_[j].weight;
        }
        return grads;
    }

    [[nodiscard]] std::vector<linear<Scalar>>& layers() noexcept { return layers_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& layers() const noexcept { return layers_; }
    [[nodiscard]] const std::vector<std::int64_t>& sizes() const noexcept { return sizes_; }
    [[nodiscard]] activation hidden_activation() const noexcept { return hidden_; }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("sizes", ckpt::as_value(sizes_)),
           cereal::make_nvp("activation", hidden_), cereal::make_nvp("layers", layers_));
    }
    friend bool operator==(const mlp& a, const mlp& b) {
        return a.sizes_ == b.sizes_ && a.hidden_ == b.hidden_ && a.layers_ == b.layers_;
    }

private:
    matrix<Scalar> activate(const matrix<Scalar>& z) const {
        switch (hidden_) {
        case activation::relu: return z.cwiseMax(Scalar(0));
        case activation::tanh: return z.array().tanh().matrix();
        case activation::identity: break;
        }
        return z;
    }
    matrix<Scalar> activate_derivative(const matrix<Scalar>& z) const {
        switch (hidden_) {
        case activation::relu: return (z.array() > Scalar(0)).template cast<Scalar>().matrix();
        case activation::tanh: return (Scalar(1) - z.array().tanh().square()).matrix();
        case activation::identity: break;
        }
        return matrix<Scalar>::Ones(z.rows(), z.cols());
    }

    std::vector<std::int64_t> sizes_;
    activation hidden_ = activation::relu;
    std::vector<linear<Scalar>> layers_;
};

/// Mean squared error over a batch, and its gradient with respect to the predictions.
template <class Scalar>
std::pair<Scalar, matrix<Scalar>> mse_loss(const matrix<Scalar>& pred,
                                           const matrix<Scalar>& target) {
    const matrix<Scalar> diff = pred - target;
    const auto n = static_cast<Scalar>(diff.size());
    return {diff.squaredNorm() / n, diff * (Scalar(2) / n)};
}

/// Softmax cross-entropy of logits [batch, classes] against class labels, averaged over the
/// batch (torch.nn.CrossEntropyLoss), and its gradient with respect to the logits.
template <class Scalar>
std::pair<Scalar, matrix<Scalar>> cross_entropy_loss(const matrix<Scalar>& logits,
                                                     const std::vector<std::int32_t>& labels) {
    const Eigen::Index batch = logits.rows();
    matrix<Scalar> grad(batch, logits.cols());
    Scalar loss = 0;
    for (Eigen::Index i = 0; i < batch; ++i) {
        const Scalar m = logits.row(i).maxCoeff(); // subtract the max: no overflow in exp
        const auto e = (logits.row(i).array() - m).exp();
        const Scalar sum = e.sum();
        const auto label = static_cast<Eigen::Index>(labels[static_cast<std::size_t>(i)]);
        loss += std::log(sum) - (logits(i, label) - m);
        grad.row(i) = (e / sum).matrix();
        grad(i, label) -= Scalar(1);
    }
    const auto n = static_cast<Scalar>(batch);
    return {loss / n, grad / n};
}

} // namespace ckpt::nn

// The compiled mode instantiates the built-in model and optimizers for float and double once,
// in the implementation file; other files use those instantiations.
#if defined(CKPT_COMPILED)
namespace ckpt::nn {
#if defined(CKPT_IMPLEMENTATION)
#define CKPT_NN_INSTANTIATE template
#else
#define CKPT_NN_INSTANTIATE extern template
#endif
CKPT_NN_INSTANTIATE class mlp<float>;
CKPT_NN_INSTANTIATE class mlp<double>;
#undef CKPT_NN_INSTANTIATE
} // namespace ckpt::nn
#endif
// end ckpt/nn/mlp.hpp

#include <cereal/cereal.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace ckpt::nn {

/// Inputs [n, features] and either class labels or regression targets [n, outputs].
template <class Scalar>
struct dataset {
    matrix<Scalar> inputs;
    std::vector<std::int32_t> labels; ///< classification
    matrix<Scalar> targets;           ///< regression

    [[nodiscard]] std::int64_t size() const noexcept { return inputs.rows(); }

    /// The rows `idx` as a batch.
    [[nodiscard]] dataset batch(const std::vector<std::int64_t>& idx) const {
        dataset b;
        b.inputs.resize(static_cast<Eigen::Index>(idx.size()), inputs.cols());
        if (!labels.empty()) b.labels.resize(idx.size());
        if (targets.size() > 0)
            b.targets.resize(static_cast<Eigen::Index>(idx.size()), targets.cols());
        for (std::size_t i = 0; i < idx.size(); ++i) {
            const auto r = static_cast<Eigen::Index>(idx[i]);
            const auto k = static_cast<Eigen::Index>(i);
            b.inputs.row(k) = inputs.row(r);
            if (!labels.empty()) b.labels[i] = labels[static_cast<std::size_t>(r)];
            if (targets.size() > 0) b.targets.row(k) = targets.row(r);
        }
        return b;
    }
};

/// Two interleaved spirals, `per_class` points each, labels 0 and 1, with Gaussian noise:
/// a small problem an MLP needs a few thousand steps to learn.
template <class Scalar>
dataset<Scalar> two_spirals(std::int64_t per_class, double noise, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> jitter(0.0, noise);
    dataset<Scalar> d;
    d.inputs.resize(static_cast<Eigen::Index>(2 * per_class), 2);
    d.labels.resize(static_cast<std::size_t>(2 * per_class));
    constexpr double pi = 3.14159265358979323846;
    for (std::int64_t c = 0; c < 2; ++c) {
        for (std::int64_t i = 0; i < per_class; ++i) {
            const double r = static_cast<double>(i) / static_cast<double>(per_class) * 5.0 + 0.25;
            const double angle = 1.75 * r + static_cast<double>(c) * pi;
            const auto row = static_cast<Eigen::Index>(c * per_class + i);
            d.inputs(row, 0) = static_cast<Scalar>(r * std::cos(angle) / 5.25 + jitter(rng));
            d.inputs(row, 1) = static_cast<Scalar>(r * std::sin(angle) / 5.25 + jitter(rng));
            d.labels[static_cast<std::size_t>(row)] = static_cast<std::int32_t>(c);
        }
    }
    return d;
}

/// y = sin(x) + noise for `n` points with x uniform in [-pi, pi].
template <class Scalar>
dataset<Scalar> noisy_sine(std::int64_t n, double noise, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    constexpr double pi = 3.14159265358979323846;
    std::uniform_real_distribution<double> x(-pi, pi);
    std::normal_distribution<double> jitter(0.0, noise);
    dataset<Scalar> d;
    d.inputs.resize(static_cast<Eigen::Index>(n), 1);
    d.targets.resize(static_cast<Eigen::Index>(n), 1);
    for (Eigen::Index i = 0; i < static_cast<Eigen::Index>(n); ++i) {
        const double v = x(rng);
        d.inputs(i, 0) = static_cast<Scalar>(v);
        d.targets(i, 0) = static_cast<Scalar>(std::sin(v) + jitter(rng));
    }
    return d;
}

/// Mini-batches in an order that depends only on (seed, epoch), with a cursor that is part of
/// the checkpoint: a run resumed in the middle of an epoch continues with the very next batch,
/// without replaying or skipping any. The last batch of an epoch may be short.
class sampler {
public:
    sampler() = default;
    /// @throws usage_error
    sampler(std::int64_t size, std::int64_t batch_size, std::uint64_t seed);

    /// The indices of the next batch; moves to the next epoch after the last one.
    std::vector<std::int64_t> next();

    [[nodiscard]] std::int64_t epoch() const noexcept { return epoch_; }
    [[nodiscard]] std::int64_t cursor() const noexcept { return cursor_; }
    [[nodiscard]] std::int64_t batches_per_epoch() const noexcept {
        return (size_ + batch_size_ - 1) / batch_size_;
    }

    /// The order is derived from (seed, epoch), so only those and the cursor are stored.
    template <class Archive>
    void save(Archive& ar) const {
        ar(cereal::make_nvp("size", size_), cereal::make_nvp("batch_size", batch_size_),
           cereal::make_nvp("seed", seed_), cereal::make_nvp("epoch", epoch_),
           cereal::make_nvp("cursor", cursor_));
    }
    template <class Archive>
    void load(Archive& ar) {
        sampler s;
        ar(cereal::make_nvp("size", s.size_), cereal::make_nvp("batch_size", s.batch_size_),
           cereal::make_nvp("seed", s.seed_), cereal::make_nvp("epoch", s.epoch_),
           cereal::make_nvp("cursor", s.cursor_));
        if (s.size_ < 0 || s.batch_size_ <= 0 || s.cursor_ < 0 || s.cursor_ > s.size_ ||
            s.size_ > (std::int64_t{1} << 31)) { // the order is rebuilt: bound what it allocates
            detail::throw_error<corrupt_error>(
                errc::corrupt_values, "sampler: stored size, batch size or cursor is invalid");
        }
        *this = std::move(s);
    }
    friend bool operator==(const sampler& a, const sampler& b) {
        return a.size_ == b.size_ && a.batch_size_ == b.batch_size_ && a.seed_ == b.seed_ &&
               a.epoch_ == b.epoch_ && a.cursor_ == b.cursor_;
    }

private:
    /// Fisher-Yates with its own integer draws, so the order is the same on every standard
    /// library (std::shuffle's is not specified).
    void shuffle();

    std::int64_t size_ = 0;
    std::int64_t batch_size_ = 1;
    std::uint64_t seed_ = 0;
    std::int64_t epoch_ = 0;
    std::int64_t cursor_ = 0;
    std::vector<std::int64_t> order_;
};

} // namespace ckpt::nn

#ifdef CKPT_DEFINITIONS
// begin ckpt/nn/data-inl.hpp


#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace ckpt::nn {

CKPT_INLINE sampler::sampler(std::int64_t size, std::int64_t batch_size, std::uint64_t seed)
    : size_(size), batch_size_(batch_size), seed_(seed) {
    if (size <= 0 || batch_size <= 0) {
        detail::throw_error<usage_error>(errc::usage_argument,
                                         "sampler: size and batch size must be > 0");
    }
}

CKPT_INLINE std::vector<std::int64_t> sampler::next() {
    if (cursor_ >= size_) {
        ++epoch_;
        cursor_ = 0;
        order_.clear();
    }
    // Built when first needed, never by load(): a stored size allocates nothing until the
    // data set it describes is really being sampled.
    if (static_cast<std::int64_t>(order_.size()) != size_) shuffle();
    const std::int64_t end = std::min(size_, cursor_ + batch_size_);
    std::vector<std::int64_t> idx(order_.begin() + cursor_, order_.begin() + end);
    cursor_ = end;
    return idx;
}

CKPT_INLINE void sampler::shuffle() {
    order_.resize(static_cast<std::size_t>(size_));
    std::iota(order_.begin(), order_.end(), std::int64_t{0});
    std::mt19937_64 rng(seed_ ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(epoch_ + 1)));
    for (std::size_t i = order_.size(); i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng() % i);
        std::swap(order_[i - 1], order_[j]);
    }
}

} // namespace ckpt::nn
// end ckpt/nn/data-inl.hpp
#endif
// end ckpt/nn/data.hpp
// begin ckpt/nn/optim.hpp



#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace ckpt::nn {

/// Adam's settings, with torch.optim.Adam's defaults.
struct adam_options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0; ///< L2 (added to the gradient), or decoupled when `decoupled`
    bool decoupled = false;  ///< AdamW: decay the weights directly, lr * weight_decay * p
    bool amsgrad = false;    ///< keep the running maximum of the second moment

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(lr), CEREAL_NVP(beta1), CEREAL_NVP(beta2), CEREAL_NVP(eps),
           CEREAL_NVP(weight_decay), CEREAL_NVP(decoupled), CEREAL_NVP(amsgrad));
    }
    friend bool operator==(const adam_options&, const adam_options&) = default;
};

/// Adam (and AdamW, and AMSGrad) with torch.optim.Adam's update, step for step. For each
/// parameter p with gradient g, at step t (counted from 1):
///
///     g  = g + weight_decay * p                 (L2: Adam)   or
///     p  = p * (1 - lr * weight_decay)          (decoupled: AdamW)
///     m  = m + (1 - beta1) * (g - m)            (torch: exp_avg.lerp_(g, 1 - beta1))
///     v  = beta2 * v + (1 - beta2) * g * g      (exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2))
///     vmax = max(vmax, v)                       (amsgrad only; then v below is vmax)
///     denom = sqrt(v) / sqrt(1 - beta2^t) + eps (eps after the bias correction, as torch)
///     p  = p - (lr / (1 - beta1^t)) * m / denom
///
/// Its state is everything that update reads: m (exp_avg), v (exp_avg_sq), vmax
/// (max_exp_avg_sq, only with amsgrad) per parameter, and the step count.
template <class Scalar>
class adam {
public:
    adam() = default;
    /// State shaped like `model`'s parameters, at zero.
    adam(const mlp<Scalar>& model, adam_options options) : options_(options) {
        for (const auto& l : model.layers()) {
            exp_avg_.push_back(zeros_like(l));
            exp_avg_sq_.push_back(zeros_like(l));
            if (options_.amsgrad) max_exp_avg_sq_.push_back(zeros_like(l));
        }
    }

    /// One update of every parameter of `model` from `grads` (as mlp::backward gives them).
    void step(mlp<Scalar>& model, const std::vector<linear<Scalar>>& grads) {
        ++step_;
        // In double, then rounded once, as torch computes its Python-float scalars.
        const auto t = static_cast<double>(step_);
        const auto step_size = Scalar(options_.lr / (1 - std::pow(options_.beta1, t)));
        const auto bias_correction2_sqrt = Scalar(std::sqrt(1 - std::pow(options_.beta2, t)));
        auto& layers = model.layers();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            update(layers[i].weight, grads[i].weight, exp_avg_[i].weight, exp_avg_sq_[i].weight,
                   options_.amsgrad ? &max_exp_avg_sq_[i].weight : nullptr, step_size,
                   bias_correction2_sqrt);
            update(layers[i].bias, grads[i].bias, exp_avg_[i].bias, exp_avg_sq_[i].bias,
                   options_.amsgrad ? &max_exp_avg_sq_[i].bias : nullptr, step_size,
                   bias_correction2_sqrt);
        }
    }

    [[nodiscard]] std::int64_t steps() const noexcept { return step_; }
    [[nodiscard]] const adam_options& options() const noexcept { return options_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& exp_avg() const noexcept { return exp_avg_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& exp_avg_sq() const noexcept {
        return exp_avg_sq_;
    }
    [[nodiscard]] const std::vector<linear<Scalar>>& max_exp_avg_sq() const noexcept {
        return max_exp_avg_sq_;
    }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("options", options_), cereal::make_nvp("step", step_),
           cereal::make_nvp("exp_avg", exp_avg_), cereal::make_nvp("exp_avg_sq", exp_avg_sq_),
           cereal::make_nvp("max_exp_avg_sq", max_exp_avg_sq_));
    }
    friend bool operator==(const adam& a, const adam& b) {
        return a.options_ == b.options_ && a.step_ == b.step_ && a.exp_avg_ == b.exp_avg_ &&
               a.exp_avg_sq_ == b.exp_avg_sq_ && a.max_exp_avg_sq_ == b.max_exp_avg_sq_;
    }

private:
    static linear<Scalar> zeros_like(const linear<Scalar>& l) {
        return {matrix<Scalar>::Zero(l.weight.rows(), l.weight.cols()),
                vector<Scalar>::Zero(l.bias.size())};
    }

    template <class P>
    void update(P& p, const P& grad, P& m, P& v, P* vmax, Scalar step_size,
                Scalar bias_correction2_sqrt) const {
        const auto lr = Scalar(options_.lr);
        const auto wd = Scalar(options_.weight_decay);
        P g = grad;
        if (options_.weight_decay != 0) {
            if (options_.decoupled) {
                p *= Scalar(1) - lr * wd;
            } else {
                g += wd * p;
            }
        }
        // Products grouped left to right, as the formula above and torch's addcmul_/addcdiv_.
        m += Scalar(1 - options_.beta1) * (g - m);
        v = Scalar(options_.beta2) * v + (Scalar(1 - options_.beta2) * g).cwiseProduct(g);
        const P& second = vmax != nullptr ? (*vmax = vmax->cwiseMax(v)) : v;
        // std::sqrt, correctly rounded: Eigen's vectorized float sqrt is an approximation
        // (rsqrtps and a Newton step) that differs between CPUs and between a tensor's elements.
        const P root = second.unaryExpr([](Scalar x) { return std::sqrt(x); });
        const P denom = (root / bias_correction2_sqrt).array() + Scalar(options_.eps);
        p -= (step_size * m).cwiseQuotient(denom);
    }

    adam_options options_;
    std::int64_t step_ = 0;
    std::vector<linear<Scalar>> exp_avg_;
    std::vector<linear<Scalar>> exp_avg_sq_;
    std::vector<linear<Scalar>> max_exp_avg_sq_;
};

/// SGD's settings, with torch.optim.SGD's meaning.
struct sgd_options {
    double lr = 1e-2;
    double momentum = 0;
    double dampening = 0;
    double weight_decay = 0;
    bool nesterov = false;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(lr), CEREAL_NVP(momentum), CEREAL_NVP(dampening), CEREAL_NVP(weight_decay),
           CEREAL_NVP(nesterov));
    }
    friend bool operator==(const sgd_options&, const sgd_options&) = default;
};

/// SGD with momentum (and Nesterov), torch.optim.SGD's update:
///
///     g = g + weight_decay * p
///     b = g                                   (first step)
///     b = momentum * b + (1 - dampening) * g  (after)
///     g = g + momentum * b  (nesterov)   or   g = b
///     p = p - lr * g
///
/// Its state is the momentum buffer b per parameter and whether it has started.
template <class Scalar>
class sgd {
public:
    sgd() = default;
    sgd(const mlp<Scalar>& model, sgd_options options) : options_(options) {
        if (options_.nesterov && (options_.momentum <= 0 || options_.dampening != 0)) {
            detail::throw_error<usage_error>(
                errc::usage_argument, "sgd: Nesterov momentum needs momentum > 0 and no dampening");
        }
        for (const auto& l : model.layers()) {
            momentum_buffer_.push_back({matrix<Scalar>::Zero(l.weight.rows(), l.weight.cols()),
                                        vector<Scalar>::Zero(l.bias.size())});
        }
    }

    void step(mlp<Scalar>& model, const std::vector<linear<Scalar>>& grads) {
        auto& layers = model.layers();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            update(layers[i].weight, grads[i].weight, momentum_buffer_[i].weight);
            update(layers[i].bias, grads[i].bias, momentum_buffer_[i].bias);
        }
        ++step_;
    }

    [[nodiscard]] std::int64_t steps() const noexcept { return step_; }
    [[nodiscard]] const std::vector<linear<Scalar>>& momentum_buffer() const noexcept {
        return momentum_buffer_;
    }

    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("options", options_), cereal::make_nvp("step", step_),
           cereal::make_nvp("momentum_buffer", momentum_buffer_));
    }
    friend bool operator==(const sgd& a, const sgd& b) {
        return a.options_ == b.options_ && a.step_ == b.step_ &&
               a.momentum_buffer_ == b.momentum_buffer_;
    }

private:
    template <class P>
    void update(P& p, const P& grad, P& buf) const {
        P g = grad;
        if (options_.weight_decay != 0) g += Scalar(options_.weight_decay) * p;
        if (options_.momentum != 0) {
            if (step_ == 0) {
                buf = g;
            } else {
                buf = Scalar(options_.momentum) * buf + Scalar(1 - options_.dampening) * g;
            }
            if (options_.nesterov) {
                g += Scalar(options_.momentum) * buf;
            } else {
                g = buf;
            }
        }
        p -= Scalar(options_.lr) * g;
    }

    sgd_options options_;
    std::int64_t step_ = 0;
    std::vector<linear<Scalar>> momentum_buffer_;
};

} // namespace ckpt::nn

// The compiled mode instantiates the built-in model and optimizers for float and double once,
// in the implementation file; other files use those instantiations.
#if defined(CKPT_COMPILED)
namespace ckpt::nn {
#if defined(CKPT_IMPLEMENTATION)
#define CKPT_NN_INSTANTIATE template
#else
#define CKPT_NN_INSTANTIATE extern template
#endif
CKPT_NN_INSTANTIATE class adam<float>;
CKPT_NN_INSTANTIATE class adam<double>;
CKPT_NN_INSTANTIATE class sgd<float>;
CKPT_NN_INSTANTIATE class sgd<double>;
#undef CKPT_NN_INSTANTIATE
} // namespace ckpt::nn
#endif
// end ckpt/nn/optim.hpp
// begin ckpt/nn/train.hpp

// begin ckpt/types/random.hpp


#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>

#include <cstddef>
#include <istream>
#include <ostream>
#include <random>
#include <string>

namespace ckpt::detail {

// The standard guarantees that `os << x` then `is >> y` gives y == x for every engine and
// distribution, so the text form is an exact, portable state. A distribution's text includes
// its cached values (normal_distribution keeps a second variate), so sequences continue exactly.

/// The text `put` writes, in the classic locale.
std::string random_text(void (*put)(std::ostream&, const void*), const void* r);

/// Reads `text` with `get`, in the classic locale. @throws corrupt_error when it does not parse
void parse_random(const std::string& text, void (*get)(std::istream&, void*), void* r);

template <class Random>
void put_random(std::ostream& os, const void* r) {
    os << *static_cast<const Random*>(r);
}
template <class Random>
void get_random(std::istream& is, void* r) {
    is >> *static_cast<Random*>(r);
}

template <class Archive, class Random>
void save_random(Archive& ar, const Random& r) {
    if constexpr (requires { ar.values_wanted(); }) {
        if (!ar.values_wanted()) { // a walk for the tensor list: the text is never read
            ar(cereal::make_nvp("state", std::string()));
            return;
        }
    }
    ar(cereal::make_nvp("state", random_text(&put_random<Random>, &r)));
}

template <class Archive, class Random>
void load_random(Archive& ar, Random& r) {
    std::string text;
    ar(cereal::make_nvp("state", text));
    if constexpr (requires { ar.decodes_values(); }) {
        if (!ar.decodes_values()) return; // decoded by the values pass just before
    }
    Random loaded;
    parse_random(text, &get_random<Random>, &loaded);
    r = loaded;
}

} // namespace ckpt::detail

#ifndef CKPT_NO_RANDOM_SERIALIZERS
namespace cereal {

#define CKPT_RANDOM_SERIALIZERS(TEMPLATE_PARAMS, TYPE)                                             \
    template <class Archive, TEMPLATE_PARAMS>                                                      \
    void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const TYPE& r) {                                   \
        ::ckpt::detail::save_random(ar, r);                                                        \
    }                                                                                              \
    template <class Archive, TEMPLATE_PARAMS>                                                      \
    void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, TYPE& r) {                                         \
        ::ckpt::detail::load_random(ar, r);                                                        \
    }
#define CKPT_COMMA ,

CKPT_RANDOM_SERIALIZERS(class U CKPT_COMMA U A CKPT_COMMA U C CKPT_COMMA U M,
                        std::linear_congruential_engine<U CKPT_COMMA A CKPT_COMMA C CKPT_COMMA M>)
CKPT_RANDOM_SERIALIZERS(
    class U CKPT_COMMA std::size_t W CKPT_COMMA std::size_t N CKPT_COMMA std::size_t M CKPT_COMMA
        std::size_t R CKPT_COMMA U A CKPT_COMMA std::size_t Us CKPT_COMMA U D CKPT_COMMA
            std::size_t S CKPT_COMMA U B CKPT_COMMA std::size_t T CKPT_COMMA U C CKPT_COMMA
                std::size_t L CKPT_COMMA U F,
    std::mersenne_twister_engine<
        U CKPT_COMMA W CKPT_COMMA N CKPT_COMMA M CKPT_COMMA R CKPT_COMMA A CKPT_COMMA Us CKPT_COMMA
            D CKPT_COMMA S CKPT_COMMA B CKPT_COMMA T CKPT_COMMA C CKPT_COMMA L CKPT_COMMA F>)
CKPT_RANDOM_SERIALIZERS(class U CKPT_COMMA std::size_t W CKPT_COMMA std::size_t S CKPT_COMMA
                            std::size_t R,
                        std::subtract_with_carry_engine<U CKPT_COMMA W CKPT_COMMA S CKPT_COMMA R>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t P CKPT_COMMA std::size_t R,
                        std::discard_block_engine<E CKPT_COMMA P CKPT_COMMA R>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t W CKPT_COMMA class U,
                        std::independent_bits_engine<E CKPT_COMMA W CKPT_COMMA U>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t K, std::shuffle_order_engine<E CKPT_COMMA K>)

// Distributions whose state has a fixed size (discrete and piecewise ones read a count from the
// text and would allocate by it, so they are left out).
CKPT_RANDOM_SERIALIZERS(class T, std::uniform_int_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::uniform_real_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::binomial_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::geometric_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::negative_binomial_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::poisson_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::exponential_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::gamma_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::weibull_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::extreme_value_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::normal_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::lognormal_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::chi_squared_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::cauchy_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::fisher_f_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::student_t_distribution<T>)

template <class Archive>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const std::bernoulli_distribution& r) {
    ::ckpt::detail::save_random(ar, r);
}
template <class Archive>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, std::bernoulli_distribution& r) {
    ::ckpt::detail::load_random(ar, r);
}

#undef CKPT_COMMA
#undef CKPT_RANDOM_SERIALIZERS

} // namespace cereal
#endif

#ifdef CKPT_DEFINITIONS
// begin ckpt/types/random-inl.hpp



#include <locale>
#include <sstream>
#include <string>

namespace ckpt::detail {

CKPT_INLINE std::string random_text(void (*put)(std::ostream&, const void*), const void* r) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    put(os, r);
    return std::move(os).str();
}

CKPT_INLINE void parse_random(const std::string& text, void (*get)(std::istream&, void*), void* r) {
    std::istringstream is(text);
    is.imbue(std::locale::classic());
    get(is, r);
    if (is.fail()) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   "a random engine or distribution state does not parse");
    }
}

} // namespace ckpt::detail
// end ckpt/types/random-inl.hpp
#endif
// end ckpt/types/random.hpp

#include <cereal/cereal.hpp>
#include <cereal/types/vector.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace ckpt::nn {

/// Everything a training run needs to continue exactly: the model, the optimizer's moments and
/// step count, the data order and position, the random engine (input noise), the step and epoch,
/// and every logged loss. Its tensors read well in ckpt::inspect and in Python:
/// model.layers.0.weight, optimizer.exp_avg.0.weight, ...
template <class Scalar, class Optimizer = adam<Scalar>>
struct train_state {
    mlp<Scalar> model;
    Optimizer optimizer;
    nn::sampler sampler;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    std::int64_t epoch = 0;
    std::vector<double> losses; ///< training loss of every step so far

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(optimizer), CEREAL_NVP(sampler), CEREAL_NVP(rng),
           CEREAL_NVP(step), CEREAL_NVP(epoch), CEREAL_NVP(losses));
    }
    friend bool operator==(const train_state& a, const train_state& b) {
        return a.model == b.model && a.optimizer == b.optimizer && a.sampler == b.sampler &&
               a.rng == b.rng && a.step == b.step && a.epoch == b.epoch && a.losses == b.losses;
    }
};

/// The loss of `model` on `data`: cross-entropy when it has labels, MSE otherwise.
template <class Scalar>
Scalar evaluate(const mlp<Scalar>& model, const dataset<Scalar>& data) {
    const matrix<Scalar> out = model.predict(data.inputs);
    return data.labels.empty() ? mse_loss(out, data.targets).first
                               : cross_entropy_loss(out, data.labels).first;
}

/// The share of `data` a classifier gets right.
template <class Scalar>
double accuracy(const mlp<Scalar>& model, const dataset<Scalar>& data) {
    const matrix<Scalar> out = model.predict(data.inputs);
    std::int64_t right = 0;
    for (Eigen::Index i = 0; i < out.rows(); ++i) {
        Eigen::Index k = 0;
        out.row(i).maxCoeff(&k);
        right += k == data.labels[static_cast<std::size_t>(i)] ? 1 : 0;
    }
    return static_cast<double>(right) / static_cast<double>(out.rows());
}

/// One step: the sampler's next batch, Gaussian input noise from the state's engine, forward,
/// loss, backward, optimizer update. Returns the batch's loss (also appended to `losses`).
template <class Scalar, class Optimizer>
Scalar train_step(train_state<Scalar, Optimizer>& s, const dataset<Scalar>& data,
                  double input_noise = 0.01) {
    dataset<Scalar> b = data.batch(s.sampler.next());
    if (input_noise > 0) {
        std::normal_distribution<double> noise(0.0, input_noise);
        for (Eigen::Index i = 0; i < b.inputs.size(); ++i) {
            b.inputs.data()[i] += static_cast<Scalar>(noise(s.rng));
        }
    }
    forward_cache<Scalar> cache;
    const matrix<Scalar> out = s.model.forward(b.inputs, cache);
    const auto [loss, d_out] =
        b.labels.empty() ? mse_loss(out, b.targets) : cross_entropy_loss(out, b.labels);
    s.optimizer.step(s.model, s.model.backward(cache, d_out));
    ++s.step;
    s.epoch = s.sampler.epoch();
    s.losses.push_back(static_cast<double>(loss));
    return loss;
}

} // namespace ckpt::nn
// end ckpt/nn/train.hpp
// end ckpt/nn.hpp
// begin ckpt/reader.hpp

// A checkpoint's tensors without its C++ type: what tools, converters and other languages'
// bridges need. A reader opens one ckpt file (or any safetensors file) or a distributed
// checkpoint's directory, and gives each tensor's name, dtype, shape and bytes.


#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

/// How a reader opens a checkpoint.
struct reader_options {
    /// Check every checksum before the reader is made: a file's, or every rank file's of a
    /// distributed checkpoint (and that they are the files its manifest names). Without it,
    /// only the header (or the manifest) is read, and a distributed checkpoint's reads are
    /// still checked chunk by chunk.
    bool verify = true;
    ckpt::limits limits{};          ///< caps on what the files may declare
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
    progress_callback progress{};   ///< told how far verification has come, over all files
};

/// A checkpoint's tensors, read without knowing the state's type. Its tensors' bytes are the
/// row-major view that safetensors readers see (`tensor_info::order` says whether the state
/// held them column-major). Reads go to the files as they are asked for; the reader holds
/// their descriptors (and a distributed checkpoint's manifest), not their bytes. One thread
/// at a time.
class reader {
public:
    /// Opens a checkpoint file, or a distributed checkpoint's directory (ckpt::mpi).
    /// @throws io_error, corrupt_error, version_error, limit_error
    explicit reader(const std::filesystem::path& path, const reader_options& options = {});
    reader(reader&&) noexcept;
    reader& operator=(reader&&) noexcept;
    ~reader();

    /// Its metadata, tensors and sizes, as inspect() gives them. For a distributed
    /// checkpoint: its global tensors (the rows of every rank together; `place` says how they
    /// were saved), then the rank-local ones, one per rank (`rank` says whose); `file_bytes`
    /// counts every file, `value_bytes` every rank's values, `format_version` is the
    /// manifest's, `header_bytes` the manifest's size, `checksum` is empty.
    [[nodiscard]] const ckpt::info& info() const noexcept;
    [[nodiscard]] const std::filesystem::path& path() const noexcept;
    /// Whether it is a distributed checkpoint's directory.
    [[nodiscard]] bool distributed() const noexcept;
    /// How many value streams it has: the ranks of a distributed checkpoint, else 1.
    [[nodiscard]] std::uint64_t value_streams() const noexcept;

    /// The tensor of that name, or null. A distributed checkpoint's rank-local tensor is
    /// `rank`'s (the lowest rank's when `rank` is negative).
    [[nodiscard]] const tensor_info* find(std::string_view name, std::int64_t rank = -1) const;

    /// A tensor's bytes (one of info().tensors), into `out` of exactly its size.
    /// @throws io_error, corrupt_error (a distributed checkpoint's chunk does not match its
    /// checksum), usage_error (`out` has another size, or `t` is not this reader's)
    void read(const tensor_info& t, std::span<std::byte> out) const;
    [[nodiscard]] std::vector<std::byte> read(const tensor_info& t) const;

    /// The cereal stream of the state's non-tensor values (of rank `stream`'s file for a
    /// distributed checkpoint); empty when the file has none. @throws io_error, corrupt_error
    [[nodiscard]] std::vector<std::byte> values(std::uint64_t stream = 0) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// How save_safetensors() writes.
struct safetensors_options {
    io::backend* backend = nullptr; ///< file-system calls; nullptr: POSIX
};

/// Writes every tensor of `from` into a plain safetensors file at `to`: the tensors alone,
/// without ckpt's value stream or __metadata__, for tools that reject unknown U8 entries or
/// metadata (ckpt::load cannot read it back into a state with values). Written atomically, as
/// save() writes, one tensor at a time. A distributed checkpoint's global tensors are written
/// whole, its rank-local ones once per rank, named by display_name().
/// @returns the size of the file written. @throws io_error, corrupt_error, schema_error (two
/// tensors would have the same name)
std::uint64_t save_safetensors(const reader& from, const std::filesystem::path& to,
                               const safetensors_options& options = {});

/// The name save_safetensors() and the `ckpt` tool give a tensor: its name, with `@rank<r>`
/// for a rank-local tensor of a distributed checkpoint.
std::string display_name(const tensor_info& t);

namespace detail {

/// A rank file of a distributed checkpoint, opened, its size checked against the manifest's
/// `bytes`. @throws io_error, corrupt_error (another size: truncated or replaced)
std::unique_ptr<fd_guard> open_rank_file(io::backend& io, const std::string& path,
                                         std::uint64_t bytes);

/// The bytes of a distributed checkpoint's files, each chunk verified before use.
class piece_reader {
public:
    piece_reader(io::backend& io, const std::filesystem::path& dir, const manifest& m)
        : io_(&io), dir_(dir), m_(&m) {}

    /// Bytes [begin, end) of `p` into `out`. @throws io_error, corrupt_error
    void read(const manifest_piece& p, std::uint64_t begin, std::uint64_t end, std::byte* out,
              std::string_view what);
    [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }

private:
    int open(std::uint64_t file);

    io::backend* io_;
    std::filesystem::path dir_;
    const manifest* m_;
    std::map<std::uint64_t, std::unique_ptr<fd_guard>> fds_;
    std::map<std::uint64_t, std::string> paths_;
    std::vector<std::byte> scratch_;
    std::uint64_t bytes_read_ = 0;
};

} // namespace detail

} // namespace ckpt

#ifdef CKPT_DEFINITIONS
// begin ckpt/reader-inl.hpp

// Definitions of <ckpt/reader.hpp>; included by it in header-only mode.



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
// end ckpt/reader-inl.hpp
#endif
// end ckpt/reader.hpp

#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#endif // CKPT_CKPT_HPP
