#include "layouts.hpp"

#include "baselines.hpp"
#include "cleanup.hpp"
#include "clock.hpp"
#include "format.hpp"

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

namespace bench {

namespace {

/// The state of every layout: only tensors, of one size each, 256 rows where they can have them
/// (so they are matrices, not vectors).
struct layered_state {
    std::vector<Eigen::MatrixXf> layers;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(layers));
    }
};

/// `total` bytes as tensors of `tensor_bytes`: random values, or zeros (every page touched, as
/// a resuming run's state is) when `seed` is 0.
layered_state make_layered(std::uint64_t total, std::uint64_t tensor_bytes, std::uint64_t seed) {
    layered_state s;
    const auto floats = static_cast<Eigen::Index>(tensor_bytes / sizeof(float));
    const Eigen::Index rows = floats % 256 == 0 ? 256 : 1;
    s.layers.resize(static_cast<std::size_t>(total / tensor_bytes));
    for (Eigen::MatrixXf& m : s.layers) {
        m.resize(rows, floats / rows);
        if (seed != 0)
            fill_random(m.data(), m.size(), seed);
        else
            m.setZero();
    }
    return s;
}

void add(series& s, sample x) {
    s.seconds.push_back(x.seconds);
    s.faults.push_back(x.faults);
}

} // namespace

std::string layout_name(const layout_result& l) {
    const std::uint64_t kib = l.tensor_bytes >> 10;
    return std::to_string(l.tensors) + " x " +
           (kib % 1024 == 0 ? std::to_string(kib / 1024) + " MiB" : std::to_string(kib) + " KiB");
}

void measure_layouts(size_result& r, const options& opt, const std::string& path) {
    const std::uint64_t total = r.target_mib << 20;
    const struct {
        const char* key;
        std::uint64_t tensor_bytes;
        bool target;
    } kinds[] = {
        {"big", total / 2, true},
        {"mid", total / 64, true},
        {"64k", std::uint64_t{64} << 10, true},
        {"small", std::uint64_t{4} << 10, false}, // no target: per-tensor costs dominate
    };
    r.layouts.clear();
    for (const auto& k : kinds) {
        layout_result l;
        l.key = k.key;
        l.tensor_bytes = k.tensor_bytes;
        l.tensors = static_cast<std::size_t>(total / k.tensor_bytes);
        l.target = k.target;
        l.pread_xxh3 = make_series("pread_xxh3", "pread + XXH3_64bits", "", total);
        l.shaped =
            make_series("load_shaped", "ckpt load (warm, shaped state)", "pread_xxh3", total);
        l.empty = make_series("load_empty", "ckpt load (warm, empty state)", "pread_xxh3", total);
        r.layouts.push_back(std::move(l));
    }

    // The read buffer grows to the largest file (the small tensors' header is the largest).
    std::unique_ptr<prefaulted> buffer;
    std::size_t buffer_bytes = 0;
    const std::size_t n_layouts = r.layouts.size();
    for (int run = 0; run < opt.runs; ++run) {
        progress("%s: tensor granularity, run %d of %d", size_name(r.target_mib).c_str(), run + 1,
                 opt.runs);
        for (std::size_t k = 0; k < n_layouts; ++k) {
            layout_result& l = r.layouts[(k + static_cast<std::size_t>(run)) % n_layouts];
            // One layout's states at a time, built anew each run (untimed): the peak stays at
            // about 4 x the size (saved, shaped, empty, the read buffer).
            std::uint64_t seed = 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(run);
            const layered_state saved = make_layered(total, l.tensor_bytes, seed);
            layered_state shaped = make_layered(total, l.tensor_bytes, 0);
            // Saved anew to a fresh path, as a training run's last checkpoint was just written:
            // the page cache holds it.
            fresh_target(path);
            l.file_bytes = ckpt::save(path, saved);
            const auto n = static_cast<std::size_t>(l.file_bytes);
            if (n > buffer_bytes) {
                buffer.reset();
                buffer = std::make_unique<prefaulted>(n, pages::plain);
                buffer_bytes = n;
            }

            const auto base = [&] {
                add(l.pread_xxh3, counted([&] {
                        const double t = raw_read(path, buffer->data(), n);
                        return t + hash_bytes(buffer->data(), n);
                    }));
            };
            const auto load_shaped = [&] {
                add(l.shaped, timed([&] { ckpt::load(path, shaped); }));
            };
            const auto load_empty = [&] {
                layered_state fresh; // load creates every matrix; freed outside the timing
                add(l.empty, timed([&] { ckpt::load(path, fresh); }));
                if (fresh.layers != saved.layers) r.layouts_exact = false;
            };
            if (run % 2 == 0) {
                base();
                load_shaped();
                load_empty();
            } else {
                load_empty();
                load_shaped();
                base();
            }
            if (shaped.layers != saved.layers) r.layouts_exact = false;
        }
    }
    std::filesystem::remove(path);
}

} // namespace bench
