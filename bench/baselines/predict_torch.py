#!/usr/bin/env python3
"""Baseline of bench_predict: the same prediction stages in NumPy/SciPy/PyTorch on the same
kind of scan (155x175x149, 1 mm, LIA), the published U-Net with random weights, flip on.
  preprocess:  reorient to RAS (axis flips/transposes), min-max normalise, pad to 32
  network:     forward + mirrored forward, channels swapped back, averaged (fp32, channels-last)
  postprocess: Gaussian smoothing sigma 0.5 per channel (3 taps), argmax, largest
               6-connected component, crop, back to LIA

usage: predict_torch.py [--device cpu|cuda] [--repeats N] [--json OUT]
Optional: needs numpy, scipy and torch (pip); never part of the build or the tests.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from unet_torch import UNet  # noqa: E402
from predict_common import SWAP, time_predict  # noqa: E402
from report import baseline_arguments  # noqa: E402


def main():
    parser = baseline_arguments(1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dev = args.device
    model = UNet().to(dev).to(memory_format=torch.channels_last_3d).eval()

    def network(padded):
        with torch.no_grad():
            inp = torch.from_numpy(padded).to(dev)[None, None].to(memory_format=torch.channels_last_3d)
            p = torch.softmax(model(inp), dim=1)
            q = torch.softmax(model(torch.flip(inp, dims=[2])), dim=1)
            return (0.5 * (p + torch.flip(q, dims=[2])[:, SWAP]))[0].cpu().numpy()

    time_predict("torch predict", network, args.repeats, args.json, torch.get_num_threads())


if __name__ == "__main__":
    main()
