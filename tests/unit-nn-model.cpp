// ckpt::nn's model and data: backward against finite differences, a forward by hand, the
// [out, in] weight layout (in memory and in a checkpoint), He and Xavier initialization, the
// losses, the synthetic data sets, and the resumable sampler.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

namespace nn = ckpt::nn;

template <class S>
nn::matrix<S> rows(std::initializer_list<std::initializer_list<double>> values) {
    nn::matrix<S> m(static_cast<Eigen::Index>(values.size()),
                    static_cast<Eigen::Index>(values.begin()->size()));
    Eigen::Index i = 0;
    for (const auto& r : values) {
        Eigen::Index j = 0;
        for (const double v : r) m(i, j++) = static_cast<S>(v);
        ++i;
    }
    return m;
}

/// The 2-2-1 net of the hand computation: W1 = [[1, 2], [3, 4]], b1 = [0.5, -1],
/// W2 = [[1, -1]], b2 = [0.25]. W1 is not symmetric, so an [in, out] reading would show.
template <class S>
nn::mlp<S> hand_net(nn::activation act) {
    nn::mlp<S> net({2, 2, 1}, act, 1);
    net.layers()[0].weight = rows<S>({{1, 2}, {3, 4}});
    net.layers()[0].bias = rows<S>({{0.5}, {-1}});
    net.layers()[1].weight = rows<S>({{1, -1}});
    net.layers()[1].bias = rows<S>({{0.25}});
    return net;
}

/// Every parameter of `net` in a fixed order (layer, weight row-major, then bias).
std::vector<double*> parameters(nn::mlp<double>& net) {
    std::vector<double*> out;
    for (auto& l : net.layers()) {
        for (Eigen::Index k = 0; k < l.weight.size(); ++k) out.push_back(l.weight.data() + k);
        for (Eigen::Index k = 0; k < l.bias.size(); ++k) out.push_back(l.bias.data() + k);
    }
    return out;
}

std::vector<double> flatten(const std::vector<nn::linear<double>>& grads) {
    std::vector<double> out;
    for (const auto& l : grads) {
        out.insert(out.end(), l.weight.data(), l.weight.data() + l.weight.size());
        out.insert(out.end(), l.bias.data(), l.bias.data() + l.bias.size());
    }
    return out;
}

struct fd_problem {
    nn::matrix<double> x;
    nn::matrix<double> target;        // MSE
    std::vector<std::int32_t> labels; // cross-entropy
    bool cross_entropy = false;
};

/// The loss of `net` on `p`, and the signs of its hidden pre-activations (the relu pattern).
std::pair<double, std::vector<bool>> loss_of(const nn::mlp<double>& net, const fd_problem& p) {
    nn::forward_cache<double> cache;
    const nn::matrix<double> out = net.forward(p.x, cache);
    std::vector<bool> pattern;
    for (std::size_t i = 0; i + 1 < cache.pre.size(); ++i) {
        for (Eigen::Index k = 0; k < cache.pre[i].size(); ++k)
            pattern.push_back(cache.pre[i].data()[k] > 0);
    }
    const double loss = p.cross_entropy ? nn::cross_entropy_loss(out, p.labels).first
                                        : nn::mse_loss(out, p.target).first;
    return {loss, pattern};
}

/// The largest relative error between backward() and a fourth-order central difference
/// (8 (f(h) - f(-h)) - (f(2h) - f(-2h))) / 12h, over every parameter of `net`.
double max_relative_error(nn::mlp<double> net, const fd_problem& p) {
    nn::forward_cache<double> cache;
    const nn::matrix<double> out = net.forward(p.x, cache);
    const nn::matrix<double> d_out = p.cross_entropy ? nn::cross_entropy_loss(out, p.labels).second
                                                     : nn::mse_loss(out, p.target).second;
    const std::vector<double> analytic = flatten(net.backward(cache, d_out));
    const std::vector<bool> pattern = loss_of(net, p).second;

    // h = 1e-3: truncation ~h^4 = 1e-12, rounding ~eps / h = 2e-13, both far below 1e-6 of the
    // gradients here (the smallest non-zero one is ~1e-4).
    constexpr double h = 1e-3;
    const std::vector<double*> params = parameters(net);
    REQUIRE(params.size() == analytic.size());
    double worst = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
        const double saved = *params[i];
        double f[4];
        const double offsets[4] = {-2 * h, -h, h, 2 * h};
        for (int k = 0; k < 4; ++k) {
            *params[i] = saved + offsets[k];
            const auto [loss, pat] = loss_of(net, p);
            // A relu kink inside the stencil would make the difference meaningless.
            REQUIRE(pat == pattern);
            f[k] = loss;
        }
        *params[i] = saved;
        // Differences first, so an unchanged loss gives exactly 0.
        const double numeric = (8 * (f[2] - f[1]) - (f[3] - f[0])) / (12 * h);
        const double scale = std::max(std::abs(analytic[i]), std::abs(numeric));
        if (scale == 0) continue; // a dead relu unit: both exactly 0
        worst = std::max(worst, std::abs(analytic[i] - numeric) / scale);
    }
    return worst;
}

