#pragma once

#include <ckpt/archive/input.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace ckpt::detail {

CKPT_INLINE bool dims_of(const file_tensor& f, const tensor_record& want, tensor_dims& dims) {
    const std::size_t rank = want.rank;
    if (f.shape.size() != rank) return false;
    const char order = f.order == '-' ? want.order : f.order;
    for (std::size_t i = 0; i < rank; ++i) {
        const std::uint64_t n = order == 'C' ? f.shape[rank - 1 - i] : f.shape[i];
        // A size no object can have (the file's data bounds the others, not an axis of an
        // empty tensor): the shapes differ.
        if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 16)) {
            return false;
        }
        dims[i] = static_cast<std::int64_t>(n);
    }
    return true;
}

CKPT_INLINE bool holds_shape(const tensor_record& r, const tensor_dims& dims) {
    bool same = true;
    for (std::size_t i = 0; i < r.rank; ++i) same = same && dims[i] == r.dims[i];
    if (same) return true;
    // A std::vector takes the file's shape; so does an empty Eigen object of dynamic size.
    if (!r.resizes && (r.elements() != 0 || r.all_fixed())) return false;
    for (std::size_t i = 0; i < r.rank; ++i) {
        if (r.fixed_axis(i) && dims[i] != r.dims[i]) return false;
        if (r.max[i] >= 0 && dims[i] > r.max[i]) return false;
    }
    return true;
}

CKPT_INLINE tensor_iarchive::tensor_iarchive(std::span<const std::byte> values,
                                             const tensor_source* tensors, read_pass_kind kind,
                                             std::uint64_t own_tensors, bool keep_tails)
    : cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>(this), values_(values),
      tensors_(tensors), kind_(kind), own_tensors_(own_tensors), keep_tails_(keep_tails) {
    if (kind_ == read_pass_kind::values) claimed_.assign(tensors_->entries->size(), 0);
}

CKPT_INLINE bool tensor_iarchive::fill_for(const tensor_record& want, tensor_fill& fill) {
    if (kind_ == read_pass_kind::values) {
        account_tensor(want);
        return false;
    }
    if (tensors_ == nullptr) return false; // a restore with no tensors to put back
    // A view's memory is written only once the load has succeeded: there is nothing to restore.
    if (kind_ == read_pass_kind::restore && want.view) return false;
    path_into(name_);
    const std::string& name = name_;
    const std::size_t entry = entry_named(name);
    if (entry == no_entry) {
        // A restore puts back only the tensors its backup holds. A tensor the file lacks was
        // let through by the check (allow_missing): it keeps its value, from the fallback
        // when loading recreated it.
        if (kind_ == read_pass_kind::restore) return false;
        if (tensors_->allow_missing) return find_fallback(want, name, fill);
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_missing, name, "the checkpoint has no such tensor"}});
    }
    if (!locate(*tensors_, entry, want, fill)) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_mismatch, name, "the tensor changed while loading"}});
    }
    return true;
}

CKPT_INLINE bool tensor_iarchive::locate(const tensor_source& src, std::size_t entry,
                                         const tensor_record& want, tensor_fill& fill) {
    const file_tensor& f = (*src.entries)[entry];
    if (!src.loads_as(f.type, want.type) || !dims_of(f, want, fill.dims)) return false;
    fill.src = src.data + f.begin;
    fill.bytes = f.end - f.begin;
    fill.stored = &f;
    fill.element_size = static_cast<std::size_t>(size_of(want.type));
    fill.from = f.type;
    fill.to = want.type;
    fill.entry = entry;
    const char order = f.order == '-' ? want.order : f.order;
    fill.transpose = want.rank >= 2 && order != want.order;
    return true;
}

CKPT_INLINE bool tensor_iarchive::find_fallback(const tensor_record& want, std::string_view name,
                                                tensor_fill& fill) const {
    const tensor_source* back = tensors_->fallback;
    if (back == nullptr) return false;
    const auto it = back->by_name.find(name);
    // The backup holds the state's own tensor at this path, unless the values put another kind
    // of object there (a variant's other alternative): then it is not used.
    return it != back->by_name.end() && locate(*back, it->second, want, fill) &&
           holds_shape(want, fill.dims);
}

/// Reverses the axes of a dense array of N-byte elements: `src` is row-major over `shape` (of
/// `rank` >= 2 axes), `dst` becomes row-major over the reversed shape, which is `src`'s
/// column-major order. For a matrix, the transpose.
template <std::size_t N>
void reverse_axes(std::byte* dst, const std::byte* src, const std::vector<std::uint64_t>& shape) {
    const std::size_t rank = shape.size();
    std::array<std::uint64_t, max_rank> stride{}; // in dst, of each axis of src
    stride[0] = 1;
    for (std::size_t k = 1; k < rank; ++k) stride[k] = stride[k - 1] * shape[k - 1];
    const std::uint64_t inner = shape[rank - 1];
    const std::uint64_t step = stride[rank - 1];
    std::uint64_t runs = 1;
    for (std::size_t k = 0; k + 1 < rank; ++k) runs *= shape[k];
    std::array<std::uint64_t, max_rank> at{}; // index over the outer axes
    for (std::uint64_t run = 0; run < runs; ++run) {
        std::uint64_t base = 0;
        for (std::size_t k = 0; k + 1 < rank; ++k) base += at[k] * stride[k];
        for (std::uint64_t i = 0; i < inner; ++i, src += N) {
            std::memcpy(dst + (base + i * step) * N, src, N);
        }
        for (std::size_t k = rank - 1; k-- > 0;) {
            if (++at[k] < shape[k]) break;
            at[k] = 0;
        }
    }
}

