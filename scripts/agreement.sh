#!/usr/bin/env bash
# How far two ways of running the same model agree (issue 12's agreement figures):
#
#   scripts/agreement.sh --model DIR --scans DIR --out DIR [--a DEVICE:PRECISION]
#                        [--b DEVICE:PRECISION] [--bin PATH]
#
#   --model DIR   a trained model (predict's --model)
#   --scans DIR   the scans to segment (predict's --i DIR)
#   --out DIR     a new or empty folder: the two runs' segmentations and posteriors, dice.csv
#                 (run b scored against run a) and agreement.txt (printed too)
#   --a, --b      the two runs, as DEVICE:PRECISION with predict's --device and --precision;
#                 default cpu:fp32 against cpu:bf16
#   --bin PATH    the infant-synthseg binary; default $INFANT_CLI_PATH, else build/infant-synthseg
#
# The figures: Dice per structure of b's segmentation against a's (mean and lowest over the
# structures present, from `infant-synthseg dice`), the share of voxels labelled differently,
# and the largest and mean absolute difference of the posteriors. Needs python3 with numpy
# (no nibabel: the files are read as the NIfTI-1 files predict writes, integer labels of any
# width and float32 posteriors).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${INFANT_CLI_PATH:-$here/build/infant-synthseg}
model= scans= out= a=cpu:fp32 b=cpu:bf16
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --scans) scans=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --a) a=$2; shift 2 ;;
        --b) b=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "agreement: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] && [ -n "$scans" ] && [ -n "$out" ] || { echo "agreement: --model, --scans and --out are required" >&2; exit 2; }
[ -x "$bin" ] || { echo "agreement: no infant-synthseg at $bin (--bin)" >&2; exit 2; }
for run in "$a" "$b"; do
    [[ "$run" =~ ^[a-z0-9:]+:(fp32|bf16)$ ]] || { echo "agreement: '$run' is not DEVICE:PRECISION" >&2; exit 2; }
done
[ "$a" != "$b" ] || { echo "agreement: --a and --b are the same run ($a)" >&2; exit 2; }
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "agreement: $out is not empty" >&2; exit 2; }
# A run that fails leaves the folder as it found it (empty): no half set of results.
trap 'status=$?; [ $status = 0 ] || find "$out" -mindepth 1 -delete; exit $status' EXIT

# predict_run NAME DEVICE:PRECISION: segmentations in $out/NAME, posteriors in $out/NAME-post.
predict_run() {
    local name=$1 device=${2%:*} precision=${2##*:} t0
    mkdir -p "$out/$name" "$out/$name-post"
    t0=$(date +%s.%N)
    local status=0
    "$bin" predict --i "$scans" --o "$out/$name" --post "$out/$name-post" --model "$model" \
        --device "$device" --precision "$precision" >"$out/$name.log" 2>&1 || status=$?
    # predict's own status: 2 for bad input (the model, the scans), 1 for anything else.
    [ $status = 0 ] || { cat "$out/$name.log" >&2; echo "agreement: predict ($2) failed" >&2; exit $status; }
    echo "$2: predict took $(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }') s"
}
{
    echo "model $model, scans $scans; a = $a, b = $b"
    predict_run a "$a"
    predict_run b "$b"
} | tee "$out/agreement.txt"
"$bin" dice --pred "$out/b" --gt "$out/a" --out "$out/dice.csv" 2>>"$out/agreement.txt"
python3 - "$out" <<'EOF' | tee -a "$out/agreement.txt"
import csv, gzip, os, struct, sys
import numpy as np

out = sys.argv[1]

# NIfTI-1 datatype codes predict may write: labels in the narrowest integer type, posteriors float32.
TYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 512: np.uint16, 768: np.uint32}

def nifti_values(path):
    raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    if len(raw) < 352 or struct.unpack("<i", raw[:4])[0] != 348:
        sys.exit(f"agreement: {path}: not a little-endian NIfTI-1 file")
    dims = struct.unpack("<8h", raw[40:56])
    datatype = struct.unpack("<h", raw[70:72])[0]
    offset = int(struct.unpack("<f", raw[108:112])[0])
    if datatype not in TYPES:
        sys.exit(f"agreement: {path}: NIfTI datatype {datatype}, not one predict writes")
    count = int(np.prod(dims[1 : 1 + dims[0]]))
    return np.frombuffer(raw, dtype=TYPES[datatype], count=count, offset=offset)

rows = list(csv.DictReader(open(os.path.join(out, "dice.csv"))))
mean_row = next(r for r in rows if r["subject"] == "mean")
dice = {k[5:]: float(v) for k, v in mean_row.items() if k.startswith("dice_") and v != ""}
if not dice:
    sys.exit("agreement: dice.csv scores no structure (both runs labelled background only?)")
lowest = min(dice, key=dice.get)
print(f"Dice of b against a, {len(rows) - 1} scans, {len(dice)} structures: mean {np.mean(list(dice.values())):.4f}, "
      f"lowest {dice[lowest]:.4f} (label {lowest})")
differing = voxels = 0
largest = total = 0.0
count = 0
for name in sorted(os.listdir(os.path.join(out, "a"))):
    seg_a = nifti_values(os.path.join(out, "a", name)).astype(np.int64)
    seg_b = nifti_values(os.path.join(out, "b", name)).astype(np.int64)
    differing += int(np.count_nonzero(seg_a != seg_b))
    voxels += seg_a.size
for name in sorted(os.listdir(os.path.join(out, "a-post"))):
    pa = nifti_values(os.path.join(out, "a-post", name)).astype(np.float64)
    pb = nifti_values(os.path.join(out, "b-post", name)).astype(np.float64)
    d = np.abs(pa - pb)
    largest = max(largest, float(d.max()))
    total += float(d.sum())
    count += d.size
print(f"voxels labelled differently: {differing} of {voxels} ({100.0 * differing / voxels:.3f}%)")
print(f"posteriors: largest difference {largest:.3g}, mean {total / count:.3g}")
EOF
