#!/usr/bin/env bash
# Brings up the stack and the pipeline, and feeds it a sample LLM workload.
#
#   integration/demo.sh [seconds]      (default 20)
#
# Starts the local stack (integration/stack.sh up), builds the release
# binaries, starts observatory-collector on its default ports (4317 gRPC,
# 4318 HTTP, 8888 admin), the PostgreSQL sink (observatory-consumer
# timescale, admin 8889) and the Tempo sink (observatory-consumer tempo,
# admin 8890, blocks in the stack's S3 server) and the query API
# (observatory-api on 8080, Redis cache, blocks as fallback) unless they
# are already running, sends
# LLM-application traces with the load generator, and prints where to look.
# The pipeline keeps running afterwards; `integration/demo.sh stop` stops it.
#
# DEMO_DISTINCT=<n> sets how many distinct requests loadgen cycles through
# (default: as many as the run sends, up to 5 000).
# DEMO_BIN_DIR=<dir> uses the binaries there instead of building release
# ones (the end-to-end test of the printed `curl` lines runs the debug
# build: integration/tests/e2e/demo.rs). Every `curl` line printed is a
# complete command that answers 200 on the demo's data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.stack"
mkdir -p "$STATE"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ready() { # GET /readyz on the admin port with bash alone (no curl on a fresh machine)
  (exec 3<>/dev/tcp/127.0.0.1/8888 && printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && head -n1 <&3 | grep -q ' 200') 2>/dev/null
}

if [ "${1:-}" = "stop" ]; then
  for p in collector consumer tempo api; do
    if [ -f "$STATE/$p.pid" ]; then kill "$(cat "$STATE/$p.pid")" 2>/dev/null || true; rm -f "$STATE/$p.pid"; fi
  done
  echo "pipeline stopped; the stack keeps running (integration/stack.sh down stops it)"
  exit 0
fi
SECONDS_TO_RUN="${1:-20}"

set -a
eval "$(integration/stack.sh up)"
set +a

BIN="${DEMO_BIN_DIR:-}"
if [ -z "$BIN" ]; then
  echo "[demo] building release binaries" >&2
  cargo build --release --bins -q
  BIN=target/release
fi

if listening 8888; then
  echo "[demo] a collector already answers on :8888; using it" >&2
else
  echo "[demo] starting observatory-collector (log: $STATE/collector.log)" >&2
  nohup "$BIN/observatory-collector" >"$STATE/collector.log" 2>&1 &
  echo $! >"$STATE/collector.pid"
fi
if listening 8889; then
  echo "[demo] a sink already answers on :8889; using it" >&2
else
  echo "[demo] starting observatory-consumer timescale into $DATABASE_URL (log: $STATE/consumer.log)" >&2
  # The demo keeps message content (CAPTURE_CONTENT; off by default), so
  # that the web UI shows each model call's messages and `q=` finds words.
  CAPTURE_CONTENT=true nohup "$BIN/observatory-consumer" timescale >"$STATE/consumer.log" 2>&1 &
  echo $! >"$STATE/consumer.pid"
fi
if listening 8890; then
  echo "[demo] a Tempo sink already answers on :8890; using it" >&2
else
  echo "[demo] starting observatory-consumer tempo into $S3_ENDPOINT, bucket $S3_BUCKET (log: $STATE/tempo.log)" >&2
  AWS_ENDPOINT="$S3_ENDPOINT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    OBJECT_STORE_URL="s3://$S3_BUCKET/demo" TEMPO_BLOCK_MAX_AGE=10s \
    nohup "$BIN/observatory-consumer" tempo >"$STATE/tempo.log" 2>&1 &
  echo $! >"$STATE/tempo.pid"
fi
export JWT_SECRET="${JWT_SECRET:-demo-secret-change-me-in-production}"
if listening 8080; then
  echo "[demo] something already answers on :8080; using it as the API" >&2
else
  echo "[demo] starting observatory-api on :8080 (log: $STATE/api.log)" >&2
  AWS_ENDPOINT="$S3_ENDPOINT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    OBJECT_STORE_URL="s3://$S3_BUCKET/demo" \
    PIPELINE_METRICS="collector=http://127.0.0.1:8888/metrics,timescale=http://127.0.0.1:8889/metrics,tempo=http://127.0.0.1:8890/metrics" \
    nohup "$BIN/observatory-api" >"$STATE/api.log" 2>&1 &
  echo $! >"$STATE/api.pid"
fi
for _ in $(seq 1 300); do
  if ready; then break; fi
  sleep 0.2
done
ready || { echo "[demo] the collector is not ready; see $STATE/collector.log" >&2; exit 1; }

