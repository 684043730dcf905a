#!/usr/bin/env bash
# CTest: scripts/agreement.sh end to end on the CPU (it also runs on lent GPUs, where a broken
# script would waste the device time): a tiny model trained for 2 steps on a phantom stored LAS,
# two synthetic scans, then fp32 against bf16 (bf16 runs as fp32, with a warning, on a CPU
# without it: the figures are then exact agreement). It must print its three figures, refuse a
# non-empty output folder, and leave the folder empty with exit 2 when the model is bad.
# Skipped (exit 77) without python3 and numpy, which the script needs and the build does not.
#   usage: agreement_test.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1
bin=$2/infant-synthseg
python3 -c 'import numpy' 2>/dev/null ||
    { echo "SKIPPED: scripts/agreement.sh needs python3 with numpy (pip install numpy)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAILED: $*"; [ -f "$dir/log" ] && { echo "--- output"; cat "$dir/log"; }; exit 1; }

mkdir -p "$dir/maps" "$dir/scans"
"$bin" phantom --age-months 3 --out "$dir/maps/p.nii.gz" --orientation LAS >"$dir/log" 2>&1 || fail "phantom"
"$bin" train --labels "$dir/maps" --model-dir "$dir/model" --steps 2 --shape 32 --levels 2 --features 8 \
    --device cpu >"$dir/log" 2>&1 || fail "train"
"$bin" synth --labels "$dir/maps" --out "$dir/synth" --count 2 --seed 3 --shape 32 --device cpu >"$dir/log" 2>&1 ||
    fail "synth"
mv "$dir"/synth/image_*.nii.gz "$dir/scans/"

run() { bash "$src/scripts/agreement.sh" --bin "$bin" --model "$1" --scans "$dir/scans" --out "$2" --a cpu:fp32 --b cpu:bf16; }
run "$dir/model" "$dir/agr" >"$dir/log" 2>&1 || fail "agreement.sh exited with $?"
grep -q '^Dice of b against a, 2 scans' "$dir/log" || fail "no Dice line for the 2 scans"
grep -qE '^voxels labelled differently: [0-9]+ of 65536 ' "$dir/log" || fail "no count of differing voxels (2 x 32^3)"
grep -qE '^posteriors: largest difference [0-9.e+-]+, mean ' "$dir/log" || fail "no posterior difference"
[ -f "$dir/agr/agreement.txt" ] && [ -f "$dir/agr/dice.csv" ] || fail "agreement.txt or dice.csv missing"

run "$dir/model" "$dir/agr" >"$dir/log" 2>&1
[ $? = 2 ] || fail "a non-empty output folder was not refused with exit 2"
run "$dir/no-model" "$dir/bad" >"$dir/log" 2>&1
[ $? = 2 ] || fail "a missing model did not exit 2"
[ -z "$(ls -A "$dir/bad")" ] || fail "a failed run left files in its output folder"
echo "agreement.sh: passed"
