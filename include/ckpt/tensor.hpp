#pragma once

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>
#include <ckpt/detail/config.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>

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
#include <ckpt/tensor-inl.hpp>
#endif
