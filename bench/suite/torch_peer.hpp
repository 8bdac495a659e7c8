#pragma once
// The torch peer: bench/torch_peer.py in a child process, one JSON object per line. How it is
// started for a state shape, what it says about itself, and one operation of it in a fresh
// process for peak RSS.

#include "rss.hpp"
#include "state.hpp"

#include <rapidjson/document.h>

#include <cstdint>
#include <string>
#include <vector>

#ifndef CKPT_BENCH_TORCH_PEER
#define CKPT_BENCH_TORCH_PEER "bench/torch_peer.py"
#endif

namespace bench {

/// The number `key` of a JSON object, or `fallback`.
double number(const rapidjson::Value& v, const char* key, double fallback = -1.0);
/// The string `key` of a JSON object, or "".
std::string text(const rapidjson::Value& v, const char* key);

struct torch_config {
    bool enabled = true;
    std::string python = "/usr/bin/python3";
    std::string script = CKPT_BENCH_TORCH_PEER;
    std::string log;
};

/// The command line of the peer for a state of shape `s` and its checkpoint `file`.
std::vector<std::string> torch_argv(const torch_config& tc, const state_shape& s,
                                    const std::string& file);

/// What the torch side said about itself.
struct torch_info {
    std::string error; ///< empty when torch runs
    std::string version;
    std::string python;
    int threads = 0;
    std::uint64_t params = 0;
    std::uint64_t tensors = 0;
    std::uint64_t tensor_bytes = 0;
};

torch_info torch_info_of(const rapidjson::Value& v);

/// Ends the program when the torch peer fails in the middle of the runs, with its stderr.
[[noreturn]] void torch_failed(const torch_config& tc, const std::string& what);

/// One torch operation in a fresh Python process (--rss save|load).
rss_result torch_peak(const torch_config& tc, const state_shape& s, const std::string& file,
                      const char* op, torch_info& info);

} // namespace bench
