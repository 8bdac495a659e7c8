#pragma once

#include <ckpt/archive/output.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace ckpt::detail {

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
