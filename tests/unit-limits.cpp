// Limits: a file that declares more than it holds, or more than ckpt accepts, is refused before
// anything of the declared size is allocated, even when its checksum is correct.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>

namespace {
std::atomic<bool> tracking{false};
std::atomic<std::size_t> largest{0};
[[maybe_unused]] void note(std::size_t n) {
    if (tracking.load(std::memory_order_relaxed) && n > largest.load(std::memory_order_relaxed)) {
        largest.store(n, std::memory_order_relaxed);
    }
}
} // namespace

// Every allocation (operator new, std::vector, Eigen's aligned buffers) ends in malloc, calloc
// or realloc: record the largest one made while `tracking` is on. The sanitizers bring their own
// allocator, so there the sizes go unrecorded and the checks on them are skipped.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool allocations_tracked = false;
#else
constexpr bool allocations_tracked = true;
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
    note(n);
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t k) {
    note(n * k);
    return __libc_calloc(n, k);
}
void* realloc(void* p, std::size_t n) {
    note(n);
    return __libc_realloc(p, n);
}
}
#endif

namespace {

/// The JSON parser allocates in 64 KiB chunks; nothing else should come close.
constexpr std::size_t max_small_allocation = 256 * 1024;

/// Loads `file` into `state` with allocation tracking on; returns the error id.
template <class T>
int load_tracked(const std::vector<std::byte>& file, T& state, const ckpt::limits& lim = {}) {
    largest = 0;
    tracking = true;
    const int id = test::error_id([&] { ckpt::load_from_memory(file, state, lim); });
    tracking = false;
    return id;
}

struct one_matrix {
    Eigen::MatrixXf big;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(big));
    }
};

std::string values_entry(std::uint64_t begin, std::uint64_t len) {
    return R"(,"__ckpt_values__":{"dtype":"U8","shape":[)" + std::to_string(len) +
           R"(],"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(begin + len) +
           "]}";
}

} // namespace

TEST_CASE("the allocation tracker sees Eigen's buffers (so the checks below can fail)") {
    largest = 0;
    tracking = true;
    Eigen::MatrixXf m(1024, 1024);
    tracking = false;
    m.setZero();
    CHECK((!allocations_tracked || largest >= 4 * 1024 * 1024));
}

TEST_CASE(
    "a tensor declaring 2^60 elements is a limit error, and nothing that large is allocated") {
    const std::string json =
        test::header_start() +
        R"(,"big":{"dtype":"F32","shape":[1152921504606846976],"data_offsets":[0,4611686018427387904]})" +
        values_entry(4611686018427387904ULL, 0) + "}";
    const auto file = test::craft(json.substr(0, json.size() - 1) + "}");
    one_matrix s;
    CHECK(load_tracked(file, s) == ckpt::errc::limit_tensor_bytes);
    CHECK((!allocations_tracked || largest < max_small_allocation));
    CHECK(s.big.size() == 0);
    const std::string text = test::error_text([&] { ckpt::load_from_memory(file, s); });
    CHECK(text == "[ckpt.limit.504] '<memory>': tensor 'big' declares F32 [1152921504606846976], "
                  "4611686018427387904 bytes, but the file holds only 0 bytes of data");
}

TEST_CASE("a shape whose byte count overflows 64 bits is a limit error") {
    const std::string json =
        test::header_start() +
        R"(,"big":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]})" +
        values_entry(0, 0) + "}";
    one_matrix s;
    CHECK(load_tracked(test::craft(json), s) == ckpt::errc::limit_tensor_bytes);
    CHECK((!allocations_tracked || largest < max_small_allocation));
}

TEST_CASE("a header declaring 2^40 bytes is a limit error, and nothing that large is allocated") {
    std::vector<std::byte> file = test::craft(test::header_start() + values_entry(0, 0) + "}");
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(file.data(), &huge, 8);
    one_matrix s;
    CHECK(load_tracked(file, s) == ckpt::errc::limit_header);
    CHECK((!allocations_tracked || largest < max_small_allocation));
    CHECK(test::error_text([&] { ckpt::load_from_memory(file, s); }) ==
          "[ckpt.limit.501] '<memory>': the header declares 1099511627776 bytes, more than the "
          "limit of 100000000");
    ckpt::limits small;
    small.max_header_bytes = 64;
    const auto ok = ckpt::save_to_memory(s);
    CHECK(load_tracked(ok, s, small) == ckpt::errc::limit_header);
}

