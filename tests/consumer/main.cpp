// Save a training state, load it into a fresh one, and check that every bit came back.
#include <ckpt/ckpt.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>

struct my_state {
    Eigen::MatrixXf weight;
    Eigen::Matrix<double, 3, 1> bias;
    Eigen::Matrix<float, 2, 2, Eigen::RowMajor> fixed;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    std::string name;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(fixed), CEREAL_NVP(rng),
           CEREAL_NVP(step), CEREAL_NVP(name));
    }
};

// Same shape and the same bytes, so NaN payloads and -0.0 count too.
template <class Matrix>
bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(),
                       sizeof(typename Matrix::Scalar) * static_cast<std::size_t>(a.size())) == 0;
}

int nn_round_trip(); // second.cpp

int main() {
    my_state saved;
    saved.weight = Eigen::MatrixXf::Random(4, 3);
    saved.bias = Eigen::Vector3d::Random();
    saved.fixed = Eigen::Matrix<float, 2, 2, Eigen::RowMajor>::Random();
    saved.rng.seed(2026);
    saved.rng.discard(100); // a state in the middle of a run, not a fresh seed
    saved.step = 1234;
    saved.name = "consumer";

    const std::filesystem::path file = "consumer.ckpt";
    my_state loaded;
    ckpt::metadata meta;
    try {
        ckpt::save(file, saved, ckpt::metadata{.step = 42});
        meta = ckpt::load(file, loaded);
    } catch (const ckpt::error& e) {
        std::cerr << "ckpt error " << e.id() << ": " << e.what() << '\n';
        return 1;
    }

    int failures = 0;
    auto check = [&failures](bool ok, const char* what) {
        if (!ok) {
            std::cerr << "mismatch: " << what << '\n';
            ++failures;
        }
    };
    check(same_bits(saved.weight, loaded.weight), "weight");
    check(same_bits(saved.bias, loaded.bias), "bias");
    check(same_bits(saved.fixed, loaded.fixed), "fixed");
    bool same_draws = true;
    for (int i = 0; i < 10; ++i) {
        if (saved.rng() != loaded.rng()) {
            same_draws = false;
        }
    }
    check(same_draws, "rng (next 10 draws)");
    check(saved.step == loaded.step, "step");
    check(saved.name == loaded.name, "name");
    check(meta.step == 42, "metadata step");
    check(nn_round_trip() == 0, "nn round trip (second.cpp)");

    std::filesystem::remove(file);
    if (failures == 0) {
        std::cout << "consumer: round trip is bit-exact\n";
    }
    return failures == 0 ? 0 : 1;
}
