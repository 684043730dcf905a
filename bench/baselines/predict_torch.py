#!/usr/bin/env python3
"""Baseline of bench_predict: the same prediction stages in NumPy/SciPy/PyTorch on the same
kind of scan (155x175x149, 1 mm, LIA), the published U-Net with random weights, flip on.
  preprocess:  reorient to RAS (axis flips/transposes), min-max normalise, pad to 16
  network:     forward + mirrored forward, channels swapped back, averaged (fp32, channels-last)
  postprocess: Gaussian smoothing sigma 0.5 per channel (3 taps), argmax, largest
               6-connected component, crop, back to LIA

usage: predict_torch.py [--device cpu|cuda] [--repeats N] [--json OUT]
Optional: needs numpy, scipy and torch (pip); never part of the build or the tests.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from unet_torch import UNet  # noqa: E402
from post_scipy import SEG, postprocess  # noqa: E402

LEFT = [2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 21, 26, 28, 30, 31]
RIGHT = [41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 61, 58, 60, 62, 63]


def twin(label):
    if label in LEFT:
        return RIGHT[LEFT.index(label)]
    if label in RIGHT:
        return LEFT[RIGHT.index(label)]
    return label


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    dev = args.device
    rng = np.random.default_rng(1)
    # An LIA volume: x runs R->L, y runs S->I, z runs P->A.
    lia = (rng.random((155, 149, 175), dtype=np.float32) * 200).astype(np.float32)
    model = UNet().to(dev).to(memory_format=torch.channels_last_3d).eval()
    swap = [SEG.index(twin(l)) for l in SEG]
    times = {"preprocess": [], "network": [], "postprocess": []}
    for run in range(args.repeats + 1):
        t = time.perf_counter()
        ras = np.ascontiguousarray(np.transpose(lia[::-1, ::-1, :], (0, 2, 1)))  # LIA -> RAS
        lo, hi = ras.min(), ras.max()
        x = (ras - lo) / (hi - lo)
        shape = [-(-n // 16) * 16 for n in x.shape]
        before = [(s - n) // 2 for s, n in zip(shape, x.shape)]
        padded = np.zeros(shape, np.float32)
        padded[before[0]:before[0] + x.shape[0], before[1]:before[1] + x.shape[1], before[2]:before[2] + x.shape[2]] = x
        t_pre = time.perf_counter()
        with torch.no_grad():
            inp = torch.from_numpy(padded).to(dev)[None, None].to(memory_format=torch.channels_last_3d)
            p = torch.softmax(model(inp), dim=1)
            q = torch.softmax(model(torch.flip(inp, dims=[2])), dim=1)
            p = 0.5 * (p + torch.flip(q, dims=[2])[:, swap])
            post = p[0].cpu().numpy()
        t_net = time.perf_counter()
        postprocess(post, before, x.shape)
        t_post = time.perf_counter()
        if run > 0:  # the first run warms up
            times["preprocess"].append(t_pre - t)
            times["network"].append(t_net - t_pre)
            times["postprocess"].append(t_post - t_net)
    result = {k: float(min(v)) for k, v in times.items()}
    result["total"] = sum(result.values())
    for k, v in result.items():
        print(f"torch predict {k:12s} {v * 1e3:9.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
