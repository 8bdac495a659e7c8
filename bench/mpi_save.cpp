// bench-mpi_save: distributed save and restore over MPI, against the same ranks doing the same
// I/O by hand, in one run. Run under mpiexec:
//
//     mpiexec -n 4 ./bench-mpi_save [--shard-mib S] [--replicated-mib P] [--runs K] [--dir D]
//
// Each rank holds S MiB of a sharded tensor (its rows) and the same P MiB of replicated
// tensors, already touched. Reported, each as min / median / max over K runs:
//   1. Save throughput of ckpt::mpi::save against the baseline: every rank writes the bytes
//      ckpt writes for it (its rows, its share of the replicated tensors) from the same memory
//      with write() + fsync() into a new file, in parallel; both timed from a barrier to the
//      last rank's end, both to new paths, which goes first alternating from run to run. Ratio =
//      baseline time / ckpt time (>= 0.8 is the target: ckpt also hashes every byte per chunk,
//      agrees on values and replicas, and commits a manifest).
//   2. Bytes on disk against the unique bytes (rows once, replicated tensors once).
//   3. Restores of the N-rank checkpoint onto M = 1 .. N ranks: the bytes each rank read
//      against the bytes its state needs (its rows and the replicated tensors), the largest
//      over the ranks; the target is <= 1.1 plus one checksum chunk at each edge of its rows.
#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include "bench_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Eigen::Index columns = 1024; // 4 KiB rows

struct bench_state {
    std::vector<Eigen::MatrixXf> replicated; // 4 tensors
    row_major shard;
    ckpt::rows place;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(replicated), ckpt::sharded("shard", shard, place));
    }
};

int rank_of(MPI_Comm c) {
    int r = 0;
    MPI_Comm_rank(c, &r);
    return r;
}
int size_of(MPI_Comm c) {
    int n = 0;
    MPI_Comm_size(c, &n);
    return n;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// The state of rank `r` of `n`: `rows` rows each, `replicated_rows` rows of replicated data.
bench_state make_state(int r, int n, std::uint64_t rows, std::uint64_t replicated_rows) {
    bench_state s;
    for (int k = 0; k < 4; ++k) {
        s.replicated.push_back(Eigen::MatrixXf::Constant(
            static_cast<Eigen::Index>(replicated_rows / 4), columns, static_cast<float>(k)));
    }
    s.place = {rows * static_cast<std::uint64_t>(r), rows * static_cast<std::uint64_t>(n)};
    s.shard = row_major::Constant(static_cast<Eigen::Index>(rows), columns, static_cast<float>(r));
    return s;
}

/// The baseline: write these blocks to a new file with write() and fsync() it.
void raw_write(const fs::path& path,
               const std::vector<std::pair<const void*, std::size_t>>& blocks) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) std::abort();
    for (const auto& [p, n] : blocks) {
        const auto* b = static_cast<const char*>(p);
        std::size_t done = 0;
        while (done < n) {
            const ::ssize_t w = ::write(fd, b + done, n - done);
            if (w <= 0) std::abort();
            done += static_cast<std::size_t>(w);
        }
    }
    if (::fsync(fd) != 0) std::abort();
    ::close(fd);
}

