// The file format: a valid safetensors layout; every structural defect behind a correct
// checksum is refused with its own id; versions are checked; the golden file keeps loading.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#ifndef CKPT_TEST_DATA_DIR
#define CKPT_TEST_DATA_DIR "tests/data"
#endif

namespace {

struct sample {
    Eigen::Matrix<double, 2, 3, Eigen::RowMajor> a =
        Eigen::Matrix<double, 2, 3, Eigen::RowMajor>::Constant(0.5);
    Eigen::VectorXf b = Eigen::VectorXf::LinSpaced(5, 0.0F, 1.0F);
    Eigen::Matrix<std::int16_t, Eigen::Dynamic, Eigen::Dynamic> c =
        Eigen::Matrix<std::int16_t, Eigen::Dynamic, Eigen::Dynamic>::Constant(3, 1, 7);
    std::int64_t step = 99;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(a), CEREAL_NVP(b), CEREAL_NVP(c), CEREAL_NVP(step));
    }
};

std::uint64_t le64(const std::vector<std::byte>& f) {
    std::uint64_t n = 0;
    std::memcpy(&n, f.data(), 8);
    return n;
}

std::string values_entry(std::uint64_t begin, std::uint64_t len) {
    return R"(,"__ckpt_values__":{"dtype":"U8","shape":[)" + std::to_string(len) +
           R"(],"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(begin + len) +
           "]}";
}

/// A one-tensor file: "t" (F32, `shape`, bytes [0, len)) and an empty values entry.
std::vector<std::byte> one_tensor(const std::string& extra_meta, const std::string& entry,
                                  std::uint64_t data_len) {
    std::string json = test::header_start();
    json.pop_back(); // reopen __metadata__
    json += extra_meta + "}" + entry + values_entry(data_len, 0) + "}";
    return test::craft(json, std::vector<std::byte>(data_len));
}

struct one_t {
    Eigen::VectorXf t;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t));
    }
};

int load_id(const std::vector<std::byte>& file) {
    one_t s;
    return test::error_id([&] { ckpt::load_from_memory(file, s); });
}

} // namespace

TEST_CASE("a checkpoint is a valid safetensors file") {
    const auto file = ckpt::save_to_memory(sample{});
    const std::uint64_t n = le64(file);
    CHECK(n % 8 == 0); // the data section starts 8-byte aligned
    REQUIRE(8 + n <= file.size());
    const std::string json(reinterpret_cast<const char*>(file.data() + 8), n);
    CHECK(json.starts_with(ckpt::detail::checksum_prefix));
    rapidjson::Document doc;
    doc.Parse(json.c_str());
    REQUIRE(!doc.HasParseError());
    const auto& meta = doc["__metadata__"];
    for (const char* key :
         {"ckpt.checksum", "ckpt.format_version", "ckpt.library_version", "ckpt.step", "ckpt.epoch",
          "ckpt.time", "ckpt.fingerprint", "ckpt.layout"}) {
        CAPTURE(key);
        REQUIRE(meta.HasMember(key));
        CHECK(meta[key].IsString());
    }
    CHECK(std::string(meta["ckpt.format_version"].GetString()) == "3");
    CHECK(std::string(meta["ckpt.library_version"].GetString()) == CKPT_VERSION_STRING);
    // Largest elements first so that each tensor is aligned; values last.
    std::vector<std::string> names;
    std::uint64_t expect = 0;
    for (auto& m : doc.GetObject()) {
        const std::string name = m.name.GetString();
        if (name == "__metadata__") continue;
        names.push_back(name);
        CHECK(m.value["data_offsets"][0].GetUint64() == expect);
        expect = m.value["data_offsets"][1].GetUint64();
    }
    CHECK(names == std::vector<std::string>{"a", "b", "c", "__ckpt_values__"});
    CHECK(8 + n + expect == file.size()); // the tensors tile the data section to the last byte
    CHECK(std::string(meta["ckpt.layout"].GetString()) == "R-C-");
    CHECK(doc["a"]["shape"][0].GetUint64() == 2);
    CHECK(doc["c"]["shape"][0].GetUint64() == 1); // column-major 3x1: row-major view [1, 3]
    CHECK(doc["c"]["shape"][1].GetUint64() == 3);
}

