// Exact boundaries of the reader's checks: for each bound, a file one byte (or one unit) short of
// it, one exactly at it and one over, each with the error id every reader gives. The checks of
// the header are read by inspect() (without and with verify), load() of a file and
// load_from_memory(); those of the value stream by the loads. Every crafted file carries a
// correct checksum, so that a load reaches the check under test instead of stopping at the
// checksum (a file cut short by hand would be refused there first, and hide the bound), and a
// load from memory reads a heap block of exactly the file's size, so that ASan sees a read one
// byte past its end. Bounds pinned exactly elsewhere are not repeated: a file tensor paying for
// a fixed-size tensor and the state's own tensors (unit-limits), a vector's count against its
// byte string (unit-limits), a BOOL byte (unit-format).
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace boundaries_test {

using bytes = std::vector<std::byte>;

/// The error id each reader gives a file; 0 when it reads the file.
struct ids {
    int inspect = 0;  ///< inspect(), which reads the length and the header only
    int verified = 0; ///< inspect() with verify
    int load = 0;     ///< load() of the file and load_from_memory() (the test checks they agree)
    friend bool operator==(const ids&, const ids&) = default;
};

std::ostream& operator<<(std::ostream& os, const ids& r) {
    return os << "{inspect " << r.inspect << ", verified " << r.verified << ", load " << r.load
              << "}";
}

/// The same id from every reader.
ids all(int id) {
    return {id, id, id};
}

/// `file` in a heap block of exactly its size: ASan then sees a read one byte past its end,
/// which a vector's spare capacity would hide.
class exact_copy {
public:
    explicit exact_copy(const bytes& file)
        : size_(file.size()), data_(std::make_unique<std::byte[]>(file.size())) {
        if (size_ != 0) std::memcpy(data_.get(), file.data(), size_);
    }
    [[nodiscard]] std::span<const std::byte> span() const { return {data_.get(), size_}; }

private:
    std::size_t size_;
    std::unique_ptr<std::byte[]> data_;
};

/// Where the files under test are written, in the test's working directory.
const std::filesystem::path& file_path() {
    static const std::filesystem::path path = test::scratch("boundaries") / "f.ckpt";
    return path;
}

/// What every reader makes of `file`: inspect() and inspect() with verify, then load() and
/// load_from_memory() into copies of `state`, each with the limits `lim`.
template <class State>
ids read_with(const bytes& file, const State& state = {}, const ckpt::limits& lim = {}) {
    const std::filesystem::path& path = file_path();
    test::write_file(path, file);
    ids out;
    out.inspect = test::error_id([&] { (void)ckpt::inspect(path, {.limits = lim}); });
    out.verified =
        test::error_id([&] { (void)ckpt::inspect(path, {.verify = true, .limits = lim}); });
    ckpt::load_options options;
    options.limits = lim;
    State from_file = state;
    const int by_path = test::error_id([&] { (void)ckpt::load(path, from_file, options); });
    State from_memory = state;
    const exact_copy copy(file);
    out.load =
        test::error_id([&] { (void)ckpt::load_from_memory(copy.span(), from_memory, options); });
    CHECK(by_path == out.load);
    return out;
}

/// The id load_from_memory() gives `file` loaded into a copy of `state` (load() of the file
/// must give the same).
template <class State>
int load_id(const bytes& file, const State& state = {}) {
    const std::filesystem::path& path = file_path();
    test::write_file(path, file);
    State from_file = state;
    const int by_path = test::error_id([&] { (void)ckpt::load(path, from_file); });
    State from_memory = state;
    const exact_copy copy(file);
    const int id = test::error_id([&] { (void)ckpt::load_from_memory(copy.span(), from_memory); });
    CHECK(by_path == id);
    return id;
}

/// The id import_safetensors_from_memory() gives `file` (it reads ckpt's files too, and checks
/// their checksum when the header is ckpt's).
template <class State>
int import_id(const bytes& file, const State& state = {}) {
    State s = state;
    const exact_copy copy(file);
    return test::error_id([&] { (void)ckpt::import_safetensors_from_memory(copy.span(), s); });
}

/// The message load_from_memory() throws for `file`, or "".
template <class State>
std::string load_text(const bytes& file, const State& state = {}) {
    State s = state;
    const exact_copy copy(file);
    return test::error_text([&] { (void)ckpt::load_from_memory(copy.span(), s); });
}

/// A tensor entry of the header: `,"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}`.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  std::uint64_t begin, std::uint64_t end) {
    return R"(,")" + name + R"(":{"dtype":")" + dtype + R"(","shape":[)" + shape +
           R"(],"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

/// ckpt's values entry: `len` bytes at `begin`.
std::string values_at(std::uint64_t begin, std::uint64_t len) {
    return entry("__ckpt_values__", "U8", std::to_string(len), begin, begin + len);
}

/// A ckpt header: checksum placeholder, format version, `extra_meta` (`,"key":"value"...`)
/// in __metadata__, then `entries`.
std::string header(const std::string& entries, const std::string& extra_meta = "",
                   int version = ckpt::format_version) {
    std::string json = test::header_start(version);
    json.pop_back(); // reopen __metadata__
    return json + extra_meta + "}" + entries + "}";
}

/// `json` (unpadded: its length is exactly the declared header length) and `data`, with a
/// correct checksum when the file is long enough to hold one.
bytes raw_file(const std::string& json, const bytes& data = {}) {
    bytes file(8 + json.size());
    const std::uint64_t n = json.size();
    std::memcpy(file.data(), &n, 8);
    std::memcpy(file.data() + 8, json.data(), json.size());
    file.insert(file.end(), data.begin(), data.end());
    if (file.size() >= ckpt::detail::checksum_digits_offset + 16) test::fix_checksum(file);
    return file;
}

/// The header length a file declares.
std::uint64_t header_length(const bytes& file) {
    std::uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    return n;
}

/// `file` declaring a header length of `n`, checksum fixed.
bytes with_length(bytes file, std::uint64_t n) {
    std::memcpy(file.data(), &n, 8);
    test::fix_checksum(file);
    return file;
}

/// The value stream tensor_oarchive writes for `state` (what a checkpoint's values entry holds).
template <class State>
bytes values_of(const State& state) {
    ckpt::detail::tensor_oarchive ar;
    ar(state);
    return ar.values();
}

/// A file of `entries` over `data` whose values entry comes last and holds `values`.
bytes file_with_values(const std::string& entries, const bytes& data, const bytes& values) {
    bytes all_data = data;
    all_data.insert(all_data.end(), values.begin(), values.end());
    return test::craft(header(entries + values_at(data.size(), values.size())), all_data);
}

/// Stores `v` at `at` (little-endian, as the value stream holds it).
void put_u64(bytes& b, std::size_t at, std::uint64_t v) {
    std::memcpy(b.data() + at, &v, 8);
}

struct empty_state {
    template <class Archive>
    void serialize(Archive&) {}
};

struct vec_state {
    Eigen::VectorXf t;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t));
    }
};

