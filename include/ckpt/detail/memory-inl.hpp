#pragma once

#include <ckpt/detail/memory.hpp>

#include <cstdint>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace ckpt::detail {

CKPT_INLINE void copy_tensor_bytes(void* dst, const void* src, std::size_t n) noexcept {
    if (n == 0) return; // an empty tensor's pointers may be null, which memcpy may not take
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (n >= streaming_copy_bytes) {
        // SSE2 (every x86-64 has it), written with the compilers' builtins: <immintrin.h> costs
        // every including translation unit a noticeable share of its compile time.
        using v2di = long long __attribute__((__vector_size__(16)));
        auto* out = static_cast<unsigned char*>(dst);
        const auto* in = static_cast<const unsigned char*>(src);
        const auto misalign = static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(out) & 63);
        const std::size_t head = misalign == 0 ? 0 : 64 - misalign;
        std::memcpy(out, in, head); // the stores below are to whole, aligned lines
        out += head;
        in += head;
        n -= head;
        const std::size_t body = n & ~std::size_t{63};
        for (std::size_t i = 0; i < body; i += 64) {
            v2di a;
            v2di b;
            v2di c;
            v2di d;
            std::memcpy(&a, in + i, 16);
            std::memcpy(&b, in + i + 16, 16);
            std::memcpy(&c, in + i + 32, 16);
            std::memcpy(&d, in + i + 48, 16);
#if defined(__clang__)
            __builtin_nontemporal_store(a, reinterpret_cast<v2di*>(out + i));
            __builtin_nontemporal_store(b, reinterpret_cast<v2di*>(out + i + 16));
            __builtin_nontemporal_store(c, reinterpret_cast<v2di*>(out + i + 32));
            __builtin_nontemporal_store(d, reinterpret_cast<v2di*>(out + i + 48));
#else
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i), a);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 16), b);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 32), c);
            __builtin_ia32_movntdq(reinterpret_cast<v2di*>(out + i + 48), d);
#endif
        }
        std::memcpy(out + body, in + body, n - body); // publish_tensor_copies() fences
        return;
    }
#endif
    std::memcpy(dst, src, n);
}

CKPT_INLINE void publish_tensor_copies() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_sfence();
#endif
}

CKPT_INLINE void prepare_new_storage(void* p, std::size_t n) noexcept {
#if defined(__linux__)
    if (n < streaming_copy_bytes) return;
    const auto begin = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t end = begin + n;
    static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t page_begin = (begin + page - 1) & ~(page - 1);
    const std::uintptr_t page_end = end & ~(page - 1);
    constexpr int populate_write = 23; // MADV_POPULATE_WRITE, missing from older headers
    if (page_end > page_begin) {
        (void)::madvise(reinterpret_cast<void*>(page_begin), page_end - page_begin, populate_write);
    }
#else
    (void)p;
    (void)n;
#endif
}

} // namespace ckpt::detail
