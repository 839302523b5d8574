//! Writing batches to PostgreSQL: binary COPY into staging tables, then one
//! `INSERT ... ON CONFLICT DO NOTHING` into the partitioned tables and one
//! rollup upsert fed **only by the rows that insert added**, all in one
//! transaction.
//!
//! That is what keeps the store exact under re-delivery and replays: a span
//! already stored conflicts on its primary key and is skipped, and since the
//! rollups are incremented from the `RETURNING` rows of the same statement, a
//! skipped call adds nothing to them either. The transaction commits before
//! the consumer commits any offset (`source.rs`).

use super::partitions::Partitions;
use super::rows::{CallRecord, Prepared, SpanRecord};
use crate::source::WriteError;
use bytes::{BufMut, BytesMut};
use futures::pin_mut;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use std::collections::BTreeSet;
use std::error::Error;
use std::pin::Pin;
use std::time::Duration;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, NoTls};
use tracing::warn;

/// JSON text already rendered, sent as `jsonb` without parsing it again.
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1); // jsonb binary format version
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

const SPAN_COLUMNS: &str =
    "tenant, trace_id, span_id, parent_span_id, service, name, kind, start_time, duration_ns, \
    status_code, status_message, scope_name, attributes, resource, events, links, received_at";
const SPAN_TYPES: [Type; 17] = [
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::JSONB,
    Type::JSONB,
    Type::JSONB,
    Type::TIMESTAMPTZ,
];

const CALL_COLUMNS: &str = "tenant, trace_id, span_id, start_time, service, environment, provider, model, request_model, \
    operation, duration_ms, is_error, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, \
    cost_usd, computed_cost_usd, client_cost_usd, time_to_first_token_ms, finish_reasons, user_id, session_id, agent, tool, \
    prompt, completion, latency_bucket, ttft_bucket";
const CALL_TYPES: [Type; 30] = [
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::INT2,
];

const STAGE_TABLES: &str =
    "CREATE TEMP TABLE IF NOT EXISTS stage_spans (LIKE spans) ON COMMIT DELETE ROWS; \
    CREATE TEMP TABLE IF NOT EXISTS stage_llm_calls (LIKE llm_calls) ON COMMIT DELETE ROWS;";

/// Column lists are explicit so that a migration adding columns does not
/// break a running sink whose staging tables are older.
fn insert_spans() -> String {
    format!("INSERT INTO spans ({SPAN_COLUMNS}) SELECT {SPAN_COLUMNS} FROM stage_spans ON CONFLICT DO NOTHING")
}

/// Inserts the staged calls and adds exactly the inserted ones to the rollups.
const INSERT_CALLS_AND_ROLLUPS: &str = "
WITH ins AS (
    INSERT INTO llm_calls (CALL_COLUMNS) SELECT CALL_COLUMNS FROM stage_llm_calls ON CONFLICT DO NOTHING
    RETURNING tenant, start_time, service, provider, model, environment, is_error, input_tokens, output_tokens,
              cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, duration_ms, latency_bucket, ttft_bucket
), roll AS (
    INSERT INTO llm_rollup_1m AS r (bucket, tenant, service, provider, model, environment, calls, errors,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd,
        unpriced_calls, duration_ms_sum)
    SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment,
        count(*), count(*) FILTER (WHERE is_error),
        coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cache_read_tokens), 0),
        coalesce(sum(cache_write_tokens), 0), coalesce(sum(reasoning_tokens), 0), coalesce(sum(cost_usd), 0),
        count(*) FILTER (WHERE cost_usd IS NULL), sum(duration_ms)
    FROM ins GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (tenant, bucket, service, provider, model, environment) DO UPDATE SET
        calls = r.calls + excluded.calls,
        errors = r.errors + excluded.errors,
        input_tokens = r.input_tokens + excluded.input_tokens,
        output_tokens = r.output_tokens + excluded.output_tokens,
        cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
        reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
        cost_usd = r.cost_usd + excluded.cost_usd,
        unpriced_calls = r.unpriced_calls + excluded.unpriced_calls,
        duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum
    RETURNING 1
), lat AS (
    INSERT INTO llm_latency_1m AS l (bucket, tenant, service, provider, model, environment, metric, le, count)
    SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment, 0::smallint, latency_bucket, count(*)
    FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 8
    UNION ALL
    SELECT date_trunc('minute', start_time), tenant, service, provider, model, environment, 1::smallint, ttft_bucket, count(*)
    FROM ins WHERE ttft_bucket IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 8
    ON CONFLICT (tenant, bucket, service, provider, model, environment, metric, le) DO UPDATE SET
        count = l.count + excluded.count
    RETURNING 1
)
SELECT count(*) FROM ins";

