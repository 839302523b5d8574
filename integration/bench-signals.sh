#!/usr/bin/env bash
# The PostgreSQL sink's metrics and logs benchmark of BENCHMARKS.md (issue 18):
#
#   integration/bench-signals.sh metrics [points]    (default 2000000)
#   integration/bench-signals.sh logs [records]      (default 1000000)
#
# A private in-memory tansu broker is filled through the release collector
# (OTLP/gRPC, signalgen: 1 000 series of a GenAI metric mix, or GenAI
# application log records); then `observatory-consumer timescale` with
# SIGNALS=<signal> starts on a fresh, migrated database and the time it
# takes to write every acknowledged item is measured, with its CPU seconds
# and peak RSS from /proc, the CPU of PostgreSQL (whole server, and the
# sink's own backends) and the WAL written. At the end the rows in
# metric_points (logs) must equal what the collector acknowledged.
#
# BENCH_BIN_DIR=<dir>: measure those binaries (nothing is built).
# BENCH_PERF=<file>: a perf profile of the whole machine during the drain.
# SIGNALGEN_ARGS: more signalgen flags (e.g. "--series 5000").
# The sink's own settings (COPY_*, CAPTURE_CONTENT, ...) pass through the
# environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SIGNAL="${1:-metrics}"
case "$SIGNAL" in
  metrics) ITEMS="${2:-2000000}"; PER_REQUEST=1000; TABLE=metric_points; UNIT=points ;;
  logs) ITEMS="${2:-1000000}"; PER_REQUEST=500; TABLE=logs; UNIT=records ;;
  *) echo "usage: $0 metrics|logs [items]" >&2; exit 2 ;;
esac
set -a
eval "$(integration/stack.sh up)"
set +a
if [ -z "${BENCH_BIN_DIR:-}" ]; then cargo build --release --workspace --bins -q; fi
BIN="${BENCH_BIN_DIR:-target/release}"
SIGNALGEN="$BIN/signalgen"
[ -x "$SIGNALGEN" ] || SIGNALGEN=target/release/signalgen
mkdir -p .stack/bench
PG="${DATABASE_URL%/*}"
DB="obs_bench_${SIGNAL}_$(date +%s)"
psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$PG/$DB"
# Ports of their own, so that bench-timescale.sh may run beside it.
export KAFKA_BROKERS=127.0.0.1:19192 KAFKA_METRICS_TOPIC=bench_metrics KAFKA_LOGS_TOPIC=bench_logs RUST_LOG=warn

"$TANSU_BIN" broker --listener-url tcp://127.0.0.1:19192 --advertised-listener-url tcp://127.0.0.1:19192 \
  --storage-engine memory://bench/ >".stack/bench/tansu-$SIGNAL.log" 2>&1 &
BROKER=$!
COLLECTOR_GRPC_ADDR=127.0.0.1:14417 COLLECTOR_HTTP_ADDR=127.0.0.1:14418 COLLECTOR_ADMIN_ADDR=127.0.0.1:18988 \
  "$BIN"/observatory-collector >".stack/bench/collector-$SIGNAL.log" 2>&1 &
COLLECTOR=$!
cleanup() {
  kill "${SINK:-}" "$COLLECTOR" "$BROKER" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

get() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1"; printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3; cat <&3; exec 3>&-
}
until get 18988 /readyz 2>/dev/null | head -n1 | grep -q ' 200'; do sleep 0.2; done

REQUESTS=$(( (ITEMS + PER_REQUEST - 1) / PER_REQUEST ))
echo "[bench] filling the topic with $((REQUESTS * PER_REQUEST)) $UNIT" >&2
# shellcheck disable=SC2086 # SIGNALGEN_ARGS is a list of flags
"$SIGNALGEN" --signal "$SIGNAL" --endpoint 127.0.0.1:14417 --requests "$REQUESTS" \
  --per-request "$PER_REQUEST" --concurrency 8 ${SIGNALGEN_ARGS:-} >.stack/bench/signalgen.out
grep -E '^[a-z ]*(acknowledged|rejected|retries|throughput|elapsed)' .stack/bench/signalgen.out >&2
TOTAL=$(sed -n 's/^json .*"acknowledged":\([0-9]*\).*/\1/p' .stack/bench/signalgen.out)
[ "${TOTAL:-0}" -gt 0 ] || { echo "[bench] nothing acknowledged" >&2; exit 1; }

# The schema first, so that the drain measures writing only.
"$BIN"/observatory-consumer migrate >".stack/bench/sink-$SIGNAL.log" 2>&1

