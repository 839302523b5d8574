-- TimescaleDB: after the tables of 0001_spans_llm_calls_rollups.sql are
-- created without declarative partitioning (see migrations.rs), make them
-- hypertables with daily chunks and compress raw data after 7 days. The
-- rollups stay tables the sink maintains from inserted rows, exact under
-- replays on both paths. Untested in CI: TimescaleDB is not installable on
-- our machines.

SELECT create_hypertable('spans', by_range('start_time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_calls', by_range('start_time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_rollup_1m', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('llm_latency_1m', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE spans SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant, service');
ALTER TABLE llm_calls SET (timescaledb.compress, timescaledb.compress_segmentby = 'tenant, model');
SELECT add_compression_policy('spans', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('llm_calls', INTERVAL '7 days', if_not_exists => TRUE);
