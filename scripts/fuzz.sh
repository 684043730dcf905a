#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a while (`make fuzz`; docs/RELIABILITY.md).
#   scripts/fuzz.sh BUILD_DIR [SECONDS] [TARGET...]   (no TARGET: every one built)
# Each target starts from its committed seeds (fuzz/seeds/<target>), the regression files
# (fuzz/regressions/<target>) and, when ../shared exists, the project's data of its kind; its
# growing corpus lives in BUILD_DIR/corpus/<target>. Inputs run under ASan + UBSan; an allocation
# over 2 GiB or a run of 10 s on one input counts as a finding. A finding is copied into
# fuzz/regressions/<target>/ (the tests then run it every time) and the script exits 1.
# FUZZ_SEED=N makes libFuzzer's mutations the same on every run (CI); unset, they are new.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-60}
shift $(($# >= 2 ? 2 : 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then  # every target the build has (fuzz/CMakeLists.txt lists them)
    for binary in "$build"/fuzz/fuzz_*; do
        [ -f "$binary" ] && [ -x "$binary" ] && targets+=("${binary##*/fuzz_}")
    done
    [ ${#targets[@]} -gt 0 ] || { echo "fuzz: no fuzz_* targets built in $build/fuzz"; exit 1; }
fi
shared=../shared/data
failed=0
ASAN_BASE=${ASAN_OPTIONS:-detect_leaks=1}
for t in "${targets[@]}"; do
    binary=$build/fuzz/fuzz_$t
    [ -x "$binary" ] || { echo "fuzz: $binary not built"; failed=1; continue; }
    corpus=$build/corpus/$t
    findings=$build/findings/$t
    mkdir -p "$corpus" "$findings" "fuzz/regressions/$t"
    extra=()
    case $t in
        nifti) [ -d "$shared/nifti-peer" ] && extra+=("$shared/nifti-peer/nibabel" "$shared/nifti-peer/balls1") ;;
        npy) [ -d "$shared/priors" ] && extra+=("$shared/priors") ;;
        keras_hdf5) [ -d "$shared/keras" ] && extra+=("$shared/keras") ;;
    esac
    # The HDF Group's library sizes its own metadata buffers from the file and may ask for more
    # than exists (a finding in libhdf5, docs/RELIABILITY.md): there a failed allocation must
    # return null, as it does outside the sanitizers, and HDF5 then reports an error we refuse
    # the file on. Our readers' own allocations stay capped at 2 GiB.
    malloc_limit=2048
    asan=$ASAN_BASE
    if [ "$t" = keras_hdf5 ]; then
        malloc_limit=1000000
        asan=$ASAN_BASE:allocator_may_return_null=1
    fi
    seed=()
    [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
    echo "== fuzz_$t for $seconds s${FUZZ_SEED:+ (seed $FUZZ_SEED)}"
    log=$build/findings/$t.log
    ASAN_OPTIONS=$asan LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp \
    "$binary" -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb=$malloc_limit -timeout=10 \
        -artifact_prefix="$findings/" -print_final_stats=1 "${seed[@]}" \
        "$corpus" "fuzz/seeds/$t" "fuzz/regressions/$t" "${extra[@]}" >"$log" 2>&1
    status=$?
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: Loaded)' "$log" | tail -4
    if [ "$status" != 0 ]; then
        echo "FINDING in fuzz_$t (exit $status): $(grep -m1 -E 'ERROR|SUMMARY|Deadly|timeout|out-of-memory' "$log")"
        for f in "$findings"/*; do [ -f "$f" ] && cp "$f" "fuzz/regressions/$t/" && echo "  kept as fuzz/regressions/$t/$(basename "$f")"; done
        failed=1
    fi
done
exit $failed
