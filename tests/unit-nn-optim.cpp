// ckpt::nn's optimizers against their formulas, step by step: Adam, Adam with L2 weight decay,
// AdamW (decoupled), AMSGrad, and SGD with momentum, dampening, Nesterov and weight decay. The
// reference is computed here, one scalar at a time, from the formulas in optim.hpp's comments,
// with the constants rounded once from double as torch rounds its Python floats.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace nn = ckpt::nn;

constexpr int n_steps = 5;

/// Gradients for the weight and the bias of a 1-1 net. The weight's shrink after step 3, so that
/// AMSGrad's running maximum parts from the second moment.
constexpr std::array<double, n_steps> weight_grads = {0.3, -1.7, 2.5, 0.04, -0.01};
constexpr std::array<double, n_steps> bias_grads = {-0.9, 0.6, 1.3, -0.02, 0.7};

/// A 1-1 net with known parameters: one scalar weight and one scalar bias.
template <class S>
nn::mlp<S> scalar_net() {
    nn::mlp<S> net({1, 1}, nn::activation::identity, 1);
    net.layers()[0].weight(0, 0) = S(0.75);
    net.layers()[0].bias(0) = S(-0.25);
    return net;
}

template <class S>
std::vector<nn::linear<S>> grads_at(int step) {
    nn::linear<S> g;
    g.weight = nn::matrix<S>::Constant(1, 1, S(weight_grads[static_cast<std::size_t>(step)]));
    g.bias = nn::vector<S>::Constant(1, S(bias_grads[static_cast<std::size_t>(step)]));
    return {g};
}

/// How the two three-operand products of Adam's update are rounded. `formula` reads optim.hpp's
/// comment left to right, (1 - beta2) * g * g and step_size * m / denom, which is also how torch's
/// CPU kernels evaluate addcmul_ (self + value * t1 * t2) and addcdiv_ (self + value * t1 / t2).
/// `library` groups them as optim.hpp's code does today: (1 - beta2) * (g * g) and
/// step_size * (m / denom).
enum class grouping { formula, library };

/// One scalar parameter under Adam, as optim.hpp's comment writes it.
template <class S>
struct adam_reference {
    nn::adam_options o;
    S p;
    S m = 0;
    S v = 0;
    S vmax = 0;
    std::int64_t t = 0;
    grouping order = grouping::formula;

    void step(S g) {
        ++t;
        const auto td = static_cast<double>(t);
        if (o.weight_decay != 0) {
            if (o.decoupled) {
                p = p * S(1 - o.lr * o.weight_decay);
            } else {
                g = g + S(o.weight_decay) * p;
            }
        }
        m = m + S(1 - o.beta1) * (g - m);
        v = order == grouping::formula ? S(o.beta2) * v + S(1 - o.beta2) * g * g
                                       : S(o.beta2) * v + S(1 - o.beta2) * (g * g);
        if (o.amsgrad) vmax = std::max(vmax, v);
        const S second = o.amsgrad ? vmax : v;
        const S denom = std::sqrt(second) / S(std::sqrt(1 - std::pow(o.beta2, td))) + S(o.eps);
        const S step_size = S(o.lr / (1 - std::pow(o.beta1, td)));
        p = order == grouping::formula ? p - step_size * m / denom : p - step_size * (m / denom);
    }
};

/// One scalar parameter under SGD, as optim.hpp's comment writes it.
template <class S>
struct sgd_reference {
    nn::sgd_options o;
    S p;
    S b = 0;
    std::int64_t t = 0;

    void step(S g) {
        if (o.weight_decay != 0) g = g + S(o.weight_decay) * p;
        if (o.momentum != 0) {
            b = t == 0 ? g : S(o.momentum) * b + S(1 - o.dampening) * g;
            g = o.nesterov ? g + S(o.momentum) * b : b;
        }
        p = p - S(o.lr) * g;
        ++t;
    }
};

