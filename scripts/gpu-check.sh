#!/usr/bin/env bash
# The GPU check in one command, for a bare GPU machine lent for a few minutes (docs/GPU.md):
#
#   scripts/gpu-check.sh [--kit FILE | --from-build DIR] [--out DIR] [--phases LIST]
#                        [--budget-scale X] [--benches LIST] [--bench-filter REGEX]
#                        [--suites REGEX] [--no-compile] [--shared DIR] [--cpu-dry-run]
#
#   --kit FILE        the device kit (scripts/device-kit.sh); default device-kit.tar.xz
#   --out DIR         where the raw results go; default $OUT, else gpu-check-out
#   --phases LIST     comma-separated subset of: setup,tests,memcheck,racecheck,bench,baselines,
#                     profile (setup always runs); default all but profile
#   --budget-scale X  multiplies every phase's time budget (e.g. 0.5 for a quick rerun)
#   --benches LIST    comma-separated benchmark binaries for the bench phase, in that order;
#                     default bench_nn,bench_nn_loss,bench_train,bench_predict,bench_synth,bench_nn_kernels
#   --bench-filter R  the benchmarks' --benchmark_filter (default '/cuda/'), for a short rerun
#   --suites REGEX    only the test suites whose whole name matches (extended regex), in the tests
#                     and sanitizer phases, for a short rerun
#   --no-compile      skips PyTorch's torch.compile baselines (minutes of compilation) and
#                     ends the baselines phase when the eager runs are done
#   --shared DIR      a carried copy of ../shared (its data/ folder): the tests that read the
#                     published priors, peer NIfTI files and Keras models run too (they skip
#                     without it, and ../shared does not travel to a device machine)
#   --from-build DIR  use a build folder's binaries in place of a kit (the dry run's CTest test)
#   --cpu-dry-run     runs what needs no GPU (unpacking, finding libraries, listing and splitting
#                     the tests, one small CPU suite through the runner, the summary) and prints
#                     the commands of the GPU phases instead of running them
#
# Phases, each with a time budget (seconds, before --budget-scale; measured on an H100 on
# 2026-11-26: setup 6, tests 56, memcheck 10, racecheck 5, bench 52, baselines about 200 with
# both compiled runs; on an H200 on 2026-12-04: setup 8, tests 62-72, memcheck 14, racecheck 10,
# bench_nn 37, bench_synth 16, bench_train 5, bench_predict 21, bench_nn_kernels under 60,
# baselines 77 without the compiled runs). The budgets sum to 510 s (660 with profile), more
# than a device call's 600 s with the unpacking and summary: use --no-compile (about 330 s in
# all) and pick phases for a run with profile. A phase that overruns is cut and reported, and
# the others still run:
#   setup      30  unpack the kit; find cuDNN and cudart (the toolkit, then PyTorch's nvidia/*/lib
#                  wheels); nvidia-smi, the library versions, the GPU's name
#   tests      90  the whole suite, one process per test suite (a device fault cannot spill into
#                  other suites), CUDA variants enabled: a skipped CUDA test counts as a failure
#   memcheck   60  compute-sanitizer memcheck over every suite with CUDA tests, synchronous
#                  launches (INFANT_CUDA_SYNC=1), the suites without cuDNN first
#   racecheck  30  compute-sanitizer racecheck over the generator and the reduction kernels
#   bench     150  the cuda rows of bench_nn (cuDNN's candidates logged), bench_nn_loss,
#                  bench_train, bench_predict, bench_synth, bench_nn_kernels (or --benches)
#   baselines 150  bench/baselines/unet_torch.py on the same GPU: fp32, bf16 autocast, then
#                  torch.compile with what is left
#   profile   150  only when asked for: Nsight Compute (ncu) over one generator sample and
#                  about one bf16 and one fp32 training step: each kernel's time and its
#                  share of the DRAM and SM peaks, summarised per kernel name (profile.log)
# The summary (test counts, sanitizer findings, each benchmark against its PyTorch baseline) is
# printed last. At most 8 files go to the output folder: summary.txt, setup.txt, tests.log,
# sanitizer.log, bench.log, bench.json, baselines.json, profile.log.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kit_archive=$here/device-kit.tar.xz
out=${OUT:-gpu-check-out}
phases=setup,tests,memcheck,racecheck,bench,baselines
scale=1
dry=0
compile=1
benches=bench_nn,bench_nn_loss,bench_train,bench_predict,bench_synth,bench_nn_kernels
bench_filter=/cuda/
suites='.*'
from_build=
while [ $# -gt 0 ]; do
    case "$1" in
        --kit) kit_archive=$(realpath -m "$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        --phases) phases=setup,$2; shift 2 ;;
        --budget-scale) scale=$2; shift 2 ;;
        --benches) benches=$2; shift 2 ;;
        --bench-filter) bench_filter=$2; shift 2 ;;
        --suites) suites=$2; shift 2 ;;
        --no-compile) compile=0; shift ;;
        --cpu-dry-run) dry=1; shift ;;
        --from-build) from_build=$(realpath "$2"); shift 2 ;;
        --shared) export INFANT_SHARED_DIR=$(realpath "$2"); shift 2 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$from_build" ] || [ -f "$kit_archive" ] ||
    { echo "gpu-check: no kit at $kit_archive (build it with make device-kit)" >&2; exit 2; }
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
jobs=$(nproc)

