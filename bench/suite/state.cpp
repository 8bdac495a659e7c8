#include "state.hpp"

#include <algorithm>
#include <cmath>

namespace bench {

namespace {

constexpr std::uint64_t seed = 0x9e3779b97f4a7c15ULL;

bool same_model(const model_params& a, const model_params& b) {
    if (a.embedding != b.embedding || a.projection != b.projection ||
        a.layers.size() != b.layers.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        if (a.layers[i].weight != b.layers[i].weight || a.layers[i].bias != b.layers[i].bias)
            return false;
    }
    return true;
}

} // namespace

void fill_random(float* p, Eigen::Index n, std::uint64_t& s) {
    for (Eigen::Index i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = static_cast<float>(static_cast<std::int32_t>(s >> 32)) * 0x1p-31f;
    }
}

state_shape shape_for(std::uint64_t target_mib) {
    const double params_bytes = static_cast<double>(target_mib) * mib / 3.0; // model, m, v
    state_shape s;
    s.layers = static_cast<std::size_t>(std::clamp<std::uint64_t>(2 * target_mib, 64, 512));
    const double per_layer = 0.1 * params_bytes / static_cast<double>(s.layers);
    s.dim = std::max<Eigen::Index>(1, static_cast<Eigen::Index>(std::sqrt(per_layer / 4.0)));
    const double small_bytes =
        static_cast<double>(s.layers) * 4.0 * static_cast<double>(s.dim * s.dim + s.dim);
    const double per_big = std::max(0.0, params_bytes - small_bytes) / 2.0;
    s.rows = std::max<Eigen::Index>(
        1, static_cast<Eigen::Index>(per_big / (4.0 * static_cast<double>(s.cols))));
    return s;
}

train_state make_state(const state_shape& s, bool with_values) {
    train_state st;
    const auto shape_model = [&](model_params& m) {
        m.embedding.resize(s.rows, s.cols);
        m.projection.resize(s.rows, s.cols);
        m.layers.resize(s.layers);
        for (linear_layer& l : m.layers) {
            l.weight.resize(s.dim, s.dim);
            l.bias.resize(s.dim);
        }
    };
    shape_model(st.model);
    shape_model(st.optimizer.exp_avg);
    shape_model(st.optimizer.exp_avg_sq);
    std::uint64_t x = seed;
    for_each_state_tensor(st, [&](auto& t) {
        if (with_values)
            fill_random(t.data(), t.size(), x);
        else
            t.setZero();
    });
    if (with_values) {
        st.optimizer.step = 4242;
        st.rng.seed(seed);
        st.rng.discard(1000);
        st.step = 4242;
        st.loss = 1.25f;
    } else {
        st.optimizer.lr = st.optimizer.beta1 = st.optimizer.beta2 = st.optimizer.eps = 0.0;
    }
    return st;
}

std::uint64_t param_count(const train_state& st) {
    std::uint64_t n = 0;
    for_each_tensor(st.model, [&](const auto& t) { n += static_cast<std::uint64_t>(t.size()); });
    return n;
}

std::uint64_t tensor_bytes(const train_state& st) {
    std::uint64_t n = 0;
    for_each_state_tensor(
        st, [&](const auto& t) { n += static_cast<std::uint64_t>(t.size()) * sizeof(float); });
    return n;
}

std::size_t tensor_count(const train_state& st) {
    return 3 * (2 + 2 * st.model.layers.size());
}

bool same_state(const train_state& a, const train_state& b) {
    const adam_state& x = a.optimizer;
    const adam_state& y = b.optimizer;
    return same_model(a.model, b.model) && same_model(x.exp_avg, y.exp_avg) &&
           same_model(x.exp_avg_sq, y.exp_avg_sq) && x.step == y.step && x.lr == y.lr &&
           x.beta1 == y.beta1 && x.beta2 == y.beta2 && x.eps == y.eps && a.rng == b.rng &&
           a.step == b.step && a.loss == b.loss;
}

} // namespace bench
