#!/usr/bin/env bash
# The whole Infant-SynthSeg job on built-in data, on the CPU, in a few minutes:
#   procedural infant label maps (phantoms) at 1, 6 and 12 months -> synthetic T1-like and
#   T2-like training pairs -> a small T1 model and a small T2 model trained on them ->
#   held-out synthetic scans of each age (T1-like and T2-like of the same anatomy) ->
#   predict with each model -> T1/T2 merge -> clean -> Dice against the truth, and pictures.
# The models are deliberately tiny (48^3 crops, 3 levels, 8 features, a reduced label list,
# a few hundred steps) so this takes minutes on 2 cores; they show the pipeline and a model
# learning, not the published accuracy (160^3 crops, 5 levels, 24 features, 34 labels,
# 900,000 steps on a GPU).
set -euo pipefail
bin=${1:?usage: demo.sh BINARY OUTDIR}
out=${2:?usage: demo.sh BINARY OUTDIR}
steps=${DEMO_STEPS:-500}  # ~20 s per 100 steps per model on 2 cores; the demo takes ~2.5 min
rm -rf "$out"
mkdir -p "$out/labels" "$out/held-out"

echo "== phantoms: training maps (seed 1) and held-out maps (seed 2) at 1, 6 and 12 months"
# The 6-month maps are stored LAS (first voxel axis running right to left), as many real infant
# label maps are: train and synth bring every map to the network's RAS frame.
for age in 1 6 12; do
    orientation=RAS
    [ "$age" = 6 ] && orientation=LAS
    "$bin" phantom --age-months "$age" --seed 1 --orientation "$orientation" --out "$out/labels/phantom_${age}mo.nii.gz"
    "$bin" phantom --age-months "$age" --seed 2 --orientation "$orientation" --out "$out/held-out/phantom_${age}mo.nii.gz"
done
"$bin" info "$out/labels/phantom_6mo.nii.gz" | sed -n '1,8p'

# The structures the demo models segment (everything else is background to them), and what each
# of the 43 generation labels is learned as (SynthSeg's segmentation_labels.npy): the infant extra
# labels as the structure they model, as clean folds them (21 -> 2, 61 -> 41, 170 -> 16), and the
# cerebellar white matter as the cerebellum (7 -> 8, 46 -> 47). Listing the structures alone
# would teach the models half of a newborn's white matter (its 21 and 61) as background.
labels="0,2,3,4,8,10,16,41,42,43,47,49"
cat > "$out/demo-config.json" <<JSON
{"output_labels": [0, 0, 0, 16, 0, 0, 0, 16, 0,
                   2, 3, 4, 0, 8, 8, 10, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0,
                   41, 42, 43, 0, 47, 47, 49, 0, 0, 0, 0, 0, 0, 0, 41, 0, 0]}
JSON

for contrast in t1 t2; do
    echo
    echo "== synthetic training pairs, preset infant-$contrast -> $out/synth-$contrast/preview.png"
    "$bin" synth --labels "$out/labels" --out "$out/synth-$contrast" --preset "infant-$contrast" --count 4 --seed 1 \
        --preview
done

for contrast in t1 t2; do
    echo
    echo "== training the small $contrast model ($steps steps) -> $out/model-$contrast"
    "$bin" train --labels "$out/labels" --model-dir "$out/model-$contrast" --preset "infant-$contrast" \
        --config "$out/demo-config.json" --shape 48 --levels 3 --features 8 --steps "$steps" \
        --steps-per-epoch 100 --lr 3e-3 --device cpu
done

# Held-out scans: the same seed gives the same anatomy for both presets (only the contrast
# differs), so each T1-like scan has a co-registered T2-like twin.
for contrast in t1 t2; do
    "$bin" synth --labels "$out/held-out" --out "$out/test-$contrast" --preset "infant-$contrast" \
        --config "$out/demo-config.json" --count 3 --seed 7 --shape 96 > /dev/null
done
mkdir -p "$out/truth"
cp "$out"/test-t1/labels_*.nii.gz "$out/truth/"

for contrast in t1 t2; do
    echo
    echo "== predict with the $contrast model -> $out/pred-$contrast"
    mkdir -p "$out/in-$contrast"
    cp "$out"/test-$contrast/image_*.nii.gz "$out/in-$contrast/"
    "$bin" predict --i "$out/in-$contrast" --o "$out/pred-$contrast" --model "$out/model-$contrast" \
        --post "$out/post-$contrast" --vol "$out/volumes-$contrast.csv" --preview "$out/pred-$contrast.png" --device cpu
done

echo
echo "== merge (T1/T2, max posterior) and clean (islands) -> $out/final"
mkdir -p "$out/merged" "$out/final"
for image in "$out"/in-t1/image_*.nii.gz; do
    name=$(basename "$image" .nii.gz)
    # The posteriors record their models' label order: merge and clean need no --labels.
    "$bin" merge \
        --t1-seg "$out/pred-t1/${name}_synthseg.nii.gz" --t1-post "$out/post-t1/${name}_posteriors.nii.gz" \
        --t2-seg "$out/pred-t2/${name}_synthseg.nii.gz" --t2-post "$out/post-t2/${name}_posteriors.nii.gz" \
        --o-seg "$out/merged/${name}_seg.nii.gz" --o-post "$out/merged/${name}_post.nii.gz"
    # Named like the truth files (labels_NNNN), so dice pairs them.
    "$bin" clean --seg "$out/merged/${name}_seg.nii.gz" --post "$out/merged/${name}_post.nii.gz" \
        --o "$out/final/labels_${name#image_}.nii.gz"
done

echo
echo "== Dice per structure against the truth (held-out anatomy) -> $out/dice.csv"
"$bin" dice --pred "$out/final" --gt "$out/truth" --labels "${labels#0,}" --out "$out/dice.csv"
# Three decimals for the screen (the CSV keeps full precision).
awk -F, 'NR == 1 { print; next }
         { printf "%s", $1; for (i = 2; i <= NF; ++i) printf ",%s", ($i == "" ? "" : sprintf("%.3f", $i)); print "" }' \
    "$out/dice.csv" > "$out/dice-rounded.csv"
if command -v column > /dev/null; then column -s, -t < "$out/dice-rounded.csv"; else tr , '\t' < "$out/dice-rounded.csv"; fi
echo
echo "pictures: $out/synth-t1/preview.png $out/synth-t2/preview.png (training pairs),"
echo "          $out/model-t1/loss.png $out/model-t2/loss.png (loss curves),"
echo "          $out/pred-t1.png $out/pred-t2.png (segmentations over the held-out scans)"
