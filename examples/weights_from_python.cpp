// Weights trained in Python, into a C++ model: ckpt::import_safetensors reads the safetensors
// files PyTorch, Hugging Face and JAX write. The file here, tests/data/torch/mlp.F16.safetensors,
// is what these lines write (tests/python/write_torch_mlp.py writes the same bytes with the
// standard library alone, so that the tests need no torch):
//
//     model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
//     safetensors.torch.save_file(model.half().state_dict(), "mlp.F16.safetensors",
//                                 metadata={"format": "pt"})
//
// Its tensors are torch's: 0.weight [8, 4], 0.bias [8], 2.weight [3, 8], 2.bias [3], in F16.
#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#ifndef CKPT_TEST_DATA_DIR
#define CKPT_TEST_DATA_DIR "tests/data"
#endif

namespace weights_from_python {

TEST_CASE("a PyTorch model's half-precision weights, into ckpt::nn::mlp<float>") {
    const std::filesystem::path file =
        std::filesystem::path(CKPT_TEST_DATA_DIR) / "torch/mlp.F16.safetensors";

    // The same architecture as in Python. Its weights are replaced; everything else it holds
    // (sizes, activation) keeps its value.
    ckpt::nn::mlp<float> model({4, 8, 3}, ckpt::nn::activation::relu, /*seed=*/0);

    ckpt::import_options options;
    options.renames = {{"0", "layers.0"}, {"2", "layers.1"}}; // Sequential's 0 and 2: the Linears
    options.widen = true;                                     // F16 into float: exact
    options.xxh3_64 = 0xbb1df01c3c6024f0; // `xxhsum -H3 mlp.F16.safetensors`, when you have it
    const ckpt::import_report report = ckpt::import_safetensors(file, model, options);

    CHECK(model.layers()[0].weight(0, 0) == 0.1029052734375F); // torch's 0.weight[0][0]
    CHECK(model.layers()[1].bias(2) == -0.0421142578125F);     // torch's 2.bias[2]
    CHECK(report.converted.size() == 4);                       // every tensor, F16 to F32
    CHECK(report.inexact == 0);                                // widening is exact
    CHECK(report.metadata.at("format") == "pt");

    ckpt::nn::matrix<float> x(1, 4);
    x << 1, 2, 3, 4;
    MESSAGE("outputs: " << model.predict(x));

    // Without `widen` the dtypes differ, and the error says which option converts them.
    ckpt::nn::mlp<float> other({4, 8, 3}, ckpt::nn::activation::relu, 0);
    options.widen = false;
    try {
        ckpt::import_safetensors(file, other, options);
        FAIL("F16 weights were loaded into float without widen");
    } catch (const ckpt::schema_error& e) {
        CHECK(e.id() == ckpt::errc::schema_mismatch); // 302
        MESSAGE(std::string(e.what()));
    }
}

} // namespace weights_from_python
