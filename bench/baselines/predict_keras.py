#!/usr/bin/env python3
"""TensorFlow/Keras baseline of bench_predict, the framework the published predict runs on:
predict_torch.py's stages on the same scan (155x175x149, 1 mm, LIA), with the network of
unet_keras.py (random weights), flip on.
  preprocess:  reorient to RAS, min-max normalise, pad to 32 (predict_common.py)
  network:     forward + mirrored forward, channels swapped back, averaged (fp32, channels-last)
  postprocess: Gaussian smoothing sigma 0.5 per channel, argmax, largest 6-connected component,
               crop, back to LIA (post_scipy.py)

usage: predict_keras.py [--repeats N] [--json OUT]
Optional: needs tensorflow-cpu, tf-keras, numpy and scipy (pip); never part of the build or the tests.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from unet_keras import build_unet, keras, tf  # noqa: E402
from predict_common import SWAP, time_predict  # noqa: E402
from report import baseline_arguments  # noqa: E402


def main():
    parser = baseline_arguments(1)
    args = parser.parse_args()
    model = build_unet(keras)
    forward = tf.function(lambda v: model(v, training=False))

    def network(padded):
        inp = tf.constant(padded)[None, ..., None]
        p = forward(inp)
        q = tf.reverse(forward(tf.reverse(inp, axis=[1])), axis=[1])
        return tf.transpose(0.5 * (p + tf.gather(q, SWAP, axis=-1))[0], (3, 0, 1, 2)).numpy()

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    time_predict("keras predict", network, args.repeats, args.json, threads)


if __name__ == "__main__":
    main()
