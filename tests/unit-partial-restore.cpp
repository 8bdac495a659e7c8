// Partial restore and renames: load_options lets tensors be missing from the checkpoint or left
// over in it, and matches the checkpoint's tensors under other names; the load reports exactly
// what it left out and renamed. Values are never partial. Strict by default, and the strong
// guarantee holds in every mode.
#include "manager_test_util.hpp"
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace {

/// The file's side: `w`, a tensor the state lacks, and a value.
struct written_side {
    Eigen::VectorXf w = Eigen::VectorXf::Constant(3, 1.0F);
    Eigen::MatrixXf only_in_file = Eigen::MatrixXf::Constant(2, 2, 5.0F);
    std::int64_t step = 42;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(only_in_file), CEREAL_NVP(step));
    }
};

/// The loading side: `w`, a tensor the file lacks, the same value.
struct loading_side {
    Eigen::VectorXf w = Eigen::VectorXf::Constant(3, -1.0F);
    Eigen::VectorXd only_in_state = Eigen::VectorXd::Constant(4, 7.0);
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(only_in_state), CEREAL_NVP(step));
    }
};

ckpt::load_options partial(bool allow_missing, bool ignore_unexpected,
                           ckpt::load_report* report = nullptr) {
    ckpt::load_options o;
    o.allow_missing = allow_missing;
    o.ignore_unexpected = ignore_unexpected;
    o.report = report;
    return o;
}

struct fc {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias));
    }
};

fc make_fc(int out, int in, float v) {
    return {Eigen::MatrixXf::Constant(out, in, v), Eigen::VectorXf::Constant(out, -v)};
}

/// Before a refactor: model.fc1, model.fc2.
struct before_refactor {
    struct net {
        fc fc1 = make_fc(4, 3, 1.0F);
        fc fc2 = make_fc(2, 4, 2.0F);
        template <class Archive>
        void serialize(Archive& ar) {
            ar(CEREAL_NVP(fc1), CEREAL_NVP(fc2));
        }
    } model;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model));
    }
};

/// After it: model.hidden, model.out.
struct after_refactor {
    struct net {
        fc hidden;
        fc out;
        template <class Archive>
        void serialize(Archive& ar) {
            ar(CEREAL_NVP(hidden), CEREAL_NVP(out));
        }
    } model;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model));
    }
};

/// The bare network of after_refactor, without the `model` level.
struct bare_net {
    fc hidden;
    fc out;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(hidden), CEREAL_NVP(out));
    }
};

using renames_t = std::vector<std::pair<std::string, std::string>>;

ckpt::load_options renaming(renames_t renames, ckpt::load_report* report = nullptr) {
    ckpt::load_options o;
    o.renames = std::move(renames);
    o.report = report;
    return o;
}

/// loading_side's values and one more.
struct more_values {
    Eigen::VectorXf w = Eigen::VectorXf::Constant(3, 1.0F);
    std::int64_t step = 1;
    std::int64_t extra = 2;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step), CEREAL_NVP(extra));
    }
};

/// A training state: a model, optimizer moments (tensors) and a step.
struct training {
    fc model = make_fc(3, 2, 0.5F);
    Eigen::MatrixXf m = Eigen::MatrixXf::Constant(3, 2, 0.1F);
    Eigen::MatrixXf v = Eigen::MatrixXf::Constant(3, 2, 0.2F);
    std::int64_t step = 900;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), cereal::make_nvp("adam.m", m), cereal::make_nvp("adam.v", v),
           CEREAL_NVP(step));
    }
};

/// The fine-tuning state: the same model and step, no optimizer.
struct finetune {
    fc model;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(step));
    }
};

/// before_refactor one level down.
struct wrapped {
    before_refactor inner;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(inner));
    }
};

/// One fc named model.fc10.
struct tens {
    fc fc10 = make_fc(1, 1, 3.0F);
    template <class Archive>
    void serialize(Archive& ar) {
        ar(cereal::make_nvp("model.fc10", fc10));
    }
};

} // namespace