struct mat_state {
    Eigen::MatrixXf t;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t));
    }
};

/// An F32 vector `f` and a U8 vector `u`, both taking the file's lengths.
struct pair_state {
    Eigen::VectorXf f;
    Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1> u;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(f), CEREAL_NVP(u));
    }
};

struct step_state {
    std::int64_t step = 42;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(step));
    }
};

/// A tensor, then a value: the values entry comes after the tensor in the data section.
struct tensor_step_state {
    Eigen::VectorXf t;
    std::int64_t step = 42;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t), CEREAL_NVP(step));
    }
};

struct text_state {
    std::string text = "abc";
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(text));
    }
};

struct list_state {
    std::vector<Eigen::VectorXf> v;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};

/// One tensor `t`, declared sharded at `at`.
struct sharded_state {
    Eigen::VectorXf t;
    ckpt::rows at;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("t", t, at));
    }
};

/// Two sharded tensors `a` and `b`.
struct two_sharded_state {
    Eigen::VectorXf a;
    Eigen::VectorXf b;
    ckpt::rows at_a;
    ckpt::rows at_b;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("a", a, at_a), ckpt::sharded("b", b, at_b));
    }
};

/// The F32 [2] tensor `t` at [0, 8) and an empty values entry after it: 8 bytes of data.
std::string t2_entries() {
    return entry("t", "F32", "2", 0, 8) + values_at(8, 0);
}

