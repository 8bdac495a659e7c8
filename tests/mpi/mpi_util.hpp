#pragma once

// Helpers of ckpt's MPI tests: sub-communicators, a directory every rank agrees on, and checks
// that every rank saw the same thing.

#include "test_util.hpp"

#include <ckpt/mpi.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace mpitest {

inline int rank_of(MPI_Comm c) {
    int r = 0;
    MPI_Comm_rank(c, &r);
    return r;
}

inline int size_of(MPI_Comm c) {
    int n = 0;
    MPI_Comm_size(c, &n);
    return n;
}

inline int world_rank() {
    return rank_of(MPI_COMM_WORLD);
}
inline int world_size() {
    return size_of(MPI_COMM_WORLD);
}

/// The first `n` ranks of the world, or MPI_COMM_NULL on the others. Collective on the world.
class first_ranks {
public:
    explicit first_ranks(int n) {
        const int me = world_rank();
        MPI_Comm_split(MPI_COMM_WORLD, me < n ? 0 : MPI_UNDEFINED, me, &comm_);
    }
    first_ranks(const first_ranks&) = delete;
    first_ranks& operator=(const first_ranks&) = delete;
    ~first_ranks() {
        if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    }
    [[nodiscard]] bool member() const { return comm_ != MPI_COMM_NULL; }
    [[nodiscard]] MPI_Comm get() const { return comm_; }

private:
    MPI_Comm comm_ = MPI_COMM_NULL;
};

/// A fresh, empty folder that every rank of the world uses: rank 0 makes it. Collective.
inline std::filesystem::path shared_scratch(const std::string& name) {
    const auto dir = std::filesystem::current_path() / ("scratch-" + name);
    if (world_rank() == 0) {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return dir;
}

/// Every rank's value of `v`, on every rank of `c`.
inline std::vector<long long> gather(long long v, MPI_Comm c = MPI_COMM_WORLD) {
    std::vector<long long> all(static_cast<std::size_t>(size_of(c)));
    MPI_Allgather(&v, 1, MPI_LONG_LONG, all.data(), 1, MPI_LONG_LONG, c);
    return all;
}

/// Every rank's string, on every rank of `c`.
inline std::vector<std::string> gather(const std::string& s, MPI_Comm c = MPI_COMM_WORLD) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(s.data()), s.size());
    ckpt::mpi::communicator comm(c);
    std::vector<std::string> out;
    for (const auto& b : comm.all_gather(bytes)) {
        out.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
    }
    return out;
}

/// What `f` threw on this rank: the error's id and message (0 and "" when it did not throw).
struct outcome {
    int id = 0;
    std::string text;
};

template <class F>
outcome attempt(F&& f) {
    try {
        f();
    } catch (const ckpt::error& e) {
        return {e.id(), e.what()};
    }
    return {};
}

/// Whether every rank of `c` has the same outcome.
inline bool same_everywhere(const outcome& o, MPI_Comm c = MPI_COMM_WORLD) {
    const auto ids = gather(static_cast<long long>(o.id), c);
    const auto texts = gather(o.text, c);
    for (std::size_t r = 1; r < ids.size(); ++r) {
        if (ids[r] != ids[0] || texts[r] != texts[0]) return false;
    }
    return true;
}

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace mpitest
