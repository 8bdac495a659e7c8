// How a load writes tensors into memory: copy_tensor_bytes (non-temporal stores from 64 KiB up)
// copies exactly what memcpy would, at every alignment and around the threshold; the backend
// maps a file without populating it; prepare_new_storage faults in memory ckpt has just
// allocated in one call, and is used only on storage that loading gave a new size; a large file
// loaded into an empty state is hashed while it decodes, with the same results and errors.
#include "test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace memory_test {

namespace fs = std::filesystem;
using ckpt::detail::copy_tensor_bytes;
using ckpt::detail::prepare_new_storage;
using ckpt::detail::streaming_copy_bytes;

/// Bytes that differ at every position (a copy that drops, repeats or shifts a line shows).
std::vector<unsigned char> pattern(std::size_t n, unsigned seed) {
    std::vector<unsigned char> v(n);
    std::uint32_t x = seed * 2654435761U + 1;
    for (auto& b : v) {
        x = x * 1664525U + 1013904223U;
        b = static_cast<unsigned char>(x >> 24);
    }
    return v;
}

TEST_CASE("copy_tensor_bytes copies exactly, below, at and above the streaming threshold") {
    const std::size_t t = streaming_copy_bytes;
    REQUIRE(t == 65536);
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{63}, t - 1, t, t + 1,
                                t + 63, t + 64, 3 * t + 17}) {
        for (const std::size_t dst_offset : {0, 1, 15, 16, 48, 63}) {
            for (const std::size_t src_offset : {0, 4, 33}) {
                CAPTURE(n);
                CAPTURE(dst_offset);
                CAPTURE(src_offset);
                const std::vector<unsigned char> src =
                    pattern(n + src_offset, static_cast<unsigned>(n + dst_offset));
                // Guard bytes on both sides of the destination must stay as they are.
                std::vector<unsigned char> dst(n + dst_offset + 128, 0xA5);
                copy_tensor_bytes(dst.data() + dst_offset, src.data() + src_offset, n);
                // (An empty source vector's data() may be null: no memcmp of nothing.)
                CHECK((n == 0 ||
                       std::memcmp(dst.data() + dst_offset, src.data() + src_offset, n) == 0));
                std::size_t guards_changed = 0;
                for (std::size_t i = 0; i < dst_offset; ++i) guards_changed += dst[i] != 0xA5;
                for (std::size_t i = dst_offset + n; i < dst.size(); ++i)
                    guards_changed += dst[i] != 0xA5;
                CHECK(guards_changed == 0);
            }
        }
    }
}

/// A state of one tensor of `n` bytes, loaded into an empty state and into a shaped one.
struct byte_state {
    Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1> v;
    Eigen::MatrixXf m;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(v), CEREAL_NVP(m));
    }
};

TEST_CASE("a load gives back every byte of tensors around 64 KiB, into new and into held memory") {
    const fs::path file = test::scratch("memory") / "bytes.ckpt";
    for (const Eigen::Index n : {Eigen::Index{65535}, Eigen::Index{65536}, Eigen::Index{65537},
                                 Eigen::Index{(4 << 20) + 3}}) {
        CAPTURE(n);
        byte_state saved;
        const std::vector<unsigned char> bytes =
            pattern(static_cast<std::size_t>(n), static_cast<unsigned>(n));
        saved.v.resize(n);
        std::memcpy(saved.v.data(), bytes.data(), bytes.size());
        saved.m = Eigen::MatrixXf::Random(513, 257); // 527,364 bytes, streamed
        ckpt::save(file, saved);

        byte_state fresh; // empty: the load allocates both tensors
        ckpt::load(file, fresh);
        CHECK(fresh.v == saved.v);
        CHECK(fresh.m == saved.m);

        byte_state held; // shaped: the load writes into the memory the state holds
        held.v.setZero(n);
        held.m.setZero(513, 257);
        const std::uint8_t* v_before = held.v.data();
        const float* m_before = held.m.data();
        ckpt::load(file, held);
        CHECK(held.v == saved.v);
        CHECK(held.m == saved.m);
        CHECK(held.v.data() == v_before);
        CHECK(held.m.data() == m_before);
    }
}

/// A state of one byte tensor and a step: its file is `bytes.size()` plus a fixed overhead.
struct sized_state {
    std::vector<std::uint8_t> bytes;
    Eigen::MatrixXf m;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(bytes), CEREAL_NVP(m), CEREAL_NVP(step));
    }
};