namespace errc = ckpt::errc;

// --- The length prefix and the header length ------------------------------------------------

TEST_CASE("boundary: a file holds the 8-byte header length (201)") {
    CHECK(read_with<empty_state>(bytes{}) == all(errc::corrupt_too_small));
    CHECK(read_with<empty_state>(bytes(7)) == all(errc::corrupt_too_small));
    // 8 bytes: a header length of 0, so an empty header: not JSON, and not ckpt's.
    CHECK(read_with<empty_state>(bytes(8)) ==
          ids{errc::corrupt_json, errc::corrupt_not_ckpt, errc::corrupt_not_ckpt});
    CHECK(read_with<empty_state>(bytes(9)) ==
          ids{errc::corrupt_json, errc::corrupt_not_ckpt, errc::corrupt_not_ckpt});
}

// The file cut one byte into its header, whole, and one byte longer. Every reader refuses the cut
// file before it reads the header, within the bytes it holds (inspect() holds only the length
// then).
TEST_CASE("boundary: the header length against the file's size, the file cut (202)") {
    const bytes good = test::craft(header(values_at(0, 0))); // no data
    const std::uint64_t n = header_length(good);
    REQUIRE(good.size() == 8 + n);

    bytes cut(good.begin(), good.end() - 1);
    test::fix_checksum(cut);
    CHECK(read_with<empty_state>(cut) == all(errc::corrupt_truncated_header));
    CHECK(load_text<empty_state>(cut) == "[ckpt.corrupt.202] '<memory>': the header declares " +
                                             std::to_string(n) + " bytes but only " +
                                             std::to_string(n - 1) +
                                             " follow: the file is truncated or damaged");
    CHECK(read_with<empty_state>(good) == all(0));
    bytes longer = good;
    longer.push_back(std::byte{0});
    test::fix_checksum(longer);
    CHECK(read_with<empty_state>(longer) == all(errc::corrupt_offsets)); // one byte of data
    // import_safetensors reads ckpt's files too, and checks the same bound first.
    CHECK(import_id<empty_state>(cut) == errc::corrupt_truncated_header);
    CHECK(import_id<empty_state>(good) == 0);

    // A header of the checksum prefix, its digits and their quote, the quote cut: whoever looks
    // for ckpt's prefix (import_safetensors does, to decide whether to verify) must not read the
    // quote past the end of the file.
    const std::string quoted =
        std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') + "\"";
    bytes cut_quote = raw_file(quoted);
    cut_quote.pop_back();
    test::fix_checksum(cut_quote);
    CHECK(read_with<empty_state>(cut_quote) == all(errc::corrupt_truncated_header));
    CHECK(import_id<empty_state>(cut_quote) == errc::corrupt_truncated_header);
}

// The same bound, the declared length changed instead: one more than follows, exactly what
// follows, one less (the header then loses its closing brace to the data section).
TEST_CASE("boundary: the header length against the file's size, the length changed (202)") {
    const std::string json = header(values_at(0, 0));
    const bytes good = raw_file(json); // unpadded: the last byte is '}'
    const std::uint64_t n = json.size();
    CHECK(read_with<empty_state>(with_length(good, n + 1)) == all(errc::corrupt_truncated_header));
    CHECK(read_with<empty_state>(good) == all(0)); // a header length need not be a multiple of 8
    CHECK(read_with<empty_state>(with_length(good, n - 1)) == all(errc::corrupt_json));
}

TEST_CASE("boundary: the header length against limits::max_header_bytes (501)") {
    const bytes good = test::craft(header(values_at(0, 0)));
    const std::uint64_t n = header_length(good);
    ckpt::limits lim;
    lim.max_header_bytes = n - 1;
    CHECK(read_with<empty_state>(good, {}, lim) == all(errc::limit_header));
    lim.max_header_bytes = n;
    CHECK(read_with<empty_state>(good, {}, lim) == all(0));
    lim.max_header_bytes = n + 1;
    CHECK(read_with<empty_state>(good, {}, lim) == all(0));
}

