#!/usr/bin/env python3
"""Makes keras3_unet_l3_f4_c34_in2.weights.h5: the 2-channel Keras fixture of
../shared/data/keras (unet_l3_f4_c34_in2_weights.h5, tf-keras' layout) written again by Keras 3's
own save_weights, the `.weights.h5` layout (a group per layer under /layers, weights numbered).
tests/test_keras.cpp imports both and expects the same tensors.

usage: make_keras3_fixture.py SHARED_DIR OUT.weights.h5   (needs tensorflow-cpu with Keras 3, h5py)
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import h5py  # noqa: E402
import keras  # noqa: E402

KL = keras.layers


def build(levels, features, labels, channels):
    """The published U-Net with its layer names (as bench/baselines/unet_keras.py, in Keras 3)."""
    x = inputs = KL.Input(shape=(None, None, None, channels), name="unet_input")
    skips = []
    for level in range(levels):
        for c in range(2):
            x = KL.Conv3D(features * 2 ** level, 3, padding="same", activation="elu",
                          name=f"unet_conv_downarm_{level}_{c}")(x)
        skips.append(x)
        x = KL.BatchNormalization(epsilon=1e-3, name=f"unet_bn_down_{level}")(x)
        if level < levels - 1:
            x = KL.MaxPooling3D(2, name=f"unet_maxpool_{level}")(x)
    for i, level in enumerate(range(levels - 2, -1, -1)):
        up = KL.UpSampling3D(2, name=f"unet_up_{levels + i}")(x)
        x = KL.Concatenate(name=f"unet_merge_{levels + i}")([skips[level], up])
        for c in range(2):
            x = KL.Conv3D(features * 2 ** level, 3, padding="same", activation="elu",
                          name=f"unet_conv_uparm_{levels + i}_{c}")(x)
        x = KL.BatchNormalization(epsilon=1e-3, name=f"unet_bn_up_{i}")(x)
    x = KL.Conv3D(labels, 1, name="unet_likelihood")(x)
    return keras.Model(inputs, KL.Activation("softmax", name="unet_prediction")(x))


def main():
    shared, out = sys.argv[1], sys.argv[2]
    source = h5py.File(os.path.join(shared, "data", "keras", "unet_l3_f4_c34_in2_weights.h5"), "r")
    model = build(3, 4, 34, 2)
    for layer in model.layers:
        if layer.weights:
            group = source[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            layer.set_weights([group[n][()] for n in names])
    model.save_weights(out)


if __name__ == "__main__":
    main()
