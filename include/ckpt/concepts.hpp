#pragma once

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>

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
