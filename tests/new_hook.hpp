#pragma once
// Replaces the global operator new and delete of the test program that includes this header (one
// translation unit per program), so a test can watch every allocation: `test::new_hook`, when
// set, is called with each size before the memory is taken. The whole unaligned family is
// replaced, so that no allocation pairs this delete with another allocator (the sanitizers bring
// their own).

#include <cstddef>
#include <cstdlib>
#include <new>

namespace test {
/// Called with the size of every operator new while set.
inline void (*new_hook)(std::size_t) = nullptr;
} // namespace test

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// new and delete below are a matching pair over malloc and free; GCC cannot see that.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    if (test::new_hook != nullptr) test::new_hook(n);
    return std::malloc(n == 0 ? 1 : n);
}
void* operator new(std::size_t n) {
    if (void* p = operator new(n, std::nothrow)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
    return operator new(n, t);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
