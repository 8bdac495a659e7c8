#pragma once

#include <ckpt/detail/config.hpp>

#include <ckpt/archive/output.hpp>
#include <ckpt/archive/path.hpp>
#include <ckpt/detail/memory.hpp>
#include <ckpt/detail/name_index.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/convert.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/header.hpp>

#include <Eigen/Core>
#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <iterator>
#include <limits>
#include <list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ckpt::detail {

/// The tensors of a verified file, by name, with their bytes.
struct tensor_source {
    const std::vector<file_tensor>* entries = nullptr;
    name_index by_name;
    const std::byte* data = nullptr; ///< start of the data section
    /// The values come from a format-1 file, which stored class versions as plain U32 scalars.
    bool legacy_versions = false;
    /// The values come from a file of format 2 or older, which stored standard containers of
    /// numbers as values (see tensor_oarchive::containers_as_values).
    bool containers_as_values = false;
    /// A state's tensor the file lacks keeps its value (load_options::allow_missing).
    bool allow_missing = false;
    /// A file's tensor the state lacks is skipped (load_options::ignore_unexpected).
    bool ignore_unexpected = false;
    /// Per entry, the name the state knows it by when a rename applies (by_name's keys then
    /// point here); empty when nothing was renamed.
    std::vector<std::string> renamed_names;
    /// A tensor stored with a narrower floating-point dtype loads into a wider one
    /// (import_options::widen); `narrow`, the other way, rounding (import_options::narrow).
    bool widen = false;
    bool narrow = false;
    /// The conversions are on offer (an import): a dtype mismatch says which option converts.
    bool offers_conversion = false;
    /// Where the tensor pass finds a tensor the file lacks (allow_missing) that loading
    /// recreates (in a map, optional, smart pointer or variant), so it keeps its value: the
    /// backup of those tensors. May be null.
    const tensor_source* fallback = nullptr;

    tensor_source() = default;
    tensor_source(const tensor_source&) = delete; // by_name's keys may point into this
    tensor_source& operator=(const tensor_source&) = delete;

    /// The name entry `i` is matched by.
    [[nodiscard]] std::string_view name_of(std::size_t i) const {
        return renamed_names.empty() ? std::string_view((*entries)[i].name) : renamed_names[i];
    }

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    /// The entry matched by `name` (never the values entry), or npos. Entry `next` is tried
    /// first, and becomes the one after the entry found: a walk meets the tensors in the
    /// file's order more often than not (always when they share a dtype), and reading entries
    /// in order stays in the caches, where the index's slots lie anywhere in memory.
    [[nodiscard]] std::size_t find(std::string_view name, std::size_t& next) const {
        std::size_t found = npos;
        if (next < entries->size() && name_of(next) == name &&
            (*entries)[next].name != values_entry) {
            found = next;
        } else if (const auto* it = by_name.find(name); it != by_name.end()) {
            found = it->second;
        }
        if (found != npos) next = found + 1;
        return found;
    }

    /// Whether a tensor stored as `from` loads into one of `to` with the conversions allowed.
    [[nodiscard]] bool loads_as(dtype from, dtype to) const noexcept {
        switch (classify_conversion(from, to)) {
        case conversion::same: return true;
        case conversion::widening: return widen;
        case conversion::narrowing: return narrow;
        case conversion::none: break;
        }
        return false;
    }
};

/// A tensor the tensor pass converted: its entry in the file, and how many values changed.
struct converted_entry {
    std::size_t entry = 0;
    dtype to = dtype::u8; ///< the state's dtype
    std::uint64_t inexact = 0;
};

/// The sizes, axis by axis as the state's tensor indexes them, that it must have to hold a file
/// tensor (a column-major file tensor's row-major shape is its axes in reverse); false when the
/// ranks differ.
bool dims_of(const file_tensor& f, const tensor_record& want, tensor_dims& dims);

/// Whether the state's tensor can hold a tensor of `dims`: its own shape, or any shape within
/// its fixed sizes and compile-time bounds when it takes the file's shape (a std::vector, or an
/// empty dynamic Eigen object).
bool holds_shape(const tensor_record& want, const tensor_dims& dims);