TEST_CASE("each structural defect behind a correct checksum has its own error") {
    const std::string t4 = R"(,"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    CHECK(load_id(one_tensor("", t4, 4)) == 0); // the well-formed base case loads

    SUBCASE("a safetensors file that ckpt did not write") {
        const std::string json =
            R"({"__metadata__":{"format":"pt"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
        CHECK(load_id(test::craft(json, std::vector<std::byte>(4), false)) ==
              ckpt::errc::corrupt_not_ckpt);
    }
    SUBCASE("invalid JSON, and invalid UTF-8") {
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32",})", 4)) == ckpt::errc::corrupt_json);
        CHECK(load_id(one_tensor(
                  "", ",\"t\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4)) ==
              ckpt::errc::corrupt_json);
    }
    SUBCASE("header fields") {
        CHECK(load_id(one_tensor("", t4 + t4, 8)) == ckpt::errc::corrupt_header); // duplicate
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F128","shape":[1],"data_offsets":[0,4]})",
                                 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]})",
                                 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})",
                                 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[1],"data_offsets":[0]})",
                                 4)) == ckpt::errc::corrupt_header);
        CHECK(
            load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1})",
                               4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor(R"(,"ckpt.step":7)", t4, 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor(R"(,"ckpt.step":"seven")", t4, 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor(R"(,"ckpt.layout":"RR")", t4, 4)) == ckpt::errc::corrupt_header);
        CHECK(load_id(one_tensor(R"(,"ckpt.layout":"R-")", t4, 4)) == ckpt::errc::corrupt_header);
    }
    SUBCASE("offsets: size, gap, overlap, trailing bytes, alignment") {
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]})",
                                 8)) == ckpt::errc::corrupt_offsets);
        CHECK(load_id(one_tensor("", R"(,"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})",
                                 8)) == ckpt::errc::corrupt_offsets);
        const std::string two =
            R"(,"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
        CHECK(load_id(one_tensor("", two, 8)) == ckpt::errc::corrupt_offsets);
        std::string json = test::header_start() + t4 + values_entry(4, 0) + "}";
        CHECK(load_id(test::craft(json, std::vector<std::byte>(5))) == ckpt::errc::corrupt_offsets);
        const std::string misaligned =
            R"(,"v":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"t":{"dtype":"F32","shape":[1],"data_offsets":[2,6]})";
        CHECK(load_id(one_tensor("", misaligned, 6)) == ckpt::errc::corrupt_offsets);
    }
    SUBCASE("no values entry") {
        const std::string json = test::header_start() + t4 + "}";
        CHECK(load_id(test::craft(json, std::vector<std::byte>(4))) == ckpt::errc::corrupt_header);
    }
}

TEST_CASE("format versions: a newer one is refused clearly, a broken one too") {
    static_assert(ckpt::format_version == 3);
    const auto newer = test::craft(test::header_start(4) + values_entry(0, 0) + "}");
    one_t s;
    CHECK(test::error_text([&] { ckpt::load_from_memory(newer, s); }) ==
          "[ckpt.version.401] '<memory>' uses checkpoint format version 4; this ckpt "
          "(" CKPT_VERSION_STRING ") reads versions up to 3: load it with a newer ckpt");
    std::string zero = test::header_start(0) + values_entry(0, 0) + "}";
    CHECK(load_id(test::craft(zero)) == ckpt::errc::version_invalid);
    std::string word = std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') +
                       R"(","ckpt.format_version":"one"})" + values_entry(0, 0) + "}";
    CHECK(load_id(test::craft(word)) == ckpt::errc::version_invalid);
    std::string missing = std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') +
                          R"("})" + values_entry(0, 0) + "}";
    CHECK(load_id(test::craft(missing)) == ckpt::errc::version_invalid);
}

namespace {
/// The state of tests/data/golden-v1.ckpt, rebuilt from its recipe.
struct golden_state {
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> weight;
    Eigen::VectorXd bias;
    Eigen::Matrix<std::int32_t, 2, 2> fixed;
    std::mt19937_64 rng;
    std::normal_distribution<double> noise;
    std::vector<std::string> names;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(fixed), CEREAL_NVP(rng),
           CEREAL_NVP(noise), CEREAL_NVP(names), CEREAL_NVP(step));
    }
};
golden_state golden_recipe() {
    golden_state g;
    g.weight.resize(3, 4);
    for (int i = 0; i < 12; ++i) g.weight.data()[i] = static_cast<float>(i) * 0.25F - 1.0F;
    g.bias = Eigen::VectorXd::LinSpaced(3, -0.5, 0.5);
    g.fixed << 1, -2, 3, -4;
    g.rng.seed(2026);
    g.rng.discard(10);
    g.noise = std::normal_distribution<double>(0.0, 0.1);
    g.noise(g.rng); // leaves a cached second variate
    g.names = {"alpha", "beta"};
    g.step = 1000;
    return g;
}
ckpt::metadata golden_meta() {
    ckpt::metadata m;
    m.step = 1000;
    m.epoch = 3;
    m.metrics["loss"] = 0.125;
    m.tags["written_by"] = "ckpt 0.1.0";
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1796000000));
    return m;
}
} // namespace

