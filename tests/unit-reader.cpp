// ckpt::reader (a checkpoint's tensors without the state's type), inspect()'s progress and
// streamed verification, and save_safetensors(). Distributed checkpoints are read by the same
// reader: tests/tool/test_tool.py covers them through the ckpt command, tests/mpi the load.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <fstream>

namespace {

struct reader_state {
    Eigen::MatrixXf w = Eigen::MatrixXf(3, 5); // column-major: stored as F32 [5, 3]
    Eigen::Matrix<double, 2, 2, Eigen::RowMajor> r =
        Eigen::Matrix<double, 2, 2, Eigen::RowMajor>::Zero();
    std::int64_t counter = 41;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(w), CEREAL_NVP(r), CEREAL_NVP(counter));
    }
};

reader_state make_reader_state() {
    reader_state s;
    for (Eigen::Index i = 0; i < s.w.size(); ++i) s.w.data()[i] = static_cast<float>(i) * 0.5f;
    s.r << 1, 2, 3, 4;
    return s;
}

struct big_state {
    Eigen::VectorXf v = Eigen::VectorXf::Constant(5 << 20, 1.0f); // 20 MiB
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v));
    }
};

template <class T>
std::vector<std::byte> bytes_of(const T* p, std::size_t n) {
    std::vector<std::byte> out(n * sizeof(T));
    std::memcpy(out.data(), p, out.size());
    return out;
}

void flip_reader_byte(const std::filesystem::path& p, std::uint64_t offset) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 1));
}

} // namespace

TEST_CASE("reader: a file's tensors and values without the state's type") {
    const auto dir = test::scratch("reader-file");
    const reader_state s = make_reader_state();
    ckpt::metadata meta;
    meta.step = 12;
    ckpt::save(dir / "s.ckpt", s, meta);

    const ckpt::reader r(dir / "s.ckpt");
    CHECK_FALSE(r.distributed());
    CHECK(r.value_streams() == 1);
    CHECK(r.path() == dir / "s.ckpt");
    CHECK(r.info().checksum_verified);
    CHECK(r.info().meta.step == 12);
    // Everything but the checksum's verification is what inspect() says.
    ckpt::info inspected = ckpt::inspect(dir / "s.ckpt");
    inspected.checksum_verified = true;
    CHECK(r.info().tensors == inspected.tensors);
    CHECK(r.info().raw_metadata == inspected.raw_metadata);

    const ckpt::tensor_info* w = r.find("w");
    REQUIRE(w != nullptr);
    CHECK(w->shape == std::vector<std::uint64_t>{5, 3});
    CHECK(w->order == 'C');
    CHECK(w->rank == -1);
    CHECK(r.read(*w) == bytes_of(s.w.data(), 15));
    const ckpt::tensor_info* rr = r.find("r");
    REQUIRE(rr != nullptr);
    CHECK(r.read(*rr) == bytes_of(s.r.data(), 4));
    CHECK(r.find("nothing") == nullptr);

    // The values are the cereal stream a load decodes: loading them back gives the state.
    const std::vector<std::byte> values = r.values();
    CHECK(values.size() == r.info().value_bytes);
    reader_state back;
    back.counter = 0;
    ckpt::load(dir / "s.ckpt", back);
    CHECK(back.counter == 41);

    // A copy of the tensor_info works too (it is matched by value).
    const ckpt::tensor_info copy = *w;
    CHECK(r.read(copy) == bytes_of(s.w.data(), 15));
}

TEST_CASE("reader: wrong buffers, foreign tensors and value streams are usage errors") {
    const auto dir = test::scratch("reader-usage");
    ckpt::save(dir / "s.ckpt", make_reader_state());
    const ckpt::reader r(dir / "s.ckpt");
    const ckpt::tensor_info& w = *r.find("w");
    std::vector<std::byte> one_short(59);
    std::vector<std::byte> exact(60);
    std::vector<std::byte> one_over(61);
    CHECK_THROWS_WITH_AS(r.read(w, one_short), doctest::Contains("it has 60 bytes, the buffer 59"),
                         ckpt::usage_error);
    CHECK_NOTHROW(r.read(w, exact));
    CHECK_THROWS_AS(r.read(w, one_over), ckpt::usage_error);
    ckpt::tensor_info other = w;
    other.name = "v";
    try {
        (void)r.read(other);
        FAIL("no error");
    } catch (const ckpt::usage_error& e) {
        CHECK(e.id() == 601);
        CHECK(std::string(e.what()).find("has no tensor 'v'") != std::string::npos);
    }
    CHECK_NOTHROW((void)r.values(0));
    try {
        (void)r.values(1);
        FAIL("no error");
    } catch (const ckpt::usage_error& e) {
        CHECK(e.id() == 601);
    }
}