TEST_CASE("partial restore: each combination of the options, with the exact report") {
    const auto bytes = ckpt::save_to_memory(written_side{});
    const loading_side fresh;
    const auto before = test::state_bytes(fresh);

    SUBCASE("neither: both differences are errors, the state is untouched") {
        loading_side s;
        CHECK(test::error_text([&] { ckpt::load_from_memory(bytes, s, partial(false, false)); }) ==
              "[ckpt.schema.301] only_in_state: state expects double[4], the checkpoint has no "
              "such tensor (and 1 more:\n  [ckpt.schema.303] only_in_file: file has F32 [2, 2], "
              "the state has no such tensor)");
        CHECK(test::state_bytes(s) == before);
    }
    SUBCASE("allow_missing alone: the leftover tensor is still an error") {
        loading_side s;
        CHECK(test::error_text([&] { ckpt::load_from_memory(bytes, s, partial(true, false)); }) ==
              "[ckpt.schema.303] only_in_file: file has F32 [2, 2], the state has no such tensor");
        CHECK(test::state_bytes(s) == before);
    }
    SUBCASE("ignore_unexpected alone: the missing tensor is still an error") {
        loading_side s;
        CHECK(test::error_text([&] { ckpt::load_from_memory(bytes, s, partial(false, true)); }) ==
              "[ckpt.schema.301] only_in_state: state expects double[4], the checkpoint has no "
              "such tensor");
        CHECK(test::state_bytes(s) == before);
    }
    SUBCASE("both: loads what both have, keeps the rest, and says so") {
        loading_side s;
        ckpt::load_report report;
        report.missing = {"stale"}; // replaced, not appended to
        ckpt::load_from_memory(bytes, s, partial(true, true, &report));
        CHECK(s.w == Eigen::VectorXf::Constant(3, 1.0F));
        CHECK(s.step == 42);
        CHECK(s.only_in_state == Eigen::VectorXd::Constant(4, 7.0));
        CHECK(report.missing == std::vector<std::string>{"only_in_state"});
        CHECK(report.ignored == std::vector<std::string>{"only_in_file"});
        CHECK(report.renamed.empty());
    }
    SUBCASE("a load that needs neither reports nothing") {
        ckpt::load_report report;
        report.ignored = {"stale"};
        written_side s;
        ckpt::load_from_memory(bytes, s, partial(true, true, &report));
        CHECK(report.missing.empty());
        CHECK(report.ignored.empty());
    }
}

TEST_CASE("partial restore: the strong guarantee under each failure") {
    loading_side s;
    s.step = 5;
    const auto before = test::state_bytes(s);
    ckpt::load_report report;
    report.missing = {"untouched"};
    SUBCASE("a tensor both have, of another shape") {
        written_side w;
        w.w = Eigen::VectorXf::Constant(5, 1.0F);
        CHECK(test::error_id([&] {
                  ckpt::load_from_memory(ckpt::save_to_memory(w), s, partial(true, true, &report));
              }) == ckpt::errc::schema_mismatch);
    }
    SUBCASE("values are never partial") {
        CHECK(test::error_id([&] {
                  ckpt::load_from_memory(ckpt::save_to_memory(more_values{}), s,
                                         partial(true, true, &report));
              }) == ckpt::errc::schema_value_count);
    }
    SUBCASE("a damaged file") {
        auto bytes = ckpt::save_to_memory(written_side{});
        bytes[bytes.size() - 1] ^= std::byte{1};
        CHECK(test::error_id([&] {
                  ckpt::load_from_memory(bytes, s, partial(true, true, &report));
              }) == ckpt::errc::corrupt_checksum);
    }
    CHECK(test::state_bytes(s) == before);
    CHECK(report.missing == std::vector<std::string>{"untouched"}); // set only on success
}

TEST_CASE("partial restore: a model's weights from a training checkpoint") {
    const auto path = test::scratch("partial-train") / "train.ckpt";
    ckpt::save(path, training{});
    finetune s;
    ckpt::load_report report;
    ckpt::load_options options;
    options.ignore_unexpected = true;
    options.report = &report;
    ckpt::load(path, s, options);
    CHECK(s.model.weight == training{}.model.weight);
    CHECK(s.model.bias == training{}.model.bias);
    CHECK(s.step == 900);
    CHECK(report.ignored == std::vector<std::string>{"adam.m", "adam.v"});
    CHECK(report.missing.empty());
}

TEST_CASE("renames: a prefix rename moves a whole sub-struct") {
    const auto bytes = ckpt::save_to_memory(before_refactor{});
    after_refactor s;
    ckpt::load_report report;
    ckpt::load_from_memory(
        bytes, s, renaming({{"model.fc1", "model.hidden"}, {"model.fc2", "model.out"}}, &report));
    const before_refactor want;
    CHECK(s.model.hidden.weight == want.model.fc1.weight);
    CHECK(s.model.hidden.bias == want.model.fc1.bias);
    CHECK(s.model.out.weight == want.model.fc2.weight);
    CHECK(s.model.out.bias == want.model.fc2.bias);
    using pairs = std::vector<std::pair<std::string, std::string>>;
    pairs renamed = report.renamed;
    std::sort(renamed.begin(), renamed.end());
    CHECK(renamed == pairs{{"model.fc1.bias", "model.hidden.bias"},
                           {"model.fc1.weight", "model.hidden.weight"},
                           {"model.fc2.bias", "model.out.bias"},
                           {"model.fc2.weight", "model.out.weight"}});
}

