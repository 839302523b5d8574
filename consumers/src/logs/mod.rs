//! The logs sink: reads `otlp_logs` in its own consumer group
//! (`KAFKA_GROUP_ID` with `-logs`) and writes `logs`, and the scores of
//! `gen_ai.evaluation.result` records. It runs in `observatory-consumer
//! timescale` when `SIGNALS` names `logs`, alone or beside the other loops,
//! with its own offsets, lag and dead letters (`otlp_logs.dlq`).
//!
//! Delivery: as for every sink ([`crate::source`]): a batch is one
//! PostgreSQL transaction (records and scores), committed before its
//! offsets. A record's key is (tenant, time, hash of the record as sent),
//! and scores are upserts that keep the later write, so a crash, a
//! re-delivery or a replay stores nothing twice.
//!
//! GenAI content events (`gen_ai.client.inference.operation.details`,
//! `gen_ai.user.message`, `gen_ai.choice`, ...) are stored as records; the
//! API joins them to their span's LLM call when it reads the trace, so the
//! call shows the same messages whichever arrived first.
//!
//! Files: [`rows`] turns a message into rows and scores (content policy
//! included); this file writes them.

pub mod rows;

use crate::config::Db;
use crate::metrics::{Metrics, ReasonLabels, SinkLabels, TableLabels};
use crate::scores::store::Batch as ScoreBatch;
use crate::source::{self, Assignment, InMessage, Sink, WriteError};
use crate::timescale::copy::{copy_once, Encoded, Jsonb};
use crate::timescale::partitions::Partitions;
use crate::timescale::writer::{classify, classify_copy, Writer};
use crate::timescale::FastHash;
use postgres_types::Type;
use rows::{LogRow, Prepared, Preparer};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "logs";

const COLUMNS: &str =
    "tenant, time, record_id, observed_time, trace_id, span_id, severity_number, \
    severity_text, service, event_name, scope_name, body, attributes, resource_id, flags";
const TYPES: [Type; 15] = [
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::JSONB,
    Type::INT8,
    Type::INT4,
];

/// The sink: log messages to rows.
pub struct LogsSink {
    writer: Writer,
    preparer: Preparer,
    metrics: Arc<Metrics>,
    /// Resources known stored (committed), ids by tenant.
    resources: HashMap<String, HashSet<i64, FastHash>, FastHash>,
    direct: bool,
}

impl LogsSink {
    /// A sink writing to `db` (migrated already); `native_partitions` on
    /// plain PostgreSQL.
    pub fn new(
        db: Db,
        native_partitions: bool,
        preparer: Preparer,
        metrics: Arc<Metrics>,
    ) -> LogsSink {
        LogsSink {
            writer: Writer::new(db, native_partitions),
            preparer,
            metrics,
            resources: HashMap::default(),
            direct: true,
        }
    }
}

fn timestamp(ns: i64) -> std::time::SystemTime {
    crate::otel_metrics::store::timestamp(ns)
}

impl Sink for LogsSink {
    type Item = Prepared;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<Prepared, String> {
        self.preparer.prepare(message)
    }

    async fn write(
        &mut self,
        items: &[&Prepared],
        _owned: &Assignment,
    ) -> Result<source::Rejected, WriteError> {
        let rows: Vec<&LogRow> = items.iter().flat_map(|p| &p.rows).collect();
        let days: BTreeSet<i64> = rows
            .iter()
            .map(|r| Partitions::day_of(timestamp(r.time)))
            .collect();
        let new_resources: BTreeMap<(&str, i64), &str> = rows
            .iter()
            .filter(|r| {
                !self
                    .resources
                    .get(&r.tenant)
                    .is_some_and(|ids| ids.contains(&r.resource_id))
            })
            .map(|r| ((r.tenant.as_str(), r.resource_id), r.resource.as_str()))
            .collect();
        let mut encoded = Encoded::new(&TYPES);
        for r in &rows {
            encoded
                .push(&[
                    &r.tenant,
                    &timestamp(r.time),
                    &r.record_id,
                    &r.observed_time.map(timestamp),
                    &r.trace_id.as_ref().map(|t| &t[..]),
                    &r.span_id.as_ref().map(|s| &s[..]),
                    &r.severity_number,
                    &r.severity_text,
                    &r.service,
                    &r.event_name,
                    &r.scope_name,
                    &r.body.as_deref().map(Jsonb),
                    &Jsonb(&r.attributes),
                    &r.resource_id,
                    &r.flags,
                ])
                .map_err(classify_copy)?;
        }
        let mut scores = ScoreBatch::default();
        for item in items {
            for score in &item.scores {
                scores.add(score);
            }
        }
        let result = async {
            self.writer
                .ensure_partitions(&days)
                .await
                .map_err(classify)?;
            let client = self.writer.client().await.map_err(classify)?;
            let mut tx = client.transaction().await.map_err(classify)?;
            if !new_resources.is_empty() {
                let resources: Vec<(&str, i64, &str)> = new_resources
                    .iter()
                    .map(|((t, i), a)| (*t, *i, *a))
                    .collect();
                crate::timescale::writer::insert_resources(&tx, &resources)
                    .await
                    .map_err(classify)?;
            }
            let inserted = copy_once(&mut tx, "logs", COLUMNS, &encoded, &mut self.direct)
                .await
                .map_err(classify_copy)?;
            let scored = scores.upsert(&tx).await.map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            Ok::<_, WriteError>((inserted, scored))
        }
        .await;
        let (inserted, scored) = match result {
            Ok(done) => done,
            Err(e) => {
                self.writer.forget_closed();
                self.direct = true;
                return Err(e);
            }
        };
        if self.resources.values().map(HashSet::len).sum::<usize>() > 100_000 {
            self.resources.clear(); // a bound on memory; sent again, harmlessly
        }
        for (tenant, id) in new_resources.keys() {
            self.resources
                .entry((*tenant).to_owned())
                .or_default()
                .insert(*id);
        }
        let m = &self.metrics;
        let table = |table| TableLabels { sink: NAME, table };
        m.rows_written
            .get_or_create(&table("logs"))
            .inc_by(inserted);
        m.rows_duplicate
            .get_or_create(&table("logs"))
            .inc_by(rows.len() as u64 - inserted);
        m.rows_written
            .get_or_create(&table("scores"))
            .inc_by(scored);
        let reason = |reason| ReasonLabels { sink: NAME, reason };
        for item in items {
            for (why, n) in &item.dropped {
                m.items_dropped.get_or_create(&reason(why)).inc_by(*n);
            }
            m.items_flagged
                .get_or_create(&reason("body_truncated"))
                .inc_by(item.truncated);
            m.invalid_evaluations
                .get_or_create(&SinkLabels { sink: NAME })
                .inc_by(item.invalid_scores);
        }
        Ok(Vec::new())
    }
}
