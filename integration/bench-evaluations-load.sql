-- The scores, sessions and users benchmark's data (BENCHMARKS.md), on top
-- of integration/bench-api-load.sql's traces (tenant `bench`, 50 000
-- sessions, 1 000 users): run after migration 7 filled the session and user
-- tables from the calls (bench-evaluations.sh applies it again after the
-- load, as an upgrade of a populated database would). Adds sessions up to
-- :sessions in all (rows of session_summaries only: what the list reads)
-- and :scores scores, one per trace in turn (names in turn: three numeric,
-- a boolean, a categorical), each with its trace's user and session as the
-- sink stores them.
--
--   psql "$DATABASE_URL" -v sessions=200000 -v scores=1000000 -f integration/bench-evaluations-load.sql

INSERT INTO session_summaries
SELECT 'bench', 'x-' || i, t - interval '4 minutes', t, 1 + i % 30, 1 + i % 30, (i % 13 = 0)::int,
       (1 + i % 30) * 1200, (1 + i % 30) * 150, (1 + i % 30) * 1350, (1 + i % 30) * 0.0042,
       ARRAY['user-' || (i % 1000)], ARRAY['svc-' || (i % 8)], ARRAY['gpt-4o']
FROM (SELECT i, now() - (i::float8 / :sessions) * interval '24 hours' AS t
        FROM generate_series(1, greatest(:sessions - (SELECT count(*) FROM session_summaries), 0)) i) g
ON CONFLICT DO NOTHING;

INSERT INTO scores (tenant, id, trace_id, span_id, session_id, name, data_type, value, label, comment, source,
                    author, time, time_ns, metadata, deleted, trace_user, session_key)
SELECT 'bench', 'b-' || s.i, t.trace_id, NULL, NULL,
       (ARRAY['helpfulness', 'correctness', 'toxicity', 'thumbs', 'tone'])[1 + s.i % 5],
       (ARRAY['numeric', 'numeric', 'numeric', 'boolean', 'categorical'])[1 + s.i % 5],
       CASE WHEN s.i % 5 < 3 THEN (s.i::int8 * 7919 % 1000) / 1000.0 WHEN s.i % 5 = 3 THEN (s.i % 2)::float8 END,
       CASE s.i % 5 WHEN 3 THEN CASE WHEN s.i % 2 = 1 THEN 'true' ELSE 'false' END
                    WHEN 4 THEN (ARRAY['polite', 'neutral', 'rude'])[1 + s.i % 3] END,
       NULL, 'eval', 'bench-evaluator', t.start_time + interval '1 minute',
       (extract(epoch FROM t.start_time + interval '1 minute') * 1e9)::int8, '{"prompt_version": "v3"}', false,
       t.user_id, t.session_id
FROM generate_series(1, :scores) AS s(i)
JOIN (SELECT row_number() OVER () AS rn, trace_id, start_time, user_id, session_id
        FROM trace_summaries WHERE tenant = 'bench') t
  ON t.rn = 1 + (s.i - 1) % (SELECT count(*) FROM trace_summaries WHERE tenant = 'bench')
ON CONFLICT DO NOTHING;

VACUUM ANALYZE session_summaries, session_traces, user_summaries, user_sessions, user_calls_1d, scores;
SELECT (SELECT count(*) FROM session_summaries) AS sessions, (SELECT count(*) FROM session_traces) AS session_traces,
       (SELECT count(*) FROM user_summaries) AS users, (SELECT count(*) FROM scores) AS scores;
