#!/usr/bin/env python3
"""What including ckpt costs a user's build: compile times against a hand-written baseline.

Every program below is compiled (-c, to /dev/null) --runs times, round-robin, so each round
holds one compile of each; a program's ratio is taken inside each round against the baseline
compiled in the same round, and min / median / max are over the rounds. Standard library only.

    bench/compile_time.py                      # g++ -O2, 5 rounds, from the source tree
    bench/compile_time.py --runs 9 --cxx clang++ --json out.json

Programs (written to a temporary directory):
  baseline       the README's example written by hand: <Eigen/Dense>, cereal's binary archive with
                 types/string.hpp, <fstream>, <random>, <sstream>; one struct with the same four
                 fields, the matrices through cereal::binary_data, the engine as its text; saved
                 and loaded once
  baseline-inc   the baseline's includes and an empty main()
  readme         the README's example: <ckpt/ckpt.hpp> (the single header), one struct,
                 ckpt::save and ckpt::load
  readme-include the same from include/ (<ckpt/ckpt.hpp> and the headers it includes)
  readme-core    the same from include/ with only <ckpt/checkpoint.hpp> and
                 <ckpt/types/random.hpp>: against readme-include, what parsing the rest of
                 ckpt.hpp (manager, async, nn, ...) costs a file that uses none of it
  include-only   <ckpt/ckpt.hpp> (the single header) and an empty main()
  types-1        one state type saved and loaded (the README's)
  types-4        four distinct state types saved and loaded in one translation unit
  readme-compiled  `readme` with CKPT_COMPILED defined: declarations only, the definitions are
                 compiled once elsewhere (see --impl)
  impl           the one translation unit of the compiled mode (CKPT_IMPLEMENTATION), once per
                 round; it is not part of any user's per-file cost

Targets (issue: fast to build): readme <= 2.0 x baseline; readme-compiled <= 1.5 x baseline;
(types-4 - types-1) / 3 <= 0.4 s per further state type.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASELINE = r"""
#include <Eigen/Dense>
#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

struct train_state {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    std::mt19937_64 rng;
    std::int64_t step = 0;

    template <class Archive>
    void save(Archive& ar) const {
        const std::int64_t rows = weight.rows(), cols = weight.cols(), n = bias.size();
        ar(rows, cols, n);
        ar(cereal::binary_data(weight.data(), sizeof(float) * static_cast<std::size_t>(weight.size())));
        ar(cereal::binary_data(bias.data(), sizeof(float) * static_cast<std::size_t>(bias.size())));
        std::ostringstream os;
        os << rng;
        ar(os.str(), step);
    }
    template <class Archive>
    void load(Archive& ar) {
        std::int64_t rows = 0, cols = 0, n = 0;
        ar(rows, cols, n);
        weight.resize(rows, cols);
        bias.resize(n);
        ar(cereal::binary_data(weight.data(), sizeof(float) * static_cast<std::size_t>(weight.size())));
        ar(cereal::binary_data(bias.data(), sizeof(float) * static_cast<std::size_t>(bias.size())));
        std::string text;
        ar(text, step);
        std::istringstream is(text);
        is >> rng;
    }
};

