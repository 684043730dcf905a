#!/usr/bin/env python3
"""cornucopia (PyTorch, CPU) baseline of the generator: its transforms set as close to ours as
they go, on the same 155x175x149 map and 128x160x128 crop as synth_numpy.py, each timed alone,
and its whole SynthFromLabelTransform with the stages we do not have switched off.

  spatial    AffineElasticTransform: affine (15 deg, 15% zoom, 0.012 shear), a 7x7x6 velocity
             field (linear, as ours), 7 squaring steps, nearest label, the crop. cornucopia
             integrates on the whole map's grid; ours on half of it (SPEC.md 3.2).
             Compare with our velocity + deform.
  gmm        GaussianMixtureTransform, one Gaussian per label, background 0, no texture.
  blur       SmoothTransform, the same sigma as synth_numpy.py (FWHM = 2.3548 sigma).
  bias       MulFieldTransform on a 4x4x4 grid (linear), then the clip and the min/max.
             cornucopia draws the field's factors directly; ours takes exp per voxel.
  normalise  GammaTransform: min-max to [0, 1], then the power.
  sample     SynthFromLabelTransform(order=1, elastic_steps=7, patch=crop) without texture,
             noise, g-factor or resolution loss: deform, GMM, bias, blur, gamma.

usage: synth_cornucopia.py LABELS.nii.gz [--repeats N] [--threads T] [--json OUT]
Prints one line per stage (median seconds) and writes JSON for scripts/bench.sh.
Optional: needs torch, cornucopia, numpy, scipy and nibabel (pip); never part of the build or the tests.
"""
import math
import time

import numpy as np
import torch

import cornucopia as cc

from report import baseline_arguments, report
from synth_numpy import CROP, MAP, padded_map  # the same map, padded the same way


def padded_generation(path):
    """The label map padded to MAP, as generation indices 0..K-1 (0 the background)."""
    values, index = np.unique(padded_map(path), return_inverse=True)
    return torch.from_numpy(index.reshape(MAP).astype(np.int64)[None].copy()), len(values)


def timed(times, key, fn):
    t = time.perf_counter()
    out = fn()
    times[key].append(time.perf_counter() - t)
    return out


def main():
    parser = baseline_arguments(5)
    parser.add_argument("labels")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)

    labels, classes = padded_generation(args.labels)
    velocity_shape = [math.ceil(0.04 * s) for s in MAP]
    bias_shape = [math.ceil(0.025 * s) for s in CROP]
    spatial = cc.AffineElasticTransform(dmax=3, unit="vox", shape=velocity_shape, steps=7, rotations=15, shears=0.012,
                                        zooms=0.15, patch=list(CROP), order=1, nearest_if_label=True)
    whole = cc.SynthFromLabelTransform(patch=list(CROP), order=1, elastic_steps=7, elastic_nodes=max(velocity_shape),
                                       gmm_fwhm=False, motion_fwhm=2.3548 * 0.5, resolution=False, snr=False,
                                       gfactor=False)
    times = {k: [] for k in ["spatial", "gmm", "blur", "bias", "normalise", "sample"]}
    # One untimed round first: PyTorch's first calls allocate and pick kernels.
    for repeat in range(args.repeats + 1):
        if repeat == 1:
            times = {k: [] for k in times}
        with torch.no_grad():
            deformed = timed(times, "spatial", lambda: spatial(labels))
            mu = torch.as_tensor(rng.uniform(25, 225, classes), dtype=torch.float32)
            sigma = torch.as_tensor(rng.uniform(5, 25, classes), dtype=torch.float32)
            image = timed(times, "gmm", lambda: cc.GaussianMixtureTransform(mu, sigma, background=0)(deformed))
            fwhm = 2.3548 * 0.5 * rng.uniform(1 / 1.03, 1.03)
            image = timed(times, "blur", lambda: cc.SmoothTransform(fwhm=fwhm)(image))
            strength = rng.uniform(0, 0.5)
            bias = cc.MulFieldTransform(shape=bias_shape, vmin=1 - strength, vmax=1 + strength, order=1)

            def bias_clip_range():
                out = bias(image).clamp_(0, 300)
                return out, torch.aminmax(out)

            image, _ = timed(times, "bias", bias_clip_range)
            gamma = float(np.exp(rng.normal(0, 0.5)))
            timed(times, "normalise", lambda: cc.GammaTransform(gamma)(image))
            timed(times, "sample", lambda: whole(labels))

    report("cornucopia", {k: float(np.median(v)) for k, v in times.items()}, args.json, args.threads)


if __name__ == "__main__":
    main()
