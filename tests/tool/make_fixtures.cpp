// Writes the checkpoints that tests/tool/test_tool.py runs the `ckpt` command on, into the
// directory given as the only argument (emptied first). What each file holds is what the
// Python test asserts, value for value: keep the two in step.
//
//   a.ckpt           state_a at step 20 (every tensor kind below), metrics loss and acc
//   b.ckpt           a, with w(2, 4) one ULP up
//   a-again.ckpt     a, saved again at another time (tensors and values identical)
//   c.ckpt           a, with `bias` renamed `bias2`, `w` 3x6, and `counter` 8 instead of 7
//   damaged.ckpt     a, one byte of w's data flipped
//   text.ckpt        not a checkpoint
//   bf16.ckpt        a BF16 vector and an F8_E4M3 vector
//   run/             a manager's directory (prefix "ckpt", on_best("loss")): steps 10, 20,
//                    30 (loss 0.5, 0.25, 0.375), step 40 cut inside its header, a foreign step 3, a
//                    temporary of step 50, notes.txt, a subdirectory extra/
//   dist/            a distributed checkpoint of 2 ranks (written by two threads): a sharded
//                    4x3 matrix, a replicated vector, a rank-local vector per rank

#include <ckpt/ckpt.hpp>
#include <ckpt/distributed.hpp>

#include <Eigen/Core>
#include <cereal/types/string.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace fs = std::filesystem;

namespace {

struct state_a {
    Eigen::MatrixXf w = Eigen::MatrixXf(3, 5);             // column-major
    Eigen::Matrix<double, 2, 3, Eigen::RowMajor> r;        // row-major
    Eigen::VectorXd bias = Eigen::VectorXd(4);             // a vector
    Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1> ids{3}; // I32
    Eigen::Matrix<Eigen::half, Eigen::Dynamic, 1> h{2};    // F16
    std::int64_t counter = 7;                              // a value
    std::string name = "tool-fixture";                     // a value

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(r), CEREAL_NVP(bias), CEREAL_NVP(ids), CEREAL_NVP(h),
           CEREAL_NVP(counter), CEREAL_NVP(name));
    }
};

struct state_c {
    Eigen::MatrixXf w = Eigen::MatrixXf(3, 6);
    Eigen::Matrix<double, 2, 3, Eigen::RowMajor> r;
    Eigen::VectorXd bias2 = Eigen::VectorXd(4);
    Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1> ids{3};
    Eigen::Matrix<Eigen::half, Eigen::Dynamic, 1> h{2};
    std::int64_t counter = 8;
    std::string name = "tool-fixture";

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(r), CEREAL_NVP(bias2), CEREAL_NVP(ids), CEREAL_NVP(h),
           CEREAL_NVP(counter), CEREAL_NVP(name));
    }
};

struct state_bf16 {
    Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, 1> b{3};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(b));
    }
};

/// w(i, j) = i * 10 + j + 0.5, r(i, j) = i - j / 4, bias = 0.25 * (k + 1), ids = -1, 0, 70000.
state_a make_a() {
    state_a s;
    for (Eigen::Index i = 0; i < 3; ++i) {
        for (Eigen::Index j = 0; j < 5; ++j) s.w(i, j) = static_cast<float>(i * 10 + j) + 0.5f;
    }
    for (Eigen::Index i = 0; i < 2; ++i) {
        for (Eigen::Index j = 0; j < 3; ++j) {
            s.r(i, j) = static_cast<double>(i) - static_cast<double>(j) / 4;
        }
    }
    for (Eigen::Index k = 0; k < 4; ++k) s.bias(k) = 0.25 * static_cast<double>(k + 1);
    s.ids << -1, 0, 70000;
    s.h << Eigen::half(1.5f), Eigen::half(-2.0f);
    return s;
}

ckpt::metadata meta_at(std::int64_t step, double loss, int seconds) {
    ckpt::metadata m;
    m.step = step;
    m.epoch = step / 10;
    m.metrics = {{"loss", loss}, {"acc", 0.75}};
    m.tags = {{"run", "fixture"}};
    m.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000 + seconds));
    return m;
}

void flip_byte(const fs::path& p, std::uint64_t offset) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 0x10));
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
}

/// Ranks as threads: all_gather waits for every rank's bytes.
class thread_group {
public:
    explicit thread_group(int n) : n_(n), slots_(static_cast<std::size_t>(n)) {}
    std::vector<std::vector<std::byte>> gather(int rank, std::span<const std::byte> mine) {
        std::unique_lock lock(mutex_);
        const std::uint64_t round = round_;
        slots_[static_cast<std::size_t>(rank)].assign(mine.begin(), mine.end());
        if (++arrived_ == n_) {
            result_ = slots_;
            arrived_ = 0;
            ++round_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return round_ != round; });
        }
        return result_;
    }

