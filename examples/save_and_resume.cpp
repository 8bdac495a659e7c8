// Save a training state and resume from it: the README's example, run by CTest.
//
// The lesson of the tutorial this project grew from: a checkpoint must hold *everything* the run
// needs to continue (weights, optimizer moments, the random engine, the step), and a resumed run
// must not be able to tell that it stopped.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>

namespace save_and_resume {

struct train_state {
    Eigen::MatrixXf weight; // any dense Eigen Matrix or Array becomes a named tensor
    Eigen::VectorXf bias;
    std::mt19937_64 rng;   // engines and distributions continue exactly
    std::int64_t step = 0; // everything else goes into a compact value stream

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(rng), CEREAL_NVP(step));
    }
};

// One "training step": anything that reads and changes the whole state will do.
void train_step(train_state& s) {
    std::normal_distribution<float> noise(0.0F, 0.01F);
    for (Eigen::Index i = 0; i < s.weight.size(); ++i) s.weight.data()[i] += noise(s.rng);
    s.bias.array() += 0.001F;
    ++s.step;
}

TEST_CASE("save, stop, resume: the resumed run is the run that never stopped") {
    const std::filesystem::path dir = "example-save-and-resume";
    std::filesystem::create_directories(dir);

    const train_state start{Eigen::MatrixXf::Random(64, 32), Eigen::VectorXf::Zero(64),
                            std::mt19937_64(1), 0};

    train_state reference = start; // 20 steps, never interrupted
    for (int i = 0; i < 20; ++i) train_step(reference);

    train_state run = start; // 10 steps, a checkpoint, then the process "dies"
    for (int i = 0; i < 10; ++i) train_step(run);
    ckpt::save(dir / "last.ckpt", run, {.step = run.step, .metrics = {{"loss", 0.25}}});

    train_state resumed; // a new process starts empty: tensors take the file's shapes
    const ckpt::metadata meta = ckpt::load(dir / "last.ckpt", resumed);
    CHECK(meta.step == 10);
    CHECK(meta.metrics.at("loss") == 0.25);
    for (int i = 0; i < 10; ++i) train_step(resumed);

    REQUIRE(resumed.step == 20);
    CHECK(resumed.weight == reference.weight); // exactly equal, not approximately
    CHECK(resumed.bias == reference.bias);
    CHECK(resumed.rng() == reference.rng());

    const ckpt::info info = ckpt::inspect(dir / "last.ckpt");
    CHECK(info.tensors.size() == 2); // weight and bias; the rest is in the value stream
}

} // namespace save_and_resume
