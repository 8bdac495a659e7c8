// inspect(): a checkpoint's header, metadata and tensors, without the state's type.
#include "test_util.hpp"

#include <doctest/doctest.h>

namespace {
struct inspect_model {
    Eigen::Matrix<float, 8, 4, Eigen::RowMajor> weight =
        Eigen::Matrix<float, 8, 4, Eigen::RowMajor>::Ones();
    Eigen::VectorXd bias = Eigen::VectorXd::Zero(8);
    std::int64_t step = 5;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(step));
    }
};
} // namespace

TEST_CASE("inspect lists tensors and metadata, and verifies only when asked") {
    const auto dir = test::scratch("inspect");
    ckpt::metadata meta;
    meta.step = 5;
    meta.epoch = 2;
    meta.metrics["val_loss"] = 0.75;
    meta.tags["arch"] = "8-4";
    ckpt::save(dir / "m.ckpt", inspect_model{}, meta);
    const auto size = std::filesystem::file_size(dir / "m.ckpt");

    const ckpt::info info = ckpt::inspect(dir / "m.ckpt");
    CHECK(info.format_version == ckpt::format_version);
    CHECK(info.library_version == CKPT_VERSION_STRING);
    CHECK(info.meta.step == 5);
    CHECK(info.meta.epoch == 2);
    CHECK(info.meta.metrics.at("val_loss") == 0.75);
    CHECK(info.meta.tags.at("arch") == "8-4");
    CHECK_FALSE(info.checksum_verified);
    CHECK(info.checksum.starts_with("xxh3-64:"));
    CHECK(info.checksum.size() == 24);
    CHECK(info.fingerprint.size() == 16);
    CHECK(info.file_bytes == size);
    CHECK(info.header_bytes % 8 == 0);
    REQUIRE(info.tensors.size() == 2);
    CHECK(info.tensors[0] == ckpt::tensor_info{"bias", ckpt::dtype::f64, {8}, 0, 64, '-'});
    CHECK(info.tensors[1] == ckpt::tensor_info{"weight", ckpt::dtype::f32, {8, 4}, 64, 128, 'R'});
    CHECK(info.value_bytes > 0);
    CHECK(8 + info.header_bytes + 64 + 128 + info.value_bytes == size);

    const ckpt::info verified = ckpt::inspect(dir / "m.ckpt", {.verify = true});
    CHECK(verified.checksum_verified);
    CHECK(verified.checksum == info.checksum);

    // The same layout gives the same fingerprint; another architecture another one.
    ckpt::save(dir / "again.ckpt", inspect_model{}, meta);
    CHECK(ckpt::inspect(dir / "again.ckpt").fingerprint == info.fingerprint);
    inspect_model other;
    other.bias.resize(9);
    ckpt::save(dir / "other.ckpt", other);
    CHECK(ckpt::inspect(dir / "other.ckpt").fingerprint != info.fingerprint);
}

TEST_CASE("inspect reads any safetensors file; load refuses one ckpt did not write") {
    const auto dir = test::scratch("inspect-foreign");
    const std::string json =
        R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"n":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[8,11]}})";
    test::write_file(dir / "model.safetensors",
                     test::craft(json, std::vector<std::byte>(11), false));
    const ckpt::info info = ckpt::inspect(dir / "model.safetensors");
    CHECK(info.format_version == 0);
    CHECK(info.library_version.empty());
    CHECK(info.checksum.empty());
    CHECK(info.raw_metadata.at("format") == "pt");
    REQUIRE(info.tensors.size() == 2);
    CHECK(info.tensors[0] == ckpt::tensor_info{"w", ckpt::dtype::bf16, {2, 2}, 0, 8, '-'});
    CHECK(info.tensors[1] == ckpt::tensor_info{"n", ckpt::dtype::f8_e4m3, {3}, 8, 3, '-'});
    CHECK(test::error_id([&] { ckpt::inspect(dir / "model.safetensors", {.verify = true}); }) ==
          ckpt::errc::corrupt_not_ckpt);
    Eigen::MatrixXf m;
    CHECK(test::error_id([&] { ckpt::load(dir / "model.safetensors", m); }) ==
          ckpt::errc::corrupt_not_ckpt);
}

TEST_CASE("inspect refuses short, truncated and oversized headers") {
    const auto dir = test::scratch("inspect-bad");
    test::write_file(dir / "short", std::vector<std::byte>(5));
    CHECK(test::error_id([&] { ckpt::inspect(dir / "short"); }) == ckpt::errc::corrupt_too_small);
    auto file = ckpt::save_to_memory(inspect_model{});
    test::write_file(dir / "cut", std::vector<std::byte>(file.begin(), file.begin() + 100));
    CHECK(test::error_id([&] { ckpt::inspect(dir / "cut"); }) ==
          ckpt::errc::corrupt_truncated_header);
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(file.data(), &huge, 8);
    test::write_file(dir / "huge", file);
    CHECK(test::error_id([&] { ckpt::inspect(dir / "huge"); }) == ckpt::errc::limit_header);
    CHECK(test::error_id([&] { ckpt::inspect(dir / "nothing-here"); }) == ckpt::errc::io_open);
}
