// Inputs found by the fuzz targets (fuzz/): each must be refused with a ckpt::error, without
// undefined behaviour, before it reaches anything it could damage.
#include "alloc_hook.hpp"
#include "test_util.hpp"

#include "../fuzz/fuzz_states.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <span>

#ifndef CKPT_TEST_DATA_DIR
#define CKPT_TEST_DATA_DIR "tests/data"
#endif

namespace {
/// The fuzz targets' rule (fuzz/fuzz_common.hpp): no one allocation above 2 * input + 1 MiB.
std::size_t fuzz_bound(std::size_t input) {
    return 2 * input + (std::size_t{1} << 20);
}
} // namespace

namespace {
struct nothing {
    template <class Archive>
    void serialize(Archive&) {}
};

/// A ckpt file of the empty state whose ckpt.time is `time`, with a correct checksum.
std::vector<std::byte> file_with_time(const std::string& time) {
    return test::craft(std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') +
                       R"(","ckpt.format_version":"1","ckpt.time":")" + time +
                       R"("},"__ckpt_values__":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})");
}
} // namespace

// load_fuzzer, mutate_fuzzer: parse_time accepted years 0 to 9999 and converted them to
// system_clock's int64 nanoseconds, which hold only 1677-09-21 to 2262-04-11: signed overflow.
TEST_CASE("a ckpt.time outside what system_clock holds is corrupt, not an overflow") {
    for (const std::string time :
         {"9999-12-31T23:59:59.999999999Z", "2262-04-12T00:00:00.000000000Z",
          "1677-09-21T00:00:00.000000000Z", "0000-01-01T00:00:00.000000000Z",
          "7831-11-30T04:22:10.421695366Z"}) {
        CAPTURE(time);
        const std::vector<std::byte> file = file_with_time(time);
        nothing state;
        CHECK(test::error_id([&] { ckpt::load_from_memory(file, state); }) ==
              ckpt::errc::corrupt_header);
    }
    // The last representable instant still loads.
    const std::vector<std::byte> last = file_with_time("2262-04-11T23:47:16.854775807Z");
    nothing state;
    const ckpt::metadata meta = ckpt::load_from_memory(last, state);
    CHECK(meta.time.time_since_epoch() == std::chrono::system_clock::duration::max());
}

TEST_CASE("inspect refuses the fuzzer's time-overflow file (no checksum needed to reach it)") {
    // tests/data/fuzz/time-overflow.safetensors: {"__metadata__":{"ckpt.time":"9999-..."}}
    const auto path = std::filesystem::path(CKPT_TEST_DATA_DIR) / "fuzz/time-overflow.safetensors";
    REQUIRE(std::filesystem::exists(path));
    CHECK(test::error_id([&] { (void)ckpt::inspect(path); }) == ckpt::errc::corrupt_header);
}

// mutate_fuzzer's allocation bound (one allocation above 2 * input + 1 MiB): sampler::load
// (nn/data.hpp) trusts the stored dataset size up to 2^31 and shuffle() materializes the order,
// so a 7 KB file allocates 8 bytes per declared sample (16 GiB at 2^31) before training starts.
TEST_CASE("loading a train_state allocates no more than its file's size suggests") {
    ckpt::nn::train_state<float> big;
    big.sampler = ckpt::nn::sampler(std::int64_t{1} << 20, 4, 1); // order: 8 MiB
    const std::vector<std::byte> file = ckpt::save_to_memory(big);
    REQUIRE(file.size() < 16 * 1024);
    ckpt::nn::train_state<float> state;
    test::watch_allocations([&] { (void)ckpt::load_from_memory(file, state); });
    CHECK(test::alloc_watch.largest <= fuzz_bound(file.size()));
}

// mutate_fuzzer, 8 minutes (tests/data/fuzz/mutate-8cfbfd30.ckpt, 8,171 bytes, a valid
// checksum): the value stream declares a container of thousands of nn::linear, whose elements
// hold tensors only and cost no value bytes. The count passed the bound (value bytes left +
// tensors), cereal's load resized, the shape walk made 8,200 tensor records (one 1.5 MB
// allocation, 14.8 MB in all) and the error listed all 8,200 problems in 912 KB of text. Now the
// values pass accounts for each tensor it meets: the file has none of that name and the fresh
// state held none before loading, so the walk stops at the first.
TEST_CASE("a container whose elements the file has no tensors for stops at the first element") {
    const auto path = std::filesystem::path(CKPT_TEST_DATA_DIR) / "fuzz/mutate-8cfbfd30.ckpt";
    const std::vector<std::byte> file = test::read_file(path);
    REQUIRE(file.size() == 8171);
    ckpt::nn::train_state<float> state;
    const std::vector<std::byte> before = test::state_bytes(state);
    int id = 0;
    std::string text;
    test::watch_allocations([&] {
        try {
            (void)ckpt::load_from_memory(file, state);
        } catch (const ckpt::error& e) {
            id = e.id();
            text = e.what();
        }
    });
    CHECK(id == ckpt::errc::limit_value_size);
    CHECK(text == "[ckpt.limit.505] optimizer.exp_avg.0.bias: the checkpoint has no such tensor, "
                  "and the state held only 0 tensors before loading: the checkpoint's values "
                  "declare more elements than it has tensors for (if the element type gained a "
                  "tensor, load into a state that already holds its elements to see every "
                  "difference)");
    CHECK(test::alloc_watch.largest <= fuzz_bound(file.size()));
    // What loading an 8 KB file costs: the JSON parser's 64 KiB chunk, the index, the state.
    CHECK(test::alloc_watch.total <= 32 * file.size());
    CHECK(test::state_bytes(state) == before);
}

