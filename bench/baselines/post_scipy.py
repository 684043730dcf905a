#!/usr/bin/env python3
"""Baseline of bench_predict's PredictPost: predict's post-processing in NumPy/SciPy on the
posteriors of a 155x175x149 scan (34 classes, padded to 160x192x160 by the network, a multiple of 32):
Gaussian smoothing sigma 0.5 per channel (3 taps), crop, argmax, largest 6-connected component,
back to LIA. predict_torch.py runs the same function after its network.

usage: post_scipy.py [--repeats N] [--json OUT]
Optional: needs numpy and scipy (pip); never part of the build or the tests.
"""
import time

import numpy as np
from scipy import ndimage
from report import baseline_arguments, save_json

SEG = [0, 14, 15, 16, 170, 172, 2, 3, 4, 7, 8, 10, 11, 12, 13, 17, 18, 21, 26, 28,
       41, 42, 43, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60, 61]


def postprocess(post, before, shape):
    """post: (classes, *padded) float32 posteriors; the scan of `shape` starts at `before`."""
    post = ndimage.gaussian_filter(post, sigma=(0, 0.5, 0.5, 0.5), truncate=2.0, mode="constant")
    post = post[:, before[0]:before[0] + shape[0], before[1]:before[1] + shape[1], before[2]:before[2] + shape[2]]
    seg = np.asarray(SEG)[post.argmax(0)]
    components, n = ndimage.label(seg > 0)
    if n > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        seg[components != sizes.argmax()] = 0
    # Back to LIA, as a copy (a view did none of the work ours does there).
    return np.ascontiguousarray(np.transpose(seg, (0, 2, 1))[::-1, ::-1, :])


def main():
    parser = baseline_arguments(3)
    args = parser.parse_args()
    shape, padded = (155, 175, 149), (160, 192, 160)
    before = [(p - n) // 2 for p, n in zip(padded, shape)]
    rng = np.random.default_rng(1)
    post = rng.random((len(SEG),) + padded, dtype=np.float32)
    post /= post.sum(0, keepdims=True)
    times = []
    for run in range(args.repeats + 1):
        t = time.perf_counter()
        postprocess(post, before, shape)
        if run > 0:  # the first run warms up
            times.append(time.perf_counter() - t)
    result = {"postprocess": float(min(times))}
    print(f"scipy postprocess {result['postprocess'] * 1e3:9.1f} ms")
    save_json(result, args.json)


if __name__ == "__main__":
    main()
