#include "cereal_peer.hpp"

#include "baselines.hpp"
#include "cleanup.hpp"
#include "clock.hpp"

#include <ckpt/ckpt.hpp> // its cereal serializers of the random engines

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>

#include <cstddef>
#include <fstream>

// What a user of plain cereal writes for Eigen (cereal has no Eigen support), for its binary
// archives only, so ckpt's own archives keep theirs.
namespace cereal {

template <class S, int R, int C, int O, int MR, int MC>
void save(BinaryOutputArchive& ar, const Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    const Eigen::Index rows = m.rows();
    const Eigen::Index cols = m.cols();
    ar(rows, cols);
    ar(binary_data(m.data(), static_cast<std::size_t>(m.size()) * sizeof(S)));
}

template <class S, int R, int C, int O, int MR, int MC>
void load(BinaryInputArchive& ar, Eigen::Matrix<S, R, C, O, MR, MC>& m) {
    Eigen::Index rows = 0;
    Eigen::Index cols = 0;
    ar(rows, cols);
    if (rows != m.rows() || cols != m.cols()) m.resize(rows, cols);
    ar(binary_data(m.data(), static_cast<std::size_t>(m.size()) * sizeof(S)));
}

} // namespace cereal

namespace bench {

double cereal_save(const std::string& path, const train_state& st) {
    const auto t0 = bench_clock::now();
    {
        std::ofstream os(path, std::ios::binary | std::ios::trunc);
        if (!os) die_errno("open", path);
        cereal::BinaryOutputArchive ar(os);
        ar(st);
        os.close();
        if (!os) die("cereal: writing '" + path + "' failed");
    }
    fsync_path(path);
    return seconds_since(t0);
}

double cereal_load(const std::string& path, train_state& st) {
    const auto t0 = bench_clock::now();
    std::ifstream is(path, std::ios::binary);
    if (!is) die_errno("open", path);
    cereal::BinaryInputArchive ar(is);
    ar(st);
    return seconds_since(t0);
}

} // namespace bench
