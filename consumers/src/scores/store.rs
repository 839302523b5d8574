//! Writing scores to the `scores` table: the upsert both ways in share (the
//! `scores` topic's messages, and the evaluation events of spans in the
//! spans' own transaction).
//!
//! What it guarantees: last write wins by the score's time, whatever order
//! the writes arrive in. A batch holds each (tenant, id) once ([`Batch`]
//! keeps the winner: the later time, then a delete over an upsert), and
//! the upsert replaces a stored row only with a later one. A delete leaves
//! a row marked deleted (its other columns kept), so an older upsert read
//! again after it changes nothing.

use observatory_schemas::kafka::parse_hex;
use observatory_schemas::scores::{Score, ScoreMessage};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Transaction;

/// The upsert. The target trace's user and session are read from
/// `trace_summaries` as it is now (the spans' transaction has merged its
/// summaries before).
pub const UPSERT: &str = "
INSERT INTO scores AS s (tenant, id, trace_id, span_id, session_id, name, data_type, value, label,
    comment, source, author, time, time_ns, metadata, deleted, trace_user, session_key)
SELECT d.tenant, d.id, d.trace_id, d.span_id, d.session_id, d.name, d.data_type, d.value, d.label,
       d.comment, d.source, d.author, d.time, d.time_ns, d.metadata::jsonb, d.deleted, t.user_id,
       coalesce(d.session_id, t.session_id)
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::text[], $7::text[],
            $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[],
            $14::int8[], $15::text[], $16::bool[])
  AS d(tenant, id, trace_id, span_id, session_id, name, data_type, value, label, comment, source,
       author, time, time_ns, metadata, deleted)
LEFT JOIN trace_summaries t ON t.tenant = d.tenant AND t.trace_id = d.trace_id
ORDER BY d.tenant, d.id
ON CONFLICT (tenant, id) DO UPDATE SET
    trace_id = CASE WHEN EXCLUDED.deleted THEN s.trace_id ELSE EXCLUDED.trace_id END,
    span_id = CASE WHEN EXCLUDED.deleted THEN s.span_id ELSE EXCLUDED.span_id END,
    session_id = CASE WHEN EXCLUDED.deleted THEN s.session_id ELSE EXCLUDED.session_id END,
    name = CASE WHEN EXCLUDED.deleted THEN s.name ELSE EXCLUDED.name END,
    data_type = CASE WHEN EXCLUDED.deleted THEN s.data_type ELSE EXCLUDED.data_type END,
    value = CASE WHEN EXCLUDED.deleted THEN s.value ELSE EXCLUDED.value END,
    label = CASE WHEN EXCLUDED.deleted THEN s.label ELSE EXCLUDED.label END,
    comment = CASE WHEN EXCLUDED.deleted THEN s.comment ELSE EXCLUDED.comment END,
    source = CASE WHEN EXCLUDED.deleted THEN s.source ELSE EXCLUDED.source END,
    author = CASE WHEN EXCLUDED.deleted THEN s.author ELSE EXCLUDED.author END,
    metadata = CASE WHEN EXCLUDED.deleted THEN s.metadata ELSE EXCLUDED.metadata END,
    trace_user = CASE WHEN EXCLUDED.deleted THEN s.trace_user ELSE EXCLUDED.trace_user END,
    session_key = CASE WHEN EXCLUDED.deleted THEN s.session_key ELSE EXCLUDED.session_key END,
    time = EXCLUDED.time,
    time_ns = EXCLUDED.time_ns,
    deleted = EXCLUDED.deleted
WHERE (EXCLUDED.time_ns, EXCLUDED.deleted) > (s.time_ns, s.deleted)";

/// One write of a score: an upsert, or a delete (a row with only its key
/// and time, `deleted` set).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreWrite {
    /// Tenant.
    pub tenant: String,
    /// Id.
    pub id: String,
    /// The score, `None` for a delete.
    pub score: Option<Score>,
    /// Its time, ns since the epoch.
    pub time_ns: u64,
}

impl ScoreWrite {
    /// The write a topic message asks for.
    pub fn of(message: ScoreMessage) -> ScoreWrite {
        match message {
            ScoreMessage::Upsert { score } => ScoreWrite {
                tenant: score.tenant.clone(),
                id: score.id.clone(),
                time_ns: score.time_unix_nano,
                score: Some(score),
            },
            ScoreMessage::Delete {
                tenant,
                id,
                time_unix_nano,
                ..
            } => ScoreWrite {
                tenant,
                id,
                score: None,
                time_ns: time_unix_nano,
            },
        }
    }

    /// Which of two writes of one id wins: the later, then the delete.
    fn rank(&self) -> (u64, bool) {
        (self.time_ns, self.score.is_none())
    }
}

/// The writes of a batch, each (tenant, id) once: the winner.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    writes: BTreeMap<(&'a str, &'a str), &'a ScoreWrite>,
}

