#!/usr/bin/env bash
# Runs every Google Benchmark suite of a build (JSON in bench-out/), then, when Python with
# numpy, scipy and nibabel is available, the framework baselines on the same machine in the
# same run, and prints the ratios (bench/compare.py). Baselines are optional: without them
# only our own figures are printed.
#
# Threads: ours use OMP_NUM_THREADS (every CPU when unset); NumPy, SciPy and nibabel run these
# operations on one; PyTorch and TensorFlow on their defaults. compare.py prints both counts on
# every row: set OMP_NUM_THREADS=1 for a per-core comparison with the NumPy baselines.
# INFANT_BENCH_SCALE=S shrinks the U-Net benchmarks' axes S times, and their baselines' alike.
set -euo pipefail
build=${1:-build}
out=bench-out
mkdir -p "$out"
# Nothing of an earlier run is set beside this run's figures (compare.py pairs every file here).
rm -f "$out"/bench_*.json "$out"/baseline_*.json "$out/run.json"
scale=${INFANT_BENCH_SCALE:-1}
# The U-Net's 160x192x160 and 128x160x128 stay multiples of 16 (its four poolings) at 1 and 2 only.
case "$scale" in
    1 | 2) ;;
    *) echo "bench.sh: INFANT_BENCH_SCALE must be 1 or 2 (the baselines' U-Nets need sides of multiples of 16), got $scale" >&2
       exit 2 ;;
esac
printf '{"date": "%s", "host": "%s", "cpus": %s, "omp_num_threads": "%s", "bench_scale": %s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(hostname)" "$(nproc)" "${OMP_NUM_THREADS:-}" "$scale" >"$out/run.json"
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    echo "== $name"
    "$b" --benchmark_out="$out/$name.json" --benchmark_out_format=json
    [ -s "$out/$name.json" ] || rm -f "$out/$name.json"  # a filter that matched nothing
done

# The generator's baselines read the same 12-month phantom.
"$build/infant-synthseg" phantom --age-months 12 --seed 1 --out "$out/phantom_12mo.nii.gz" >/dev/null
if python3 -c 'import numpy, scipy, nibabel' 2>/dev/null; then
    # Baselines run with numpy's own kernels (OPENBLAS_* tuning variables unset).
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/synth_numpy.py "$out/phantom_12mo.nii.gz" --json "$out/baseline_synth_numpy.json"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/resample_scipy.py --json "$out/baseline_resample_scipy.json"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/post_scipy.py --json "$out/baseline_post_scipy.json"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/write_nibabel.py --json "$out/baseline_write_nibabel.json"
else
    echo "numpy/scipy/nibabel not installed: NumPy baselines skipped (pip install numpy scipy nibabel)"
fi
if python3 -c 'import torch' 2>/dev/null; then
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/unet_torch.py --device cpu --scale "$scale" --json "$out/baseline_unet_torch_cpu.json"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/unet_torch.py --device cpu --scale "$scale" --precision bf16 --json "$out/baseline_unet_torch_cpu_bf16.json"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/predict_torch.py --device cpu --json "$out/baseline_predict_torch_cpu.json"
    if python3 -c 'import cornucopia, nibabel, scipy' 2>/dev/null; then
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/baselines/synth_cornucopia.py "$out/phantom_12mo.nii.gz" --json "$out/baseline_synth_cornucopia.json"
    else
        echo "cornucopia not installed: its generator baseline skipped (pip install cornucopia nibabel scipy)"
    fi
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        python3 bench/baselines/unet_torch.py --device cuda --scale "$scale" --repeats 5 --json "$out/baseline_unet_torch_cuda.json"
    fi
else
    echo "torch not installed: PyTorch baselines skipped (pip install torch)"
fi
# The framework the published SynthSeg tools run on; TF_PYTHON names another Python for it
# (TensorFlow and torch may not share one environment).
tf_python=${TF_PYTHON:-python3}
if "$tf_python" -c 'import tensorflow, tf_keras, nibabel, scipy' 2>/dev/null; then
    "$tf_python" bench/baselines/unet_keras.py --scale "$scale" --json "$out/baseline_unet_keras_cpu.json"
    "$tf_python" bench/baselines/synth_tf.py "$out/phantom_12mo.nii.gz" --json "$out/baseline_synth_tf.json"
    "$tf_python" bench/baselines/predict_keras.py --json "$out/baseline_predict_keras_cpu.json"
else
    echo "tensorflow not installed: its baselines skipped (pip install tensorflow-cpu tf-keras nibabel scipy)"
fi
# Keras 3's own .keras files (any backend); KERAS3_PYTHON names another Python for it.
keras3_python=${KERAS3_PYTHON:-python3}
if "$keras3_python" -c 'import keras, sys; sys.exit(0 if keras.__version__.startswith("3.") else 1)' 2>/dev/null; then
    "$keras3_python" bench/baselines/keras_files.py --json "$out/baseline_keras_files.json"
else
    echo "Keras 3 not installed: its .keras baseline skipped (pip install keras jax[cpu] h5py)"
fi
if python3 -c 'import json' 2>/dev/null; then
    python3 bench/compare.py "$out"
fi