// ckpt's header starts with the checksum prefix, 16 hex digits and their closing quote: a
// header of the prefix and the digits alone is one byte short of ckpt's (then it is not ckpt's,
// and not JSON either); with the quote it is ckpt's, and the format version is the next check.
TEST_CASE("boundary: a header long enough for ckpt's checksum (203, then 402)") {
    const std::string digits =
        std::string(ckpt::detail::checksum_prefix) + std::string(16, '0'); // prefix + 16
    CHECK(read_with<empty_state>(raw_file(digits)) ==
          ids{errc::corrupt_json, errc::corrupt_not_ckpt, errc::corrupt_not_ckpt});
    CHECK(read_with<empty_state>(raw_file(digits + "\"")) == all(errc::version_invalid));
    CHECK(read_with<empty_state>(raw_file(digits + "\"}")) == all(errc::version_invalid));
}

TEST_CASE("boundary: format versions 1 to format_version are read (402, 401)") {
    const auto file = [](int version) { return test::craft(header(values_at(0, 0), "", version)); };
    CHECK(read_with<empty_state>(file(0)) == all(errc::version_invalid));
    CHECK(read_with<empty_state>(file(1)) == all(0));
    CHECK(read_with<empty_state>(file(ckpt::format_version)) == all(0));
    CHECK(read_with<empty_state>(file(ckpt::format_version + 1)) == all(errc::version_newer));
}

// --- Caps on what the header declares ----------------------------------------------------------

// __metadata__, "t" and the values entry: 3 members, 2 tensors (the values entry counts).
TEST_CASE("boundary: the header's entries against limits::max_tensors (502)") {
    const bytes file = test::craft(header(t2_entries()), bytes(8));
    ckpt::limits lim;
    lim.max_tensors = 1;
    CHECK(read_with<vec_state>(file, {}, lim) == all(errc::limit_tensor_count));
    lim.max_tensors = 2;
    CHECK(read_with<vec_state>(file, {}, lim) == all(0));
    lim.max_tensors = 3;
    CHECK(read_with<vec_state>(file, {}, lim) == all(0));
}

TEST_CASE("boundary: a tensor's rank against limits::max_rank (503)") {
    const bytes file =
        test::craft(header(entry("t", "F32", "2,3", 0, 24) + values_at(24, 0)), bytes(24));
    ckpt::limits lim;
    lim.max_rank = 1;
    CHECK(read_with<mat_state>(file, {}, lim) == all(errc::limit_rank));
    lim.max_rank = 2;
    CHECK(read_with<mat_state>(file, {}, lim) == all(0));
    lim.max_rank = 3;
    CHECK(read_with<mat_state>(file, {}, lim) == all(0));
}

// The longest entry name is the values entry's, "__ckpt_values__": 15 bytes.
TEST_CASE("boundary: an entry name against limits::max_name_bytes (506)") {
    const bytes file = test::craft(header(t2_entries()), bytes(8));
    ckpt::limits lim;
    lim.max_name_bytes = 14;
    CHECK(read_with<vec_state>(file, {}, lim) == all(errc::limit_name));
    lim.max_name_bytes = 15;
    CHECK(read_with<vec_state>(file, {}, lim) == all(0));
    lim.max_name_bytes = 16;
    CHECK(read_with<vec_state>(file, {}, lim) == all(0));
}

// --- The tensors' sizes and offsets against the data section -----------------------------------

// "t" is F32 [2] (8 bytes) at [0, 8): a data section of 7 bytes cannot hold it; 9 bytes hold a
// byte no tensor covers.
TEST_CASE("boundary: a tensor's dtype and shape against the data section's size (504)") {
    const std::string json = header(t2_entries());
    CHECK(read_with<vec_state>(test::craft(json, bytes(7))) == all(errc::limit_tensor_bytes));
    CHECK(load_text<vec_state>(test::craft(json, bytes(7))) ==
          "[ckpt.limit.504] '<memory>': tensor 't' declares F32 [2], 8 bytes, but the file "
          "holds only 7 bytes of data");
    CHECK(read_with<vec_state>(test::craft(json, bytes(8))) == all(0));
    CHECK(read_with<vec_state>(test::craft(json, bytes(9))) == all(errc::corrupt_offsets));
}

