#!/usr/bin/env bash
# HTTP benchmark of `stele serve`, with same-run baselines and the same
# workloads against PostgreSQL 15 (hash-chained audit table), on this machine.
#
#   bash scripts/bench-http.sh            # from the repository root
#
# Environment:
#   BENCH_SECONDS   measured seconds per workload (default 10)
#   BENCH_OUT       directory to keep raw outputs in (default: discarded)
#   BENCH_SKIP_PG   set to 1 to skip PostgreSQL
#   BENCH_COMPARE_INDEX  set to 1 to run the batched workloads on a server
#                   without the search index first (same run, to compare)
#   BENCH_QUIET_WAIT  seconds to wait for idle CPUs before each step (120)
#   PG_BIN          PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   CARGO_TARGET_DIR  honoured for the release build
#   STELE_BIN       a stele binary to measure instead of building one (to
#                   compare two builds in one session)
#   BENCH_CLIENT    the stele binary that loads the server (`stele bench
#                   http`; default STELE_BIN): keep one client when
#                   comparing builds, so both get the same events
#
# Everything runs on 127.0.0.1 with a throwaway CA, data directories and
# database cluster under one temporary directory, removed on exit; every
# step is bounded by `timeout`. See docs/benchmarks.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/throwaway-tls.sh
. "$ROOT/scripts/throwaway-tls.sh"
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STELE=${STELE_BIN:-$TARGET_DIR/release/stele}
CLIENT=${BENCH_CLIENT:-$STELE}
RUN_LIMIT=$((SECONDS_PER_RUN + 90)) # hard bound on any one step

for tool in openssl jq timeout ss awk; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stele-bench-http.XXXXXX")
STELE_PID=""
PG_STARTED=""
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    local status=$?
    set +e
    if [ -n "$STELE_PID" ] && kill -0 "$STELE_PID" 2>/dev/null; then
        kill -TERM "$STELE_PID"
        for _ in $(seq 1 100); do kill -0 "$STELE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$STELE_PID" 2>/dev/null
    fi
    if [ -n "$PG_STARTED" ]; then
        as_pg timeout 60 "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1
    fi
    if [ -n "${BENCH_OUT:-}" ]; then
        mkdir -p "$BENCH_OUT"
        cp -r "$WORK"/out/. "$BENCH_OUT"/ 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for p in $(seq "$1" $(($1 + 200))); do
        if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return; fi
    done
    echo "bench-http: no free port near $1" >&2
    exit 2
}

say() { printf '\n== %s\n' "$*"; }

# Idle CPU percentage over one second, from /proc/stat.
cpu_idle_pct() {
    local a b
    a=$(awk '/^cpu / {printf "%d %d\n", $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {printf "%d %d\n", $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[1] - x[1]; idle = 100; if (t > 0) idle = 100 * (y[2] - x[2]) / t; printf "%d", idle}'
}

# This machine is shared (e.g. compilers): wait, bounded, for the CPUs to
# be mostly idle before each measurement, and say so if they never were.
wait_quiet() {
    local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-120})) idle
    while :; do
        idle=$(cpu_idle_pct)
        [ "$idle" -ge 85 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "   (machine busy: only ${idle}% idle; measuring anyway)"
            return 0
        fi
    done
}
mkdir -p "$WORK/out"

# ---------------------------------------------------------------- build
if [ -n "${STELE_BIN:-}" ]; then
    say "measuring $STELE_BIN (not built here)"
    [ -x "$STELE_BIN" ] || { echo "STELE_BIN=$STELE_BIN is not an executable" >&2; exit 2; }
else
    say "building stele (release) in $TARGET_DIR"
    (cd "$ROOT" && timeout 1800 cargo build -p stele-cli --release --quiet)
fi

say "machine"
echo "date:   $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:    $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "disk:   $(df -P "$WORK" | awk 'NR==2 {print $1}') ($(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo '?'))"
echo "kernel: $(uname -r)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load:   $LOAD_START (other work on this machine skews every number below)"