namespace {
struct row_major_matrix_state {
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(m));
    }
};
} // namespace

// A dimension above INT64_MAX next to a 0 declares 0 bytes, passes parse_header, and becomes a
// negative Eigen::Index in eigen_shape_of: resize(-2^63, 0) (an Eigen assertion, or a matrix with
// negative rows without assertions). Last in this file: until fixed, it aborts a debug build.
TEST_CASE("a dimension above INT64_MAX is refused, not cast to a negative size") {
    for (const std::string shape :
         {"[0,9223372036854775808]", "[9223372036854775808,0]", "[0,18446744073709551615]"}) {
        CAPTURE(shape);
        const std::vector<std::byte> file =
            test::craft(std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') +
                        R"(","ckpt.format_version":"1"},"m":{"dtype":"F32","shape":)" + shape +
                        R"(,"data_offsets":[0,0]},"__ckpt_values__":{"dtype":"U8","shape":[0],)"
                        R"("data_offsets":[0,0]}})");
        row_major_matrix_state state;
        CHECK(test::error_id([&] { ckpt::load_from_memory(file, state); }) != 0);
        CHECK(state.m.rows() == 0);
        CHECK(state.m.cols() == 0);
    }
}

// mutate_fuzzer, seeded CI run once the targets checked the strong guarantee
// (tests/data/fuzz/mutate-82c9ed35.ckpt, 12,813 bytes, a valid checksum): the file has the tensor
// names of the filled shapes_state, so the load went in place; the values shortened `chain` (a
// std::list of tensors) from 2 to 1, which removed the second matrix, then failed at a map key.
// Putting the values back made a new, uninitialised second matrix. Now a values pass over the
// state keeps the elements a sequence would lose until every check has passed. Without ASan the
// new matrix may land in the freed node and hold the old bytes by chance; the asan preset fills
// new memory, so there the old code fails this test (checked), and unit-schema's sequences of
// dynamic tensors fail it in every build.
TEST_CASE("a failed load that shortened a list of tensors leaves the list as it was") {
    const auto path = std::filesystem::path(CKPT_TEST_DATA_DIR) / "fuzz/mutate-82c9ed35.ckpt";
    const std::vector<std::byte> file = test::read_file(path);
    REQUIRE(file.size() == 12813);
    fuzz::shapes_state state = fuzz::filled_shapes();
    const std::vector<std::byte> before = test::state_bytes(state);
    CHECK(test::error_text([&] { (void)ckpt::load_from_memory(file, state); }) ==
          "[ckpt.schema.305] named.0.key: file has a container size, state expects a byte string");
    CHECK(test::state_bytes(state) == before);
    REQUIRE(std::distance(state.chain.begin(), state.chain.end()) == 2);
    CHECK(test::bits_equal(state.chain.back(), Eigen::Matrix4d::Constant(0.5).eval()));
}

// import_safetensors reads files with no checksum, so every malformed file reaches its parser and
// checks: each input of the fuzz corpora (fuzz/corpus, fuzz/corpus-import, the regressions),
// whole and cut short at 64 places, must import or be refused with a ckpt::error, within the
// fuzz targets' allocation bound, and a cut-short file is always refused.
TEST_CASE("every fuzz corpus file, whole or truncated, imports or is refused within the bound") {
    const std::filesystem::path data(CKPT_TEST_DATA_DIR);
    std::vector<std::filesystem::path> inputs;
    for (const auto& dir :
         {data / "../../fuzz/corpus", data / "../../fuzz/corpus-import", data / "fuzz"}) {
        for (const auto& entry : std::filesystem::directory_iterator(dir)) {
            inputs.push_back(entry.path());
        }
    }
    std::sort(inputs.begin(), inputs.end());
    REQUIRE(inputs.size() >= 31);
    std::size_t imported = 0;
    std::size_t refused = 0;
    for (const auto& path : inputs) {
        CAPTURE(path.filename().string());
        const std::vector<std::byte> whole = test::read_file(path);
        for (std::size_t cut = 0; cut <= 64; ++cut) {
            const std::size_t size = whole.size() - whole.size() * cut / 64;
            CAPTURE(size);
            const std::span<const std::byte> bytes(whole.data(), size);
            ckpt::import_options o;
            o.allow_missing = true;
            o.ignore_unexpected = true;
            o.widen = true;
            o.narrow = true;
            int id = 0;
            test::watch_allocations([&] {
                try {
                    fuzz::shapes_state shapes;
                    (void)ckpt::import_safetensors_from_memory(bytes, shapes, o);
                    ckpt::nn::train_state<float> train;
                    (void)ckpt::import_safetensors_from_memory(bytes, train, o);
                } catch (const ckpt::error& e) {
                    id = e.id();
                }
            });
            CHECK(test::alloc_watch.largest <= fuzz_bound(size));
            if (size < whole.size()) {
                CHECK(id != 0); // a truncated file is malformed
            }
            (id == 0 ? imported : refused) += 1;
        }
    }
    MESSAGE(imported << " imported, " << refused << " refused");
    // Every whole file imports but time-overflow.safetensors (its ckpt.time is corrupt).
    CHECK(imported == inputs.size() - 1);
}

