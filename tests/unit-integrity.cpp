// Integrity: every single-bit flip and every truncation of a checkpoint is detected before
// anything is decoded, and the state being loaded into is left exactly as it was.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>

namespace {

struct small_state {
    Eigen::Matrix<float, 2, 3> w = Eigen::Matrix<float, 2, 3>::Constant(1.5F);
    Eigen::VectorXd b = Eigen::VectorXd::LinSpaced(4, -1.0, 1.0);
    Eigen::Matrix<std::int32_t, 2, 2, Eigen::RowMajor> counts{{1, 2}, {3, 4}};
    std::minstd_rand rng{42};
    std::int64_t step = 1234;
    std::string tag = "ok";
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(b), CEREAL_NVP(counts), CEREAL_NVP(rng), CEREAL_NVP(step),
           CEREAL_NVP(tag));
    }
};

small_state other_state() {
    small_state s;
    s.w.setConstant(-7.0F);
    s.b.setConstant(3.0);
    s.counts.setConstant(9);
    s.rng.seed(7);
    s.step = -1;
    s.tag = "other";
    return s;
}

} // namespace

TEST_CASE("every single-bit flip anywhere in the file is detected") {
    const small_state saved;
    const std::vector<std::byte> good = ckpt::save_to_memory(saved);
    REQUIRE(good.size() < 1024); // small enough to try every bit

    small_state target = other_state();
    const std::vector<std::byte> before = test::state_bytes(target);
    std::map<int, int> by_id;
    std::size_t undetected = 0;
    for (std::size_t byte = 0; byte < good.size(); ++byte) {
        for (int bit = 0; bit < 8; ++bit) {
            std::vector<std::byte> bad = good;
            bad[byte] ^= static_cast<std::byte>(1U << bit);
            const int id = test::error_id([&] { ckpt::load_from_memory(bad, target); });
            if (id == 0) ++undetected;
            ++by_id[id];
        }
    }
    CHECK(undetected == 0);
    CHECK(test::state_bytes(target) == before); // not one flip changed the target
    std::string summary;
    for (const auto& [id, n] : by_id)
        summary += " [" + std::to_string(id) + "]x" + std::to_string(n);
    const std::size_t flips = good.size() * 8;
    MESSAGE(flips << " flips of a " << good.size() << "-byte file, by error id:" << summary);
    // Most flips are caught by the checksum; the rest break the framing in front of it (length,
    // checksum prefix, version) and are refused before it is computed.
    CHECK(by_id[ckpt::errc::corrupt_checksum] > static_cast<int>(flips * 8 / 10));

    small_state loaded = other_state();
    ckpt::load_from_memory(good, loaded); // the unflipped file still loads
    CHECK(test::state_bytes(loaded) == test::state_bytes(saved));
}

TEST_CASE("every truncation and any trailing byte is detected") {
    const std::vector<std::byte> good = ckpt::save_to_memory(small_state{});
    small_state target = other_state();
    const std::vector<std::byte> before = test::state_bytes(target);
    std::size_t undetected = 0;
    for (std::size_t len = 0; len < good.size(); ++len) {
        const std::vector<std::byte> cut(good.begin(),
                                         good.begin() + static_cast<std::ptrdiff_t>(len));
        const int id = test::error_id([&] { ckpt::load_from_memory(cut, target); });
        if (id == 0) ++undetected;
        if (len < 8) CHECK(id == ckpt::errc::corrupt_too_small);
    }
    CHECK(undetected == 0);
    std::vector<std::byte> longer = good;
    longer.push_back(std::byte{0});
    CHECK(test::error_id([&] { ckpt::load_from_memory(longer, target); }) ==
          ckpt::errc::corrupt_checksum);
    CHECK(test::state_bytes(target) == before);
}

TEST_CASE("flips and truncations of a file on disk are detected through the file path too") {
    const auto dir = test::scratch("integrity-files");
    const auto path = dir / "c.ckpt";
    ckpt::save(path, small_state{});
    const std::vector<std::byte> good = test::read_file(path);
    small_state target = other_state();
    const std::vector<std::byte> before = test::state_bytes(target);
    std::mt19937_64 pick(1);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<std::byte> bad = good;
        const std::size_t bit = pick() % (good.size() * 8);
        bad[bit / 8] ^= static_cast<std::byte>(1U << (bit % 8));
        test::write_file(path, bad);
        REQUIRE(test::error_id([&] { ckpt::load(path, target); }) != 0);
        const std::size_t len = pick() % good.size();
        test::write_file(path, std::vector<std::byte>(
                                   good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
        REQUIRE(test::error_id([&] { ckpt::load(path, target); }) != 0);
    }
    CHECK(test::state_bytes(target) == before);
}

TEST_CASE("a damaged file names what is wrong and where") {
    const auto dir = test::scratch("integrity-message");
    const auto path = dir / "c.ckpt";
    ckpt::save(path, small_state{});
    std::vector<std::byte> bytes = test::read_file(path);
    bytes[bytes.size() - 3] ^= std::byte{0x10};
    test::write_file(path, bytes);
    small_state s;
    const std::string text = test::error_text([&] { ckpt::load(path, s); });
    CHECK(text.starts_with("[ckpt.corrupt.204] '" + path.string() +
                           "': checksum mismatch: the header says "));
    CHECK(text.ends_with(": the file is damaged"));
    CHECK(ckpt::inspect(path).tensors.size() == 3); // without verification the header still reads
    CHECK(test::error_id([&] { ckpt::inspect(path, {.verify = true}); }) ==
          ckpt::errc::corrupt_checksum);
}
