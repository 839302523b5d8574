-- TimescaleDB: metric points and log records in daily chunks (see
-- 0008_metrics_logs.sql), dropped by the retention policies the sink sets
-- (RETENTION_METRICS_DAYS, RETENTION_TRACES_DAYS). Untested in CI:
-- TimescaleDB is not installable on our machines.

SELECT create_hypertable('metric_points', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('logs', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE metric_points SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id');
SELECT add_compression_policy('metric_points', INTERVAL '7 days', if_not_exists => TRUE);
