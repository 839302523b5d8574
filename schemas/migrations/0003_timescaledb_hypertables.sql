-- TimescaleDB: after the hourly rollup tables of 0003_hourly_rollups.sql are
-- created without declarative partitioning (see migrations.rs) and filled
-- from the per-minute rollups, make them hypertables with daily chunks like
-- the per-minute ones (the rows already copied move into chunks). Untested
-- in CI: TimescaleDB is not installable on our machines.

SELECT create_hypertable('llm_rollup_1h', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('llm_latency_1h', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
