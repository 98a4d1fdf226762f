#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside bytes with AFL++
# through cargo-afl, on stable Rust (see docs/fuzzing.md).
#
#   bash scripts/fuzz.sh                  # every target, FUZZ_SECONDS each (default 12)
#   bash scripts/fuzz.sh tlog_proof index # only these targets
#   FUZZ_SECONDS=3600 FUZZ_OUT=/var/tmp/stele-fuzz bash scripts/fuzz.sh   # long run
#
# Environment:
#   FUZZ_SECONDS     seconds of fuzzing per target (default 12)
#   FUZZ_OUT         where AFL++ keeps its queues, crashes and hangs (default:
#                    a temporary directory, removed on success, kept and named
#                    on failure); reusing one resumes the earlier run
#   FUZZ_TIMEOUT_MS  AFL++ time limit for one input (default 2000)
#   FUZZ_INSTALL     1 to install what is missing (cargo-afl from crates.io,
#                    its AFL++ build, make and a C compiler from Debian); CI sets it
#   CARGO_TARGET_DIR the instrumented build goes to $CARGO_TARGET_DIR/afl
#                    (default fuzz/target/afl), apart from ordinary builds
#
# Targets run one after the other (one AFL++ instance at a time), each
# starting from its committed corpus in fuzz/corpus/<target>. The script
# prints one line per target (executions, paths found, crashes, hangs, CPU
# seconds) and exits 1 if any target crashed or hung, naming the inputs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-12}
TIMEOUT_MS=${FUZZ_TIMEOUT_MS:-2000}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/fuzz/target}/afl
CARGO_AFL_VERSION=0.18.2

install_tools() {
    if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq make gcc >/dev/null
    fi
    if ! command -v cargo-afl >/dev/null 2>&1; then
        cargo install --locked cargo-afl --version "$CARGO_AFL_VERSION"
    fi
    # Builds AFL++ (afl-fuzz and its runtime) from the source cargo-afl
    # ships, once per Rust version.
    if [ ! -e "$(afl_runtime)" ]; then
        cargo afl config --build
    fi
}

# Where `cargo afl config --build` puts the AFL++ runtime for this rustc.
afl_runtime() {
    local rustc
    rustc=$(rustc -V | awk '{ print "rustc-" $2 "-" substr($3, 2, 7) }')
    echo "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/$rustc/afl.rs-$CARGO_AFL_VERSION/afl-llvm/afl-compiler-rt.o"
}

if [ "${FUZZ_INSTALL:-0}" = 1 ]; then
    install_tools
fi
if ! command -v cargo-afl >/dev/null 2>&1 || [ ! -e "$(afl_runtime)" ]; then
    echo "fuzz: cargo-afl or its AFL++ build is missing: cargo install --locked cargo-afl --version $CARGO_AFL_VERSION && cargo afl config --build (or FUZZ_INSTALL=1)" >&2
    exit 2
fi

echo "fuzz: building the instrumented targets (cargo afl build --release)"
(cd "$ROOT/fuzz" && CARGO_TARGET_DIR=$TARGET_DIR cargo afl build --release --locked \
    --features afl --bin stele-fuzz)
BIN=$TARGET_DIR/release/stele-fuzz

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cd "$ROOT/fuzz/corpus" && ls -1)
fi

if [ -n "${FUZZ_OUT:-}" ]; then
    OUT=$FUZZ_OUT
    KEEP_OUT=1
else
    OUT=$(mktemp -d /var/tmp/stele-fuzz.XXXXXX)
    KEEP_OUT=0
fi
mkdir -p "$OUT"
# Scratch files of path-reading targets: on tmpfs when there is one.
SCRATCH_BASE=/dev/shm
[ -d "$SCRATCH_BASE" ] && [ -w "$SCRATCH_BASE" ] || SCRATCH_BASE=$OUT
SCRATCH=$(mktemp -d "$SCRATCH_BASE/stele-fuzz-scratch.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

# AFL++ in a container: no CPU frequency governor to read, a core_pattern
# it may not change, CPUs shared with other work (no pinning), no terminal.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_QUIET=1 AFL_NO_CRASH_README=1 AFL_SKIP_CRASHES=0
export STELE_FUZZ_SCRATCH=$SCRATCH

stat_of() { awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "$1"; }

failed=0
total_execs=0
total_cpu=0
printf '%-20s %12s %8s %7s %7s %8s %8s\n' target executions exec/s paths crashes hangs cpu_s
for target in "${TARGETS[@]}"; do
    corpus=$ROOT/fuzz/corpus/$target
    [ -d "$corpus" ] || { echo "fuzz: no corpus for target $target" >&2; exit 2; }
    log=$OUT/$target.log
    resume=()
    # An output directory from an earlier run resumes from its queue.
    [ -d "$OUT/$target/default/queue" ] && resume=(-i -) || resume=(-i "$corpus")
    set +e
    TIMEFORMAT='%U %S'
    { time cargo afl fuzz "${resume[@]}" -o "$OUT/$target" -V "$SECONDS_PER_TARGET" \
        -t "$TIMEOUT_MS" -m none -- "$BIN" "$target" >"$log" 2>&1; } 2>"$OUT/$target.time"
    status=$?
    set -e
    stats=$OUT/$target/default/fuzzer_stats
    if [ $status -ne 0 ] || [ ! -f "$stats" ]; then
        echo "fuzz: $target: afl-fuzz failed (status $status); last lines of $log:" >&2
        tail -n 20 "$log" >&2
        failed=1
        KEEP_OUT=1
        continue
    fi
    execs=$(stat_of "$stats" execs_done)
    speed=$(stat_of "$stats" execs_per_sec)
    paths=$(stat_of "$stats" corpus_count)
    crashes=$(stat_of "$stats" saved_crashes)
    hangs=$(stat_of "$stats" saved_hangs)
    cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$OUT/$target.time")
    printf '%-20s %12s %8s %7s %7s %8s %8s\n' "$target" "$execs" "${speed%.*}" "$paths" \
        "$crashes" "$hangs" "$cpu"
    total_execs=$((total_execs + execs))
    total_cpu=$(awk -v a="$total_cpu" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
        failed=1
        KEEP_OUT=1
        for f in "$OUT/$target"/default/crashes/id* "$OUT/$target"/default/hangs/id*; do
            [ -e "$f" ] && echo "fuzz: $target: $f  (reproduce: $BIN $target < FILE)" >&2
        done
    fi
done
echo "fuzz: ${#TARGETS[@]} targets, $total_execs executions, ${total_cpu} CPU seconds"
if [ $failed -ne 0 ]; then
    echo "fuzz: FAILED; AFL++ output kept in $OUT" >&2
    exit 1
fi
if [ $KEEP_OUT = 0 ]; then
    rm -rf "$OUT"
else
    echo "fuzz: AFL++ output in $OUT"
fi
echo "fuzz: no crash, no hang"
