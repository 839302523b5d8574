#!/usr/bin/env bash
# The Tempo sink benchmark of BENCHMARKS.md, on this machine:
#
#   integration/bench-tempo.sh [spans]   (default 1000000)
#
# 1. Drain with the defaults (but a 5 s block age, so that the tail of the
#    drain is not a 60 s wait): a private in-memory tansu broker is filled
#    through the release collector with N GenAI spans of unique ids; then
#    `observatory-consumer tempo` writes them as blocks to a local folder,
#    and its CPU seconds per million spans and peak RSS are read from /proc.
# 2. One big block: the same with a one-partition topic and the memory
#    bound raised, so that one cut makes one block of about 100 MiB of
#    parquet; its size and the sink's peak RSS are reported.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SPANS="${1:-1000000}"
set -a
eval "$(integration/stack.sh up)"
set +a
cargo build --release --bins -q
OUT="$ROOT/.stack/bench"
mkdir -p "$OUT"
export KAFKA_BROKERS=127.0.0.1:19092 RUST_LOG=warn

get() { # port path
  exec 3<>"/dev/tcp/127.0.0.1/$1"; printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3; cat <&3; exec 3>&-
}
metric() { get 18890 /metrics 2>/dev/null | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'; }

# run <name> <partitions> <spans> [sink env...]
run() {
  local name="$1" partitions="$2" spans="$3"; shift 3
  local topic="bench_tempo_${name}" blocks="$OUT/blocks-$name"
  rm -rf "$blocks"
  "$TANSU_BIN" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
    --storage-engine "memory://bench-$name/" >"$OUT/tansu-tempo.log" 2>&1 &
  BROKER=$!
  KAFKA_TRACES_TOPIC="$topic" KAFKA_TRACES_PARTITIONS="$partitions" \
    COLLECTOR_GRPC_ADDR=127.0.0.1:14317 COLLECTOR_HTTP_ADDR=127.0.0.1:14318 COLLECTOR_ADMIN_ADDR=127.0.0.1:18888 \
    target/release/observatory-collector >"$OUT/collector-tempo.log" 2>&1 &
  COLLECTOR=$!
  until get 18888 /readyz 2>/dev/null | head -n1 | grep -q ' 200'; do sleep 0.2; done
  local requests=$(( (spans + 511) / 512 ))
  target/release/loadgen --endpoint 127.0.0.1:14317 --unique-ids --distinct 64 --concurrency 8 \
    --max-requests "$requests" --duration 600s | grep -E 'spans acknowledged' >&2
  local total=$((requests * 512))
  local start; start=$(date +%s.%N)
  env "$@" KAFKA_TRACES_TOPIC="$topic" OBJECT_STORE_URL="$blocks" CONSUMER_ADMIN_ADDR=127.0.0.1:18890 \
    target/release/observatory-consumer tempo >"$OUT/sink-tempo.log" 2>&1 &
  SINK=$!
  until [ "$(metric 'observatory_consumer_block_spans_written_total{sink="tempo"}')" -ge "$total" ]; do sleep 0.5; done
  local end; end=$(date +%s.%N)
  read -r ut st < <(awk '{print $14, $15}' "/proc/$SINK/stat")
  local hwm; hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SINK/status")
  local nblocks bytes largest
  nblocks=$(find "$blocks" -name meta.json | wc -l)
  bytes=$(find "$blocks" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  largest=$(find "$blocks" -name data.parquet -printf '%s\n' | sort -n | tail -n1)
  awk -v n="$name" -v t="$total" -v a="$start" -v b="$end" -v ut="$ut" -v st="$st" -v hwm="$hwm" \
      -v nb="$nblocks" -v by="$bytes" -v lg="$largest" 'BEGIN {
    secs = b - a; cpu = (ut + st) / 100;
    printf "%s: %d spans in %.1f s = %.0f spans/s; sink CPU %.1f s = %.2f CPU-s per million spans; peak RSS %.0f MiB; %d blocks, %.1f stored bytes per span, largest data.parquet %.1f MiB\n",
      n, t, secs, t / secs, cpu, cpu / (t / 1e6), hwm / 1024, nb, by / t, lg / 1048576 }'
  kill "$SINK" "$COLLECTOR" "$BROKER" 2>/dev/null || true
  wait "$SINK" "$COLLECTOR" "$BROKER" 2>/dev/null || true
}
trap 'kill "${SINK:-}" "${COLLECTOR:-}" "${BROKER:-}" 2>/dev/null || true' EXIT

echo "[bench] defaults but TEMPO_BLOCK_MAX_AGE=5s: 16 partitions, $SPANS spans" >&2
run defaults 16 "$SPANS" TEMPO_BLOCK_MAX_AGE=5s
echo "[bench] one ~100 MiB block: 1 partition, 2000000 spans, TEMPO_MAX_BUFFER_BYTES=4GiB" >&2
run bigblock 1 2000000 TEMPO_MAX_BUFFER_BYTES=4294967296 TEMPO_BLOCK_MAX_AGE=20s
