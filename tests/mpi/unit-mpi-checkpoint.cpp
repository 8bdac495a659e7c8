// ckpt::mpi::save and ckpt::mpi::load: round trips on every number of ranks, resharding from N
// to M ranks bit for bit, replicated tensors written once, and the errors every rank agrees on.

#include "mpi_util.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <cereal/types/vector.hpp>
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Global shapes: rows that no rank count from 1 to 4 divides evenly, and a tensor with fewer
// rows than ranks (a rank then holds none).
constexpr std::uint64_t moment_rows = 2003; // x 5 floats: 40 KB, ten 4 KiB chunks
constexpr std::uint64_t id_rows = 3;

/// Rows [begin, end) of `global` that rank `r` of `n` holds.
ckpt::rows share(std::uint64_t global, int r, int n) {
    return {global * static_cast<std::uint64_t>(r) / static_cast<std::uint64_t>(n), global};
}
std::uint64_t share_rows(std::uint64_t global, int r, int n) {
    return share(global, r + 1, n).offset - share(global, r, n).offset;
}

/// A rank's own part of the state.
struct sampler {
    std::uint64_t cursor = 0;
    Eigen::VectorXf pending; // rank-local tensor

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(cursor), CEREAL_NVP(pending));
    }
};

/// A data-parallel state with ZeRO-style sharded moments.
struct dist_state {
    Eigen::MatrixXf w;     // replicated
    Eigen::VectorXd b;     // replicated
    std::int64_t step = 0; // replicated value
    row_major moments;     // sharded
    std::vector<std::int32_t> ids;
    sampler data;
    ckpt::rows moment_place;
    ckpt::rows id_place;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(b), CEREAL_NVP(step));
        ar(ckpt::sharded("moments", moments, moment_place));
        ar(ckpt::sharded("ids", ids, id_place));
        ar(ckpt::rank_local("data", data));
    }
};

/// Rank `r` of `n`'s state, shaped but zero: what a job has before it loads.
dist_state empty_state(int r, int n) {
    dist_state s;
    s.w = Eigen::MatrixXf::Zero(6, 7);
    s.b = Eigen::VectorXd::Zero(9);
    s.moment_place = share(moment_rows, r, n);
    s.id_place = share(id_rows, r, n);
    s.moments = row_major::Zero(static_cast<Eigen::Index>(share_rows(moment_rows, r, n)), 5);
    s.ids.assign(static_cast<std::size_t>(share_rows(id_rows, r, n)), 0);
    return s;
}

float moment(std::uint64_t row, Eigen::Index col) {
    return static_cast<float>(row) * 10.0f + static_cast<float>(col) + 0.25f;
}

/// Rank `r` of `n`'s state in a run: the same replicated values everywhere, its rows of the
/// global moments and ids, and its own sampler.
dist_state full_state(int r, int n) {
    dist_state s = empty_state(r, n);
    for (Eigen::Index i = 0; i < s.w.size(); ++i) s.w.data()[i] = static_cast<float>(i) * 0.5f - 3;
    for (Eigen::Index i = 0; i < s.b.size(); ++i) s.b[i] = 1.0 / static_cast<double>(i + 1);
    s.step = 42;
    for (Eigen::Index i = 0; i < s.moments.rows(); ++i) {
        for (Eigen::Index j = 0; j < 5; ++j) {
            s.moments(i, j) = moment(s.moment_place.offset + static_cast<std::uint64_t>(i), j);
        }
    }
    for (std::size_t i = 0; i < s.ids.size(); ++i) {
        s.ids[i] = static_cast<std::int32_t>(s.id_place.offset + i) * 7 - 3;
    }
    s.data.cursor = 100 + static_cast<std::uint64_t>(r);
    s.data.pending = Eigen::VectorXf::Constant(r + 1, static_cast<float>(r));
    return s;
}

/// Whether `s`, rank `r` of `n`, holds what full_state gives (its rank-local part from saved
/// rank `from`).
bool holds_full_state(const dist_state& s, int r, int n, int from) {
    const dist_state want = full_state(r, n);
    const dist_state local = full_state(from, 1);
    return test::bits_equal(s.w, want.w) && test::bits_equal(s.b, want.b) && s.step == 42 &&
           test::bits_equal(s.moments, want.moments) && s.ids == want.ids &&
           s.data.cursor == local.data.cursor &&
           test::bits_equal(s.data.pending, local.data.pending);
}

ckpt::mpi::save_options small_chunks() {
    ckpt::mpi::save_options o;
    o.chunk_bytes = 4096;
    return o;
}

} // namespace

