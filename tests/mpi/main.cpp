// The runner of ckpt's MPI tests: every rank runs the same test cases in the same order (the
// collective calls inside them must match), rank 0 reports, and every rank exits with the
// same status. CKPT_TEST_MPI_THREAD=funneled asks MPI for MPI_THREAD_FUNNELED instead of
// MPI_THREAD_MULTIPLE, so that the paths which must not rely on it run too.
#define DOCTEST_CONFIG_IMPLEMENT
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <doctest/doctest.h>
#include <mpi.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
    const char* level_env = std::getenv("CKPT_TEST_MPI_THREAD");
    const bool funneled = level_env != nullptr && std::string_view(level_env) == "funneled";
    int provided = 0;
    MPI_Init_thread(&argc, &argv, funneled ? MPI_THREAD_FUNNELED : MPI_THREAD_MULTIPLE, &provided);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    doctest::Context context;
    context.applyCommandLine(argc, argv);
    if (rank != 0) context.setOption("minimal", true); // failures only
    int failed = context.run();
    if (context.shouldExit()) {
        MPI_Finalize();
        return failed;
    }
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
