#!/usr/bin/env bash
# Builds the device kit: everything a bare GPU machine (CUDA, PyTorch, no Debian libraries, no
# network) needs to run our tests and benchmarks, in one archive (docs/GPU.md).
#
#   scripts/device-kit.sh [ARCHIVE]        default: device-kit.tar.xz in the repository root
#   scripts/device-kit.sh --check [ARCHIVE]  unpack into an empty folder and prove it self-contained
#
# The build: Release, CUDA for compute capability 90, in its own folder (build-kit, or $KIT_BUILD).
# The archive holds device-kit/ with
#   bin/        infant-synthseg, infant_tests, every bench_* (run path $ORIGIN/../lib)
#   lib/        every shared library they load that a bare CUDA machine lacks (oneDNN, nifticlib,
#               znz, libpng, the OpenCL loader, OpenMP, ...; run path $ORIGIN), never CUDA's own
#               (cudart, cuDNN: found there, in the toolkit or PyTorch's wheels)
#   baselines/  the Python baselines and bench/compare.py
#   MANIFEST    the commit, the date, the compilers, every file's size
# The check: with a clean environment (env -i), every library of every binary resolves inside the
# kit or is a base system library or CUDA's; then the CPU part of the test suite runs from the
# unpacked kit (the CUDA variants skip here).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Libraries every Linux with a CUDA driver has (glibc, the C++ runtime: bundling libstdc++ would
# shadow the newer one that CUDA's libraries may need), and CUDA's own.
is_system_or_cuda() {
    case "$1" in
        linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | \
            libstdc++.so.* | libgcc_s.so.*) return 0 ;;
        libcuda.so.* | libcudart.so.* | libcudnn*.so* | libcublas*.so* | libnvrtc*.so*) return 0 ;;
    esac
    return 1
}

check_kit() {
    local archive=$1 dir bad=0
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' RETURN
    tar -xJf "$archive" -C "$dir"
    local kit=$dir/device-kit
    echo "== $archive unpacked into an empty folder: libraries with a clean environment"
    for f in "$kit"/bin/* "$kit"/lib/*; do
        [ -f "$f" ] || continue
        # ldd prints "name => path (address)", "name => not found", or "path (address)".
        while read -r name arrow path _; do
            [ "$arrow" = "=>" ] || continue
            if [ "$path" = "not" ]; then
                is_system_or_cuda "$name" && continue
                echo "MISSING: $(basename "$f") needs $name"
                bad=1
            elif [[ "$(realpath -m "$path")" != "$kit"/* ]] && ! is_system_or_cuda "$name"; then
                echo "OUTSIDE THE KIT: $(basename "$f") loads $name from $path"
                bad=1
            fi
        done < <(env -i /usr/bin/ldd "$f")
    done
    # ldd's whole answer first: `ldd | grep -q` under pipefail fails whenever grep stops reading
    # before ldd has finished writing (SIGPIPE), as it did for libdnnl.
    local cli_libraries
    cli_libraries=$(env -i /usr/bin/ldd "$kit/bin/infant-synthseg")
    for lib in libdnnl libnifti2 libznz; do
        grep -q "$lib.*=> $kit/bin/../lib/" <<<"$cli_libraries" ||
            { echo "infant-synthseg does not take $lib from the kit"; bad=1; }
    done
    if grep -l --binary-files=text -F "$root/" "$kit"/bin/* >/dev/null 2>&1; then
        echo "absolute checkout paths in: $(grep -l --binary-files=text -F "$root/" "$kit"/bin/* | xargs -n1 basename | tr '\n' ' ')"
        bad=1
    fi
    [ "$bad" = 0 ] || { echo "device kit check: FAILED"; return 1; }
    echo "every library resolves inside the kit, or is the system's or CUDA's"
    echo "== the CPU tests from the unpacked kit (clean environment)"
    (cd "$dir" && env -i PATH=/usr/bin:/bin HOME="$dir" OMP_NUM_THREADS=1 \
        "$kit/bin/infant_tests" --gtest_brief=1 --gtest_filter='-*/cuda')
    echo "device kit check: passed"
}

if [ "${1:-}" = "--check" ]; then
    check_kit "${2:-device-kit.tar.xz}"
    exit
fi

archive=$(realpath -m "${1:-device-kit.tar.xz}")
build=${KIT_BUILD:-build-kit}
command -v patchelf >/dev/null || { echo "device-kit: patchelf is missing (make deps installs it)" >&2; exit 1; }

# x86-64-v3, not this machine's level: the kit runs on a CPU we have not seen.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DINFANT_CPU_ARCH=x86-64-v3 -DINFANT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DINFANT_BENCH=ON
cmake --build "$build" -j "${JOBS:-$(nproc)}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
kit=$stage/device-kit
mkdir -p "$kit/bin" "$kit/lib" "$kit/baselines"
cp "$build/infant-synthseg" "$build/tests/infant_tests" "$kit/bin/"
for b in "$build"/bench/bench_*; do [ -x "$b" ] && [ -f "$b" ] && cp "$b" "$kit/bin/"; done
cp bench/baselines/*.py bench/compare.py "$kit/baselines/"

# Every library the binaries load, followed through the libraries' own needs (ldd lists the
# whole closure), bundled unless it is a base system library or CUDA's.
for f in "$kit"/bin/*; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
    is_system_or_cuda "$name" && continue
    cp -L "$path" "$kit/lib/$name"
done
for f in "$kit"/bin/*; do patchelf --set-rpath '$ORIGIN/../lib' "$f"; done
for f in "$kit"/lib/*; do patchelf --set-rpath '$ORIGIN' "$f"; done

{
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(g++ --version | head -1), $(nvcc --version | tail -1)"
    echo "CUDA architectures 90; CUDA and cuDNN are not bundled"
    (cd "$kit" && find . -type f -printf '%10s %p\n' | sort -k2)
} >"$kit/MANIFEST"

tar -C "$stage" -cJf "$archive.tmp" device-kit
mv "$archive.tmp" "$archive"
echo "device kit: $archive ($(du -h "$archive" | cut -f1); $(ls "$kit/lib" | wc -l) bundled libraries: $(ls "$kit/lib" | tr '\n' ' '))"
