#pragma once
// powerloss_backend: a ckpt::io::backend that runs the real POSIX calls on one directory and
// models what a power loss would keep of them. Per file, the durable content (as of its last
// fsync) and the current one; for the directory, the durable name table (as of its last fsync)
// and the current one (creates, renames, unlinks). crash_at(k) stops the world at call k: that
// call and every later one fails with EIO and does nothing, as if the machine had died there.
// crash() then rewrites the real directory to its durable view: names never made durable
// vanish, contents go back to their last fsync (optionally with the last unsynced write torn:
// its first half kept). Switches make the file or the directory fsync a no-op, to show a test
// that uses this backend fails when ckpt leaves one out.

#include <ckpt/ckpt.hpp> // the single header has only this path

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace test {

/// Test-only switches of powerloss_backend.
struct powerloss_switches {
    bool file_fsync = true; ///< false: fsync of a file makes nothing durable
    bool dir_fsync = true;  ///< false: fsync of the directory makes no name durable
    bool tear = false;      ///< at a crash, the last unsynced write is half kept
};

class powerloss_backend final : public ckpt::io::backend {
public:
    using switches = powerloss_switches;
    static constexpr std::size_t never = std::numeric_limits<std::size_t>::max();

    /// Everything in `dir` now counts as durable.
    explicit powerloss_backend(std::filesystem::path dir, switches s = {})
        : dir_(std::filesystem::absolute(dir).lexically_normal()), switches_(s) {
        snapshot();
    }

    /// From now on, calls 0..k-1 run and call k stops the world (never: no crash).
    void crash_at(std::size_t k) {
        calls_ = 0;
        crash_at_ = k;
    }
    [[nodiscard]] std::size_t calls() const noexcept { return calls_; }
    [[nodiscard]] bool stopped() const noexcept { return stopped_; }

    /// The power goes out: the directory becomes its durable view, which is then all there is.
    void crash() {
        for (const auto& [name, ino] : names_) ::unlink((dir_ / name).c_str());
        for (const auto& [name, ino] : durable_names_) {
            const inode& f = inodes_[ino];
            std::vector<std::byte> content = f.durable;
            if (switches_.tear && ino == last_written_ && f.torn) {
                content = f.current; // the unsynced writes reached the disk, the last one half
                const auto& t = *f.torn;
                std::memcpy(content.data() + t.offset, t.old_bytes.data(), t.old_bytes.size());
                content.resize(std::max(t.old_size, t.offset + t.old_bytes.size()));
            }
            std::FILE* out = std::fopen((dir_ / name).c_str(), "wb");
            if (out == nullptr) continue;
            if (!content.empty()) std::fwrite(content.data(), 1, content.size(), out);
            std::fclose(out);
        }
        snapshot();
    }

    int open(const char* path, int flags, ::mode_t mode) override {
        if (!gate()) return dead();
        if ((flags & O_DIRECTORY) != 0) {
            const int fd = ::open(path, flags, mode);
            if (fd >= 0 && here(path) == ".") dir_fds_.insert(fd);
            return fd;
        }
        const std::string name = here(path);
        struct ::stat st {};
        const bool existed = ::lstat(path, &st) == 0;
        const int fd = ::open(path, flags, mode);
        if (fd < 0 || name.empty() || name == ".") return fd;
        auto it = names_.find(name);
        if (it == names_.end()) {
            inode f;
            if (existed) f.current = f.durable = read_all(path); // not made through us: durable
            inodes_.push_back(std::move(f));
            it = names_.emplace(name, inodes_.size() - 1).first;
        }
        if ((flags & O_TRUNC) != 0) inodes_[it->second].current.clear();
        fds_[fd] = it->second;
        return fd;
    }
    ::ssize_t write(int fd, const void* data, std::size_t n) override {
        if (!gate()) return dead();
        const ::off_t at = ::lseek(fd, 0, SEEK_CUR);
        const ::ssize_t w = ::write(fd, data, n);
        if (w > 0 && at >= 0) wrote(fd, data, static_cast<std::size_t>(w), at);
        return w;
    }
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override {
        if (!gate()) return dead();
        const ::ssize_t w = ::pwrite(fd, data, n, offset);
        if (w > 0) wrote(fd, data, static_cast<std::size_t>(w), offset);
        return w;
    }
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override {
        if (!gate()) return dead();
        return ::pread(fd, data, n, offset);
    }
    int fsync(int fd) override {
        if (!gate()) return dead();
        if (dir_fds_.count(fd) != 0) {
            if (switches_.dir_fsync) durable_names_ = names_;
            return 0;
        }
        if (const auto it = fds_.find(fd); it != fds_.end()) {
            if (switches_.file_fsync) {
                inodes_[it->second].durable = inodes_[it->second].current;
                inodes_[it->second].torn.reset();
            }
            return 0;
        }
        return ::fsync(fd);
    }
    int close(int fd) override {
        fds_.erase(fd);
        dir_fds_.erase(fd);
        if (!gate()) {
            ::close(fd); // the descriptor of a dead process goes away all the same
            return dead();
        }
        return ::close(fd);
    }
    int rename(const char* from, const char* to) override {
        if (!gate()) return dead();
        const int r = ::rename(from, to);
        if (r != 0) return r;
        const std::string a = here(from);
        const std::string b = here(to);
        if (const auto it = names_.find(a); it != names_.end() && !b.empty()) {
            const std::size_t ino = it->second;
            names_.erase(it);
            names_[b] = ino;
        }
        return 0;
    }
    int unlink(const char* path) override {
        if (!gate()) return dead();
        const int r = ::unlink(path);
        if (r == 0) names_.erase(here(path));
        return r;
    }
    int file_size(int fd, std::uint64_t& size) override {
        if (!gate()) return dead();
        return posix_.file_size(fd, size);
    }
    const void* map(int fd, std::size_t size) override {
        if (!gate()) {
            errno = EIO;
            return nullptr;
        }
        return posix_.map(fd, size);
    }
    void unmap(const void* data, std::size_t size) override { posix_.unmap(data, size); }
    int allocate(int fd, std::uint64_t size) override {
        if (!gate()) return dead();
        const int r = posix_.allocate(fd, size);
        if (const auto it = fds_.find(fd); r == 0 && it != fds_.end()) {
            auto& cur = inodes_[it->second].current;
            if (cur.size() < size) cur.resize(static_cast<std::size_t>(size));
        }
        return r;
    }
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override {
        if (gate()) posix_.start_writeback(fd, offset, size); // advisory: nothing durable
    }

private:
    struct torn_write {
        std::size_t offset = 0;           ///< where the lost second half starts
        std::vector<std::byte> old_bytes; ///< what it overwrote
        std::size_t old_size = 0;         ///< the file's size before the write
    };
    struct inode {
        std::vector<std::byte> durable;
        std::vector<std::byte> current;
        std::optional<torn_write> torn; ///< the last write since the last fsync
    };

    bool gate() {
        if (stopped_) return false;
        if (calls_ == crash_at_) {
            stopped_ = true;
            return false;
        }
        ++calls_;
        return true;
    }
    static int dead() {
        errno = EIO;
        return -1;
    }

    /// The name of `path` in the directory, "." for the directory itself, "" elsewhere.
    std::string here(const char* path) const {
        const auto p = std::filesystem::absolute(path).lexically_normal();
        if (p == dir_ || p == dir_ / "") return ".";
        return p.parent_path() == dir_ ? p.filename().string() : std::string();
    }

    void wrote(int fd, const void* data, std::size_t n, ::off_t at) {
        const auto it = fds_.find(fd);
        if (it == fds_.end()) return;
        inode& f = inodes_[it->second];
        const auto off = static_cast<std::size_t>(at);
        torn_write t;
        t.old_size = f.current.size();
        t.offset = off + n / 2;
        if (f.current.size() < off + n) f.current.resize(off + n);
        t.old_bytes.assign(f.current.begin() + static_cast<std::ptrdiff_t>(t.offset),
                           f.current.begin() + static_cast<std::ptrdiff_t>(off + n));
        if (t.old_size < off + n) {
            // Bytes past the old end were not there before: they read as zeros once torn.
            for (std::size_t i = std::max(t.old_size, t.offset); i < off + n; ++i)
                t.old_bytes[i - t.offset] = std::byte{0};
        }
        std::memcpy(f.current.data() + off, data, n);
        f.torn = std::move(t);
        last_written_ = it->second;
    }

    static std::vector<std::byte> read_all(const std::filesystem::path& p) {
        std::vector<std::byte> out;
        std::FILE* f = std::fopen(p.c_str(), "rb");
        if (f == nullptr) return out;
        std::byte buf[65536];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
            out.insert(out.end(), buf, buf + n);
        std::fclose(f);
        return out;
    }

    void snapshot() {
        inodes_.clear();
        names_.clear();
        fds_.clear();
        dir_fds_.clear();
        for (const auto& de : std::filesystem::directory_iterator(dir_)) {
            if (!de.is_regular_file()) continue;
            inode f;
            f.current = f.durable = read_all(de.path());
            inodes_.push_back(std::move(f));
            names_[de.path().filename().string()] = inodes_.size() - 1;
        }
        durable_names_ = names_;
        last_written_ = never;
        stopped_ = false;
        crash_at_ = never;
        calls_ = 0;
    }

    std::filesystem::path dir_;
    switches switches_;
    ckpt::io::posix_backend posix_;
    std::vector<inode> inodes_;
    std::map<std::string, std::size_t> names_;         ///< the directory as it is now
    std::map<std::string, std::size_t> durable_names_; ///< as of its last fsync
    std::map<int, std::size_t> fds_;
    std::set<int> dir_fds_;
    std::size_t last_written_ = never;
    std::size_t calls_ = 0;
    std::size_t crash_at_ = never;
    bool stopped_ = false;
};

} // namespace test