namespace {
/// make_corpus's one-int state (fuzz/make_corpus.cpp).
struct tiny_state {
    std::int32_t n = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(n));
    }
};

/// Loads `file` into a fresh T: the error's text, or "" when it loads.
template <class T>
std::string load_text(const std::vector<std::byte>& file) {
    T state;
    return test::error_text([&] { (void)ckpt::load_from_memory(file, state); });
}
} // namespace

// The fuzz targets' seeds (fuzz/corpus, written by make_corpus): each loads into the state it
// was written from, the files of format 3 and those kept from formats 1 and 2 (named -v1, -v2),
// which read their containers from the values. A seed that no longer loads seeds only refusals.
TEST_CASE("every seed of the fuzz corpus loads into the state it was written from") {
    const std::filesystem::path dir =
        std::filesystem::path(CKPT_TEST_DATA_DIR) / "../../fuzz/corpus";
    std::size_t loaded = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        CAPTURE(name);
        const std::vector<std::byte> file = test::read_file(entry.path());
        const auto is = [&](const std::string& prefix) { return name.rfind(prefix, 0) == 0; };
        std::string text;
        if (is("train-sgd-")) {
            text = load_text<ckpt::nn::train_state<float, ckpt::nn::sgd<float>>>(file);
        } else if (is("train-")) {
            text = load_text<ckpt::nn::train_state<float>>(file);
        } else if (is("kinds")) {
            text = load_text<fuzz::kinds_state>(file);
        } else if (is("shapes")) {
            text = load_text<fuzz::shapes_state>(file);
        } else if (is("versioned")) {
            text = load_text<fuzz::versioned_state>(file);
        } else if (is("tensor-kinds")) {
            text = load_text<fuzz::tensor_kinds_state>(file);
        } else if (is("tiny")) {
            text = load_text<tiny_state>(file);
        } else {
            FAIL("a corpus file of no known state");
        }
        CHECK(text == "");
        ++loaded;
    }
    CHECK(loaded == 24);
}

// The fuzz targets check the strong guarantee on a filled tensor_kinds_state by comparing walks
// of it (fuzz::same_as_filled): the walk must see the arena its views point at, which the state
// does not own and a copy of it shares.
TEST_CASE("the fuzz targets' check of a failed load sees the memory of the views") {
    const std::filesystem::path dir =
        std::filesystem::path(CKPT_TEST_DATA_DIR) / "../../fuzz/corpus";
    fuzz::tensor_kinds_state state = fuzz::filled_tensor_kinds();
    REQUIRE(fuzz::same_as_filled(state));
    fuzz::tensor_kinds_state copy = state; // the same arena
    copy.arena[13] += 1.0F;
    CHECK(!fuzz::same_as_filled(state));
    copy.arena[13] -= 1.0F;
    REQUIRE(fuzz::same_as_filled(state));

    // Refused (the file's cube is empty, the state's holds elements): nothing changed, the
    // views' memory included, whether the load decoded into a copy or in place.
    const std::vector<std::byte> empty = test::read_file(dir / "tensor-kinds-empty.ckpt");
    CHECK(test::error_id([&] { (void)ckpt::load_from_memory(empty, state); }) ==
          ckpt::errc::schema_mismatch);
    CHECK(fuzz::same_as_filled(state));
    fuzz::pinned_tensor_kinds pinned;
    CHECK(test::error_id([&] { (void)ckpt::load_from_memory(empty, pinned); }) != 0);
    CHECK(fuzz::same_as_filled(pinned.kinds));

    // Its own file fills a fresh state, the arena through the views too.
    fuzz::tensor_kinds_state fresh;
    REQUIRE(!fuzz::same_as_filled(fresh));
    (void)ckpt::load_from_memory(test::read_file(dir / "tensor-kinds.ckpt"), fresh);
    CHECK(fuzz::same_as_filled(fresh));
}
