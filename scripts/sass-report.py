#!/usr/bin/env python3
"""What the GPU will run, read without a GPU: for every kernel of a build's CUDA objects, its
registers a thread, stack, local-memory loads and stores (a spill, or an array indexed at run
time), and its SASS instruction count with the global loads and stores among them. Static
counts: a loop's body counts once, a branch's both sides. Use it to compare two builds of a
change to a kernel (registers set the occupancy; local memory is slow). One architecture a
build: a kernel compiled for several is listed once, with the last one's figures.

usage: sass-report.py [BUILD_DIR] [--filter TEXT] [--cuobjdump PATH]
  BUILD_DIR   a CMake build with CUDA (default build); its kernels/*/*.cu.o are read
  --filter    only kernels whose demangled name contains TEXT
Needs cuobjdump: CUDA's, or `pip download nvidia-cuda-cuobjdump` unpacked (its
nvidia/cu13/bin/cuobjdump), with nvdisasm on the PATH (`pip download nvidia-cuda-nvdisasm`, the
same folder). Never part of the build or the tests.
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys

INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)")


def demangle(names):
    done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return dict(zip(names, done.stdout.splitlines()))


def run(*command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def resources(cuobjdump, obj):
    """Mangled kernel name -> (registers, stack bytes)."""
    text = run(cuobjdump, "-res-usage", obj)
    found = {}
    for name, usage in re.findall(r"Function (\S+):\s*\n\s*(REG:.*)", text):
        fields = dict(re.findall(r"(\w+):(\d+)", usage))
        found[name] = (int(fields.get("REG", 0)), int(fields.get("STACK", 0)))
    return found


def instructions(cuobjdump, obj):
    """Mangled kernel name -> Counter of its SASS opcodes (without the modifiers)."""
    text = run(cuobjdump, "-sass", obj)
    parts = re.split(r"\n\s*Function : (\S+)", text)
    return {parts[i]: collections.Counter(op.split(".")[0] for op in INSTRUCTION.findall(parts[i + 1])
                                          if not op.startswith("NOP"))
            for i in range(1, len(parts), 2)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--filter", default="")
    parser.add_argument("--cuobjdump", default=shutil.which("cuobjdump"))
    args = parser.parse_args()
    if not args.cuobjdump or not os.access(args.cuobjdump, os.X_OK):
        sys.exit("no cuobjdump: give --cuobjdump PATH (see --help)")
    objects = sorted(glob.glob(os.path.join(args.build, "CMakeFiles", "*", "kernels", "*", "*.cu.o")))
    if not objects:
        sys.exit(f"{args.build}: no CUDA objects (kernels/*/*.cu.o); build with CUDA first")
    print("| kernel | registers | stack | local ld/st | instructions | global ld/st |")
    print("|---|---|---|---|---|---|")
    for obj in objects:
        used, counts = resources(args.cuobjdump, obj), instructions(args.cuobjdump, obj)
        names = demangle(sorted(counts))
        for mangled in sorted(counts, key=lambda n: names[n]):
            name = names[mangled]
            if args.filter not in name:
                continue
            c = counts[mangled]
            registers, stack = used.get(mangled, (0, 0))
            print(f"| `{name}` | {registers} | {stack} | {c['LDL']}/{c['STL']} | {sum(c.values())} | "
                  f"{c['LDG']}/{c['STG']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
