#pragma once

// How ckpt is compiled: header-only (the default), or compiled, like spdlog's and Asio's
// separate compilation.
//
// - Header-only: every translation unit compiles the non-template definitions it uses, as
//   inline functions. Nothing to define.
// - Compiled: every translation unit defines CKPT_COMPILED and sees declarations only (and the
//   templates, which depend on the user's types); exactly one also defines CKPT_IMPLEMENTATION
//   and compiles the definitions, and the explicit instantiations of the built-in nn for float
//   and double. With CMake, link ckpt::ckpt_compiled, which carries CKPT_COMPILED and compiles
//   src/ckpt.cpp; with the single header, define both in one file of your own.
//
// CKPT_INLINE marks a non-template definition: `inline` in header-only mode, nothing in the
// implementation file. CKPT_DEFINITIONS is defined where the definitions are compiled.
#if defined(CKPT_IMPLEMENTATION)
#define CKPT_INLINE
#define CKPT_DEFINITIONS 1
#elif defined(CKPT_COMPILED)
#define CKPT_INLINE
#else
#define CKPT_INLINE inline
#define CKPT_DEFINITIONS 1
#endif
