//! Daily partitions: created ahead of the data, dropped whole by retention.
//!
//! Partition names are `<table>_pYYYYMMDD`, ranges `[day, day + 1)` in UTC.
//! Creation runs under a transaction-scoped advisory lock so that replicas
//! of the sink do not race on `CREATE TABLE ... PARTITION OF`. Retention
//! lists the partitions of each table and drops those whose day is older
//! than the table's retention, and those further ahead than any accepted
//! span can start (`ACCEPT_SPANS_MAX_FUTURE`, plus the days made ahead):
//! whole partitions, never row by row.

use observatory_schemas::civil::civil_from_days;
use observatory_schemas::migrations::PARTITIONED_TABLES;
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_postgres::Client;
use tracing::info;

/// Advisory lock key of partition maintenance.
const LOCK_KEY: i64 = 0x6f62_735f_7061_7274; // "obs_part"

/// Partitions this connection knows to exist.
#[derive(Debug, Default)]
pub struct Partitions {
    days: HashSet<i64>,
}

fn suffix(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}{m:02}{d:02}")
}

fn bound(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02} 00:00:00+00")
}

/// Unpartitioned tables kept as long as the traces, each with the time
/// column a row expires by (fixed names, never from input).
const EXPIRING: [(&str, &str); 7] = [
    ("trace_summaries", "start_time"),
    ("session_traces", "start_time"),
    ("session_summaries", "last_time"),
    ("user_sessions", "first_time"),
    ("user_summaries", "last_seen"),
    ("user_calls_1d", "day"),
    ("scores", "time"),
];

impl Partitions {
    /// The day (since the epoch, UTC) of a time.
    pub fn day_of(t: SystemTime) -> i64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() / 86_400) as i64,
            Err(e) => -((e.duration().as_secs() / 86_400) as i64) - 1,
        }
    }

    /// Today, UTC.
    pub fn today() -> i64 {
        Self::day_of(SystemTime::now())
    }

    /// Whether this connection created or saw the partitions of `day`.
    pub fn known(&self, day: i64) -> bool {
        self.days.contains(&day)
    }

    /// Remembers that `day` exists.
    pub fn mark(&mut self, day: i64) {
        self.days.insert(day);
    }

    /// Creates the partitions of every table for `days`, when missing.
    pub async fn create(client: &mut Client, days: &[i64]) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        let mut sql = String::new();
        for day in days {
            for (table, _) in PARTITIONED_TABLES {
                sql.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {table}_p{} PARTITION OF {table} FOR VALUES FROM ('{}') TO ('{}');\n",
                    suffix(*day),
                    bound(*day),
                    bound(day + 1)
                ));
            }
        }
        tx.batch_execute(&sql).await?;
        tx.commit().await
    }

    /// Deletes the trace summaries of traces that started before the first
    /// day the traces' retention keeps (the day of the oldest partition of
    /// `spans` kept), a batch at a time, and with them what else is kept
    /// per trace, session and user past that day: sessions and users last
    /// active before it (with their pairs and days), and scores given before
    /// it; returns how many rows.
    pub async fn expire_summaries(
        client: &mut Client,
        traces_days: u32,
    ) -> Result<usize, tokio_postgres::Error> {
        let oldest_kept = UNIX_EPOCH
            + std::time::Duration::from_secs(
                (Self::today() - i64::from(traces_days)).max(0) as u64 * 86_400,
            );
        let mut deleted = 0;
        for (table, column) in EXPIRING {
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE {column} < $1::timestamptz LIMIT 10000))"
            );
            loop {
                let n = client.execute(&sql, &[&oldest_kept]).await? as usize;
                deleted += n;
                if n == 0 {
                    break;
                }
            }
        }
        if deleted > 0 {
            info!(deleted, "retention deleted trace summaries");
        }
        Ok(deleted)
    }

    /// Deletes the metric series not seen (`last_seen`, which the sink moves
    /// once a day per series it writes) for `metrics_days`, whose points
    /// retention dropped with their partitions, a batch at a time, and
    /// recounts the series of the metrics that lost some (a metric left
    /// with none is forgotten); returns how many series.
    pub async fn expire_series(
        client: &mut Client,
        metrics_days: u32,
    ) -> Result<usize, tokio_postgres::Error> {
        let oldest_kept = UNIX_EPOCH
            + std::time::Duration::from_secs(
                (Self::today() - i64::from(metrics_days)).max(0) as u64 * 86_400,
            );
        let mut metrics: HashSet<(String, String)> = HashSet::new();
        let mut deleted = 0;
        loop {
            let rows = client
                .query(
                    "DELETE FROM metric_series WHERE series_id = ANY(ARRAY(
                         SELECT series_id FROM metric_series WHERE last_seen < $1::timestamptz LIMIT 10000))
                     RETURNING tenant, name",
                    &[&oldest_kept],
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            deleted += rows.len();
            metrics.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
        }
        let mut sorted: Vec<(String, String)> = metrics.into_iter().collect();
        sorted.sort();
        for (tenant, name) in &sorted {
            let tx = client.transaction().await?;
            // The sinks' lock order: the metric's row, then its series.
            tx.execute(
                "SELECT 1 FROM metric_names WHERE tenant = $1 AND name = $2 FOR UPDATE",
                &[tenant, name],
            )
            .await?;
            tx.execute(
                "UPDATE metric_names SET series = (SELECT count(*) FROM metric_series
                         WHERE tenant = $1 AND name = $2)
                  WHERE tenant = $1 AND name = $2",
                &[tenant, name],
            )
            .await?;
            tx.execute(
                "DELETE FROM metric_names WHERE tenant = $1 AND name = $2 AND series = 0",
                &[tenant, name],
            )
            .await?;
            tx.commit().await?;
        }
        if deleted > 0 {
            info!(deleted, "retention deleted metric series");
        }
        Ok(deleted)
    }

    /// Drops the partitions older than the retention of their table, and
    /// those more than `ahead_days` after today; returns how many.
    pub async fn drop_expired(
        client: &mut Client,
        traces_days: u32,
        metrics_days: u32,
        ahead_days: u32,
    ) -> Result<usize, tokio_postgres::Error> {
        let today = Self::today();
        let latest_kept = suffix(today + i64::from(ahead_days));
        let mut dropped = 0;
        for (table, is_trace) in PARTITIONED_TABLES {
            let keep = if *is_trace { traces_days } else { metrics_days } as i64;
            let oldest_kept = suffix(today - keep);
            let rows = client
                .query(
                    "SELECT c.relname FROM pg_inherits i
                       JOIN pg_class c ON c.oid = i.inhrelid
                       JOIN pg_class p ON p.oid = i.inhparent
                      WHERE p.relname = $1",
                    &[table],
                )
                .await?;
            for row in rows {
                let name: String = row.get(0);
                let Some(day) = name.strip_prefix(&format!("{table}_p")) else {
                    continue;
                };
                let dated = day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit());
                if dated && (*day < *oldest_kept || *day > *latest_kept) {
                    client
                        .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                        .await?;
                    info!(partition = %name, "retention dropped a partition");
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_and_bounds() {
        assert_eq!(suffix(20_784), "20261127");
        assert_eq!(bound(-1), "1969-12-31 00:00:00+00");
    }
}
