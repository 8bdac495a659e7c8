#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/archive/path.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/placement.hpp>

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
#include <ckpt/archive/output-inl.hpp>
#endif