CKPT_INLINE void tensor_iarchive::copy_tensor(const tensor_fill& fill, void* dst) {
    if (fill.bytes == 0) return;
    const std::byte* from = fill.src;
    std::vector<std::byte> converted; // the converted values, when they are transposed next
    if (fill.from != fill.to) {
        const std::uint64_t count = fill.bytes / size_of(fill.from);
        std::byte* into = static_cast<std::byte*>(dst);
        if (fill.transpose) {
            converted.resize(static_cast<std::size_t>(count * fill.element_size));
            into = converted.data();
        }
        conversions_.push_back(
            {fill.entry, fill.to, convert_elements(fill.from, fill.src, fill.to, into, count)});
        if (!fill.transpose) return;
        from = converted.data();
    } else if (!fill.transpose) {
        copy_tensor_bytes(dst, fill.src, static_cast<std::size_t>(fill.bytes));
        return;
    }
    // Same values, other storage order: the file's bytes are row-major over its shape, the
    // state's over the reversed shape.
    auto* out = static_cast<std::byte*>(dst);
    const std::vector<std::uint64_t>& shape = fill.stored->shape;
    switch (fill.element_size) {
    case 1: reverse_axes<1>(out, from, shape); break;
    case 2: reverse_axes<2>(out, from, shape); break;
    case 4: reverse_axes<4>(out, from, shape); break;
    default: reverse_axes<8>(out, from, shape); break;
    }
}

CKPT_INLINE void tensor_iarchive::finish_views() {
    for (const auto& [fill, dst] : views_) copy_tensor(fill, dst);
    views_.clear();
}

CKPT_INLINE std::uint64_t tensor_iarchive::read_size() {
    expect_tag(tag_size);
    std::uint64_t n = 0;
    need(sizeof n);
    std::memcpy(&n, values_.data() + pos_, sizeof n);
    pos_ += sizeof n;
    // Every element takes at least one byte of values or one tensor: a count beyond what is
    // left is a lie. (Elements that store nothing at all, empty structs, are bounded the
    // same way.)
    const std::uint64_t left = values_.size() - pos_;
    const std::uint64_t tensors = tensors_left();
    if (n > left && n - left > tensors) {
        throw_error<limit_error>(errc::limit_value_size,
                                 path() + ": the checkpoint declares " + std::to_string(n) +
                                     " elements, but only " + std::to_string(left) +
                                     " bytes of values and " + std::to_string(tensors) +
                                     " tensors remain");
    }
    return n;
}

CKPT_INLINE std::uint32_t tensor_iarchive::read_class_version(std::size_t hash,
                                                              std::uint32_t compiled) {
    std::uint32_t version = 0;
    if (tensors_ != nullptr && tensors_->legacy_versions) {
        read_scalar(version);
    } else if (pos_ < values_.size() && static_cast<std::uint8_t>(values_[pos_]) == tag_version) {
        ++pos_;
        need(sizeof version);
        std::memcpy(&version, values_.data() + pos_, sizeof version);
        pos_ += sizeof version;
    }
    if (version > compiled) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_class_version, object_path(),
             "the checkpoint was written with class version " + std::to_string(version) +
                 " of this type, this program has version " + std::to_string(compiled) +
                 " (CEREAL_CLASS_VERSION): load it with the program that wrote it, or a newer "
                 "one"}});
    }
    versions_.emplace(hash, version);
    return version;
}

CKPT_INLINE void tensor_iarchive::expect_bytes(std::uint64_t count, std::size_t element_size) {
    const std::size_t at = pos_;
    expect_tag(tag_bytes);
    std::uint64_t len = 0;
    need(sizeof len);
    std::memcpy(&len, values_.data() + pos_, sizeof len);
    pos_ = at;
    if (count > len / element_size || count * element_size != len) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + std::to_string(len) + " bytes, state expects " + std::to_string(count) +
                 " elements of " + std::to_string(element_size) + " bytes"}});
    }
}

CKPT_INLINE void tensor_iarchive::read_bytes(void* data, std::size_t n) {
    expect_tag(tag_bytes);
    std::uint64_t len = 0;
    need(sizeof len);
    std::memcpy(&len, values_.data() + pos_, sizeof len);
    pos_ += sizeof len;
    if (len != n) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + std::to_string(len) + " bytes, state expects " + std::to_string(n)}});
    }
    need(n);
    if (n > 0) std::memcpy(data, values_.data() + pos_, n);
    pos_ += n;
}

CKPT_INLINE void tensor_iarchive::finish() const {
    if (pos_ != values_.size()) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_count, "value",
             std::to_string(values_.size() - pos_) +
                 " bytes of values were not read: the checkpoint holds more non-tensor "
                 "fields than the state"}});
    }
}