TEST_CASE("the format-version-1 golden file keeps loading, bit for bit") {
    const std::filesystem::path golden =
        std::filesystem::path(CKPT_TEST_DATA_DIR) / "golden-v1.ckpt";
    if (std::getenv("CKPT_WRITE_GOLDEN") != nullptr) {
        ckpt::save(golden, golden_recipe(), golden_meta());
    }
    REQUIRE(std::filesystem::exists(golden));
    golden_state loaded;
    const ckpt::metadata meta = ckpt::load(golden, loaded);
    const golden_state expect = golden_recipe();
    CHECK(meta == golden_meta());
    CHECK(test::bits_equal(loaded.weight, expect.weight));
    CHECK(test::bits_equal(loaded.bias, expect.bias));
    CHECK(loaded.fixed == expect.fixed);
    CHECK(loaded.names == expect.names);
    CHECK(loaded.step == 1000);
    golden_state e = expect;
    for (int i = 0; i < 100; ++i) {
        REQUIRE(loaded.noise(loaded.rng) == e.noise(e.rng));
    }
    const ckpt::info info = ckpt::inspect(golden, {.verify = true});
    CHECK(info.format_version == 1);
    CHECK(info.checksum_verified);
    CHECK(info.library_version == "0.1.0");
}

namespace {
/// The state of tests/data/containers-v2.ckpt: standard containers of numbers, which format 2
/// stores in the value stream (the golden file a change that makes them tensors must keep
/// loading), beside an Eigen tensor and a value.
struct containers_golden {
    std::vector<float> vf;
    std::vector<double> vd;
    std::vector<std::int32_t> vi;
    std::vector<std::uint8_t> bytes;
    std::array<float, 4> af{};
    std::array<std::int64_t, 3> ai{};
    float raw[3] = {};
    std::int16_t grid[2][3] = {};
    std::vector<bool> flags;
    std::vector<std::vector<float>> nested;
    Eigen::VectorXf e;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(vf), CEREAL_NVP(vd), CEREAL_NVP(vi), CEREAL_NVP(bytes), CEREAL_NVP(af),
           CEREAL_NVP(ai), CEREAL_NVP(raw), CEREAL_NVP(grid), CEREAL_NVP(flags), CEREAL_NVP(nested),
           CEREAL_NVP(e), CEREAL_NVP(step));
    }
};
containers_golden containers_recipe() {
    containers_golden g;
    for (int i = 0; i < 64; ++i) g.vf.push_back(static_cast<float>(i) * 0.5F - 3.0F);
    g.vd = {0.1, -2.5, 1e300, -0.0};
    g.vi = {-7, 0, 7, 2147483647};
    g.bytes = {0, 1, 254, 255};
    g.af = {1.5F, -1.5F, 0.25F, 8.0F};
    g.ai = {-1, 0, 9007199254740993};
    g.raw[0] = 3.0F;
    g.raw[1] = -0.125F;
    g.raw[2] = 1e-30F;
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 3; ++c) g.grid[r][c] = static_cast<std::int16_t>(100 * r - c);
    }
    g.flags = {true, false, true, true, false};
    g.nested = {{1.0F}, {}, {2.0F, 3.0F}};
    g.e = Eigen::VectorXf::LinSpaced(5, -1.0F, 1.0F);
    g.step = 4242;
    return g;
}
} // namespace

