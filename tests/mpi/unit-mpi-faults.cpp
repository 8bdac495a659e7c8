// Fault injection on one rank at every call of the protocol: every rank throws the same error,
// nothing of the failed save is left, the previous checkpoint loads bit-identical, and no rank
// hangs (ctest's timeout would fail the test).

#include "mpi_util.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/mpi.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>

#include <fcntl.h>

namespace {

/// The calls a fault can hit.
enum class fault { write, fsync, rename, sync_directory, read, open_for_reading };

const char* fault_name(fault f) {
    switch (f) {
    case fault::write: return "write";
    case fault::fsync: return "fsync";
    case fault::rename: return "rename";
    case fault::sync_directory: return "directory fsync";
    case fault::read: return "read";
    case fault::open_for_reading: return "open";
    }
    return "?";
}

/// Fails the first call of one kind whose path contains `match` (write, fsync and read have no
/// path: their first call), once armed: from the start, or (`after_rename_of`) once a rename to
/// such a path was made.
class one_fault final : public test::posix_forwarding {
public:
    one_fault(fault f, std::string match, std::string after_rename_of = {})
        : fault_(f), match_(std::move(match)), after_(std::move(after_rename_of)),
          armed_(after_.empty()) {}

    int open(const char* path, int flags, ::mode_t mode) override {
        if (fault_ == fault::open_for_reading && (flags & O_ACCMODE) == O_RDONLY &&
            (flags & O_DIRECTORY) == 0 && hits(path)) {
            errno = EACCES;
            return -1;
        }
        const int fd = real_.open(path, flags, mode);
        if (fd >= 0 && (flags & O_DIRECTORY) != 0) directories_.insert(fd);
        return fd;
    }
    int close(int fd) override {
        directories_.erase(fd);
        return real_.close(fd);
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        if (fault_ == fault::write && hits("")) {
            errno = ENOSPC;
            return -1;
        }
        return real_.write(fd, data, n);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        if (fault_ == fault::write && hits("")) {
            errno = ENOSPC;
            return -1;
        }
        return real_.pwrite(fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        if (fault_ == fault::read && hits("")) {
            errno = EIO;
            return -1;
        }
        return real_.pread(fd, data, n, offset);
    }
    int fsync(int fd) override {
        const bool directory = directories_.count(fd) != 0;
        if ((fault_ == fault::sync_directory) == directory &&
            (fault_ == fault::fsync || fault_ == fault::sync_directory) && hits("")) {
            errno = EIO;
            return -1;
        }
        return real_.fsync(fd);
    }
    int rename(const char* from, const char* to) override {
        if (fault_ == fault::rename && hits(to)) {
            errno = EIO;
            return -1;
        }
        const int r = real_.rename(from, to);
        if (!after_.empty() && std::string_view(to).find(after_) != std::string_view::npos) {
            armed_ = true;
        }
        return r;
    }
    [[nodiscard]] bool fired() const { return fired_; }

private:
    bool hits(std::string_view path) {
        if (!armed_ || fired_ || (!path.empty() && path.find(match_) == std::string_view::npos)) {
            return false;
        }
        fired_ = true;
        return true;
    }
    fault fault_;
    std::string match_;
    std::string after_;
    bool armed_;
    bool fired_ = false;
    std::set<int> directories_;
};

using fault_matrix = Eigen::Matrix<float, 5, 4>;

struct fault_state {
    fault_matrix w;
    Eigen::VectorXf m;
    std::int64_t step = 0;
    ckpt::rows place;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(step), ckpt::sharded("m", m, place));
    }
};

fault_state make_fault_state(int r, int n, float base) {
    fault_state s;
    s.w.setConstant(base);
    const auto global = static_cast<std::uint64_t>(3 * n + 1);
    s.place = {static_cast<std::uint64_t>(3 * r), global};
    s.m = Eigen::VectorXf::Constant(r == n - 1 ? 4 : 3, base + static_cast<float>(r));
    return s;
}

struct injected {
    fault what;
    int victim;
    const char* match;
    const char* after;
    int id;
};

} // namespace