fd_problem make_problem(bool cross_entropy) {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> n01(0.0, 1.0);
    fd_problem p;
    p.x.resize(6, 3);
    for (Eigen::Index k = 0; k < p.x.size(); ++k) p.x.data()[k] = n01(rng);
    p.cross_entropy = cross_entropy;
    if (cross_entropy) {
        p.labels = {0, 1, 1, 0, 1, 0};
    } else {
        p.target.resize(6, 2);
        for (Eigen::Index k = 0; k < p.target.size(); ++k) p.target.data()[k] = n01(rng);
    }
    return p;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("backward matches central finite differences for every parameter of a 3-5-4-2 net") {
    for (const auto act : {nn::activation::relu, nn::activation::tanh, nn::activation::identity}) {
        for (const bool ce : {false, true}) {
            CAPTURE(static_cast<int>(act));
            CAPTURE(ce);
            const nn::mlp<double> net({3, 5, 4, 2}, act, 2024);
            const fd_problem p = make_problem(ce);
            CHECK(max_relative_error(net, p) < 1e-6);
        }
    }
}

TEST_CASE("backward's gradients have the parameters' shapes and sum the batch") {
    const nn::mlp<double> net({3, 5, 4, 2}, nn::activation::tanh, 3);
    const fd_problem p = make_problem(false);
    nn::forward_cache<double> cache;
    const nn::matrix<double> out = net.forward(p.x, cache);
    const auto grads = net.backward(cache, nn::mse_loss(out, p.target).second);
    REQUIRE(grads.size() == 3);
    for (std::size_t i = 0; i < grads.size(); ++i) {
        CHECK(grads[i].weight.rows() == net.layers()[i].weight.rows());
        CHECK(grads[i].weight.cols() == net.layers()[i].weight.cols());
        CHECK(grads[i].bias.size() == net.layers()[i].bias.size());
    }
    // The output layer's bias gradient is d_out summed over the batch.
    const nn::matrix<double> d_out = nn::mse_loss(out, p.target).second;
    CHECK(test::bits_equal(grads[2].bias, nn::vector<double>(d_out.colwise().sum().transpose())));
}

// ---------------------------------------------------------------------------------------------
// Forward and layout

TEST_CASE_TEMPLATE("a hand-computed 2-2-1 net: forward gives the exact numbers", S, float, double) {
    // x = [2, 1]: z1 = [1*2 + 2*1 + 0.5, 3*2 + 4*1 - 1] = [4.5, 9]
    // x = [1, -1]: z1 = [1 - 2 + 0.5, 3 - 4 - 1] = [-0.5, -2]
    const nn::matrix<S> x = rows<S>({{2, 1}, {1, -1}});

    // relu: [4.5, 9] -> 4.5 - 9 + 0.25 = -4.25; [0, 0] -> 0.25
    const nn::matrix<S> relu = hand_net<S>(nn::activation::relu).predict(x);
    REQUIRE(relu.rows() == 2);
    REQUIRE(relu.cols() == 1);
    CHECK(relu(0, 0) == S(-4.25));
    CHECK(relu(1, 0) == S(0.25));

    // identity: -0.5 + 2 + 0.25 = 1.75
    const nn::matrix<S> id = hand_net<S>(nn::activation::identity).predict(x);
    CHECK(id(0, 0) == S(-4.25));
    CHECK(id(1, 0) == S(1.75));

    // tanh: tanh(4.5) - tanh(9) + 0.25; Eigen's vectorized float tanh is an approximation, so a
    // few ulp of tolerance.
    const nn::matrix<S> th = hand_net<S>(nn::activation::tanh).predict(x);
    const double eps = std::is_same_v<S, float> ? 1e-6 : 1e-15;
    CHECK(th(0, 0) == doctest::Approx(std::tanh(4.5) - std::tanh(9.0) + 0.25).epsilon(eps));
    CHECK(th(1, 0) == doctest::Approx(std::tanh(-0.5) - std::tanh(-2.0) + 0.25).epsilon(eps));

    // forward() keeps each layer's input and pre-activation.
    nn::forward_cache<S> cache;
    hand_net<S>(nn::activation::relu).forward(x, cache);
    REQUIRE(cache.pre.size() == 2);
    CHECK(cache.pre[0] == rows<S>({{4.5, 9}, {-0.5, -2}}));
    CHECK(cache.inputs[1] == rows<S>({{4.5, 9}, {0, 0}}));
}

TEST_CASE_TEMPLATE("weights are [out, in] row-major, in memory and in a checkpoint", S, float,
                   double) {
    const nn::mlp<S> net({3, 5, 2}, nn::activation::relu, 4);
    REQUIRE(net.layers().size() == 2);
    CHECK(net.layers()[0].weight.rows() == 5);
    CHECK(net.layers()[0].weight.cols() == 3);
    CHECK(net.layers()[0].bias.size() == 5);
    CHECK(net.layers()[1].weight.rows() == 2);
    CHECK(net.layers()[1].weight.cols() == 5);
    CHECK(nn::matrix<S>::IsRowMajor);
    CHECK(net.sizes() == std::vector<std::int64_t>{3, 5, 2});
    CHECK(net.hidden_activation() == nn::activation::relu);

    // torch.nn.Linear(3, 5).weight is [5, 3]: the file shows the same shape, row-major.
    const auto dir = test::scratch("nn-layout");
    nn::train_state<S> state;
    state.model = net;
    state.optimizer = nn::adam<S>(net, {});
    ckpt::save(dir / "s.ckpt", state);
    const ckpt::info info = ckpt::inspect(dir / "s.ckpt");
    const auto find = [&](const std::string& name) -> const ckpt::tensor_info* {
        for (const auto& t : info.tensors)
            if (t.name == name) return &t;
        return nullptr;
    };
    const ckpt::dtype type = std::is_same_v<S, float> ? ckpt::dtype::f32 : ckpt::dtype::f64;
    const ckpt::tensor_info* w0 = find("model.layers.0.weight");
    REQUIRE(w0 != nullptr);
    CHECK(w0->shape == std::vector<std::uint64_t>{5, 3});
    CHECK(w0->type == type);
    CHECK(w0->order == 'R');
    CHECK(w0->bytes == 15 * sizeof(S));
    const ckpt::tensor_info* b0 = find("model.layers.0.bias");
    REQUIRE(b0 != nullptr);
    CHECK(b0->shape == std::vector<std::uint64_t>{5});
    const ckpt::tensor_info* w1 = find("model.layers.1.weight");
    REQUIRE(w1 != nullptr);
    CHECK(w1->shape == std::vector<std::uint64_t>{2, 5});
    const ckpt::tensor_info* m0 = find("optimizer.exp_avg.0.weight");
    REQUIRE(m0 != nullptr);
    CHECK(m0->shape == std::vector<std::uint64_t>{5, 3});

    // The file's bytes of layer 0 are the weights in row-major order: W[0,0], W[0,1], W[0,2], ...
    const auto file = test::read_file(dir / "s.ckpt");
    const std::size_t at = 8 + static_cast<std::size_t>(info.header_bytes + w0->offset);
    std::vector<S> stored(15);
    std::memcpy(stored.data(), file.data() + at, 15 * sizeof(S));
    for (Eigen::Index r = 0; r < 5; ++r)
        for (Eigen::Index c = 0; c < 3; ++c)
            CHECK(stored[static_cast<std::size_t>(r * 3 + c)] == net.layers()[0].weight(r, c));

    nn::train_state<S> loaded;
    ckpt::load(dir / "s.ckpt", loaded);
    CHECK(loaded.model == net);
}

TEST_CASE_TEMPLATE("a model saved on its own loads back", S, float, double) {
    // mlp's last field is its vector of layers, all tensors and no value bytes: a vector's count
    // must not be bounded by the value bytes alone (limit error 505 before 337ddab).
    const nn::mlp<S> net({3, 5, 2}, nn::activation::tanh, 4);
    nn::mlp<S> loaded;
    const std::string error =
        test::error_text([&] { ckpt::load_from_memory(test::state_bytes(net), loaded); });
    CHECK(error == "");
    CHECK(loaded == net);
}

// ---------------------------------------------------------------------------------------------
// Initialization

TEST_CASE_TEMPLATE("He initialization for relu: zero mean, std sqrt(2 / fan_in), zero bias", S,
                   float, double) {
    // 500 x 1000 = 5e5 draws: the sample std's relative standard error is 1/sqrt(2n) = 1e-3 and
    // the mean's is 1/sqrt(n) = 1.4e-3 of sigma; 5 standard errors give 0.5% and 0.7%.
    const nn::mlp<S> net({1000, 500}, nn::activation::relu, 17);
    const auto& w = net.layers()[0].weight;
    const double n = static_cast<double>(w.size());
    double sum = 0;
    double sq = 0;
    for (Eigen::Index k = 0; k < w.size(); ++k) {
        sum += static_cast<double>(w.data()[k]);
        sq += static_cast<double>(w.data()[k]) * static_cast<double>(w.data()[k]);
    }
    const double mean = sum / n;
    const double sd = std::sqrt(sq / n - mean * mean);
    const double sigma = std::sqrt(2.0 / 1000.0);
    CHECK(std::abs(mean) < 5 * sigma / std::sqrt(n));
    CHECK(sd == doctest::Approx(sigma).epsilon(5e-3));
    CHECK(net.layers()[0].bias == nn::vector<S>::Zero(500));
    // Unbounded, unlike Xavier's uniform: some draws are beyond 4 sigma (expected ~32 of 5e5).
    CHECK(w.cwiseAbs().maxCoeff() > S(4 * sigma));
}

TEST_CASE_TEMPLATE("Xavier (Glorot uniform) initialization for tanh and identity", S, float,
                   double) {
    for (const auto act : {nn::activation::tanh, nn::activation::identity}) {
        const nn::mlp<S> net({300, 200, 10}, act, 5);
        for (const auto& l : net.layers()) {
            const double in = static_cast<double>(l.weight.cols());
            const double out = static_cast<double>(l.weight.rows());
            const double a = std::sqrt(6.0 / (in + out));
            const double largest = static_cast<double>(l.weight.cwiseAbs().maxCoeff());
            CHECK(largest <= a);
            // The bound is reached: with >= 2000 uniform draws the largest is within 1% of it.
            CHECK(largest > 0.99 * a);
            CHECK(l.bias == nn::vector<S>::Zero(l.bias.size()));
        }
    }
}

TEST_CASE_TEMPLATE("the same seed gives the same weights, another seed other ones", S, float,
                   double) {
    for (const auto act : {nn::activation::relu, nn::activation::tanh}) {
        const nn::mlp<S> a({4, 8, 3}, act, 42);
        const nn::mlp<S> b({4, 8, 3}, act, 42);
        const nn::mlp<S> c({4, 8, 3}, act, 43);
        CHECK(a == b);
        for (std::size_t i = 0; i < a.layers().size(); ++i) {
            CHECK(test::bits_equal(a.layers()[i].weight, b.layers()[i].weight));
            CHECK_FALSE(a.layers()[i].weight == c.layers()[i].weight);
        }
        CHECK_FALSE(a == c);
    }
}

TEST_CASE("mlp rejects fewer than two sizes and non-positive sizes") {
    CHECK(test::error_id([] { nn::mlp<double>({3}, nn::activation::relu, 0); }) ==
          ckpt::errc::usage_argument);
    CHECK(test::error_id([] {
              nn::mlp<double>({3, 0, 2}, nn::activation::relu, 0);
          }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] {
              nn::mlp<float>({-1, 2}, nn::activation::tanh, 0);
          }) == ckpt::errc::usage_argument);
}

