#!/usr/bin/env bash
# The baseline of `stele bench --search`: the same events, received over the
# same days, and the same queries (values taken from the same 40 entries
# spread over the log), in a throwaway PostgreSQL 15 cluster with B-tree
# indexes on the filtered columns and a trigram index for free text.
#
#   bash scripts/bench-search-pg.sh        # from the repository root
#
# Environment:
#   BENCH_EVENTS  events (default 1000000; `stele bench --search --events`)
#   BENCH_DAYS    days the receipt times are spread over (default 30)
#   BENCH_SEED    the workload's seed (default 1, as `stele bench`)
#   STELE_BIN     the stele binary whose `bench events` writes the events
#                 (default: a release build of this checkout)
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Each query is run twice, the second time measured (psql's \timing, over a
# Unix socket: the client's round trip is included, about 0.05 ms). What
# PostgreSQL is asked is the page alone (50 rows, newest first); Stele's
# search also counts every match. Free text in PostgreSQL is a substring
# (ILIKE over the event's JSON with a pg_trgm index), in Stele a word of a
# value: the two find about the same events for the names asked here.
# Everything is under one temporary directory, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${BENCH_EVENTS:-1000000}
DAYS=${BENCH_DAYS:-30}
SEED=${BENCH_SEED:-1}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VALUES=40

if [ -z "${STELE_BIN:-}" ]; then
    cargo build --release --locked --bin stele >&2
    STELE_BIN="${CARGO_TARGET_DIR:-target}/release/stele"
fi
[ -x "$PG_BIN/initdb" ] || { echo "bench-search-pg: no PostgreSQL in $PG_BIN" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stele-bench-search-pg.XXXXXX")
chmod 755 "$WORK"
PG_STARTED=""
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    local status=$?
    set +e
    if [ -n "$PG_STARTED" ]; then
        as_pg timeout 60 "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg timeout 120 "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg timeout 120 "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 start -o \
    "-c listen_addresses='' -c unix_socket_directories=$WORK/pg -c shared_buffers=1GB -c work_mem=64MB -c maintenance_work_mem=512MB -c max_parallel_workers_per_gather=2" >/dev/null
PG_STARTED=1
export PGHOST=$WORK/pg PGUSER=postgres
psql_q() { timeout 3600 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
timeout 60 "$PG_BIN/createdb" bench
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $EVENTS events over $DAYS days" >&2

# The events, in the order `stele bench` appends them; event n is received
# at its share of the days, ending now (as `stele bench --days`).
started=$(date +%s.%N)
psql_q -c "CREATE TABLE raw (seq bigserial, doc jsonb NOT NULL)"
"$STELE_BIN" bench events --workload app --seed "$SEED" --count "$EVENTS" \
    | psql_q -c "COPY raw (doc) FROM STDIN WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')"
psql_q <<SQL
CREATE EXTENSION pg_trgm;
CREATE TABLE events AS
  SELECT seq - 1 AS seq,
         now() - make_interval(secs => ($DAYS * 86400.0) * (1 - (seq - 1)::float8 / $EVENTS)) AS received,
         doc->>'actor' AS actor, doc->>'action' AS action, doc->>'resource' AS resource,
         doc->>'outcome' AS outcome, doc
  FROM raw ORDER BY seq;
DROP TABLE raw;
ALTER TABLE events ADD PRIMARY KEY (seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_actor_received ON events (actor, received);
CREATE INDEX events_resource ON events (resource text_pattern_ops);
CREATE INDEX events_received ON events (received);
CREATE INDEX events_text ON events USING gin ((doc::text) gin_trgm_ops);
VACUUM ANALYZE events;
SQL
loaded=$(date +%s.%N)
psql_q -At -c "SELECT 'loaded ' || count(*) || ' rows in $(echo "$loaded - $started" | bc) s; table ' || pg_size_pretty(pg_table_size('events')) || ', indexes ' || pg_size_pretty(pg_indexes_size('events')) FROM events" >&2

# The values, from the entries `stele bench --search` takes them from.
psql_q -At -F $'\t' >"$WORK/values.tsv" <<SQL
SELECT e.actor, left(e.resource, greatest(length(e.resource) - 2, 0)), e.received
FROM generate_series(0, $VALUES - 1) AS i
JOIN events e ON e.seq = least((i::bigint * 7919 + 13) * $EVENTS / ($VALUES * 7919 + 13), $EVENTS - 1)
ORDER BY i;
SQL

quote() { printf "'%s'" "${1//\'/\'\'}"; }
# One query per line of values for a shape, twice; the second pass timed.
run_shape() {
    local name=$1 template=$2 script="$WORK/$1.sql"
    : >"$script"
    for pass in warm measured; do
        echo "\\echo $pass" >>"$script"
        while IFS=$'\t' read -r actor prefix received; do
            # The actor's second word, as `stele bench --search` asks.
            local word
            word=$(printf '%s' "$actor" | tr -c '[:alnum:]' ' ' | awk '{print ($2 != "" ? $2 : $1)}')
            local q=${template//ACTOR/$(quote "$actor")}
            q=${q//PREFIX/$(quote "$prefix%")}
            q=${q//RECEIVED/$(quote "$received")}
            q=${q//WORD/$(quote "%$word%")}
            echo "$q;" >>"$script"
        done <"$WORK/values.tsv"
    done
    psql_q -c '\timing on' -c '\o /dev/null' -f "$script" 2>&1 \
        | awk '/^measured/ {on = 1; next} on && /^Time:/ {print $2}' | sort -n >"$WORK/$name.times"
    awk -v name="$name" '{t[NR] = $1} END {
        p50 = t[int((NR - 1) * 0.50) + 1]; p99 = t[int((NR - 1) * 0.99) + 1];
        printf "postgres  %s, %d values: p50 %.3f ms, p99 %.3f ms\n", name, NR, p50, p99 }' "$WORK/$name.times"
}

PAGE="ORDER BY seq DESC LIMIT 50"
run_shape "actor, 50 newest" "SELECT * FROM events WHERE actor = ACTOR $PAGE"
run_shape "resource prefix, 50 newest" "SELECT * FROM events WHERE resource LIKE PREFIX $PAGE"
run_shape "actor + time, 50 newest" "SELECT * FROM events WHERE actor = ACTOR AND received >= RECEIVED::timestamptz - interval '12 hours' AND received < RECEIVED::timestamptz + interval '12 hours' $PAGE"
run_shape "free text, 50 newest" "SELECT * FROM events WHERE doc::text ILIKE WORD $PAGE"
run_shape "count + daily histogram + actions for one actor" "SELECT date_trunc('day', received), action, count(*) FROM events WHERE actor = ACTOR GROUP BY GROUPING SETS ((1), (2), ())"
