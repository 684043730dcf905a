#!/usr/bin/env bash
# Runs every Google Benchmark suite of a build and keeps the JSON results in bench-out/.
set -euo pipefail
build=${1:-build}
out=bench-out
mkdir -p "$out"
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    echo "== $name"
    "$b" --benchmark_out="$out/$name.json" --benchmark_out_format=json
done
