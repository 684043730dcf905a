"""How every stage-by-stage baseline reports: one line per figure in milliseconds, and the same
figures (seconds) as JSON for scripts/bench.sh and compare.py."""
import argparse
import json
import time


def baseline_arguments(default_repeats):
    """A parser with the options every baseline takes: --repeats N (timed runs of each figure;
    the script says whether the fastest or the median counts) and --json OUT (the figures, in
    seconds, for scripts/bench.sh and compare.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=default_repeats, help="timed runs of each figure")
    parser.add_argument("--json", help="also write the figures (seconds) to this file")
    return parser


def save_json(result, json_path, threads=1):
    """result: name -> seconds, written to json_path when one is given, with the threads the
    framework ran on (NumPy, SciPy and nibabel run these operations on one), which compare.py
    prints beside ours."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(result, threads=threads), f, indent=1)


def best_time(run, repeats):
    """The fastest of `repeats` calls of run(), in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def report(label, result, json_path=None, threads=1):
    """result: name -> seconds; printed as "LABEL NAME  12.3 ms", written to json_path if given."""
    for name, seconds in result.items():
        print(f"{label} {name:12s} {seconds * 1e3:9.1f} ms")
    save_json(result, json_path, threads)
