#!/usr/bin/env bash
# The query-API benchmark of BENCHMARKS.md, on this machine:
#
#   integration/bench-api.sh [traces]   (default 2000000: 10M spans, 2M LLM calls)
#
# 1. Load: a fresh database gets the migrations (observatory-consumer
#    migrate), then integration/bench-api-load.sql writes what the sink would
#    for <traces> traces of 5 spans over the last 24 hours, with the minute
#    and hour rollups. BENCH_API_REUSE=1 keeps a database loaded by an
#    earlier run (obs_bench_api_<traces>) instead.
# 2. Query: the release observatory-api (Redis cache on, rate limit raised
#    out of the way) is driven by apibench: trace by id, the 24-hour metrics
#    query uncached and cached, and cached throughput; the API's CPU seconds
#    over the throughput phase and its peak RSS are read from /proc.
# 3. The web UI (BENCH_UI=0 skips it): uibench opens the trace list, the
#    5 000-span trace and the 24-hour dashboard in headless Chromium, from a
#    second API without Redis (every load uncached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRACES="${1:-2000000}"
shift || true
set -a
eval "$(integration/stack.sh up)"
set +a
cargo build --release --bins -q
mkdir -p .stack/bench
PG="${DATABASE_URL%/*}"
DB="obs_bench_api_${TRACES}"
export DATABASE_URL="$PG/$DB" RUST_LOG=warn
if [ "${BENCH_API_REUSE:-0}" = 1 ] && psql "$DATABASE_URL" -tAc "SELECT 1 FROM llm_latency_1h LIMIT 1" 2>/dev/null | grep -q 1; then
  echo "[bench] reusing $DB" >&2
else
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
  psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  target/release/observatory-consumer migrate >&2
  echo "[bench] loading $((TRACES * 5)) spans and $TRACES LLM calls" >&2
  START=$(date +%s)
  psql "$DATABASE_URL" -q -v traces="$TRACES" -f integration/bench-api-load.sql
  echo "[bench] loaded in $(( $(date +%s) - START )) s; database size $(psql "$DATABASE_URL" -tAc "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2
fi

export JWT_SECRET="bench-api-secret-of-enough-length"
API_ADDR=127.0.0.1:18080 RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 \
  target/release/observatory-api >.stack/bench/api.log 2>&1 &
API=$!
trap 'kill $API 2>/dev/null || true' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null; do sleep 0.2; done
TOKEN=$(target/release/observatory-api token --tenant bench --role viewer --ttl 1h)

ticks() { awk '{ printf "%d", $14 + $15 }' "/proc/$API/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks)
target/release/apibench --api http://127.0.0.1:18080 --token "$TOKEN" "$@" 2>&1 | while IFS= read -r line; do
  case "$line" in
    "throughput: start") ticks >.stack/bench/api-ticks-start ;;
    "throughput: end") ticks >.stack/bench/api-ticks-end ;;
    *) echo "$line" ;;
  esac
done
TP0=$(cat .stack/bench/api-ticks-start); TP1=$(cat .stack/bench/api-ticks-end)
echo "api CPU over the throughput phase: $(awk -v t="$((TP1 - TP0))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s"
echo "api CPU over the whole run: $(awk -v t="$(( $(ticks) - T0 ))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s"
echo "api peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$API/status")"
if [ "${BENCH_UI:-1}" = 1 ]; then
  # The web UI's pages in headless Chromium, on the same data (uibench).
  set -a
  eval "$(integration/stack.sh browser)"
  set +a
  # A second API without Redis, so that every load is uncached.
  env -u REDIS_URL API_ADDR=127.0.0.1:18081 target/release/observatory-api >.stack/bench/api-ui.log 2>&1 &
  UI_API=$!
  until (exec 3<>/dev/tcp/127.0.0.1/18081) 2>/dev/null; do sleep 0.2; done
  target/release/uibench --api http://127.0.0.1:18081 --token "$TOKEN" \
    --trace "$(printf big-trace | md5sum | cut -c1-32)"
  kill "$UI_API"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
