#!/usr/bin/env bash
# Append latency while `stele serve` verifies the whole log, against the
# same workload on the same server with no verification running.
#
#   bash scripts/bench-verify-beside.sh        # from the repository root
#
# A log of BENCH_ENTRIES entries (default 2,000,000) is made with
# `stele append` from `stele bench events` (the binary measured must have
# it). The server starts with a policy whose `[audit]
# verify_full_every` is 1 s, so its scheduler runs one full verification
# after the other; `stele bench http` then measures appends (phase
# "verifying"). A policy with `verify_full_every = "24h"` is applied over
# HTTP, the verification running at that moment is let finish, and the
# same load is measured again (phase "idle"). Both phases run in one
# server process, one after the other, on the same data.
#
# Environment:
#   BENCH_ENTRIES   entries in the log before the server starts (2000000)
#   BENCH_SECONDS   measured seconds per phase (15)
#   BENCH_CLIENTS   concurrent clients, one event per request (8)
#   STELE_BIN       the stele binary to measure (default: build release)
#   CARGO_TARGET_DIR  honoured for the release build
#
# Everything runs on 127.0.0.1 with a throwaway CA under one temporary
# directory, removed on exit; every step is bounded by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/throwaway-tls.sh
. "$ROOT/scripts/throwaway-tls.sh"
ENTRIES=${BENCH_ENTRIES:-2000000}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-8}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STELE=${STELE_BIN:-$TARGET_DIR/release/stele}
RUN_LIMIT=$((SECONDS_PER_RUN + 120))

for tool in openssl jq timeout ss awk curl; do
    command -v "$tool" >/dev/null || { echo "bench-verify-beside: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stele-bench-verify.XXXXXX")
STELE_PID=""
cleanup() {
    local status=$?
    set +e
    if [ -n "$STELE_PID" ] && kill -0 "$STELE_PID" 2>/dev/null; then
        kill -TERM "$STELE_PID"
        timeout 30 tail --pid="$STELE_PID" -f /dev/null
        kill -KILL "$STELE_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '\n== %s\n' "$*"; }

if [ -n "${STELE_BIN:-}" ]; then
    say "measuring $STELE_BIN (not built here)"
else
    say "building stele (release) in $TARGET_DIR"
    (cd "$ROOT" && timeout 1800 cargo build -p stele-cli --release --quiet)
fi
[ -x "$STELE" ] || { echo "$STELE is not an executable" >&2; exit 2; }
echo "cpu: $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- the log
say "a log of $ENTRIES entries"
DATA="$WORK/data"
"$STELE" init --data "$DATA" --origin localhost/bench >/dev/null 2>&1
policy() { # verify_full_every -> policy TOML
    printf 'version = 1\ndefault_stream = "app"\n[streams.app]\nretain = "30d"\n[operators]\nlocal_roles = ["admin"]\n[audit]\nverify_full_every = "%s"\nverify_new_every = "1h"\nattest_every = "24h"\n' "$1"
}
policy 1s >"$WORK/verifying.toml"
policy 24h >"$WORK/idle.toml"
"$STELE" policy apply --data "$DATA" "$WORK/verifying.toml" >/dev/null
started=$SECONDS
# The benchmarks' realistic application events (docs/benchmarks.md).
timeout 1800 "$STELE" bench events --count "$ENTRIES" \
    | timeout 1800 "$STELE" append --data "$DATA" >/dev/null
echo "appended in $((SECONDS - started)) s"
WRITER=$("$STELE" token create --data "$DATA" --principal bench --role writer 2>/dev/null | tail -1)
ADMIN=$("$STELE" token create --data "$DATA" --principal bench-admin --role admin 2>/dev/null | tail -1)
[ -n "$WRITER" ] && [ -n "$ADMIN" ] || { echo "could not create tokens" >&2; exit 2; }

# ---------------------------------------------------------------- TLS
TLS="$WORK/tls"
throwaway_tls "$TLS"

# ---------------------------------------------------------------- server
PORT=""
for p in $(seq 17900 18100); do
    if ! ss -Hltn "sport = :$p" | grep -q .; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "no free port" >&2; exit 2; }
URL="https://127.0.0.1:$PORT"
RUST_LOG=info "$STELE" serve --data "$DATA" --listen "127.0.0.1:$PORT" \
    --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
STELE_PID=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$WORK/serve.err" 2>/dev/null && break
    kill -0 "$STELE_PID" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 2; }
    sleep 0.1
done
grep -q "listening on" "$WORK/serve.err" || { echo "stele serve did not start" >&2; exit 2; }
full_runs() { grep -c "scheduled full verification" "$WORK/serve.err" || true; }

phase() { # name
    local out="$WORK/$1.json" before after
    before=$(full_runs)
    STELE_TOKEN=$WRITER timeout "$RUN_LIMIT" "$STELE" bench http --url "$URL" --ca "$TLS/ca.pem" \
        --concurrency "$CLIENTS" --batch 1 --duration "$SECONDS_PER_RUN" --json >"$out" || true
    after=$(full_runs)
    jq -r --arg n "$1" --arg runs "$((after - before))" \
        '"\($n): \(.events_per_s|floor) appends/s, latency p50 \(.latency_ms.p50) ms p99 \(.latency_ms.p99) ms max \(.latency_ms.max) ms, errors \(.errors.total); full verifications finished meanwhile: \($runs)"' "$out"
}

say "phase verifying: $CLIENTS clients x 1 event/request, ${SECONDS_PER_RUN}s, full verifications back to back"
# The first full verification starts with the server; measure once it has.
for _ in $(seq 1 600); do
    grep -q "full verification" "$WORK/serve.err" && break
    sleep 0.1
done
phase verifying
grep "scheduled full verification" "$WORK/serve.err" | tail -1 | sed 's/^/   last: /'

say "phase idle: the same load, no verification running"
jq -Rs '{toml: .}' <"$WORK/idle.toml" >"$WORK/idle.json"
curl -fsS --cacert "$TLS/ca.pem" -X PUT -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/idle.json" "$URL/v1/policy" >/dev/null \
    || { echo "could not apply the idle policy" >&2; exit 2; }
# Let the verification that was running finish.
runs=$(full_runs)
for _ in $(seq 1 1200); do
    [ "$(full_runs)" -gt "$runs" ] && break
    sleep 0.1
done
phase idle