// ---------------------------------------------------------------------------------------------
// Losses

TEST_CASE_TEMPLATE("cross_entropy_loss: a 2x3 example by hand, and its gradient", S, float,
                   double) {
    // Row 0, label 2: log(e^1 + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2) = 0.4076059644443804
    // Row 1, label 0: log(3 e^1) - 1 = log 3 = 1.0986122886681098; mean 0.7531091265562451
    const nn::matrix<S> logits = rows<S>({{1, 2, 3}, {1, 1, 1}});
    const auto [loss, grad] = nn::cross_entropy_loss(logits, {2, 0});
    const double eps = std::is_same_v<S, float> ? 1e-6 : 1e-15;
    CHECK(static_cast<double>(loss) == doctest::Approx(0.7531091265562451).epsilon(eps));
    CHECK(static_cast<double>(loss) ==
          doctest::Approx((std::log(1 + std::exp(-1.0) + std::exp(-2.0)) + std::log(3.0)) / 2)
              .epsilon(eps));
    // d loss / d logits = (softmax - one_hot) / batch
    const double z = 1 + std::exp(1.0) + std::exp(2.0);
    const double expected[2][3] = {{1 / z / 2, std::exp(1.0) / z / 2, (std::exp(2.0) / z - 1) / 2},
                                   {(1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6}};
    for (Eigen::Index i = 0; i < 2; ++i)
        for (Eigen::Index j = 0; j < 3; ++j)
            CHECK(static_cast<double>(grad(i, j)) == doctest::Approx(expected[i][j]).epsilon(eps));
    // Each row of the gradient sums to zero.
    CHECK(std::abs(static_cast<double>(grad.row(0).sum())) < 10 * eps);
}

TEST_CASE_TEMPLATE("cross_entropy_loss is finite and right for logits of 1000", S, float, double) {
    const nn::matrix<S> logits = rows<S>({{1000, 0, -1000}, {1000, 1000, 1000}});
    const auto [loss, grad] = nn::cross_entropy_loss(logits, {1, 2});
    CHECK(std::isfinite(loss));
    CHECK(grad.allFinite());
    // Row 0: log(e^1000 + 1 + e^-1000) - 0 = 1000 (+ e^-1000); row 1: log 3.
    CHECK(static_cast<double>(loss) == doctest::Approx((1000 + std::log(3.0)) / 2));
    CHECK(grad(0, 0) == S(0.5));
    CHECK(grad(0, 1) == S(-0.5));
    CHECK(grad(0, 2) == S(0));
    // The right label with a margin of 2000: loss exactly 0, gradient 0 up to a subnormal
    // (Eigen's vectorized exp clamps its argument, so exp(-2000) is ~5e-309, not 0).
    const auto [easy, easy_grad] = nn::cross_entropy_loss(rows<S>({{1000, -1000}}), {0});
    CHECK(easy == S(0));
    CHECK(easy_grad(0, 0) == S(0));
    CHECK(std::abs(easy_grad(0, 1)) <= std::numeric_limits<S>::min());
}

TEST_CASE_TEMPLATE("mse_loss: mean of squares, gradient 2 (pred - target) / n", S, float, double) {
    const auto [loss, grad] = nn::mse_loss(rows<S>({{1, 2}, {3, 4}}), rows<S>({{0, 2}, {5, 4}}));
    CHECK(loss == S(1.25)); // (1 + 0 + 4 + 0) / 4
    CHECK(grad == rows<S>({{0.5, 0}, {-1, 0}}));
}

// ---------------------------------------------------------------------------------------------
// Data sets

TEST_CASE_TEMPLATE("two_spirals: shapes, labels, determinism per seed", S, float, double) {
    const auto d = nn::two_spirals<S>(50, 0.02, 3);
    CHECK(d.size() == 100);
    CHECK(d.inputs.rows() == 100);
    CHECK(d.inputs.cols() == 2);
    CHECK(d.targets.size() == 0);
    REQUIRE(d.labels.size() == 100);
    CHECK(std::count(d.labels.begin(), d.labels.end(), 0) == 50);
    CHECK(std::count(d.labels.begin(), d.labels.end(), 1) == 50);
    CHECK(std::is_sorted(d.labels.begin(), d.labels.end())); // class 0 first, then class 1
    // Every point is within 5 noise sigmas of its place on the spiral.
    constexpr double pi = 3.14159265358979323846;
    for (Eigen::Index row = 0; row < 100; ++row) {
        const double c = static_cast<double>(row / 50);
        const double r = static_cast<double>(row % 50) / 50.0 * 5.0 + 0.25;
        const double angle = 1.75 * r + c * pi;
        CHECK(std::abs(static_cast<double>(d.inputs(row, 0)) - r * std::cos(angle) / 5.25) < 0.1);
        CHECK(std::abs(static_cast<double>(d.inputs(row, 1)) - r * std::sin(angle) / 5.25) < 0.1);
    }

    const auto again = nn::two_spirals<S>(50, 0.02, 3);
    CHECK(test::bits_equal(d.inputs, again.inputs));
    CHECK(d.labels == again.labels);
    const auto other = nn::two_spirals<S>(50, 0.02, 4);
    CHECK_FALSE(d.inputs == other.inputs);
    CHECK(d.labels == other.labels);
}

TEST_CASE_TEMPLATE("noisy_sine: shapes, range, determinism per seed", S, float, double) {
    const auto d = nn::noisy_sine<S>(64, 0.1, 5);
    CHECK(d.size() == 64);
    CHECK(d.inputs.cols() == 1);
    CHECK(d.targets.rows() == 64);
    CHECK(d.targets.cols() == 1);
    CHECK(d.labels.empty());
    constexpr double pi = 3.14159265358979323846;
    for (Eigen::Index i = 0; i < 64; ++i) {
        const auto x = static_cast<double>(d.inputs(i, 0));
        CHECK(x >= -pi);
        CHECK(x <= pi);
        CHECK(std::abs(static_cast<double>(d.targets(i, 0)) - std::sin(x)) < 0.5); // 5 sigma
    }
    const auto again = nn::noisy_sine<S>(64, 0.1, 5);
    CHECK(test::bits_equal(d.inputs, again.inputs));
    CHECK(test::bits_equal(d.targets, again.targets));
    const auto other = nn::noisy_sine<S>(64, 0.1, 6);
    CHECK_FALSE(d.inputs == other.inputs);
    CHECK_FALSE(d.targets == other.targets);
}

TEST_CASE("dataset::batch picks the rows given, labels and targets with them") {
    const auto c = nn::two_spirals<double>(5, 0.01, 1);
    const auto b = c.batch({9, 0, 9});
    CHECK(b.inputs.rows() == 3);
    CHECK(b.inputs.row(0) == c.inputs.row(9));
    CHECK(b.inputs.row(1) == c.inputs.row(0));
    CHECK(b.labels == std::vector<std::int32_t>{1, 0, 1});
    const auto r = nn::noisy_sine<float>(8, 0.1, 1);
    const auto rb = r.batch({7, 2});
    CHECK(rb.targets.rows() == 2);
    CHECK(rb.targets(0, 0) == r.targets(7, 0));
    CHECK(rb.targets(1, 0) == r.targets(2, 0));
    CHECK(rb.labels.empty());
}

// ---------------------------------------------------------------------------------------------
// Sampler

namespace {

/// The order of an epoch, computed here as data.hpp documents it: Fisher-Yates with j = rng() % i
/// from mt19937_64(seed ^ (0x9E3779B97F4A7C15 * (epoch + 1))).
std::vector<std::int64_t> expected_order(std::int64_t size, std::uint64_t seed,
                                         std::int64_t epoch) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(size));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(epoch + 1)));
    for (std::size_t i = order.size(); i > 1; --i) {
        const auto j = static_cast<std::size_t>(rng() % i);
        std::swap(order[i - 1], order[j]);
    }
    return order;
}

