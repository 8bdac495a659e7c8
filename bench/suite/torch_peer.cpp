#include "torch_peer.hpp"

#include "cleanup.hpp"
#include "python_process.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace bench {

double number(const rapidjson::Value& v, const char* key, double fallback) {
    if (!v.IsObject() || !v.HasMember(key) || !v[key].IsNumber()) return fallback;
    return v[key].GetDouble();
}
std::string text(const rapidjson::Value& v, const char* key) {
    if (!v.IsObject() || !v.HasMember(key) || !v[key].IsString()) return {};
    return v[key].GetString();
}

std::vector<std::string> torch_argv(const torch_config& tc, const state_shape& s,
                                    const std::string& file) {
    return {tc.python,  tc.script,
            "--rows",   std::to_string(s.rows),
            "--cols",   std::to_string(s.cols),
            "--layers", std::to_string(s.layers),
            "--dim",    std::to_string(s.dim),
            "--file",   file};
}

torch_info torch_info_of(const rapidjson::Value& v) {
    torch_info t;
    t.error = text(v, "error");
    t.version = text(v, "torch");
    t.python = text(v, "python");
    t.threads = static_cast<int>(number(v, "threads", 0));
    t.params = static_cast<std::uint64_t>(number(v, "params", 0));
    t.tensors = static_cast<std::uint64_t>(number(v, "tensors", 0));
    t.tensor_bytes = static_cast<std::uint64_t>(number(v, "tensor_bytes", 0));
    return t;
}

[[noreturn]] void torch_failed(const torch_config& tc, const std::string& what) {
    std::ifstream in(tc.log);
    std::stringstream log;
    log << in.rdbuf();
    die("torch_peer.py: " + what + "\n" + log.str());
}

rss_result torch_peak(const torch_config& tc, const state_shape& s, const std::string& file,
                      const char* op, torch_info& info) {
    std::vector<std::string> argv = torch_argv(tc, s, file);
    argv.insert(argv.end(), {"--rss", op});
    python_process p(argv, tc.log, false);
    const rapidjson::Document d = p.read();
    p.finish();
    info = torch_info_of(d);
    rss_result r;
    if (!info.error.empty()) {
        std::snprintf(r.error, sizeof r.error, "%s", info.error.c_str());
        return r;
    }
    r.ok = 1;
    r.reset_works = d.HasMember("reset_works") && d["reset_works"].IsTrue() ? 1 : 0;
    r.state_mib = static_cast<double>(info.tensor_bytes) / mib;
    r.rss_before_mib = number(d, "rss_before_mib");
    r.peak_mib = number(d, "peak_mib");
    return r;
}

} // namespace bench