// A dimension becomes Eigen's signed size: up to INT64_MAX it is read (an empty tensor here,
// which no Eigen object of that many columns can take: a schema mismatch), one more is refused.
TEST_CASE("boundary: a dimension against INT64_MAX (504)") {
    const auto file = [](const std::string& shape) {
        return test::craft(header(entry("t", "F32", shape, 0, 0) + values_at(0, 0)));
    };
    const ids takes{0, 0, errc::schema_mismatch};
    CHECK(read_with<mat_state>(file("0,9223372036854775806")) == takes);
    CHECK(read_with<mat_state>(file("0,9223372036854775807")) == takes);
    CHECK(read_with<mat_state>(file("0,9223372036854775808")) == all(errc::limit_tensor_bytes));
}

// "t" is F32 [2]: its data_offsets must span exactly 8 bytes.
TEST_CASE("boundary: a tensor's data_offsets against its dtype and shape (207)") {
    const auto file = [](std::uint64_t begin, std::uint64_t end) {
        return test::craft(header(entry("t", "F32", "2", begin, end) + values_at(8, 0)), bytes(8));
    };
    CHECK(read_with<vec_state>(file(0, 7)) == all(errc::corrupt_offsets));
    CHECK(load_text<vec_state>(file(0, 7)) ==
          "[ckpt.corrupt.207] '<memory>': tensor 't' spans bytes [0, 7) but its dtype and shape "
          "need 8 bytes");
    CHECK(read_with<vec_state>(file(0, 8)) == all(0));
    CHECK(read_with<vec_state>(file(0, 9)) == all(errc::corrupt_offsets));
    CHECK(load_text<vec_state>(file(0, 9)).find("spans bytes [0, 9)") != std::string::npos);
    CHECK(read_with<vec_state>(file(8, 0)) == all(errc::corrupt_offsets)); // end before begin
}

// The values entry is a U8 tensor like any other: its data_offsets must span its shape.
TEST_CASE("boundary: the values entry's data_offsets against its shape (207)") {
    const bytes values = values_of(step_state{});
    REQUIRE(values.size() == 9); // tag and int64
    const auto file = [&](std::uint64_t end) {
        return test::craft(header(entry("__ckpt_values__", "U8", "9", 0, end)), values);
    };
    CHECK(read_with<step_state>(file(8)) == all(errc::corrupt_offsets));
    CHECK(read_with<step_state>(file(9)) == all(0));
    CHECK(read_with<step_state>(file(10)) == all(errc::corrupt_offsets));
}

// "f" (F32 [2]) at [0, 8), then "u" (U8 [4]) where it must start, at 8, or a byte before (an
// overlap) or after (a gap).
TEST_CASE("boundary: each tensor starts where the previous one ends (207)") {
    const auto file = [](std::uint64_t f_at, std::uint64_t u_at) {
        return test::craft(header(entry("f", "F32", "2", f_at, f_at + 8) +
                                  entry("u", "U8", "4", u_at, u_at + 4) + values_at(u_at + 4, 0)),
                           bytes(u_at + 4));
    };
    CHECK(read_with<pair_state>(file(0, 7)) == all(errc::corrupt_offsets));
    CHECK(load_text<pair_state>(file(0, 7)) ==
          "[ckpt.corrupt.207] '<memory>': tensor 'u' starts at byte 7 of the data section, "
          "expected 8 (it overlaps the previous tensor)");
    CHECK(read_with<pair_state>(file(0, 8)) == all(0));
    CHECK(read_with<pair_state>(file(0, 9)) == all(errc::corrupt_offsets));
    CHECK(load_text<pair_state>(file(0, 9)) ==
          "[ckpt.corrupt.207] '<memory>': tensor 'u' starts at byte 9 of the data section, "
          "expected 8 (a gap)");
    // The first tensor starts at 0: one byte later is a gap too.
    CHECK(read_with<pair_state>(file(1, 9)) == all(errc::corrupt_offsets));
    CHECK(load_text<pair_state>(file(1, 9)) ==
          "[ckpt.corrupt.207] '<memory>': tensor 'f' starts at byte 1 of the data section, "
          "expected 0 (a gap)");
}