TEST_CASE("mpi faults: a save failing on one rank at any call fails every rank, leaves nothing") {
    const auto root = mpitest::shared_scratch("save-faults");
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    const fault_state good = make_fault_state(me, n, 1.0f);
    ckpt::mpi::save(MPI_COMM_WORLD, root / "good", good, {.step = 1});

    std::vector<injected> cases;
    for (const int victim : std::set<int>{0, n - 1}) {
        cases.push_back({fault::write, victim, "", "", 103});
        cases.push_back({fault::fsync, victim, "", "", 104});
        cases.push_back({fault::rename, victim, ".ckpt", "", 106});
        cases.push_back({fault::sync_directory, victim, "", "", 107});
    }
    // Rank 0's own calls: the manifest's rename (the commit point), the fsync of the
    // directory after it (the manifest is then in place, and must go), and the manifest's
    // write. (Rank 0's first directory fsync, above, is that of the parent directory, which
    // made the checkpoint's directory.)
    cases.push_back({fault::rename, 0, "manifest.json", "", 106});
    cases.push_back({fault::sync_directory, 0, "", "manifest.json", 107});
    cases.push_back({fault::write, 0, "", "rank-00000", 103});

    int k = 0;
    for (const injected& c : cases) {
        const std::string name = fault_name(c.what);
        CAPTURE(name);
        CAPTURE(c.victim);
        CAPTURE(c.after);
        const auto dir = root / ("next-" + std::to_string(k++));
        one_fault faulty(c.what, c.match, c.after);
        ckpt::mpi::save_options options;
        if (me == c.victim) options.backend = &faulty;
        const fault_state next = make_fault_state(me, n, 2.0f);
        const mpitest::outcome got =
            mpitest::attempt([&] { ckpt::mpi::save(MPI_COMM_WORLD, dir, next, {}, options); });
        CHECK(got.id == c.id);
        CHECK(mpitest::contains(got.text, "rank " + std::to_string(c.victim) + " of " +
                                              std::to_string(n) + ": "));
        CHECK(mpitest::same_everywhere(got));
        if (me == c.victim) CHECK(faulty.fired());
        MPI_Barrier(MPI_COMM_WORLD);
        CHECK(!ckpt::is_distributed_checkpoint(dir));
        CHECK(!std::filesystem::exists(dir));

        fault_state back = make_fault_state(me, n, 0.0f);
        CHECK(ckpt::mpi::load(MPI_COMM_WORLD, root / "good", back).step == 1);
        CHECK(test::bits_equal(back.w, good.w));
        CHECK(test::bits_equal(back.m, good.m));
    }
}

TEST_CASE("mpi faults: a load failing on one rank fails every rank, and no state changes") {
    const auto root = mpitest::shared_scratch("load-faults");
    const int me = mpitest::world_rank();
    const int n = mpitest::world_size();
    ckpt::mpi::save(MPI_COMM_WORLD, root / "good", make_fault_state(me, n, 1.0f));
    for (const int victim : std::set<int>{0, n - 1}) {
        for (const auto& [what, id] :
             {std::pair{fault::read, 102}, {fault::open_for_reading, 101}}) {
            const std::string name = fault_name(what);
            CAPTURE(name);
            CAPTURE(victim);
            // The victim opens the manifest (rank 0) or a rank file first: a fault on any.
            one_fault faulty(what, victim == 0 ? "" : ".ckpt");
            ckpt::mpi::load_options options;
            if (me == victim) options.backend = &faulty;
            fault_state s = make_fault_state(me, n, 5.0f);
            const std::vector<std::byte> before = test::state_bytes(s);
            const mpitest::outcome got = mpitest::attempt(
                [&] { ckpt::mpi::load(MPI_COMM_WORLD, root / "good", s, options); });
            CHECK(got.id == id);
            CHECK(mpitest::contains(got.text, "rank " + std::to_string(victim) + " of " +
                                                  std::to_string(n) + ": "));
            CHECK(mpitest::same_everywhere(got));
            CHECK(test::state_bytes(s) == before);
        }
    }

    // A rank's file gone: the ranks that need it fail, and so every rank.
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0) {
        std::filesystem::remove(root / "good" /
                                ckpt::detail::rank_file_name(static_cast<std::uint64_t>(n - 1),
                                                             static_cast<std::uint64_t>(n)));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    fault_state s = make_fault_state(me, n, 5.0f);
    const std::vector<std::byte> before = test::state_bytes(s);
    const mpitest::outcome got =
        mpitest::attempt([&] { ckpt::mpi::load(MPI_COMM_WORLD, root / "good", s); });
    CHECK(got.id == 101);
    CHECK(mpitest::contains(got.text, "No such file or directory"));
    CHECK(mpitest::same_everywhere(got));
    CHECK(test::state_bytes(s) == before);
}
