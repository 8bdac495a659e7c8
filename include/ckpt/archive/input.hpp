#pragma once

#include <ckpt/archive/output.hpp>
#include <ckpt/archive/path.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/header.hpp>

#include <Eigen/Core>
#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace ckpt::detail {

/// The tensors of a verified file, by name, with their bytes.
struct tensor_source {
    const std::vector<file_tensor>* entries = nullptr;
    std::unordered_map<std::string_view, std::size_t> by_name;
    const std::byte* data = nullptr; ///< start of the data section
};

/// The (rows, cols) an Eigen object must have to hold a file tensor, given the state's kind of
/// tensor; false when the ranks differ.
inline bool eigen_shape_of(const file_tensor& f, const tensor_record& want, std::int64_t& rows,
                           std::int64_t& cols) {
    if (want.vector) {
        if (f.shape.size() != 1) return false;
        const auto n = static_cast<std::int64_t>(f.shape[0]);
        // A compile-time vector is one row or one column; which one is fixed by its type.
        if (want.fixed_rows && want.rows == 1 && !(want.fixed_cols && want.cols == 1)) {
            rows = 1;
            cols = n;
        } else {
            rows = n;
            cols = 1;
        }
        return true;
    }
    if (f.shape.size() != 2) return false;
    const char order = f.order == '-' ? want.order : f.order;
    if (order == 'R') {
        rows = static_cast<std::int64_t>(f.shape[0]);
        cols = static_cast<std::int64_t>(f.shape[1]);
    } else {
        rows = static_cast<std::int64_t>(f.shape[1]);
        cols = static_cast<std::int64_t>(f.shape[0]);
    }
    return true;
}

/// cereal input archive matching tensor_oarchive: reads values from the tagged stream and,
/// when asked to, copies tensors from a verified file. Shapes were checked before it runs.
class tensor_iarchive
    : public cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>,
      public path_tracker {
public:
    /// `tensors` null: values only, every tensor is left untouched. `tensor_entries` is how
    /// many tensors the file holds: a container's elements may consist of tensors alone.
    tensor_iarchive(std::span<const std::byte> values, const tensor_source* tensors,
                    std::uint64_t tensor_entries)
        : cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>(this),
          values_(values), tensors_(tensors), tensor_entries_(tensor_entries) {}

    /// False in the tensor pass, which always follows a values pass over the same object with
    /// the same values (see load_state): costly value decoders (random engines' text) may read
    /// their bytes and skip the decoding, whose result the object already holds.
    [[nodiscard]] bool decodes_values() const noexcept { return tensors_ == nullptr; }

    template <class T>
    void read_scalar(T& v) {
        static_assert(is_supported_scalar_v<T>,
                      "ckpt: unsupported arithmetic type (long double and wide characters "
                      "have no portable representation)");
        expect_tag(static_cast<std::uint8_t>(dtype_of<T>));
        need(sizeof(T));
        if constexpr (std::is_same_v<T, bool>) {
            const auto b = static_cast<std::uint8_t>(values_[pos_]);
            if (b > 1) {
                throw_error<corrupt_error>(errc::corrupt_values,
                                           path() + ": a bool stored as " + std::to_string(b));
            }
            v = b == 1;
        } else {
            std::memcpy(&v, values_.data() + pos_, sizeof(T));
        }
        pos_ += sizeof(T);
    }
    std::uint64_t read_size() {
        expect_tag(tag_size);
        std::uint64_t n = 0;
        need(sizeof n);
        std::memcpy(&n, values_.data() + pos_, sizeof n);
        pos_ += sizeof n;
        // Every element takes at least one byte of values or one tensor: a count beyond what is
        // left is a lie, and it must not reach a resize(). (Elements that store nothing at all,
        // empty structs, are bounded the same way.)
        const std::uint64_t left = values_.size() - pos_;
        if (n > left && n - left > tensor_entries_) {
            throw_error<limit_error>(errc::limit_value_size,
                                     path() + ": the checkpoint declares " + std::to_string(n) +
                                         " elements, but only " + std::to_string(left) +
                                         " bytes of values and " + std::to_string(tensor_entries_) +
                                         " tensors remain");
        }
        return n;
    }
    void read_bytes(void* data, std::size_t n) {
        expect_tag(tag_bytes);
        std::uint64_t len = 0;
        need(sizeof len);
        std::memcpy(&len, values_.data() + pos_, sizeof len);
        pos_ += sizeof len;
        if (len != n) {
            throw_error<schema_error>(
                std::vector<schema_problem>{{errc::schema_value_type, path(),
                                             "file has " + std::to_string(len) +
                                                 " bytes, state expects " + std::to_string(n)}});
        }
        need(n);
        if (n > 0) std::memcpy(data, values_.data() + pos_, n);
        pos_ += n;
    }

    template <class Derived>
    void read_tensor(Eigen::PlainObjectBase<Derived>& m) {
        if (tensors_ == nullptr) return;
        const std::string name = path();
        const auto it = tensors_->by_name.find(name);
        const tensor_record want = describe_tensor(m);
        if (it == tensors_->by_name.end()) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_missing, name, "the checkpoint has no such tensor"}});
        }
        const file_tensor& f = (*tensors_->entries)[it->second];
        std::int64_t rows = 0;
        std::int64_t cols = 0;
        if (f.type != want.type || !eigen_shape_of(f, want, rows, cols)) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_mismatch, name, "the tensor changed while loading"}});
        }
        if (rows != m.rows() || cols != m.cols()) {
            m.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        }
        using scalar = typename Derived::Scalar;
        const std::byte* src = tensors_->data + f.begin;
        const char order = f.order == '-' ? want.order : f.order;
        if (want.vector || order == want.order || m.size() == 0) {
            if (f.end > f.begin) std::memcpy(m.data(), src, f.end - f.begin);
        } else {
            // Same values, other storage order: let Eigen transpose the layout.
            constexpr int other = Derived::IsRowMajor ? Eigen::ColMajor : Eigen::RowMajor;
            using other_t = Eigen::Matrix<scalar, Eigen::Dynamic, Eigen::Dynamic, other>;
            m = Eigen::Map<const other_t>(reinterpret_cast<const scalar*>(src), m.rows(), m.cols());
        }
    }

    /// Throws when values are left over: the checkpoint holds more than the state reads.
    void finish() const {
        if (pos_ != values_.size()) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_value_count, "value",
                 std::to_string(values_.size() - pos_) +
                     " bytes of values were not read: the checkpoint holds more non-tensor "
                     "fields than the state"}});
        }
    }