CKPT_INLINE std::uint64_t tensor_iarchive::tensors_left() const noexcept {
    if (kind_ == read_pass_kind::restore) return std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t in_file = tensors_->by_name.size();
    if (kind_ == read_pass_kind::tensors) return in_file + own_tensors_;
    return (in_file - claimed_count_) + (own_tensors_ - unpaid_);
}

CKPT_INLINE std::size_t tensor_iarchive::entry_named(std::string_view name) {
    const std::size_t found = tensors_->find(name, next_entry_);
    return found == tensor_source::npos ? no_entry : found;
}

/// Whether a tensor met now is the one `before` describes: everything the check of the file's
/// tensors read of it (the data pointer is not: it may move).
CKPT_INLINE bool same_tensor(const tensor_record& before, const tensor_record& now,
                             std::string_view name, const placement& place) {
    if (before.name != name || before.type != now.type || before.rank != now.rank ||
        before.order != now.order || before.fixed != now.fixed || before.resizes != now.resizes ||
        before.view != now.view || before.bytes != now.bytes || before.place != place) {
        return false;
    }
    for (std::size_t i = 0; i < now.rank; ++i) {
        if (before.dims[i] != now.dims[i] || before.max[i] != now.max[i]) return false;
    }
    return true;
}

CKPT_INLINE void tensor_iarchive::account_tensor(const tensor_record& want) {
    const std::uint64_t bytes_held = want.bytes;
    path_into(name_);
    const std::string& name = name_;
    if (expected_ != nullptr && as_expected_) {
        as_expected_ = rebuilt_depth_ == 0 && expected_at_ < expected_->size() &&
                       same_tensor((*expected_)[expected_at_], want, name, place_);
        ++expected_at_;
    }
    const std::size_t entry = entry_named(name);
    if (entry != no_entry && claimed_[entry] == 0) {
        const file_tensor& f = (*tensors_->entries)[entry];
        if (bytes_held <= f.end - f.begin) {
            claimed_[entry] = 1;
            ++claimed_count_;
            return;
        }
    }
    if (unpaid_ < own_tensors_) {
        ++unpaid_;
        return;
    }
    std::string why = "the checkpoint has no such tensor";
    if (entry != no_entry) {
        const file_tensor& f = (*tensors_->entries)[entry];
        why = claimed_[entry] != 0
                  ? "another tensor of the state has this path"
                  : "the checkpoint's tensor holds " + std::to_string(f.end - f.begin) +
                        " bytes, the state's " + std::to_string(bytes_held);
    }
    throw_error<limit_error>(
        errc::limit_value_size,
        name + ": " + why + ", and the state held only " + std::to_string(own_tensors_) +
            " tensors before loading: the checkpoint's values declare more elements than it "
            "has tensors for (if the element type gained a tensor, load into a state that "
            "already holds its elements to see every difference)");
}

CKPT_INLINE std::string tensor_iarchive::tag_name(std::uint8_t tag) {
    if (tag == tag_size) return "a container size";
    if (tag == tag_bytes) return "a byte string";
    if (tag == tag_version) return "a class version";
    if (tag >= static_cast<std::uint8_t>(dtype::boolean) &&
        tag <= static_cast<std::uint8_t>(dtype::f8_e5m2)) {
        return std::string(to_string(static_cast<dtype>(tag)));
    }
    return "unknown tag " + std::to_string(tag);
}

CKPT_INLINE void tensor_iarchive::expect_tag(std::uint8_t tag) {
    if (pos_ >= values_.size()) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_count, path(),
             "the state reads " + tag_name(tag) +
                 " here, but the checkpoint's values end: the state has more non-tensor "
                 "fields than the checkpoint"}});
    }
    auto got = static_cast<std::uint8_t>(values_[pos_]);
    if (got == tag_version && tag != tag_version) {
        // Written by a serialize that took a version, read by one that takes none: version 0
        // is the same as none; any other is a newer type than this program's.
        std::uint32_t version = 0;
        need(1 + sizeof version);
        std::memcpy(&version, values_.data() + pos_ + 1, sizeof version);
        if (version != 0) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_class_version, path(),
                 "the checkpoint holds class version " + std::to_string(version) +
                     " of the type this field is in, whose serialize in this program takes no "
                     "version"}});
        }
        pos_ += 1 + sizeof version;
        if (pos_ >= values_.size()) {
            expect_tag(tag); // the values end here
            return;
        }
        got = static_cast<std::uint8_t>(values_[pos_]);
    }
    if (got != tag) {
        throw_error<schema_error>(std::vector<schema_problem>{
            {errc::schema_value_type, path(),
             "file has " + tag_name(got) + ", state expects " + tag_name(tag)}});
    }
    ++pos_;
}

CKPT_INLINE void tensor_iarchive::need(std::size_t n) const {
    if (n > values_.size() - pos_) {
        throw_error<corrupt_error>(errc::corrupt_values,
                                   path() + ": the values entry ends inside a value");
    }
}

} // namespace ckpt::detail