std::vector<std::int64_t> next_epoch(nn::sampler& s) {
    std::vector<std::int64_t> all;
    for (std::int64_t b = 0; b < s.batches_per_epoch(); ++b) {
        const auto idx = s.next();
        all.insert(all.end(), idx.begin(), idx.end());
    }
    return all;
}

} // namespace

TEST_CASE("sampler visits every index once per epoch; the last batch is short") {
    nn::sampler s(10, 3, 7);
    CHECK(s.batches_per_epoch() == 4);
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
        std::vector<std::int64_t> seen;
        for (const std::size_t expected_size : {3U, 3U, 3U, 1U}) {
            const auto idx = s.next();
            CHECK(idx.size() == expected_size);
            CHECK(s.epoch() == epoch);
            seen.insert(seen.end(), idx.begin(), idx.end());
        }
        CHECK(s.cursor() == 10);
        std::sort(seen.begin(), seen.end());
        std::vector<std::int64_t> all(10);
        std::iota(all.begin(), all.end(), std::int64_t{0});
        CHECK(seen == all);
    }
    CHECK(nn::sampler(12, 3, 0).batches_per_epoch() == 4);
    CHECK(nn::sampler(1, 8, 0).next() == std::vector<std::int64_t>{0});
}

TEST_CASE("sampler order depends only on (seed, epoch)") {
    // The exact permutation of seed 7, epoch 0: the same on every standard library.
    CHECK(expected_order(10, 7, 0) == nn::sampler(10, 10, 7).next());
    nn::sampler by3(10, 3, 7);
    nn::sampler whole(10, 10, 7);
    nn::sampler other_seed(10, 3, 8);
    std::vector<std::vector<std::int64_t>> epochs;
    for (std::int64_t e = 0; e < 4; ++e) {
        const auto order = next_epoch(by3);
        CHECK(order == expected_order(10, 7, e));
        CHECK(order == whole.next()); // the batch size does not change the order
        CHECK(order != next_epoch(other_seed));
        epochs.push_back(order);
    }
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
    // A second sampler with the same seed repeats it.
    nn::sampler twin(10, 3, 7);
    for (std::int64_t e = 0; e < 4; ++e)
        CHECK(next_epoch(twin) == epochs[static_cast<std::size_t>(e)]);
}

