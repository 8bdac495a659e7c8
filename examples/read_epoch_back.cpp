// Reading the epoch (and the step, the metrics, the tags) back from a checkpoint.
//
// The tutorial's PyTorch version keeps the epoch inside the pickled dictionary:
//     checkpoint = torch.load('checkpoint.pth'); epoch = checkpoint['epoch']
// With ckpt it is part of the checkpoint's metadata: ckpt::load returns it along with the state,
// and ckpt::inspect reads it (from the header alone) without knowing the state's type, as a
// script choosing which checkpoint to resume or to deploy would.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>

namespace read_epoch_back {

using state_t = ckpt::nn::train_state<float>;

state_t fresh_state() {
    state_t s;
    s.model = ckpt::nn::mlp<float>({2, 64, 2}, ckpt::nn::activation::tanh, 1);
    s.optimizer = ckpt::nn::adam<float>(s.model, {.lr = 1e-2});
    s.sampler = ckpt::nn::sampler(400, 50, 2); // 8 batches an epoch
    s.rng.seed(3);
    return s;
}

TEST_CASE("the epoch, step, metrics and tags come back with ckpt::load and ckpt::inspect") {
    const std::filesystem::path dir = "example-read-epoch-back";
    std::filesystem::create_directories(dir);
    const auto train = ckpt::nn::two_spirals<float>(200, 0.02, 4);
    const auto validation = ckpt::nn::two_spirals<float>(100, 0.02, 5);

    state_t state = fresh_state();
    const std::int64_t epochs = 3;
    for (std::int64_t epoch = 1; epoch <= epochs; ++epoch) {
        for (std::int64_t b = 0; b < state.sampler.batches_per_epoch(); ++b) {
            ckpt::nn::train_step(state, train);
        }
    }
    const double val_loss = ckpt::nn::evaluate(state.model, validation);
    const double val_accuracy = ckpt::nn::accuracy(state.model, validation);

    // Record what a reader will want without loading the state: here, completed epochs.
    ckpt::save(dir / "epoch-3.ckpt", state,
               {.step = state.step,
                .epoch = epochs,
                .metrics = {{"val_loss", val_loss}, {"val_accuracy", val_accuracy}},
                .tags = {{"model", "mlp 2-64-2 tanh"}, {"optimizer", "adam lr=0.01"}}});

    SUBCASE("ckpt::load: the state, and the metadata as its return value") {
        state_t resumed; // empty: a new process
        const ckpt::metadata meta = ckpt::load(dir / "epoch-3.ckpt", resumed);
        MESSAGE("resuming after epoch " << meta.epoch << ", step " << meta.step << ", val_loss "
                                        << meta.metrics.at("val_loss"));
        CHECK(meta.epoch == 3);
        CHECK(meta.step == 24); // 3 epochs of 8 batches
        // Doubles are stored as the shortest text that reads back as the same double: exact.
        CHECK(meta.metrics.at("val_loss") == val_loss);
        CHECK(meta.metrics.at("val_accuracy") == val_accuracy);
        CHECK(meta.tags.at("optimizer") == "adam lr=0.01");
        CHECK(meta.time.time_since_epoch().count() != 0); // save() stamps the wall clock

        CHECK(resumed == state);
        // The next epoch to run is meta.epoch + 1: the sampler stands at the end of epoch 3
        // (its epochs count from 0), and its next batch is the first of the fourth.
        CHECK(resumed.sampler.epoch() == 2);
        CHECK(resumed.sampler.cursor() == 400);
        ckpt::nn::train_step(resumed, train);
        CHECK(resumed.sampler.epoch() == 3);
    }

    SUBCASE("ckpt::inspect: the same metadata, without the state's type") {
        const ckpt::info info = ckpt::inspect(dir / "epoch-3.ckpt");
        CHECK(info.meta.epoch == 3);
        CHECK(info.meta.step == 24);
        CHECK(info.meta.metrics.at("val_loss") == val_loss);
        CHECK(info.meta.tags.at("model") == "mlp 2-64-2 tanh");
        // inspect reads the header only; inspect_options{.verify = true} reads and checks it all.
        CHECK(!info.checksum_verified);

        // The header as any safetensors reader sees it: the metadata as strings, and the tensors.
        CHECK(info.raw_metadata.at("ckpt.epoch") == "3");
        CHECK(info.raw_metadata.at("ckpt.step") == "24");
        CHECK(info.raw_metadata.at("tag.optimizer") == "adam lr=0.01");
        CHECK(info.raw_metadata.count("metric.val_loss") == 1);
        // 4 model tensors, Adam's two moments of each, and the loss history (losses)
        REQUIRE(info.tensors.size() == 13);
        std::ostringstream listing;
        for (const ckpt::tensor_info& t : info.tensors) {
            listing << "\n  " << t.name << " " << ckpt::to_string(t.type) << " [";
            for (std::size_t i = 0; i < t.shape.size(); ++i) {
                listing << (i > 0 ? ", " : "") << t.shape[i];
            }
            listing << "]";
        }
        MESSAGE("epoch " << info.meta.epoch << ", step " << info.meta.step << ", "
                         << info.file_bytes << " bytes, tensors:" << listing.str());
        bool found = false;
        for (const ckpt::tensor_info& t : info.tensors) {
            if (t.name != "model.layers.0.weight") continue;
            found = true;
            CHECK(t.type == ckpt::dtype::f32);
            CHECK(t.shape == std::vector<std::uint64_t>{64, 2}); // [out, in], as torch.nn.Linear
        }
        CHECK(found);
    }
}

} // namespace read_epoch_back