// Written once by format 2, before standard containers of numbers could be tensors; never
// rewritten (CKPT_WRITE_CONTAINERS_GOLDEN=1 wrote it).
TEST_CASE("the format-2 golden file of standard containers keeps loading, value for value") {
    const std::filesystem::path golden =
        std::filesystem::path(CKPT_TEST_DATA_DIR) / "containers-v2.ckpt";
    if (std::getenv("CKPT_WRITE_CONTAINERS_GOLDEN") != nullptr) {
        ckpt::save(golden, containers_recipe(), golden_meta());
    }
    REQUIRE(std::filesystem::exists(golden));
    containers_golden loaded;
    const ckpt::metadata meta = ckpt::load(golden, loaded);
    const containers_golden expect = containers_recipe();
    CHECK(meta == golden_meta());
    CHECK(loaded.vf == expect.vf);
    CHECK(loaded.vd.size() == 4);
    CHECK(std::memcmp(loaded.vd.data(), expect.vd.data(), 4 * sizeof(double)) == 0); // -0.0 too
    CHECK(loaded.vi == expect.vi);
    CHECK(loaded.bytes == expect.bytes);
    CHECK(loaded.af == expect.af);
    CHECK(loaded.ai == expect.ai);
    CHECK(std::memcmp(loaded.raw, expect.raw, sizeof loaded.raw) == 0);    // C arrays: these did
    CHECK(std::memcmp(loaded.grid, expect.grid, sizeof loaded.grid) == 0); // not load before
    CHECK(loaded.flags == expect.flags);
    CHECK(loaded.nested == expect.nested);
    CHECK(test::bits_equal(loaded.e, expect.e));
    CHECK(loaded.step == 4242);
    const ckpt::info info = ckpt::inspect(golden, {.verify = true});
    CHECK(info.format_version == 2);
    CHECK(info.checksum_verified);
    REQUIRE(info.tensors.size() == 1); // in format 2 the containers are values
    CHECK(info.tensors[0].name == "e");

    // Saved again, by format 3: every container of numbers but std::vector<bool> is a tensor,
    // and the state loads back the same.
    const auto again = ckpt::save_to_memory(loaded, golden_meta());
    const auto dir = test::scratch("containers-v3");
    test::write_file(dir / "v3.ckpt", again);
    const ckpt::info now = ckpt::inspect(dir / "v3.ckpt");
    CHECK(now.format_version == 3);
    std::vector<std::string> names;
    for (const auto& t : now.tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"af", "ai", "bytes", "e", "grid", "nested.0",
                                            "nested.1", "nested.2", "raw", "vd", "vf", "vi"});
    containers_golden back;
    ckpt::load_from_memory(again, back);
    CHECK(back.vf == expect.vf);
    CHECK(std::memcmp(back.vd.data(), expect.vd.data(), 4 * sizeof(double)) == 0);
    CHECK(back.flags == expect.flags);
    CHECK(back.nested == expect.nested);
    CHECK(std::memcmp(back.grid, expect.grid, sizeof back.grid) == 0);
    CHECK(back.step == 4242);
}

namespace {
struct bools {
    Eigen::Array<bool, Eigen::Dynamic, 1> t;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(t));
    }
};
} // namespace

TEST_CASE("a BOOL tensor holding a byte other than 0 or 1 is refused before it is copied") {
    const std::string json = test::header_start() +
                             R"(,"t":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]})" +
                             values_entry(3, 0) + "}";
    std::vector<std::byte> data{std::byte{1}, std::byte{0}, std::byte{1}};
    bools b;
    ckpt::load_from_memory(test::craft(json, data), b);
    CHECK(b.t.size() == 3);
    data[1] = std::byte{2};
    bools c;
    CHECK(test::error_id([&] { ckpt::load_from_memory(test::craft(json, data), c); }) ==
          ckpt::errc::corrupt_values);
    CHECK(c.t.size() == 0);
}

namespace format_header_test {

/// What rapidjson's validating writer makes of the same header: the reference build_header's
/// hand-written JSON must match byte for byte.
inline std::string rapidjson_header(const std::vector<std::pair<std::string, std::string>>& meta,
                                    const std::vector<ckpt::detail::file_tensor>& entries,
                                    bool& refused) {
    // A writer whose String() failed must not be used further (rapidjson asserts in a debug
    // build): check every string on a writer of its own first.
    const auto valid = [](const std::string& s) {
        rapidjson::StringBuffer b;
        rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                          rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
            one(b);
        return one.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
    };
    refused = false;
    for (const auto& [k, v] : meta) refused = refused || !valid(k) || !valid(v);
    for (const auto& e : entries) refused = refused || !valid(e.name);
    if (refused) return {};
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
        w(buf);
    const auto str = [&](const std::string& s) {
        w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
    };
    w.StartObject();
    if (!meta.empty()) { // no metadata: no __metadata__ (a plain safetensors file)
        str("__metadata__");
        w.StartObject();
        for (const auto& [k, v] : meta) {
            str(k);
            str(v);
        }
        w.EndObject();
    }
    for (const auto& e : entries) {
        str(e.name);
        w.StartObject();
        str("dtype");
        str(std::string(ckpt::to_string(e.type)));
        str("shape");
        w.StartArray();
        for (const auto d : e.shape) w.Uint64(d);
        w.EndArray();
        str("data_offsets");
        w.StartArray();
        w.Uint64(e.begin);
        w.Uint64(e.end);
        w.EndArray();
        w.EndObject();
    }
    w.EndObject();
    std::string json(buf.GetString(), buf.GetSize());
    json.append((8 - json.size() % 8) % 8, ' ');
    return json;
}

} // namespace format_header_test

