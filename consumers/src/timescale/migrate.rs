//! Applying the schema: once per version, in order, under an advisory lock,
//! recorded in `observatory_migrations`.
//!
//! The first run chooses the path for good: TimescaleDB when
//! `CREATE EXTENSION IF NOT EXISTS timescaledb` succeeds (hypertables,
//! compression, retention policies), plain PostgreSQL 15+ otherwise (native
//! daily range partitions that the sink creates ahead and drops for
//! retention). The choice is recorded, so later runs and every replica use
//! the same one.

use observatory_schemas::migrations::{timescaledb_sql, PARTITIONED_TABLES, POSTGRES};
use tokio_postgres::Client;
use tracing::info;

/// Advisory lock key of migrations.
const LOCK_KEY: i64 = 0x6f62_735f_6d69_6772; // "obs_migr"

/// Which storage path the database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Plain PostgreSQL with native partitions.
    Postgres,
    /// TimescaleDB hypertables.
    TimescaleDb,
}

/// Applies the missing migrations; returns the flavor in use.
pub async fn migrate(client: &mut Client) -> Result<Flavor, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS observatory_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 flavor     text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let recorded: Option<String> = tx
        .query_opt(
            "SELECT flavor FROM observatory_migrations ORDER BY version LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let flavor = match recorded.as_deref() {
        Some("timescaledb") => Flavor::TimescaleDb,
        Some(_) => Flavor::Postgres,
        None => {
            tx.batch_execute("SAVEPOINT try_timescaledb").await?;
            match tx
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await
            {
                Ok(()) => Flavor::TimescaleDb,
                Err(_) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT try_timescaledb")
                        .await?;
                    Flavor::Postgres
                }
            }
        }
    };
    let (migrations, name) = match flavor {
        Flavor::Postgres => (
            POSTGRES.iter().map(|m| (*m, m.sql.to_owned())).collect(),
            "postgres",
        ),
        Flavor::TimescaleDb => (timescaledb_sql(), "timescaledb"),
    };
    for (m, sql) in &migrations {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM observatory_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?
            .is_some();
        if !applied {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO observatory_migrations (version, name, flavor) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &name],
            )
            .await?;
            info!(
                version = m.version,
                name = m.name,
                flavor = name,
                "migration applied"
            );
        }
    }
    tx.commit().await?;
    Ok(flavor)
}

/// Sets TimescaleDB's retention policies from the settings (no-op on plain PostgreSQL).
pub async fn set_retention_policies(
    client: &mut Client,
    traces_days: u32,
    metrics_days: u32,
) -> Result<(), tokio_postgres::Error> {
    for (table, is_trace) in PARTITIONED_TABLES {
        let days = if *is_trace { traces_days } else { metrics_days };
        client
            .batch_execute(&format!(
                "SELECT remove_retention_policy('{table}', if_exists => TRUE);
                 SELECT add_retention_policy('{table}', INTERVAL '{days} days');"
            ))
            .await?;
    }
    Ok(())
}