TEST_CASE("tensor count, rank and name length are capped") {
    std::string json = test::header_start();
    std::uint64_t at = 0;
    for (int i = 0; i < 3; ++i) {
        json += R"(,"t)" + std::to_string(i) + R"(":{"dtype":"U8","shape":[1],"data_offsets":[)" +
                std::to_string(at) + "," + std::to_string(at + 1) + "]}";
        ++at;
    }
    json += values_entry(at, 0) + "}";
    const auto file = test::craft(json, std::vector<std::byte>(3));
    ckpt::limits lim;
    lim.max_tensors = 2;
    one_matrix s;
    CHECK(load_tracked(file, s, lim) == ckpt::errc::limit_tensor_count);

    const std::string deep =
        test::header_start() +
        R"(,"t":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]})" +
        values_entry(1, 0) + "}";
    CHECK(load_tracked(test::craft(deep, std::vector<std::byte>(1)), s) == ckpt::errc::limit_rank);

    const std::string name(5000, 'n');
    const std::string longname = test::header_start() + R"(,")" + name +
                                 R"(":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})" +
                                 values_entry(0, 0) + "}";
    CHECK(load_tracked(test::craft(longname), s) == ckpt::errc::limit_name);
}

namespace {
struct with_containers {
    std::vector<std::int32_t> ints{1, 2, 3};
    std::string text = "abc";
    std::vector<std::vector<double>> nested{{1.0}, {2.0}};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(ints), CEREAL_NVP(text), CEREAL_NVP(nested));
    }
};

/// Replaces the n-th container size in the values entry (at the end of the file) by `size`.
void set_size_tag(std::vector<std::byte>& file, std::uint64_t values_len, int nth,
                  std::uint64_t size) {
    const std::size_t begin = file.size() - values_len;
    int seen = 0;
    for (std::size_t i = begin; i + 9 <= file.size(); ++i) {
        if (file[i] != std::byte{ckpt::detail::tag_size}) continue;
        if (seen++ == nth) {
            std::memcpy(file.data() + i + 1, &size, 8);
            test::fix_checksum(file);
            return;
        }
    }
    FAIL("size tag not found");
}
} // namespace

TEST_CASE("a container size beyond the bytes left is refused before any resize") {
    const with_containers saved;
    const auto good = ckpt::save_to_memory(saved);
    with_containers probe;
    const std::uint64_t values_len = [&] {
        ckpt::detail::tensor_oarchive ar;
        ar(saved);
        return ar.values().size();
    }();
    for (int nth = 0; nth < 4; ++nth) {
        CAPTURE(nth);
        auto bad = good;
        set_size_tag(bad, values_len, nth, std::uint64_t{1} << 60);
        with_containers s;
        const auto before = test::state_bytes(s);
        CHECK(load_tracked(bad, s) == ckpt::errc::limit_value_size);
        CHECK((!allocations_tracked || largest < max_small_allocation));
        CHECK(test::state_bytes(s) == before);
    }
    auto bad = good;
    set_size_tag(bad, values_len, 1, 4); // "abc" claimed as 4 bytes: the byte string disagrees
    with_containers s;
    CHECK(load_tracked(bad, s) == ckpt::errc::schema_value_type);
    CHECK(test::error_text([&] { ckpt::load_from_memory(bad, s); }) ==
          "[ckpt.schema.305] text: file has 3 bytes, state expects 4");
}

TEST_CASE("a container of tensor-only elements loads: its elements take tensors, not value bytes") {
    const std::vector<Eigen::VectorXf> saved{Eigen::VectorXf::Ones(3), Eigen::VectorXf::Ones(4)};
    const auto file = ckpt::save_to_memory(saved);
    std::vector<Eigen::VectorXf> same{Eigen::VectorXf::Zero(3), Eigen::VectorXf::Zero(4)};
    ckpt::load_from_memory(file, same);
    CHECK(same == saved);
    std::vector<Eigen::VectorXf> empty;
    ckpt::load_from_memory(file, empty);
    CHECK(empty == saved);

    // The bound still holds: one more element than there are tensors and value bytes is a lie.
    ckpt::detail::tensor_oarchive ar;
    ar(saved);
    auto bad = file;
    set_size_tag(bad, ar.values().size(), 0, 2 + ar.values().size());
    std::vector<Eigen::VectorXf> target;
    CHECK(load_tracked(bad, target) == ckpt::errc::limit_value_size);
}
