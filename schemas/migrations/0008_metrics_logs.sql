-- Metrics and logs (issue 18): the two other OTLP signals.
--
-- Metrics are stored as series and points. A series is one metric stream
-- of one tenant: name, type, temporality, unit, resource, scope and point
-- attributes (and, for explicit-bucket histograms, the bucket bounds). Its
-- id is a 64-bit FNV-1a hash of all of that, computed by the sink
-- (observatory_schemas::metrics::series_id), so a replay finds the same
-- series, and the attribute sets are stored once, not on every point.
-- A point is narrow: the series id, its time, and the columns its type uses
-- (NULL elsewhere, which costs a bit in the row's null bitmap).
--
-- kind: 1 gauge, 2 sum, 3 histogram, 4 exponential histogram, 5 summary.
-- temporality: 0 unspecified (gauges, summaries), 1 delta, 2 cumulative.
CREATE TABLE IF NOT EXISTS metric_series (
    series_id    bigint      PRIMARY KEY,
    tenant       text        NOT NULL,
    name         text        NOT NULL,
    kind         smallint    NOT NULL,
    temporality  smallint    NOT NULL,
    monotonic    boolean     NOT NULL,
    unit         text        NOT NULL,
    description  text        NOT NULL,
    service      text        NOT NULL,
    scope_name   text        NOT NULL,
    resource_id  bigint      NOT NULL,
    attributes   jsonb       NOT NULL,
    bounds       float8[],
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_series_name ON metric_series (tenant, name);

-- How many series each metric of a tenant has: the sink's cardinality
-- limit (METRICS_MAX_SERIES) reads it instead of counting.
CREATE TABLE IF NOT EXISTS metric_names (
    tenant       text        NOT NULL,
    name         text        NOT NULL,
    series       bigint      NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Points, keyed by (series, time): a point delivered twice is stored once.
-- Gauges and sums use `value`; histograms `count`, `sum`, `min`, `max` and
-- `buckets` (explicit: one count per bucket, the bounds are the series';
-- exponential: the positive buckets from `exp_offset`, the negative ones in
-- `exp_negative` from `exp_negative_offset`, with `exp_scale` and
-- `exp_zero_count`); summaries `count`, `sum` and `quantiles` as
-- [q0, v0, q1, v1, ...]. Exemplars are kept with their trace and span ids.
CREATE TABLE IF NOT EXISTS metric_points (
    series_id           bigint      NOT NULL,
    time                timestamptz NOT NULL,
    start_time          timestamptz,
    value               float8,
    count               bigint,
    sum                 float8,
    min                 float8,
    max                 float8,
    buckets             bigint[],
    exp_scale           integer,
    exp_zero_count      bigint,
    exp_offset          integer,
    exp_negative_offset integer,
    exp_negative        bigint[],
    quantiles           float8[],
    flags               integer,
    exemplars           jsonb,
    PRIMARY KEY (series_id, time)
) PARTITION BY RANGE (time);

-- Log records. A record has no id of its own: `record_id` is a 64-bit
-- FNV-1a hash of the record as sent (with its resource and scope), so a
-- record delivered twice is stored once. `time` is the record's time, its
-- observed time when it has none, the collector's receipt otherwise.
CREATE TABLE IF NOT EXISTS logs (
    tenant           text        NOT NULL,
    time             timestamptz NOT NULL,
    record_id        bigint      NOT NULL,
    observed_time    timestamptz,
    trace_id         bytea,
    span_id          bytea,
    severity_number  smallint    NOT NULL,
    severity_text    text        NOT NULL,
    service          text        NOT NULL,
    event_name       text        NOT NULL,
    scope_name       text        NOT NULL,
    body             jsonb,
    attributes       jsonb       NOT NULL,
    resource_id      bigint      NOT NULL,
    flags            integer     NOT NULL,
    PRIMARY KEY (tenant, time, record_id)
) PARTITION BY RANGE (time);
CREATE INDEX IF NOT EXISTS logs_trace ON logs (tenant, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_service_time ON logs (tenant, service, time DESC);
CREATE INDEX IF NOT EXISTS logs_event_time ON logs (tenant, event_name, time DESC) WHERE event_name <> '';
