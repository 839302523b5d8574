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
];

/// The tables of migration 1 and the TimescaleDB statements that turn them
/// into hypertables.
const TIMESCALEDB_HYPERTABLES: &str =
    include_str!("../migrations/0001_timescaledb_hypertables.sql");

/// The SQL of each migration for TimescaleDB: the same tables and keys as
/// [`POSTGRES`], created without declarative partitioning, then made
/// hypertables. Derived from the plain SQL so that the two never drift.
///
/// ```
/// let sql = observatory_schemas::migrations::timescaledb_sql();
/// assert!(!sql[0].1.contains("PARTITION BY"));
/// assert!(sql[0].1.contains("create_hypertable('spans'"));
/// ```
pub fn timescaledb_sql() -> Vec<(Migration, String)> {
    POSTGRES
        .iter()
        .map(|m| {
            let mut sql = m
                .sql
                .replace(") PARTITION BY RANGE (start_time);", ");")
                .replace(") PARTITION BY RANGE (bucket);", ");");
            if m.version == 1 {
                sql.push('\n');
                sql.push_str(TIMESCALEDB_HYPERTABLES);
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
];
