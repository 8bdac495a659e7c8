// ckpt::mpi from an installed package: a sharded and a replicated tensor saved by every rank
// and loaded back bit for bit. Exit status 0 on every rank when that works.
#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <cstdio>
#include <filesystem>

struct state {
    Eigen::MatrixXf w;
    Eigen::VectorXd m;
    std::int64_t step = 0;
    ckpt::rows place;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step), ckpt::sharded("m", m, place));
    }
};

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    int ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const std::filesystem::path dir = argc > 1 ? argv[1] : "consumer-mpi-checkpoint";
    if (rank == 0) std::filesystem::remove_all(dir);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto r = static_cast<std::uint64_t>(rank);
    const auto n = static_cast<std::uint64_t>(ranks);
    state saved{Eigen::MatrixXf::Constant(3, 2, 1.5f),
                Eigen::VectorXd::Constant(2, double(rank)),
                7,
                {2 * r, 2 * n}};
    int status = 0;
    try {
        ckpt::mpi::save(MPI_COMM_WORLD, dir, saved, {.step = 7});
        state loaded{Eigen::MatrixXf::Zero(3, 2), Eigen::VectorXd::Zero(2), 0, {2 * r, 2 * n}};
        const ckpt::metadata meta = ckpt::mpi::load(MPI_COMM_WORLD, dir, loaded);
        status = meta.step == 7 && loaded.w == saved.w && loaded.m == saved.m && loaded.step == 7
                     ? 0
                     : 1;
    } catch (const ckpt::error& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        status = 2;
    }
    if (status == 0 && rank == 0) std::printf("consumer_mpi: ok on %d ranks\n", ranks);
    MPI_Finalize();
    return status;
}
