#!/usr/bin/env bash
# The main job on built-in data. At this stage of the project: procedural infant label maps
# (phantoms) at 1, 6 and 12 months, and a summary of each. Later stages add synthesis,
# training, prediction, merge, clean and Dice.
set -euo pipefail
bin=${1:?usage: demo.sh BINARY OUTDIR}
out=${2:?usage: demo.sh BINARY OUTDIR}
mkdir -p "$out"

for age in 1 6 12; do
    echo "== phantom at ${age} months -> $out/phantom_${age}mo.nii.gz"
    "$bin" phantom --age-months "$age" --seed 1 --out "$out/phantom_${age}mo.nii.gz"
done
for age in 1 6 12; do
    echo
    "$bin" info "$out/phantom_${age}mo.nii.gz"
done