private:
    int n_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::vector<std::byte>> slots_;
    std::vector<std::vector<std::byte>> result_;
    int arrived_ = 0;
    std::uint64_t round_ = 0;
};

class thread_communicator final : public ckpt::detail::communicator {
public:
    thread_communicator(thread_group& g, int rank, int size) : g_(g), rank_(rank), size_(size) {}
    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return size_; }
    std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) override {
        return g_.gather(rank_, mine);
    }

private:
    thread_group& g_;
    int rank_;
    int size_;
};

/// Rank r of 2: rows [2r, 2r + 2) of m (m(i, j) = 100 i + j), v = 1, 2, 3 everywhere, mine = r.
struct dist_state {
    int rank = 0;
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m{2, 3};
    Eigen::VectorXf v{3};
    Eigen::VectorXd mine{2};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ckpt::sharded("m", m,
                         {.offset = static_cast<std::uint64_t>(2 * rank), .global_rows = 4}),
           CEREAL_NVP(v), ckpt::rank_local("mine", mine));
    }
};

void write_distributed(const fs::path& dir) {
    thread_group group(2);
    std::vector<std::thread> ranks;
    std::exception_ptr failed[2];
    for (int r = 0; r < 2; ++r) {
        ranks.emplace_back([&, r] {
            try {
                thread_communicator comm(group, r, 2);
                dist_state s;
                s.rank = r;
                for (Eigen::Index i = 0; i < 2; ++i) {
                    for (Eigen::Index j = 0; j < 3; ++j) {
                        s.m(i, j) = static_cast<float>(100 * (2 * r + i) + j);
                    }
                }
                s.v << 1, 2, 3;
                s.mine << r, r + 0.5;
                ckpt::detail::distributed_save(comm, dir, ckpt::detail::walks_of<dist_state>, &s,
                                               meta_at(5, 0.5, 50), {});
            } catch (...) {
                failed[r] = std::current_exception();
            }
        });
    }
    for (auto& t : ranks) t.join();
    for (const auto& f : failed) {
        if (f) std::rethrow_exception(f);
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    try {
        const fs::path out = argv[1];
        fs::remove_all(out);
        fs::create_directories(out);

        const state_a a = make_a();
        ckpt::save(out / "a.ckpt", a, meta_at(20, 0.25, 0));
        ckpt::save(out / "a-again.ckpt", a, meta_at(20, 0.25, 1));
        state_a b = a;
        b.w(2, 4) = std::nextafter(b.w(2, 4), 1e9f);
        ckpt::save(out / "b.ckpt", b, meta_at(20, 0.25, 0));
        state_c c;
        c.w.setZero();
        c.r = a.r;
        c.bias2 = a.bias;
        c.ids = a.ids;
        c.h = a.h;
        ckpt::save(out / "c.ckpt", c, meta_at(20, 0.25, 0));

        ckpt::save(out / "damaged.ckpt", a, meta_at(20, 0.25, 0));
        const ckpt::info info = ckpt::inspect(out / "damaged.ckpt");
        for (const ckpt::tensor_info& t : info.tensors) {
            if (t.name == "w")
                flip_byte(out / "damaged.ckpt", 8 + info.header_bytes + t.offset + 5);
        }
        write_text(out / "text.ckpt", "this is not a checkpoint\n");

        state_bf16 bf;
        bf.b << Eigen::bfloat16(1.5f), Eigen::bfloat16(-0.25f), Eigen::bfloat16(3.0f);
        ckpt::save(out / "bf16.ckpt", bf, meta_at(1, 1.0, 0));

        // A manager's directory.
        const fs::path run = out / "run";
        {
            ckpt::manager_options options;
            options.prefix = "ckpt";
            ckpt::manager m(run, ckpt::every_steps(10) | ckpt::on_best("loss"), ckpt::keep_last(10),
                            options);
            const double losses[] = {0.5, 0.25, 0.375};
            for (int i = 0; i < 3; ++i) {
                state_a s = make_a();
                s.counter = 10 * (i + 1);
                const auto r = m.step(s, meta_at(10 * (i + 1), losses[i], i));
                if (!r) throw std::runtime_error("the fixture's manager did not save");
            }
        }
        fs::copy_file(run / "ckpt-000000000030.ckpt", run / "ckpt-000000000040.ckpt");
        fs::resize_file(run / "ckpt-000000000040.ckpt", 100); // cut inside its header
        write_text(run / "ckpt-000000000003.ckpt", "notes, not a checkpoint\n");
        write_text(run / "ckpt-000000000050.ckpt.tmp-99999-0", "half a save");
        write_text(run / "notes.txt", "my notes\n");
        fs::create_directories(run / "extra");

        write_distributed(out / "dist");
        std::printf("fixtures written to %s\n", out.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_fixtures: %s\n", e.what());
        return 1;
    }
}
