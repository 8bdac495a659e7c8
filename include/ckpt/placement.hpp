#pragma once

// Where each tensor of a distributed state lives, declared where the state is serialized, in the
// spirit of CEREAL_NVP. The declarations are plain data the archives carry into the file
// (`ckpt.placement`, `ckpt.shards`); nothing here knows how the ranks talk to each other.

#include <ckpt/archive/input.hpp>
#include <ckpt/archive/output.hpp>
#include <ckpt/format/placement.hpp>

#include <cereal/cereal.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace ckpt {

/// The rows of a global tensor that this rank's tensor holds: `[offset, offset + its rows)` of
/// `global_rows`. The other axes are the tensor's own.
struct rows {
    std::uint64_t offset = 0;
    std::uint64_t global_rows = 0;
};

namespace detail {
/// See ckpt::sharded and ckpt::rank_local.
template <class T>
struct placed {
    std::string name;
    T& value;
    placement place;
    const char* what;
};
} // namespace detail

/// A tensor of which this rank holds some rows (its first axis): ZeRO-style optimizer moments,
/// a sharded embedding. `ar(ckpt::sharded("m", m_local, {.offset = begin, .global_rows = n}))`.
/// The tensor must be row-major (or have one axis) so that its rows are contiguous. A save
/// writes the rows this rank holds and records their place; a load requires the same place.
/// Other cereal archives see the field as if it were `cereal::make_nvp(name, value)`.
template <class T>
detail::placed<T> sharded(std::string name, T& value, rows where) {
    return {std::move(name), value,
            placement{placement_kind::sharded, where.offset, where.global_rows}, "ckpt::sharded"};
}

/// A field that is each rank's own (its data sampler's cursor, its random engine): every tensor
/// in it is rank-local.
template <class T>
detail::placed<T> rank_local(std::string name, T& value) {
    return {std::move(name), value, placement{placement_kind::rank_local, 0, 0},
            "ckpt::rank_local"};
}

namespace detail {

// The declaration is not a node of its own: the field it wraps is, under the declared name.
template <class T>
void prologue(tensor_oarchive&, const placed<T>&) {}
template <class T>
void epilogue(tensor_oarchive&, const placed<T>&) {}
template <class T>
void prologue(tensor_iarchive&, const placed<T>&) {}
template <class T>
void epilogue(tensor_iarchive&, const placed<T>&) {}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(tensor_oarchive& ar, const placed<T>& p) {
    ar.begin_placement(p.what, p.name.c_str(), p.place);
    ar.name_next(p.name.c_str());
    ar(static_cast<const T&>(p.value));
    ar.end_placement();
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(tensor_iarchive& ar, placed<T>& p) {
    ar.begin_placement(p.place);
    ar.name_next(p.name.c_str());
    ar(p.value);
    ar.end_placement();
}

template <class Archive, class T>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const placed<T>& p) {
    ar(cereal::make_nvp(p.name, static_cast<const T&>(p.value)));
}

template <class Archive, class T>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, placed<T>& p) {
    ar(cereal::make_nvp(p.name, p.value));
}

} // namespace detail

} // namespace ckpt