TEST_CASE("mpi: a save and a load on this job's ranks round-trip every kind of field") {
    const auto dir = mpitest::shared_scratch("roundtrip") / "step-42";
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    const dist_state saved = full_state(me, n);
    const std::uint64_t bytes = ckpt::mpi::save(MPI_COMM_WORLD, dir, saved, {.step = 42});
    CHECK(bytes == std::filesystem::file_size(
                       dir / ckpt::detail::rank_file_name(static_cast<std::uint64_t>(me),
                                                          static_cast<std::uint64_t>(n))));
    CHECK(ckpt::is_distributed_checkpoint(dir));

    dist_state loaded = empty_state(me, n);
    const ckpt::metadata meta = ckpt::mpi::load(MPI_COMM_WORLD, dir, loaded);
    CHECK(meta.step == 42);
    CHECK(holds_full_state(loaded, me, n, me));

    // Each rank's file is a valid checkpoint of its own, which records the rows it holds.
    const ckpt::info info =
        ckpt::inspect(dir / ckpt::detail::rank_file_name(static_cast<std::uint64_t>(me),
                                                         static_cast<std::uint64_t>(n)),
                      {.verify = true});
    CHECK(info.checksum_verified);
    bool has_moments = false;
    for (const auto& t : info.tensors) {
        if (t.name != "moments") continue;
        has_moments = true;
        CHECK(t.place.kind == ckpt::placement_kind::sharded);
        CHECK(t.place.row_offset == saved.moment_place.offset);
        CHECK(t.place.global_rows == moment_rows);
    }
    CHECK(has_moments);
}

TEST_CASE("mpi: replicated tensors are written once, spread across the ranks") {
    const auto dir = mpitest::shared_scratch("written-once") / "ckpt";
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    ckpt::mpi::save(MPI_COMM_WORLD, dir, full_state(me, n));
    if (me == 0) {
        std::map<std::string, int> copies;
        std::uint64_t tensor_bytes = 0;
        std::set<int> writers;
        for (int r = 0; r < n; ++r) {
            const ckpt::info info =
                ckpt::inspect(dir / ckpt::detail::rank_file_name(static_cast<std::uint64_t>(r),
                                                                 static_cast<std::uint64_t>(n)));
            for (const auto& t : info.tensors) {
                ++copies[t.name];
                tensor_bytes += t.bytes;
                if (t.name == "w" || t.name == "b") writers.insert(r);
            }
        }
        CHECK(copies["w"] == 1);
        CHECK(copies["b"] == 1);
        CHECK(copies["moments"] == n);
        // The bytes on disk: the replicated tensors once, every sharded row once, each rank's
        // own tensor.
        std::uint64_t local = 0;
        for (int r = 0; r < n; ++r) local += static_cast<std::uint64_t>(r + 1) * 4;
        CHECK(tensor_bytes == 6 * 7 * 4 + 9 * 8 + moment_rows * 5 * 4 + id_rows * 4 + local);
        // w (168 bytes) and b (72) go to the ranks that write least: two ranks when there are.
        CHECK(writers.size() == static_cast<std::size_t>(std::min(n, 2)));
    }
}

