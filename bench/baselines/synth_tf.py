#!/usr/bin/env python3
"""TensorFlow baseline of the generator, stage for stage as synth_numpy.py (SPEC.md section 3),
written with the TensorFlow operations the published SynthSeg generator is built from (lab2im's
and neurite's layers: trilinear sampling by gathering the eight corners, a Gaussian mixture by
`gather`, separable blur by `convolution`), each stage one `tf.function`: a 155x175x149 label map
to the 128x160x128 training crop, on the CPU.

usage: synth_tf.py LABELS.nii.gz [--repeats N] [--json OUT]
Prints one line per stage (median seconds) and writes JSON for scripts/bench.sh.
Optional: needs tensorflow-cpu, numpy, scipy and nibabel (pip); never part of the build or the tests.
"""
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from report import baseline_arguments, report  # noqa: E402
from synth_numpy import CROP, MAP, padded_map  # noqa: E402


def sample_linear(volume, loc):
    """volume (X, Y, Z, C) at positions loc (..., 3), trilinear, coordinates clamped."""
    dims = tf.shape(volume)[:3]
    top = tf.cast(dims - 1, tf.float32)
    loc = tf.clip_by_value(loc, 0.0, top)
    low = tf.floor(loc)
    weight = loc - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, dims - 1)
    out = 0.0
    for corner in range(8):
        bits = [(corner >> d) & 1 for d in range(3)]
        index = tf.stack([high[..., d] if b else low[..., d] for d, b in enumerate(bits)], axis=-1)
        w = 1.0
        for d, b in enumerate(bits):
            w = w * (weight[..., d] if b else 1.0 - weight[..., d])
        out = out + w[..., None] * tf.gather_nd(volume, index)
    return out


def grid(shape, scale=(1.0, 1.0, 1.0), offset=(0, 0, 0)):
    axes = [tf.range(n, dtype=tf.float32) * scale[d] + offset[d] for d, n in enumerate(shape)]
    return tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1)


def resize(field, shape):
    """Origin-aligned trilinear resize, as neurite's: x -> x * src / dst."""
    return sample_linear(field, grid(shape, [s / n for n, s in zip(shape, field.shape[:3])]))


def main():
    parser = baseline_arguments(5)
    parser.add_argument("labels")
    args = parser.parse_args()

    labels = padded_map(args.labels)
    values, generation = np.unique(labels, return_inverse=True)
    generation = tf.constant(generation.reshape(MAP).astype(np.int32))
    small = [math.ceil(0.04 * s) for s in MAP]
    half = [max(s // 2, v) for s, v in zip(MAP, small)]
    centre = [(m - 1) / 2 for m in MAP]

    @tf.function
    def velocity(vel):
        v = resize(vel, half) / 2 ** 7
        ident = grid(half)
        for _ in range(7):
            v = v + sample_linear(v, ident + v)
        return v

    @tf.function
    def deform(field, offset, affine):
        x = grid(CROP, offset=offset)
        phi = sample_linear(field, x * tf.constant([h / m for h, m in zip(half, MAP)]))
        c = x - centre + phi
        src = tf.einsum("rc,xyzc->xyzr", affine, c) + centre
        src = tf.clip_by_value(tf.floor(src + 0.5), 0.0, tf.constant([m - 1.0 for m in MAP]))
        return tf.gather_nd(generation, tf.cast(src, tf.int32))

    @tf.function
    def gmm(gen, means, stds):
        return tf.gather(means, gen) + tf.gather(stds, gen) * tf.random.normal(CROP)

    @tf.function
    def blur(image, sigmas):
        x = image[None, ..., None]
        for axis in range(3):
            w = tf.exp(-0.5 * tf.range(-1.0, 2.0) ** 2 / sigmas[axis] ** 2)
            shape = [1, 1, 1, 1, 1]
            shape[axis] = 3
            x = tf.nn.convolution(x, tf.reshape(w / tf.reduce_sum(w), shape), padding="SAME")
        return x[0, ..., 0]

    @tf.function
    def bias(image, bias_small):
        image = tf.clip_by_value(image * tf.exp(resize(bias_small[..., None], CROP)[..., 0]), 0.0, 300.0)
        return image, tf.reduce_min(image), tf.reduce_max(image)

    @tf.function
    def normalise(image, low, high, gamma):
        return ((image - low) / (high - low)) ** gamma

    rng = np.random.default_rng(1)
    times = {k: [] for k in ["velocity", "deform", "gmm", "blur", "bias", "normalise", "sample"]}

    def timed(stage, run):
        t = time.perf_counter()
        out = run()
        times[stage].append(time.perf_counter() - t)
        return out

    for repeat in range(args.repeats + 1):  # the first traces every tf.function: not counted
        t_sample = time.perf_counter()
        vel = tf.constant(rng.normal(0, 3, small + [3]).astype(np.float32))
        field = timed("velocity", lambda: velocity(vel))
        offset = tf.constant([float(rng.integers(0, m - c + 1)) for m, c in zip(MAP, CROP)])
        affine = tf.constant((np.eye(3) + rng.uniform(-0.1, 0.1, (3, 3))).astype(np.float32))
        gen = timed("deform", lambda: deform(field, offset, affine))
        means = tf.constant(rng.uniform(25, 225, len(values)).astype(np.float32))
        stds = tf.constant(rng.uniform(5, 25, len(values)).astype(np.float32))
        image = timed("gmm", lambda: gmm(gen, means, stds))
        sigmas = tf.constant((0.5 * rng.uniform(1 / 1.03, 1.03, 3)).astype(np.float32))
        image = timed("blur", lambda: blur(image, sigmas))
        bias_small = tf.constant(rng.normal(0, 0.3, [math.ceil(0.025 * s) for s in CROP]).astype(np.float32))
        image, low, high = timed("bias", lambda: bias(image, bias_small))
        gamma = tf.constant(np.float32(np.exp(rng.normal(0, 0.5))))
        image = timed("normalise", lambda: normalise(image, low, high, gamma))
        image.numpy()
        times["sample"].append(time.perf_counter() - t_sample)
        if repeat == 0:
            for v in times.values():
                v.clear()

    print(f"tensorflow {tf.__version__}")
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    report("tf", {k: float(np.median(v)) for k, v in times.items()}, args.json, threads)


if __name__ == "__main__":
    main()
