#pragma once

#include <ckpt/format/header.hpp>
#include <ckpt/tensor.hpp>

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
