-- Spans, LLM calls and per-minute rollups on TimescaleDB (used when
-- `CREATE EXTENSION timescaledb` succeeds). Same columns and keys as the
-- plain PostgreSQL schema; the tables are hypertables with daily chunks,
-- compressed after 7 days, and retention policies drop whole chunks (set by
-- the consumer from RETENTION_TRACES_DAYS and RETENTION_METRICS_DAYS).
-- The rollups stay tables maintained by the sink (incremented only by rows
-- actually inserted), so they are exact under replays on both paths.
-- Untested in CI: TimescaleDB is not installable on our machines.
--
-- Every table is range-partitioned by time; the sink creates daily
-- partitions ahead of the data it writes and retention drops whole
-- partitions. Primary keys include the partition key (PostgreSQL requires
-- it); a span is identified by (tenant, trace_id, span_id) and always has
-- the same start_time, so re-delivery still hits the key and is ignored.
-- Rollups are only ever increased by the rows an INSERT actually added, so
-- replays do not count twice.

CREATE TABLE IF NOT EXISTS spans (
    tenant          text        NOT NULL,
    trace_id        bytea       NOT NULL,
    span_id         bytea       NOT NULL,
    parent_span_id  bytea,
    service         text        NOT NULL,
    name            text        NOT NULL,
    kind            smallint    NOT NULL,
    start_time      timestamptz NOT NULL,
    duration_ns     bigint      NOT NULL,
    status_code     smallint    NOT NULL,
    status_message  text        NOT NULL,
    scope_name      text        NOT NULL,
    attributes      jsonb       NOT NULL,
    resource        jsonb       NOT NULL,
    events          jsonb       NOT NULL,
    links           jsonb       NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant, trace_id, span_id, start_time)
);

CREATE INDEX IF NOT EXISTS spans_tenant_time ON spans (tenant, start_time DESC);
CREATE INDEX IF NOT EXISTS spans_tenant_service_time ON spans (tenant, service, start_time DESC);

CREATE TABLE IF NOT EXISTS llm_calls (
    tenant                  text             NOT NULL,
    trace_id                bytea            NOT NULL,
    span_id                 bytea            NOT NULL,
    start_time              timestamptz      NOT NULL,
    service                 text             NOT NULL,
    environment             text             NOT NULL,
    provider                text             NOT NULL,
    model                   text             NOT NULL,
    request_model           text,
    operation               text             NOT NULL,
    duration_ms             double precision NOT NULL,
    is_error                boolean          NOT NULL,
    input_tokens            bigint,
    output_tokens           bigint,
    cache_read_tokens       bigint,
    cache_write_tokens      bigint,
    reasoning_tokens        bigint,
    cost_usd                double precision,
    computed_cost_usd       double precision,
    client_cost_usd         double precision,
    time_to_first_token_ms  double precision,
    finish_reasons          text[]           NOT NULL,
    user_id                 text,
    session_id              text,
    agent                   text,
    tool                    text,
    prompt                  text,
    completion              text,
    latency_bucket          smallint         NOT NULL,
    ttft_bucket             smallint,
    PRIMARY KEY (tenant, trace_id, span_id, start_time)
);

CREATE INDEX IF NOT EXISTS llm_calls_tenant_time ON llm_calls (tenant, start_time DESC);
CREATE INDEX IF NOT EXISTS llm_calls_tenant_model_time ON llm_calls (tenant, model, start_time DESC);

CREATE TABLE IF NOT EXISTS llm_rollup_1m (
    bucket              timestamptz      NOT NULL,
    tenant              text             NOT NULL,
    service             text             NOT NULL,
    provider            text             NOT NULL,
    model               text             NOT NULL,
    environment         text             NOT NULL,
    calls               bigint           NOT NULL,
    errors              bigint           NOT NULL,
    input_tokens        bigint           NOT NULL,
    output_tokens       bigint           NOT NULL,
    cache_read_tokens   bigint           NOT NULL,
    cache_write_tokens  bigint           NOT NULL,
    reasoning_tokens    bigint           NOT NULL,
    cost_usd            double precision NOT NULL,
    unpriced_calls      bigint           NOT NULL,
    duration_ms_sum     double precision NOT NULL,
    PRIMARY KEY (tenant, bucket, service, provider, model, environment)
);

-- Latency and time-to-first-token histograms per minute and group:
-- metric 0 = call duration, 1 = time to first token; le = bucket index
-- (see observatory_schemas::histogram); p50/p95/p99 are read by summing.
CREATE TABLE IF NOT EXISTS llm_latency_1m (
    bucket       timestamptz NOT NULL,
    tenant       text        NOT NULL,
    service      text        NOT NULL,
    provider     text        NOT NULL,
    model        text        NOT NULL,
    environment  text        NOT NULL,
    metric       smallint    NOT NULL,
    le           smallint    NOT NULL,
    count        bigint      NOT NULL,
    PRIMARY KEY (tenant, bucket, service, provider, model, environment, metric, le)
);

SELECT create_hypertable('spans', by_range('start_time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_calls', by_range('start_time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_rollup_1m', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_latency_1m', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE spans SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant, service');
ALTER TABLE llm_calls SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant, model');
SELECT add_compression_policy('spans', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('llm_calls', INTERVAL '7 days', if_not_exists => TRUE);
