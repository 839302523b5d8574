-- Scores, sessions and users (issue 17): the views LLM teams live in.
--
-- scores: one row per (tenant, id). The sink writes the `scores` topic's
-- upserts and deletes here, and the scores of OTLP `gen_ai.evaluation.result`
-- span events in the spans' own transaction. Last write wins by the score's
-- time (`time_ns`, then a delete over an upsert at the same time), so a
-- replay in any order ends the same; a delete is kept as a row with
-- `deleted` set, so an older upsert replayed after it stays deleted.
-- `trace_user` and `session_key` are the target trace's user and session as
-- `trace_summaries` knew them when the score was written (`session_key` is
-- the score's own session when it targets one): what the sessions and users
-- lists average scores by, without reading spans.
--
-- score_configs: a tenant's optional definition of a score name, set by its
-- admins through the API (like budgets); writes are checked against it.
--
-- session_summaries, session_traces, user_summaries, user_sessions,
-- user_calls_1d: kept by the PostgreSQL sink at write time from exactly the
-- model calls its INSERT added (as the rollups are), so the sessions and
-- users lists read one narrow row each and stay exact under replay and
-- duplicates. A trace is counted in a session once: `session_traces` holds
-- each (session, trace) pair, and only a pair the sink really inserted adds
-- to `traces`; `user_sessions` does the same for a user's sessions.
-- Not partitioned: retention deletes rows whose last activity is older
-- than the traces' retention (the sink's hourly maintenance).

CREATE TABLE IF NOT EXISTS scores (
    tenant        text             NOT NULL,
    id            text             NOT NULL,
    trace_id      bytea,
    span_id       bytea,
    session_id    text,
    name          text             NOT NULL,
    data_type     text             NOT NULL,
    value         double precision,
    label         text,
    comment       text,
    source        text             NOT NULL,
    author        text,
    time          timestamptz      NOT NULL,
    time_ns       bigint           NOT NULL,
    metadata      jsonb            NOT NULL,
    deleted       boolean          NOT NULL,
    trace_user    text,
    session_key   text,
    PRIMARY KEY (tenant, id)
);

CREATE INDEX IF NOT EXISTS scores_trace ON scores (tenant, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS scores_time ON scores (tenant, time);
CREATE INDEX IF NOT EXISTS scores_name_time ON scores (tenant, name, time);
CREATE INDEX IF NOT EXISTS scores_session ON scores (tenant, session_key, name)
    WHERE session_key IS NOT NULL AND NOT deleted;
CREATE INDEX IF NOT EXISTS scores_user ON scores (tenant, trace_user, name)
    WHERE trace_user IS NOT NULL AND NOT deleted;

CREATE TABLE IF NOT EXISTS score_configs (
    tenant       text             NOT NULL,
    name         text             NOT NULL,
    data_type    text             NOT NULL,
    categories   jsonb            NOT NULL,
    min_value    double precision,
    max_value    double precision,
    description  text             NOT NULL,
    updated_at   timestamptz      NOT NULL,
    updated_by   text             NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE IF NOT EXISTS session_summaries (
    tenant         text             NOT NULL,
    session_id     text             NOT NULL,
    first_time     timestamptz      NOT NULL,
    last_time      timestamptz      NOT NULL,
    traces         bigint           NOT NULL,
    llm_calls      bigint           NOT NULL,
    errors         bigint           NOT NULL,
    input_tokens   bigint           NOT NULL,
    output_tokens  bigint           NOT NULL,
    total_tokens   bigint           NOT NULL,
    cost_usd       double precision NOT NULL,
    users          text[]           NOT NULL,
    services       text[]           NOT NULL,
    models         text[]           NOT NULL,
    PRIMARY KEY (tenant, session_id)
);

-- One per sort of the list, each led by the tenant, then the sort value and
-- the key (the keyset tie-breaker), then the last activity (so the window
-- is checked inside the index).
CREATE INDEX IF NOT EXISTS session_summaries_last ON session_summaries (tenant, last_time, session_id);
CREATE INDEX IF NOT EXISTS session_summaries_cost ON session_summaries (tenant, cost_usd, session_id, last_time);
CREATE INDEX IF NOT EXISTS session_summaries_traces ON session_summaries (tenant, traces, session_id, last_time);

CREATE TABLE IF NOT EXISTS session_traces (
    tenant      text        NOT NULL,
    session_id  text        NOT NULL,
    trace_id    bytea       NOT NULL,
    -- The trace's first call in the session: the session's turns in order.
    start_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant, session_id, trace_id)
);

CREATE TABLE IF NOT EXISTS user_summaries (
    tenant           text             NOT NULL,
    user_id          text             NOT NULL,
    first_seen       timestamptz      NOT NULL,
    last_seen        timestamptz      NOT NULL,
    llm_calls        bigint           NOT NULL,
    errors           bigint           NOT NULL,
    input_tokens     bigint           NOT NULL,
    output_tokens    bigint           NOT NULL,
    total_tokens     bigint           NOT NULL,
    cost_usd         double precision NOT NULL,
    duration_ms_sum  double precision NOT NULL,
    sessions         bigint           NOT NULL,
    -- Call latency histogram, observatory_schemas::histogram's 65 buckets.
    latency          bigint[]         NOT NULL,
    PRIMARY KEY (tenant, user_id)
);

CREATE INDEX IF NOT EXISTS user_summaries_last ON user_summaries (tenant, last_seen, user_id);
CREATE INDEX IF NOT EXISTS user_summaries_cost ON user_summaries (tenant, cost_usd, user_id, last_seen);
CREATE INDEX IF NOT EXISTS user_summaries_calls ON user_summaries (tenant, llm_calls, user_id, last_seen);

CREATE TABLE IF NOT EXISTS user_sessions (
    tenant      text        NOT NULL,
    user_id     text        NOT NULL,
    session_id  text        NOT NULL,
    first_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant, user_id, session_id)
);