/// What a committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Spans in the batch.
    pub spans: u64,
    /// Spans inserted (the rest were already stored).
    pub spans_inserted: u64,
    /// Calls in the batch.
    pub calls: u64,
    /// Calls inserted.
    pub calls_inserted: u64,
}

/// Sorts PostgreSQL errors into "retry later" and "never".
///
/// Permanent: what the data itself causes (data exceptions 22, integrity
/// violations 23, program limits 54, unsupported features 0A such as writing
/// into a compressed TimescaleDB chunk). Everything else (connection loss,
/// serialization failures, a missing table after a bad deployment) is retried:
/// an operator's mistake stalls the sink and shows in its metrics rather than
/// sending every message to the DLQ.
pub fn classify(error: tokio_postgres::Error) -> WriteError {
    match error.code().map(|c| c.code()) {
        Some(code)
            if ["22", "23", "54", "0A"]
                .iter()
                .any(|class| code.starts_with(class)) =>
        {
            WriteError::Permanent(error.to_string())
        }
        _ => WriteError::Transient(error.to_string()),
    }
}

/// One connection and what it knows.
pub struct Writer {
    url: String,
    client: Option<Client>,
    partitions: Partitions,
    native_partitions: bool,
    staged: bool,
}

impl Writer {
    /// A writer that connects on first use. With `native_partitions` it
    /// creates the daily partitions its rows need (plain PostgreSQL);
    /// TimescaleDB makes its chunks itself.
    pub fn new(url: String, native_partitions: bool) -> Writer {
        Writer {
            url,
            client: None,
            partitions: Partitions::default(),
            native_partitions,
            staged: false,
        }
    }

