#!/usr/bin/env bash
# The main job on built-in data. At this stage of the project: procedural infant label maps
# (phantoms) at 1, 6 and 12 months, a summary of each, and synthetic training pairs from them
# with a preview montage (T1-like and T2-like presets). Later stages add training,
# prediction, merge, clean and Dice.
set -euo pipefail
bin=${1:?usage: demo.sh BINARY OUTDIR}
out=${2:?usage: demo.sh BINARY OUTDIR}
mkdir -p "$out/labels"

for age in 1 6 12; do
    "$bin" phantom --age-months "$age" --seed 1 --out "$out/labels/phantom_${age}mo.nii.gz"
done
echo
"$bin" info "$out/labels/phantom_12mo.nii.gz" | sed -n '1,12p'
echo "  ... (labels and voxel counts: infant-synthseg info FILE)"

for preset in infant-t1 infant-t2; do
    echo
    echo "== synthetic training pairs, preset $preset -> $out/synth-$preset"
    "$bin" synth --labels "$out/labels" --out "$out/synth-$preset" --preset "$preset" --count 4 --seed 1 --preview
done
echo
echo "previews: $out/synth-infant-t1/preview.png $out/synth-infant-t2/preview.png"
