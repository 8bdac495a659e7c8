// libFuzzer target: arbitrary bytes into ckpt's loader (load into fixed states, and inspect).
// Most inputs stop at the checksum gate; mutate_fuzzer.cpp gets behind it.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::run_input(data, size);
    return 0;
}
