#!/usr/bin/env python3
"""Writes the MGH fixtures of this folder with nibabel (what FreeSurfer users' files are read
by in the published tools) and golden.json: for each file, nibabel's shape, affine and voxels
(x fastest, frames last), which tests/test_nifti.cpp compares our reader with.

usage: make_mgh_fixtures.py OUT_DIR   (needs nibabel and numpy)
"""
import json
import os
import sys

import nibabel as nib
import numpy as np


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(directions, zooms, centre_voxel_world):
    a = np.eye(4)
    a[:3, :3] = directions * np.asarray(zooms)
    a[:3, 3] = centre_voxel_world
    return a


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(7)
    lia = np.array([[-1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # FreeSurfer's conformed axes
    cases = {
        # An oblique, anisotropic float image of odd dims.
        "oblique_float.mgz": (rng.normal(100, 30, (5, 4, 3)).astype(np.float32),
                              affine(rotation(0.3, -0.2, 0.5), (1.2, 0.9, 2.0), (10.5, -20.25, 3.0))),
        # A label map on FreeSurfer's conformed (LIA) axes, as aseg.mgz is stored.
        "labels_lia_uchar.mgz": (rng.choice(np.array([0, 2, 3, 41, 42], np.uint8), (6, 5, 4)),
                                 affine(lia, (1, 1, 1), (-3, 2, 1))),
        # Uncompressed, int32, two frames.
        "frames_int32.mgh": (rng.integers(-1000, 1000, (4, 3, 2, 2)).astype(np.int32),
                             affine(np.eye(3), (0.5, 0.5, 0.7), (0, 0, 0))),
        "short.mgz": (rng.integers(-300, 300, (3, 4, 5)).astype(np.int16),
                      affine(lia, (0.8, 0.8, 0.8), (1, 1, 1))),
        "ushort.mgz": (rng.integers(0, 60000, (3, 3, 3)).astype(np.uint16),
                       affine(np.diag([-1.0, 1, 1]), (1, 1.5, 1), (4, 5, 6))),
    }
    golden = {}
    for name, (data, a) in cases.items():
        nib.save(nib.MGHImage(data, a), os.path.join(out, name))
        back = nib.load(os.path.join(out, name))
        golden[name] = {
            "shape": [int(s) for s in back.shape],
            "affine": back.affine.tolist(),
            "voxels": np.asarray(back.dataobj).flatten(order="F").tolist(),
        }
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print(f"nibabel {nib.__version__}: {', '.join(cases)}")


if __name__ == "__main__":
    main()
