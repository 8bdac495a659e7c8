// DO NOT EDIT: generated from include/ by tools/amalgamate.py
// ckpt 0.1.0
// SPDX-License-Identifier: MIT

#pragma once

// Eigen::Tensor and Eigen::TensorFixedSize (Eigen's unsupported Tensor module) of rank 0 to 8,
// either layout, as named tensors with their full shape. A header of its own: the module is
// large, and only the code that includes this header compiles it.

#include "../ckpt.hpp" // the single header

#include <unsupported/Eigen/CXX11/Tensor>

#include <array>
#include <cstddef>
#include <cstdint>

namespace ckpt::detail {

/// The record of an Eigen tensor: its dimensions first axis first; the safetensors shape is the
/// row-major view, as for matrices (a column-major tensor's axes in reverse).
template <class TensorType>
tensor_record describe_eigen_tensor(const TensorType& t, bool fixed) {
    using scalar = typename TensorType::Scalar;
    constexpr int rank = TensorType::NumIndices;
    static_assert(rank <= static_cast<int>(max_rank), "ckpt: an Eigen::Tensor of more than 8 axes");
    static_assert(is_supported_scalar_v<scalar>,
                  "ckpt: Eigen::Tensor with an unsupported scalar type (use bool, an integer, "
                  "float, double, Eigen::half or Eigen::bfloat16)");
    std::array<std::int64_t, max_rank> dims{};
    for (int i = 0; i < rank; ++i)
        dims[static_cast<std::size_t>(i)] = t.dimension(static_cast<std::size_t>(i));
    const char order =
        static_cast<int>(TensorType::Layout) == static_cast<int>(Eigen::RowMajor) ? 'R' : 'C';
    return make_record(dtype_of<scalar>, t.data(), static_cast<std::size_t>(rank), dims.data(),
                       order, fixed ? static_cast<std::uint8_t>((1U << rank) - 1U) : 0, false);
}

template <class S, int N, int O, class I>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const Eigen::Tensor<S, N, O, I>& t) {
    ar.add_tensor(describe_eigen_tensor(t, N == 0));
}

/// An empty tensor takes the file's dimensions; one that holds elements must match them.
template <class S, int N, int O, class I>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, Eigen::Tensor<S, N, O, I>& t) {
    ar.read_tensor_as(describe_eigen_tensor(t, N == 0), [&t](const tensor_dims& d) -> void* {
        if constexpr (N > 0) {
            std::array<I, static_cast<std::size_t>(N)> want{};
            bool same = true;
            for (int i = 0; i < N; ++i) {
                want[static_cast<std::size_t>(i)] = static_cast<I>(d[static_cast<std::size_t>(i)]);
                same = same && t.dimension(static_cast<std::size_t>(i)) ==
                                   want[static_cast<std::size_t>(i)];
            }
            if (!same) {
                const auto before = t.size();
                t.resize(want);
                if (t.size() != before) { // new storage, which nothing of the user's is in
                    prepare_new_storage(t.data(), static_cast<std::size_t>(t.size()) * sizeof(S));
                }
            }
        }
        return t.data();
    });
}

template <class S, class D, int O, class I>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const Eigen::TensorFixedSize<S, D, O, I>& t) {
    ar.add_tensor(describe_eigen_tensor(t, true));
}

template <class S, class D, int O, class I>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, Eigen::TensorFixedSize<S, D, O, I>& t) {
    ar.read_tensor_as(describe_eigen_tensor(t, true),
                      [&t](const tensor_dims&) -> void* { return t.data(); });
}

} // namespace ckpt::detail
