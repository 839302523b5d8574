-- Trace summaries: one row per (tenant, trace), kept by the sink at write
-- time, so that the trace list and its sorts read one narrow row per trace
-- instead of aggregating every span of the window (issue 15).
--
-- How it stays exact: the sink adds to a summary only what its INSERT into
-- `spans` / `llm_calls` really added (as for the rollups), merged with
-- order-independent rules: least start, greatest end, counts and sums
-- added, status bits OR-ed, sets unioned; the root is the span without a
-- parent that starts first (until one arrives, the earliest span); user and
-- session come from the earliest model call that names one. So spans of a
-- trace arriving in several messages, out of order, twice, or replayed give
-- the same row.
--
-- Not partitioned: a trace's start moves earlier when an earlier span
-- arrives late, and the key must find the row whatever part of the trace
-- comes next. Retention deletes rows whose trace ended before the traces'
-- retention, in batches (observatory-consumer's hourly maintenance).
--
-- Indexes: one per sort of the list (time, duration, cost, tokens, span
-- count), each led by the tenant and ending in the trace id (the keyset
-- tie-breaker) then the start (so the window is checked inside the index);
-- user and session, partial. Spans no longer need time indexes: every
-- reader finds traces here and spans by their key (dropped at the end).

CREATE TABLE IF NOT EXISTS trace_summaries (
    tenant              text             NOT NULL,
    trace_id            bytea            NOT NULL,
    start_time          timestamptz      NOT NULL,
    end_time            timestamptz      NOT NULL,
    duration_us         bigint           NOT NULL,
    root_service        text             NOT NULL,
    root_name           text             NOT NULL,
    -- The root's rank: a span without a parent wins over one with, then the earlier.
    root_parented       boolean          NOT NULL,
    root_start          timestamptz      NOT NULL,
    span_count          bigint           NOT NULL,
    -- Bit 0: a span with status unset, 1: ok, 2: error.
    statuses            smallint         NOT NULL,
    llm_calls           bigint           NOT NULL,
    input_tokens        bigint           NOT NULL,
    output_tokens       bigint           NOT NULL,
    cache_read_tokens   bigint           NOT NULL,
    cache_write_tokens  bigint           NOT NULL,
    reasoning_tokens    bigint           NOT NULL,
    total_tokens        bigint           NOT NULL,
    cost_usd            double precision NOT NULL,
    services            text[]           NOT NULL,
    models              text[]           NOT NULL,
    providers           text[]           NOT NULL,
    environments        text[]           NOT NULL,
    user_id             text,
    user_at             timestamptz,
    session_id          text,
    session_at          timestamptz,
    PRIMARY KEY (tenant, trace_id)
);

CREATE INDEX IF NOT EXISTS trace_summaries_start ON trace_summaries (tenant, start_time, trace_id);
CREATE INDEX IF NOT EXISTS trace_summaries_duration ON trace_summaries (tenant, duration_us, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_cost ON trace_summaries (tenant, cost_usd, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_tokens ON trace_summaries (tenant, total_tokens, trace_id, start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_spans ON trace_summaries (tenant, span_count, trace_id, start_time);
-- Retention's: rows come in roughly by time, so a block range index is
-- small and nearly free to keep.
CREATE INDEX IF NOT EXISTS trace_summaries_start_brin ON trace_summaries USING brin (start_time);
CREATE INDEX IF NOT EXISTS trace_summaries_user ON trace_summaries (tenant, user_id, start_time)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS trace_summaries_session ON trace_summaries (tenant, session_id, start_time)
    WHERE session_id IS NOT NULL;

-- The sorted union (bytewise, as the sink sorts) of two sets, at most 64 values: a trace's services,
-- models, providers and environments.
CREATE OR REPLACE FUNCTION observatory_union(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((array_agg(DISTINCT x COLLATE "C" ORDER BY x COLLATE "C"))[1:64], '{}') FROM unnest(a || b) AS x
$$;

-- The backfill of what is stored already. Writers of spans wait until this
-- migration commits; the ones that committed before are all seen.
LOCK TABLE spans, llm_calls IN SHARE MODE;

INSERT INTO trace_summaries
SELECT s.tenant, s.trace_id, min(s.start_time),
       max(s.start_time + (s.duration_ns / 1000) * interval '1 microsecond'),
       (extract(epoch FROM max(s.start_time + (s.duration_ns / 1000) * interval '1 microsecond') - min(s.start_time)) * 1e6)::bigint,
       (array_agg(s.service ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1],
       (array_agg(s.name ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1],
       bool_and(s.parent_span_id IS NOT NULL),
       (array_agg(s.start_time ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1],
       count(*),
       bit_or(CASE s.status_code WHEN 2 THEN 4 WHEN 1 THEN 2 ELSE 1 END)::int2,
       count(c.span_id),
       coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.cache_read_tokens), 0), coalesce(sum(c.cache_write_tokens), 0),
       coalesce(sum(c.reasoning_tokens), 0),
       coalesce(sum(c.input_tokens), 0) + coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.cost_usd), 0),
       (array_agg(DISTINCT s.service COLLATE "C" ORDER BY s.service COLLATE "C"))[1:64],
       coalesce((array_agg(DISTINCT c.model COLLATE "C" ORDER BY c.model COLLATE "C") FILTER (WHERE c.model IS NOT NULL))[1:64], '{}'),
       coalesce((array_agg(DISTINCT c.provider COLLATE "C" ORDER BY c.provider COLLATE "C") FILTER (WHERE c.provider IS NOT NULL))[1:64], '{}'),
       coalesce((array_agg(DISTINCT c.environment COLLATE "C" ORDER BY c.environment COLLATE "C") FILTER (WHERE c.environment <> ''))[1:64], '{}'),
       (array_agg(c.user_id ORDER BY c.start_time) FILTER (WHERE c.user_id IS NOT NULL))[1],
       min(c.start_time) FILTER (WHERE c.user_id IS NOT NULL),
       (array_agg(c.session_id ORDER BY c.start_time) FILTER (WHERE c.session_id IS NOT NULL))[1],
       min(c.start_time) FILTER (WHERE c.session_id IS NOT NULL)
  FROM spans s
  LEFT JOIN llm_calls c
    ON c.tenant = s.tenant AND c.trace_id = s.trace_id AND c.span_id = s.span_id AND c.start_time = s.start_time
 GROUP BY s.tenant, s.trace_id
ON CONFLICT DO NOTHING;

-- Indexes no query uses any more (checked with EXPLAIN on the API's
-- queries): spans are found by trace (their primary key), model calls by
-- time (the analytics of users read llm_calls by tenant and time).
DROP INDEX IF EXISTS spans_tenant_time;
DROP INDEX IF EXISTS spans_tenant_service_time;
DROP INDEX IF EXISTS llm_calls_tenant_model_time;