# --- bookkeeping -------------------------------------------------------------------------------
declare -a phase_rows=()
wanted() { [[ ",$phases," == *",$1,"* ]]; }
budget() { awk -v b="$1" -v s="$scale" 'BEGIN { printf "%d", (b * s < 5 ? 5 : b * s) }'; }
# run_phase NAME BUDGET FUNCTION: runs the function in a process group cut at the budget.
run_phase() {
    local name=$1 seconds t0 rc status
    seconds=$(budget "$2")
    if ! wanted "$name"; then phase_rows+=("$name|skipped (not asked for)|-"); return; fi
    echo "== $name (budget ${seconds} s)"
    t0=$(date +%s)
    # pipefail: a phase that pipes a tool's output (ncu | cut) fails when the tool does.
    timeout -k 10 "$seconds" bash -c "set -o pipefail; $(declare -f); $3" >"$work/$name.console" 2>&1
    rc=$?
    cat "$work/$name.console"
    case $rc in
        0) status=ok ;;
        124 | 137) status="CUT at ${seconds} s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    phase_rows+=("$name|$status|$(($(date +%s) - t0)) s")
}
export work out jobs dry scale compile benches bench_filter

# --- setup -------------------------------------------------------------------------------------
kit=$work/device-kit
if [ -n "$from_build" ]; then
    # The same layout, pointing into a build folder (its binaries find their libraries as built).
    mkdir -p "$kit/bin" "$kit/baselines"
    ln -s "$from_build/infant-synthseg" "$from_build/tests/infant_tests" "$kit/bin/"
    for b in "$from_build"/bench/bench_*; do [ -f "$b" ] && [ -x "$b" ] && ln -s "$b" "$kit/bin/"; done
    ln -s "$here"/bench/baselines/*.py "$here/bench/compare.py" "$kit/baselines/"
    echo "from build $from_build" >"$kit/MANIFEST"
else
    tar -xJf "$kit_archive" -C "$work" || { echo "gpu-check: cannot unpack $kit_archive" >&2; exit 1; }
fi
export kit
[ -x "$kit/bin/infant_tests" ] || { echo "gpu-check: $kit_archive holds no bin/infant_tests" >&2; exit 1; }

# Folders holding CUDA's runtime and cuDNN: the toolkit's first, then PyTorch's wheels.
find_cuda_libraries() {
    local dirs=() d sp
    for d in ${CUDNN_ROOT:+$CUDNN_ROOT/lib $CUDNN_ROOT/lib64} /usr/local/cuda/lib64 /usr/local/cuda/lib \
        /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
        [ -d "$d" ] && ls "$d"/libcudart.so.* "$d"/libcudnn.so.* >/dev/null 2>&1 && dirs+=("$d")
    done
    for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        for d in "$sp"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
    done
    local IFS=:
    echo "${dirs[*]}"
}
cuda_dirs=$(find_cuda_libraries)
export LD_LIBRARY_PATH=${cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$kit/bin:$PATH INFANT_CLI_PATH=$kit/bin/infant-synthseg

setup() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host $(uname -n), $(nproc) cores"
    sed -n '1,3p' "$kit/MANIFEST"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    echo "library folders searched (in order): ${LD_LIBRARY_PATH:-none}"
    for lib in libcudart.so libcudnn.so; do
        echo "$lib: $(IFS=:; for d in $LD_LIBRARY_PATH; do ls "$d"/$lib.* 2>/dev/null; done | head -3 | tr '\n' ' ')"
    done
    echo "--- ldd infant-synthseg"
    ldd "$kit/bin/infant-synthseg"
    echo "--- infant-synthseg --version"
    "$kit/bin/infant-synthseg" --version
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
        torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' \
        2>&1 | tail -1 || true  # no PyTorch here: said by the line above, not a failed set-up
}
run_phase setup 30 setup
cp "$work/setup.console" "$out/setup.txt"

# --- tests -------------------------------------------------------------------------------------
# Suites, one per line, as gtest lists them ("Suite." lines; parameterised ones once).
"$kit/bin/infant_tests" --gtest_list_tests 2>/dev/null | awk '/^[A-Za-z_]/ && $1 ~ /\.$/ {sub(/\.$/, "", $1); print $1}' |
    sort -u | grep -E "^($suites)\$" >"$work/suites"
"$kit/bin/infant_tests" --gtest_list_tests 2>/dev/null | awk '
    /^[A-Za-z_]/ {suite = $1; next}
    /^  / && $1 ~ /\/cuda$/ {sub(/\.$/, "", suite); print suite}' | sort -u |
    grep -E "^($suites)\$" >"$work/cuda_suites"
# Suites that reach cuDNN: sanitized last, so a slow cuDNN run cannot starve the others.
grep -E '^(Conv|NnUNet|CheckpointResume|PredictOnDevice|TrainOnDevice)' "$work/cuda_suites" >"$work/cudnn_suites"
{ grep -vxF -f "$work/cudnn_suites" "$work/cuda_suites"; cat "$work/cudnn_suites"; } >"$work/sanitize_order"
grep -E '^(Synth(Field|Deform|Paint|Intensity|Generator)|NnLoss|NnBatchNorm|NnPool)$' "$work/cuda_suites" >"$work/race_suites"
echo "$(wc -l <"$work/suites") test suites, $(wc -l <"$work/cuda_suites") with CUDA variants"

# run_suite SUITE: one gtest process for one suite; its log in $work/logs/SUITE.log.
run_suite() {
    mkdir -p "$work/logs"
    OMP_NUM_THREADS=1 "$kit/bin/infant_tests" --gtest_filter="$1.*" >"$work/logs/$1.log" 2>&1
    echo "$1 exit $?" >>"$work/logs/$1.log"
}
tests() {
    if [ "$dry" = 1 ]; then
        echo "dry run: would run each of the $(wc -l <"$work/suites") suites in its own process, $jobs at once:"
        echo "  OMP_NUM_THREADS=1 infant_tests --gtest_filter='SUITE.*'"
        echo "dry run: running the Device and DeviceBuffers suites through the same runner"
        printf 'Device\nDeviceBuffers\n' | xargs -P "$jobs" -I{} bash -c 'run_suite {}'
    else
        xargs -P "$jobs" -I{} bash -c 'run_suite {}' <"$work/suites"
    fi
}
export -f run_suite
run_phase tests 90 tests
# Counts from the logs gtest wrote (a suite cut by the budget has no summary line: "unfinished").
summarise_tests() {
    local passed=0 failed=0 skipped=0 cuda_skipped=0 unfinished=0 log
    for log in "$work"/logs/*.log; do
        [ -f "$log" ] || continue
        grep -q '^\[==========\] .* ran\.' "$log" || unfinished=$((unfinished + 1))
        passed=$((passed + $(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | head -1 | grep . || echo 0)))
        failed=$((failed + $(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | head -1 | grep . || echo 0)))
        skipped=$((skipped + $(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | head -1 | grep . || echo 0)))
    done
    # Each skipped test is named twice (as it runs, and in the list at the end): count names.
    cuda_skipped=$(cat "$work"/logs/*.log 2>/dev/null | grep -oE '^\[  SKIPPED \] [^ ]*/cuda' | sort -u | wc -l)
    local details
    details=$(grep -h '^\[  FAILED  \] [A-Za-z].*' "$work"/logs/*.log 2>/dev/null | sort -u | head -40)
    if [ "$dry" = 0 ] && [ "$cuda_skipped" != 0 ]; then
        # On a GPU machine a skipped CUDA variant is a failure.
        failed=$((failed + cuda_skipped))
        details+=$'\n'"CUDA variants skipped on a GPU machine (counted as failures):"$'\n'
        details+=$(cat "$work"/logs/*.log | grep -oE '^\[  SKIPPED \] [^ ]*/cuda' | sort -u | head -10)
    fi
    echo "passed $passed, failed $failed, skipped $skipped (CUDA variants skipped: $cuda_skipped), suites unfinished: $unfinished"
    [ -z "$details" ] || echo "$details"
}
{
    summarise_tests
    echo
    # Failing suites' logs first, then the rest.
    for log in $(grep -l '^\[  FAILED  \]' "$work"/logs/*.log 2>/dev/null) $(grep -L '^\[  FAILED  \]' "$work"/logs/*.log 2>/dev/null); do
        echo "######## $(basename "$log" .log)"
        cat "$log"
    done
} >"$out/tests.log" 2>/dev/null

# --- compute-sanitizer -------------------------------------------------------------------------
sanitize() {  # sanitize TOOL SUITE
    mkdir -p "$work/san"
    INFANT_CUDA_SYNC=1 OMP_NUM_THREADS=1 compute-sanitizer --tool "$1" --print-limit 20 --error-exitcode 99 \
        "$kit/bin/infant_tests" --gtest_filter="$2.*/cuda" >"$work/san/$1-$2.log" 2>&1
    echo "$1 $2 exit $?" >>"$work/san/$1-$2.log"
}
sanitizer_phase() {  # sanitizer_phase TOOL SUITE_FILE
    if [ "$dry" = 1 ]; then
        echo "dry run: would run, $((jobs / 2 > 0 ? jobs / 2 : 1)) at once, for each of: $(tr '\n' ' ' <"$2")"
        echo "  INFANT_CUDA_SYNC=1 compute-sanitizer --tool $1 --error-exitcode 99 infant_tests --gtest_filter='SUITE.*/cuda'"
        return 0
    fi
    command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer: not found"; return 1; }
    xargs -P $((jobs / 2 > 0 ? jobs / 2 : 1)) -I{} bash -c "sanitize $1 {}" <"$2"
}
export -f sanitize
run_phase memcheck 60 "sanitizer_phase memcheck $work/sanitize_order"
run_phase racecheck 30 "sanitizer_phase racecheck $work/race_suites"
summarise_sanitizer() {
    local log
    for log in "$work"/san/*.log; do
        [ -f "$log" ] || continue
        local name errors
        name=$(basename "$log" .log)
        # memcheck: "ERROR SUMMARY: N errors" once; racecheck: "RACECHECK SUMMARY: H hazards
        # displayed (N errors, W warnings)" per process or kernel: summed.
        errors=$({ sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$log"
            sed -n 's/.*RACECHECK SUMMARY: .*(\([0-9]*\) errors.*/\1/p' "$log"; } | awk '{n += $1; seen = 1} END {if (seen) print n}')
        grep -q ' exit [0-9]*$' "$log" || errors="${errors:-?} (cut)"
        echo "$name: ${errors:-no summary} errors; $(grep -E '^\[  (PASSED|FAILED) ' "$log" | head -2 | tr '\n' ' ')"
    done
}
{
    summarise_sanitizer
    for log in "$work"/san/*.log; do [ -f "$log" ] && { echo "######## $(basename "$log" .log)"; cat "$log"; }; done
} >"$out/sanitizer.log" 2>/dev/null

# --- benchmarks --------------------------------------------------------------------------------
bench_one() {  # bench_one BINARY FILTER [extra env]
    mkdir -p "$work/bench"
    echo "--- $1 --benchmark_filter='$2'"
    if [ "$dry" = 1 ]; then echo "dry run: not run"; return 0; fi
    # A run cut by the phase's budget leaves only the partial .part file (the summary reads *.json),
    # and so does a filter that matched nothing in this binary (an empty file).
    "$kit/bin/$1" --benchmark_filter="$2" --benchmark_out="$work/bench/$1.json.part" --benchmark_out_format=json 2>&1 &&
        { [ ! -s "$work/bench/$1.json.part" ] || mv "$work/bench/$1.json.part" "$work/bench/$1.json"; }
}
bench() {  # fails if any benchmark binary failed or is missing; runs the others anyway
    local binary status=0
    for binary in ${benches//,/ }; do
        # A build without benchmarks (the sanitizer build) still passes the dry run.
        [ -x "$kit/bin/$binary" ] || { echo "--- $binary: not in the kit"; [ "$dry" = 1 ] || status=1; continue; }
        if [ "$binary" = bench_nn ]; then
            INFANT_CUDNN_LOG=1 bench_one bench_nn "$bench_filter" || status=1
        else
            bench_one "$binary" "$bench_filter" || status=1
        fi
    done
    return $status
}
run_phase bench 150 bench
cp "$work/bench.console" "$out/bench.log" 2>/dev/null

torch_baseline() {  # torch_baseline SUFFIX ARGS...
    local suffix=$1
    shift
    echo "--- unet_torch.py --device cuda $*"
    if [ "$dry" = 1 ]; then echo "dry run: not run"; return 0; fi
    mkdir -p "$work/bench"
    PYTHONUNBUFFERED=1 python3 "$kit/baselines/unet_torch.py" --device cuda --repeats 5 "$@" \
        --json "$work/bench/baseline_unet_torch_cuda$suffix.json" 2>&1 | tail -5
}
baselines() {
    torch_baseline "" --precision fp32
    torch_baseline _bf16 --precision bf16
    [ "$compile" = 1 ] || { echo "--- torch.compile baselines: skipped (--no-compile)"; return 0; }
    torch_baseline _compile --precision fp32 --compile
    torch_baseline _bf16_compile --precision bf16 --compile
}
run_phase baselines 150 baselines
cat "$work/baselines.console" >>"$out/bench.log" 2>/dev/null

# profile_one BINARY FILTER SKIP COUNT: ncu over COUNT kernels of the benchmark after its first
# SKIP (past the set-up and the first, recorded step, so the kernels are a later step's).
profile_one() {
    echo "--- ncu: $1 --benchmark_filter='$2', kernels $3 to $(($3 + $4))"
    if [ "$dry" = 1 ]; then echo "dry run: not run"; return 0; fi
    ncu --clock-control none --launch-skip "$3" --launch-count "$4" --print-summary per-kernel \
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        "$kit/bin/$1" --benchmark_filter="$2" 2>&1 | grep -v '^==PROF==' | cut -c1-220
}
profile() {
    [ "$dry" = 1 ] || command -v ncu >/dev/null || { echo "ncu: not found"; return 1; }
    # About 15 kernels a sample; a training step is a few hundred (not counted yet: the
    # summary's invocation counts will say).
    profile_one bench_synth '^SynthSample/cuda/155x175x149/real_time' 150 60
    profile_one bench_nn '^UNetTrainStep/cuda/128x160x128/bf16' 1000 500
    profile_one bench_nn '^UNetTrainStep/cuda/128x160x128/min_time' 1000 500
}
run_phase profile 150 profile
cp "$work/profile.console" "$out/profile.log" 2>/dev/null

# Raw results: ours in one JSON, the baselines in another (keys: the files they came from).
merge_json() {  # merge_json OUTPUT GLOB...
    local target=$1
    shift
    python3 - "$target" "$@" <<'EOF'
import json, os, sys
merged = {}
for path in sys.argv[2:]:
    if os.path.exists(path):
        try:
            merged[os.path.basename(path)] = json.load(open(path))
        except ValueError as e:
            merged[os.path.basename(path)] = {"unreadable": str(e)}
json.dump(merged, open(sys.argv[1], "w"), indent=1)
EOF
}
merge_json "$out/bench.json" "$work"/bench/bench_*.json
merge_json "$out/baselines.json" "$work"/bench/baseline_*.json

# --- summary -----------------------------------------------------------------------------------
{
    echo "# gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$dry" = 1 ] && echo ' (CPU dry run)')"
    grep -m1 -E 'cuda:0 |CUDA devices' "$out/setup.txt" || true
    grep -m1 '^commit ' "$out/setup.txt" || true
    echo
    echo "| phase | result | time |"
    echo "|---|---|---|"
    for row in "${phase_rows[@]}"; do echo "| ${row//|/ | } |"; done
    echo
    echo "tests: $(head -1 "$out/tests.log")"
    echo "sanitizers:"
    summarise_sanitizer | sed 's/^/  /'
    [ -n "$(ls "$work"/san 2>/dev/null)" ] || echo "  (none run)"
    echo
    if ls "$work"/bench/*.json >/dev/null 2>&1; then
        python3 "$kit/baselines/compare.py" "$work/bench"
        echo
        python3 - "$work/bench" <<'EOF'
import json, os, sys
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
rows = []
for name in sorted(os.listdir(sys.argv[1])):
    if name.startswith("bench_") and name.endswith(".json") and os.path.getsize(os.path.join(sys.argv[1], name)) > 0:
        for b in json.load(open(os.path.join(sys.argv[1], name)))["benchmarks"]:
            if b.get("run_type") == "aggregate":
                continue
            extra = ", ".join(f"{k} {v:.4g}" for k, v in b.items() if k in ("peak_MiB", "peak_bytes", "samples_per_second"))
            rows.append(f"| {b['name']} | {b['real_time'] * UNIT[b['time_unit']] * 1e3:.3f} | {extra} |")
print("| our benchmark | ms | counters |\n|---|---|---|")
print("\n".join(rows))
EOF
    else
        echo "benchmarks: none ran"
    fi
    echo
    echo "total $(($(date +%s) - started)) s; raw results in $out"
} >"$out/summary.txt" 2>&1
cat "$out/summary.txt"
# Exit status: 0 when every phase asked for finished and no test failed.
grep -q 'failed [1-9]\|unfinished: [1-9]' "$out/tests.log" && exit 1
for row in "${phase_rows[@]}"; do [[ "$row" == *"|ok|"* || "$row" == *"|skipped"* ]] || exit 1; done
exit 0