TEST_CASE("sampler saved mid-epoch and loaded continues with exactly the next indices") {
    // 5 batches an epoch: 5, 5, 5, 5, 3.
    nn::sampler s(23, 5, 99);
    for (int i = 0; i < 7; ++i) s.next(); // epoch 1, cursor 10
    CHECK(s.epoch() == 1);
    CHECK(s.cursor() == 10);
    const auto bytes = test::state_bytes(s);

    nn::sampler loaded;
    ckpt::load_from_memory(bytes, loaded);
    CHECK(loaded == s);
    CHECK(loaded.epoch() == 1);
    CHECK(loaded.cursor() == 10);
    for (int i = 0; i < 12; ++i) {
        const auto want = s.next();
        const auto got = loaded.next();
        CHECK(got == want);
    }
    // Exactly the rest of epoch 1: its order from index 10 on.
    nn::sampler again;
    ckpt::load_from_memory(bytes, again);
    const auto order = expected_order(23, 99, 1);
    CHECK(again.next() == std::vector<std::int64_t>(order.begin() + 10, order.begin() + 15));
    CHECK(again.next() == std::vector<std::int64_t>(order.begin() + 15, order.begin() + 20));
    CHECK(again.next() == std::vector<std::int64_t>(order.begin() + 20, order.end()));
    const auto order2 = expected_order(23, 99, 2);
    CHECK(again.next() == std::vector<std::int64_t>(order2.begin(), order2.begin() + 5));

    // Saved at the very end of an epoch, it goes on with the next epoch's first batch.
    nn::sampler end(23, 5, 99);
    next_epoch(end);
    nn::sampler end_loaded;
    ckpt::load_from_memory(test::state_bytes(end), end_loaded);
    CHECK(end_loaded.cursor() == 23);
    const auto first = end_loaded.next();
    CHECK(end_loaded.epoch() == 1);
    CHECK(first == std::vector<std::int64_t>(order.begin(), order.begin() + 5));
}

TEST_CASE("sampler rejects a size or batch size that is not positive") {
    CHECK(test::error_id([] { nn::sampler(0, 3, 0); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { nn::sampler(10, 0, 0); }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([] { nn::sampler(-5, 2, 0); }) == ckpt::errc::usage_argument);
}