TEST_CASE("mpi: a checkpoint of N ranks loads onto M ranks, bit for bit (resharding)") {
    const auto root = mpitest::shared_scratch("reshard");
    const int me = mpitest::world_rank();
    const int world = mpitest::world_size();
    for (int n = 1; n <= world; ++n) {
        const auto dir = root / ("from-" + std::to_string(n));
        {
            const mpitest::first_ranks savers(n);
            if (savers.member()) {
                ckpt::mpi::save(savers.get(), dir, full_state(me, n), {}, small_chunks());
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
        for (int m = 1; m <= world; ++m) {
            CAPTURE(n);
            CAPTURE(m);
            const mpitest::first_ranks loaders(m);
            if (!loaders.member()) continue;
            dist_state s = empty_state(me, m);
            ckpt::mpi::load_options options;
            std::uint64_t read = 0;
            options.bytes_read = &read;
            for (int r = 0; r < m; ++r)
                options.rank_local_from.push_back(static_cast<std::uint64_t>(r % n));
            const mpitest::outcome got =
                mpitest::attempt([&] { ckpt::mpi::load(loaders.get(), dir, s, options); });
            CHECK(got.text == "");
            CHECK(holds_full_state(s, me, m, me % n));

            // What this rank needs, plus at most a chunk at each edge of each piece it reads
            // rows from: the replicated tensors, its rows, its rank-local tensor, its values.
            const std::uint64_t rows = share_rows(moment_rows, me, m);
            const std::uint64_t needed = 6 * 7 * 4 + 9 * 8 + rows * 5 * 4;
            const std::uint64_t first = share(moment_rows, me, m).offset;
            std::uint64_t pieces = 0;
            for (int k = 0; k < n; ++k) {
                const std::uint64_t b = share(moment_rows, k, n).offset;
                const std::uint64_t e = b + share_rows(moment_rows, k, n);
                if (rows != 0 && b < first + rows && first < e) ++pieces;
            }
            CHECK(read >= needed);
            CHECK(read <= needed + 2 * 4096 * pieces + 4096 /* ids, sampler, values */);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
}

TEST_CASE("mpi: rank-local fields need the same number of ranks, or a map") {
    const int world = mpitest::world_size();
    if (world < 2) return;
    const auto dir = mpitest::shared_scratch("rank-local") / "ckpt";
    const int me = mpitest::world_rank();
    ckpt::mpi::save(MPI_COMM_WORLD, dir, full_state(me, world));
    const mpitest::first_ranks fewer(world - 1);
    if (!fewer.member()) return;
    dist_state s = empty_state(me, world - 1);
    const std::vector<std::byte> before = test::state_bytes(s);
    const mpitest::outcome got = mpitest::attempt([&] { ckpt::mpi::load(fewer.get(), dir, s); });
    CHECK(got.id == 312);
    CHECK(mpitest::contains(got.text, "the checkpoint was saved by " + std::to_string(world) +
                                          " ranks and this job has " + std::to_string(world - 1)));
    CHECK(mpitest::contains(got.text, "rank_local_from"));
    CHECK(mpitest::same_everywhere(got, fewer.get()));
    CHECK(test::state_bytes(s) == before);
}

TEST_CASE("mpi: values that differ between ranks are refused, naming the field and both values") {
    const int world = mpitest::world_size();
    if (world < 2) return;
    const auto dir = mpitest::shared_scratch("values-differ") / "ckpt";
    const int me = mpitest::world_rank();
    dist_state s = full_state(me, world);
    if (me == world - 1) s.step = 43;
    const mpitest::outcome got = mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, dir, s); });
    CHECK(got.id == 314);
    CHECK(mpitest::contains(got.text, "step: rank 0 has int64 42, rank " +
                                          std::to_string(world - 1) + " has int64 43"));
    CHECK(mpitest::same_everywhere(got));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(!std::filesystem::exists(dir));

    // The rank-local cursor differs on every rank (100 + rank), and that is no error.
    s.step = 42;
    CHECK(mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, dir, s); }).id == 0);
}

TEST_CASE("mpi: replicas that diverged are an error, or a warning by option") {
    const int world = mpitest::world_size();
    if (world < 2) return;
    const auto root = mpitest::shared_scratch("diverged");
    const int me = mpitest::world_rank();
    dist_state s = full_state(me, world);
    if (me == world - 1) s.w(2, 3) += 1e-6f;
    const mpitest::outcome got =
        mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "a", s); });
    CHECK(got.id == 313);
    CHECK(mpitest::contains(got.text, "w: replicated, but rank 0 and rank " +
                                          std::to_string(world - 1) + " hold different values"));
    CHECK(!mpitest::contains(got.text, "b: "));
    CHECK(mpitest::same_everywhere(got));

    std::vector<std::string> warnings;
    ckpt::mpi::save_options warn;
    warn.replicas = ckpt::replica_check::warn;
    warn.warnings = &warnings;
    CHECK(mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "b", s, {}, warn); }).id ==
          0);
    REQUIRE(warnings.size() == 1);
    CHECK(mpitest::contains(warnings[0], "[ckpt.schema.313] w: replicated"));

    ckpt::mpi::save_options skip;
    skip.replicas = ckpt::replica_check::skip;
    CHECK(mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "c", s, {}, skip); }).id ==
          0);
}

