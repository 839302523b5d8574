-- The data set of the query-API benchmark (integration/bench-api.sh): the
-- rows the PostgreSQL sink would write for :traces traces of 5 spans each
-- (a root, one model call, a tool call, a retrieval and an HTTP call) spread
-- evenly over the last 24 hours, tenant 'bench', and the per-minute and
-- per-hour rollups summed from the calls exactly as the sink sums them.
--
--   psql "$DATABASE_URL" -v traces=2000000 -f integration/bench-api-load.sql
--
-- 8 services x 6 models x 2 environments, 1000 users; call latency 200 ms
-- to 8.2 s, time to first token on half of the calls, 2% errors.
\set ON_ERROR_STOP on
SET maintenance_work_mem = '1GB';
SET work_mem = '256MB';

-- Daily partitions of every partitioned table, as the sink names them.
DO $$
DECLARE
  parent text;
  d date;
BEGIN
  FOR parent IN SELECT c.relname FROM pg_class c WHERE c.relkind = 'p' AND c.relnamespace = 'public'::regnamespace LOOP
    FOR d IN SELECT generate_series(current_date - 2, current_date + 1, interval '1 day')::date LOOP
      EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                     parent || '_p' || to_char(d, 'YYYYMMDD'), parent,
                     d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
  END LOOP;
END $$;

CREATE TEMP TABLE models (m int, provider text, model text, input float8, output float8);
INSERT INTO models VALUES
  (0, 'openai', 'gpt-4o', 2.5, 10), (1, 'openai', 'gpt-4o-mini', 0.15, 0.6),
  (2, 'anthropic', 'claude-3-5-sonnet', 3, 15), (3, 'anthropic', 'claude-3-5-haiku', 0.8, 4),
  (4, 'google', 'gemini-1.5-pro', 1.25, 5), (5, 'openai', 'gpt-4.1', 2, 8);

CREATE TEMP TABLE t AS
SELECT i,
       decode(md5('t' || i), 'hex') AS trace_id,
       date_trunc('minute', now()) - interval '24 hours' + (i::float8 / :traces) * interval '24 hours' AS start_time,
       'svc-' || (i % 8) AS service,
       CASE WHEN (i / 8) % 10 = 0 THEN 'staging' ELSE 'prod' END AS environment,
       (i / 3) % 6 AS m,
       200 + (i * 2654435761) % 8000 AS llm_ms,
       100 + (i * 40503) % 3000 AS input,
       20 + (i * 9973) % 500 AS output,
       i % 50 = 0 AS error
FROM generate_series(1::bigint, :traces) i;

-- The secondary indexes are rebuilt once after the load.
DROP INDEX IF EXISTS llm_calls_tenant_time, llm_calls_tenant_start, llm_calls_trace, llm_calls_tenant_model_time, trace_summaries_start,
  trace_summaries_duration, trace_summaries_cost, trace_summaries_tokens, trace_summaries_spans,
  trace_summaries_start_brin, trace_summaries_user, trace_summaries_session;

INSERT INTO spans
SELECT 'bench', t.trace_id,
       decode(substr(md5('s' || t.i || '-' || k), 1, 16), 'hex'),
       CASE WHEN k = 0 THEN NULL ELSE decode(substr(md5('s' || t.i || '-0'), 1, 16), 'hex') END,
       t.service,
       CASE k WHEN 0 THEN 'agent run' WHEN 1 THEN 'chat ' || mo.model WHEN 2 THEN 'tool search'
              WHEN 3 THEN 'retrieve' ELSE 'GET /inventory' END,
       CASE WHEN k IN (1, 4) THEN 3 ELSE 1 END,
       t.start_time + k * interval '1 millisecond',
       (CASE WHEN k = 0 THEN t.llm_ms + 500 WHEN k = 1 THEN t.llm_ms ELSE 40 + 10 * k END) * 1000000,
       CASE WHEN k = 1 AND t.error THEN 2 ELSE 0 END, '', 'bench',
       CASE WHEN k = 1 THEN jsonb_build_object('gen_ai.operation.name', 'chat', 'gen_ai.provider.name', mo.provider,
                                               'gen_ai.request.model', mo.model, 'gen_ai.usage.input_tokens', t.input,
                                               'gen_ai.usage.output_tokens', t.output, 'user.id', 'user-' || (t.i % 1000))
            ELSE jsonb_build_object('tier', CASE WHEN t.i % 3 = 0 THEN 'gold' ELSE 'free' END, 'retries', t.i % 4) END,
       jsonb_build_object('service.name', t.service, 'deployment.environment.name', t.environment),
       '[]'::jsonb, '[]'::jsonb, now()
