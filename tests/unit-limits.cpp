// Limits: a file that declares more than it holds, or more than ckpt accepts, is refused before
// anything of the declared size is allocated, even when its checksum is correct.
#include "alloc_hook.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>

#include <cstdlib>
#include <deque>
#include <forward_list>
#include <list>

namespace {

/// The JSON parser allocates in 64 KiB chunks; nothing else should come close.
constexpr std::size_t max_small_allocation = 256 * 1024;

/// The largest allocation of the last load_tracked().
std::size_t largest = 0;

/// Loads `file` into `state` with every allocation watched; returns the error id.
template <class T>
int load_tracked(const std::vector<std::byte>& file, T& state, const ckpt::limits& lim = {}) {
    int id = 0;
    test::watch_allocations(
        [&] { id = test::error_id([&] { ckpt::load_from_memory(file, state, lim); }); });
    largest = test::alloc_watch.largest;
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
    Eigen::MatrixXf m;
    test::watch_allocations([&] { m.resize(1024, 1024); });
    m.setZero();
    CHECK(test::alloc_watch.largest >= 4 * 1024 * 1024);
    CHECK(test::alloc_watch.count == 1);
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
    CHECK(largest < max_small_allocation);
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
    CHECK(largest < max_small_allocation);
}

TEST_CASE("a header declaring 2^40 bytes is a limit error, and nothing that large is allocated") {
    std::vector<std::byte> file = test::craft(test::header_start() + values_entry(0, 0) + "}");
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(file.data(), &huge, 8);
    one_matrix s;
    CHECK(load_tracked(file, s) == ckpt::errc::limit_header);
    CHECK(largest < max_small_allocation);
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
/// `ints` is kept in the values (as every vector of numbers was before format 3); the inner
/// vectors of `nested` are tensors, the outer one a count in the values.
struct with_containers {
    std::vector<std::int32_t> ints{1, 2, 3};
    std::string text = "abc";
    std::vector<std::vector<double>> nested{{1.0}, {2.0}};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("ints", ckpt::as_value(ints)), CEREAL_NVP(text), CEREAL_NVP(nested));
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
    for (int nth = 0; nth < 3; ++nth) {
        CAPTURE(nth);
        auto bad = good;
        set_size_tag(bad, values_len, nth, std::uint64_t{1} << 60);
        with_containers s;
        const auto before = test::state_bytes(s);
        CHECK(load_tracked(bad, s) == ckpt::errc::limit_value_size);
        CHECK(largest < max_small_allocation);
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

namespace {

/// 16 KiB in memory, one tensor in the file, nothing in the values.
struct cell {
    Eigen::Matrix<float, 64, 64> m;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(m));
    }
};

template <class Container>
struct holder {
    Container cells;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(cells));
    }
};

/// A value stream: container sizes (tag and count) followed by `padding` zero bytes.
std::vector<std::byte> sizes_then_padding(const std::vector<std::uint64_t>& sizes,
                                          std::size_t padding) {
    std::vector<std::byte> out;
    for (const std::uint64_t n : sizes) {
        out.push_back(std::byte{ckpt::detail::tag_size});
        const auto* p = reinterpret_cast<const std::byte*>(&n);
        out.insert(out.end(), p, p + sizeof n);
    }
    out.resize(out.size() + padding);
    return out;
}

/// A file of F32 tensors (name, shape), zero-filled, then the value stream `values`.
std::vector<std::byte>
file_of(const std::vector<std::pair<std::string, std::vector<std::uint64_t>>>& tensors,
        const std::vector<std::byte>& values) {
    std::string json = test::header_start();
    std::uint64_t at = 0;
    for (const auto& [name, shape] : tensors) {
        std::uint64_t bytes = 4;
        std::string dims;
        for (const std::uint64_t d : shape) {
            bytes *= d;
            dims += (dims.empty() ? "" : ",") + std::to_string(d);
        }
        json += R"(,")" + name + R"(":{"dtype":"F32","shape":[)" + dims + R"(],"data_offsets":[)" +
                std::to_string(at) + "," + std::to_string(at + bytes) + "]}";
        at += bytes;
    }
    json += values_entry(at, values.size()) + "}";
    std::vector<std::byte> data(static_cast<std::size_t>(at));
    data.insert(data.end(), values.begin(), values.end());
    return test::craft(json, data);
}

} // namespace

// cereal's sequence loads resize(count) before the first element. Elements that hold only a
// fixed-size tensor cost no value bytes, so the count bound alone (value bytes left + tensors)
// let a 1 MB file ask for 10^6 elements of 16 KiB: 16 GB in one allocation. ckpt loads these
// containers itself, one element at a time, and the walk stops at the first tensor neither the
// file nor the state's own tensors pay for.
TEST_CASE_TEMPLATE("a 1 MB file declaring 10^6 tensor-only elements allocates for none of them",
                   Container, std::vector<cell>, std::deque<cell>, std::list<cell>,
                   std::forward_list<cell>) {
    const std::uint64_t n = 1'000'000;
    const auto file = file_of({}, sizes_then_padding({n}, static_cast<std::size_t>(n)));
    REQUIRE(file.size() < 1'100'000);
    holder<Container> s;
    CHECK(load_tracked(file, s) == ckpt::errc::limit_value_size);
    CHECK(largest < max_small_allocation);
    CHECK(test::alloc_watch.total < max_small_allocation);
    CHECK(s.cells.empty());
    CHECK(test::error_text([&] { ckpt::load_from_memory(file, s); }) ==
          "[ckpt.limit.505] cells.0.m: the checkpoint has no such tensor, and the state held only "
          "0 tensors before loading: the checkpoint's values declare more elements than it has "
          "tensors for (if the element type gained a tensor, load into a state that already "
          "holds its elements to see every difference)");
}