echo "[demo] sending LLM traces for ${SECONDS_TO_RUN}s at 5000 spans/s over OTLP/gRPC" >&2
# As many distinct requests as the run sends (up to 5 000, about 170 MB):
# with fewer, the list would show the same trace over and over, new ids
# on the same times and contents.
# DEMO_DISTINCT sets it (the end-to-end test's debug loadgen builds them slowly).
DISTINCT=${DEMO_DISTINCT:-$(( 5000 * SECONDS_TO_RUN / 100 ))}
[ "$DISTINCT" -le 5000 ] || DISTINCT=5000
"$BIN/loadgen" --endpoint 127.0.0.1:4317 --protocol grpc --rate 5000 --concurrency 4 \
  --spans-per-request 100 --content-bytes 300 --duration "${SECONDS_TO_RUN}s" --unique-ids \
  --distinct "$DISTINCT"
echo "[demo] sending OTLP metrics (GenAI histograms, counters, gauges) and logs (GenAI events, application logs)" >&2
# Services of their own: these metrics describe other calls than the traces
# above, and `source=auto` would take them for the traces' services' calls.
"$BIN/signalgen" --signal metrics --requests 20 --per-request 1000 --series 200 --service-prefix metrics- >/dev/null
"$BIN/signalgen" --signal logs --requests 20 --per-request 500 >/dev/null
sleep "${DEMO_SETTLE_SECONDS:-12}" # the Tempo sink cuts its blocks every 10 s here
FROM=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
TOKEN=$("$BIN/observatory-api" token --tenant default --role viewer --ttl 24h)
ADMIN_TOKEN=$("$BIN/observatory-api" token --tenant default --role admin --ttl 24h --sub demo-admin)
EDITOR_TOKEN=$("$BIN/observatory-api" token --tenant default --role editor --ttl 24h --sub demo-reviewer)

cat <<EOT

The pipeline is running:
  OTLP/gRPC      127.0.0.1:4317   (point any OpenTelemetry SDK or Collector here)
  OTLP/HTTP      http://127.0.0.1:4318/v1/traces
  metrics        http://127.0.0.1:8888/metrics  (observatory_collector_*)
  readiness      http://127.0.0.1:8888/readyz
  Kafka          $KAFKA_BROKERS, topic otlp_spans (one message per trace, key = trace id)
  collector log  $STATE/collector.log
  PostgreSQL     $DATABASE_URL  (tables spans, llm_calls, llm_rollup_1m, llm_latency_1m), e.g.
                 psql "$DATABASE_URL" -c "select model, sum(calls), sum(input_tokens), round(sum(cost_usd)::numeric, 4) from llm_rollup_1m group by 1 order by 4 desc"
  sink metrics   http://127.0.0.1:8889/metrics  (observatory_consumer_*)
  sink log       $STATE/consumer.log
  Tempo blocks   s3://$S3_BUCKET/demo/single-tenant/<block id>/ on $S3_ENDPOINT
                 (files under $STATE/s3/$S3_BUCKET/demo/single-tenant/), vParquet4
  Tempo sink     http://127.0.0.1:8890/metrics, log $STATE/tempo.log
  web UI         http://127.0.0.1:8080/#token=$TOKEN
                 (signs you in as a viewer of tenant default; the token leaves the address bar at once)
                 as an admin, with the pipeline's health: http://127.0.0.1:8080/#token=$ADMIN_TOKEN
                 as an editor, who may score answers: http://127.0.0.1:8080/#token=$EDITOR_TOKEN
  query API      http://127.0.0.1:8080 (docs/api.md; OpenAPI at /api/v1/openapi.json), log $STATE/api.log
                 a viewer token for tenant default (24 h): TOKEN=$TOKEN
                 costs by model, the 5 costliest and 5 slowest traces of the last hour, errors, metrics, Tempo's search:
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/llm/costs?group_by=model'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/traces?sort=cost&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/traces?sort=duration&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/traces?status=error&sort=tokens&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/llm/metrics?from=$FROM&bucket=1m&group_by=model'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/search?limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v2/search/tag/resource.service.name/values'
                 the costliest sessions and end users, and the scores by model:
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/sessions?sort=cost&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/users?sort=cost&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/scores/summary?group_by=model'
                 OTLP metrics and logs: the metric names, p95 call duration by model, warnings, costs from the GenAI metrics:
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/metrics/names'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/metrics/query?name=gen_ai.client.operation.duration&agg=p95&group_by=gen_ai.request.model&from=$FROM'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/logs?severity=warn&limit=5'
                 curl -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/v1/llm/costs?source=metrics&group_by=model'
                 scoring a trace (as the editor; a trace id from the list above):
                 EDITOR_TOKEN=$EDITOR_TOKEN
                 curl -X POST -H "Authorization: Bearer \$EDITOR_TOKEN" -d '{"trace_id":"<id>","name":"helpfulness","value":0.9}' http://127.0.0.1:8080/api/v1/scores
                 Grafana: a Tempo data source at http://127.0.0.1:8080 with header Authorization: Bearer <token>
Stop it with: integration/demo.sh stop
EOT