TEST_CASE("the header writer writes what rapidjson writes, escapes and refusals included") {
    std::mt19937_64 rng(20261130);
    const std::vector<std::string> pieces = {"a", "Z",  "0",    ".",    "_",    "\"",   "\\",
                                             "/", "\n", "\t",   "\x01", "\x1f", "\x7f", " ",
                                             "{", "é",  "日本", "😀",    "\xff", "\xc3"};
    const auto random_string = [&] {
        std::string s;
        for (std::uint64_t i = rng() % 10; i > 0; --i) s += pieces[rng() % pieces.size()];
        return s;
    };
    int same = 0;
    int refused = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        std::vector<std::pair<std::string, std::string>> meta;
        for (std::uint64_t i = rng() % 4; i > 0; --i)
            meta.emplace_back(random_string(), random_string());
        std::vector<ckpt::detail::file_tensor> entries(rng() % 4);
        for (auto& e : entries) {
            e.name = random_string();
            e.type = ckpt::dtype::f32;
            for (std::uint64_t r = rng() % 4; r > 0; --r) e.shape.push_back(rng() >> (rng() % 64));
            e.begin = rng();
            e.end = rng() % 1000;
        }
        bool reference_refused = false;
        const std::string expected =
            format_header_test::rapidjson_header(meta, entries, reference_refused);
        if (reference_refused) {
            CHECK(test::error_id([&] { ckpt::detail::build_header(meta, entries); }) ==
                  ckpt::errc::usage_argument);
            ++refused;
        } else {
            REQUIRE(ckpt::detail::build_header(meta, entries) == expected);
            ++same;
        }
    }
    CHECK(same > 2000); // both kinds are exercised
    CHECK(refused > 2000);
}

namespace {

/// What parse_header makes of `json`: the entries and metadata it reads, or its error (with the
/// JSON error's byte offset cut, which whitespace moves).
std::string header_outcome(const std::string& json, std::uint64_t data_bytes,
                           const ckpt::limits& lim = {}) {
    try {
        const ckpt::detail::parsed_header h =
            ckpt::detail::parse_header(json, data_bytes, lim, "h");
        std::string out = "read";
        for (const auto& [k, v] : h.meta) out += " meta " + k + "=" + v;
        for (const auto& e : h.entries) {
            out += " entry " + e.name + " " + std::string(ckpt::to_string(e.type)) + " " +
                   ckpt::detail::shape_string(e.shape) + " [" + std::to_string(e.begin) + "," +
                   std::to_string(e.end) + ") " + e.order;
        }
        return out;
    } catch (const ckpt::error& e) {
        std::string what = e.what();
        if (e.id() == ckpt::errc::corrupt_json) what = what.substr(0, what.rfind(" at byte "));
        return what;
    }
}

/// `json` with whitespace after every '{', '[', ',' and ':' outside strings: the same header,
/// no longer in the form ckpt writes.
std::string spaced(const std::string& json) {
    std::string out;
    bool in_string = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        const char c = json[i];
        out += c;
        if (in_string) {
            if (c == '\\' && i + 1 < json.size()) out += json[++i];
            if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        if (c == '{' || c == '[' || c == ',' || c == ':') out += " \n\t";
    }
    return out;
}

/// Names that JSON must escape, and many tensors.
struct escaped_names {
    Eigen::MatrixXf a = Eigen::MatrixXf::Ones(2, 3);
    std::vector<Eigen::VectorXd> many = std::vector<Eigen::VectorXd>(12, Eigen::VectorXd::Ones(4));
    Eigen::VectorXf odd = Eigen::VectorXf::Ones(1);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(a), CEREAL_NVP(many), cereal::make_nvp("na\"me\\ \xc3\xa9", odd));
    }
};

} // namespace