TEST_CASE("reader: verification, and what an unverified reader still refuses") {
    const auto dir = test::scratch("reader-verify");
    ckpt::save(dir / "s.ckpt", make_reader_state());
    const ckpt::info info = ckpt::inspect(dir / "s.ckpt");
    // One bit of w's data.
    flip_reader_byte(dir / "s.ckpt", 8 + info.header_bytes + info.tensors[0].offset + 1);
    try {
        const ckpt::reader r(dir / "s.ckpt");
        FAIL("no error");
    } catch (const ckpt::corrupt_error& e) {
        CHECK(e.id() == 204);
    }
    const ckpt::reader unverified(dir / "s.ckpt", {.verify = false});
    CHECK_FALSE(unverified.info().checksum_verified);
    CHECK(unverified.info().tensors.size() == 2);

    // A directory that is not a committed distributed checkpoint.
    std::filesystem::create_directories(dir / "dist-000000000001");
    try {
        const ckpt::reader r(dir / "dist-000000000001");
        FAIL("no error");
    } catch (const ckpt::io_error& e) {
        CHECK(e.id() == 101);
        CHECK(std::string(e.what()).find("without manifest.json") != std::string::npos);
    }
    CHECK_THROWS_AS(ckpt::reader(dir / "missing.ckpt"), ckpt::io_error);
}

TEST_CASE("inspect and reader: verification is streamed in slices and reports its progress") {
    const auto dir = test::scratch("reader-progress");
    ckpt::save(dir / "big.ckpt", big_state{});
    const std::uint64_t size = std::filesystem::file_size(dir / "big.ckpt");
    std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
    ckpt::inspect_options options;
    options.verify = true;
    options.progress = [&](std::uint64_t done, std::uint64_t total) {
        calls.emplace_back(done, total);
    };
    CHECK(ckpt::inspect(dir / "big.ckpt", options).checksum_verified);
    // 8 MiB slices: 8, 16, then the rest.
    const std::uint64_t slice = std::uint64_t{8} << 20;
    REQUIRE(calls.size() == 3);
    CHECK(calls[0] == std::pair{slice, size});
    CHECK(calls[1] == std::pair{2 * slice, size});
    CHECK(calls[2] == std::pair{size, size});

    // No progress without verification (only the header is read).
    calls.clear();
    options.verify = false;
    (void)ckpt::inspect(dir / "big.ckpt", options);
    CHECK(calls.empty());

    // A damaged byte in any slice, including the last one, is found; the progress callback may
    // stop a verification by throwing.
    flip_reader_byte(dir / "big.ckpt", size - 1);
    options.verify = true;
    try {
        (void)ckpt::inspect(dir / "big.ckpt", options);
        FAIL("no error");
    } catch (const ckpt::corrupt_error& e) {
        CHECK(e.id() == 204);
    }
    struct stop {};
    ckpt::reader_options ro;
    ro.progress = [](std::uint64_t, std::uint64_t) { throw stop{}; };
    CHECK_THROWS_AS(ckpt::reader(dir / "big.ckpt", ro), stop);
}

TEST_CASE("save_safetensors writes the tensors alone, aligned, atomically") {
    const auto dir = test::scratch("reader-safetensors");
    const reader_state s = make_reader_state();
    ckpt::save(dir / "s.ckpt", s);
    const ckpt::reader r(dir / "s.ckpt");
    const std::uint64_t bytes = ckpt::save_safetensors(r, dir / "plain.safetensors");
    CHECK(bytes == std::filesystem::file_size(dir / "plain.safetensors"));

    const ckpt::reader plain(dir / "plain.safetensors", {.verify = false});
    CHECK(plain.info().format_version == 0);
    CHECK(plain.info().raw_metadata.empty());
    CHECK(plain.info().value_bytes == 0);
    REQUIRE(plain.info().tensors.size() == 2);
    // The header holds no __metadata__ at all, and the tensors by element size (largest first).
    std::ifstream in(dir / "plain.safetensors", std::ios::binary);
    std::uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string header(static_cast<std::size_t>(n), '\0');
    in.read(header.data(), static_cast<std::streamsize>(n));
    CHECK(header.find("__metadata__") == std::string::npos);
    CHECK(header.find("__ckpt_values__") == std::string::npos);
    CHECK(plain.info().tensors[0].name == "r");
    CHECK(plain.info().tensors[0].offset == 0);
    CHECK(plain.info().tensors[1].name == "w");
    CHECK(plain.info().tensors[1].offset == 32);
    CHECK(plain.read(*plain.find("w")) == r.read(*r.find("w")));
    CHECK(plain.read(*plain.find("r")) == r.read(*r.find("r")));
    CHECK(bytes == 8 + n + 32 + 60);

    // Without __metadata__, every member of the header is a tensor: the cap counts them all.
    for (const std::uint64_t cap : {1, 2, 3}) {
        ckpt::inspect_options lim;
        lim.limits.max_tensors = cap;
        if (cap < 2) {
            try {
                (void)ckpt::inspect(dir / "plain.safetensors", lim);
                FAIL("no error");
            } catch (const ckpt::limit_error& e) {
                CHECK(e.id() == 502);
                CHECK(std::string(e.what()).find("declares 2 tensors, more than the limit of 1") !=
                      std::string::npos);
            }
        } else {
            CHECK(ckpt::inspect(dir / "plain.safetensors", lim).tensors.size() == 2);
        }
    }

    // A directory that does not exist: an error, and nothing written.
    CHECK_THROWS_AS(ckpt::save_safetensors(r, dir / "no" / "x.safetensors"), ckpt::io_error);
}
