//! Writing batches to PostgreSQL, one transaction per batch: the rows, then
//! the rollup increments of **only the calls that were new**.
//!
//! Two ways in, same result:
//! - *direct* (the common case: data never seen): binary COPY straight into
//!   `spans` inside a savepoint. A span already stored fails the COPY on its
//!   primary key (unique violation); the savepoint is rolled back and the
//!   batch takes the staged way.
//! - *staged* (re-delivery, replay): binary COPY into a temporary staging
//!   table, then `INSERT ... ON CONFLICT DO NOTHING RETURNING` the keys of
//!   the spans it added. The writer stays staged while batches keep holding
//!   known spans and goes back to direct after a batch that held none.
//!
//! Either way the calls of exactly the new spans are then copied into
//! `llm_calls`, which has no unique index of its own: a call is stored only
//! with its span, in one transaction, so the spans' key keeps both
//! exactly-once (migration 6).
//!
//! Either way the rollups, per minute and per hour, get exactly the calls
//! inserted (`rollups.rs`), and the trace summaries exactly the spans and
//! calls inserted (`summaries.rs`), so re-delivery and replays count
//! nothing twice.
//! A row repeated inside one batch (a client's retry of a request whose
//! first copy was delivered too, both read in one batch) is written once:
//! [`Rows::dedup`] keeps the first copy of each key before anything is
//! written, so the rollups see the call once.
//! The transaction commits before the consumer commits any offset
//! (`source.rs`).

use super::activity::{self, Activity};
use super::copy::{CopyError, CopyRows, Jsonb};
use super::partitions::Partitions;
use super::rollups::{Resolution, Rollups};
use super::rows::{CallRecord, Prepared, SpanRecord};
use super::summaries::{self, Summaries};
use super::FastHash;
use crate::config::Db;
use crate::scores::store::{Batch as ScoreBatch, ScoreWrite};
use crate::source::WriteError;
use postgres_types::Type;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use std::time::SystemTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};
use tracing::warn;

/// The resource is stored once per tenant (`resources`), the span holds its id.
const SPAN_COLUMNS: &str =
    "tenant, trace_id, span_id, parent_span_id, service, name, kind, start_time, duration_ns, \
    status_code, status_message, scope_name, attributes, resource_id, events, links, received_at";
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
    Type::INT8,
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
    "CREATE TEMP TABLE IF NOT EXISTS stage_spans (LIKE spans) ON COMMIT DELETE ROWS;";

/// Column lists are explicit so that a migration adding columns does not
/// break a running sink whose staging tables are older. Says which spans
/// were new.
fn insert_spans() -> String {
    format!(
        "INSERT INTO spans ({SPAN_COLUMNS}) SELECT {SPAN_COLUMNS} FROM stage_spans ON CONFLICT DO NOTHING \
        RETURNING tenant, trace_id, span_id"
    )
}

/// The rows of a batch, each key once.
#[derive(Debug, Default)]
pub struct Rows<'a> {
    /// Spans.
    pub spans: Vec<&'a SpanRecord>,
    /// LLM calls.
    pub calls: Vec<&'a CallRecord>,
    /// Scores of evaluation events.
    pub scores: Vec<&'a ScoreWrite>,
    /// Spans left out because the batch held them already.
    pub repeated_spans: u64,
    /// Calls left out because the batch held them already.
    pub repeated_calls: u64,
}

/// A row's primary key: (tenant, trace id, span id, start).
type Key<'a> = (&'a str, [u8; 16], [u8; 8], SystemTime);

