// The compiled mode's one translation unit (the ckpt::ckpt_compiled target): every non-template
// definition of ckpt, compiled once, and the built-in nn instantiated for float and double.
// Every other file of the program sees declarations only (CKPT_COMPILED, which the target
// carries). See include/ckpt/detail/config.hpp.
#ifndef CKPT_COMPILED
#error "src/ckpt.cpp is compiled with CKPT_COMPILED defined (use the ckpt::ckpt_compiled target)"
#endif
#define CKPT_IMPLEMENTATION
#include <ckpt/ckpt.hpp>
#include <ckpt/distributed.hpp>
#include <ckpt/distributed_manager.hpp>
