// Writes the seed corpus: real checkpoints, small (< 20 KB each).
//   make_corpus <output dir>
#include "fuzz_common.hpp"

#include <filesystem>
#include <iostream>

namespace {

ckpt::metadata fixed_meta(std::int64_t step) {
    ckpt::metadata m;
    m.step = step;
    m.epoch = 1;
    m.metrics["loss"] = 0.25;
    m.tags["run"] = "fuzz-seed";
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1796000000));
    return m;
}

template <class T>
void write(const std::filesystem::path& dir, const std::string& name, const T& state,
           const ckpt::metadata& meta = fixed_meta(0)) {
    const std::vector<std::byte> bytes = ckpt::save_to_memory(state, meta);
    std::FILE* f = std::fopen((dir / name).c_str(), "wb");
    if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
        std::cerr << "make_corpus: cannot write " << (dir / name) << "\n";
        std::exit(1);
    }
    std::fclose(f);
    std::cout << name << ": " << bytes.size() << " bytes\n";
}

template <class Optimizer, class Options>
ckpt::nn::train_state<float, Optimizer> trained(std::vector<std::int64_t> sizes, int steps,
                                                Options options) {
    ckpt::nn::mlp<float> model(std::move(sizes), ckpt::nn::activation::tanh, 7);
    Optimizer opt(model, options);
    ckpt::nn::train_state<float, Optimizer> s{std::move(model),
                                              std::move(opt),
                                              ckpt::nn::sampler(8, 4, 11),
                                              std::mt19937_64(3),
                                              0,
                                              0,
                                              {}};
    ckpt::nn::dataset<float> data;
    data.inputs = ckpt::nn::matrix<float>::Random(8, s.model.sizes().front());
    data.targets = ckpt::nn::matrix<float>::Random(8, s.model.sizes().back());
    for (int i = 0; i < steps; ++i) ckpt::nn::train_step(s, data);
    return s;
}

fuzz::kinds_state kinds() {
    fuzz::kinds_state k;
    k.rm.resize(2, 3);
    k.rm << 1, 2, 3, 4, 5, 6;
    k.cm = Eigen::MatrixXd::Constant(3, 2, -0.5);
    k.fixed << 1, -2, 3, -4;
    k.fixed_cols = Eigen::Matrix<std::int16_t, Eigen::Dynamic, 3>::Constant(2, 3, 7);
    k.bounded = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 4>::Ones(2, 2);
    k.vec = Eigen::VectorXf::LinSpaced(4, 0, 1);
    k.row_vec = Eigen::RowVectorXd::LinSpaced(3, -1, 1);
    k.fixed_vec << 1, 2, 3;
    k.halfs.resize(3);
    k.halfs << Eigen::half(1), Eigen::half(-2), Eigen::half(0.5F);
    k.bf16s.resize(2);
    k.bf16s << Eigen::bfloat16(1), Eigen::bfloat16(3);
    k.flags.resize(3);
    k.flags << true, false, true;
    k.u8s = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1>::Constant(5, 200);
    k.i8s = Eigen::Matrix<std::int8_t, Eigen::Dynamic, 1>::Constant(3, -7);
    k.u16s = Eigen::Matrix<std::uint16_t, Eigen::Dynamic, 1>::Constant(2, 60000);
    k.u32s = Eigen::Matrix<std::uint32_t, Eigen::Dynamic, 1>::Constant(2, 4000000000U);
    k.u64s = Eigen::Matrix<std::uint64_t, Eigen::Dynamic, 1>::Constant(1, ~0ULL);
    k.i64s = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic>::Constant(2, 2, -9);
    k.list = {Eigen::VectorXf::Ones(2), Eigen::VectorXf::Zero(3)};
    k.names = {"alpha", "beta"};
    k.text = "hello";
    k.on = true;
    k.x = 3.25;
    k.rng.seed(5);
    k.noise = std::normal_distribution<double>(0.0, 0.1);
    k.noise(k.rng);
    return k;
}

struct tiny {
    std::int32_t n = 42;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(n));
    }
};

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_corpus <output dir>\n";
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    using adam = ckpt::nn::adam<float>;
    using sgd = ckpt::nn::sgd<float>;
    const ckpt::nn::adam_options ao{};
    const ckpt::nn::sgd_options so{};
    write(dir, "train-adam-2-3-1.ckpt", trained<adam>({2, 3, 1}, 3, ao), fixed_meta(3));
    write(dir, "train-adam-3-4-4-2.ckpt", trained<adam>({3, 4, 4, 2}, 5, ao), fixed_meta(5));
    write(dir, "train-adam-untrained.ckpt", trained<adam>({1, 1}, 0, ao), fixed_meta(0));
    write(dir, "train-sgd-2-2-1.ckpt", trained<sgd>({2, 2, 1}, 2, so), fixed_meta(2));
    write(dir, "train-default.ckpt", ckpt::nn::train_state<float>{});
    write(dir, "kinds.ckpt", kinds());
    write(dir, "kinds-empty.ckpt", fuzz::kinds_state{});
    write(dir, "shapes.ckpt", fuzz::filled_shapes());
    write(dir, "shapes-default.ckpt", fuzz::shapes_state{});
    fuzz::versioned_state versioned;
    versioned.layers = {{Eigen::VectorXf::Constant(3, 0.5F), Eigen::VectorXf::Ones(2)},
                        {Eigen::VectorXf::Constant(1, -1.0F), Eigen::VectorXf()}};
    versioned.clock = {42, 0.25};
    versioned.ema = Eigen::MatrixXd::Identity(2, 3);
    write(dir, "versioned.ckpt", versioned, fixed_meta(7));
    write(dir, "tensor-kinds.ckpt", fuzz::filled_tensor_kinds(), fixed_meta(12));
    write(dir, "tensor-kinds-empty.ckpt", fuzz::tensor_kinds_state{});
    ckpt::metadata bare; // no metrics or tags; the time of the committed seed
    bare.time = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(1796012530421695366)));
    write(dir, "tiny.ckpt", tiny{}, bare);
    return 0;
}