-- A user's calls per UTC day and model: their cost over time.
CREATE TABLE IF NOT EXISTS user_calls_1d (
    tenant         text             NOT NULL,
    user_id        text             NOT NULL,
    day            date             NOT NULL,
    model          text             NOT NULL,
    llm_calls      bigint           NOT NULL,
    errors         bigint           NOT NULL,
    input_tokens   bigint           NOT NULL,
    output_tokens  bigint           NOT NULL,
    cost_usd       double precision NOT NULL,
    PRIMARY KEY (tenant, user_id, day, model)
);

-- Element-wise sum of two histograms (a missing element counts 0).
CREATE OR REPLACE FUNCTION observatory_add_counts(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i), '{}')
      FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i)
$$;

-- The backfill of what is stored already, from the model calls. Writers
-- wait until this migration commits; the ones that committed before are
-- all seen.
LOCK TABLE llm_calls IN SHARE MODE;

INSERT INTO session_traces
SELECT tenant, session_id, trace_id, min(start_time)
  FROM llm_calls WHERE session_id IS NOT NULL
 GROUP BY tenant, session_id, trace_id
ON CONFLICT DO NOTHING;

INSERT INTO session_summaries
SELECT c.tenant, c.session_id, min(c.start_time),
       max(c.start_time + c.duration_ms * interval '1 millisecond'),
       (SELECT count(*) FROM session_traces t WHERE t.tenant = c.tenant AND t.session_id = c.session_id),
       count(*), count(*) FILTER (WHERE c.is_error),
       coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.input_tokens), 0) + coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.cost_usd), 0),
       coalesce((array_agg(DISTINCT c.user_id COLLATE "C" ORDER BY c.user_id COLLATE "C") FILTER (WHERE c.user_id IS NOT NULL))[1:64], '{}'),
       (array_agg(DISTINCT c.service COLLATE "C" ORDER BY c.service COLLATE "C"))[1:64],
       (array_agg(DISTINCT c.model COLLATE "C" ORDER BY c.model COLLATE "C"))[1:64]
  FROM llm_calls c WHERE c.session_id IS NOT NULL
 GROUP BY c.tenant, c.session_id
ON CONFLICT DO NOTHING;

INSERT INTO user_sessions
SELECT tenant, user_id, session_id, min(start_time)
  FROM llm_calls WHERE user_id IS NOT NULL AND session_id IS NOT NULL
 GROUP BY tenant, user_id, session_id
ON CONFLICT DO NOTHING;

WITH b AS (
    SELECT tenant, user_id, latency_bucket, count(*) AS n
      FROM llm_calls WHERE user_id IS NOT NULL GROUP BY 1, 2, 3
), h AS (
    SELECT u.tenant, u.user_id, array_agg(coalesce(b.n, 0) ORDER BY i.i) AS latency
      FROM (SELECT DISTINCT tenant, user_id FROM b) u
     CROSS JOIN generate_series(0, 64) AS i(i)
      LEFT JOIN b ON b.tenant = u.tenant AND b.user_id = u.user_id AND b.latency_bucket = i.i
     GROUP BY u.tenant, u.user_id
)
INSERT INTO user_summaries
SELECT c.tenant, c.user_id, min(c.start_time),
       max(c.start_time + c.duration_ms * interval '1 millisecond'),
       count(*), count(*) FILTER (WHERE c.is_error),
       coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.input_tokens), 0) + coalesce(sum(c.output_tokens), 0),
       coalesce(sum(c.cost_usd), 0), coalesce(sum(c.duration_ms), 0),
       (SELECT count(*) FROM user_sessions u WHERE u.tenant = c.tenant AND u.user_id = c.user_id),
       (SELECT h.latency FROM h WHERE h.tenant = c.tenant AND h.user_id = c.user_id)
  FROM llm_calls c WHERE c.user_id IS NOT NULL
 GROUP BY c.tenant, c.user_id
ON CONFLICT DO NOTHING;

INSERT INTO user_calls_1d
SELECT tenant, user_id, (start_time AT TIME ZONE 'UTC')::date, model, count(*),
       count(*) FILTER (WHERE is_error),
       coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0)
  FROM llm_calls WHERE user_id IS NOT NULL
 GROUP BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;