double max_over_ranks(double v, MPI_Comm c) {
    double out = 0;
    MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, c);
    return out;
}

} // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    std::uint64_t shard_mib = 48;
    std::uint64_t replicated_mib = 64;
    int runs = 5;
    fs::path dir = fs::current_path() / "bench-mpi-save";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--shard-mib") shard_mib = std::stoull(argv[i + 1]);
        if (a == "--replicated-mib") replicated_mib = std::stoull(argv[i + 1]);
        if (a == "--runs") runs = std::stoi(argv[i + 1]);
        if (a == "--dir") dir = argv[i + 1];
    }
    const int me = rank_of(MPI_COMM_WORLD);
    const int n = size_of(MPI_COMM_WORLD);
    const std::uint64_t rows = shard_mib * 256; // 4 KiB rows
    const std::uint64_t replicated_rows = replicated_mib * 256;
    if (me == 0) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const bench_state s = make_state(me, n, rows, replicated_rows);

    // Which replicated tensors ckpt gives this rank: read back from a first save's files.
    ckpt::mpi::save(MPI_COMM_WORLD, dir / "warm", s);
    const auto mine = ckpt::inspect(dir / "warm" /
                                    ckpt::detail::rank_file_name(static_cast<std::uint64_t>(me),
                                                                 static_cast<std::uint64_t>(n)));
    std::vector<std::pair<const void*, std::size_t>> blocks;
    std::uint64_t my_bytes = 0;
    for (const auto& t : mine.tensors) {
        if (t.name == "shard") {
            blocks.emplace_back(s.shard.data(), static_cast<std::size_t>(t.bytes));
        } else {
            const std::size_t k = static_cast<std::size_t>(t.name.back() - '0');
            blocks.emplace_back(s.replicated[k].data(), static_cast<std::size_t>(t.bytes));
        }
        my_bytes += t.bytes;
    }

    std::vector<double> ratio;
    std::vector<double> ckpt_gibs;
    std::vector<double> raw_gibs;
    const double unique =
        static_cast<double>((rows * static_cast<std::uint64_t>(n) + replicated_rows) * 4096);
    for (int run = 0; run < runs; ++run) {
        // Alternate which goes first, so that neither always runs after the other's frees.
        double raw = 0;
        double saved = 0;
        for (int part = 0; part < 2; ++part) {
            MPI_Barrier(MPI_COMM_WORLD);
            const auto t = std::chrono::steady_clock::now();
            if ((part == 0) == (run % 2 == 0)) {
                raw_write(dir / ("raw-" + std::to_string(run) + "-" + std::to_string(me)), blocks);
                raw = max_over_ranks(seconds_since(t), MPI_COMM_WORLD);
            } else {
                ckpt::mpi::save(MPI_COMM_WORLD, dir / ("ckpt-" + std::to_string(run)), s);
                saved = max_over_ranks(seconds_since(t), MPI_COMM_WORLD);
            }
        }
        ratio.push_back(raw / saved);
        ckpt_gibs.push_back(unique / saved / (1 << 30));
        raw_gibs.push_back(unique / raw / (1 << 30));
        // Free the space outside the timed part, and before the next run.
        MPI_Barrier(MPI_COMM_WORLD);
        fs::remove(dir / ("raw-" + std::to_string(run) + "-" + std::to_string(me)));
        if (me == 0 && run + 1 < runs) fs::remove_all(dir / ("ckpt-" + std::to_string(run)));
        MPI_Barrier(MPI_COMM_WORLD);
    }
    const fs::path kept = dir / ("ckpt-" + std::to_string(runs - 1));
    if (me == 0) {
        std::uint64_t on_disk = 0;
        for (const auto& e : fs::directory_iterator(kept)) on_disk += e.file_size();
        const auto r = bench::stats_of(ratio);
        const auto c = bench::stats_of(ckpt_gibs);
        const auto w = bench::stats_of(raw_gibs);
        std::printf("ranks %d: %llu MiB of rows each, %llu MiB replicated; %llu MiB unique\n", n,
                    static_cast<unsigned long long>(shard_mib),
                    static_cast<unsigned long long>(replicated_mib),
                    static_cast<unsigned long long>(unique / (1 << 20)));
        std::printf("  save throughput ratio (baseline time / ckpt time): min %.3f  median %.3f  "
                    "max %.3f\n",
                    r.min, r.median, r.max);
        std::printf("  ckpt %.2f / %.2f / %.2f GiB/s, write+fsync %.2f / %.2f / %.2f GiB/s\n",
                    c.min, c.median, c.max, w.min, w.median, w.max);
        std::printf("  bytes on disk / unique bytes: %.4f (%llu bytes)\n",
                    static_cast<double>(on_disk) / unique,
                    static_cast<unsigned long long>(on_disk));
    }

    // Restores onto M = 1 .. n ranks: bytes read against bytes needed.
    for (int m = 1; m <= n; ++m) {
        MPI_Comm sub = MPI_COMM_NULL;
        MPI_Comm_split(MPI_COMM_WORLD, me < m ? 0 : MPI_UNDEFINED, me, &sub);
        double worst = 0;
        double edge_worst = 0;
        if (sub != MPI_COMM_NULL) {
            const std::uint64_t global = rows * static_cast<std::uint64_t>(n);
            const std::uint64_t begin =
                global * static_cast<std::uint64_t>(me) / static_cast<std::uint64_t>(m);
            const std::uint64_t end =
                global * static_cast<std::uint64_t>(me + 1) / static_cast<std::uint64_t>(m);
            bench_state t = make_state(0, 1, 0, replicated_rows);
            t.place = {begin, global};
            t.shard = row_major::Zero(static_cast<Eigen::Index>(end - begin), columns);
            std::uint64_t read = 0;
            ckpt::mpi::load_options o;
            o.bytes_read = &read;
            ckpt::mpi::load(sub, kept, t, o);
            const double needed = static_cast<double>((end - begin + replicated_rows) * 4096);
            const double chunk = static_cast<double>(ckpt::detail::default_chunk_bytes);
            // One chunk at each edge of each piece its rows come from (at most n pieces).
            std::uint64_t pieces = 0;
            for (int k = 0; k < n; ++k) {
                const std::uint64_t b = rows * static_cast<std::uint64_t>(k);
                if (b < end && begin < b + rows) ++pieces;
            }
            worst = static_cast<double>(read) / needed;
            edge_worst =
                static_cast<double>(read) / (needed + 2 * chunk * static_cast<double>(pieces));
            MPI_Comm_free(&sub);
        }
        double w = 0;
        double e = 0;
        MPI_Allreduce(&worst, &w, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&edge_worst, &e, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (me == 0) {
            std::printf("  restore onto %d ranks: bytes read / bytes needed, worst rank: %.4f "
                        "(%.4f counting a %llu KiB chunk at each edge of each piece)\n",
                        m, w, e,
                        static_cast<unsigned long long>(ckpt::detail::default_chunk_bytes >> 10));
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0) fs::remove_all(dir);
    MPI_Finalize();
    return 0;
}
