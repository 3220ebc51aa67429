#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 300), one after another.
#
#   fuzz/run-all.sh [SECONDS]          all targets
#   TARGETS="frame_decode" fuzz/run-all.sh 60
#
# Each target starts from a scratch corpus, fuzz/corpus/<target>/ (gitignored), seeded
# from the committed fuzz/seeds/<target>/. libFuzzer's log goes to
# fuzz/artifacts/<target>/fuzz.log and crashes to fuzz/artifacts/<target>/crash-*.
# Exits non-zero if any target found a crash. Needs cargo-fuzz; stable Rust works with
# RUSTC_BOOTSTRAP=1 (set here).
set -euo pipefail

SECONDS_PER_TARGET="${1:-300}"
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGETS="${TARGETS:-$(cargo fuzz list --fuzz-dir "$FUZZ_DIR" 2>/dev/null || ls "$FUZZ_DIR/fuzz_targets" | sed 's/\.rs$//')}"
export RUSTC_BOOTSTRAP=1

cargo fuzz build --fuzz-dir "$FUZZ_DIR"

failed=()
for target in $TARGETS; do
    corpus="$FUZZ_DIR/corpus/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    cp -n "$FUZZ_DIR/seeds/$target/"* "$corpus/" 2>/dev/null || true
    echo "== $target: ${SECONDS_PER_TARGET}s"
    # -jobs=1 makes libFuzzer write fuzz-0.log in the working directory: use the target's own.
    if (cd "$artifacts" && cargo fuzz run --fuzz-dir "$FUZZ_DIR" "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -print_final_stats=1 >/dev/null 2>&1); then
        status=clean
    else
        status=FAILED
        failed+=("$target")
    fi
    mv -f "$artifacts/fuzz-0.log" "$artifacts/fuzz.log" 2>/dev/null || true
    stats="$(grep -E '^(stat::number_of_executed_units|stat::new_units_added)|cov:' "$artifacts/fuzz.log" 2>/dev/null | grep -v '^stat' | tail -1 || true)"
    execs="$(grep '^stat::number_of_executed_units' "$artifacts/fuzz.log" 2>/dev/null || true)"
    echo "   $status; $execs; last: ${stats:0:100}"
done

if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/<target>/)" >&2
    exit 1
fi
