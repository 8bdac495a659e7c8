#!/bin/sh
# Runs each fuzz target on a temporary copy of the committed corpus and the regression inputs
# (fuzz/corpus/ and tests/data/fuzz/, which never grow), and prints executions, exec/s, coverage
# and findings.
#   fuzz/run.sh -seed=1 -runs=200000   # the CI smoke: a fixed seed and count, so it is the same
#                                      # run on every machine, whatever its load
#   fuzz/run.sh -runs=1000000          # the long mode: a random seed per target (exploration)
#   fuzz/run.sh 480                    # 480 seconds per target
# Environment: CKPT_FUZZ_BIN (default build/fuzz/fuzz), CKPT_FUZZ_OUT (findings, default
# build/fuzz/findings), CKPT_FUZZ_TARGETS (default: all four),
# CKPT_FUZZ_PARALLEL=1 runs the targets at the same time (under nice; not with -seed).
# Exit status: non-zero when any target found something (crash, sanitizer report, allocation
# above the bound, timeout, leak).
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${CKPT_FUZZ_BIN:-build/fuzz/fuzz}
out=${CKPT_FUZZ_OUT:-$PWD/build/fuzz/findings}
seed=
case ${1:-} in
    -seed=*) seed=$1; shift ;;
esac
budget=${1:?usage: fuzz/run.sh [-seed=S] <seconds|-runs=N>}
case $budget in
    -runs=*) limit=$budget ;;
    *[!0-9]*) echo "run.sh: budget must be seconds or -runs=N" >&2; exit 2 ;;
    *) limit=-max_total_time=$budget ;;
esac
if [ -n "$seed" ] && [ "$limit" = "-max_total_time=$budget" ]; then
    echo "run.sh: a fixed -seed needs -runs=N (a time budget depends on the machine's load)" >&2
    exit 2
fi
# A fixed seed makes the same run only if nothing else varies from one process to the next.
# Three things do: some inlined library code branches on addresses (std::string compares a
# source pointer with its own buffer), so the targets run with address-space randomization off
# (setarch -R, util-linux); the operands libFuzzer records from comparisons (-use_cmp,
# -use_memmem) vary between runs even then, so a seeded run mutates without them; and every
# second (-reload=1) libFuzzer rereads the corpus directory and runs again each file its corpus
# does not hold (a seed that added no coverage), an execution more at a moment that depends on
# the machine's speed, after which the mutations differ, so a seeded run never rereads (-reload=0;
# nothing else writes the private copy anyway). Measured here: three seeded runs of 20,000
# mutate_fuzzer executions end with three different coverage counts with -use_cmp on, and with
# the same coverage and corpus with both off; with a seed that adds no coverage, 150,000
# load_fuzzer executions end with cov 11035 on an idle machine and 11017 on a loaded one, and
# with the same under -reload=0.
norandom=
if [ -n "$seed" ]; then
    seed="$seed -use_cmp=0 -use_memmem=0 -reload=0"
    if setarch "$(uname -m)" -R true 2>/dev/null; then
        norandom="setarch $(uname -m) -R"
    else
        echo "run.sh: setarch -R is not permitted here; a seeded run may still vary" >&2
        exit 2
    fi
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Inputs are small (the seeds are < 20 KB), so -max_len=65536. One allocation above 2 MiB is a
# finding (libFuzzer's -malloc_limit_mb); inside each input the targets also abort on one above
# 2 * input + 1 MiB (fuzz_common.hpp). RSS above 2 GiB is a finding too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$here/ubsan.supp}

run_one() { # target
    mkdir -p "$work/$1" "$out/$1"
    # manifest_fuzzer starts from distributed checkpoints' manifests only; the others from
    # checkpoint files.
    if [ "$1" = manifest_fuzzer ]; then
        cp "$here"/corpus-manifest/* "$work/$1/"
    else
        cp "$here"/corpus/* "$here"/../tests/data/fuzz/* "$work/$1/"
    fi
    # import_fuzzer also starts from plain safetensors files (tests/python/write_torch_mlp.py's).
    if [ "$1" = import_fuzzer ]; then cp "$here"/corpus-import/* "$work/$1/"; fi
    before=$(ls "$work/$1" | wc -l)
    ls "$out/$1" | wc -l >"$work/$1.found0"
    # shellcheck disable=SC2086 # $norandom and $seed are words or nothing
    nice $norandom "$bin/ckpt_$1" "$work/$1" -max_len=65536 -malloc_limit_mb=2 -rss_limit_mb=2048 \
        -timeout=10 -dict="$here/ckpt.dict" -print_final_stats=1 -artifact_prefix="$out/$1/" \
        $seed "$limit" >"$work/$1.log" 2>&1
    echo $? >"$work/$1.rc"
    echo $(( $(ls "$work/$1" | wc -l) - before )) >"$work/$1.grew"
}

targets=${CKPT_FUZZ_TARGETS:-load_fuzzer mutate_fuzzer import_fuzzer manifest_fuzzer}
if [ "${CKPT_FUZZ_PARALLEL:-0}" = 1 ] && [ -z "$seed" ]; then
    for t in $targets; do run_one "$t" & done
    wait
else
    for t in $targets; do run_one "$t"; done
fi

status=0
printf '%-14s %10s %12s %8s %7s %7s %9s %8s %s\n' target seed executions exec/s cov ft corpus+ \
    findings rc
for t in $targets; do
    log=$work/$t.log
    used=$(sed -n 's/^INFO: Seed: *//p' "$log" | head -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    found=$(( $(ls "$out/$t" | wc -l) - $(cat "$work/$t.found0") ))
    rc=$(cat "$work/$t.rc")
    printf '%-14s %10s %12s %8s %7s %7s %9s %8s %s\n' "$t" "${used:-?}" "${execs:-?}" \
        "${rate:-?}" "${cov:-?}" "${ft:-?}" "$(cat "$work/$t.grew")" "$found" "$rc"
    if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
        status=1
        cp "$log" "$out/$t.log"
        echo "--- $t: see $out/$t.log and $out/$t/" >&2
        grep -E 'ERROR|SUMMARY|==ckpt-fuzz==|runtime error|deadly signal' "$log" | head -5 >&2
    fi
done
exit $status