/// What one walk of tensor_iarchive over a state does.
enum class read_pass_kind {
    /// Decodes the values and accounts for every tensor the walk meets; tensors are untouched.
    values,
    /// Decodes the values again (same bytes, same object) and copies the tensors in.
    tensors,
    /// Puts back values taken from the state itself, and the tensors of a backup (tensors that
    /// loading replaced, see rebuilt_on_load) when one is given; the other tensors are untouched,
    /// nothing is bounded.
    restore,
};

/// cereal input archive matching tensor_oarchive: reads values from the tagged stream and,
/// in the tensor pass, copies tensors from a verified file. Shapes were checked before that.
///
/// A count read from the file never reaches an allocation unchecked. Each element of a
/// container costs at least one byte of values or one tensor, and tensors are accounted for as
/// the values pass meets them: one the file has (by name, unclaimed, at least as many bytes as
/// the state's object already holds) is paid for by the file's bytes; any other one is paid for
/// by the tensors the state held before loading (`own_tensors`), and there are no more of those
/// than it held. Elements of the standard sequences are created one at a time as the walk
/// reaches them (see load_sequence), so a walk stops at the first tensor nobody pays for.
class tensor_iarchive
    : public cereal::InputArchive<tensor_iarchive, cereal::AllowEmptyClassElision>,
      public path_tracker {
public:
    /// `tensors` may be null only in a restore pass (which then restores no tensor).
    /// `keep_tails`: a sequence the values make shorter keeps its extra elements, unwalked,
    /// until the tensor pass (see load_sequence); for a values pass over the state itself.
    tensor_iarchive(std::span<const std::byte> values, const tensor_source* tensors,
                    read_pass_kind kind, std::uint64_t own_tensors, bool keep_tails = false);
    /// The tensors copied are ordered for every thread (see copy_tensor_bytes), however the
    /// walk ended.
    ~tensor_iarchive() { publish_tensor_copies(); }
    tensor_iarchive(const tensor_iarchive&) = delete;
    tensor_iarchive& operator=(const tensor_iarchive&) = delete;

    /// Standard containers of numbers are read from the values (see
    /// tensor_oarchive::containers_as_values).
    void containers_as_values(bool on) noexcept { containers_as_values_ = on; }
    [[nodiscard]] bool containers_as_values() const noexcept { return containers_as_values_; }

    /// Whether a sequence the values make shorter keeps its extra elements for now.
    [[nodiscard]] bool keeps_tails() const noexcept { return keep_tails_; }
    /// A sequence kept elements the values do not describe (keep_tails only).
    void note_kept_tail() noexcept { kept_tail_ = true; }
    [[nodiscard]] bool kept_tail() const noexcept { return kept_tail_; }
    /// How many tensors a values pass has met.
    [[nodiscard]] std::uint64_t tensors_met() const noexcept { return claimed_count_ + unpaid_; }

    /// False in the tensor pass, which always follows a values pass over the same object with
    /// the same values (see load_state): costly value decoders (random engines' text) may read
    /// their bytes and skip the decoding, whose result the object already holds. True inside an
    /// object that loading makes anew (rebuilt_on_load: a map's item, an optional's value, a
    /// pointee, a variant's alternative), which holds nothing decoded yet.
    [[nodiscard]] bool decodes_values() const noexcept {
        return kind_ != read_pass_kind::tensors || rebuilt_depth_ != 0;
    }
    void enter_rebuilt() noexcept { ++rebuilt_depth_; }
    void leave_rebuilt() noexcept { --rebuilt_depth_; }

    /// A values pass compares the tensors it meets with `tensors`: the list a walk of the state
    /// made before loading, which the file's tensors were checked against (see decode_into).
    void expect_tensors(const std::vector<tensor_record>* tensors) noexcept { expected_ = tensors; }
    /// The values pass met exactly the expected tensors, in their order, each with the same
    /// path, dtype, axes, bounds, storage order and placement, and none inside an object it
    /// made anew: the state's list of tensors is still the one checked.
    [[nodiscard]] bool met_expected_tensors() const noexcept {
        return expected_ != nullptr && as_expected_ && expected_at_ == expected_->size();
    }
    /// The tensors read until end_placement() have placement `p` (ckpt::sharded and
    /// ckpt::rank_local declare it; the file's entries carry it).
    void begin_placement(const placement& p) noexcept { place_ = p; }
    void end_placement() noexcept { place_ = {}; }

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
    std::uint64_t read_size();
    /// The class version the values store for a type whose version in this program is
    /// `compiled`, recorded in versions(). A format-2 type node with no version was written by
    /// a serialize that took none: version 0. @throws schema_error (309) when the stored
    /// version is newer than `compiled`
    std::uint32_t read_class_version(std::size_t hash, std::uint32_t compiled);
    /// The versions read, by cereal's type hash; moved out, for after the walk.
    [[nodiscard]] class_versions take_versions() noexcept { return std::move(versions_); }
    /// The tensors the tensor pass converted, in the walk's order; moved out.
    [[nodiscard]] std::vector<converted_entry> take_conversions() noexcept {
        return std::move(conversions_);
    }
    /// Checks, before the state allocates for it, that the next value is a byte string of
    /// `count` elements of `element_size` bytes; reads nothing.
    void expect_bytes(std::uint64_t count, std::size_t element_size);
    void read_bytes(void* data, std::size_t n);

    /// Reads the tensor `want` describes: `resize(dims)` gives it the shape the file's tensor
    /// has (the check has made sure it can hold it) and returns where its elements go. Memory
    /// the user owns (a view) is written only by finish_views(), at the end of the walk.
    template <class Resize>
    void read_tensor_as(const tensor_record& want, Resize&& resize) {
        tensor_fill fill;
        if (!fill_for(want, fill)) return;
        void* dst = resize(static_cast<const tensor_dims&>(fill.dims));
        if (want.view) {
            views_.emplace_back(fill, dst);
        } else {
            copy_tensor(fill, dst);
        }
    }

    template <class Derived>
    void read_tensor(Eigen::PlainObjectBase<Derived>& m) {
        read_tensor_as(describe_tensor(m), [&m](const tensor_dims& d) -> void* {
            Eigen::Index rows = 0;
            Eigen::Index cols = 0;
            if constexpr (!Derived::IsVectorAtCompileTime) {
                rows = static_cast<Eigen::Index>(d[0]);
                cols = static_cast<Eigen::Index>(d[1]);
            } else if constexpr (Derived::RowsAtCompileTime == 1 &&
                                 Derived::ColsAtCompileTime != 1) {
                rows = 1;
                cols = static_cast<Eigen::Index>(d[0]);
            } else {
                rows = static_cast<Eigen::Index>(d[0]);
                cols = 1;
            }
            if (rows * cols != m.size()) {
                m.resize(rows, cols); // new storage, which nothing of the user's is in
                prepare_new_storage(m.data(), static_cast<std::size_t>(m.size()) *
                                                  sizeof(typename Derived::Scalar));
            } else if (rows != m.rows() || cols != m.cols()) {
                m.resize(rows, cols); // the same storage, reshaped
            }
            return m.data();
        });
    }

    /// Throws when values are left over: the checkpoint holds more than the state reads.
    void finish() const;
    /// Fills the views the tensor pass met (after finish(): nothing can fail any more).
    void finish_views();

private:
    /// Where the tensor pass finds a state's tensor in the file, and the shape it gives it.
    struct tensor_fill {
        const std::byte* src = nullptr;
        std::uint64_t bytes = 0;      ///< in the file
        tensor_dims dims{};           ///< as the state indexes them
        const file_tensor* stored{};  ///< the file's entry: its row-major shape
        std::size_t element_size = 0; ///< in the state
        dtype from = dtype::u8;       ///< the file's dtype
        dtype to = dtype::u8;         ///< the state's
        std::size_t entry = 0;        ///< in the file, for the record of a conversion
        bool transpose = false;       ///< the file holds the other storage order
    };

    /// What this pass does with a tensor the walk meets: in the values pass it is accounted for
    /// (false: nothing to copy); in the tensor pass `fill` says where it comes from; in a restore
    /// pass, only the tensors `tensors` holds (the backup of those that loading replaced) are
    /// copied back, the others are untouched.
    bool fill_for(const tensor_record& want, tensor_fill& fill);

    /// Where entry `entry` of `src` fills `want`; false when its dtype cannot load into
    /// want's (with src's conversions) or its rank differs.
    static bool locate(const tensor_source& src, std::size_t entry, const tensor_record& want,
                       tensor_fill& fill);

    /// The fallback's tensor at `name` (the current path), when it has one that fits `want`.
    [[nodiscard]] bool find_fallback(const tensor_record& want, std::string_view name,
                                     tensor_fill& fill) const;

    /// Copies a found tensor into the state's buffer, which holds fill.dims,
    /// converting its dtype when it differs (and recording that).
    void copy_tensor(const tensor_fill& fill, void* dst);

    /// The entry of tensors_ named `name` (the renamed name, when renames apply), or no_entry.
    std::size_t entry_named(std::string_view name);
    static constexpr std::size_t no_entry = static_cast<std::size_t>(-1);

    /// Tensors the rest of the walk may still meet (see read_size).
    [[nodiscard]] std::uint64_t tensors_left() const noexcept;

    /// The values pass meets tensor `want`, which holds want.bytes bytes now: the file pays for
    /// it, or the state's own tensors do, or the walk stops here. Compared with the expected
    /// tensors, when there are any.
    void account_tensor(const tensor_record& want);

    static std::string tag_name(std::uint8_t tag);
    void expect_tag(std::uint8_t tag);
    void need(std::size_t n) const;

    std::span<const std::byte> values_;
    std::size_t pos_ = 0;
    const tensor_source* tensors_;
    read_pass_kind kind_;
    std::uint64_t own_tensors_;
    bool keep_tails_;
    bool kept_tail_ = false;
    std::vector<char> claimed_; ///< per file entry: paid for a tensor of this walk
    std::uint64_t claimed_count_ = 0;
    std::size_t next_entry_ = 0; ///< the entry after the last one entry_named found
    std::uint64_t unpaid_ = 0;
    std::uint32_t rebuilt_depth_ = 0;
    const std::vector<tensor_record>* expected_ = nullptr;
    std::size_t expected_at_ = 0; ///< the expected tensor the next one met is compared with
    bool as_expected_ = true;
    placement place_{};
    std::string name_; ///< the current tensor's path (its memory serves every tensor)
    bool containers_as_values_ = false;
    class_versions versions_;
    std::vector<converted_entry> conversions_;
    std::vector<std::pair<tensor_fill, void*>> views_; ///< found, to fill at the end
};

} // namespace ckpt::detail

