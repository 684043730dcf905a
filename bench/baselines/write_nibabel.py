#!/usr/bin/env python3
"""Baseline of bench_post's WriteNifti/posteriors: nibabel writing the same volume as .nii.gz
(its own gzip settings): 34 float32 posterior frames of 155x175x149, small random values with
one high value per voxel: the same kind of data as the benchmark's (its high value sits in the
frame of a phantom's label, here in a random frame). (Its label-map row has no baseline: the
benchmark's map is a phantom with islands, which this script does not build.)

usage: write_nibabel.py [--repeats N] [--json OUT]
Optional: needs numpy and nibabel (pip); never part of the build or the tests.
"""
import argparse
import json
import os
import tempfile
import time

import nibabel as nib
import numpy as np


def best_time(write, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        write()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    shape = (155, 175, 149)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 34, shape)  # the frame holding each voxel's high value
    post = rng.uniform(0.0, 0.02, shape + (34,)).astype(np.float32)
    np.put_along_axis(post, labels[..., None], rng.uniform(0.5, 0.95, shape + (1,)).astype(np.float32),
                      axis=3)
    with tempfile.TemporaryDirectory() as tmp:
        post_file = os.path.join(tmp, "posteriors.nii.gz")
        result = {"posteriors": best_time(lambda: nib.save(nib.Nifti1Image(post, np.eye(4)), post_file), args.repeats)}
        size = os.path.getsize(post_file) / 1e6
    print(f"nibabel write posteriors {result['posteriors'] * 1e3:9.1f} ms  ({size:.1f} MB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
