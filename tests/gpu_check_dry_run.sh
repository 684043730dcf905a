#!/usr/bin/env bash
# CTest: scripts/gpu-check.sh --cpu-dry-run on this build's binaries, every phase asked for. It must finish with status 0,
# run a CPU suite through its runner and count it, print what each GPU phase would run, and keep
# to the output limits of the device tool (at most 8 files, none deeper than two folders, each
# under 16 MB).
#   usage: gpu_check_dry_run.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1
build=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log=$out.log
bash "$src/scripts/gpu-check.sh" --cpu-dry-run --from-build "$build" --out "$out" \
    --phases tests,memcheck,racecheck,bench,baselines,profile >"$log" 2>&1
status=$?
fail() { echo "FAILED: $*"; echo "--- gpu-check output"; cat "$log"; rm -f "$log"; exit 1; }
[ "$status" = 0 ] || fail "gpu-check exited with $status"
grep -q 'CPU dry run' "$out/summary.txt" || fail "no dry-run summary"
grep -qE '^tests: passed [1-9][0-9]*, failed 0' "$out/summary.txt" || fail "the runner counted no passed test"
grep -q 'compute-sanitizer --tool memcheck' "$log" || fail "the memcheck phase did not say what it would run"
grep -q 'compute-sanitizer --tool racecheck' "$log" || fail "the racecheck phase did not say what it would run"
grep -q "unet_torch.py --device cuda --precision bf16" "$log" || fail "the baselines phase did not say what it would run"
grep -q "ncu: bench_nn --benchmark_filter='^UNetTrainStep" "$log" || fail "the profile phase did not say what it would run"
files=$(find "$out" -type f | wc -l)
[ "$files" -le 8 ] || fail "$files files in the output folder (at most 8)"
[ -z "$(find "$out" -mindepth 3 -type f)" ] || fail "files deeper than two folders"
[ -z "$(find "$out" -type f -size +16M)" ] || fail "a file over 16 MB"
rm -f "$log"
echo "gpu-check dry run: passed ($files files)"
