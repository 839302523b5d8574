-- Hourly rollups: the per-minute rollups of 0001 regrouped by UTC hour, for
-- queries over long ranges (24 hours of minutes is about a million rows;
-- of hours, a few thousand).
--
-- Same columns, keys and meaning as llm_rollup_1m and llm_latency_1m, with
-- `bucket` the start of the UTC hour. The sink adds to them in the same
-- transaction as to the per-minute tables, from exactly the calls its
-- INSERT added, so for every hour they equal the per-minute rows summed:
-- replays do not count twice here either. Partitioned by day like the
-- per-minute tables (a UTC hour never straddles two days), kept as long.
--
-- Data written before this migration is copied over once from the
-- per-minute tables, with those tables locked against writers meanwhile so
-- that no per-minute increment is missed or copied twice. Sinks of a
-- version without this migration write no hourly rows: upgrade them all.

CREATE TABLE IF NOT EXISTS llm_rollup_1h (
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
) PARTITION BY RANGE (bucket);

-- Latency and time-to-first-token histograms per hour and group, as in
-- llm_latency_1m: metric 0 = call duration, 1 = time to first token.
CREATE TABLE IF NOT EXISTS llm_latency_1h (
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
) PARTITION BY RANGE (bucket);

-- The backfill. Writers of the per-minute tables wait until this migration
-- commits; the ones that committed before are all seen.
LOCK TABLE llm_rollup_1m, llm_latency_1m IN SHARE MODE;

-- Plain PostgreSQL: an hourly partition for each per-minute one, same day,
-- same bounds (llm_rollup_1m_p20260101 -> llm_rollup_1h_p20260101). On
-- TimescaleDB there are no declarative partitions and this does nothing.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT n.nspname AS schema, c.relname AS name, parent.relname AS parent,
               pg_get_expr(c.relpartbound, c.oid) AS bounds
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_class parent ON parent.oid = i.inhparent
         WHERE parent.relname IN ('llm_rollup_1m', 'llm_latency_1m')
           AND c.relispartition
    LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %I %s',
            p.schema,
            replace(p.parent, '_1m', '_1h') || substr(p.name, length(p.parent) + 1),
            replace(p.parent, '_1m', '_1h'),
            p.bounds);
    END LOOP;
END
$$;

INSERT INTO llm_rollup_1h (bucket, tenant, service, provider, model, environment, calls, errors,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd,
    unpriced_calls, duration_ms_sum)
SELECT date_trunc('hour', bucket, 'UTC'), tenant, service, provider, model, environment, sum(calls),
    sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
    sum(reasoning_tokens), sum(cost_usd), sum(unpriced_calls), sum(duration_ms_sum)
  FROM llm_rollup_1m
 GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT DO NOTHING;

INSERT INTO llm_latency_1h (bucket, tenant, service, provider, model, environment, metric, le, count)
SELECT date_trunc('hour', bucket, 'UTC'), tenant, service, provider, model, environment, metric, le,
    sum(count)
  FROM llm_latency_1m
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ON CONFLICT DO NOTHING;