    /// Connects (once) with the session settings the writer relies on.
    pub async fn client(&mut self) -> Result<&mut Client, tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config: tokio_postgres::Config = self.url.parse()?;
            // A dead server or a half-open connection must fail, not hang.
            config
                .connect_timeout(Duration::from_secs(10))
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(30))
                .tcp_user_timeout(Duration::from_secs(60));
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(error = %e, "postgres connection closed");
                }
            });
            client
                .batch_execute(
                    "SET TIME ZONE 'UTC'; SET application_name = 'observatory-consumer'; SET client_min_messages = warning;",
                )
                .await?;
            self.partitions = Partitions::default();
            self.staged = false;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Creates the daily partitions for `days` (days since the epoch) when missing.
    pub async fn ensure_partitions(
        &mut self,
        days: &BTreeSet<i64>,
    ) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<i64> = days
            .iter()
            .copied()
            .filter(|d| !self.partitions.known(*d))
            .collect();
        if missing.is_empty() || !self.native_partitions {
            return Ok(());
        }
        let client = self.client().await?;
        Partitions::create(client, &missing).await?;
        for d in missing {
            self.partitions.mark(d);
        }
        Ok(())
    }

    /// Writes the rows of `batch` in one transaction.
    pub async fn write(&mut self, batch: &[&Prepared]) -> Result<Written, WriteError> {
        let result = self.write_inner(batch).await;
        if result.is_err() {
            // Forget cached state: the next attempt starts from a fresh look.
            self.partitions = Partitions::default();
            if self.client.as_ref().is_some_and(Client::is_closed) {
                self.client = None;
            }
        }
        result.map_err(classify)
    }

    async fn write_inner(&mut self, batch: &[&Prepared]) -> Result<Written, tokio_postgres::Error> {
        let days: BTreeSet<i64> = batch
            .iter()
            .flat_map(|p| p.spans.iter().map(|s| Partitions::day_of(s.start)))
            .collect();
        self.ensure_partitions(&days).await?;
        self.client().await?; // (re)connects, which resets `staged`
        let client = self.client.as_mut().expect("connected above");
        if !self.staged {
            client.batch_execute(STAGE_TABLES).await?;
            self.staged = true;
        }
        let tx = client.transaction().await?;
        let mut written = Written::default();

        let sink = tx
            .copy_in(&format!(
                "COPY stage_spans ({SPAN_COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let copy = BinaryCopyInWriter::new(sink, &SPAN_TYPES);
        pin_mut!(copy);
        for span in batch.iter().flat_map(|p| &p.spans) {
            write_span(copy.as_mut(), span).await?;
            written.spans += 1;
        }
        copy.finish().await?;
        written.spans_inserted = tx.execute(&insert_spans(), &[]).await?;

        if batch.iter().any(|p| !p.calls.is_empty()) {
            let sink = tx
                .copy_in(&format!(
                    "COPY stage_llm_calls ({CALL_COLUMNS}) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let copy = BinaryCopyInWriter::new(sink, &CALL_TYPES);
            pin_mut!(copy);
            for call in batch.iter().flat_map(|p| &p.calls) {
                write_call(copy.as_mut(), call).await?;
                written.calls += 1;
            }
            copy.finish().await?;
            let row = tx
                .query_one(
                    &INSERT_CALLS_AND_ROLLUPS.replace("CALL_COLUMNS", CALL_COLUMNS),
                    &[],
                )
                .await?;
            written.calls_inserted = row.get::<_, i64>(0) as u64;
        }
        tx.commit().await?;
        Ok(written)
    }
}

async fn write_span(
    copy: Pin<&mut BinaryCopyInWriter>,
    s: &SpanRecord,
) -> Result<(), tokio_postgres::Error> {
    let r = &s.row;
    let (trace_id, span_id): (&[u8], &[u8]) = (&r.trace_id, &r.span_id);
    let parent: Option<&[u8]> = r.parent_span_id.as_ref().map(|p| &p[..]);
    let (attributes, resource, events, links) = (
        Jsonb(&r.attributes),
        Jsonb(&r.resource),
        Jsonb(&r.events),
        Jsonb(&r.links),
    );
    copy.write(&[
        &s.tenant,
        &trace_id,
        &span_id,
        &parent,
        &r.service,
        &r.name,
        &r.kind,
        &s.start,
        &s.duration_ns,
        &r.status_code,
        &r.status_message,
        &r.scope_name,
        &attributes,
        &resource,
        &events,
        &links,
        &s.received_at,
    ])
    .await
}

async fn write_call(
    copy: Pin<&mut BinaryCopyInWriter>,
    c: &CallRecord,
) -> Result<(), tokio_postgres::Error> {
    let (trace_id, span_id): (&[u8], &[u8]) = (&c.trace_id, &c.span_id);
    copy.write(&[
        &c.tenant,
        &trace_id,
        &span_id,
        &c.start,
        &c.service,
        &c.environment,
        &c.provider,
        &c.model,
        &c.request_model,
        &c.operation,
        &c.duration_ms,
        &c.is_error,
        &c.input_tokens,
        &c.output_tokens,
        &c.cache_read_tokens,
        &c.cache_write_tokens,
        &c.reasoning_tokens,
        &c.cost_usd,
        &c.computed_cost_usd,
        &c.client_cost_usd,
        &c.time_to_first_token_ms,
        &c.finish_reasons,
        &c.user_id,
        &c.session_id,
        &c.agent,
        &c.tool,
        &c.prompt,
        &c.completion,
        &c.latency_bucket,
        &c.ttft_bucket,
    ])
    .await
}
