#!/usr/bin/env python3
"""Baseline of bench_predict's KerasExport/published/keras and KerasImport/published/keras:
Keras 3 saving the published U-Net (5 levels, 24 features, 34 labels; random weights) as a
`.keras` archive (`model.save`) and loading it back (`keras.saving.load_model`, which also
rebuilds the network: ours reads and checks every tensor and builds nothing).

usage: keras_files.py [--repeats N] [--json OUT]
Optional: needs Keras 3 and a backend (jax[cpu], tensorflow or torch: KERAS_BACKEND), h5py and
numpy (pip); never part of the build or the tests.
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
from report import baseline_arguments, best_time, report  # noqa: E402
from unet_layers import build_unet  # noqa: E402


def main():
    parser = baseline_arguments(3)
    args = parser.parse_args()
    model = build_unet(keras, 5, 24, 34, 1)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) + (1 if "variance" in w.path else 0)
                       for w in model.weights])
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {model.count_params()} parameters")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "published.keras")
        result = {"save_keras": best_time(lambda: model.save(path), args.repeats),
                  "load_keras": best_time(lambda: keras.saving.load_model(path), args.repeats)}
    report("keras", result, args.json)


if __name__ == "__main__":
    main()
