#!/usr/bin/env python3
"""Prints our benchmark times beside the framework baselines measured in the same run, as a
Markdown table of ratios (baseline time / our time: above 1 means we are faster).

usage: compare.py BENCH_OUT_DIR
"""
import json
import os
import sys

# Our benchmark name (prefix), baseline file, key: a benchmark may be set beside several baselines
# (PyTorch on CUDA in fp32, in bf16 autocast, and compiled). Prefixes joined by "+" add our
# benchmarks up, for a baseline stage that does the work of several of ours.
PAIRS = [
    ("SynthSample/cpu/", "baseline_synth_numpy.json", "sample"),
    ("SynthStage/velocity/cpu/", "baseline_synth_numpy.json", "velocity"),
    ("SynthStage/deform/cpu/", "baseline_synth_numpy.json", "deform"),
    ("SynthStage/gmm/cpu/", "baseline_synth_numpy.json", "gmm"),
    ("SynthStage/blur/cpu/", "baseline_synth_numpy.json", "blur"),
    ("SynthStage/bias/cpu/", "baseline_synth_numpy.json", "bias"),
    ("SynthStage/normalise/cpu/", "baseline_synth_numpy.json", "normalise"),
    ("SynthSample/cpu/", "baseline_synth_cornucopia.json", "sample"),
    ("SynthStage/velocity/cpu/+SynthStage/deform/cpu/", "baseline_synth_cornucopia.json", "spatial"),
    ("SynthStage/gmm/cpu/", "baseline_synth_cornucopia.json", "gmm"),
    ("SynthStage/blur/cpu/", "baseline_synth_cornucopia.json", "blur"),
    ("SynthStage/bias/cpu/", "baseline_synth_cornucopia.json", "bias"),
    ("SynthStage/normalise/cpu/", "baseline_synth_cornucopia.json", "normalise"),
    ("SynthSample/cpu/", "baseline_synth_tf.json", "sample"),
    ("SynthStage/velocity/cpu/", "baseline_synth_tf.json", "velocity"),
    ("SynthStage/deform/cpu/", "baseline_synth_tf.json", "deform"),
    ("SynthStage/gmm/cpu/", "baseline_synth_tf.json", "gmm"),
    ("SynthStage/blur/cpu/", "baseline_synth_tf.json", "blur"),
    ("SynthStage/bias/cpu/", "baseline_synth_tf.json", "bias"),
    ("SynthStage/normalise/cpu/", "baseline_synth_tf.json", "normalise"),
    ("Resample/trilinear/cpu/", "baseline_resample_scipy.json", "trilinear"),
    ("Resample/nearest/cpu/", "baseline_resample_scipy.json", "nearest"),
    ("Resample/antialias/cpu/", "baseline_resample_scipy.json", "antialias"),
    ("Predict/cpu/", "baseline_predict_torch_cpu.json", "total"),
    ("Predict/cpu/", "baseline_predict_keras_cpu.json", "total"),
    ("PredictPost/cpu/", "baseline_post_scipy.json", "postprocess"),
    ("WriteNifti/posteriors/", "baseline_write_nibabel.json", "posteriors"),
    ("WriteMgh/posteriors/", "baseline_write_nibabel.json", "posteriors_mgz"),
    ("ReadVolume/nii.gz/", "baseline_write_nibabel.json", "read_nii_gz"),
    ("ReadVolume/mgz/", "baseline_write_nibabel.json", "read_mgz"),
    ("KerasExport/published/keras", "baseline_keras_files.json", "save_keras"),
    ("KerasImport/published/keras", "baseline_keras_files.json", "load_keras"),
]
for suffix in ("", "_bf16"):
    PAIRS += [("UNetForward/cpu/", f"baseline_unet_torch_cpu{suffix}.json", "forward"),
              ("UNetTrainStep/cpu/", f"baseline_unet_torch_cpu{suffix}.json", "train_step")]
PAIRS += [("UNetForward/cpu/", "baseline_unet_keras_cpu.json", "forward"),
          ("UNetTrainStep/cpu/", "baseline_unet_keras_cpu.json", "train_step")]
for suffix in ("", "_bf16", "_compile", "_bf16_compile"):
    PAIRS += [("UNetForward/cuda/", f"baseline_unet_torch_cuda{suffix}.json", "forward"),
              ("UNetTrainStep/cuda/", f"baseline_unet_torch_cuda{suffix}.json", "train_step")]

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def load(path):
    """A JSON file, or None with a note on stderr: a benchmark whose filter matched nothing
    leaves an empty file, which stopped the whole table."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: skipped ({'empty' if os.path.getsize(path) == 0 else e})", file=sys.stderr)
        return None


def our_times(out):
    """Our benchmarks' seconds by name, and our thread count. With --benchmark_repetitions the
    median (the figure the docs quote), not the last repetition."""
    ours, medians, threads = {}, {}, set()
    for name in sorted(os.listdir(out)):
        if not (name.startswith("bench_") and name.endswith(".json")):
            continue
        data = load(os.path.join(out, name))
        if data is None:
            continue
        if "omp_threads" in data.get("context", {}):
            threads.add(data["context"]["omp_threads"])
        for b in data["benchmarks"]:
            seconds = b["real_time"] * UNIT[b["time_unit"]]
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[b["run_name"]] = seconds
            else:
                ours[b.get("run_name", b["name"])] = seconds
    ours.update(medians)
    return ours, ", ".join(sorted(threads)) or "?"


def main():
    out = sys.argv[1]
    ours, our_threads = our_times(out)
    run = load(os.path.join(out, "run.json")) if os.path.exists(os.path.join(out, "run.json")) else {}
    scale = int((run or {}).get("bench_scale") or 1)
    if run:
        print(f"run of {run.get('date', '?')} on {run.get('host', '?')} ({run.get('cpus', '?')} CPUs); "
              f"our threads: {our_threads}")
    if scale > 1:
        print(f"INFANT_BENCH_SCALE={scale}: the U-Net rows' sizes shrunk {scale} times, ours and the baselines' "
              "alike (the other rows at full size)")
    print("| benchmark | ours (ms) | baseline | baseline (ms) | speed-up | threads (ours / theirs) |")
    print("|---|---|---|---|---|---|")
    for prefixes, file, key in PAIRS:
        path = os.path.join(out, file)
        # Our bf16 rows beside a bf16 baseline, fp32 rows beside the others; whole volumes only
        # (the baselines run no slabs); a model from a Keras file only where the prefix asks.
        bf16 = "_bf16" in file
        names = []
        for prefix in prefixes.split("+"):
            matches = [n for n in ours
                       if n.startswith(prefix) and ("/bf16" in n) == bf16 and "/slab" not in n and
                       ("/keras" not in n or "/keras" in prefix)]
            if matches:
                names.append(matches[0])
        if len(names) < len(prefixes.split("+")) or not os.path.exists(path):
            continue
        baseline = load(path)
        if baseline is None or key not in baseline:
            continue
        base = baseline[key]
        mine = sum(ours[n] for n in names)
        label = file.replace("baseline_", "").replace(".json", "")
        print(f"| {' + '.join(names)} | {mine * 1e3:.1f} | {label} {key} | {base * 1e3:.1f} | {base / mine:.1f}x | "
              f"{our_threads} / {baseline.get('threads', '?')} |")


if __name__ == "__main__":
    main()