/// The input side of the output archive's versioning: the version comes from the values, and
/// one newer than the program's is refused (see read_class_version).
template <>
template <class T>
std::uint32_t cereal::InputArchive<ckpt::detail::tensor_iarchive,
                                   cereal::AllowEmptyClassElision>::loadClassVersion() {
    static const auto hash = std::type_index(typeid(T)).hash_code();
    if (const auto it = itsVersionedTypes.find(hash); it != itsVersionedTypes.end()) {
        return it->second;
    }
    const std::uint32_t version =
        self->read_class_version(hash, cereal::detail::Version<T>::version);
    itsVersionedTypes.emplace(hash, version);
    return version;
}

namespace ckpt::detail {

template <class T>
void prologue(tensor_iarchive& ar, const T&) {
    ar.push();
    if constexpr (rebuilt_on_load<T>::value) ar.enter_rebuilt();
}
template <class T>
void epilogue(tensor_iarchive& ar, const T&) {
    if constexpr (rebuilt_on_load<T>::value) ar.leave_rebuilt();
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
/// A serialize, not a load, as cereal's binary input archive has it: cereal's C-array support
/// picks binary_data for both directions by asking whether the archive can *output* BinaryData,
/// which only a serialize overload answers for an input archive. With a load here, `float a[3]`
/// was saved as one byte string and loaded element by element, and could not load.
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(tensor_iarchive& ar, cereal::BinaryData<T>& bd) {
    ar.read_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

// The standard sequences cereal loads with resize(count) before the first element: ckpt loads
// them itself (these overloads are more specialized than cereal's), growing one element at a
// time as the walk reaches it, so a count from the file never allocates for elements that cost
// no value bytes (tensors alone) before the tensor accounting has seen them. The file's order
// and encoding are cereal's; an existing element is loaded in place, extra ones are removed.

/// Loads `count` elements into `seq` (vector, deque or list): reuses, then appends, then trims.
/// A values pass over the state itself (keeps_tails) does not trim: the elements it would remove
/// may hold tensors, which putting the values back cannot recreate. If they hold tensors, the
/// checks after the values pass fail (decode_into) and the state is put back as it was; if not,
/// the tensor pass trims.
template <class Seq>
void load_sequence(tensor_iarchive& ar, Seq& seq) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    const auto n = static_cast<std::size_t>(count);
    if (n < seq.size()) {
        if (ar.keeps_tails()) {
            ar.note_kept_tail();
        } else {
            seq.resize(n); // shrinking allocates nothing
        }
    }
    std::size_t i = 0;
    for (auto it = seq.begin(); it != seq.end() && i < n; ++it, ++i) ar(*it);
    for (; i < n; ++i) ar(seq.emplace_back());
}

/// A vector of numbers stored in the values: a count, then one byte string whose length is
/// checked against the count before the resize.
template <class T, class A>
void load_vector_values(tensor_iarchive& ar, std::vector<T, A>& v) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    ar.expect_bytes(count, sizeof(T));
    v.resize(static_cast<std::size_t>(count));
    ar(cereal::binary_data(v.data(), static_cast<std::size_t>(count) * sizeof(T)));
}

template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::vector<T, A>& v) {
    if constexpr (is_supported_scalar_v<T>) {
        if (!std::is_arithmetic_v<T> || !ar.containers_as_values()) {
            // A tensor of rank 1 that takes the file's length.
            const std::int64_t n = static_cast<std::int64_t>(v.size());
            ar.read_tensor_as(make_record(dtype_of<T>, v.data(), 1, &n, '-', 0, true),
                              [&v](const tensor_dims& d) -> void* {
                                  const auto len = static_cast<std::size_t>(d[0]);
                                  if (len != v.size()) v.resize(len);
                                  return v.data();
                              });
            return;
        }
    }
    if constexpr (std::is_arithmetic_v<T>) {
        load_vector_values(ar, v); // format 2 and older
    } else if constexpr (!is_supported_scalar_v<T>) {
        load_sequence(ar, v);
    }
}
template <class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::vector<bool, A>& v) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count)); // each bool is two bytes of values: the bound holds
    v.resize(static_cast<std::size_t>(count));
    for (auto&& bit : v) {
        bool b = false;
        ar(b);
        bit = b;
    }
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::deque<T, A>& d) {
    load_sequence(ar, d);
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::list<T, A>& l) {
    load_sequence(ar, l);
}
template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, std::forward_list<T, A>& l) {
    cereal::size_type count = 0;
    ar(cereal::make_size_tag(count));
    auto before = l.before_begin();
    for (cereal::size_type i = 0; i < count; ++i) {
        if (std::next(before) == l.end()) l.emplace_after(before);
        ++before;
        ar(*before);
    }
    if (std::next(before) == l.end()) return;
    if (ar.keeps_tails()) {
        ar.note_kept_tail(); // see load_sequence
    } else {
        l.erase_after(before, l.end());
    }
}

} // namespace ckpt::detail

CEREAL_SETUP_ARCHIVE_TRAITS(ckpt::detail::tensor_iarchive, ckpt::detail::tensor_oarchive)

#ifdef CKPT_DEFINITIONS
#include <ckpt/archive/input-inl.hpp>
#endif
