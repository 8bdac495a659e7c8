#pragma once

// A data-parallel trainer for ckpt's built-in MLP: every rank holds the same model and Adam
// state, takes its slice of the same global batch, and the gradients are summed over the ranks
// in rank order (gathered, then added 0, 1, 2, ...), so the run does not depend on how the MPI
// library orders a reduction: a resumed run is bit-for-bit the run that never stopped.
// Used by examples/data_parallel.cpp and tools/mpi_crashtest.cpp.

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <cereal/types/vector.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace data_parallel {

using model_t = ckpt::nn::mlp<float>;
using adam_t = ckpt::nn::adam<float>;

/// A rank's whole training state. Everything is replicated (the same on every rank, written
/// once) except the input noise generator, which is each rank's own.
struct state {
    model_t model;
    adam_t optimizer;
    ckpt::nn::sampler sampler; ///< the global batches, the same on every rank
    std::mt19937_64 noise;     ///< this rank's input noise
    std::int64_t step = 0;
    std::vector<double> losses; ///< the global loss of every step

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(model), CEREAL_NVP(optimizer), CEREAL_NVP(sampler), CEREAL_NVP(step),
           CEREAL_NVP(losses));
        ar(ckpt::rank_local("noise", noise));
    }
};

inline ckpt::nn::dataset<float> make_data() {
    return ckpt::nn::two_spirals<float>(256, 0.02, 7);
}

/// The state every run starts from, on rank `rank`.
inline state fresh(const ckpt::nn::dataset<float>& data, int rank) {
    state s;
    s.model = model_t({2, 32, 32, 2}, ckpt::nn::activation::tanh, 1);
    s.optimizer = adam_t(s.model, {.lr = 0.01});
    s.sampler = ckpt::nn::sampler(data.inputs.rows(), 64, 3);
    s.noise.seed(1000 + static_cast<std::uint64_t>(rank));
    return s;
}

/// One step on every rank: this rank's rows of the global batch, forward and backward, the
/// gradients summed over the ranks in rank order, the same Adam update everywhere.
inline double train_step(state& s, const ckpt::nn::dataset<float>& data, MPI_Comm comm) {
    int rank = 0;
    int ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    const std::vector<std::int64_t> batch = s.sampler.next();
    const auto total = static_cast<std::int64_t>(batch.size());
    const std::int64_t begin = total * rank / ranks;
    const std::int64_t end = total * (rank + 1) / ranks;

    // This rank's gradients times its rows (so that the sum over ranks is the batch's sum),
    // flattened, then its loss times its rows.
    std::vector<float> mine;
    for (const auto& l : s.model.layers()) {
        mine.resize(mine.size() + static_cast<std::size_t>(l.weight.size() + l.bias.size()), 0.0f);
    }
    mine.push_back(0.0f);
    if (end > begin) {
        ckpt::nn::dataset<float> b =
            data.batch(std::vector<std::int64_t>(batch.begin() + begin, batch.begin() + end));
        std::normal_distribution<double> noise(0.0, 0.01);
        for (Eigen::Index i = 0; i < b.inputs.size(); ++i) {
            b.inputs.data()[i] += static_cast<float>(noise(s.noise));
        }
        ckpt::nn::forward_cache<float> cache;
        const auto out = s.model.forward(b.inputs, cache);
        const auto [loss, d_out] = ckpt::nn::cross_entropy_loss(out, b.labels);
        const auto rows = static_cast<float>(end - begin);
        std::size_t at = 0;
        for (const auto& g : s.model.backward(cache, d_out)) {
            for (Eigen::Index k = 0; k < g.weight.size(); ++k)
                mine[at++] = g.weight.data()[k] * rows;
            for (Eigen::Index k = 0; k < g.bias.size(); ++k) mine[at++] = g.bias[k] * rows;
        }
        mine.back() = loss * rows;
    }
    std::vector<float> all(mine.size() * static_cast<std::size_t>(ranks));
    MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, all.data(),
                  static_cast<int>(mine.size()), MPI_FLOAT, comm);
    std::vector<float> sum(mine.size(), 0.0f);
    for (int r = 0; r < ranks; ++r) { // in rank order, whatever MPI would have done
        for (std::size_t k = 0; k < sum.size(); ++k) {
            sum[k] += all[static_cast<std::size_t>(r) * mine.size() + k];
        }
    }
    const auto n = static_cast<float>(total);
    std::vector<ckpt::nn::linear<float>> grads(s.model.layers().size());
    std::size_t at = 0;
    for (std::size_t i = 0; i < grads.size(); ++i) {
        const auto& l = s.model.layers()[i];
        grads[i].weight.resize(l.weight.rows(), l.weight.cols());
        grads[i].bias.resize(l.bias.size());
        for (Eigen::Index k = 0; k < l.weight.size(); ++k)
            grads[i].weight.data()[k] = sum[at++] / n;
        for (Eigen::Index k = 0; k < l.bias.size(); ++k) grads[i].bias[k] = sum[at++] / n;
    }
    s.optimizer.step(s.model, grads);
    ++s.step;
    const double loss = static_cast<double>(sum.back() / n);
    s.losses.push_back(loss);
    return loss;
}

} // namespace data_parallel
