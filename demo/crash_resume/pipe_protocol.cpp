#include "pipe_protocol.hpp"

#include "text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fcntl.h>
#include <unistd.h>

namespace demo {

void write_fully(int fd, const std::string& s) {
    const char* p = s.data();
    std::size_t n = s.size();
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) std::_Exit(3); // the parent is gone
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\t', ' ');
    return s;
}

// ---------------------------------------------------------------------------------------------
// pipe_listener

void pipe_listener::restored(std::int64_t step, const std::string& file,
                             const std::vector<ckpt::skipped_checkpoint>& skipped,
                             const std::vector<fs::path>& cleaned) {
    for (const auto& c : cleaned) write_fully(fd_, "C\t" + c.filename().string() + "\n");
    for (const auto& k : skipped) {
        write_fully(fd_, "K\t" + k.path.filename().string() + "\t" + std::to_string(k.error_id) +
                             "\t" + one_line(k.reason) + "\n");
    }
    write_fully(fd_, "R\t" + std::to_string(step) + "\t" + file + "\n");
}
void pipe_listener::stepped(std::int64_t step, double loss, std::optional<double> val) {
    write_fully(fd_, "T\t" + std::to_string(step) + "\t" + number(loss) + "\t" +
                         (val ? number(*val) : std::string("-")) + "\n");
}
void pipe_listener::saved(const save_record& r) {
    write_fully(fd_, "V\t" + std::to_string(r.step) + "\t" + number(r.seconds) + "\t" + r.file +
                         "\t" + join(r.reasons, ";") + "\t" + join(r.deleted, ";") + "\n");
}
void pipe_listener::finished(const finish_record& f) {
    write_fully(fd_, "D\t" + std::to_string(f.written) + "\t" + std::to_string(f.on_disk) + "\t" +
                         std::to_string(f.bytes_on_disk) + "\t" + number(f.save_seconds) + "\t" +
                         number(f.train_seconds) + "\n");
}

// ---------------------------------------------------------------------------------------------
// reporting_backend

int reporting_backend::open(const char* path, int flags, ::mode_t mode) {
    const bool dir = (flags & O_DIRECTORY) != 0;
    const bool creates = (flags & O_CREAT) != 0;
    report(dir ? "open-dir" : creates ? "open" : "open-read", path);
    const int fd = real_.open(path, flags, mode);
    if (fd >= 0 && dir) dir_fd_ = fd;
    return fd;
}
::ssize_t reporting_backend::write(int fd, const void* data, std::size_t n) {
    report("write", "");
    return real_.write(fd, data, n);
}
::ssize_t reporting_backend::pwrite(int fd, const void* data, std::size_t n, ::off_t offset) {
    report("pwrite", "");
    return real_.pwrite(fd, data, n, offset);
}
::ssize_t reporting_backend::pread(int fd, void* data, std::size_t n, ::off_t offset) {
    return real_.pread(fd, data, n, offset);
}
int reporting_backend::fsync(int fd) {
    report(fd == dir_fd_ ? "fsync-dir" : "fsync", "");
    return real_.fsync(fd);
}
int reporting_backend::close(int fd) {
    report(fd == dir_fd_ ? "close-dir" : "close", "");
    if (fd == dir_fd_) dir_fd_ = -1;
    return real_.close(fd);
}
int reporting_backend::rename(const char* from, const char* to) {
    report("rename", to);
    return real_.rename(from, to);
}
int reporting_backend::unlink(const char* path) {
    report("unlink", path);
    return real_.unlink(path);
}
int reporting_backend::file_size(int fd, std::uint64_t& size) {
    return real_.file_size(fd, size);
}
const void* reporting_backend::map(int fd, std::size_t size) {
    return real_.map(fd, size);
}
void reporting_backend::unmap(const void* data, std::size_t size) {
    real_.unmap(data, size);
}
int reporting_backend::allocate(int fd, std::uint64_t size) {
    report("allocate", "");
    return real_.allocate(fd, size);
}
void reporting_backend::start_writeback(int fd, std::uint64_t offset, std::uint64_t size) {
    real_.start_writeback(fd, offset, size);
}

void reporting_backend::report(const char* op, const char* path) {
    if (!armed_) return;
    const int saved_errno = errno;
    write_fully(status_fd_,
                std::string("IO\t") + op + "\t" + fs::path(path).filename().string() + "\n");
    if (go_fd_ >= 0) {
        char go = 0;
        while (::read(go_fd_, &go, 1) < 0 && errno == EINTR) {
        }
    }
    errno = saved_errno;
}

} // namespace demo