TEST_CASE("mpi: a committed checkpoint is never overwritten; what a dead save left is removed") {
    const auto root = mpitest::shared_scratch("exists");
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    const dist_state s = full_state(me, n);
    ckpt::mpi::save(MPI_COMM_WORLD, root / "a", s);
    const mpitest::outcome again =
        mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "a", s); });
    CHECK(again.id == 606);
    CHECK(mpitest::contains(again.text, "already holds a committed checkpoint"));
    CHECK(mpitest::same_everywhere(again));

    // A save that died: files of another rank count and a temporary file, no manifest.
    if (me == 0) {
        std::filesystem::create_directories(root / "b");
        std::ofstream(root / "b" / "rank-00003-of-00008.ckpt") << "partial";
        std::ofstream(root / "b" / "rank-00000-of-00002.ckpt.tmp-99-1") << "partial";
    }
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "b", s); }).id == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(root / "b")) {
        (void)e;
        ++files;
    }
    CHECK(files == static_cast<std::size_t>(n) + 1);

    // Anything else in the directory is not ckpt's to remove.
    if (me == 0) {
        std::filesystem::create_directories(root / "c");
        std::ofstream(root / "c" / "notes.txt") << "mine";
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const mpitest::outcome foreign =
        mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "c", s); });
    CHECK(foreign.id == 604);
    CHECK(mpitest::contains(foreign.text, "holds 'notes.txt'"));
    CHECK(mpitest::same_everywhere(foreign));
    CHECK(std::filesystem::exists(root / "c" / "notes.txt"));

    // No parent directory: an io error, on every rank.
    const mpitest::outcome orphan =
        mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, root / "x" / "y", s); });
    CHECK(orphan.id == 101);
    CHECK(mpitest::contains(orphan.text, "rank 0 of " + std::to_string(n) + ": create directory"));
    CHECK(mpitest::same_everywhere(orphan));
}

TEST_CASE("mpi: a damaged chunk on one rank's file fails every rank, and no state changes") {
    const auto dir = mpitest::shared_scratch("damaged") / "ckpt";
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    ckpt::mpi::save(MPI_COMM_WORLD, dir, full_state(me, n), {}, small_chunks());
    const std::uint64_t victim = static_cast<std::uint64_t>(n - 1);
    if (me == 0) {
        const auto json = test::read_file(dir / "manifest.json");
        const auto m = ckpt::detail::parse_manifest(
            std::string_view(reinterpret_cast<const char*>(json.data()), json.size()), {}, "m");
        for (const auto& t : m.tensors) {
            if (t.name != "moments") continue;
            for (const auto& p : t.pieces) {
                if (p.file != victim) continue;
                const auto path = dir / m.files[victim].name;
                auto bytes = test::read_file(path);
                bytes[p.offset + p.bytes - 3] ^= std::byte{0x10}; // in the last chunk
                test::write_file(path, bytes);
            }
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    // Every rank reads all the rows: only the ranks that read the last chunk see the damage.
    dist_state s = full_state(me, n);
    s.moment_place = {0, moment_rows};
    s.moments = row_major::Constant(static_cast<Eigen::Index>(moment_rows), 5, -1.0f);
    s.w.setConstant(-2.0f);
    const std::vector<std::byte> before = test::state_bytes(s);
    const mpitest::outcome got = mpitest::attempt([&] { ckpt::mpi::load(MPI_COMM_WORLD, dir, s); });
    CHECK(got.id == 204);
    CHECK(mpitest::contains(got.text, "rank 0 of " + std::to_string(n) + ": '"));
    CHECK(mpitest::contains(got.text, "rank-0000" + std::to_string(victim) + "-of-0000" +
                                          std::to_string(n) + ".ckpt': bytes ["));
    CHECK(mpitest::contains(got.text, "of tensor 'moments' do not match the manifest's checksum"));
    CHECK(mpitest::same_everywhere(got));
    CHECK(test::state_bytes(s) == before);
}

TEST_CASE("mpi: a mismatch on one rank only fails every rank, and no state changes") {
    const int world = mpitest::world_size();
    const auto dir = mpitest::shared_scratch("one-rank-mismatch") / "ckpt";
    const int me = mpitest::world_rank();
    ckpt::mpi::save(MPI_COMM_WORLD, dir, full_state(me, world));
    dist_state s = empty_state(me, world);
    s.w.setConstant(3.0f); // every other rank would load w before this one fails
    if (me == world - 1) s.moment_place.global_rows = moment_rows + 1;
    const std::vector<std::byte> before = test::state_bytes(s);
    const mpitest::outcome got = mpitest::attempt([&] { ckpt::mpi::load(MPI_COMM_WORLD, dir, s); });
    CHECK(got.id == 312);
    CHECK(mpitest::contains(got.text, "on rank " + std::to_string(world - 1) + " of " +
                                          std::to_string(world) + ": file has rows ["));
    CHECK(mpitest::contains(got.text, "of 2003 (sharded), state expects rows ["));
    CHECK(mpitest::contains(got.text, "of 2004 (sharded)"));
    CHECK(mpitest::same_everywhere(got));
    CHECK(test::state_bytes(s) == before);

    // The same state with the right rows loads.
    s.moment_place.global_rows = moment_rows;
    CHECK(mpitest::attempt([&] { ckpt::mpi::load(MPI_COMM_WORLD, dir, s); }).id == 0);
    CHECK(holds_full_state(s, me, world, me));
}