impl<'a> Rows<'a> {
    /// The rows of `batch`, the first copy of each key only.
    pub fn dedup(batch: &[&'a Prepared]) -> Rows<'a> {
        let spans_n: usize = batch.iter().map(|p| p.spans.len()).sum();
        let calls_n: usize = batch.iter().map(|p| p.calls.len()).sum();
        let mut seen: HashSet<Key<'a>, FastHash> =
            HashSet::with_capacity_and_hasher(spans_n, FastHash::default());
        let spans: Vec<&SpanRecord> = batch
            .iter()
            .flat_map(|p| &p.spans)
            .filter(|s| seen.insert((&s.tenant, s.row.trace_id, s.row.span_id, s.start)))
            .collect();
        seen.clear();
        let calls: Vec<&CallRecord> = batch
            .iter()
            .flat_map(|p| &p.calls)
            .filter(|c| seen.insert((&c.tenant, c.trace_id, c.span_id, c.start)))
            .collect();
        Rows {
            scores: batch.iter().flat_map(|p| &p.scores).collect(),
            repeated_spans: (spans_n - spans.len()) as u64,
            repeated_calls: (calls_n - calls.len()) as u64,
            spans,
            calls,
        }
    }

    /// Splits the rows into at most `n` parts, for `n` connections, by
    /// trace: every trace is in one part only, so no two transactions of
    /// one batch update the same trace summary (trace ids are random, so
    /// the parts are about the same size).
    pub fn split(&self, n: usize) -> Vec<Rows<'a>> {
        let n = n.max(1);
        let part = |trace_id: &[u8; 16]| trace_id[15] as usize % n;
        let mut out: Vec<Rows<'a>> = (0..n).map(|_| Rows::default()).collect();
        for span in &self.spans {
            out[part(&span.row.trace_id)].spans.push(span);
        }
        for call in &self.calls {
            out[part(&call.trace_id)].calls.push(call);
        }
        for score in &self.scores {
            // The last byte of the trace id, as for its spans.
            let last = score
                .score
                .as_ref()
                .and_then(|s| s.trace_id.as_deref())
                .and_then(|t| u8::from_str_radix(t.get(30..32)?, 16).ok())
                .unwrap_or(0);
            out[last as usize % n].scores.push(score);
        }
        out.retain(|r| !r.spans.is_empty() || !r.calls.is_empty() || !r.scores.is_empty());
        out
    }
}

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
    /// Scores of evaluation events stored or replaced.
    pub scores: u64,
}

/// Sorts PostgreSQL errors into "retry later", "too much at once" and
/// "never".
///
/// Permanent: what the data itself causes (data exceptions 22, integrity
/// violations 23, program limits 54, unsupported features 0A such as writing
/// into a compressed TimescaleDB chunk). Too large: the server ran out of
/// memory or of lock slots for this transaction (53200 `out_of_memory`,
/// whose "out of shared memory" means `max_locks_per_transaction`, and 53400
/// `configuration_limit_exceeded`): the same batch would fail again, so it
/// is written in halves. Everything else (connection loss, a full disk
/// 53100, too many connections 53300, serialization failures, a missing
/// table after a bad deployment) is retried: an operator's mistake stalls
/// the sink and shows in its metrics rather than sending every message to
/// the DLQ.
pub fn classify(error: tokio_postgres::Error) -> WriteError {
    match error.code().map(|c| c.code()) {
        Some(code)
            if ["22", "23", "54", "0A"]
                .iter()
                .any(|class| code.starts_with(class)) =>
        {
            WriteError::Permanent(describe(&error))
        }
        Some("53200" | "53400") => WriteError::TooLarge(describe(&error)),
        _ => WriteError::Transient(describe(&error)),
    }
}

/// [`classify`] for a COPY's error: a value that does not encode is permanent.
pub fn classify_copy(error: CopyError) -> WriteError {
    match error {
        CopyError::Db(e) => classify(e),
        e @ CopyError::Encode { .. } => WriteError::Permanent(e.to_string()),
    }
}

/// The error as the DLQ's `dlq-reason` and the logs show it: for a server
/// error its severity, message and SQLSTATE (tokio-postgres alone says only
/// "db error"). Not its detail, which can quote the row (prompts, users).
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "db error: {}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => error.to_string(),
    }
}

/// One connection and what it knows.
pub struct Writer {
    db: Db,
    client: Option<Client>,
    partitions: Partitions,
    native_partitions: bool,
    /// The staging tables exist in this session.
    stage_tables: bool,
    /// The next batch tries the direct way.
    direct: bool,
    /// Resources known stored (committed), ids by tenant: not sent again.
    resources: HashMap<String, HashSet<i64, FastHash>, FastHash>,
}

impl Writer {
    /// A writer that connects on first use. With `native_partitions` it
    /// creates the daily partitions its rows need (plain PostgreSQL);
    /// TimescaleDB makes its chunks itself.
    pub fn new(db: Db, native_partitions: bool) -> Writer {
        Writer {
            db,
            client: None,
            partitions: Partitions::default(),
            native_partitions,
            stage_tables: false,
            direct: true,
            resources: HashMap::default(),
        }
    }