TEST_CASE("a header reads the same in ckpt's own form as in any other JSON form") {
    // ckpt's headers take a fast reader; JSON in any other form (whitespace, escapes, numbers
    // written otherwise) takes rapidjson. Both must give the same entries or the same error.
    const std::string t4 = R"("t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    const std::string u4 = R"("u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
    const std::string meta = R"("__metadata__":{"ckpt.layout":"--","k":"v, w: {x}"})";
    const std::string not_integer =
        "[ckpt.corrupt.206] 'h': entry 't': shape holds something other than a non-negative "
        "integer";
    struct header_case {
        std::string json;
        std::uint64_t data_bytes;
        std::string expect; ///< the outcome, exactly
    };
    const std::vector<header_case> cases = {
        {"{" + meta + "," + t4 + "," + u4 + "}", 8,
         "read meta ckpt.layout=-- meta k=v, w: {x} entry t F32 [1] [0,4) - entry u F32 [1] "
         "[4,8) -"},
        {"{}", 0, "read"},
        {R"({"t":{"data_offsets":[0,24],"shape":[2,3],"dtype":"I32"}})", 24,
         "read entry t I32 [2, 3] [0,24) -"},
        {R"({"t":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", 4,
         "read entry t F32 [] [0,4) -"},
        // A damaged entry, and one after it: the first problem in document order is reported.
        {"{" + t4 + R"(,"u":{"dtype":"F128","shape":[1],"data_offsets":[4,8]}})", 8,
         "[ckpt.corrupt.206] 'h': entry 'u': unknown dtype 'F128'"},
        {R"({"u":{"dtype":1,"shape":[1],"data_offsets":[4,8]},)" + t4 + "}", 8,
         "[ckpt.corrupt.206] 'h': entry 'u': dtype is not a string"},
        {R"({"t":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}})", 4,
         "[ckpt.corrupt.205] 'h': header is not valid JSON: Missing a comma or ']' after an "
         "array element."},
        {R"({"t":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}})", 0,
         "read entry t F32 [0] [0,0) -"},
        {R"({"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}})", 4,
         not_integer},
        {R"({"t":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,4]}})", 4,
         "[ckpt.limit.504] 'h': tensor 't' declares F32 [18446744073709551615, 2], more bytes "
         "than 2^64, but the file holds only 4 bytes of data"},
        {R"({"t":{"dtype":"F32","shape":[100000000000000000000],"data_offsets":[0,4]}})", 4,
         not_integer},
        {R"({"t":{"dtype":"U8","shape":[9999999999999999999],"data_offsets":[0,4]}})", 4,
         "[ckpt.limit.504] 'h': tensor 't' declares U8 [9999999999999999999], more bytes than "
         "2^64, but the file holds only 4 bytes of data"},
        {R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0000,4]}})", 4,
         "[ckpt.corrupt.205] 'h': header is not valid JSON: Missing a comma or ']' after an "
         "array element."},
        {R"({"t":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", 4, not_integer},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"F32"}})", 4,
         "[ckpt.corrupt.206] 'h': entry 't' must have exactly dtype, shape and data_offsets"},
        {R"({"t":{"dtype":"F32","dtype":"F32","shape":[1]}})", 4,
         "[ckpt.corrupt.206] 'h': entry 't' must have exactly dtype, shape and data_offsets"},
        {R"({"t":[1,2]})", 4, "[ckpt.corrupt.206] 'h': entry 't' is not an object"},
        {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4,
         "[ckpt.corrupt.206] 'h': entry 't': data_offsets is not [begin, end]"},
        {R"({"__metadata__":{"a":[[[[[[[[[[[1]]]]]]]]]]]}})", 0,
         "[ckpt.corrupt.206] 'h': __metadata__ value of 'a' is not a string"},
        {R"({"__metadata__":{"a":"1","a":"2"}})", 0,
         "[ckpt.corrupt.206] 'h': __metadata__ key 'a' appears twice"},
        {R"({"__metadata__":[]})", 0, "[ckpt.corrupt.206] 'h': __metadata__ is not an object"},
        // A repeated name is reported where it repeats: before a later problem, and before
        // the problem of the repeating entry itself.
        {"{" + t4 + "," + t4 + R"(,"u":{"dtype":"X"}})", 4,
         "[ckpt.corrupt.206] 'h': entry 't' appears twice"},
        {"{" + t4 + R"(,"t":{"dtype":"X"}})", 4, "[ckpt.corrupt.206] 'h': entry 't' appears twice"},
        {R"({"u":{"dtype":"X"},)" + t4 + "," + t4 + "}", 4,
         "[ckpt.corrupt.206] 'h': entry 'u' must have exactly dtype, shape and data_offsets"},
        {R"({"__metadata__":{},"__metadata__":{}})", 0,
         "[ckpt.corrupt.206] 'h': entry '__metadata__' appears twice"},
        // Invalid JSON anywhere wins over every problem before it; a root that is not an
        // object comes next.
        {R"({"u":{"dtype":"X"},)" + t4 + ",}", 4,
         "[ckpt.corrupt.205] 'h': header is not valid JSON: Missing a name for object member."},
        {"[1,2]", 0, "[ckpt.corrupt.206] 'h': header is not a JSON object"},
        {"7", 0, "[ckpt.corrupt.206] 'h': header is not a JSON object"},
        {"", 0, "[ckpt.corrupt.205] 'h': header is not valid JSON: The document is empty."},
    };
    for (const header_case& c : cases) {
        CAPTURE(c.json);
        CHECK(header_outcome(c.json, c.data_bytes) == c.expect);
        CHECK(header_outcome(spaced(c.json), c.data_bytes) == c.expect);
    }

    // The limits: too many tensors comes before any entry's problem; a name over the limit
    // before its repetition.
    ckpt::limits one;
    one.max_tensors = 1;
    const std::string two_bad = R"({"u":{"dtype":"X"},)" + t4 + "}";
    CHECK(header_outcome(two_bad, 4, one) ==
          "[ckpt.limit.502] 'h': header declares 2 tensors, more than the limit of 1");
    CHECK(header_outcome(spaced(two_bad), 4, one) == header_outcome(two_bad, 4, one));
    CHECK(header_outcome("{" + t4 + "}", 4, one) == "read entry t F32 [1] [0,4) -");
    ckpt::limits short_names;
    short_names.max_name_bytes = 1;
    const std::string long_twice = R"({"tt":{"dtype":"X"},"tt":{"dtype":"X"}})";
    CHECK(header_outcome(long_twice, 4, short_names) ==
          "[ckpt.limit.506] 'h': an entry name of 2 bytes exceeds the limit of 1");
    CHECK(header_outcome(spaced(long_twice), 4, short_names) ==
          header_outcome(long_twice, 4, short_names));
    ckpt::limits rank1;
    rank1.max_rank = 1;
    const std::string rank2 = R"({"t":{"dtype":"F32","shape":[1,"x"],"data_offsets":[0,4]}})";
    CHECK(header_outcome(rank2, 4, rank1) ==
          "[ckpt.limit.503] 'h': tensor 't' has rank 2, more than the limit of 1");

    // Every header ckpt writes reads the same both ways, names with escapes included.
    for (const auto& file :
         {ckpt::save_to_memory(sample{}), ckpt::save_to_memory(escaped_names{})}) {
        const std::uint64_t n = le64(file);
        const std::string json(reinterpret_cast<const char*>(file.data()) + 8, n);
        const std::string read = header_outcome(json, file.size() - 8 - n);
        CHECK(read.rfind("read meta ckpt.checksum=", 0) == 0);
        CHECK(header_outcome(spaced(json), file.size() - 8 - n) == read);
    }
}

