#pragma once

#include <ckpt/detail/config.hpp>

#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>

#include <cstddef>
#include <istream>
#include <ostream>
#include <random>
#include <string>

namespace ckpt::detail {

// The standard guarantees that `os << x` then `is >> y` gives y == x for every engine and
// distribution, so the text form is an exact, portable state. A distribution's text includes
// its cached values (normal_distribution keeps a second variate), so sequences continue exactly.

/// The text `put` writes, in the classic locale.
std::string random_text(void (*put)(std::ostream&, const void*), const void* r);

/// Reads `text` with `get`, in the classic locale. @throws corrupt_error when it does not parse
void parse_random(const std::string& text, void (*get)(std::istream&, void*), void* r);

template <class Random>
void put_random(std::ostream& os, const void* r) {
    os << *static_cast<const Random*>(r);
}
template <class Random>
void get_random(std::istream& is, void* r) {
    is >> *static_cast<Random*>(r);
}

template <class Archive, class Random>
void save_random(Archive& ar, const Random& r) {
    if constexpr (requires { ar.values_wanted(); }) {
        if (!ar.values_wanted()) { // a walk for the tensor list: the text is never read
            ar(cereal::make_nvp("state", std::string()));
            return;
        }
    }
    ar(cereal::make_nvp("state", random_text(&put_random<Random>, &r)));
}

template <class Archive, class Random>
void load_random(Archive& ar, Random& r) {
    std::string text;
    ar(cereal::make_nvp("state", text));
    if constexpr (requires { ar.decodes_values(); }) {
        if (!ar.decodes_values()) return; // decoded by the values pass just before
    }
    Random loaded;
    parse_random(text, &get_random<Random>, &loaded);
    r = loaded;
}

} // namespace ckpt::detail

#ifndef CKPT_NO_RANDOM_SERIALIZERS
namespace cereal {

#define CKPT_RANDOM_SERIALIZERS(TEMPLATE_PARAMS, TYPE)                                             \
    template <class Archive, TEMPLATE_PARAMS>                                                      \
    void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const TYPE& r) {                                   \
        ::ckpt::detail::save_random(ar, r);                                                        \
    }                                                                                              \
    template <class Archive, TEMPLATE_PARAMS>                                                      \
    void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, TYPE& r) {                                         \
        ::ckpt::detail::load_random(ar, r);                                                        \
    }
#define CKPT_COMMA ,

CKPT_RANDOM_SERIALIZERS(class U CKPT_COMMA U A CKPT_COMMA U C CKPT_COMMA U M,
                        std::linear_congruential_engine<U CKPT_COMMA A CKPT_COMMA C CKPT_COMMA M>)
CKPT_RANDOM_SERIALIZERS(
    class U CKPT_COMMA std::size_t W CKPT_COMMA std::size_t N CKPT_COMMA std::size_t M CKPT_COMMA
        std::size_t R CKPT_COMMA U A CKPT_COMMA std::size_t Us CKPT_COMMA U D CKPT_COMMA
            std::size_t S CKPT_COMMA U B CKPT_COMMA std::size_t T CKPT_COMMA U C CKPT_COMMA
                std::size_t L CKPT_COMMA U F,
    std::mersenne_twister_engine<
        U CKPT_COMMA W CKPT_COMMA N CKPT_COMMA M CKPT_COMMA R CKPT_COMMA A CKPT_COMMA Us CKPT_COMMA
            D CKPT_COMMA S CKPT_COMMA B CKPT_COMMA T CKPT_COMMA C CKPT_COMMA L CKPT_COMMA F>)
CKPT_RANDOM_SERIALIZERS(class U CKPT_COMMA std::size_t W CKPT_COMMA std::size_t S CKPT_COMMA
                            std::size_t R,
                        std::subtract_with_carry_engine<U CKPT_COMMA W CKPT_COMMA S CKPT_COMMA R>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t P CKPT_COMMA std::size_t R,
                        std::discard_block_engine<E CKPT_COMMA P CKPT_COMMA R>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t W CKPT_COMMA class U,
                        std::independent_bits_engine<E CKPT_COMMA W CKPT_COMMA U>)
CKPT_RANDOM_SERIALIZERS(class E CKPT_COMMA std::size_t K, std::shuffle_order_engine<E CKPT_COMMA K>)

// Distributions whose state has a fixed size (discrete and piecewise ones read a count from the
// text and would allocate by it, so they are left out).
CKPT_RANDOM_SERIALIZERS(class T, std::uniform_int_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::uniform_real_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::binomial_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::geometric_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::negative_binomial_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::poisson_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::exponential_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::gamma_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::weibull_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::extreme_value_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::normal_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::lognormal_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::chi_squared_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::cauchy_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::fisher_f_distribution<T>)
CKPT_RANDOM_SERIALIZERS(class T, std::student_t_distribution<T>)

template <class Archive>
void CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const std::bernoulli_distribution& r) {
    ::ckpt::detail::save_random(ar, r);
}
template <class Archive>
void CEREAL_LOAD_FUNCTION_NAME(Archive& ar, std::bernoulli_distribution& r) {
    ::ckpt::detail::load_random(ar, r);
}

#undef CKPT_COMMA
#undef CKPT_RANDOM_SERIALIZERS

} // namespace cereal
#endif

#ifdef CKPT_DEFINITIONS
#include <ckpt/types/random-inl.hpp>
#endif
