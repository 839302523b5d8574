//! The SQL migrations of the PostgreSQL store, in order.
//!
//! Applying them (in a transaction, once each, recorded in
//! `observatory_migrations`) is the consumer's job; this module only holds
//! their text. Each statement is idempotent (`IF NOT EXISTS`), so a
//! migration interrupted half-way can be run again.

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version; applied in increasing order.
    pub version: i32,
    /// A short name.
    pub name: &'static str,
    /// The SQL, several statements.
    pub sql: &'static str,
}

/// Every migration for plain PostgreSQL 15+.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "spans_llm_calls_rollups",
        sql: include_str!("../migrations/0001_spans_llm_calls_rollups.sql"),
    },
    Migration {
        version: 2,
        name: "budgets",
        sql: include_str!("../migrations/0002_budgets.sql"),
    },
    Migration {
        version: 3,
        name: "hourly_rollups",
        sql: include_str!("../migrations/0003_hourly_rollups.sql"),
    },
    Migration {
        version: 4,
        name: "trace_summaries",
        sql: include_str!("../migrations/0004_trace_summaries.sql"),
    },
    Migration {
        version: 5,
        name: "resources",
        sql: include_str!("../migrations/0005_resources.sql"),
    },
    Migration {
        version: 6,
        name: "calls_keyed_by_spans",
        sql: include_str!("../migrations/0006_calls_keyed_by_spans.sql"),
    },
    Migration {
        version: 7,
        name: "scores_sessions_users",
        sql: include_str!("../migrations/0007_scores_sessions_users.sql"),
    },
    Migration {
        version: 8,
        name: "metrics_logs",
        sql: include_str!("../migrations/0008_metrics_logs.sql"),
    },
];

/// The TimescaleDB statements that turn the tables of a migration into
/// hypertables, by migration version; appended to that migration's SQL.
const TIMESCALEDB_HYPERTABLES: &[(i32, &str)] = &[
    (
        1,
        include_str!("../migrations/0001_timescaledb_hypertables.sql"),
    ),
    (
        3,
        include_str!("../migrations/0003_timescaledb_hypertables.sql"),
    ),
    (
        8,
        include_str!("../migrations/0008_timescaledb_hypertables.sql"),
    ),
];

/// The SQL of each migration for TimescaleDB: the same tables and keys as
/// [`POSTGRES`], created without declarative partitioning, then made
/// hypertables. Derived from the plain SQL so that the two never drift.
///
/// ```
/// let sql = observatory_schemas::migrations::timescaledb_sql();
/// assert!(!sql[0].1.contains("PARTITION BY"));
/// assert!(sql[0].1.contains("create_hypertable('spans'"));
/// let hourly = sql.iter().find(|(m, _)| m.version == 3).unwrap();
/// assert!(hourly.1.contains("create_hypertable('llm_rollup_1h'"));
/// ```
pub fn timescaledb_sql() -> Vec<(Migration, String)> {
    POSTGRES
        .iter()
        .map(|m| {
            let mut sql = m
                .sql
                .replace(") PARTITION BY RANGE (start_time);", ");")
                .replace(") PARTITION BY RANGE (bucket);", ");")
                .replace(") PARTITION BY RANGE (time);", ");");
            for (_, hypertables) in TIMESCALEDB_HYPERTABLES
                .iter()
                .filter(|(version, _)| *version == m.version)
            {
                sql.push('\n');
                sql.push_str(hypertables);
            }
            (*m, sql)
        })
        .collect()
}

/// Tables partitioned by day, with the column they are partitioned on and
/// which retention setting applies: `true` for traces, `false` for metrics.
pub const PARTITIONED_TABLES: &[(&str, bool)] = &[
    ("spans", true),
    ("llm_calls", true),
    ("llm_rollup_1m", false),
    ("llm_latency_1m", false),
    ("llm_rollup_1h", false),
    ("llm_latency_1h", false),
    ("metric_points", false),
    ("logs", true),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        let versions: Vec<i32> = POSTGRES.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=POSTGRES.len() as i32).collect::<Vec<_>>());
        let named: Vec<&str> = POSTGRES.iter().map(|m| m.name).collect();
        assert_eq!(
            named,
            [
                "spans_llm_calls_rollups",
                "budgets",
                "hourly_rollups",
                "trace_summaries",
                "resources",
                "calls_keyed_by_spans",
                "scores_sessions_users",
                "metrics_logs"
            ]
        );
    }

    /// Every partitioned table is made a hypertable, on the same column, in
    /// the migration that creates it, and nothing is left partitioned.
    #[test]
    fn timescaledb_makes_every_partitioned_table_a_hypertable() {
        let sql = timescaledb_sql();
        for (table, _) in PARTITIONED_TABLES {
            let created = format!("CREATE TABLE IF NOT EXISTS {table} (");
            let (m, text) = sql
                .iter()
                .find(|(_, text)| text.contains(&created))
                .unwrap_or_else(|| panic!("{table} is created"));
            assert!(
                text.contains(&format!("create_hypertable('{table}'")),
                "{table} becomes a hypertable in migration {}",
                m.version
            );
        }
        for (m, text) in &sql {
            assert!(!text.contains(") PARTITION BY"), "migration {}", m.version);
        }
        assert_eq!(sql.len(), POSTGRES.len());
    }

    /// The hourly tables are the per-minute ones with another name.
    #[test]
    fn hourly_tables_have_the_minute_tables_columns_and_keys() {
        let definition = |sql: &str, table: &str| -> String {
            let start = sql
                .find(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
                .unwrap_or_else(|| panic!("{table} is created"));
            let body = &sql[start..];
            let end = body
                .find(") PARTITION BY RANGE (bucket);")
                .expect("partitioned");
            body[..end].replacen(table, "t", 1)
        };
        for (minute, hour) in [
            ("llm_rollup_1m", "llm_rollup_1h"),
            ("llm_latency_1m", "llm_latency_1h"),
        ] {
            assert_eq!(
                definition(POSTGRES[0].sql, minute),
                definition(POSTGRES[2].sql, hour),
                "{hour} is {minute} by the hour"
            );
        }
        for table in ["llm_rollup_1h", "llm_latency_1h"] {
            assert!(PARTITIONED_TABLES.contains(&(table, false)), "{table}");
        }
    }
}