TEST_CASE("a header one byte away from ckpt's form reads as rapidjson reads it") {
    // ckpt's form goes to a direct reader, which takes only headers without any problem and
    // hands anything else to the general readers. Every header one byte away from a valid one
    // (each byte replaced by a byte that matters to it, or removed) must read the same as its
    // spaced copy, which only rapidjson reads: the same entries, or the same error. A byte is
    // also inserted before each one (a leading zero, a longer name).
    const std::string base =
        R"({"__metadata__":{"ckpt.format":"3","k":"v"},)"
        R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
        R"("s":{"dtype":"F64","shape":[],"data_offsets":[24,32]},)"
        R"("layers.10":{"dtype":"I16","shape":[1,2,1],"data_offsets":[32,36]},)"
        R"("__ckpt_values__":{"dtype":"U8","shape":[4],"data_offsets":[36,40]}})";
    const std::string bytes_that_matter = "0129\",:[]{} \\-aswF\x7f"; // 's' -> 'w': "w" twice
    ckpt::limits tight; // each limit at exactly what the base header needs
    tight.max_tensors = 4;
    tight.max_rank = 3;
    tight.max_name_bytes = 15;
    std::size_t compared = 0;
    std::size_t read = 0;
    for (const ckpt::limits& lim : {ckpt::limits{}, tight}) {
        const auto same = [&](const std::string& json) {
            CAPTURE(json);
            const std::string direct = header_outcome(json, 40, lim);
            CHECK(direct == header_outcome(spaced(json), 40, lim));
            ++compared;
            if (direct.rfind("read", 0) == 0) ++read;
        };
        same(base);
        for (std::size_t i = 0; i < base.size(); ++i) {
            for (const char c : bytes_that_matter) {
                same(base.substr(0, i) + c + base.substr(i));
                if (c == base[i]) continue;
                std::string m = base;
                m[i] = c;
                same(m);
            }
            same(base.substr(0, i) + base.substr(i + 1));
        }
    }
    // One limit lower than the base header needs, each in turn.
    for (int which = 0; which < 3; ++which) {
        ckpt::limits under = tight;
        if (which == 0) --under.max_tensors;
        if (which == 1) --under.max_rank;
        if (which == 2) --under.max_name_bytes;
        const std::string direct = header_outcome(base, 40, under);
        CHECK(direct.rfind("[ckpt.limit.", 0) == 0);
        CHECK(direct == header_outcome(spaced(base), 40, under));
    }
    CHECK(compared ==
          2 * (base.size() * (2 * bytes_that_matter.size() + 1) + 1) -
              2 * static_cast<std::size_t>(std::count_if(base.begin(), base.end(), [&](char c) {
                  return bytes_that_matter.find(c) != std::string::npos;
              })));
    CHECK(read == 3022); // mutations that still read: digits and letters in names, mostly
}

