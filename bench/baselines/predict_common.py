"""What bench_predict's baselines share, whatever runs their network: the scan (155x175x149,
1 mm, LIA, seeded), its preprocessing (reorient to RAS, min-max normalise, pad to 16), the
channel swap of the flipped forward, SciPy's post-processing and the timed loop around them.
Used by predict_torch.py and predict_keras.py.
"""
import time

import numpy as np

from post_scipy import SEG, postprocess
from report import report

LEFT = [2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 21, 26, 28, 30, 31]
RIGHT = [41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 61, 58, 60, 62, 63]


def twin(label):
    if label in LEFT:
        return RIGHT[LEFT.index(label)]
    if label in RIGHT:
        return LEFT[RIGHT.index(label)]
    return label


# Channel of each channel's left/right twin: the flipped forward's channels swapped back.
SWAP = [SEG.index(twin(label)) for label in SEG]


def lia_scan():
    # An LIA volume: x runs R->L, y runs S->I, z runs P->A.
    rng = np.random.default_rng(1)
    return (rng.random((155, 149, 175), dtype=np.float32) * 200).astype(np.float32)


def preprocess(lia):
    """The padded RAS volume in [0, 1], where the scan starts in it and its shape."""
    ras = np.ascontiguousarray(np.transpose(lia[::-1, ::-1, :], (0, 2, 1)))  # LIA -> RAS
    lo, hi = ras.min(), ras.max()
    x = (ras - lo) / (hi - lo)
    shape = [-(-n // 32) * 32 for n in x.shape]  # as the published SynthSeg and our models pad
    before = [(s - n) // 2 for s, n in zip(shape, x.shape)]
    padded = np.zeros(shape, np.float32)
    padded[before[0]:before[0] + x.shape[0], before[1]:before[1] + x.shape[1], before[2]:before[2] + x.shape[2]] = x
    return padded, before, x.shape


def time_predict(label, network, repeats, json_path, threads=1):
    """Times the three stages, best of `repeats` after a warm-up run, and reports them with their
    total. network(padded) -> the flip-averaged posteriors, (classes, *padded.shape)."""
    lia = lia_scan()
    times = {"preprocess": [], "network": [], "postprocess": []}
    for run in range(repeats + 1):
        t = time.perf_counter()
        padded, before, shape = preprocess(lia)
        t_pre = time.perf_counter()
        post = network(padded)
        t_net = time.perf_counter()
        postprocess(post, before, shape)
        t_post = time.perf_counter()
        if run > 0:  # the first run warms up (and traces or tunes the framework's kernels)
            times["preprocess"].append(t_pre - t)
            times["network"].append(t_net - t_pre)
            times["postprocess"].append(t_post - t_net)
    # Each stage's best, and the best whole run (the stages' bests need not come from one run).
    totals = [sum(stages) for stages in zip(*times.values())]
    result = {k: float(min(v)) for k, v in times.items()}
    result["total"] = float(min(totals))
    report(label, result, json_path, threads)