/// A state whose file is exactly `file_bytes` long.
sized_state state_of_file_size(std::uint64_t file_bytes) {
    sized_state s;
    s.m = Eigen::MatrixXf::Random(64, 33);
    s.step = 77;
    const auto size_with = [&](std::size_t n) {
        s.bytes = std::vector<std::uint8_t>(n, 0);
        return static_cast<std::uint64_t>(ckpt::save_to_memory(s).size());
    };
    const std::size_t guess = static_cast<std::size_t>(file_bytes - (size_with(4096) - 4096));
    for (std::size_t n = guess - 64; n < guess + 64; ++n) {
        if (size_with(n) != file_bytes) continue;
        const std::vector<unsigned char> p = pattern(n, static_cast<unsigned>(n));
        s.bytes.assign(p.begin(), p.end());
        return s;
    }
    FAIL("no length gives a file of " << file_bytes << " bytes");
    return s;
}

TEST_CASE("a large load into an empty state checks the checksum while it decodes, and keeps "
          "the strong guarantee") {
    // From deferred_checksum_bytes up, a state that holds no tensor memory is decoded while a
    // second thread hashes the file; below it, and for a state that holds tensor memory, the
    // checksum is checked first. Either way: the same values, the same errors, nothing changed
    // by a damaged file.
    const fs::path file = test::scratch("memory") / "deferred.ckpt";
    const std::uint64_t at = ckpt::detail::deferred_checksum_bytes;
    REQUIRE(at == std::uint64_t{16} << 20);
    for (const std::uint64_t size : {std::uint64_t{1} << 20, at - 1, at, at + 1}) {
        CAPTURE(size);
        const sized_state saved = state_of_file_size(size);
        ckpt::save(file, saved);
        REQUIRE(fs::file_size(file) == size);
        {
            sized_state empty;
            ckpt::load(file, empty);
            CHECK(empty.bytes == saved.bytes);
            CHECK(empty.m == saved.m);
            CHECK(empty.step == 77);
        }
        const std::vector<std::byte> good = test::read_file(file);
        const auto header = static_cast<std::size_t>(std::to_integer<unsigned>(good[0]) |
                                                     std::to_integer<unsigned>(good[1]) << 8U |
                                                     std::to_integer<unsigned>(good[2]) << 16U);
        // Where the value stream starts: its entry's first data offset, in the header's JSON.
        const std::string json(reinterpret_cast<const char*>(good.data()) + 8, header);
        const std::size_t entry = json.find("\"__ckpt_values__\"");
        REQUIRE(entry != std::string::npos);
        const std::size_t offsets = json.find("\"data_offsets\":[", entry);
        REQUIRE(offsets != std::string::npos);
        const std::size_t values_at =
            8 + header +
            std::stoull(json.substr(offsets + std::string("\"data_offsets\":[").size()));
        // One byte damaged: in the header's JSON, in the first tensor's bytes, in the last byte
        // of the file, and in the value stream's first tag (which makes decoding fail before
        // the checksum is checked, if it is checked last: the error must still be 204).
        for (const std::size_t at_byte : {std::size_t{8} + header / 2, header + 8 + 100,
                                          static_cast<std::size_t>(size) - 1, values_at}) {
            CAPTURE(at_byte);
            std::vector<std::byte> bad = good;
            bad[at_byte] ^= std::byte{0x20};
            test::write_file(file, bad);
            sized_state empty;
            empty.step = 5;
            try {
                ckpt::load(file, empty);
                FAIL("a damaged file loaded");
            } catch (const ckpt::corrupt_error& e) {
                CHECK(e.id() == ckpt::errc::corrupt_checksum);
            }
            CHECK(empty.bytes.empty());
            CHECK(empty.m.size() == 0);
            CHECK(empty.step == 5);
            sized_state held = saved; // holds tensor memory: verified first
            held.bytes.assign(held.bytes.size(), 1);
            try {
                ckpt::load(file, held);
                FAIL("a damaged file loaded");
            } catch (const ckpt::corrupt_error& e) {
                CHECK(e.id() == ckpt::errc::corrupt_checksum);
            }
            CHECK(held.bytes == std::vector<std::uint8_t>(saved.bytes.size(), 1));
        }
        // Not ckpt's at all (a plain safetensors file's header): the error of verifying first.
        std::vector<std::byte> plain = good;
        plain[9] = std::byte{'x'};
        test::write_file(file, plain);
        sized_state empty;
        try {
            ckpt::load(file, empty);
            FAIL("a file without ckpt's header loaded");
        } catch (const ckpt::corrupt_error& e) {
            CHECK(e.id() == ckpt::errc::corrupt_not_ckpt);
        }
        CHECK(empty.bytes.empty());
    }
}

