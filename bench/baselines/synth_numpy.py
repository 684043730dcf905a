#!/usr/bin/env python3
"""NumPy/SciPy baseline of the generator, stage for stage as SPEC.md section 3 defines it
(the way the reference's lab2im/neurite code computes it, on the CPU, vectorised):
a 155x175x149 label map to the 128x160x128 training crop.

usage: synth_numpy.py LABELS.nii.gz [--repeats N] [--json OUT]
Prints one line per stage (median seconds) and writes JSON for scripts/bench.sh.
Optional: needs numpy, scipy and nibabel (pip); never part of the build or the tests.
"""
import math
import time

import nibabel as nib
import numpy as np
from scipy import ndimage

from report import baseline_arguments, report

MAP = (155, 175, 149)
CROP = (128, 160, 128)


def padded_map(path):
    data = np.asarray(nib.load(path).dataobj).astype(np.int32)
    out = np.zeros(MAP, np.int32)
    shift = [(m - s) // 2 for m, s in zip(MAP, data.shape)]
    out[shift[0]:shift[0] + data.shape[0], shift[1]:shift[1] + data.shape[1], shift[2]:shift[2] + data.shape[2]] = data
    return out


def resize(field, shape):
    """Origin-aligned trilinear resize with clamping, as neurite's resize: x -> x * src / dst."""
    grids = np.meshgrid(*[np.arange(n) * (s / n) for n, s in zip(shape, field.shape[:3])], indexing="ij")
    if field.ndim == 3:
        return ndimage.map_coordinates(field, grids, order=1, mode="nearest")
    return np.stack([ndimage.map_coordinates(field[..., c], grids, order=1, mode="nearest")
                     for c in range(field.shape[3])], axis=-1)


def integrate(v, steps=7):
    v = v / 2 ** steps
    ident = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in v.shape[:3]], indexing="ij")
    for _ in range(steps):
        loc = [ident[d] + v[..., d] for d in range(3)]
        v = v + np.stack([ndimage.map_coordinates(v[..., c], loc, order=1, mode="nearest") for c in range(3)], -1)
    return v


def main():
    parser = baseline_arguments(5)
    parser.add_argument("labels")
    args = parser.parse_args()

    labels = padded_map(args.labels)
    rng = np.random.default_rng(1)
    values, generation = np.unique(labels, return_inverse=True)
    generation = generation.reshape(MAP).astype(np.uint8)
    times = {k: [] for k in ["velocity", "deform", "gmm", "blur", "bias", "normalise", "sample"]}

    for _ in range(args.repeats):
        t_sample = time.perf_counter()
        # 1. velocity: 7x7x6x3 coarse field -> half size -> scaling and squaring
        t = time.perf_counter()
        small = [math.ceil(0.04 * s) for s in MAP]
        half = [max(s // 2, v) for s, v in zip(MAP, small)]
        vel = rng.normal(0, 3, small + [3]).astype(np.float32)
        field = integrate(resize(vel, half))
        times["velocity"].append(time.perf_counter() - t)

        # 2. deform: displacement at the crop's voxels, affine, nearest label
        t = time.perf_counter()
        offset = [rng.integers(0, m - c + 1) for m, c in zip(MAP, CROP)]
        x = np.meshgrid(*[np.arange(c, dtype=np.float32) + o for c, o in zip(CROP, offset)], indexing="ij")
        ratio = [h / m for h, m in zip(half, MAP)]
        phi = [ndimage.map_coordinates(field[..., d], [x[e] * ratio[e] for e in range(3)], order=1, mode="nearest")
               for d in range(3)]
        centre = [(m - 1) / 2 for m in MAP]
        c = [x[d] - centre[d] + phi[d] for d in range(3)]
        a = np.eye(3) + rng.uniform(-0.1, 0.1, (3, 3))
        src = [np.clip(np.floor(a[r, 0] * c[0] + a[r, 1] * c[1] + a[r, 2] * c[2] + centre[r] + 0.5), 0, MAP[r] - 1)
               .astype(np.intp) for r in range(3)]
        gen = generation[src[0], src[1], src[2]]
        times["deform"].append(time.perf_counter() - t)

        # 3. GMM
        t = time.perf_counter()
        means = rng.uniform(25, 225, len(values)).astype(np.float32)
        stds = rng.uniform(5, 25, len(values)).astype(np.float32)
        image = means[gen] + stds[gen] * rng.standard_normal(CROP, dtype=np.float32)
        times["gmm"].append(time.perf_counter() - t)

        # 4. blur: 3 separable taps per axis, zero outside
        t = time.perf_counter()
        for axis in range(3):
            sigma = 0.5 * rng.uniform(1 / 1.03, 1.03)
            w = np.exp(-0.5 * np.arange(-1, 2) ** 2 / sigma ** 2)
            image = ndimage.convolve1d(image, (w / w.sum()).astype(np.float32), axis=axis, mode="constant")
        times["blur"].append(time.perf_counter() - t)

        # 5. bias field, clip, range
        t = time.perf_counter()
        bias_small = rng.normal(0, 0.3, [math.ceil(0.025 * s) for s in CROP]).astype(np.float32)
        image = np.clip(image * np.exp(resize(bias_small, CROP)), 0, 300)
        low, high = image.min(), image.max()
        times["bias"].append(time.perf_counter() - t)

        # 6. normalise and gamma
        t = time.perf_counter()
        image = ((image - low) / (high - low)) ** np.float32(np.exp(rng.normal(0, 0.5)))
        times["normalise"].append(time.perf_counter() - t)
        times["sample"].append(time.perf_counter() - t_sample)

    report("numpy", {k: float(np.median(v)) for k, v in times.items()}, args.json)


if __name__ == "__main__":
    main()
