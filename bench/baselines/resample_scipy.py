#!/usr/bin/env python3
"""SciPy baseline of bench_resample: a 155x175x149 volume through the same transform (5 degrees
about z around the centre plus a fractional shift), trilinear on float32 and nearest on int32,
coordinates clamped (mode="nearest"), as scipy.ndimage.affine_transform does it; and
predict's blur before it resamples a 512x512x40 scan of 0.4 x 0.4 x 3 mm to 1 mm, as SynthSeg's
resample_volume blurs it (gaussian_filter, sigma 0.625 voxel along x and y).

usage: resample_scipy.py [--repeats N] [--json OUT]
Optional: needs numpy and scipy (pip); never part of the build or the tests.
"""
import math
import time

import numpy as np
from scipy import ndimage
from report import baseline_arguments, save_json

DIM = (155, 175, 149)


def transform():
    angle = math.radians(5)
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = (DIM[0] - 1) / 2, (DIM[1] - 1) / 2
    matrix = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    offset = np.array([cx - c * cx + s * cy + 0.3, cy - s * cx - c * cy - 0.2, 0.4])
    return matrix, offset


def main():
    parser = baseline_arguments(5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, DIM).astype(np.float32)
    labels = rng.integers(0, 256, DIM).astype(np.int32)
    matrix, offset = transform()
    result = {}
    for name, volume, order in [("trilinear", image, 1), ("nearest", labels, 0)]:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ndimage.affine_transform(volume, matrix, offset, order=order, mode="nearest")
            times.append(time.perf_counter() - t)
        result[name] = float(np.median(times))
        print(f"scipy resample {name:10s} {result[name] * 1e3:8.1f} ms")
    scan = rng.integers(0, 256, (512, 512, 40)).astype(np.float32)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ndimage.gaussian_filter(scan, (0.625, 0.625, 0))
        times.append(time.perf_counter() - t)
    result["antialias"] = float(np.median(times))
    print(f"scipy resample {'antialias':10s} {result['antialias'] * 1e3:8.1f} ms")
    save_json(result, args.json)


if __name__ == "__main__":
    main()
