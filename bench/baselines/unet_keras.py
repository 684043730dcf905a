#!/usr/bin/env python3
"""TensorFlow/Keras baseline of bench_nn: the U-Net of SPEC.md section 4 built as the published
SynthSeg tools build it (unet_layers.py, with the released files' layer names), in tf-keras. The
same soft Dice loss and Adam as unet_torch.py, channels-last, fp32, the train step as one
tf.function (what Keras' fit runs).

usage: unet_keras.py [--scale S] [--repeats N] [--json OUT]
  UNetForward   at 160x192x160 (inference: batch norm's running statistics)
  UNetTrainStep at 128x160x128 (forward + Dice + backward + Adam)
Optional: needs tensorflow-cpu and tf-keras (pip); never part of the build or the tests.
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from unet_layers import build_unet  # noqa: E402,F401  (the other tf-keras scripts import it from here)
from report import baseline_arguments, save_json


def dice_loss(p, target, classes):
    p = tf.clip_by_value(p / tf.reduce_sum(p, axis=-1, keepdims=True), 1e-7, 1)
    y = tf.clip_by_value(tf.one_hot(target, classes), 1e-7, 1)
    axes = (0, 1, 2, 3)
    dice = 2 * tf.reduce_sum(y * p, axes) / tf.maximum(tf.reduce_sum(y * y + p * p, axes), 1e-3)
    return 1 - tf.reduce_mean(dice)


def best_of(repeats, run):
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times[1:])  # the first run warms up (and traces the tf.function)


def main():
    parser = baseline_arguments(2)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args()
    s = args.scale
    model = build_unet(keras)
    print(f"tensorflow {tf.__version__}, tf-keras {keras.__version__}, "
          f"threads {tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}, "
          f"parameters {model.count_params()}, fp32")
    result = {}

    x = tf.random.uniform((1, 160 // s, 192 // s, 160 // s, 1))
    forward = tf.function(lambda v: model(v, training=False))
    result["forward"] = best_of(args.repeats, lambda: forward(x).numpy())
    print(f"keras UNetForward   {result['forward'] * 1e3:9.1f} ms")

    opt = keras.optimizers.Adam(learning_rate=1e-4, epsilon=1e-7)
    x = tf.random.uniform((1, 128 // s, 160 // s, 128 // s, 1))
    voxels = x.shape[1] * x.shape[2] * x.shape[3]
    target = tf.reshape(tf.range(voxels) // 4096 % 34, (1, *x.shape[1:4]))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = dice_loss(model(x, training=True), target, 34)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    result["train_step"] = best_of(args.repeats, lambda: train_step().numpy())
    print(f"keras UNetTrainStep {result['train_step'] * 1e3:9.1f} ms")
    result["precision"] = "fp32"
    save_json(result, args.json, tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count())


if __name__ == "__main__":
    main()
