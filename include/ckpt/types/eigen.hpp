#pragma once

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>

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