int main() {
    train_state s{Eigen::MatrixXf::Random(64, 32), Eigen::VectorXf::Zero(64), std::mt19937_64(1), 0};
    {
        std::ofstream f("last.bin", std::ios::binary);
        cereal::BinaryOutputArchive ar(f);
        ar(s);
    }
    train_state r;
    {
        std::ifstream f("last.bin", std::ios::binary);
        cereal::BinaryInputArchive ar(f);
        ar(r);
    }
    return static_cast<int>(r.step);
}
"""

BASELINE_INCLUDES = r"""
#include <Eigen/Dense>
#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <fstream>
#include <random>
#include <sstream>
int main() {}
"""

README_STATE = r"""
struct train_state {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    std::mt19937_64 rng;
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weight), CEREAL_NVP(bias), CEREAL_NVP(rng), CEREAL_NVP(step));
    }
};
"""

README_MAIN = r"""
int main() {
    train_state s{Eigen::MatrixXf::Random(64, 32), Eigen::VectorXf::Zero(64), std::mt19937_64(1), 0};
    ckpt::save("last.ckpt", s, {.step = s.step, .metrics = {{"loss", 0.25}}});
    train_state r;
    ckpt::metadata meta = ckpt::load("last.ckpt", r);
    return static_cast<int>(r.step + meta.step);
}
"""

# Three more state types a trainer might save next to the first: they share member types with
# it and each other, as real ones do.
MORE_STATES = r"""
struct layer {
    Eigen::MatrixXf weight;
    Eigen::VectorXf bias;
    template <class Archive>
    void serialize(Archive& ar) { ar(CEREAL_NVP(weight), CEREAL_NVP(bias)); }
};
struct model {
    std::vector<layer> layers;
    std::string name;
    template <class Archive>
    void serialize(Archive& ar) { ar(CEREAL_NVP(layers), CEREAL_NVP(name)); }
};
struct optimizer {
    std::int64_t step = 0;
    double lr = 1e-3;
    std::vector<Eigen::MatrixXf> m, v;
    template <class Archive>
    void serialize(Archive& ar) { ar(CEREAL_NVP(step), CEREAL_NVP(lr), CEREAL_NVP(m), CEREAL_NVP(v)); }
};
struct run_info {
    std::map<std::string, double> metrics;
    std::mt19937 rng;
    Eigen::Matrix4d pose = Eigen::Matrix4d::Identity();
    std::vector<std::int32_t> order;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(metrics), CEREAL_NVP(rng), CEREAL_NVP(pose), CEREAL_NVP(order));
    }
};
template <class T>
int round_trip(const char* path) {
    T s{};
    ckpt::save(path, s);
    T r{};
    return static_cast<int>(ckpt::load(path, r).step);
}
"""

TYPES_1_MAIN = r"""
int main() { return round_trip<train_state>("a.ckpt"); }
"""

TYPES_4_MAIN = r"""
int main() {
    return round_trip<train_state>("a.ckpt") + round_trip<model>("b.ckpt") +
           round_trip<optimizer>("c.ckpt") + round_trip<run_info>("d.ckpt");
}
"""

SINGLE = "#include <ckpt/ckpt.hpp>\n"
CORE = "#include <ckpt/checkpoint.hpp>\n#include <ckpt/types/random.hpp>\n#include <random>\n"


def programs(compiled: bool) -> dict[str, tuple[str, str, list[str]]]:
    """name -> (source, include root: 'single' or 'include', extra flags)."""
    out = {
        "baseline": (BASELINE, "single", []),
        "baseline-inc": (BASELINE_INCLUDES, "single", []),
        "readme": (SINGLE + README_STATE + README_MAIN, "single", []),
        "readme-include": (SINGLE + README_STATE + README_MAIN, "include", []),
        "readme-core": (CORE + README_STATE + README_MAIN, "include", []),
        "include-only": (SINGLE + "int main() {}\n", "single", []),
        "types-1": (SINGLE + README_STATE + MORE_STATES + TYPES_1_MAIN, "single", []),
        "types-4": (SINGLE + README_STATE + MORE_STATES + TYPES_4_MAIN, "single", []),
    }
    if compiled:
        out["readme-compiled"] = (SINGLE + README_STATE + README_MAIN, "single", ["-DCKPT_COMPILED"])
        out["impl"] = ("#define CKPT_IMPLEMENTATION\n" + SINGLE, "single", ["-DCKPT_COMPILED"])
    return out


def eigen_include() -> str:
    try:
        flags = subprocess.run(["pkg-config", "--cflags-only-I", "eigen3"], capture_output=True,
                               text=True, check=True).stdout.split()
        for f in flags:
            if f.startswith("-I"):
                return f[2:]
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/include/eigen3"


def compiled_mode_available() -> bool:
    text = (ROOT / "single_include" / "ckpt" / "ckpt.hpp").read_text(encoding="utf-8")
    return "CKPT_IMPLEMENTATION" in text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--opt", default="-O2", help="optimisation flag (default -O2)")
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5, at least 5 for a figure)")
    ap.add_argument("--only", default="", help="comma-separated program names")
    ap.add_argument("--json", default="", help="also write every time to this file")
    args = ap.parse_args()

    compiled = compiled_mode_available()
    progs = programs(compiled)
    if args.only:
        keep = set(args.only.split(",")) | {"baseline"}
        progs = {k: v for k, v in progs.items() if k in keep}
    eigen = eigen_include()
    roots = {"single": str(ROOT / "single_include"), "include": str(ROOT / "include")}

    work = Path(tempfile.mkdtemp(prefix="ckpt-compile-time-"))
    times: dict[str, list[float]] = {name: [] for name in progs}
    try:
        for name, (source, _, _) in progs.items():
            (work / f"{name}.cpp").write_text(source, encoding="utf-8")
        cxx_version = subprocess.run([args.cxx, "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]
        print(f"compiler: {cxx_version}, {args.opt}, {args.runs} rounds, "
              f"{os.cpu_count()} cores; seconds of wall time per compile", file=sys.stderr)
        for r in range(args.runs):
            for name, (_, root, extra) in progs.items():
                cmd = [args.cxx, "-std=c++20", args.opt, "-I", roots[root], "-I", eigen, *extra,
                       "-c", str(work / f"{name}.cpp"), "-o", os.devnull]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True)
                t1 = time.perf_counter()
                if done.returncode != 0:
                    print(f"compile of {name} failed:\n{done.stderr[:4000]}", file=sys.stderr)
                    return 1
                times[name].append(t1 - t0)
            print(f"round {r + 1}/{args.runs} done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = times["baseline"]
    rows = []
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base)]
        rows.append((name, min(ts), statistics.median(ts), max(ts), min(ratios),
                     statistics.median(ratios), max(ratios)))
    print(f"{'program':<16} {'min s':>7} {'median':>7} {'max':>7}   {'x baseline: min':>15} "
          f"{'median':>7} {'max':>7}")
    for name, lo, med, hi, rlo, rmed, rhi in rows:
        print(f"{name:<16} {lo:7.2f} {med:7.2f} {hi:7.2f}   {rlo:15.2f} {rmed:7.2f} {rhi:7.2f}")

    def median_ratio(name: str) -> float | None:
        if name not in times:
            return None
        return statistics.median([t / b for t, b in zip(times[name], base)])

    print()
    verdicts = []
    r = median_ratio("readme")
    if r is not None:
        verdicts.append(("readme / baseline (header-only, single header)", r, 2.0, "x"))
    r = median_ratio("readme-compiled")
    if r is not None:
        verdicts.append(("readme-compiled / baseline", r, 1.5, "x"))
    if "types-1" in times and "types-4" in times:
        per = statistics.median([(b - a) / 3 for a, b in zip(times["types-1"], times["types-4"])])
        verdicts.append(("each further state type", per, 0.4, "s"))
    if "readme-include" in times and "readme-core" in times:
        extra = statistics.median([a - b for a, b in zip(times["readme-include"],
                                                         times["readme-core"])])
        print(f"ckpt.hpp beyond checkpoint.hpp + types/random.hpp (manager, async, nn, ...): "
              f"{extra:+.2f} s (median of rounds)")
    if "include-only" in times and "baseline-inc" in times:
        extra = statistics.median([a - b for a, b in zip(times["include-only"], times["baseline-inc"])])
        print(f"including ckpt.hpp, against the baseline's includes: {extra:+.2f} s")
    for what, value, target, unit in verdicts:
        ok = "met" if value <= target else "MISSED"
        print(f"{what}: {value:.2f}{unit} (target <= {target}{unit}): {ok}")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "compiler": cxx_version, "opt": args.opt, "runs": args.runs,
            "machine": {"cores": os.cpu_count(), "system": platform.platform()},
            "times": times}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
