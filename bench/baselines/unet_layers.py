"""The U-Net of SPEC.md section 4 as the published SynthSeg tools build it (neurite's `unet`
called as SynthSeg's predict calls it: ELU inside each Conv3D, batch norm once per level after
its convolutions, the skip taken before it, nearest upsampling, concatenation [skip, upsampled],
softmax), with the released files' layer names, so that `load_weights(..., by_name=True)` fills
it from a published or exported `.h5`. No framework is imported here: the caller passes its
Keras, so that any Keras release builds it (tf-keras, Keras 3 on any backend).
"""


def build_unet(api, levels=5, features=24, labels=34, channels=1, shape=(None, None, None)):
    """The published network with its layer names (ext/neuron/models.py `unet`) in the Keras
    module `api`: tf-keras (the baselines, scripts/keras-export-check.py) or Keras 3
    (tests/data/make_keras3_fixture.py)."""
    KL = api.layers
    x = inputs = KL.Input(shape=(*shape, channels), name="unet_input")
    skips = []
    for level in range(levels):
        n = features * 2 ** level
        for c in range(2):
            x = KL.Conv3D(n, 3, padding="same", activation="elu", name=f"unet_conv_downarm_{level}_{c}")(x)
        skips.append(x)
        x = KL.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, name=f"unet_bn_down_{level}")(x)
        if level < levels - 1:
            x = KL.MaxPooling3D(2, name=f"unet_maxpool_{level}")(x)
    for i, level in enumerate(range(levels - 2, -1, -1)):
        n = features * 2 ** level
        up = KL.UpSampling3D(2, name=f"unet_up_{levels + i}")(x)
        x = KL.Concatenate(axis=-1, name=f"unet_merge_{levels + i}")([skips[level], up])
        for c in range(2):
            x = KL.Conv3D(n, 3, padding="same", activation="elu", name=f"unet_conv_uparm_{levels + i}_{c}")(x)
        x = KL.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, name=f"unet_bn_up_{i}")(x)
    x = KL.Conv3D(labels, 1, name="unet_likelihood")(x)
    return api.Model(inputs, KL.Activation("softmax", name="unet_prediction")(x))
