#!/usr/bin/env bash
# The PostgreSQL sink benchmark of BENCHMARKS.md, on this machine:
#
#   integration/bench-timescale.sh [spans to drain]   (default 2000000)
#
# 1. Drain: a private in-memory tansu broker is filled through the release
#    collector with N GenAI spans of unique ids (loadgen --unique-ids); then
#    `observatory-consumer timescale` starts on a fresh database and the time
#    it takes to write them all (every index in place) is measured, with its
#    CPU seconds and peak RSS from /proc.
# 2. Delay: with the sink running, loadgen sends 10k spans/s for 30 s and the
#    p50/p99 of the sink's commit delay (collector receipt -> PostgreSQL
#    commit, observatory_consumer_commit_delay_seconds) is read off /metrics.
#
# Also printed: the WAL the server wrote during the drain (pg_stat_wal).
# BENCH_SKIP_DELAY=1 stops after the drain; BENCH_PERF=<file> records a
# `perf` profile of the whole machine during the drain.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SPANS="${1:-2000000}"
set -a
eval "$(integration/stack.sh up)"
set +a
# The binaries measured: BENCH_BIN_DIR (its loadgen too, when it has one)
# to compare another build on the same load, e.g. the previous commit's;
# nothing is built then.
if [ -z "${BENCH_BIN_DIR:-}" ]; then cargo build --release --bins -q; fi
BIN="${BENCH_BIN_DIR:-target/release}"
LOADGEN="$BIN/loadgen"
[ -x "$LOADGEN" ] || LOADGEN=target/release/loadgen
mkdir -p .stack/bench
PG="${DATABASE_URL%/*}"
DB="obs_bench_$(date +%s)"
psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$PG/$DB"
export KAFKA_BROKERS=127.0.0.1:19092 KAFKA_TRACES_TOPIC=bench_sink RUST_LOG=warn

"$TANSU_BIN" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
  --storage-engine memory://bench/ >.stack/bench/tansu-sink.log 2>&1 &
BROKER=$!
COLLECTOR_GRPC_ADDR=127.0.0.1:14317 COLLECTOR_HTTP_ADDR=127.0.0.1:14318 COLLECTOR_ADMIN_ADDR=127.0.0.1:18888 \
  "$BIN"/observatory-collector >.stack/bench/collector-sink.log 2>&1 &
COLLECTOR=$!
cleanup() { kill "${SINK:-}" "$COLLECTOR" "$BROKER" 2>/dev/null || true; }
trap cleanup EXIT

get() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1"; printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3; cat <&3; exec 3>&-
}
until get 18888 /readyz 2>/dev/null | head -n1 | grep -q ' 200'; do sleep 0.2; done

REQUESTS=$(( (SPANS + 511) / 512 ))
echo "[bench] filling the topic with $((REQUESTS * 512)) spans" >&2
"$LOADGEN" --endpoint 127.0.0.1:14317 --unique-ids --distinct 64 --concurrency 8 \
  --max-requests "$REQUESTS" --duration 600s | grep -E 'spans acknowledged|throughput' >&2
TOTAL=$((REQUESTS * 512))

metric() { get 18889 /metrics 2>/dev/null | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'; }
# CPU ticks of every PostgreSQL process (server-wide: the bench is the only load).
pg_ticks() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '$2 == "(postgres)" { t += $14 + $15 } END { printf "%d", t }'; }
broker_ticks() { awk '{ printf "%d", $14 + $15 }' "/proc/$BROKER/stat"; }
# WAL written during the drain (server-wide): records, full-page images, bytes.
wal() { psql "$PG/postgres" -Atc "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"; }
WAL0=$(wal)
PG0=$(pg_ticks); BR0=$(broker_ticks)
START=$(date +%s.%N)
# BENCH_PERF=<file>: a perf profile of the whole machine during the drain.
if [ -n "${BENCH_PERF:-}" ]; then
  eval "$(integration/stack.sh perf)"
  "$PERF_BIN" record -e cpu-clock -g -a -o "$BENCH_PERF" >/dev/null 2>&1 &
  PERF=$!
fi
CONSUMER_ADMIN_ADDR=127.0.0.1:18889 "$BIN"/observatory-consumer timescale >.stack/bench/sink.log 2>&1 &
SINK=$!
until [ "$(metric 'observatory_consumer_rows_written_total{sink="timescale",table="spans"}')" -ge "$TOTAL" ]; do sleep 0.5; done
END=$(date +%s.%N)
PG1=$(pg_ticks); BR1=$(broker_ticks)
WAL1=$(wal)
if [ -n "${PERF:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
read -r UT ST < <(awk '{print $14, $15}' "/proc/$SINK/stat")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SINK/status")
awk -v t="$TOTAL" -v a="$START" -v b="$END" -v ut="$UT" -v st="$ST" -v hwm="$HWM" 'BEGIN {
  secs = b - a; cpu = (ut + st) / 100;
  printf "drain: %d spans in %.1f s = %.0f spans/s; sink CPU %.1f s = %.2f CPU-s per million spans; sink peak RSS %.0f MiB\n",
    t, secs, t / secs, cpu, cpu / (t / 1e6), hwm / 1024 }'
awk -v t="$TOTAL" -v pg=$((PG1 - PG0)) -v br=$((BR1 - BR0)) 'BEGIN {
  printf "during the drain: PostgreSQL CPU %.1f s = %.2f CPU-s per million spans; broker CPU %.1f s\n",
    pg / 100, pg / 100 / (t / 1e6), br / 100 }'
awk -v t="$TOTAL" -v a="$WAL0" -v b="$WAL1" 'BEGIN {
  split(a, x, "|"); split(b, y, "|"); m = t / 1e6
  printf "WAL during the drain, per million spans: %.0f records, %.0f full-page images, %.0f MiB\n",
    (y[1] - x[1]) / m, (y[2] - x[2]) / m, (y[3] - x[3]) / m / 1048576 }'
# BENCH_SKIP_DELAY=1: the drain only.
if [ -n "${BENCH_SKIP_DELAY:-}" ]; then
  kill -TERM "$SINK"; wait "$SINK" || true
  psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null 2>&1 || true
  exit 0
fi

# A fresh sink process (same group: it goes on from the committed offsets),
# so that its delay histogram holds the paced phase only.
kill -TERM "$SINK"; wait "$SINK" || true
CONSUMER_ADMIN_ADDR=127.0.0.1:18889 "$BIN"/observatory-consumer timescale >>.stack/bench/sink.log 2>&1 &
SINK=$!
until get 18889 /readyz 2>/dev/null | head -n1 | grep -q ' 200'; do sleep 0.2; done
sleep 5 # let the group settle
echo "[bench] 10k spans/s for 30 s with the sink running" >&2
"$LOADGEN" --endpoint 127.0.0.1:14317 --unique-ids --rate 10000 --concurrency 4 --spans-per-request 100 \
  --duration 30s --seed 7 | grep -E 'throughput|latency' >&2
sleep 3
get 18889 /metrics | awk '
  /^observatory_consumer_commit_delay_seconds_bucket/ { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[++k] = $NF; b[k] = le }
  /^observatory_consumer_commit_delay_seconds_count/ { total = $NF }
  END {
    for (i = 1; i <= k; i++) { if (!p50 && n[i] >= total * 0.5) p50 = b[i]; if (!p99 && n[i] >= total * 0.99) p99 = b[i] }
    printf "commit delay at 10k spans/s (collector receipt to PostgreSQL commit): p50 <= %s s, p99 <= %s s (%d messages)\n", p50, p99, total }'
psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null 2>&1 || true