FROM t JOIN models mo ON mo.m = t.m CROSS JOIN generate_series(0, 4) k;

INSERT INTO llm_calls
SELECT 'bench', t.trace_id, decode(substr(md5('s' || t.i || '-1'), 1, 16), 'hex'),
       t.start_time + interval '1 millisecond', t.service, t.environment, mo.provider, mo.model, mo.model, 'chat',
       t.llm_ms, t.error, t.input, t.output, 0, 0, 0,
       (t.input * mo.input + t.output * mo.output) / 1e6, (t.input * mo.input + t.output * mo.output) / 1e6, NULL,
       CASE WHEN t.i % 2 = 0 THEN t.llm_ms * 0.2 END, ARRAY['stop'], 'user-' || (t.i % 1000), 's-' || (t.i % 50000),
       NULL, NULL, NULL, NULL,
       least(64, greatest(0, ceil(log(2, t.llm_ms::numeric) * 4)))::int2,
       CASE WHEN t.i % 2 = 0 THEN least(64, greatest(0, ceil(log(2, (t.llm_ms * 0.2)::numeric) * 4)))::int2 END
FROM t JOIN models mo ON mo.m = t.m;

-- The trace summaries, as the sink keeps them: the root ends last (its
-- duration is the call's plus 500 ms), the call is the second span.
INSERT INTO trace_summaries
SELECT 'bench', t.trace_id, t.start_time, t.start_time + (t.llm_ms + 500) * interval '1 millisecond',
       (t.llm_ms + 500) * 1000, t.service, 'agent run', false, t.start_time, 5,
       (1 + CASE WHEN t.error THEN 4 ELSE 0 END)::int2, 1, t.input, t.output, 0, 0, 0, t.input + t.output,
       (t.input * mo.input + t.output * mo.output) / 1e6, ARRAY[t.service], ARRAY[mo.model],
       ARRAY[mo.provider], ARRAY[t.environment],
       'user-' || (t.i % 1000), t.start_time + interval '1 millisecond',
       's-' || (t.i % 50000), t.start_time + interval '1 millisecond'
FROM t JOIN models mo ON mo.m = t.m;

-- One large trace for the UI benchmark: 5 000 spans (md5('big-trace') is
-- its id), an hour ago: a root, 99 agent steps under it, and under each step
-- tool calls and model calls (every tenth span a model call of gpt-4o).
CREATE TEMP TABLE big AS
SELECT k,
       decode(md5('big-trace'), 'hex') AS trace_id,
       date_trunc('minute', now()) - interval '1 hour' + k * interval '2 milliseconds' AS start_time,
       decode(substr(md5('big-' || k), 1, 16), 'hex') AS span_id,
       CASE WHEN k = 0 THEN NULL WHEN k < 100 THEN decode(substr(md5('big-0'), 1, 16), 'hex')
            ELSE decode(substr(md5('big-' || (1 + k % 99)), 1, 16), 'hex') END AS parent,
       CASE WHEN k = 0 THEN 12000 WHEN k < 100 THEN 400 + k ELSE 5 + k % 300 END AS ms,
       k > 0 AND k % 10 = 1 AS llm
FROM generate_series(0, 4999) k;
INSERT INTO spans
SELECT 'bench', b.trace_id, b.span_id, b.parent, 'svc-' || (b.k % 5),
       CASE WHEN b.k = 0 THEN 'agent run' WHEN b.k < 100 THEN 'agent step ' || b.k
            WHEN b.llm THEN 'chat gpt-4o' ELSE 'tool search' END,
       CASE WHEN b.llm THEN 3 ELSE 1 END, b.start_time, b.ms * 1000000::bigint,
       CASE WHEN b.k % 97 = 5 THEN 2 ELSE 0 END, '', 'bench',
       CASE WHEN b.llm THEN jsonb_build_object('gen_ai.operation.name', 'chat', 'gen_ai.provider.name', 'openai',
                                               'gen_ai.request.model', 'gpt-4o', 'gen_ai.usage.input_tokens', 500,
                                               'gen_ai.usage.output_tokens', 50)
            ELSE jsonb_build_object('step', b.k) END,
       jsonb_build_object('service.name', 'svc-' || (b.k % 5), 'deployment.environment.name', 'prod'),
       '[]'::jsonb, '[]'::jsonb, now()
FROM big b;
INSERT INTO llm_calls
SELECT 'bench', b.trace_id, b.span_id, b.start_time, 'svc-' || (b.k % 5), 'prod', 'openai', 'gpt-4o', 'gpt-4o',
       'chat', b.ms, false, 500, 50, 0, 0, 0, 0.00175, 0.00175, NULL, NULL, ARRAY['stop'], 'user-big', 's-big',
       NULL, NULL, NULL, NULL, least(64, greatest(0, ceil(log(2, b.ms::numeric) * 4)))::int2, NULL
FROM big b WHERE b.llm;
INSERT INTO trace_summaries
SELECT 'bench', decode(md5('big-trace'), 'hex'), min(start_time), min(start_time) + interval '12 seconds',
       12000000, 'svc-0', 'agent run', false, min(start_time), 5000,
       (1 + CASE WHEN bool_or(k % 97 = 5) THEN 4 ELSE 0 END)::int2, count(*) FILTER (WHERE llm),
       500 * count(*) FILTER (WHERE llm), 50 * count(*) FILTER (WHERE llm), 0, 0, 0, 550 * count(*) FILTER (WHERE llm),
       0.00175 * count(*) FILTER (WHERE llm), ARRAY['svc-0', 'svc-1', 'svc-2', 'svc-3', 'svc-4'], ARRAY['gpt-4o'],
       ARRAY['openai'], ARRAY['prod'], 'user-big', min(start_time), 's-big', min(start_time)
FROM big;

CREATE INDEX IF NOT EXISTS llm_calls_tenant_start ON llm_calls (tenant, start_time);
CREATE INDEX IF NOT EXISTS llm_calls_trace ON llm_calls USING hash (trace_id);
CREATE INDEX IF NOT EXISTS trace_summaries_start ON trace_summaries (tenant, start_time, trace_id);
CREATE INDEX IF NOT EXISTS trace_summaries_duration ON trace_summaries (tenant, duration_us, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_cost ON trace_summaries (tenant, cost_usd, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_tokens ON trace_summaries (tenant, total_tokens, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_spans ON trace_summaries (tenant, span_count, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_start_brin ON trace_summaries USING brin (start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_user ON trace_summaries (tenant, user_id, start_time) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS trace_summaries_session ON trace_summaries (tenant, session_id, start_time) WHERE session_id IS NOT NULL;

-- Rollups, per minute and per hour.
INSERT INTO llm_rollup_1m
SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment, count(*),
       count(*) FILTER (WHERE is_error), sum(input_tokens), sum(output_tokens), 0, 0, 0, sum(cost_usd), 0, sum(duration_ms)
FROM llm_calls GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO llm_rollup_1h
SELECT date_trunc('hour', bucket), tenant, service, provider, model, environment, sum(calls), sum(errors),
       sum(input_tokens), sum(output_tokens), 0, 0, 0, sum(cost_usd), 0, sum(duration_ms_sum)
FROM llm_rollup_1m GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO llm_latency_1m
SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment, 0, latency_bucket, count(*)
FROM llm_calls GROUP BY 1, 2, 3, 4, 5, 6, 8
UNION ALL
SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment, 1, ttft_bucket, count(*)
FROM llm_calls WHERE ttft_bucket IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 8;
INSERT INTO llm_latency_1h
SELECT date_trunc('hour', bucket), tenant, service, provider, model, environment, metric, le, sum(count)
FROM llm_latency_1m GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

VACUUM ANALYZE;
SELECT (SELECT count(*) FROM spans) AS spans, (SELECT count(*) FROM trace_summaries) AS traces, (SELECT count(*) FROM llm_calls) AS llm_calls,
       (SELECT count(*) FROM llm_rollup_1m) AS rollup_1m_rows, (SELECT count(*) FROM llm_latency_1m) AS latency_1m_rows,
       (SELECT count(*) FROM llm_latency_1h) AS latency_1h_rows;