impl<'a> Batch<'a> {
    /// Adds a write; of two writes of one id the winner stays.
    pub fn add(&mut self, write: &'a ScoreWrite) {
        self.writes
            .entry((&write.tenant, &write.id))
            .and_modify(|have| {
                if write.rank() > have.rank() {
                    *have = write;
                }
            })
            .or_insert(write);
    }

    /// How many distinct scores.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Upserts the batch in `tx`; returns the rows changed (a write older
    /// than the stored one changes none).
    pub async fn upsert(&self, tx: &Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
        if self.writes.is_empty() {
            return Ok(0);
        }
        let c = Columns::of(self.writes.values().copied());
        tx.execute(
            UPSERT,
            &[
                &c.tenant,
                &c.id,
                &c.trace_id,
                &c.span_id,
                &c.session_id,
                &c.name,
                &c.data_type,
                &c.value,
                &c.label,
                &c.comment,
                &c.source,
                &c.author,
                &c.time,
                &c.time_ns,
                &c.metadata,
                &c.deleted,
            ],
        )
        .await
    }
}

/// The parameters of [`UPSERT`], in its order.
#[derive(Debug, Default)]
struct Columns<'a> {
    tenant: Vec<&'a str>,
    id: Vec<&'a str>,
    trace_id: Vec<Option<Vec<u8>>>,
    span_id: Vec<Option<Vec<u8>>>,
    session_id: Vec<Option<&'a str>>,
    name: Vec<&'a str>,
    data_type: Vec<&'a str>,
    value: Vec<Option<f64>>,
    label: Vec<Option<&'a str>>,
    comment: Vec<Option<&'a str>>,
    source: Vec<&'a str>,
    author: Vec<Option<&'a str>>,
    time: Vec<SystemTime>,
    time_ns: Vec<i64>,
    metadata: Vec<String>,
    deleted: Vec<bool>,
}

impl<'a> Columns<'a> {
    fn of(writes: impl Iterator<Item = &'a ScoreWrite>) -> Columns<'a> {
        let mut c = Columns::default();
        for w in writes {
            c.tenant.push(&w.tenant);
            c.id.push(&w.id);
            c.time
                .push(UNIX_EPOCH + Duration::from_nanos(w.time_ns / 1000 * 1000));
            c.time_ns.push(w.time_ns.min(i64::MAX as u64) as i64);
            c.deleted.push(w.score.is_none());
            match &w.score {
                Some(s) => {
                    let hex = |h: &Option<String>| h.as_deref().and_then(parse_hex);
                    c.trace_id.push(hex(&s.trace_id));
                    c.span_id.push(hex(&s.span_id));
                    c.session_id.push(s.session_id.as_deref());
                    c.name.push(&s.name);
                    c.data_type.push(s.data_type.as_str());
                    c.value.push(s.value);
                    c.label.push(s.label.as_deref());
                    c.comment.push(s.comment.as_deref());
                    c.source.push(s.source.as_str());
                    c.author.push(s.author.as_deref());
                    c.metadata.push(
                        serde_json::to_string(&s.metadata).unwrap_or_else(|_| "{}".to_owned()),
                    );
                }
                None => {
                    c.trace_id.push(None);
                    c.span_id.push(None);
                    c.session_id.push(None);
                    c.name.push("");
                    c.data_type.push("");
                    c.value.push(None);
                    c.label.push(None);
                    c.comment.push(None);
                    c.source.push("");
                    c.author.push(None);
                    c.metadata.push("{}".to_owned());
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::scores::{DataType, Source};

    fn write(id: &str, time_ns: u64, delete: bool) -> ScoreWrite {
        let score = Score {
            id: id.into(),
            tenant: "t".into(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            session_id: None,
            name: "helpfulness".into(),
            data_type: DataType::Numeric,
            value: Some(time_ns as f64),
            label: None,
            comment: None,
            source: Source::Api,
            author: None,
            time_unix_nano: time_ns,
            metadata: serde_json::Map::new(),
        };
        ScoreWrite::of(if delete {
            ScoreMessage::Delete {
                tenant: "t".into(),
                id: id.into(),
                trace_id: None,
                time_unix_nano: time_ns,
            }
        } else {
            ScoreMessage::Upsert { score }
        })
    }

    #[test]
    fn a_batch_keeps_the_later_write_then_the_delete() {
        let writes = [
            write("a", 2, false),
            write("a", 1, false),
            write("b", 5, false),
            write("b", 5, true),
            write("c", 7, true),
            write("c", 8, false),
        ];
        for order in [writes.to_vec(), writes.iter().rev().cloned().collect()] {
            let mut batch = Batch::default();
            for w in &order {
                batch.add(w);
            }
            assert_eq!(batch.len(), 3);
            let kept: Vec<(u64, bool)> = batch.writes.values().map(|w| w.rank()).collect();
            assert_eq!(kept, [(2, false), (5, true), (8, false)]);
            let c = Columns::of(batch.writes.values().copied());
            assert_eq!(c.deleted, [false, true, false]);
            assert_eq!(c.trace_id[0].as_ref().map(Vec::len), Some(16));
        }
    }
}