private:
    static std::string tag_name(std::uint8_t tag) {
        if (tag == tag_size) return "a container size";
        if (tag == tag_bytes) return "a byte string";
        if (tag >= static_cast<std::uint8_t>(dtype::boolean) &&
            tag <= static_cast<std::uint8_t>(dtype::f8_e5m2)) {
            return std::string(to_string(static_cast<dtype>(tag)));
        }
        return "unknown tag " + std::to_string(tag);
    }
    void expect_tag(std::uint8_t tag) {
        if (pos_ >= values_.size()) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_value_count, path(),
                 "the state reads " + tag_name(tag) +
                     " here, but the checkpoint's values end: the state has more non-tensor "
                     "fields than the checkpoint"}});
        }
        const auto got = static_cast<std::uint8_t>(values_[pos_]);
        if (got != tag) {
            throw_error<schema_error>(std::vector<schema_problem>{
                {errc::schema_value_type, path(),
                 "file has " + tag_name(got) + ", state expects " + tag_name(tag)}});
        }
        ++pos_;
    }
    void need(std::size_t n) const {
        if (n > values_.size() - pos_) {
            throw_error<corrupt_error>(errc::corrupt_values,
                                       path() + ": the values entry ends inside a value");
        }
    }

    std::span<const std::byte> values_;
    std::size_t pos_ = 0;
    const tensor_source* tensors_;
    std::uint64_t tensor_entries_;
};

template <class T>
void prologue(tensor_iarchive& ar, const T&) {
    ar.push();
}
template <class T>
void epilogue(tensor_iarchive& ar, const T&) {
    ar.pop();
}
template <class T>
void prologue(tensor_iarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::SizeTag<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::BinaryData<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::BinaryData<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::base_class<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::base_class<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const cereal::virtual_base_class<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const cereal::virtual_base_class<T>&) {}

template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, T& v) {
    ar.read_scalar(v);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, cereal::NameValuePair<T>& nvp) {
    ar.name_next(nvp.name);
    ar(nvp.value);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, cereal::SizeTag<T>& tag) {
    tag.size = static_cast<std::remove_reference_t<T>>(ar.read_size());
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, cereal::BinaryData<T>& bd) {
    ar.read_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

} // namespace ckpt::detail

CEREAL_SETUP_ARCHIVE_TRAITS(ckpt::detail::tensor_iarchive, ckpt::detail::tensor_oarchive)
