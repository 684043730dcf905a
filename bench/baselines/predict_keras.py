#!/usr/bin/env python3
"""TensorFlow/Keras baseline of bench_predict, the framework the published predict runs on:
predict_torch.py's stages on the same scan (155x175x149, 1 mm, LIA), with the network of
unet_keras.py (random weights), flip on.
  preprocess:  reorient to RAS, min-max normalise, pad to 16 (predict_common.py)
  network:     forward + mirrored forward, channels swapped back, averaged (fp32, channels-last)
  postprocess: Gaussian smoothing sigma 0.5 per channel, argmax, largest 6-connected component,
               crop, back to LIA (post_scipy.py)

usage: predict_keras.py [--repeats N] [--json OUT]
Optional: needs tensorflow-cpu, tf-keras, numpy and scipy (pip); never part of the build or the tests.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from unet_keras import build_unet, tf  # noqa: E402
from post_scipy import postprocess  # noqa: E402
from predict_common import SWAP, lia_scan, preprocess  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    lia = lia_scan()
    model = build_unet()
    forward = tf.function(lambda v: model(v, training=False))
    times = {"preprocess": [], "network": [], "postprocess": []}
    for run in range(args.repeats + 1):
        t = time.perf_counter()
        padded, before, shape = preprocess(lia)
        t_pre = time.perf_counter()
        inp = tf.constant(padded)[None, ..., None]
        p = forward(inp)
        q = tf.reverse(forward(tf.reverse(inp, axis=[1])), axis=[1])
        p = 0.5 * (p + tf.gather(q, SWAP, axis=-1))
        post = tf.transpose(p[0], (3, 0, 1, 2)).numpy()
        t_net = time.perf_counter()
        postprocess(post, before, shape)
        t_post = time.perf_counter()
        if run > 0:  # the first run warms up (and traces the tf.function)
            times["preprocess"].append(t_pre - t)
            times["network"].append(t_net - t_pre)
            times["postprocess"].append(t_post - t_net)
    result = {k: float(min(v)) for k, v in times.items()}
    result["total"] = sum(result.values())
    for k, v in result.items():
        print(f"keras predict {k:12s} {v * 1e3:9.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
