"""How every stage-by-stage baseline reports: one line per figure in milliseconds, and the same
figures (seconds) as JSON for scripts/bench.sh and compare.py."""
import json
import time


def best_time(run, repeats):
    """The fastest of `repeats` calls of run(), in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def report(label, result, json_path=None):
    """result: name -> seconds; printed as "LABEL NAME  12.3 ms", written to json_path if given."""
    for name, seconds in result.items():
        print(f"{label} {name:12s} {seconds * 1e3:9.1f} ms")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
