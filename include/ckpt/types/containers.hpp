#pragma once

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>
#include <ckpt/format/dtype.hpp>

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
