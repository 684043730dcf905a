#!/usr/bin/env python3
"""Baseline of bench_post's WriteNifti/posteriors and WriteMgh/posteriors: nibabel writing the
same volume as .nii.gz and as .mgz (its own gzip settings): 34 float32 posterior frames of
155x175x149, small random values with one high value per voxel: the same kind of data as the
benchmark's (its high value sits in the frame of a phantom's label, here in a random frame).
And of ReadVolume: nibabel reading one such frame back as float32 from either. (The label-map
row has no baseline: the benchmark's map is a phantom with islands, which this script does not
build.)

usage: write_nibabel.py [--repeats N] [--json OUT]
Optional: needs numpy and nibabel (pip); never part of the build or the tests.
"""
import os
import sys
import tempfile

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import baseline_arguments, best_time, save_json  # noqa: E402


def main():
    parser = baseline_arguments(3)
    args = parser.parse_args()
    shape = (155, 175, 149)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 34, shape)  # the frame holding each voxel's high value
    post = rng.uniform(0.0, 0.02, shape + (34,)).astype(np.float32)
    np.put_along_axis(post, labels[..., None], rng.uniform(0.5, 0.95, shape + (1,)).astype(np.float32),
                      axis=3)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, name, make in (("posteriors", "posteriors.nii.gz", nib.Nifti1Image),
                                ("posteriors_mgz", "posteriors.mgz", nib.MGHImage)):
            post_file = os.path.join(tmp, name)
            result[key] = best_time(lambda: nib.save(make(post, np.eye(4)), post_file), args.repeats)
            size = os.path.getsize(post_file) / 1e6
            print(f"nibabel write {name:18s} {result[key] * 1e3:9.1f} ms  ({size:.1f} MB)")
        # One frame, a scan's size, read back as float32 (what our read_image gives).
        scan = np.ascontiguousarray(post[..., 0])
        for key, name, make in (("read_nii_gz", "scan.nii.gz", nib.Nifti1Image), ("read_mgz", "scan.mgz", nib.MGHImage)):
            scan_file = os.path.join(tmp, name)
            nib.save(make(scan, np.eye(4)), scan_file)
            result[key] = best_time(lambda: nib.load(scan_file).get_fdata(dtype=np.float32), args.repeats)
            print(f"nibabel read  {name:18s} {result[key] * 1e3:9.1f} ms")
    save_json(result, args.json)


if __name__ == "__main__":
    main()
