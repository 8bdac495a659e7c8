// cereal class versions: what ckpt decides where cereal leaves it open (a serialize that gains or
// loses its version, a version newer than the program's), the in-place load of a type that
// cannot be copied, and crafted version bytes. Versions across separately built programs, with
// committed golden files: tests/versions/.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <memory>

namespace {

/// A state whose serialize takes no version.
struct unversioned_run {
    Eigen::VectorXf w;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step));
    }
};

/// The same state once its serialize takes a version, at `V`; version 1 adds a tensor and a
/// value. Holding a unique_ptr, it cannot be copied: a load decodes into it in place.
template <std::uint32_t V>
struct versioned_run {
    Eigen::VectorXf w;
    std::int64_t step = 0;
    Eigen::VectorXf ema = Eigen::VectorXf::Constant(2, 7.0F);
    double lr = 0.5;
    std::unique_ptr<int> not_saved = std::make_unique<int>(3);
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const version) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step));
        if (version >= 1) ar(CEREAL_NVP(ema), CEREAL_NVP(lr));
    }
};

/// The values entry of a one-tensor-free state: `values` as a whole file.
std::vector<std::byte> file_with_values(const std::vector<std::byte>& values, int format) {
    const std::string n = std::to_string(values.size());
    return test::craft(test::header_start(format) +
                           R"(,"__ckpt_values__":{"dtype":"U8","shape":[)" + n +
                           R"(],"data_offsets":[0,)" + n + "]}}",
                       values);
}

void put(std::vector<std::byte>& out, const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
}

/// A versioned state with one value: `step`.
struct version_probe {
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const) {
        ar(CEREAL_NVP(step));
    }
};

} // namespace

CEREAL_CLASS_VERSION(versioned_run<0>, 0)
CEREAL_CLASS_VERSION(versioned_run<1>, 1)
CEREAL_CLASS_VERSION(versioned_run<2>, 2)
CEREAL_CLASS_VERSION(version_probe, 3)

TEST_CASE("class versions: a serialize that took no version reads a file as version 0") {
    unversioned_run old;
    old.w = Eigen::VectorXf::Constant(3, 1.5F);
    old.step = 12;
    const auto bytes = ckpt::save_to_memory(old);
    versioned_run<1> s;
    ckpt::load_from_memory(bytes, s);
    CHECK(s.w == old.w);
    CHECK(s.step == 12);
    CHECK(s.ema == Eigen::VectorXf::Constant(2, 7.0F)); // version 0 has no ema: kept
    CHECK(s.lr == 0.5);
}

TEST_CASE("class versions: version 0 reads into a serialize that takes none, a later one not") {
    versioned_run<0> zero;
    zero.w = Eigen::VectorXf::Constant(2, -1.0F);
    zero.step = 4;
    unversioned_run s;
    ckpt::load_from_memory(ckpt::save_to_memory(zero), s);
    CHECK(s.w == zero.w);
    CHECK(s.step == 4);

    versioned_run<2> two;
    two.w = Eigen::VectorXf::Constant(2, 3.0F);
    unversioned_run kept;
    kept.w = Eigen::VectorXf::Constant(2, 9.0F);
    kept.step = 77;
    const auto before = test::state_bytes(kept);
    CHECK(test::error_text([&] { ckpt::load_from_memory(ckpt::save_to_memory(two), kept); }) ==
          "[ckpt.schema.309] step: the checkpoint holds class version 2 of the type this field "
          "is in, whose serialize in this program takes no version");
    CHECK(test::state_bytes(kept) == before);
}

TEST_CASE("class versions: a state that cannot be copied loads an older version in place") {
    versioned_run<0> old;
    old.w = Eigen::VectorXf::Constant(3, 2.5F);
    old.step = 9;
    const auto bytes = ckpt::save_to_memory(old);

    versioned_run<1> s; // its tensors (w, ema) are not the file's (w): the names differ
    ckpt::load_from_memory(bytes, s);
    CHECK(s.w == old.w);
    CHECK(s.step == 9);
    CHECK(s.ema == Eigen::VectorXf::Constant(2, 7.0F));
    REQUIRE(s.not_saved != nullptr);
    CHECK(*s.not_saved == 3);

    // A failure after the values were decoded (w has another shape) leaves it as it was.
    versioned_run<1> shaped;
    shaped.w = Eigen::VectorXf::Constant(4, 1.0F);
    shaped.step = 100;
    const auto before = test::state_bytes(shaped);
    CHECK(test::error_text([&] { ckpt::load_from_memory(bytes, shaped); }) ==
          "[ckpt.schema.302] w: file has float[3], state expects float[4]");
    CHECK(test::state_bytes(shaped) == before);
    CHECK(shaped.step == 100);
}

TEST_CASE("class versions: crafted version bytes are refused before the fields are read") {
    const auto i64 = static_cast<std::byte>(ckpt::dtype::i64);
    const std::int64_t step = 5;
    const auto values_with = [&](std::uint32_t version) {
        std::vector<std::byte> v{std::byte{ckpt::detail::tag_version}};
        put(v, &version, sizeof version);
        v.push_back(i64);
        put(v, &step, sizeof step);
        return v;
    };
    version_probe s;
    s.step = -1;
    SUBCASE("the program's own version, and one below it, load") {
        for (const std::uint32_t version : {3U, 2U, 0U}) {
            CAPTURE(version);
            s.step = -1;
            ckpt::load_from_memory(file_with_values(values_with(version), 2), s);
            CHECK(s.step == 5);
        }
    }
    SUBCASE("one above it and the largest are refused") {
        for (const std::uint32_t version : {4U, 0xFFFFFFFFU}) {
            CAPTURE(version);
            CHECK(test::error_text([&] {
                      ckpt::load_from_memory(file_with_values(values_with(version), 2), s);
                  }) == "[ckpt.schema.309] (the state): the checkpoint was written with class "
                        "version " +
                            std::to_string(version) +
                            " of this type, this program has version 3 (CEREAL_CLASS_VERSION): "
                            "load it with the program that wrote it, or a newer one");
            CHECK(s.step == -1);
        }
    }
    SUBCASE("a version cut short is corrupt") {
        std::vector<std::byte> v{std::byte{ckpt::detail::tag_version}, std::byte{1}, std::byte{0}};
        CHECK(test::error_id([&] { ckpt::load_from_memory(file_with_values(v, 2), s); }) ==
              ckpt::errc::corrupt_values);
        CHECK(s.step == -1);
    }
    SUBCASE("format 1 stored it as a U32 value: read as such, refused as such") {
        const auto u32 = static_cast<std::byte>(ckpt::dtype::u32);
        for (const std::uint32_t version : {3U, 4U}) {
            CAPTURE(version);
            s.step = -1;
            std::vector<std::byte> v{u32};
            put(v, &version, sizeof version);
            v.push_back(i64);
            put(v, &step, sizeof step);
            const int id =
                test::error_id([&] { ckpt::load_from_memory(file_with_values(v, 1), s); });
            CHECK(id == (version == 3 ? 0 : ckpt::errc::schema_class_version));
            CHECK(s.step == (version == 3 ? 5 : -1));
        }
        // In format 2 the same bytes are a U32 where the state reads an I64: no version was
        // stored (version 0), and the field's type differs.
        std::vector<std::byte> v{u32};
        const std::uint32_t three = 3;
        put(v, &three, sizeof three);
        CHECK(test::error_id([&] { ckpt::load_from_memory(file_with_values(v, 2), s); }) ==
              ckpt::errc::schema_value_type);
    }
}