TEST_CASE("the name index finds every name it holds, and no other") {
    // Names of every length up to 40 and the same prefixes (slots collide, probes run on).
    std::vector<std::string> names{""};
    for (int i = 0; i < 5000; ++i) names.push_back("layers." + std::to_string(i) + ".weight");
    for (std::size_t n = 1; n <= 40; ++n) names.emplace_back(n, 'x');
    ckpt::detail::name_index index;
    for (std::size_t i = 0; i < names.size(); ++i) {
        const auto [it, added] = index.emplace(names[i], i);
        REQUIRE(added);
        CHECK(it->second == i);
    }
    CHECK(index.size() == names.size());
    std::size_t found = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
        const auto* it = index.find(names[i]);
        if (it != index.end() && it->second == i && it->first == names[i]) ++found;
    }
    CHECK(found == names.size());
    for (const std::string& absent :
         std::vector<std::string>{"layers.5000.weight", "layers.0.weigh", "layers.0.weightt",
                                  "x" + std::string(41, 'x'), std::string("\0", 1)}) {
        CHECK(index.find(absent) == index.end());
        CHECK(index.count(absent) == 0);
    }
    // A name already there keeps its entry; insert_or_assign replaces it.
    const auto [again, added] = index.emplace(names[7], 99);
    CHECK_FALSE(added);
    CHECK(again->second == 7);
    index.insert_or_assign(names[7], 99);
    CHECK(index.find(names[7])->second == 99);
    index.insert_or_assign("new", 5);
    CHECK(index.find("new")->second == 5);
    CHECK(index.size() == names.size() + 1);
    index.clear();
    CHECK(index.size() == 0);
    CHECK(index.find(names[1]) == index.end());
    index.reserve(3);
    CHECK(index.emplace("a", 1).second);
    CHECK(index.find("a")->second == 1);
}

TEST_CASE("field paths: siblings, nesting, and a field in the place of another") {
    ckpt::detail::path_tracker t;
    t.push(); // the root
    CHECK(t.path() == "value");
    t.name_next("layers");
    t.push();
    for (int i = 0; i < 3; ++i) {
        t.push(); // element i
        t.name_next("w");
        t.push();
        CHECK(t.path() == "layers." + std::to_string(i) + ".w");
        t.pop();
        CHECK(t.path() == "layers." + std::to_string(i));
        t.name_next("bias");
        t.push();
        CHECK(t.path() == "layers." + std::to_string(i) + ".bias");
        t.pop();
        t.pop();
    }
    CHECK(t.path() == "layers");
    CHECK(t.child_path("x") == "layers.x");
    t.pop();
    // Another field in the place of "layers": nothing of the old path survives.
    t.name_next("opt");
    t.push();
    t.push();
    CHECK(t.path() == "opt.0");
    t.pop();
    t.pop();
    CHECK(t.object_path() == "(the state)");
    t.name_next("layers");
    t.push();
    t.push();
    CHECK(t.path() == "layers.0"); // same names, new nodes
}
