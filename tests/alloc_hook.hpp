#pragma once
// Watches every allocation of the test program that includes this header (one translation unit
// per program): operator new, std::vector and Eigen's aligned buffers all end in malloc, calloc
// or realloc. Without a sanitizer those are replaced here (forwarding to glibc's); under ASan or
// TSan, which bring their own allocator, the sanitizer's malloc hook is installed instead. Either
// way test::alloc_watch records the count, the total bytes and the largest allocation made while
// it is armed.

#include <atomic>
#include <cstddef>

namespace test {

/// What was allocated while armed (all relaxed atomics: the counts are read after the call).
struct alloc_stats {
    std::atomic<bool> armed{false};
    std::atomic<std::size_t> count{0};
    std::atomic<std::size_t> total{0};
    std::atomic<std::size_t> largest{0};

    void note(std::size_t n) noexcept {
        if (!armed.load(std::memory_order_relaxed)) return;
        count.fetch_add(1, std::memory_order_relaxed);
        total.fetch_add(n, std::memory_order_relaxed);
        std::size_t seen = largest.load(std::memory_order_relaxed);
        while (n > seen && !largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
        }
    }
};

inline alloc_stats alloc_watch;

} // namespace test

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CKPT_TEST_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CKPT_TEST_SANITIZER_ALLOCATOR 1
#endif
#endif

#ifdef CKPT_TEST_SANITIZER_ALLOCATOR
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void*,
                                                                  std::size_t),
                                                         void (*)(const volatile void*));
namespace test {
inline void sanitizer_malloc_hook(const volatile void*, std::size_t n) {
    alloc_watch.note(n);
}
inline void sanitizer_free_hook(const volatile void*) {}
// Installed before main(), once per program.
inline const int sanitizer_hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(sanitizer_malloc_hook, sanitizer_free_hook);
} // namespace test
#else
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
    test::alloc_watch.note(n);
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t k) {
    test::alloc_watch.note(n * k);
    return __libc_calloc(n, k);
}
void* realloc(void* p, std::size_t n) {
    test::alloc_watch.note(n);
    return __libc_realloc(p, n);
}
}
#endif

namespace test {

/// Runs `f` with the watch armed from zero; returns what it allocated.
template <class F>
void watch_allocations(F&& f) {
    alloc_watch.count = 0;
    alloc_watch.total = 0;
    alloc_watch.largest = 0;
    alloc_watch.armed = true;
    struct disarm {
        ~disarm() { alloc_watch.armed = false; }
    } guard;
    f();
}

} // namespace test