# ---------------------------------------------------------------- baselines
say "baselines (same disk as the data directories)"
wait_quiet
dd_rate() { # bs count -> ops/s
    local out secs
    out=$(timeout "$RUN_LIMIT" dd if=/dev/zero of="$WORK/dd.bin" bs="$1" count="$2" oflag=dsync 2>&1)
    rm -f "$WORK/dd.bin"
    secs=$(echo "$out" | awk '/copied/ {for (i=1;i<=NF;i++) if ($i ~ /^s,?$/) print $(i-1)}' | tr ',' '.' | tail -1)
    awk -v n="$2" -v s="$secs" 'BEGIN {printf "%.0f", n / s}'
}
DD_SMALL=$(dd_rate 300 2000)
DD_BIG=$(dd_rate 75k 1000)
echo "dd oflag=dsync, 300 B writes:  $DD_SMALL writes/s (each an fdatasync)"
echo "dd oflag=dsync, 75 KiB writes: $DD_BIG writes/s = $((DD_BIG * 256)) events/s at 256 events of 300 B per sync"
printf 'baseline\tdd_dsync_300B_per_s\t%s\n' "$DD_SMALL" >>"$RESULTS"
printf 'baseline\tdd_dsync_75KiB_per_s\t%s\n' "$DD_BIG" >>"$RESULTS"
wait_quiet
echo "stele bench (in-process engine, no HTTP):"
# --keep: its files are removed with everything else on exit. Deleting
# thousands of files now would make file creation (tiles) slower for the
# server measured next, on ext4 without a journal (recently deleted inodes
# are skipped, one by one, for minutes).
(cd "$WORK" && timeout "$RUN_LIMIT" "$STELE" bench --dir "$WORK/engine" --events 500000 --producers 8 --request 100 --keep) \
    | tee "$WORK/out/engine.txt" | sed 's/^/  /'
ENGINE=$(awk '/^append/ {print $2}' "$WORK/out/engine.txt")
printf 'baseline\tstele_engine_events_per_s\t%s\n' "$ENGINE" >>"$RESULTS"

# ---------------------------------------------------------------- TLS material
say "throwaway CA and server certificate for 127.0.0.1"
TLS="$WORK/tls"
throwaway_tls "$TLS"
echo "ok"

# ---------------------------------------------------------------- stele
# The log and the writer token come first: a token is granted through the
# log (a `token.created` event), which a running server holds.
start_stele() { # data-directory [config-file]
    "$STELE" init --data "$1" --origin localhost/stele >/dev/null 2>&1
    TOKEN=$("$STELE" token create --data "$1" --principal bench --role writer 2>/dev/null | tail -1)
    [ -n "$TOKEN" ] || { echo "could not create a writer token" >&2; exit 2; }
    STELE_PORT=$(free_port 17800)
    say "stele serve on https://127.0.0.1:$STELE_PORT${2:+ with $(cat "$2")}"
    "$STELE" serve --data "$1" --listen "127.0.0.1:$STELE_PORT" \
        --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" ${2:+--config "$2"} \
        >"$WORK/stele.out" 2>"$WORK/stele.err" &
    STELE_PID=$!
    for _ in $(seq 1 300); do
        grep -q "listening on" "$WORK/stele.err" 2>/dev/null && break
        kill -0 "$STELE_PID" 2>/dev/null || { cat "$WORK/stele.err" >&2; exit 2; }
        sleep 0.1
    done
    grep -q "listening on" "$WORK/stele.err" || { echo "stele serve did not start" >&2; exit 2; }
}

stop_stele() {
    kill -TERM "$STELE_PID"
    timeout 60 tail --pid="$STELE_PID" -f /dev/null || true
    STELE_PID=""
    echo "stele stopped: $(tail -1 "$WORK/stele.err")"
}

stele_run() { # name concurrency batch
    local name=$1 out="$WORK/out/stele-$1.json"
    wait_quiet
    echo "-- stele $name: $2 clients x $3 events/request, ${SECONDS_PER_RUN}s"
    STELE_TOKEN=$TOKEN timeout "$RUN_LIMIT" "$CLIENT" bench http --url "https://127.0.0.1:$STELE_PORT" \
        --ca "$TLS/ca.pem" --concurrency "$2" --batch "$3" --duration "$SECONDS_PER_RUN" --json \
        >"$out" || true
    jq -r '"   \(.events_per_s|floor) events/s, \(.requests_per_s|floor) requests/s, latency p50 \(.latency_ms.p50) ms p90 \(.latency_ms.p90) ms p99 \(.latency_ms.p99) ms max \(.latency_ms.max) ms, errors \(.errors.total), checkpoint p50 \(.checkpoint.p50_ms|floor) ms p99 \(.checkpoint.p99_ms|floor) ms (\(.checkpoint.probes) probes)"' "$out"
    jq -r --arg n "$name" '[ "stele", $n, (.events_per_s|floor), .latency_ms.p50, .latency_ms.p99, .errors.total, (.checkpoint.p50_ms|floor), (.checkpoint.p99_ms|floor) ] | @tsv' "$out" >>"$RESULTS"
}

if [ "${BENCH_COMPARE_INDEX:-0}" = 1 ]; then
    # The same batched workloads on a server without the search index
    # first, on a data directory of its own.
    printf 'search_index = false\n' >"$WORK/no-index.toml"
    start_stele "$WORK/stele-no-index" "$WORK/no-index.toml"
    stele_run no-index-batch100-c8 8 100
    stele_run no-index-batch1000-c8 8 1000
    stop_stele