TEST_CASE("the same at any depth: a vector of vectors of tensor-only elements") {
    const std::uint64_t n = 1'000'000;
    const auto file = file_of({}, sizes_then_padding({1, n}, static_cast<std::size_t>(n)));
    holder<std::vector<std::vector<cell>>> s;
    CHECK(load_tracked(file, s) == ckpt::errc::limit_value_size);
    CHECK(largest < max_small_allocation);
    CHECK(test::alloc_watch.total < max_small_allocation);
    CHECK(s.cells.empty());
    CHECK(test::error_text([&] {
              ckpt::load_from_memory(file, s);
          }).starts_with("[ckpt.limit.505] cells.0.0.m: the checkpoint has no such tensor"));
}

// Five cells declared, tensors for two in the file: three must be paid for by the state's own.
// Two checks stop a walk there: the count against the value bytes and tensors left, and (with
// value bytes to spare, here 16 bytes of padding) the tensor accounting at the first cell that
// nobody pays for.
TEST_CASE("tensors the file lacks are bounded by the state's own: one short, exact, one over") {
    const std::vector<std::pair<std::string, std::vector<std::uint64_t>>> two = {
        {"cells.0.m", {64, 64}}, {"cells.1.m", {64, 64}}};
    for (const std::size_t padding : {0, 16}) {
        const auto file = file_of(two, sizes_then_padding({5}, padding));
        for (const std::size_t own : {2, 3, 4}) {
            CAPTURE(padding);
            CAPTURE(own);
            holder<std::vector<cell>> s;
            s.cells.resize(own);
            for (cell& c : s.cells) c.m.setConstant(7.0f);
            const auto before = test::state_bytes(s);
            const int id = load_tracked(file, s);
            const std::string text = test::error_text([&] { ckpt::load_from_memory(file, s); });
            if (own == 2 && padding == 0) {
                CHECK(id == ckpt::errc::limit_value_size);
                CHECK(text == "[ckpt.limit.505] cells: the checkpoint declares 5 elements, but "
                              "only 0 bytes of values and 4 tensors remain");
            } else if (own == 2) {
                CHECK(id == ckpt::errc::limit_value_size);
                CHECK(text.starts_with("[ckpt.limit.505] cells.4.m: the checkpoint has no such "
                                       "tensor, and the state held only 2 tensors before loading"));
            } else if (padding == 0) {
                CHECK(id == ckpt::errc::schema_missing);
                try {
                    ckpt::load_from_memory(file, s);
                } catch (const ckpt::schema_error& e) {
                    CHECK(e.problem_count() == 3);
                    REQUIRE(e.problems().size() == 3);
                    CHECK(e.problems()[0].path == "cells.2.m");
                    CHECK(e.problems()[2].path == "cells.4.m");
                }
            } else {
                // Every tensor paid for; the 16 bytes nobody reads are the next error.
                CHECK(id == ckpt::errc::schema_value_count);
            }
            CHECK(largest < max_small_allocation);
            CHECK(test::state_bytes(s) == before);
        }
    }
}

// A file's tensor pays for a fixed-size one only if it holds at least the bytes the state's
// object already holds (16 KiB here): exactly one float short, exact, one float over.
TEST_CASE("a file tensor pays for a fixed-size tensor only with as many bytes: one short, exact, "
          "one over") {
    holder<std::vector<cell>> s;
    const auto values = sizes_then_padding({1}, 0);
    CHECK(load_tracked(file_of({{"cells.0.m", {63, 65}}}, values), s) ==
          ckpt::errc::limit_value_size);
    CHECK(test::error_text([&] {
              ckpt::load_from_memory(file_of({{"cells.0.m", {63, 65}}}, values), s);
          })
              .starts_with("[ckpt.limit.505] cells.0.m: the checkpoint's tensor holds 16380 bytes, "
                           "the state's 16384, and the state held only 0 tensors"));
    CHECK(s.cells.empty());
    CHECK(load_tracked(file_of({{"cells.0.m", {1, 4097}}}, values), s) ==
          ckpt::errc::schema_mismatch);
    CHECK(s.cells.empty());
    CHECK(load_tracked(file_of({{"cells.0.m", {64, 64}}}, values), s) == 0);
    REQUIRE(s.cells.size() == 1);
    CHECK(s.cells[0].m.isZero());
}

TEST_CASE("a vector of numbers: the count must match its byte string before the resize") {
    const with_containers saved;
    const auto good = ckpt::save_to_memory(saved);
    const std::uint64_t values_len = [&] {
        ckpt::detail::tensor_oarchive ar;
        ar(saved);
        return ar.values().size();
    }();
    // `ints` holds 3 int32 (12 bytes). The count passes the bound of the bytes left, and the
    // vector is not resized to it: 2 and 4 elements are refused as well as the bound's edge.
    for (const std::uint64_t count : {std::uint64_t{2}, std::uint64_t{4}, values_len - 9}) {
        CAPTURE(count);
        auto bad = good;
        set_size_tag(bad, values_len, 0, count);
        with_containers s;
        const auto before = test::state_bytes(s);
        CHECK(load_tracked(bad, s) == ckpt::errc::schema_value_type);
        CHECK(largest < max_small_allocation);
        CHECK(test::error_text([&] { ckpt::load_from_memory(bad, s); }) ==
              "[ckpt.schema.305] ints: file has 12 bytes, state expects " + std::to_string(count) +
                  " elements of 4 bytes");
        CHECK(test::state_bytes(s) == before);
    }
}
