#pragma once

#include <ckpt/ckpt.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace test {

/// The real POSIX calls, each forwarded: a test's backend derives from it and overrides only the
/// calls it changes.
class posix_forwarding : public ckpt::io::backend {
public:
    int open(const char* path, int flags, ::mode_t mode) override {
        return real_.open(path, flags, mode);
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        return real_.write(fd, data, n);
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        return real_.pwrite(fd, data, n, offset);
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        return real_.pread(fd, data, n, offset);
    }
    int fsync(int fd) override { return real_.fsync(fd); }
    int close(int fd) override { return real_.close(fd); }
    int rename(const char* from, const char* to) override { return real_.rename(from, to); }
    int unlink(const char* path) override { return real_.unlink(path); }
    int file_size(int fd, std::uint64_t& size) override { return real_.file_size(fd, size); }
    const void* map(int fd, std::size_t size) override { return real_.map(fd, size); }
    void unmap(const void* data, std::size_t size) override { real_.unmap(data, size); }
    int allocate(int fd, std::uint64_t size) override { return real_.allocate(fd, size); }
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override {
        real_.start_writeback(fd, offset, size);
    }

protected:
    ckpt::io::posix_backend real_;
};

/// Built with ThreadSanitizer, which does not support a child of a multi-threaded fork() that
/// does more than async-signal-safe calls (starts threads, destroys an async manager): such
/// cases run in the other builds only.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
#else
inline constexpr bool under_tsan = false;
#endif

/// A fresh, empty folder under the test's working directory.
inline std::filesystem::path scratch(const std::string& name) {
    const auto dir = std::filesystem::current_path() / ("scratch-" + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

/// Same shape and the same bytes (so NaN payloads and -0.0 count).
template <class A, class B>
bool bits_equal(const Eigen::PlainObjectBase<A>& a, const Eigen::PlainObjectBase<B>& b) {
    static_assert(std::is_same_v<typename A::Scalar, typename B::Scalar>);
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           (a.size() == 0 ||
            std::memcmp(a.data(), b.data(),
                        static_cast<std::size_t>(a.size()) * sizeof(typename A::Scalar)) == 0);
}

inline std::vector<std::byte> read_file(const std::filesystem::path& p) {
    std::vector<std::byte> out(std::filesystem::file_size(p));
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (f == nullptr) return {};
    const std::size_t n = std::fread(out.data(), 1, out.size(), f);
    std::fclose(f);
    out.resize(n);
    return out;
}

inline void write_file(const std::filesystem::path& p, const std::vector<std::byte>& bytes) {
    std::FILE* f = std::fopen(p.c_str(), "wb");
    if (f == nullptr) return;
    if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

/// Recomputes and stores a ckpt file's checksum, so a deliberate change reaches the parser.
inline void fix_checksum(std::vector<std::byte>& file) {
    const std::size_t at = ckpt::detail::checksum_digits_offset;
    std::memset(file.data() + at, '0', 16);
    const std::string hex =
        ckpt::detail::to_hex(ckpt::detail::hash_bytes(file.data(), file.size()));
    std::memcpy(file.data() + at, hex.data(), 16);
}

/// A file made of `json` (which must start like ckpt's headers) and `data`, padded and with a
/// correct checksum: the way to reach the checks behind the integrity gate.
/// With `ckpt_checksum` false it is a plain safetensors file.
inline std::vector<std::byte> craft(std::string json, const std::vector<std::byte>& data = {},
                                    bool ckpt_checksum = true) {
    json.append((8 - json.size() % 8) % 8, ' ');
    std::vector<std::byte> file(8 + json.size());
    const std::uint64_t n = json.size();
    std::memcpy(file.data(), &n, 8);
    std::memcpy(file.data() + 8, json.data(), json.size());
    file.insert(file.end(), data.begin(), data.end());
    if (ckpt_checksum) fix_checksum(file);
    return file;
}

/// The start of a ckpt header up to the first entry: checksum placeholder and version.
inline std::string header_start(int version = ckpt::format_version) {
    return std::string(ckpt::detail::checksum_prefix) + std::string(16, '0') +
           R"(","ckpt.format_version":")" + std::to_string(version) + R"("})";
}

/// The id of the ckpt::error `f` throws, or 0.
template <class F>
int error_id(F&& f) {
    try {
        f();
    } catch (const ckpt::error& e) {
        return e.id();
    }
    return 0;
}

/// The message of the ckpt::error `f` throws, or "".
template <class F>
std::string error_text(F&& f) {
    try {
        f();
    } catch (const ckpt::error& e) {
        return e.what();
    }
    return {};
}

/// Every byte of a state as ckpt sees it (tensors and values), for "unchanged" checks.
template <class T>
std::vector<std::byte> state_bytes(const T& state) {
    ckpt::metadata fixed;
    fixed.time = std::chrono::system_clock::time_point(std::chrono::seconds(1));
    return ckpt::save_to_memory(state, fixed);
}

} // namespace test
