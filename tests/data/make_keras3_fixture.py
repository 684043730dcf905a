#!/usr/bin/env python3
"""Makes keras3_unet_l3_f4_c34_in2.weights.h5 and keras3_unet_l3_f4_c34_in2.keras: the 2-channel
Keras fixture of ../shared/data/keras (unet_l3_f4_c34_in2_weights.h5, tf-keras' layout) written
again by Keras 3, with its own save_weights (the `.weights.h5` layout: a group per layer under
/layers, weights numbered) and its own model.save (the `.keras` archive: a zip of that weights
file, config.json and metadata.json). tests/test_keras.cpp imports all three and expects the
same tensors.

usage: make_keras3_fixture.py SHARED_DIR OUT_DIR   (needs tensorflow-cpu with Keras 3, h5py)
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import h5py  # noqa: E402
import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "baselines"))
from unet_keras import build_unet  # noqa: E402


def main():
    shared, out = sys.argv[1], sys.argv[2]
    source = h5py.File(os.path.join(shared, "data", "keras", "unet_l3_f4_c34_in2_weights.h5"), "r")
    model = build_unet(3, 4, 34, 2, api=keras)  # Keras 3, where unet_keras builds in tf-keras
    for layer in model.layers:
        if layer.weights:
            group = source[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            layer.set_weights([group[n][()] for n in names])
    model.save_weights(os.path.join(out, "keras3_unet_l3_f4_c34_in2.weights.h5"))
    model.save(os.path.join(out, "keras3_unet_l3_f4_c34_in2.keras"))


if __name__ == "__main__":
    main()
