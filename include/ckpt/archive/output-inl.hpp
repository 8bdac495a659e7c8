#pragma once

#include <ckpt/archive/output.hpp>

#include <cstddef>
#include <cstdint>
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

CKPT_INLINE void tensor_oarchive::write_size(std::uint64_t n) {
    values_.push_back(static_cast<std::byte>(tag_size));
    append(&n, sizeof n);
}

CKPT_INLINE void tensor_oarchive::write_bytes(const void* data, std::size_t n) {
    values_.push_back(static_cast<std::byte>(tag_bytes));
    const auto len = static_cast<std::uint64_t>(n);
    append(&len, sizeof len);
    append(data, n);
}

CKPT_INLINE void tensor_oarchive::write_class_version(std::uint32_t version) {
    values_.push_back(static_cast<std::byte>(tag_version));
    append(&version, sizeof version);
}

CKPT_INLINE void tensor_oarchive::add_tensor(tensor_record&& r) {
    r.name = path();
    r.rebuilt = rebuilt_depth_ != 0;
    tensors_.push_back(std::move(r));
}

CKPT_INLINE void tensor_oarchive::append(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    values_.insert(values_.end(), p, p + n);
}

} // namespace ckpt::detail
