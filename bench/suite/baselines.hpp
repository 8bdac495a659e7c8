#pragma once
// The baselines: what the machine does without ckpt. Pre-faulted buffers, write+fsync (plain,
// and the way ckpt writes), pread, memcpy of the state, XXH3_64bits; each timed call returns its
// seconds.

#include "state.hpp"

#include <cstddef>
#include <string>

namespace bench {

/// Which pages a baseline buffer gets. Page size changes copy speed by a third here (TLB), so
/// each baseline writes to memory of the kind its ckpt counterpart writes to.
enum class pages {
    plain, ///< like a state's Eigen buffers: malloc'd, 4 KiB pages (THP only if "always")
    huge   ///< like async_saver's staging buffers: madvise(MADV_HUGEPAGE)
};

/// Anonymous memory touched page by page before use, so no timed copy pays a page fault.
class prefaulted {
public:
    prefaulted(std::size_t n, pages kind);
    prefaulted(const prefaulted&) = delete;
    prefaulted& operator=(const prefaulted&) = delete;
    ~prefaulted();
    [[nodiscard]] std::byte* data() const noexcept { return data_; }

private:
    std::size_t size_;
    std::byte* data_ = nullptr;
};

/// Untimed, before each timed write: removes the file the write will replace and syncs the file
/// system, so that every writer starts on an idle disk and pays for its own work only. On a file
/// system mounted with `discard` (ext4 here), freeing a file's blocks sends a discard to the
/// device at the next journal commit, which the next fsync, whoever makes it, would wait for.
void fresh_target(const std::string& path);

/// Untimed: syncs the file system of directory `dir` (syncfs), removing nothing; before a save
/// that replaces a file, or a manager's step.
void sync_directory(const std::string& dir);

/// open(O_CREAT|O_TRUNC|O_WRONLY), one write loop from one buffer, fsync, close.
double raw_write(const std::string& path, const std::byte* p, std::size_t n);

/// The same bytes written the way ckpt's save writes them: the file reserved first
/// (posix_fallocate), written in 4 MiB slices, write-back started every 32 MiB
/// (sync_file_range(SYNC_FILE_RANGE_WRITE)), then fsync and close.
double raw_write_reserved(const std::string& path, const std::byte* p, std::size_t n);

/// open, pread loop of `n` bytes into a preallocated buffer, close.
double raw_read(const std::string& path, std::byte* p, std::size_t n);

/// Opens a written file and fsyncs it, as a careful user of a stream library does.
void fsync_path(const std::string& path);

/// memcpy of every tensor of the state, back to back, into `out`.
double copy_state(const train_state& st, std::byte* out);

/// XXH3_64bits over `n` bytes, as xxHash builds it for this target.
double hash_bytes(const std::byte* p, std::size_t n);

} // namespace bench
