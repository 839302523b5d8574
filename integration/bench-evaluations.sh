#!/usr/bin/env bash
# The scores, sessions and users benchmark of BENCHMARKS.md, on this machine:
#
#   integration/bench-evaluations.sh [traces]   (default 1000000: 5M spans, 20 traces a session)
#
# 1. Load: a fresh database gets the migrations, integration/bench-api-load.sql
#    writes the traces (as for the API benchmark), migration 7 is applied
#    again so that its backfill builds the sessions and users from the calls
#    (as an upgrade of a populated database does), and
#    integration/bench-evaluations-load.sql adds sessions up to 200 000 and
#    1 000 000 scores. BENCH_EVAL_REUSE=1 keeps an earlier run's database.
# 2. The API (BENCH_BIN_DIR, default target/release; Redis off, so every
#    read is uncached) and a PostgreSQL sink reading the scores topic; then
#    evalbench: the lists, the details, and score writes through the API and
#    the broker to rows.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRACES="${1:-1000000}"
shift || true
set -a
eval "$(integration/stack.sh up)"
set +a
BIN="${BENCH_BIN_DIR:-target/release}"
if [ -z "${BENCH_BIN_DIR:-}" ]; then cargo build --release --bins -q; fi
mkdir -p .stack/bench
PG="${DATABASE_URL%/*}"
DB="obs_bench_eval_${TRACES}"
export DATABASE_URL="$PG/$DB" RUST_LOG=warn
if [ "${BENCH_EVAL_REUSE:-0}" = 1 ] && psql "$DATABASE_URL" -tAc "SELECT 1 FROM scores LIMIT 1" 2>/dev/null | grep -q 1; then
  echo "[bench] reusing $DB" >&2
else
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
  psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  "$BIN/observatory-consumer" migrate >&2
  START=$(date +%s)
  psql "$DATABASE_URL" -q -v traces="$TRACES" -f integration/bench-api-load.sql
  echo "[bench] traces loaded in $(( $(date +%s) - START )) s" >&2
  START=$(date +%s)
  psql "$DATABASE_URL" -qc "DELETE FROM observatory_migrations WHERE version = 7"
  "$BIN/observatory-consumer" migrate >&2
  echo "[bench] migration 7's backfill in $(( $(date +%s) - START )) s" >&2
  START=$(date +%s)
  psql "$DATABASE_URL" -q -v sessions=200000 -v scores=1000000 -f integration/bench-evaluations-load.sql
  echo "[bench] sessions and scores loaded in $(( $(date +%s) - START )) s; database size $(psql "$DATABASE_URL" -tAc "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2
fi

export JWT_SECRET="bench-eval-secret-of-enough-length"
SCORES_TOPIC="bench-scores-$(date +%s)"
env -u REDIS_URL API_ADDR=127.0.0.1:18082 KAFKA_SCORES_TOPIC="$SCORES_TOPIC" KAFKA_SCORES_PARTITIONS=4 \
  RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 \
  "$BIN/observatory-api" >.stack/bench/eval-api.log 2>&1 &
API=$!
CONSUMER_ADMIN_ADDR=127.0.0.1:18899 KAFKA_TRACES_TOPIC="bench-eval-spans-$(date +%s)" KAFKA_SCORES_TOPIC="$SCORES_TOPIC" \
  KAFKA_GROUP_ID="bench-eval-$(date +%s)" MIGRATE_ON_START=false \
  "$BIN/observatory-consumer" timescale >.stack/bench/eval-sink.log 2>&1 &
SINK=$!
trap 'kill $API $SINK 2>/dev/null || true' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/18082) 2>/dev/null; do sleep 0.2; done
until (exec 3<>/dev/tcp/127.0.0.1/18899) 2>/dev/null; do sleep 0.2; done
TOKEN=$("$BIN/observatory-api" token --tenant bench --role editor --ttl 1h)
ticks() { awk '{ printf "%d", $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
A0=$(ticks $API); S0=$(ticks $SINK)
"$BIN/evalbench" --api http://127.0.0.1:18082 --token "$TOKEN" "$@"
echo "api CPU over the run: $(awk -v t="$(( $(ticks $API) - A0 ))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s, peak RSS $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$API/status")"
echo "sink CPU over the run: $(awk -v t="$(( $(ticks $SINK) - S0 ))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s, peak RSS $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$SINK/status")"
echo "binaries: $BIN; machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
