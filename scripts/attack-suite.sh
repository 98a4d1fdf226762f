#!/usr/bin/env bash
# Black-box attack suite: attacks a stele binary the way an operator with a
# shell on the host could (CLI, HTTP, file edits, copies, clocks) and prints
# one line per scenario: DEFENDED, VULNERABLE or ERROR. See
# docs/attack-suite.md.
#
#   STELE_BIN=/path/to/stele bash scripts/attack-suite.sh
#
# Environment:
#   STELE_BIN     the binary to attack (required)
#   ATTACK_ONLY   comma-separated scenario ids or defect numbers (default: all)
#   ATTACK_KEEP   1 keeps the temporary data directories
#   ATTACK_LIMIT  seconds the whole suite may take (default 600)
#
# Exit: 0 when every scenario is DEFENDED, 1 otherwise, 2 on a usage error.
# Needs python3 (standard library only), curl and faketime (Debian:
# apt-get install -y faketime curl). Every server the suite starts listens
# on 127.0.0.1 on a free port and is stopped on exit; every data directory
# lives under one temporary directory, removed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STELE_BIN:?set STELE_BIN to the stele binary to attack}"
for tool in python3 curl faketime timeout; do
    command -v "$tool" >/dev/null || { echo "attack-suite: $tool is required" >&2; exit 2; }
done
STELE_BIN=$(readlink -f "$STELE_BIN")
export STELE_BIN

# The helper runs in its own process group; on exit or interruption the
# whole group (servers included) is stopped.
pid=
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set +e
setsid timeout --kill-after=10 "${ATTACK_LIMIT:-600}" python3 "$HERE/attack_suite.py" &
pid=$!
wait "$pid"
rc=$?
set -e
pid=
if [[ $rc -eq 124 ]]; then
    echo "ERROR      the suite did not finish within ${ATTACK_LIMIT:-600}s" >&2
    exit 1
fi
exit "$rc"