struct adam_case {
    const char* name;
    nn::adam_options options;
};

const std::vector<adam_case>& adam_cases() {
    static const std::vector<adam_case> cases = {
        {"Adam", {.lr = 0.01}},
        {"Adam, other betas and eps", {.lr = 0.05, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-3}},
        {"Adam, L2 weight decay", {.lr = 0.01, .weight_decay = 0.1}},
        {"AdamW", {.lr = 0.01, .weight_decay = 0.1, .decoupled = true}},
        {"AMSGrad", {.lr = 0.01, .amsgrad = true}},
        {"AMSGrad + AdamW", {.lr = 0.01, .weight_decay = 0.1, .decoupled = true, .amsgrad = true}},
    };
    return cases;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Adam

namespace {

/// A value's exact bits, for messages: 0x1.e8p-6 and 0x1.e80001p-6 both print as 0.029791.
template <class S>
std::string hex(S x) {
    std::ostringstream os;
    os << std::hexfloat << x;
    return os.str();
}

#define CKPT_CHECK_SAME(got, want)                                                                 \
    CHECK_MESSAGE((got) == (want), "library " << hex(got) << ", reference " << hex(want))

/// The library's state of one scalar parameter: the weight (0) or the bias (1) of a 1-1 net.
template <class S>
adam_reference<S> state_of(const nn::mlp<S>& net, const nn::adam<S>& opt, int which,
                           grouping order) {
    const auto get = [which](const std::vector<nn::linear<S>>& v) {
        return which == 0 ? v[0].weight(0, 0) : v[0].bias(0);
    };
    adam_reference<S> r{opt.options(), get(net.layers())};
    r.m = get(opt.exp_avg());
    r.v = get(opt.exp_avg_sq());
    if (opt.options().amsgrad) r.vmax = get(opt.max_exp_avg_sq());
    r.t = opt.steps();
    r.order = order;
    return r;
}

template <class S>
bool same_state(const adam_reference<S>& a, const adam_reference<S>& b) {
    return a.p == b.p && a.m == b.m && a.v == b.v && a.vmax == b.vmax && a.t == b.t;
}

/// The 1-1 net through the fixed gradients, every step against a reference computed here from
/// the start, independently of the library.
template <class S>
void check_adam_steps() {
    for (const auto& c : adam_cases()) {
        CAPTURE(std::string(c.name));
        nn::mlp<S> net = scalar_net<S>();
        nn::adam<S> opt(net, c.options);
        CHECK(opt.options() == c.options);
        CHECK(opt.steps() == 0);
        CHECK(opt.max_exp_avg_sq().size() == (c.options.amsgrad ? 1U : 0U));
        adam_reference<S> w{c.options, S(0.75)};
        adam_reference<S> b{c.options, S(-0.25)};
        for (int t = 0; t < n_steps; ++t) {
            CAPTURE(t + 1);
            opt.step(net, grads_at<S>(t));
            w.step(S(weight_grads[static_cast<std::size_t>(t)]));
            b.step(S(bias_grads[static_cast<std::size_t>(t)]));

            CHECK(opt.steps() == t + 1);
            CKPT_CHECK_SAME(net.layers()[0].weight(0, 0), w.p);
            CKPT_CHECK_SAME(net.layers()[0].bias(0), b.p);
            CKPT_CHECK_SAME(opt.exp_avg()[0].weight(0, 0), w.m);
            CKPT_CHECK_SAME(opt.exp_avg()[0].bias(0), b.m);
            CKPT_CHECK_SAME(opt.exp_avg_sq()[0].weight(0, 0), w.v);
            CKPT_CHECK_SAME(opt.exp_avg_sq()[0].bias(0), b.v);
            if (c.options.amsgrad) {
                CKPT_CHECK_SAME(opt.max_exp_avg_sq()[0].weight(0, 0), w.vmax);
                CKPT_CHECK_SAME(opt.max_exp_avg_sq()[0].bias(0), b.vmax);
            }
        }
    }
}

/// The same cases, each step from the library's own state before it, accepting either grouping
/// of the two products: every other part of the update (L2, AdamW, AMSGrad, bias corrections,
/// the step count) must be exact.
template <class S>
void check_adam_steps_up_to_grouping() {
    for (const auto& c : adam_cases()) {
        CAPTURE(std::string(c.name));
        nn::mlp<S> net = scalar_net<S>();
        nn::adam<S> opt(net, c.options);
        for (int t = 0; t < n_steps; ++t) {
            CAPTURE(t + 1);
            const S g[2] = {S(weight_grads[static_cast<std::size_t>(t)]),
                            S(bias_grads[static_cast<std::size_t>(t)])};
            adam_reference<S> formula[2];
            adam_reference<S> library[2];
            for (int which = 0; which < 2; ++which) {
                formula[which] = state_of(net, opt, which, grouping::formula);
                library[which] = state_of(net, opt, which, grouping::library);
                formula[which].step(g[which]);
                library[which].step(g[which]);
            }
            opt.step(net, grads_at<S>(t));
            for (int which = 0; which < 2; ++which) {
                CAPTURE(which);
                const auto got = state_of(net, opt, which, grouping::formula);
                CHECK((same_state(got, formula[which]) || same_state(got, library[which])));
            }
        }
    }
}

struct rounding_count {
    int steps = 0;
    int v_differs = 0; ///< from the formula's v
    int p_differs = 0; ///< from the formula's p, where v agreed: the second product alone
    int neither = 0;   ///< steps that match neither grouping: another cause
};

/// Single Adam steps from random states, each compared from the library's own state before it,
/// so that one difference does not carry into the next step.
template <class S>
rounding_count count_rounding() {
    std::mt19937_64 rng(2718);
    std::normal_distribution<double> n01(0.0, 1.0);
    const nn::adam_options o{.lr = 0.01};
    rounding_count out;
    for (int run = 0; run < 1000; ++run) {
        nn::mlp<S> net = scalar_net<S>();
        net.layers()[0].weight(0, 0) = S(n01(rng));
        nn::adam<S> opt(net, o);
        for (int t = 0; t < n_steps; ++t) {
            auto formula = state_of(net, opt, 0, grouping::formula);
            auto library = state_of(net, opt, 0, grouping::library);
            const S g = S(n01(rng));
            opt.step(net, {{nn::matrix<S>::Constant(1, 1, g), nn::vector<S>::Zero(1)}});
            formula.step(g);
            library.step(g);
            const auto got = state_of(net, opt, 0, grouping::formula);
            ++out.steps;
            if (got.v != formula.v) {
                ++out.v_differs;
            } else if (got.p != formula.p) {
                ++out.p_differs;
            }
            if (!same_state(got, formula) && !same_state(got, library)) ++out.neither;
        }
    }
    return out;
}

} // namespace

TEST_CASE_TEMPLATE("adam matches optim.hpp's formula exactly, step by step, with its state", S,
                   float, double) {
    // FAILS today: optim.hpp:118 computes (1 - beta2) * (g * g) where the formula (and torch)
    // has ((1 - beta2) * g) * g; the L2 and other-betas cases round v differently within 5 steps.
    check_adam_steps<S>();
}

TEST_CASE_TEMPLATE("adam rounds v and p as the formula and torch's addcmul_ / addcdiv_ do", S,
                   float, double) {
    // FAILS today: ~15% of random steps round v differently (optim.hpp:118), and ~1% of the
    // others p (optim.hpp:121: step_size * (m / denom) for (step_size * m) / denom).
    const rounding_count c = count_rounding<S>();
    CHECK(c.steps == 5000);
    CHECK(c.v_differs == 0);
    CHECK(c.p_differs == 0);
    // Every step is one of the two groupings: the grouping is the only cause.
    CHECK(c.neither == 0);
}

TEST_CASE_TEMPLATE("adam: L2, AdamW, AMSGrad, bias corrections and step count are exact, "
                   "whichever grouping of the two products",
                   S, float, double) {
    check_adam_steps_up_to_grouping<S>();
}

TEST_CASE("adam's first step moves each parameter by lr against the gradient's sign") {
    // t = 1: m = (1 - beta1) g and sqrt(v / (1 - beta2)) = |g|, so the step is lr g / (|g| + eps).
    nn::mlp<double> net = scalar_net<double>();
    nn::adam<double> opt(net, {.lr = 0.01});
    opt.step(net, grads_at<double>(0));
    CHECK(net.layers()[0].weight(0, 0) ==
          doctest::Approx(0.75 - 0.01 * 0.3 / (0.3 + 1e-8)).epsilon(1e-15));
    CHECK(net.layers()[0].bias(0) ==
          doctest::Approx(-0.25 + 0.01 * 0.9 / (0.9 + 1e-8)).epsilon(1e-15));
}

TEST_CASE("amsgrad: max_exp_avg_sq is the running maximum, and the update uses it") {
    nn::mlp<double> plain_net = scalar_net<double>();
    nn::mlp<double> ams_net = scalar_net<double>();
    nn::adam<double> plain(plain_net, {.lr = 0.01});
    nn::adam<double> ams(ams_net, {.lr = 0.01, .amsgrad = true});
    double running_max = 0;
    for (int t = 0; t < n_steps; ++t) {
        CAPTURE(t + 1);
        plain.step(plain_net, grads_at<double>(t));
        ams.step(ams_net, grads_at<double>(t));
        const double v = ams.exp_avg_sq()[0].weight(0, 0);
        const double vmax = ams.max_exp_avg_sq()[0].weight(0, 0);
        // The moments themselves are Adam's; only the denominator differs.
        CHECK(ams.exp_avg()[0].weight(0, 0) == plain.exp_avg()[0].weight(0, 0));
        running_max = std::max(running_max, v);
        CHECK(vmax == running_max);
        if (t < 3) {
            // The weight's gradient grows for 3 steps: v grows, vmax = v, the same update.
            CHECK(vmax == v);
            CHECK(ams_net.layers()[0].weight(0, 0) == plain_net.layers()[0].weight(0, 0));
        } else {
            // Then it shrinks: v falls below its maximum, and the update divides by the maximum.
            CHECK(vmax > v);
            CHECK(ams_net.layers()[0].weight(0, 0) != plain_net.layers()[0].weight(0, 0));
        }
    }
}

TEST_CASE("L2 weight decay and AdamW's decoupled decay differ, and both differ from Adam") {
    auto run = [](nn::adam_options o) {
        nn::mlp<double> net = scalar_net<double>();
        nn::adam<double> opt(net, o);
        for (int t = 0; t < n_steps; ++t) opt.step(net, grads_at<double>(t));
        return net.layers()[0].weight(0, 0);
    };
    const double adam = run({.lr = 0.01});
    const double l2 = run({.lr = 0.01, .weight_decay = 0.1});
    const double adamw = run({.lr = 0.01, .weight_decay = 0.1, .decoupled = true});
    CHECK(adam != l2);
    CHECK(adam != adamw);
    CHECK(l2 != adamw);
    // `decoupled` without weight decay is plain Adam.
    CHECK(run({.lr = 0.01, .decoupled = true}) == adam);
}

TEST_CASE("AdamW with a zero gradient only decays the weight: p (1 - lr wd) per step") {
    nn::mlp<double> net = scalar_net<double>();
    nn::adam<double> opt(net, {.lr = 0.01, .weight_decay = 0.1, .decoupled = true});
    nn::linear<double> zero{nn::matrix<double>::Zero(1, 1), nn::vector<double>::Zero(1)};
    double expected = 0.75;
    for (int t = 0; t < n_steps; ++t) {
        opt.step(net, {zero});
        expected = expected * (1 - 0.01 * 0.1);
        CHECK(net.layers()[0].weight(0, 0) == expected); // m = 0: the Adam part adds 0 / eps
    }
}

TEST_CASE_TEMPLATE("adam updates every element of a deeper net as it updates a lone scalar", S,
                   float, double) {
    // Each element is its own scalar problem: every parameter of the 3-4-2 net ends where a 1-1
    // net's weight with the same start and gradients ends. FAILS for float today: optim.hpp:120's
    // cwiseSqrt() is Eigen's packet sqrt, which with Eigen 3.4's default EIGEN_FAST_MATH is
    // _mm_rsqrt_ps and one Newton step, not a correctly rounded sqrt; a lone scalar gets sqrt.
    nn::mlp<S> net({3, 4, 2}, nn::activation::tanh, 9);
    const nn::mlp<S> start = net;
    const nn::adam_options o{.lr = 0.02, .weight_decay = 0.05, .decoupled = true};
    nn::adam<S> opt(net, o);
    std::vector<nn::linear<S>> grads;
    for (const auto& l : net.layers()) {
        nn::linear<S> g{nn::matrix<S>(l.weight.rows(), l.weight.cols()),
                        nn::vector<S>(l.bias.size())};
        for (Eigen::Index k = 0; k < g.weight.size(); ++k)
            g.weight.data()[k] = S(0.1) * S(k + 1) * (k % 2 == 0 ? S(1) : S(-1));
        for (Eigen::Index k = 0; k < g.bias.size(); ++k) g.bias.data()[k] = S(0.3) - S(k);
        grads.push_back(g);
    }
    for (int t = 0; t < n_steps; ++t) opt.step(net, grads);
    for (std::size_t i = 0; i < net.layers().size(); ++i) {
        for (Eigen::Index k = 0; k < net.layers()[i].weight.size(); ++k) {
            nn::mlp<S> lone = scalar_net<S>();
            lone.layers()[0].weight(0, 0) = start.layers()[i].weight.data()[k];
            nn::adam<S> lone_opt(lone, o);
            const nn::linear<S> g{nn::matrix<S>::Constant(1, 1, grads[i].weight.data()[k]),
                                  nn::vector<S>::Zero(1)};
            for (int t = 0; t < n_steps; ++t) lone_opt.step(lone, {g});
            CKPT_CHECK_SAME(net.layers()[i].weight.data()[k], lone.layers()[0].weight(0, 0));
            CKPT_CHECK_SAME(opt.exp_avg_sq()[i].weight.data()[k],
                            lone_opt.exp_avg_sq()[0].weight(0, 0));
        }
    }
}

TEST_CASE_TEMPLATE("adam's update of an element does not depend on its place in the tensor", S,
                   float, double) {
    // Five equal weights with equal gradients move equally. FAILS for float today: Eigen computes
    // the first four (one SSE packet) with an approximate sqrt and the fifth with std::sqrt, so a
    // float run also differs between CPUs whose rsqrtps differ (Intel, AMD).
    nn::mlp<S> net({5, 1}, nn::activation::identity, 1);
    nn::mlp<S> one = scalar_net<S>();
    nn::adam<S> opt(net, {.lr = 0.01});
    nn::adam<S> opt_one(one, {.lr = 0.01});
    std::mt19937_64 rng(3);
    std::normal_distribution<double> n01(0.0, 1.0);
    int unequal = 0;
    for (int t = 0; t < 50; ++t) {
        // From 0 each step, so the update is the whole result and no rounding hides it.
        net.layers()[0].weight.setZero();
        one.layers()[0].weight.setZero();
        const S g = S(n01(rng));
        opt.step(net, {{nn::matrix<S>::Constant(1, 5, g), nn::vector<S>::Zero(1)}});
        opt_one.step(one, {{nn::matrix<S>::Constant(1, 1, g), nn::vector<S>::Zero(1)}});
        for (Eigen::Index k = 0; k < 5; ++k)
            unequal += net.layers()[0].weight(0, k) != one.layers()[0].weight(0, 0) ? 1 : 0;
    }
    CHECK(unequal == 0);
}

// ---------------------------------------------------------------------------------------------
// SGD

TEST_CASE_TEMPLATE("sgd matches its formula exactly, step by step, with its buffer", S, float,
                   double) {
    struct sgd_case {
        const char* name;
        nn::sgd_options options;
    };
    const std::vector<sgd_case> cases = {
        {"plain", {.lr = 0.1}},
        {"momentum", {.lr = 0.1, .momentum = 0.9}},
        {"momentum, dampening", {.lr = 0.1, .momentum = 0.9, .dampening = 0.3}},
        {"Nesterov", {.lr = 0.1, .momentum = 0.9, .nesterov = true}},
        {"weight decay", {.lr = 0.1, .weight_decay = 0.01}},
        {"momentum, weight decay", {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01}},
        {"Nesterov, weight decay",
         {.lr = 0.05, .momentum = 0.7, .weight_decay = 0.02, .nesterov = true}},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.name));
        nn::mlp<S> net = scalar_net<S>();
        nn::sgd<S> opt(net, c.options);
        REQUIRE(opt.momentum_buffer().size() == 1);
        sgd_reference<S> w{c.options, S(0.75)};
        sgd_reference<S> b{c.options, S(-0.25)};
        for (int t = 0; t < n_steps; ++t) {
            CAPTURE(t + 1);
            opt.step(net, grads_at<S>(t));
            w.step(S(weight_grads[static_cast<std::size_t>(t)]));
            b.step(S(bias_grads[static_cast<std::size_t>(t)]));
            CHECK(opt.steps() == t + 1);
            CHECK(net.layers()[0].weight(0, 0) == w.p);
            CHECK(net.layers()[0].bias(0) == b.p);
            if (c.options.momentum != 0) {
                CHECK(opt.momentum_buffer()[0].weight(0, 0) == w.b);
                CHECK(opt.momentum_buffer()[0].bias(0) == b.b);
            }
        }
    }
}