// "t" at [0, 8), the values (9 bytes) at [8, 17): the data section is one byte short of them,
// exactly their size, one byte longer. Short, a reader that let it through would read the values
// past the end of the file.
TEST_CASE("boundary: the tensors end where the data section ends (207)") {
    const bytes values = values_of(tensor_step_state{});
    REQUIRE(values.size() == 9);
    const std::string json = header(entry("t", "F32", "2", 0, 8) + values_at(8, 9));
    const auto file = [&](std::size_t data_bytes) {
        bytes data(8);
        data.insert(data.end(), values.begin(), values.end());
        data.resize(data_bytes);
        return test::craft(json, data);
    };
    CHECK(read_with<tensor_step_state>(file(16)) == all(errc::corrupt_offsets));
    CHECK(load_text<tensor_step_state>(file(16)) ==
          "[ckpt.corrupt.207] '<memory>': tensors cover 17 bytes but the data section holds 16");
    CHECK(read_with<tensor_step_state>(file(17)) == all(0));
    tensor_step_state loaded;
    loaded.step = 0;
    ckpt::load_from_memory(file(17), loaded);
    CHECK(loaded.step == 42);
    CHECK(loaded.t.size() == 2);
    CHECK(read_with<tensor_step_state>(file(18)) == all(errc::corrupt_offsets));
    CHECK(load_text<tensor_step_state>(file(18)) ==
          "[ckpt.corrupt.207] '<memory>': tensors cover 17 bytes but the data section holds 18");
}

// "u" (U8 [k]) at [0, k), then "f" (F32 [1]) at k: an F32 must start at a multiple of 4 of the
// data section. Only a load checks it (it reads the elements); inspect() lists the file.
TEST_CASE("boundary: a tensor's offset against its element size (207, load only)") {
    const auto file = [](std::uint64_t k) {
        return test::craft(header(entry("u", "U8", std::to_string(k), 0, k) +
                                  entry("f", "F32", "1", k, k + 4) + values_at(k + 4, 0)),
                           bytes(k + 4));
    };
    const ids misaligned{0, 0, errc::corrupt_offsets};
    CHECK(read_with<pair_state>(file(3)) == misaligned);
    CHECK(load_text<pair_state>(file(3)) ==
          "[ckpt.corrupt.207] '<memory>': tensor 'f' is not aligned to its element size");
    CHECK(read_with<pair_state>(file(4)) == all(0));
    CHECK(read_with<pair_state>(file(5)) == misaligned);
}

// The values entry is a U8 vector: rank 1, neither 0 nor 2. Only a load checks it.
TEST_CASE("boundary: the values entry's rank (206, load only)") {
    const auto file = [](const std::string& shape, std::uint64_t len) {
        return test::craft(header(entry("__ckpt_values__", "U8", shape, 0, len)), bytes(len));
    };
    CHECK(read_with<empty_state>(file("", 1)) == ids{0, 0, errc::corrupt_header});
    CHECK(read_with<empty_state>(file("0", 0)) == all(0));
    CHECK(read_with<empty_state>(file("1,0", 0)) == ids{0, 0, errc::corrupt_header});
}

// --- ckpt's metadata about the entries ----------------------------------------------------------

// One character per entry ("t" and the values entry: 2).
TEST_CASE("boundary: ckpt.layout and ckpt.placement have one character per entry (206)") {
    for (const std::string key : {"ckpt.layout", "ckpt.placement"}) {
        CAPTURE(key);
        const auto file = [&](const std::string& chars) {
            return test::craft(header(t2_entries(), R"(,")" + key + R"(":")" + chars + "\""),
                               bytes(8));
        };
        CHECK(read_with<vec_state>(file("-")) == all(errc::corrupt_header));
        CHECK(read_with<vec_state>(file("--")) == all(0));
        CHECK(read_with<vec_state>(file("---")) == all(errc::corrupt_header));
    }
}

