// The architecture changed since the checkpoint was saved: a clear error, and nothing loaded.
//
// The tutorial's question 4: resuming fails with "RuntimeError: Error(s) in loading state_dict"
// because the model changed after the checkpoint was saved. Here the hidden layer went from 64
// to 32 units. ckpt names each field that differs, by its path in the state, with the file's
// shape and the state's; it checks every tensor, the optimizer's included, before it changes
// anything, so the state is left exactly as it was.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

namespace architecture_changed {

using state_t = ckpt::nn::train_state<float>;

state_t make_state(std::int64_t hidden) {
    state_t s;
    s.model = ckpt::nn::mlp<float>({2, hidden, 2}, ckpt::nn::activation::relu, 1);
    s.optimizer = ckpt::nn::adam<float>(s.model, {});
    s.sampler = ckpt::nn::sampler(400, 50, 2);
    s.rng.seed(3);
    return s;
}

TEST_CASE("loading a 2-64-2 checkpoint into a 2-32-2 model is a schema error naming the field") {
    const std::filesystem::path dir = "example-architecture-changed";
    std::filesystem::create_directories(dir);
    const auto data = ckpt::nn::two_spirals<float>(200, 0.02, 4);

    state_t trained = make_state(64); // yesterday's run
    for (int i = 0; i < 20; ++i) ckpt::nn::train_step(trained, data);
    ckpt::save(dir / "last.ckpt", trained, {.step = trained.step});

    state_t changed = make_state(32); // today's code: the hidden layer resized
    const state_t before = changed;
    try {
        ckpt::load(dir / "last.ckpt", changed);
        FAIL("a 2-64-2 checkpoint loaded into a 2-32-2 model");
    } catch (const ckpt::schema_error& e) {
        MESSAGE(e.what());
        CHECK(e.id() == ckpt::errc::schema_mismatch); // 302: a tensor's shape differs
        CHECK(e.kind() == "schema");
        // The first line names the first field that differs and both shapes ([out, in], as
        // torch.nn.Linear stores a weight); the rest of the message lists every other one.
        const std::string message = e.what();
        const std::string first_line = message.substr(0, message.find('\n'));
        CHECK(first_line == "[ckpt.schema.302] model.layers.0.weight: file has float 64x2 "
                            "(row-major), state expects float 32x2 (and 8 more:");
        CHECK(message == "[ckpt.schema.302] model.layers.0.weight: file has float 64x2 "
                         "(row-major), state expects float 32x2 (and 8 more:\n"
                         "  [ckpt.schema.302] model.layers.0.bias: file has float[64], state "
                         "expects float[32]\n"
                         "  [ckpt.schema.302] model.layers.1.weight: file has float 2x64 "
                         "(row-major), state expects float 2x32\n"
                         "  [ckpt.schema.302] optimizer.exp_avg.0.weight: file has float 64x2 "
                         "(row-major), state expects float 32x2\n"
                         "  [ckpt.schema.302] optimizer.exp_avg.0.bias: file has float[64], "
                         "state expects float[32]\n"
                         "  [ckpt.schema.302] optimizer.exp_avg.1.weight: file has float 2x64 "
                         "(row-major), state expects float 2x32\n"
                         "  [ckpt.schema.302] optimizer.exp_avg_sq.0.weight: file has float "
                         "64x2 (row-major), state expects float 32x2\n"
                         "  [ckpt.schema.302] optimizer.exp_avg_sq.0.bias: file has float[64], "
                         "state expects float[32]\n"
                         "  [ckpt.schema.302] optimizer.exp_avg_sq.1.weight: file has float "
                         "2x64 (row-major), state expects float 2x32)");
        // The same, as data: every problem with its id and path.
        REQUIRE(e.problems().size() == 9);
        CHECK(e.problems()[0].id == ckpt::errc::schema_mismatch);
        CHECK(e.problems()[0].path == "model.layers.0.weight");
        CHECK(e.problems()[0].text == "file has float 64x2 (row-major), state expects float 32x2");
        CHECK(e.problems()[8].path == "optimizer.exp_avg_sq.1.weight");
    }
    // All or nothing: not one weight, moment or counter of the state was touched.
    CHECK(changed == before);

    // Contrast with PyTorch: model.load_state_dict(checkpoint["model"]) raises
    //     RuntimeError: Error(s) in loading state_dict for MLP:
    //         size mismatch for layers.0.weight: copying a param with shape
    //         torch.Size([64, 2]) from checkpoint, the shape in current model is
    //         torch.Size([32, 2]).
    // which names the parameters too, but only after it has copied every parameter whose shape
    // did match (here layers.1.bias), so the model is left half loaded; and
    // optimizer.load_state_dict compares only the number of parameters, so Adam's mismatched
    // moments load silently and fail later, at the first optimizer.step().
}

} // namespace architecture_changed
