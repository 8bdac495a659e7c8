#pragma once

#include <ckpt/archive/output.hpp>
#include <ckpt/error.hpp>

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