metric() { get 18989 /metrics 2>/dev/null | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'; }
# Items accounted for: written, already stored, or left out (with a reason).
done_items() {
  get 18989 /metrics 2>/dev/null | awk -v s="sink=\"$SIGNAL\"" -v t="table=\"$TABLE\"" '
    index($0, "observatory_consumer_rows_written_total{") == 1 && index($0, s) && index($0, t) { n += $NF }
    index($0, "observatory_consumer_rows_duplicate_total{") == 1 && index($0, s) && index($0, t) { n += $NF }
    index($0, "observatory_consumer_items_dropped_total{") == 1 && index($0, s) { n += $NF }
    END { printf "%d", n }'
}
# CPU ticks of every PostgreSQL process (server-wide: the machine is shared,
# so this also counts anyone else's queries) ...
pg_ticks() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '$2 == "(postgres)" { t += $14 + $15 } END { printf "%d", t }'; }
# ... and of the backends serving this database (the sink's connections),
# looked up every 2 s; a backend's last reading is kept once it is gone.
declare -A BACKEND
sample_backends() {
  local p t
  for p in $(psql "$PG/postgres" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'" 2>/dev/null); do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || continue
    BACKEND[$p]=$t
  done
}
db_ticks() { local t=0 p; for p in "${!BACKEND[@]}"; do t=$((t + BACKEND[$p])); done; echo "$t"; }
wal() { psql "$PG/postgres" -Atc "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"; }
WAL0=$(wal)
PG0=$(pg_ticks)
START=$(date +%s.%N)
if [ -n "${BENCH_PERF:-}" ]; then
  eval "$(integration/stack.sh perf)"
  "$PERF_BIN" record -e cpu-clock -g -a -o "$BENCH_PERF" >/dev/null 2>&1 &
  PERF=$!
fi
SIGNALS="$SIGNAL" CONSUMER_ADMIN_ADDR=127.0.0.1:18989 "$BIN"/observatory-consumer timescale >>".stack/bench/sink-$SIGNAL.log" 2>&1 &
SINK=$!
FIRST=""
LAST_N=-1
LAST_MOVE=$(date +%s)
TICK=0
while :; do
  N=$(done_items)
  if [ -z "$FIRST" ] && [ "$N" -gt 0 ]; then FIRST=$(date +%s.%N); FIRST_N=$N; fi
  [ "$N" -ge "$TOTAL" ] && break
  TICK=$((TICK + 1))
  if [ $((TICK % 4)) -eq 0 ]; then sample_backends; fi
  if [ "$N" -ne "$LAST_N" ]; then LAST_N=$N; LAST_MOVE=$(date +%s); fi
  if [ $(( $(date +%s) - LAST_MOVE )) -gt 120 ]; then
    echo "[bench] stuck at $N of $TOTAL $UNIT for 2 minutes; see .stack/bench/sink-$SIGNAL.log" >&2
    exit 1
  fi
  sleep 0.5
done
END=$(date +%s.%N)
PG1=$(pg_ticks)
sample_backends
DB_TICKS=$(db_ticks)
WAL1=$(wal)
if [ -n "${PERF:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
read -r UT ST < <(awk '{print $14, $15}' "/proc/$SINK/stat")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SINK/status")
awk -v t="$TOTAL" -v a="$START" -v f="$FIRST" -v fn="$FIRST_N" -v b="$END" -v ut="$UT" -v st="$ST" -v hwm="$HWM" -v u="$UNIT" 'BEGIN {
  secs = b - a; cpu = (ut + st) / 100;
  printf "drain: %d %s in %.1f s = %.0f %s/s (from the first commit: %.0f %s/s); sink CPU %.1f s = %.2f CPU-s per million %s; sink peak RSS %.0f MiB\n",
    t, u, secs, t / secs, u, (b > f ? (t - fn) / (b - f) : t / secs), u, cpu, cpu / (t / 1e6), u, hwm / 1024 }'
awk -v t="$TOTAL" -v pg=$((PG1 - PG0)) -v db="$DB_TICKS" -v u="$UNIT" 'BEGIN {
  printf "during the drain: PostgreSQL CPU %.1f s = %.2f CPU-s per million %s (whole server); the sink'\''s backends %.1f s = %.2f CPU-s per million\n",
    pg / 100, pg / 100 / (t / 1e6), u, db / 100, db / 100 / (t / 1e6) }'
awk -v t="$TOTAL" -v a="$WAL0" -v b="$WAL1" -v u="$UNIT" 'BEGIN {
  split(a, x, "|"); split(b, y, "|"); m = t / 1e6
  printf "WAL during the drain, per million %s: %.0f records, %.0f full-page images, %.0f MiB\n",
    u, (y[1] - x[1]) / m, (y[2] - x[2]) / m, (y[3] - x[3]) / m / 1048576 }'
get 18989 /metrics 2>/dev/null | grep -E "^observatory_consumer_(rows_duplicate_total|items_dropped_total|items_flagged_total)\{.*sink=\"$SIGNAL\"" | grep -v ' 0$' >&2 || true
get 18989 /metrics 2>/dev/null | grep -E "^observatory_consumer_batches_total\{.*sink=\"$SIGNAL\"" >&2 || true
kill -TERM "$SINK"; wait "$SINK" || true
SINK=""

STORED=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM $TABLE")
SIZE=$(psql "$DATABASE_URL" -Atc "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = '$TABLE'::regclass")
EXTRA=""
if [ "$SIGNAL" = metrics ]; then EXTRA="; $(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM metric_series") series"; fi
echo "stored: $STORED rows in $TABLE ($SIZE with indexes)$EXTRA; acknowledged by the collector: $TOTAL"
if [ "$STORED" -ne "$TOTAL" ]; then
  echo "[bench] FAILED: $STORED stored, $TOTAL acknowledged" >&2
  exit 1
fi
