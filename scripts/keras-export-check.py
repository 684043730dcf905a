#!/usr/bin/env python3
"""Checks `export` against Keras itself: the files we write are read by tf-keras the way the
published SynthSeg tools read them (`load_weights(..., by_name=True)` into the network built
with the released layer names, bench/baselines/unet_keras.py), and give Keras' own answers.

1. Each Keras fixture of ../shared/data/keras (both HDF5 layouts, a 2-channel network) is
   imported and exported again; Keras loads the export into a network whose every weight is
   first set to NaN, so that a weight the file leaves out stays NaN and fails, and its softmax
   on the fixture's input must equal, bit for bit, the one Keras computes from the fixture's own
   weights (which must match the softmax stored with the fixture: the network built here is the
   published one).
2. A model trained here (a phantom, a few steps: its batch norms' running statistics are not
   Keras' defaults) is exported, loaded by Keras the same way, written back by Keras
   (`save_weights`) and imported again: every tensor of the model must come back byte for byte,
   which fails if Keras assigned a layer's weights in another order than ours.

usage: keras-export-check.py [--binary build/infant-synthseg] [--shared ../shared] [--trained-only]
Optional: needs tensorflow-cpu, tf-keras, h5py and numpy (pip); never part of the build or the
tests. Exit 0 when every check passes, 1 otherwise.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "baselines"))
from unet_keras import build_unet, keras, tf  # noqa: E402

FIXTURES = ["unet_l5_f4_c34", "unet_l3_f8_c19", "unet_l3_f4_c34_in2"]


def run(binary, *args):
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:1])} failed (exit {done.returncode}): {done.stderr.strip()}")


def filled_from(path, levels, features, labels, channels):
    """The network with every weight NaN, then loaded from `path` by name: None and a message if
    any weight was left out."""
    model = build_unet(keras, levels, features, labels, channels)
    for w in model.weights:
        w.assign(np.full(w.shape, np.nan, np.float32))
    model.load_weights(path, by_name=True)
    missing = [w.name for w in model.weights if np.isnan(w.numpy()).any()]
    return model, missing


def safetensors(path):
    """Tensor name -> raw bytes of a .safetensors file."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    header.pop("__metadata__", None)
    return {name: data[t["data_offsets"][0]:t["data_offsets"][1]] for name, t in header.items()}


def check_fixture(binary, keras_dir, stem, work):
    meta = json.load(open(os.path.join(keras_dir, stem + ".layers.json")))
    x = np.load(os.path.join(keras_dir, stem + ".input.npy"))
    labels = ",".join(str(v) for v in range(meta["labels"]))
    model_dir, exported = os.path.join(work, stem), os.path.join(work, stem + "_export.h5")
    run(binary, "import", "--keras", os.path.join(keras_dir, stem + "_weights.h5"), "--out", model_dir,
        "--labels", labels)
    run(binary, "export", "--model", model_dir, "--keras", exported)
    shape = (meta["levels"], meta["features"], meta["labels"], x.shape[-1])
    ours, missing = filled_from(exported, *shape)
    if missing:
        return f"{stem}: the export leaves out {len(missing)} weights, e.g. {missing[0]}"
    theirs = build_unet(keras, *shape)
    theirs.load_weights(os.path.join(keras_dir, stem + "_weights.h5"), by_name=True)
    a, b = ours.predict(x, verbose=0), theirs.predict(x, verbose=0)
    if not np.array_equal(a, b):
        return f"{stem}: Keras' softmax from the export differs from the fixture's by up to {np.abs(a - b).max():.3g}"
    # The network built here is the published one: the fixture's own file gives the softmax Keras
    # stored with it (another machine's summation order: close, not equal).
    stored = np.load(os.path.join(keras_dir, stem + ".softmax.npy"))
    if not np.allclose(b, stored, rtol=0, atol=1e-5):
        return f"{stem}: unet_keras.py's network is not the fixture's (softmax off by {np.abs(b - stored).max():.3g})"
    print(f"ok  {stem}: every weight filled, Keras' softmax ({a.size} values) identical to the fixture's")
    return None


def check_trained(binary, work):
    phantom, model_dir = os.path.join(work, "phantom.nii.gz"), os.path.join(work, "trained")
    exported, rewritten, back = (os.path.join(work, n) for n in ("trained.h5", "keras_rewritten.h5", "back"))
    run(binary, "phantom", "--age-months", "6", "--out", phantom)
    run(binary, "train", "--labels", phantom, "--model-dir", model_dir, "--levels", "3", "--features", "4",
        "--shape", "32", "--steps", "3", "--steps-per-epoch", "3", "--device", "cpu")
    run(binary, "export", "--model", model_dir, "--keras", exported)
    recorded = json.load(open(os.path.join(model_dir, "model.json")))
    labels = recorded["labels"]
    model, missing = filled_from(exported, 3, 4, len(labels), 1)
    if missing:
        return f"trained: the export leaves out {len(missing)} weights, e.g. {missing[0]}"
    model.save_weights(rewritten)
    run(binary, "import", "--keras", rewritten, "--out", back, "--labels", ",".join(str(v) for v in labels))
    before = safetensors(os.path.join(model_dir, "model.safetensors"))
    after = safetensors(os.path.join(back, "model.safetensors"))
    if before.keys() != after.keys():
        return f"trained: tensors differ after Keras: {sorted(set(before) ^ set(after))[:4]}"
    changed = [name for name in before if before[name] != after[name]]
    if changed:
        return f"trained: {len(changed)} tensors changed on the way through Keras, e.g. {changed[0]}"
    print(f"ok  trained here: {len(before)} tensors back byte for byte after Keras loaded and saved them")
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(here, "..", "build", "infant-synthseg"))
    default_shared = os.environ.get("INFANT_SHARED_DIR", os.path.join(here, "..", "..", "shared"))
    parser.add_argument("--shared", default=default_shared)
    parser.add_argument("--trained-only", action="store_true", help="without ../shared: only the trained model")
    args = parser.parse_args()
    print(f"tensorflow {tf.__version__}, tf-keras {keras.__version__}")
    keras_dir = os.path.join(args.shared, "data", "keras")
    if not args.trained_only and not os.path.isdir(keras_dir):
        sys.exit(f"{keras_dir} is missing: give --shared, or --trained-only to check the trained model alone")
    failures = []
    with tempfile.TemporaryDirectory() as work:
        if not args.trained_only:
            failures += [check_fixture(args.binary, keras_dir, stem, work) for stem in FIXTURES]
        failures.append(check_trained(args.binary, work))
    failures = [f for f in failures if f]
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