/// Whether this kernel takes MADV_POPULATE_WRITE (Linux 5.14).
bool kernel_populates() {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    const bool ok = ::madvise(p, page, 23) == 0;
    ::munmap(p, page);
    return ok;
}

/// How many pages of [p, p + n) (page-aligned) are in memory.
std::size_t resident_pages(unsigned char* p, std::size_t n) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> flags(n / page);
    REQUIRE(::mincore(p, n, flags.data()) == 0);
    return static_cast<std::size_t>(
        std::count_if(flags.begin(), flags.end(), [](unsigned char f) { return (f & 1U) != 0; }));
}

TEST_CASE("prepare_new_storage faults in the page-aligned part of new memory in one call") {
    // Residency, not fault counts: a sanitizer's shadow memory faults too.
    if (!kernel_populates()) {
        MESSAGE("this kernel refuses MADV_POPULATE_WRITE: nothing to test");
        return;
    }
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t size = std::size_t{8} << 20;
    const auto fresh_region = [](std::size_t bytes) {
        void* r =
            ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(r != MAP_FAILED);
        return static_cast<unsigned char*>(r);
    };
    unsigned char* base = fresh_region(size);
    REQUIRE(resident_pages(base, size) == 0);
    // An Eigen buffer starts 16 bytes into a page: the first and last pages are partial, and
    // only the whole pages in between are faulted in: [base + 1 page, base + size - 2 pages).
    prepare_new_storage(base + 16, size - 2 * page);
    CHECK(resident_pages(base, page) == 0);
    CHECK(resident_pages(base + page, size - 3 * page) == size / page - 3);
    CHECK(resident_pages(base + size - 2 * page, 2 * page) == 0);
    ::munmap(base, size);

    // Below 64 KiB it gives no advice; from 64 KiB up it does.
    const std::size_t small_size = 32 * page;
    unsigned char* small = fresh_region(small_size);
    prepare_new_storage(small, streaming_copy_bytes - 1);
    CHECK(resident_pages(small, small_size) == 0);
    prepare_new_storage(small, streaming_copy_bytes);
    CHECK(resident_pages(small, small_size) == streaming_copy_bytes / page);
    ::munmap(small, small_size);
}

TEST_CASE("prepare_new_storage leaves contents as they are, and ignores what it cannot advise") {
    std::vector<unsigned char> held = pattern(std::size_t{1} << 20, 7);
    const std::vector<unsigned char> copy = held;
    prepare_new_storage(held.data(), held.size());
    CHECK(held == copy);
    prepare_new_storage(nullptr, 0);
    prepare_new_storage(held.data() + 1, 100); // below the threshold: nothing
    CHECK(held == copy);
}

TEST_CASE("the backend maps a file that is in the page cache, and reads it the same") {
    const fs::path file = test::scratch("memory") / "mapped.bin";
    const std::vector<unsigned char> bytes = pattern(std::size_t{3} << 20, 11);
    {
        std::ofstream out(file, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()),
                  static_cast<std::streamsize>(bytes.size()));
    }
    ckpt::io::backend& io = ckpt::io::default_backend();
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const void* m = io.map(fd, bytes.size());
    REQUIRE(m != nullptr); // just written: every page is resident
    CHECK(std::memcmp(m, bytes.data(), bytes.size()) == 0);
    io.unmap(m, bytes.size());

    // Out of the page cache (written back, then dropped): the mapping is populated first, or
    // refused, and the bytes read are the file's either way.
    REQUIRE(::fsync(fd) == 0);
    REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    const void* cold = io.map(fd, bytes.size());
    if (cold != nullptr) {
        CHECK(std::memcmp(cold, bytes.data(), bytes.size()) == 0);
        io.unmap(cold, bytes.size());
    } else {
        CHECK(errno == EAGAIN);
    }
    ::close(fd);
    const ckpt::detail::file_bytes read(io, file.string());
    REQUIRE(read.size() == bytes.size());
    CHECK(std::memcmp(read.data(), bytes.data(), bytes.size()) == 0);
}

} // namespace memory_test
