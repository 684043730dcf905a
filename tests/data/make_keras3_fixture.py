#!/usr/bin/env python3
"""Writes the 2-channel Keras fixture of ../shared/data/keras (unet_l3_f4_c34_in2_weights.h5,
tf-keras' layout) again with the Keras 3 it runs under. tests/test_keras.cpp imports them all
and expects the same tensors.

With Keras 3.6 or later:
  keras3_unet_l3_f4_c34_in2.weights.h5  its save_weights (a group per layer under /layers,
                                        weights numbered, the layer's name an attribute)
  keras3_unet_l3_f4_c34_in2.keras       its model.save (a zip of that weights file, config.json
                                        and metadata.json)
With Keras 3.0 to 3.5, whose weights files name no layer (the groups are named after the layers'
classes, in the model's layer order):
  keras3_unnamed_unet_l3_f4_c34_in2.keras  its model.save

usage: make_keras3_fixture.py SHARED_DIR OUT_DIR   (needs Keras 3 on any backend, and h5py)
The committed files: Keras 3.15.1 (tensorflow-cpu 2.21) and Keras 3.5.0 (KERAS_BACKEND=jax).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import h5py  # noqa: E402
import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "baselines"))
from unet_layers import build_unet  # noqa: E402

STEM = "unet_l3_f4_c34_in2"


def main():
    shared, out = sys.argv[1], sys.argv[2]
    source = h5py.File(os.path.join(shared, "data", "keras", STEM + "_weights.h5"), "r")
    model = build_unet(keras, 3, 4, 34, 2)
    for layer in model.layers:
        if layer.weights:
            group = source[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            layer.set_weights([group[n][()] for n in names])
    major, minor = (int(v) for v in keras.__version__.split(".")[:2])
    if (major, minor) >= (3, 6):
        model.save_weights(os.path.join(out, f"keras3_{STEM}.weights.h5"))
        model.save(os.path.join(out, f"keras3_{STEM}.keras"))
    else:
        model.save(os.path.join(out, f"keras3_unnamed_{STEM}.keras"))


if __name__ == "__main__":
    main()