TEST_CASE("renames: dropping and adding a prefix; the longest match wins") {
    const auto bytes = ckpt::save_to_memory(before_refactor{});
    const before_refactor want;
    SUBCASE("drop 'model', and fcN become hidden/out") {
        bare_net s;
        ckpt::load_from_memory(
            bytes, s, renaming({{"model", ""}, {"model.fc1", "hidden"}, {"model.fc2", "out"}}));
        CHECK(s.hidden.weight == want.model.fc1.weight);
        CHECK(s.out.bias == want.model.fc2.bias);
    }
    SUBCASE("add a prefix to every name, then move one tensor back exactly") {
        wrapped s;
        s.inner.model.fc1 = make_fc(4, 3, 0.0F);
        s.inner.model.fc2 = make_fc(2, 4, 0.0F);
        ckpt::load_from_memory(bytes, s, renaming({{"", "inner"}}));
        CHECK(s.inner.model.fc1.weight == want.model.fc1.weight);
        CHECK(s.inner.model.fc2.bias == want.model.fc2.bias);
    }
    SUBCASE("a name only matches at a '.': model.fc1 is not a prefix of model.fc10") {
        tens s;
        CHECK(test::error_text([&] {
                  ckpt::load_from_memory(ckpt::save_to_memory(tens{}), s,
                                         renaming({{"model.fc1", "x"}}));
              }) == "[ckpt.schema.310] model.fc1: the rename to 'x' matches no tensor of the "
                    "checkpoint");
    }
}

TEST_CASE("renames: a collision and a rename that matches nothing are errors") {
    const auto bytes = ckpt::save_to_memory(before_refactor{});
    after_refactor s;
    s.model.hidden = make_fc(4, 3, 9.0F);
    s.model.out = make_fc(2, 4, 9.0F);
    const auto before = test::state_bytes(s);
    SUBCASE("onto a path the checkpoint already has") {
        CHECK(test::error_text([&] {
                  ckpt::load_from_memory(bytes, s, renaming({{"model.fc1", "model.fc2"}}));
              }) == "[ckpt.schema.311] model.fc2.weight: the checkpoint's tensors "
                    "model.fc1.weight and model.fc2.weight both have this name after the "
                    "renames (and 1 more:\n  [ckpt.schema.311] model.fc2.bias: the checkpoint's "
                    "tensors model.fc1.bias and model.fc2.bias both have this name after the "
                    "renames)");
    }
    SUBCASE("a typo") {
        CHECK(test::error_text([&] {
                  ckpt::load_from_memory(
                      bytes, s,
                      renaming({{"model.fc1", "model.hidden"}, {"model.fc_2", "model.out"}}));
              }) == "[ckpt.schema.310] model.fc_2: the rename to 'model.out' matches no tensor "
                    "of the checkpoint");
    }
    SUBCASE("renamed but still not the state's: the error names the file's name") {
        CHECK(test::error_text([&] {
                  ckpt::load_from_memory(
                      bytes, s,
                      renaming({{"model.fc1", "model.hidden"}, {"model.fc2", "model.output"}}));
              })
                  .starts_with("[ckpt.schema.301] model.out.weight: state expects float 2x4, the "
                               "checkpoint has no such tensor (and 3 more:"));
        std::string text;
        try {
            ckpt::load_from_memory(
                bytes, s, renaming({{"model.fc1", "model.hidden"}, {"model.fc2", "model.output"}}));
        } catch (const ckpt::schema_error& e) {
            for (const auto& p : e.problems()) text += p.path + ": " + p.text + "\n";
        }
        CHECK(text.find("model.output.weight: file has F32 [4, 2] (named model.fc2.weight in "
                        "the file), the state has no such tensor") != std::string::npos);
    }
    CHECK(test::state_bytes(s) == before);
}

TEST_CASE("partial restore: the manager passes the options through") {
    const auto dir = test::scratch("partial-manager");
    ckpt::manager m(dir, ckpt::every_steps(1));
    m.save_now(written_side{}, test::at(3, {{"loss", 0.5}}));
    loading_side s;
    CHECK(test::error_id([&] { m.restore_latest(s); }) == ckpt::errc::schema_missing);
    ckpt::load_report report;
    const auto meta = m.restore_latest(s, partial(true, true, &report));
    REQUIRE(meta.has_value());
    CHECK(meta->step == 3);
    CHECK(s.step == 42);
    CHECK(report.missing == std::vector<std::string>{"only_in_state"});
    CHECK(report.ignored == std::vector<std::string>{"only_in_file"});
    report = {};
    s.step = 0;
    const auto best = m.restore_best(s, "loss", ckpt::goal::minimize, partial(true, true, &report));
    REQUIRE(best.has_value());
    CHECK(s.step == 42);
    CHECK(report.missing == std::vector<std::string>{"only_in_state"});
}
