#!/usr/bin/env bash
# Long run of the SIGKILL-under-load test (crates/cli/tests/serve_kill.rs):
# `stele serve` killed again and again while concurrent HTTP clients append,
# then every acknowledged event checked at its receipt's index, nothing
# stored twice, `stele verify` OK. CI runs 100 kills; this runs many more.
#
#   bash scripts/serve-kill.sh [KILLS]     # from anywhere; default 2000
#
# Environment:
#   STELE_KILL_SEED     repeat a run's schedule (its first line prints it)
#   SERVE_KILL_RELEASE  1: build and test the release binary
#   CARGO_TARGET_DIR    honoured
#
# The summary line (serve-kill summary: ...) gives the kills, events
# acknowledged, lost, duplicated and the recovery time (spawn to
# "listening on") min/median/max. About 0.15-0.25 s a kill on a 2-core machine;
# the log grows by about 700-1,000 events (~0.5 MB on disk) a kill, in a
# temporary directory removed at the end. See docs/crash-testing.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILLS=${1:-${STELE_KILL_ITERATIONS:-2000}}
case "$KILLS" in
    '' | *[!0-9]*) echo "serve-kill: KILLS must be a number, got '$KILLS'" >&2; exit 2 ;;
esac
PROFILE=()
[ "${SERVE_KILL_RELEASE:-0}" = 1 ] && PROFILE=(--release)
cd "$ROOT"
STELE_KILL_ITERATIONS=$KILLS exec cargo test --workspace --locked "${PROFILE[@]}" \
    --test serve_kill -- --nocapture
