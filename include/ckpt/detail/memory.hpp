#pragma once

#include <ckpt/detail/config.hpp>

#include <cstddef>

namespace ckpt::detail {

/// Copies below this many bytes go through memcpy; from here up, copy_tensor_bytes streams.
inline constexpr std::size_t streaming_copy_bytes = std::size_t{64} << 10;

/// Copies `n` bytes of a tensor into the state's memory, as memcpy does. From
/// streaming_copy_bytes up, on x86-64, the stores are non-temporal: the destination's lines are
/// not read first and the copy does not evict what the cache holds. glibc makes that choice only
/// above a threshold tied to the cache size (tens of MiB on a large server part), so a tensor of a
/// few MiB was copied through the cache: 1.6x the time on the CI machine.
///
/// Non-temporal stores are weakly ordered: the calling thread reads the bytes back as it wrote
/// them, but before another thread may see them, call publish_tensor_copies() once (a fence).
/// A fence after every tensor cost a load of 4,096 tensors of 64 KiB about 1 ms: each one
/// waited for the write-combining buffers to drain.
void copy_tensor_bytes(void* dst, const void* src, std::size_t n) noexcept;

/// Orders the stores of every copy_tensor_bytes before it (an sfence on x86-64).
void publish_tensor_copies() noexcept;

/// Advice for `n` bytes that ckpt has just allocated and is about to fill entirely (a tensor that
/// loading gave a new size): every page of its page-aligned part is faulted in by one call
/// (Linux 5.14's MADV_POPULATE_WRITE) rather than one fault at a time; older kernels refuse the
/// advice, which is then skipped. Never used on memory the user's state already held. Below
/// 64 KiB it does nothing; errors are ignored (the copy faults the pages in anyway). No
/// transparent huge pages: in a virtual machine whose free memory goes back to its host, a huge
/// page comes back from the host whole, and an empty-state load of 256 MiB took 500 ms with them
/// against 122 ms without on the CI machine.
void prepare_new_storage(void* p, std::size_t n) noexcept;

} // namespace ckpt::detail

#ifdef CKPT_DEFINITIONS
#include <ckpt/detail/memory-inl.hpp>
#endif