fi

start_stele "$WORK/stele"
stele_run batch100-c8 8 100
stele_run batch1000-c8 8 1000
stele_run single-c64 64 1
stele_run single-c16 16 1
stop_stele

# ---------------------------------------------------------------- postgresql
if [ "${BENCH_SKIP_PG:-0}" != 1 ]; then
    PG_PORT=$(free_port 15432)
    say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (fsync=on, synchronous_commit=on, TLS)"
    PG="$WORK/pg"
    mkdir -p "$PG"
    cp "$TLS/server.pem" "$TLS/server.key" "$PG/"
    chmod 600 "$PG/server.key"
    chmod 755 "$WORK"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$PG"
    as_pg timeout 120 "$PG_BIN/initdb" -D "$PG/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_pg timeout 120 "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG \
         -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200 \
         -c shared_buffers=1GB -c wal_buffers=64MB -c max_wal_size=8GB -c checkpoint_timeout=30min \
         -c ssl=on -c ssl_cert_file=$PG/server.pem -c ssl_key_file=$PG/server.key" >/dev/null
    PG_STARTED=1
    export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGSSLMODE=verify-full PGSSLROOTCERT=$TLS/ca.pem
    psql_q() { timeout "$RUN_LIMIT" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
    timeout 60 "$PG_BIN/createdb" bench
    psql_q <<'SQL'
-- An append-only audit table whose rows carry a SHA-256 hash chain:
-- hash = sha256(prev_hash || seq || at || event). Appenders are serialized
-- (as any single hash chain must be) by a transaction-scoped advisory lock
-- held until commit; the previous hash is read from the last row through
-- the primary key. (A one-row chain-head table updated per row instead is
-- much slower for large transactions: every row leaves a dead version of
-- the head that later rows of the same transaction must step over.)
CREATE TABLE audit (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    event     json NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);
CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(7800);
    SELECT seq, hash INTO last_seq, last_hash FROM audit ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_hash := decode(repeat('00', 32), 'hex');
    END IF;
    NEW.seq := last_seq + 1;
    NEW.prev_hash := last_hash;
    NEW.hash := sha256(last_hash || int8send(NEW.seq)
                       || convert_to(NEW.at::text, 'UTF8') || convert_to(NEW.event::text, 'UTF8'));
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_chain();
CREATE FUNCTION audit_forbid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_forbid();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_forbid();
SQL
    # ~300-byte JSON events, unique actor/resource per row.
    event_sql() {
        echo "format('{\"actor\":\"bench-%s-%s-%s@example.com\",\"action\":\"document.read\",\"resource\":\"documents/%s/%s/%s\",\"outcome\":\"success\",\"attributes\":{\"ip\":\"10.0.%s.%s\",\"pad\":\"%s\"}}', :client_id, :n, g, :client_id, :n, g, (g / 256) % 256, g % 256, repeat('x', 120))"
    }
    for rows in 1 100 1000; do
        {
            echo '\set n random(1, 2000000000)'
            echo "INSERT INTO audit (event) SELECT $(event_sql)::json FROM generate_series(1, $rows) AS g;"
        } >"$WORK/insert$rows.sql"
    done
    # Append-only is enforced:
    psql_q -c "INSERT INTO audit (event) VALUES ('{\"actor\":\"setup\",\"action\":\"check\"}')"
    if psql_q -c "UPDATE audit SET event = '{}' WHERE seq = 1" 2>/dev/null \
        || psql_q -c "DELETE FROM audit WHERE seq = 1" 2>/dev/null \
        || psql_q -c "TRUNCATE audit" 2>/dev/null; then
        echo "append-only triggers do not work" >&2
        exit 2
    fi

    pg_run() { # name clients rows
        local name=$1 dir="$WORK/out/pg-$1"
        mkdir -p "$dir"
        wait_quiet
        echo "-- postgresql $name: $2 clients x $3 rows/transaction, ${SECONDS_PER_RUN}s"
        (cd "$dir" && timeout "$RUN_LIMIT" "$PG_BIN/pgbench" -n -T "$SECONDS_PER_RUN" -c "$2" -j 2 -r -l \
            -f "$WORK/insert$3.sql" bench >pgbench.txt 2>&1) || { cat "$dir/pgbench.txt" >&2; true; }
        local tps failed
        tps=$(awk '/^tps = / {print $3}' "$dir/pgbench.txt")
        failed=$(awk '/number of failed transactions:/ {print $5; f=1} END {if (!f) print 0}' "$dir/pgbench.txt")
        # Per-transaction latencies (µs, 3rd field) from the pgbench logs.
        cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n >"$dir/lat.txt"
        local stats
        stats=$(awk '{a[NR]=$1} END {
            if (NR == 0) {print "0 0 0 0"; exit}
            printf "%.3f %.3f %.3f %.3f", a[int((NR-1)*0.5+1.5)]/1000, a[int((NR-1)*0.9+1.5)]/1000,
                a[int((NR-1)*0.99+1.5)]/1000, a[NR]/1000 }' "$dir/lat.txt")
        rm -f "$dir"/pgbench_log.*
        read -r p50 p90 p99 max <<<"$stats"
        local eps
        eps=$(awk -v t="${tps:-0}" -v r="$3" 'BEGIN {printf "%.0f", t * r}')
        echo "   $eps events/s ($tps transactions/s), latency p50 $p50 ms p90 $p90 ms p99 $p99 ms max $max ms, failed $failed"
        printf 'pg\t%s\t%s\t%s\t%s\t%s\n' "$name" "$eps" "$p50" "$p99" "$failed" >>"$RESULTS"
    }
    pg_run batch100-c8 8 100
    pg_run batch1000-c8 8 1000
    pg_run single-c64 64 1
    pg_run single-c16 16 1
    psql_q -At -c "SELECT 'rows ' || count(*) || ', avg event ' || round(avg(octet_length(event::text))) || ' B' FROM audit" \
        | sed 's/^/   table: /'
    # The chain must be intact after the concurrent runs (checked on the last 10,000 rows).
    psql_q -At -c "SELECT 'chain check on the last 10000 rows: ' || CASE WHEN bool_and(prev_hash = lag_hash) THEN 'ok' ELSE 'BROKEN' END
        FROM (SELECT prev_hash, lag(hash) OVER (ORDER BY seq) AS lag_hash FROM audit ORDER BY seq DESC LIMIT 10000) s
        WHERE lag_hash IS NOT NULL" | sed 's/^/   /'
    as_pg timeout 60 "$PG_BIN/pg_ctl" -D "$PG/data" -m fast -w stop >/dev/null
    PG_STARTED=""
fi

# ---------------------------------------------------------------- summary
say "summary ($(date -u '+%Y-%m-%d %H:%M UTC'), ${SECONDS_PER_RUN}s per workload, TLS on both; load average at start $LOAD_START, now $(cut -d' ' -f1-3 /proc/loadavg))"
awk -F'\t' '
    $1 == "baseline" { base[$2] = $3 }
    $1 == "stele" { s[$2] = $3; sp50[$2] = $4; sp99[$2] = $5; serr[$2] = $6; cp50[$2] = $7; cp99[$2] = $8; order[++n] = $2 }
    $1 == "pg"    { p[$2] = $3; pp50[$2] = $4; pp99[$2] = $5; perr[$2] = $6 }
    END {
        printf "%-14s %12s %9s %9s %12s %9s %9s %8s %14s\n", "workload", "stele ev/s", "p50 ms", "p99 ms", "pg ev/s", "p50 ms", "p99 ms", "ratio", "ckpt p50/p99"
        for (i = 1; i <= n; i++) {
            w = order[i]
            ratio = (p[w] > 0) ? sprintf("%.1fx", s[w] / p[w]) : "-"
            printf "%-14s %12d %9.2f %9.2f %12s %9s %9s %8s %9s/%s ms\n", w, s[w], sp50[w], sp99[w],
                (w in p) ? p[w] : "-", (w in p) ? sprintf("%.2f", pp50[w]) : "-", (w in p) ? sprintf("%.2f", pp99[w]) : "-",
                ratio, cp50[w], cp99[w]
            if (serr[w] > 0 || perr[w] > 0) printf "   (errors: stele %d, pg %d)\n", serr[w], perr[w]
        }
        printf "\nbaselines: fdatasync (dd dsync) %s/s for 300 B, %s/s for 75 KiB; stele engine in-process %s events/s\n",
            base["dd_dsync_300B_per_s"], base["dd_dsync_75KiB_per_s"], base["stele_engine_events_per_s"]
        if (base["dd_dsync_300B_per_s"] > 0 && ("single-c64" in s))
            printf "single-event stele / fdatasync rate = %.1f (events acknowledged per fdatasync-time)\n", s["single-c64"] / base["dd_dsync_300B_per_s"]
        if (base["stele_engine_events_per_s"] > 0 && ("batch1000-c8" in s))
            printf "batched HTTP / in-process engine = %.2f\n", s["batch1000-c8"] / base["stele_engine_events_per_s"]
    }' "$RESULTS"
