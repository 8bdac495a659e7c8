#pragma once
// The trainer child's side of the pipe to the parent: it reports on a pipe, one line a record,
// fields separated by tabs (the parent reads them in child_process.cpp).
//
//   R <step> <file>                resumed from (step 0, empty file: a fresh start)
//   C <file>                       a temporary file of a dead save, removed at start
//   K <file> <error id> <message>  a checkpoint restore passed over
//   T <step> <loss> <val or ->     a step done
//   IO <op> <file>                 a file-system call a save is about to make
//   V <step> <s> <file> <reasons> <deleted>    a save committed (lists joined by ';')
//   D <written> <on disk> <bytes> <save s> <train s>
//   E <message>                    an error; the trainer exits 1

#include "common.hpp"
#include "listener.hpp"

#include <ckpt/ckpt.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace demo {

/// Writes all of `s` to `fd`; exits (status 3) when the parent is gone.
void write_fully(int fd, const std::string& s);

/// `s` with its newlines and tabs made spaces: one field of a record.
std::string one_line(std::string s);

/// A training run's reports, as records on the pipe.
class pipe_listener final : public listener {
public:
    explicit pipe_listener(int fd) : fd_(fd) {}
    void restored(std::int64_t step, const std::string& file,
                  const std::vector<ckpt::skipped_checkpoint>& skipped,
                  const std::vector<fs::path>& cleaned) override;
    void stepped(std::int64_t step, double loss, std::optional<double> val) override;
    void saved(const save_record& r) override;
    void finished(const finish_record& f) override;

private:
    int fd_;
};

/// The POSIX backend, reporting each call on the status pipe once armed; in lockstep it then
/// waits for one byte from the parent before making the call (the parent may SIGKILL instead).
class reporting_backend final : public ckpt::io::backend {
public:
    reporting_backend(int status_fd, int go_fd) : status_fd_(status_fd), go_fd_(go_fd) {}

    void arm(bool on) noexcept { armed_ = on; }

    int open(const char* path, int flags, ::mode_t mode) override;
    ::ssize_t write(int fd, const void* data, std::size_t n) override;
    ::ssize_t pwrite(int fd, const void* data, std::size_t n, ::off_t offset) override;
    ::ssize_t pread(int fd, void* data, std::size_t n, ::off_t offset) override;
    int fsync(int fd) override;
    int close(int fd) override;
    int rename(const char* from, const char* to) override;
    int unlink(const char* path) override;
    int file_size(int fd, std::uint64_t& size) override;
    const void* map(int fd, std::size_t size) override;
    void unmap(const void* data, std::size_t size) override;
    int allocate(int fd, std::uint64_t size) override;
    void start_writeback(int fd, std::uint64_t offset, std::uint64_t size) override;

private:
    void report(const char* op, const char* path);

    ckpt::io::posix_backend real_;
    int status_fd_;
    int go_fd_;
    bool armed_ = false;
    int dir_fd_ = -1;
};

} // namespace demo