// A storage order is given only to a tensor of 2 axes or more.
TEST_CASE("boundary: ckpt.layout orders tensors of rank 2 or more (206)") {
    const auto file = [](const std::string& shape) {
        return test::craft(
            header(entry("t", "F32", shape, 0, 8) + values_at(8, 0), R"(,"ckpt.layout":"R-")"),
            bytes(8));
    };
    CHECK(read_with<mat_state>(file("2")) == all(errc::corrupt_header));
    CHECK(read_with<mat_state>(file("1,2")) == all(0));
    // Rank 3 is ordered too; a matrix cannot take it.
    CHECK(read_with<mat_state>(file("1,1,2")) == ids{0, 0, errc::schema_mismatch});
}

/// "t" (F32 [rows]) sharded as `shards` ("offset/global_rows") says.
bytes sharded_file(std::uint64_t rows, const std::string& shards) {
    return test::craft(
        header(entry("t", "F32", std::to_string(rows), 0, 4 * rows) + values_at(4 * rows, 0),
               R"(,"ckpt.placement":"S-","ckpt.shards":")" + shards + "\""),
        bytes(4 * rows));
}
/// A state whose "t" is sharded at `offset` of `global_rows`.
sharded_state sharded_at(std::uint64_t offset, std::uint64_t global_rows) {
    sharded_state s;
    s.at = {offset, global_rows};
    return s;
}

// "t" holds 2 rows at offset 1: the global tensor needs 3 rows at least. One more is a file of
// another placement than the state's (whose global tensor has 3 rows).
TEST_CASE("boundary: a shard's rows within its global tensor's (206)") {
    CHECK(read_with(sharded_file(2, "1/2"), sharded_at(1, 3)) == all(errc::corrupt_header));
    CHECK(read_with(sharded_file(2, "1/3"), sharded_at(1, 3)) == all(0));
    CHECK(read_with(sharded_file(2, "1/4"), sharded_at(1, 3)) == ids{0, 0, errc::schema_placement});
    // An offset beyond the global rows, with no rows to hold: 2 of 2 is the last.
    CHECK(read_with(sharded_file(0, "3/2"), sharded_at(2, 2)) == all(errc::corrupt_header));
    CHECK(read_with(sharded_file(0, "2/2"), sharded_at(2, 2)) == all(0));
    CHECK(read_with(sharded_file(0, "1/2"), sharded_at(2, 2)) == ids{0, 0, errc::schema_placement});
}

// Row counts are below 2^63 (Eigen's signed sizes).
TEST_CASE("boundary: a shard's global rows against INT64_MAX (206)") {
    const std::uint64_t max = 9223372036854775807ULL;
    CHECK(read_with(sharded_file(2, "0/9223372036854775806"), sharded_at(0, max)) ==
          ids{0, 0, errc::schema_placement});
    CHECK(read_with(sharded_file(2, "0/9223372036854775807"), sharded_at(0, max)) == all(0));
    CHECK(read_with(sharded_file(2, "0/9223372036854775808"), sharded_at(0, max)) ==
          all(errc::corrupt_header));
}

// Two sharded entries: ckpt.shards holds exactly two items.
TEST_CASE("boundary: ckpt.shards has one item per sharded entry (206)") {
    const auto file = [](const std::string& shards) {
        return test::craft(
            header(entry("a", "F32", "1", 0, 4) + entry("b", "F32", "1", 4, 8) + values_at(8, 0),
                   R"(,"ckpt.placement":"SS-","ckpt.shards":")" + shards + "\""),
            bytes(8));
    };
    two_sharded_state state;
    state.at_a = {0, 2};
    state.at_b = {1, 2};
    CHECK(read_with(file("0/2"), state) == all(errc::corrupt_header));
    CHECK(read_with(file("0/2,1/2"), state) == all(0));
    CHECK(read_with(file("0/2,1/2,1/2"), state) == all(errc::corrupt_header));
}

// --- The value stream (load only) ---------------------------------------------------------------

