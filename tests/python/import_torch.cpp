// Imports the safetensors files write_torch_mlp.py wrote (a writer that shares no code with ckpt)
// into ckpt::nn::mlp, and checks that the imported model holds exactly the file's weights and
// gives exactly the outputs of an mlp built from those weights by hand, and the outputs Python
// computed to within rounding.
//
//     ckpt_import_torch DIR
//
// Every dtype into mlp<float> and mlp<double>: the same dtype as is, F16 and BF16 widened, F64
// into float narrowed (with the count of inexact values Python expects), and a dtype that needs a
// conversion refused without its option. Exits 0 when everything holds, 1 with what did not.
#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
    if (ok) return;
    ++failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
}

/// What write_torch_mlp.py wrote beside one file.
struct expectation {
    std::map<std::string, std::vector<double>> tensors;
    std::uint64_t inexact = 0;
    std::int64_t batch = 0;
    std::vector<double> inputs;
    std::vector<double> outputs;
};

expectation read_expectation(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    expectation e;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string kind;
        words >> kind;
        const auto values = [&](std::size_t n) {
            std::vector<double> v(n);
            for (double& x : v) words >> x;
            return v;
        };
        if (kind == "tensor") {
            std::string name;
            std::size_t n = 0;
            words >> name >> n;
            e.tensors[name] = values(n);
        } else if (kind == "inexact") {
            words >> e.inexact;
        } else {
            std::int64_t rows = 0;
            std::int64_t cols = 0;
            words >> rows >> cols;
            (kind == "inputs" ? e.inputs : e.outputs) =
                values(static_cast<std::size_t>(rows * cols));
            e.batch = rows;
        }
        if (!words) throw std::runtime_error("bad line in " + path.string() + ": " + kind);
    }
    return e;
}

template <class S>
ckpt::nn::matrix<S> as_matrix(const std::vector<double>& v, std::int64_t rows, std::int64_t cols) {
    ckpt::nn::matrix<S> m(rows, cols);
    for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<S>(v[i]);
    return m;
}

const std::vector<std::pair<std::string, std::string>> torch_to_mlp = {{"0", "layers.0"},
                                                                       {"2", "layers.1"}};

/// Imports `dtype`'s file into mlp<S> with `options` (renames added) and checks it.
template <class S>
void check_import(const std::filesystem::path& dir, const std::string& dtype,
                  ckpt::import_options options, const char* scalar) {
    const std::string what = "mlp." + dtype + " into mlp<" + scalar + ">";
    const expectation e = read_expectation(dir / ("mlp." + dtype + ".txt"));
    ckpt::nn::mlp<S> model({4, 8, 3}, ckpt::nn::activation::relu, 99); // other weights
    options.renames = torch_to_mlp;
    const ckpt::import_report r =
        ckpt::import_safetensors(dir / ("mlp." + dtype + ".safetensors"), model, options);

    // The weights, element by element ([out, in] row-major on both sides).
    ckpt::nn::mlp<S> by_hand({4, 8, 3}, ckpt::nn::activation::relu, 1);
    for (std::size_t i = 0; i < 2; ++i) {
        const std::string torch = std::to_string(2 * i);
        auto& layer = model.layers()[i];
        auto& hand = by_hand.layers()[i];
        const std::vector<double>& w = e.tensors.at(torch + ".weight");
        const std::vector<double>& b = e.tensors.at(torch + ".bias");
        hand.weight = as_matrix<S>(w, layer.weight.rows(), layer.weight.cols());
        hand.bias = as_matrix<S>(b, layer.bias.rows(), 1);
        expect(static_cast<std::size_t>(layer.weight.size()) == w.size(),
               what + ": layer " + std::to_string(i) + " weight size");
        for (Eigen::Index k = 0; k < layer.weight.size(); ++k) {
            expect(layer.weight.data()[k] == static_cast<S>(w[static_cast<std::size_t>(k)]),
                   what + ": " + torch + ".weight[" + std::to_string(k) + "]");
        }
        for (Eigen::Index k = 0; k < layer.bias.size(); ++k) {
            expect(layer.bias(k) == static_cast<S>(b[static_cast<std::size_t>(k)]),
                   what + ": " + torch + ".bias[" + std::to_string(k) + "]");
        }
    }
    // The same outputs as the model built by hand, bit for bit; and as Python's, to rounding.
    const ckpt::nn::matrix<S> x = as_matrix<S>(e.inputs, e.batch, 4);
    const ckpt::nn::matrix<S> y = model.predict(x);
    expect(y == by_hand.predict(x), what + ": outputs differ from the model built by hand");
    const double tolerance = std::is_same_v<S, float> ? 1e-5 : 1e-12;
    for (Eigen::Index k = 0; k < y.size(); ++k) {
        const double want = e.outputs[static_cast<std::size_t>(k)];
        const double got = static_cast<double>(y.data()[k]);
        expect(std::fabs(got - want) <= tolerance * (1.0 + std::fabs(want)),
               what + ": output " + std::to_string(k) + " is " + std::to_string(got) +
                   ", Python computed " + std::to_string(want));
    }
    // The report.
    expect(r.metadata == std::map<std::string, std::string>{{"format", "pt"}}, what + ": metadata");
    expect(r.renamed.size() == 4 && r.renamed[0].first == "0.bias" &&
               r.renamed[0].second == "layers.0.bias",
           what + ": renames reported");
    const bool converts = dtype != (std::is_same_v<S, float> ? "F32" : "F64");
    expect(r.converted.size() == (converts ? 4U : 0U), what + ": converted tensors");
    const std::uint64_t inexact = dtype == "F64" && std::is_same_v<S, float> ? e.inexact : 0;
    expect(r.inexact == inexact, what + ": " + std::to_string(r.inexact) +
                                     " inexact values, Python counted " + std::to_string(inexact));
    std::printf("%s: ok (%llu values converted inexactly)\n", what.c_str(),
                static_cast<unsigned long long>(r.inexact));
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: ckpt_import_torch DIR\n");
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    try {
        ckpt::import_options plain;
        ckpt::import_options widen;
        widen.widen = true;
        ckpt::import_options narrow;
        narrow.narrow = true;
        check_import<float>(dir, "F32", plain, "float");
        check_import<float>(dir, "F16", widen, "float");
        check_import<float>(dir, "BF16", widen, "float");
        check_import<float>(dir, "F64", narrow, "float");
        check_import<double>(dir, "F64", plain, "double");
        check_import<double>(dir, "F32", widen, "double");
        check_import<double>(dir, "F16", widen, "double");
        check_import<double>(dir, "BF16", widen, "double");

        // Without its option a conversion is refused, naming the option, and the model keeps
        // its weights.
        ckpt::nn::mlp<float> model({4, 8, 3}, ckpt::nn::activation::relu, 99);
        const ckpt::nn::mlp<float> before = model;
        ckpt::import_options strict;
        strict.renames = torch_to_mlp;
        try {
            (void)ckpt::import_safetensors(dir / "mlp.F16.safetensors", model, strict);
            expect(false, "F16 into mlp<float> without widen was accepted");
        } catch (const ckpt::schema_error& err) {
            const std::string text = err.what();
            expect(err.id() == ckpt::errc::schema_mismatch &&
                       text.find("layers.0.weight: file has half 8x4 (row-major), state expects "
                                 "float 8x4 (import_options::widen converts it)") !=
                           std::string::npos,
                   "F16 without widen: " + text);
        }
        expect(model == before, "a refused import changed the model");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "FAILED: %s\n", e.what());
        return 1;
    }
    if (failures != 0) return 1;
    std::printf("all imports match\n");
    return 0;
}