    /// Connects (once) with the session settings the writer relies on.
    pub async fn client(&mut self) -> Result<&mut Client, tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config = self.db.config.clone();
            // A dead server or a half-open connection must fail, not hang.
            config
                .connect_timeout(Duration::from_secs(10))
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(30))
                .tcp_user_timeout(Duration::from_secs(60));
            let (client, connection) = config.connect(self.db.tls.clone()).await?;
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
            self.stage_tables = false;
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

    /// Forgets a closed connection: the next use opens a new one.
    pub fn forget_closed(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
    }

    /// Writes `rows` in one transaction.
    pub async fn write(&mut self, rows: &Rows<'_>) -> Result<Written, WriteError> {
        let result = self.write_inner(rows).await;
        if result.is_err() {
            // Forget cached state: the next attempt starts from a fresh look.
            self.partitions = Partitions::default();
            if self.client.as_ref().is_some_and(Client::is_closed) {
                self.client = None;
            }
        }
        result.map_err(classify_copy)
    }

    async fn write_inner(&mut self, rows: &Rows<'_>) -> Result<Written, CopyError> {
        let days: BTreeSet<i64> = rows
            .spans
            .iter()
            .map(|s| Partitions::day_of(s.start))
            .chain(rows.calls.iter().map(|c| Partitions::day_of(c.start)))
            .collect();
        self.ensure_partitions(&days).await?;
        self.client().await?; // (re)connects, which resets `stage_tables`
        let client = self.client.as_mut().expect("connected above");
        let mut written = Written {
            spans: rows.spans.len() as u64,
            calls: rows.calls.len() as u64,
            ..Written::default()
        };
        let mut tx = client.transaction().await?;

        // Resources first, each new one once (sorted: writers lock them in
        // the same order), remembered only once the transaction commits.
        let mut new_resources: Vec<(&str, i64, &str)> = rows
            .spans
            .iter()
            .filter(|s| {
                !self
                    .resources
                    .get(&s.tenant)
                    .is_some_and(|ids| ids.contains(&s.resource_id))
            })
            .map(|s| (s.tenant.as_str(), s.resource_id, s.row.resource.as_str()))
            .collect();
        new_resources.sort_unstable_by_key(|r| (r.0, r.1));
        new_resources.dedup_by_key(|r| (r.0, r.1));
        if !new_resources.is_empty() {
            insert_resources(&tx, &new_resources).await?;
        }

        let mut new_spans: Option<Vec<&SpanRecord>> = None;
        if self.direct {
            let direct = tx.savepoint("direct").await?;
            match copy_spans(&direct, "spans", &rows.spans).await {
                Ok(()) => {
                    direct.commit().await?;
                    new_spans = Some(rows.spans.clone());
                }
                Err(CopyError::Db(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    direct.rollback().await?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        let (new_spans, inserted) = match new_spans {
            Some(all) => (all, rows.calls.clone()),
            None => {
                if !self.stage_tables {
                    tx.batch_execute(STAGE_TABLES).await?;
                    self.stage_tables = true;
                }
                copy_spans(&tx, "stage_spans", &rows.spans).await?;
                let new = NewSpans::of(&tx.query(&insert_spans(), &[]).await?);
                let new_spans: Vec<&SpanRecord> = rows
                    .spans
                    .iter()
                    .copied()
                    .filter(|s| new.has(&s.tenant, &s.row.trace_id, &s.row.span_id))
                    .collect();
                // The calls of the new spans only (a call's key is its span's).
                let new_calls: Vec<&CallRecord> = rows
                    .calls
                    .iter()
                    .copied()
                    .filter(|c| new.has(&c.tenant, &c.trace_id, &c.span_id))
                    .collect();
                // A batch of nothing but new spans: the next one tries direct.
                self.direct = new_spans.len() == rows.spans.len();
                (new_spans, new_calls)
            }
        };
        written.spans_inserted = new_spans.len() as u64;
        copy_calls(&tx, &inserted).await?;
        written.calls_inserted = inserted.len() as u64;

        // Summaries first: every writer locks trace summary rows, then
        // rollup rows, each in key order.
        upsert_summaries(
            &tx,
            &Summaries::of(new_spans.iter().copied(), inserted.iter().copied()),
        )
        .await?;

        // Then sessions, users and their days, each in key order.
        let activity = Activity::of(inserted.iter().copied());
        add_activity(&tx, &activity).await?;

        // Then scores, in key order (as the scores sink locks them).
        let mut scores = ScoreBatch::default();
        for score in &rows.scores {
            scores.add(score);
        }
        written.scores = scores.upsert(&tx).await?;

        // Minutes then hours, every writer in this order (see `rollups.rs`).
        for resolution in Resolution::ALL {
            add_rollups(
                &tx,
                &Rollups::of(inserted.iter().copied(), resolution),
                resolution,
            )
            .await?;
        }
        tx.commit().await?;
        if self.resources.values().map(HashSet::len).sum::<usize>() > 100_000 {
            self.resources.clear(); // a bound on memory; they are sent again, harmlessly
        }
        for (tenant, id, _) in new_resources {
            self.resources
                .entry(tenant.to_owned())
                .or_default()
                .insert(id);
        }
        Ok(written)
    }
}

/// Stores resources `(tenant, id, attributes JSON)` not stored yet, in
/// key order (every writer locks them in the same order).
pub async fn insert_resources(
    tx: &Transaction<'_>,
    resources: &[(&str, i64, &str)],
) -> Result<(), tokio_postgres::Error> {
    let tenants: Vec<&str> = resources.iter().map(|r| r.0).collect();
    let ids: Vec<i64> = resources.iter().map(|r| r.1).collect();
    let json: Vec<&str> = resources.iter().map(|r| r.2).collect();
    tx.execute(
        "INSERT INTO resources (tenant, id, attributes)
         SELECT t, i, a::jsonb FROM unnest($1::text[], $2::int8[], $3::text[]) AS r(t, i, a)
         ORDER BY t, i
         ON CONFLICT DO NOTHING",
        &[&tenants, &ids, &json],
    )
    .await?;
    Ok(())
}

/// Adds what `activity` holds to the sessions and users tables.
async fn add_activity(
    tx: &Transaction<'_>,
    activity: &Activity<'_>,
) -> Result<(), tokio_postgres::Error> {
    if activity.has_sessions() {
        let c = activity.session_columns();
        let t = &c.totals;
        tx.execute(
            activity::SESSIONS_UPSERT,
            &[
                &c.pair_tenant,
                &c.pair_session,
                &c.pair_trace,
                &c.pair_start,
                &c.tenant,
                &c.session,
                &c.first,
                &c.last,
                &t.calls,
                &t.errors,
                &t.input,
                &t.output,
                &t.cost,
                &c.users,
                &c.services,
                &c.models,
            ],
        )
        .await?;
    }
    if activity.has_users() {
        let c = activity.user_columns();
        let t = &c.totals;
        tx.execute(
            activity::USERS_UPSERT,
            &[
                &c.pair_tenant,
                &c.pair_user,
                &c.pair_session,
                &c.pair_first,
                &c.tenant,
                &c.user,
                &c.first,
                &c.last,
                &t.calls,
                &t.errors,
                &t.input,
                &t.output,
                &t.cost,
                &c.duration_ms,
                &c.latency,
            ],
        )
        .await?;
        let c = activity.user_day_columns();
        let t = &c.totals;
        tx.execute(
            activity::USER_DAYS_UPSERT,
            &[
                &c.tenant, &c.user, &c.day, &c.model, &t.calls, &t.errors, &t.input, &t.output,
                &t.cost,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Merges `summaries` into `trace_summaries`.
async fn upsert_summaries(
    tx: &Transaction<'_>,
    summaries: &Summaries<'_>,
) -> Result<(), tokio_postgres::Error> {
    if summaries.is_empty() {
        return Ok(());
    }
    let c = summaries.columns();
    let [input, output, cache_read, cache_write, reasoning] = &c.tokens;
    tx.execute(
        summaries::UPSERT,
        &[
            &c.tenant,
            &c.trace_id,
            &c.start,
            &c.end,
            &c.root_service,
            &c.root_name,
            &c.root_parented,
            &c.root_start,
            &c.span_count,
            &c.statuses,
            &c.llm_calls,
            input,
            output,
            cache_read,
            cache_write,
            reasoning,
            &c.cost_usd,
            &c.services,
            &c.models,
            &c.providers,
            &c.environments,
            &c.user_id,
            &c.user_at,
            &c.session_id,
            &c.session_at,
        ],
    )
    .await?;
    Ok(())
}

/// Adds the increments of `rollups` to the two tables of `resolution`.
async fn add_rollups(
    tx: &Transaction<'_>,
    rollups: &Rollups<'_>,
    resolution: Resolution,
) -> Result<(), tokio_postgres::Error> {
    if rollups.is_empty() {
        return Ok(());
    }
    let r = rollups.rollup_columns();
    let g = &r.group;
    let [calls, errors, input, output, cache_read, cache_write, reasoning, unpriced] = &r.counts;
    tx.execute(
        resolution.upsert_rollup(),
        &[
            &g.tenant,
            &g.bucket,
            &g.service,
            &g.provider,
            &g.model,
            &g.environment,
            calls,
            errors,
            input,
            output,
            cache_read,
            cache_write,
            reasoning,
            unpriced,
            &r.cost_usd,
            &r.duration_ms_sum,
        ],
    )
    .await?;
    let l = rollups.latency_columns();
    let g = &l.group;
    tx.execute(
        resolution.upsert_latency(),
        &[
            &g.tenant,
            &g.bucket,
            &g.service,
            &g.provider,
            &g.model,
            &g.environment,
            &l.metric,
            &l.le,
            &l.count,
        ],
    )
    .await?;
    Ok(())
}

/// COPYs `spans` into the table named (`spans` or its staging table).
async fn copy_spans(
    tx: &Transaction<'_>,
    table: &str,
    spans: &[&SpanRecord],
) -> Result<(), CopyError> {
    let statement = format!("COPY {table} ({SPAN_COLUMNS}) FROM STDIN (FORMAT binary)");
    let mut copy = CopyRows::start(tx, &statement, &SPAN_TYPES).await?;
    for span in spans {
        write_span(&mut copy, span).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// COPYs `calls`, each of a span this transaction inserted, into `llm_calls`.
async fn copy_calls(tx: &Transaction<'_>, calls: &[&CallRecord]) -> Result<(), CopyError> {
    if calls.is_empty() {
        return Ok(());
    }
    let statement = format!("COPY llm_calls ({CALL_COLUMNS}) FROM STDIN (FORMAT binary)");
    let mut copy = CopyRows::start(tx, &statement, &CALL_TYPES).await?;
    for call in calls {
        write_call(&mut copy, call).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// The spans the staged insert added, by tenant, keyed by trace id and span
/// id together (looked up without allocating).
struct NewSpans(HashMap<String, HashSet<Vec<u8>, FastHash>, FastHash>);

impl NewSpans {
    /// From the insert's `RETURNING tenant, trace_id, span_id`.
    fn of(rows: &[tokio_postgres::Row]) -> NewSpans {
        let mut by_tenant: HashMap<String, HashSet<Vec<u8>, FastHash>, FastHash> =
            HashMap::default();
        for r in rows {
            let (tenant, trace, span): (&str, &[u8], &[u8]) = (r.get(0), r.get(1), r.get(2));
            by_tenant
                .entry(tenant.to_owned())
                .or_default()
                .insert([trace, span].concat());
        }
        NewSpans(by_tenant)
    }

    fn has(&self, tenant: &str, trace: &[u8; 16], span: &[u8; 8]) -> bool {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(trace);
        key[16..].copy_from_slice(span);
        self.0
            .get(tenant)
            .is_some_and(|spans| spans.contains(&key[..]))
    }
}

async fn write_span(copy: &mut CopyRows<'_>, s: &SpanRecord) -> Result<(), CopyError> {
    let r = &s.row;
    let (trace_id, span_id): (&[u8], &[u8]) = (&r.trace_id, &r.span_id);
    let parent: Option<&[u8]> = r.parent_span_id.as_ref().map(|p| &p[..]);
    let (attributes, events, links) = (Jsonb(&r.attributes), Jsonb(&r.events), Jsonb(&r.links));
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
        &s.resource_id,
        &events,
        &links,
        &s.received_at,
    ])
    .await
}

async fn write_call(copy: &mut CopyRows<'_>, c: &CallRecord) -> Result<(), CopyError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::InMessage;
    use crate::timescale::rows::Preparer;
    use observatory_schemas::pricing::PriceBook;
    use observatory_schemas::testing::TraceGenerator;
    use prost::Message as _;

    fn prepared(payload: Vec<u8>) -> Prepared {
        let preparer = Preparer {
            policy: crate::redact::Policy::new(true, 4096, Vec::new(), Vec::new()),
            prices: PriceBook::builtin(),
            max_age: Duration::from_secs(86_400 * 30),
            max_future: Duration::from_secs(86_400),
            default_environment: String::new(),
        };
        preparer
            .prepare(&InMessage {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                key: None,
                payload: payload.into(),
                headers: Vec::new(),
            })
            .unwrap()
    }

    #[test]
    fn a_message_read_twice_in_one_batch_is_written_once() {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let request = TraceGenerator::new(7)
            .with_now_ns(now_ns)
            .request(200)
            .encode_to_vec();
        let (a, b) = (prepared(request.clone()), prepared(request));
        assert!(!a.calls.is_empty());
        let rows = Rows::dedup(&[&a, &b]);
        assert_eq!(rows.spans.len(), a.spans.len());
        assert_eq!(rows.calls.len(), a.calls.len());
        assert_eq!(rows.repeated_spans, a.spans.len() as u64);
        assert_eq!(rows.repeated_calls, a.calls.len() as u64);
        // Split over connections, each key is in one part only.
        let parts = rows.split(2);
        assert_eq!(parts.len(), 2);
        let spans: usize = parts.iter().map(|p| p.spans.len()).sum();
        let calls: usize = parts.iter().map(|p| p.calls.len()).sum();
        assert_eq!((spans, calls), (a.spans.len(), a.calls.len()));
        assert_eq!(Rows::default().split(3).len(), 0);
    }
}