// step: a tag and 8 bytes. The values entry one byte short ends inside the int64; one byte
// longer holds a byte the state does not read.
TEST_CASE("boundary: the values entry's size against the values the state reads (208, 306)") {
    const bytes values = values_of(step_state{});
    const auto file = [&](std::size_t len) {
        bytes v = values;
        v.resize(len);
        return file_with_values("", {}, v);
    };
    CHECK(load_id<step_state>(file(8)) == errc::corrupt_values);
    CHECK(load_text<step_state>(file(8)) ==
          "[ckpt.corrupt.208] step: the values entry ends inside a value");
    step_state loaded;
    loaded.step = 0;
    ckpt::load_from_memory(file(9), loaded);
    CHECK(loaded.step == 42);
    CHECK(load_id<step_state>(file(10)) == errc::schema_value_count);
}

/// text_state's values ("abc"): size tag (9 bytes), byte string tag, length and bytes (12).
bytes text_values(std::uint64_t count, std::uint64_t length) {
    bytes v = values_of(text_state{});
    REQUIRE(v.size() == 21);
    REQUIRE(v[0] == std::byte{ckpt::detail::tag_size});
    REQUIRE(v[9] == std::byte{ckpt::detail::tag_bytes});
    put_u64(v, 1, count);
    put_u64(v, 10, length);
    return v;
}

// The string's count and its byte string's length agree; the bytes are "abc". Two reads one
// byte less (one left over), four reads past the end of the values.
TEST_CASE("boundary: a string's length against its bytes (306, 208)") {
    CHECK(load_id<text_state>(file_with_values("", {}, text_values(2, 2))) ==
          errc::schema_value_count);
    text_state loaded;
    loaded.text.clear();
    ckpt::load_from_memory(file_with_values("", {}, text_values(3, 3)), loaded);
    CHECK(loaded.text == "abc");
    CHECK(load_id<text_state>(file_with_values("", {}, text_values(4, 4))) == errc::corrupt_values);
}

// A count is refused when it exceeds the value bytes left (12 after the string's count) plus
// the tensors left (none): 12 passes the bound (and then disagrees with the byte string's
// length), 13 is refused before anything is resized.
TEST_CASE("boundary: a container's count against the value bytes left (305, 505)") {
    CHECK(load_id<text_state>(file_with_values("", {}, text_values(11, 3))) ==
          errc::schema_value_type);
    CHECK(load_id<text_state>(file_with_values("", {}, text_values(12, 3))) ==
          errc::schema_value_type);
    CHECK(load_id<text_state>(file_with_values("", {}, text_values(13, 3))) ==
          errc::limit_value_size);
    CHECK(load_text<text_state>(file_with_values("", {}, text_values(13, 3))) ==
          "[ckpt.limit.505] text: the checkpoint declares 13 elements, but only 12 bytes of "
          "values and 0 tensors remain");
}

// Two vectors saved: the values hold only the count (nothing left after it), the file two
// tensors. A count of 2 is exactly what the tensors pay for; 3 is refused; 1 leaves a tensor
// of the file that the state has no place for.
TEST_CASE("boundary: a container's count against the tensors left (303, 505)") {
    list_state saved;
    saved.v = {Eigen::VectorXf::Ones(3), Eigen::VectorXf::Ones(4)};
    const bytes good = ckpt::save_to_memory(saved);
    const bytes values = values_of(saved);
    REQUIRE(values.size() == 9); // the count alone
    const auto with_count = [&](std::uint64_t count) {
        bytes file = good;
        const std::size_t at = file.size() - values.size();
        REQUIRE(file[at] == std::byte{ckpt::detail::tag_size});
        put_u64(file, at + 1, count);
        test::fix_checksum(file);
        return file;
    };
    CHECK(load_id<list_state>(with_count(1)) == errc::schema_unexpected);
    list_state loaded;
    ckpt::load_from_memory(with_count(2), loaded);
    CHECK(loaded.v == saved.v);
    CHECK(load_id<list_state>(with_count(3)) == errc::limit_value_size);
    CHECK(load_text<list_state>(with_count(3)) ==
          "[ckpt.limit.505] v: the checkpoint declares 3 elements, but only 0 bytes of values "
          "and 2 tensors remain");
}

} // namespace boundaries_test
