// When your code changes: the three ways an old checkpoint keeps loading.
//
// 1. A class version (cereal's CEREAL_CLASS_VERSION): the struct gained members; an older file
//    loads, and the new members keep the values the state holds.
// 2. A rename: a refactor moved a sub-struct; the old tensor names are mapped to the new ones.
// 3. Partial restore: take the model's weights out of a full training checkpoint into a state
//    that has no optimizer; the load says exactly what it left out.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace when_your_code_changes {

// --- 1. A class version ------------------------------------------------------------------------
// Version 0 of this struct held w and step. Version 1 added an EMA of the weights (a tensor)
// and a learning rate (a value). Both versions are spelled here as two types so that one
// program can show the step; in a real project it is the same struct, built before and after.
struct run_v0 {
    Eigen::VectorXf w;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const /*version*/) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step));
    }
};

struct run_v1 {
    Eigen::VectorXf w;
    std::int64_t step = 0;
    Eigen::VectorXf ema = Eigen::VectorXf::Zero(4); // new in version 1
    double lr = 0.5;                                // new in version 1
    template <class Archive>
    void serialize(Archive& ar, std::uint32_t const version) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step));
        if (version >= 1) ar(CEREAL_NVP(ema), CEREAL_NVP(lr));
    }
};

// --- 2. A rename -------------------------------------------------------------------------------
struct linear {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
};

struct old_net { // model.fc1, model.fc2
    linear fc1, fc2;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("model.fc1", fc1), cereal::make_nvp("model.fc2", fc2));
    }
};

struct new_net { // after the refactor: encoder.proj, head
    linear proj, head;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("encoder.proj", proj), cereal::make_nvp("head", head));
    }
};

// --- 3. Partial restore ------------------------------------------------------------------------
struct training_run { // the model, Adam's moments, the step
    linear model;
    linear exp_avg, exp_avg_sq;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(exp_avg), CEREAL_NVP(exp_avg_sq), CEREAL_NVP(step));
    }
};

struct fine_tuning { // the same model and step, no optimizer yet
    linear model;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(step));
    }
};

/// The id of the ckpt::error `f` throws, or 0.
template <class F>
int ckpt_error_id(F&& f) {
    try {
        f();
    } catch (const ckpt::error& e) {
        return e.id();
    }
    return 0;
}

linear filled(float v) {
    return {Eigen::MatrixXf::Constant(3, 2, v), Eigen::VectorXf::Constant(3, -v)};
}

} // namespace when_your_code_changes

CEREAL_CLASS_VERSION(when_your_code_changes::run_v0, 0)
CEREAL_CLASS_VERSION(when_your_code_changes::run_v1, 1)

namespace when_your_code_changes {

TEST_CASE("a struct that gained members loads the checkpoints of its older version") {
    const std::filesystem::path dir = "example-when-your-code-changes";
    std::filesystem::create_directories(dir);
    run_v0 old;
    old.w = Eigen::VectorXf::Constant(4, 1.5F);
    old.step = 300;
    ckpt::save(dir / "v0.ckpt", old); // written by last month's build

    run_v1 now; // this build: ema and lr keep what they hold
    ckpt::load(dir / "v0.ckpt", now);
    CHECK(now.w == old.w);
    CHECK(now.step == 300);
    CHECK(now.ema == Eigen::VectorXf::Zero(4));
    CHECK(now.lr == 0.5);

    // The other way round is refused, by name: an old build never misreads a newer file.
    ckpt::save(dir / "v1.ckpt", now);
    run_v0 older;
    try {
        ckpt::load(dir / "v1.ckpt", older);
        FAIL("a version-0 build loaded a version-1 checkpoint");
    } catch (const ckpt::schema_error& e) {
        CHECK(e.id() == ckpt::errc::schema_class_version); // 309
        MESSAGE(e.what());
    }
}

TEST_CASE("a refactor renamed the layers: map the old names to the new") {
    const auto bytes = ckpt::save_to_memory(old_net{filled(1), filled(2)});
    new_net net;
    ckpt::load_options options;
    options.renames = {{"model.fc1", "encoder.proj"}, {"model.fc2", "head"}};
    ckpt::load_from_memory(bytes, net, options);
    CHECK(net.proj.weight == filled(1).weight);
    CHECK(net.head.bias == filled(2).bias);

    options.renames = {{"model.fc1", "encoder.proj"}, {"model.fc3", "head"}}; // a typo
    CHECK(ckpt_error_id([&] { ckpt::load_from_memory(bytes, net, options); }) ==
          ckpt::errc::schema_rename_unmatched); // 310: nothing is called model.fc3
}

TEST_CASE("fine-tuning: the model's weights out of a full training checkpoint") {
    const auto bytes =
        ckpt::save_to_memory(training_run{filled(3), filled(0.1F), filled(0.2F), 900});
    fine_tuning s;
    CHECK(ckpt_error_id([&] { ckpt::load_from_memory(bytes, s); }) ==
          ckpt::errc::schema_unexpected); // strict by default: 303, the optimizer is left over

    ckpt::load_report report;
    ckpt::load_options options;
    options.ignore_unexpected = true; // and allow_missing for tensors only the state has
    options.report = &report;
    ckpt::load_from_memory(bytes, s, options);
    CHECK(s.model.weight == filled(3).weight);
    CHECK(s.step == 900);
    CHECK(report.ignored == std::vector<std::string>{"exp_avg.bias", "exp_avg.weight",
                                                     "exp_avg_sq.bias", "exp_avg_sq.weight"});
}

} // namespace when_your_code_changes
