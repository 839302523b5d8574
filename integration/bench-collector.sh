#!/usr/bin/env bash
# The collector benchmark of BENCHMARKS.md: for each case a fresh in-memory
# tansu broker and a fresh release collector, driven by loadgen, all on this
# machine. (A private broker per case: tansu's memory storage keeps every
# message, so a long run would otherwise fill the stack's broker.)
#
#   integration/bench-collector.sh [seconds per case]   (default 30)
#   BENCH_CASES="http_json_max grpc_max" runs only the cases named.
#
# Prints one line per case: throughput, latency percentiles, refusals, and
# the collector's CPU seconds per million spans and peak RSS (from /proc).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${1:-30}"
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

BROKER_PORT=19092
run_case() { # name port loadgen-args...
  local name="$1" port="$2"; shift 2
  # BENCH_CASES="http_json_max grpc_max": only those cases.
  if [ -n "${BENCH_CASES:-}" ] && [[ " $BENCH_CASES " != *" $name "* ]]; then return 0; fi
  local topic="bench_${name}"
  "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine memory://bench/ \
    >".stack/bench/tansu-$name.log" 2>&1 &
  local broker=$!
  KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" KAFKA_TRACES_TOPIC="$topic" COLLECTOR_GRPC_ADDR=127.0.0.1:14317 COLLECTOR_HTTP_ADDR=127.0.0.1:14318 \
    COLLECTOR_ADMIN_ADDR=127.0.0.1:18888 RUST_LOG=warn \
    "$BIN"/observatory-collector >".stack/bench/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 150); do
    (exec 3<>/dev/tcp/127.0.0.1/18888 && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && head -n1 <&3 | grep -q ' 200') 2>/dev/null && break
    sleep 0.2
  done
  local out
  out="$("$LOADGEN" --endpoint "127.0.0.1:$port" --duration "${DURATION}s" --collector-pid "$pid" "$@" | grep '^json ')"
  kill -TERM "$pid"; wait "$pid" || true
  kill "$broker"; wait "$broker" 2>/dev/null || true
  printf '%-22s %s\n' "$name" "${out#json }"
}

echo "case                   result (loadgen JSON)"
run_case grpc_max 14317 --protocol grpc --concurrency 8
run_case grpc_100k 14317 --protocol grpc --concurrency 8 --rate 100000
run_case grpc_50k 14317 --protocol grpc --concurrency 8 --rate 50000
run_case http_protobuf_max 14318 --protocol http-protobuf --concurrency 8
run_case http_json_max 14318 --protocol http-json --concurrency 8
run_case grpc_max_2kb_prompts 14317 --protocol grpc --concurrency 8 --content-bytes 2000
