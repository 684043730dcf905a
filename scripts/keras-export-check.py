#!/usr/bin/env python3
"""Checks `export` against Keras itself: the files we write are read by Keras the way its users
read them, and give Keras' own answers.

tf-keras (the default; the framework of the published SynthSeg tools): `export --keras OUT.h5`
is loaded with `load_weights(..., by_name=True)` into the network built with the released layer
names (bench/baselines/unet_layers.py).
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

--keras3 (Keras 3, any backend: KERAS_BACKEND): `export --keras OUT.keras` is loaded with
`keras.saving.load_model` alone (no code of ours or SynthSeg's, safe mode).
1. Each fixture, imported and exported as .keras: Keras' softmax from the archive must equal, bit
   for bit, the one from the network built here with the fixture's weights set from its file.
2. The trained model, exported as .keras, loaded and saved again by Keras (`model.save`) and
   imported (with its labels): every tensor back byte for byte; our own archive imports without
   --labels to the model's labels.

usage: keras-export-check.py [--binary build/infant-synthseg] [--shared ../shared] [--trained-only]
                             [--keras3]
Optional: needs tensorflow-cpu, tf-keras, h5py and numpy (pip), or with --keras3 keras 3, a
backend (jax[cpu], tensorflow or torch), h5py and numpy; never part of the build or the tests.
Exit 0 when every check passes, 1 otherwise.
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
from unet_layers import build_unet  # noqa: E402

keras = None  # tf-keras, or Keras 3 with --keras3 (main imports the one asked for)

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


def exported_fixture(binary, keras_dir, stem, work, ending):
    """Imports a fixture and exports it again as a file of `ending` (.h5 or .keras): its network's
    shape (levels, features, labels, channels), its input, its weights file and the export."""
    meta = json.load(open(os.path.join(keras_dir, stem + ".layers.json")))
    x = np.load(os.path.join(keras_dir, stem + ".input.npy"))
    source = os.path.join(keras_dir, stem + "_weights.h5")
    model_dir = os.path.join(work, stem + ending.replace(".", "_"))
    exported = os.path.join(work, stem + "_export" + ending)
    run(binary, "import", "--keras", source, "--out", model_dir,
        "--labels", ",".join(str(v) for v in range(meta["labels"])))
    run(binary, "export", "--model", model_dir, "--keras", exported)
    return (meta["levels"], meta["features"], meta["labels"], x.shape[-1]), x, source, exported


def softmax_failure(keras_dir, stem, ours, theirs, x, how):
    """None (and a line saying `how` Keras took the export) when Keras' softmax from our export
    (`ours`) equals, bit for bit, that of the network built here with the fixture's weights
    (`theirs`), and that one is the softmax stored with the fixture (another machine's summation
    order: close, not equal): the network built here is the published one."""
    a, b = np.asarray(ours.predict(x, verbose=0)), np.asarray(theirs.predict(x, verbose=0))
    if not np.array_equal(a, b):
        return f"{stem}: Keras' softmax from the export differs from the fixture's by up to {np.abs(a - b).max():.3g}"
    stored = np.load(os.path.join(keras_dir, stem + ".softmax.npy"))
    if not np.allclose(b, stored, rtol=0, atol=1e-5):
        return f"{stem}: the network built here is not the fixture's (softmax off by {np.abs(b - stored).max():.3g})"
    print(f"ok  {stem}: {how}; Keras' softmax ({a.size} values) identical to the fixture's")
    return None


def check_fixture(binary, keras_dir, stem, work):
    shape, x, source, exported = exported_fixture(binary, keras_dir, stem, work, ".h5")
    ours, missing = filled_from(exported, *shape)
    if missing:
        return f"{stem}: the export leaves out {len(missing)} weights, e.g. {missing[0]}"
    theirs = build_unet(keras, *shape)
    theirs.load_weights(source, by_name=True)
    return softmax_failure(keras_dir, stem, ours, theirs, x, "every weight filled")


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


def keras2_weights(path, model):
    """Sets every weight of `model` from a Keras 2 weights file (h5py, no Keras loader)."""
    import h5py
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer in model.layers:
            if layer.weights:
                group = root[layer.name]
                layer.set_weights([np.asarray(group[name]) for name in group.attrs["weight_names"]])


def check_fixture_keras3(binary, keras_dir, stem, work):
    shape, x, source, exported = exported_fixture(binary, keras_dir, stem, work, ".keras")
    theirs = build_unet(keras, *shape)
    keras2_weights(source, theirs)
    return softmax_failure(keras_dir, stem, keras.saving.load_model(exported), theirs, x, "load_model runs the .keras")


def check_trained_keras3(binary, work):
    phantom, model_dir = os.path.join(work, "phantom.nii.gz"), os.path.join(work, "trained3")
    exported, rewritten = os.path.join(work, "trained.keras"), os.path.join(work, "keras_rewritten.keras")
    run(binary, "phantom", "--age-months", "6", "--out", phantom)
    run(binary, "train", "--labels", phantom, "--model-dir", model_dir, "--levels", "3", "--features", "4",
        "--shape", "32", "--steps", "3", "--steps-per-epoch", "3", "--device", "cpu")
    run(binary, "export", "--model", model_dir, "--keras", exported)
    labels = json.load(open(os.path.join(model_dir, "model.json")))["labels"]
    keras.saving.load_model(exported).save(rewritten)
    back, ours = os.path.join(work, "back3"), os.path.join(work, "ours3")
    run(binary, "import", "--keras", rewritten, "--out", back, "--labels", ",".join(str(v) for v in labels))
    run(binary, "import", "--keras", exported, "--out", ours)
    before = safetensors(os.path.join(model_dir, "model.safetensors"))
    for name, folder in (("Keras' model.save", back), ("our archive", ours)):
        after = safetensors(os.path.join(folder, "model.safetensors"))
        changed = sorted(set(before) ^ set(after)) + [n for n in before if n in after and before[n] != after[n]]
        if changed:
            return f"trained: {len(changed)} tensors differ after {name}, e.g. {changed[0]}"
    if json.load(open(os.path.join(ours, "model.json")))["labels"] != labels:
        return "trained: our archive imported without --labels gives other labels than the model's"
    print(f"ok  trained here: {len(before)} tensors back byte for byte after Keras loaded and saved the .keras")
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(here, "..", "build", "infant-synthseg"))
    default_shared = os.environ.get("INFANT_SHARED_DIR", os.path.join(here, "..", "..", "shared"))
    parser.add_argument("--shared", default=default_shared)
    parser.add_argument("--trained-only", action="store_true", help="without ../shared: only the trained model")
    parser.add_argument("--keras3", action="store_true", help="check .keras archives with Keras 3")
    args = parser.parse_args()
    global keras
    if args.keras3:
        import keras
        if not keras.__version__.startswith("3."):
            sys.exit(f"--keras3 needs Keras 3, found {keras.__version__}")
        print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
        fixture_check, trained_check = check_fixture_keras3, check_trained_keras3
    else:
        from unet_keras import keras, tf
        print(f"tensorflow {tf.__version__}, tf-keras {keras.__version__}")
        fixture_check, trained_check = check_fixture, check_trained
    keras_dir = os.path.join(args.shared, "data", "keras")
    if not args.trained_only and not os.path.isdir(keras_dir):
        sys.exit(f"{keras_dir} is missing: give --shared, or --trained-only to check the trained model alone")
    failures = []
    with tempfile.TemporaryDirectory() as work:
        if not args.trained_only:
            failures += [fixture_check(args.binary, keras_dir, stem, work) for stem in FIXTURES]
        failures.append(trained_check(args.binary, work))
    failures = [f for f in failures if f]
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