TEST_CASE("sgd's first step sets the buffer to the gradient, without dampening") {
    nn::mlp<double> net = scalar_net<double>();
    nn::sgd<double> opt(net, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
    opt.step(net, grads_at<double>(0));
    CHECK(opt.momentum_buffer()[0].weight(0, 0) == 0.3);
    CHECK(opt.momentum_buffer()[0].bias(0) == -0.9);
    CHECK(net.layers()[0].weight(0, 0) == 0.75 - 0.1 * 0.3);
    // The second step: b = 0.9 b + (1 - 0.5) g.
    opt.step(net, grads_at<double>(1));
    CHECK(opt.momentum_buffer()[0].weight(0, 0) == 0.9 * 0.3 + 0.5 * -1.7);
}

TEST_CASE("sgd's first Nesterov step is g + momentum * g") {
    nn::mlp<double> net = scalar_net<double>();
    nn::sgd<double> opt(net, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
    opt.step(net, grads_at<double>(0));
    CHECK(net.layers()[0].weight(0, 0) == 0.75 - 0.1 * (0.3 + 0.9 * 0.3));
}

TEST_CASE("sgd refuses Nesterov without momentum or with dampening: usage_error 601") {
    const nn::mlp<double> net = scalar_net<double>();
    CHECK_THROWS_AS(nn::sgd<double>(net, {.nesterov = true}), ckpt::usage_error);
    CHECK(test::error_id([&] { nn::sgd<double>(net, {.momentum = 0, .nesterov = true}); }) ==
          ckpt::errc::usage_argument);
    CHECK(test::error_id([&] { nn::sgd<double>(net, {.momentum = -0.5, .nesterov = true}); }) ==
          ckpt::errc::usage_argument);
    CHECK_THROWS_AS(nn::sgd<double>(net, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                    ckpt::usage_error);
    CHECK(test::error_text([&] {
              nn::sgd<double>(net, {.momentum = 0.9, .dampening = 0.1, .nesterov = true});
          }).find("Nesterov") != std::string::npos);
    // Valid settings do not throw.
    CHECK_NOTHROW(nn::sgd<double>(net, {.momentum = 0.9, .nesterov = true}));
    CHECK_NOTHROW(nn::sgd<double>(net, {.momentum = 0.9, .dampening = 0.1}));
}

// ---------------------------------------------------------------------------------------------
// State in a checkpoint

namespace {

/// An optimizer with a value after it, as in a train_state.
template <class Optimizer>
struct with_step {
    Optimizer optimizer;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(optimizer), CEREAL_NVP(step));
    }
};

} // namespace

TEST_CASE_TEMPLATE("optimizer state round-trips and continues exactly", S, float, double) {
    nn::mlp<S> net = scalar_net<S>();
    with_step<nn::adam<S>> adam{nn::adam<S>(net, {.lr = 0.01, .amsgrad = true}), 2};
    nn::mlp<S> sgd_net = scalar_net<S>();
    with_step<nn::sgd<S>> sgd{nn::sgd<S>(sgd_net, {.lr = 0.1, .momentum = 0.9, .nesterov = true}),
                              2};
    for (int t = 0; t < 2; ++t) {
        adam.optimizer.step(net, grads_at<S>(t));
        sgd.optimizer.step(sgd_net, grads_at<S>(t));
    }
    with_step<nn::adam<S>> adam_loaded;
    with_step<nn::sgd<S>> sgd_loaded;
    ckpt::load_from_memory(test::state_bytes(adam), adam_loaded);
    ckpt::load_from_memory(test::state_bytes(sgd), sgd_loaded);
    CHECK(adam_loaded.optimizer == adam.optimizer);
    CHECK(sgd_loaded.optimizer == sgd.optimizer);
    CHECK(adam_loaded.optimizer.steps() == 2);
    CHECK(adam_loaded.optimizer.options() == adam.optimizer.options());
    nn::mlp<S> net2 = net;
    nn::mlp<S> sgd_net2 = sgd_net;
    for (int t = 2; t < n_steps; ++t) {
        adam.optimizer.step(net, grads_at<S>(t));
        adam_loaded.optimizer.step(net2, grads_at<S>(t));
        sgd.optimizer.step(sgd_net, grads_at<S>(t));
        sgd_loaded.optimizer.step(sgd_net2, grads_at<S>(t));
    }
    CHECK(net2 == net);
    CHECK(adam_loaded.optimizer == adam.optimizer);
    CHECK(sgd_net2 == sgd_net);
    CHECK(sgd_loaded.optimizer == sgd.optimizer);
}

TEST_CASE_TEMPLATE("an optimizer saved on its own loads back", S, float, double) {
    // max_exp_avg_sq and momentum_buffer are the last fields, vectors of tensors only: a vector's
    // count must not be bounded by the value bytes alone (limit error 505 before 337ddab).
    nn::mlp<S> net = scalar_net<S>();
    const nn::adam<S> adam(net, {.lr = 0.01, .amsgrad = true});
    const nn::sgd<S> sgd(net, {.lr = 0.1, .momentum = 0.9});
    nn::adam<S> adam_loaded;
    nn::sgd<S> sgd_loaded;
    const std::string adam_error =
        test::error_text([&] { ckpt::load_from_memory(test::state_bytes(adam), adam_loaded); });
    CHECK(adam_error == "");
    const std::string sgd_error =
        test::error_text([&] { ckpt::load_from_memory(test::state_bytes(sgd), sgd_loaded); });
    CHECK(sgd_error == "");
    CHECK(adam_loaded == adam);
    CHECK(sgd_loaded == sgd);
}

#undef CKPT_CHECK_SAME
