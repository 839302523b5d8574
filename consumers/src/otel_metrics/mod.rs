//! The metrics sink: reads `otlp_metrics` in its own consumer group
//! (`KAFKA_GROUP_ID` with `-metrics`) and writes `metric_series` and
//! `metric_points`. It runs in `observatory-consumer timescale` when
//! `SIGNALS` names `metrics`, alone or beside the traces and logs loops,
//! with its own offsets, lag and dead letters (`otlp_metrics.dlq`).
//!
//! Delivery: as for every sink ([`crate::source`]): a batch is one
//! PostgreSQL transaction, committed before its offsets. A point's key is
//! (series, time), and a series' id is a hash of what makes it one stream
//! ([`rows::series_id`]), so a crash, a re-delivery or a replay stores
//! nothing twice. Points that can never be stored are left out one by one
//! and counted by reason (`observatory_consumer_items_dropped`); a message
//! that cannot be read at all goes to the DLQ.
//!
//! Cumulative streams are stored as sent; readers turn them into
//! increases, treating a new start time or a value that goes down as a
//! restart. A value that goes down without a new start time is counted
//! (`items_flagged{reason="cumulative_reset"}`) when this process saw the
//! point before it.
//!
//! Files: [`rows`] turns a message into series and points, [`store`]
//! writes them.

pub mod rows;
pub mod store;

use crate::config::Db;
use crate::metrics::{Metrics, ReasonLabels, TableLabels};
use crate::source::{self, Assignment, InMessage, Sink, WriteError};
use crate::timescale::partitions::Partitions;
use crate::timescale::writer::{classify, classify_copy, Writer};
use crate::timescale::FastHash;
use rows::{Kind, Point, Prepared, Preparer, Series};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "metrics";

/// Series remembered per process (known stored, and their last values);
/// past it the maps are cleared, which costs one lookup per series again.
const REMEMBERED: usize = 1_000_000;

/// The sink: metric messages to series and points.
pub struct MetricsSink {
    writer: Writer,
    preparer: Preparer,
    metrics: Arc<Metrics>,
    max_series: i64,
    /// Series known stored, with the day their `last_seen` was last moved.
    known: HashMap<i64, i64, FastHash>,
    /// The last cumulative point of each series: (start, value or count, time).
    last: HashMap<i64, (Option<i64>, f64, i64), FastHash>,
    direct: bool,
}

impl MetricsSink {
    /// A sink writing to `db` (migrated already); `native_partitions` on
    /// plain PostgreSQL.
    pub fn new(
        db: Db,
        native_partitions: bool,
        preparer: Preparer,
        max_series: u32,
        metrics: Arc<Metrics>,
    ) -> MetricsSink {
        MetricsSink {
            writer: Writer::new(db, native_partitions),
            preparer,
            metrics,
            max_series: i64::from(max_series),
            known: HashMap::default(),
            last: HashMap::default(),
            direct: true,
        }
    }

    /// Counts the cumulative points that went down without a new start.
    fn count_resets(&mut self, series: &[&Series], points: &[(usize, &Point)]) -> u64 {
        if self.last.len() > REMEMBERED {
            self.last.clear();
        }
        let mut sorted: Vec<&(usize, &Point)> = points
            .iter()
            .filter(|(i, _)| {
                let s = series[*i];
                s.temporality == 2
                    && (s.monotonic
                        || matches!(s.kind, Kind::Histogram | Kind::ExponentialHistogram))
            })
            .collect();
        sorted.sort_by_key(|(i, p)| (series[*i].id, p.time));
        let mut resets = 0;
        for (i, p) in sorted {
            let Some(v) = p.value.or(p.count.map(|c| c as f64)) else {
                continue;
            };
            let id = series[*i].id;
            if let Some((start, before, time)) = self.last.get(&id) {
                if *time < p.time && *start == p.start_time && v < *before {
                    resets += 1;
                }
                if *time > p.time {
                    continue;
                }
            }
            self.last.insert(id, (p.start_time, v, p.time));
        }
        resets
    }
}

impl Sink for MetricsSink {
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
        let mut series: Vec<&Series> = Vec::new();
        let mut at: HashMap<i64, usize, FastHash> = HashMap::default();
        let mut points: Vec<(usize, &Point)> = Vec::new();
        for item in items {
            let map: Vec<usize> = item
                .series
                .iter()
                .map(|s| {
                    *at.entry(s.id).or_insert_with(|| {
                        series.push(s);
                        series.len() - 1
                    })
                })
                .collect();
            points.extend(item.points.iter().map(|p| (map[p.series], p)));
        }
        let days: BTreeSet<i64> = points
            .iter()
            .map(|(_, p)| Partitions::day_of(store::timestamp(p.time)))
            .collect();
        let today = Partitions::today();
        let stale: Vec<i64> = series
            .iter()
            .filter(|s| self.known.get(&s.id).is_some_and(|day| *day < today))
            .map(|s| s.id)
            .collect();
        let result = async {
            self.writer
                .ensure_partitions(&days)
                .await
                .map_err(classify)?;
            let client = self.writer.client().await.map_err(classify)?;
            let mut tx = client.transaction().await.map_err(classify)?;
            let (stored, created) = store::write(
                &mut tx,
                &series,
                &points,
                &self.known,
                self.max_series,
                &mut self.direct,
            )
            .await
            .map_err(classify_copy)?;
            store::touch(&tx, &stale, std::time::SystemTime::now())
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            Ok::<_, WriteError>((stored, created))
        }
        .await;
        let (stored, created) = match result {
            Ok(done) => done,
            Err(e) => {
                self.writer.forget_closed();
                self.direct = true;
                return Err(e);
            }
        };
        if self.known.len() > REMEMBERED {
            self.known.clear();
        }
        for id in created.into_iter().chain(stale) {
            self.known.insert(id, today);
        }
        // Series stored before this process saw them (their last_seen was
        // moved in the transaction).
        // Not those the cardinality limit refused: a refused series taken
        // as known would have its next points stored without a series.
        for s in series.iter().filter(|s| !stored.refused.contains(&s.id)) {
            self.known.entry(s.id).or_insert(today);
        }
        let resets = self.count_resets(&series, &points);
        let m = &self.metrics;
        let table = |table| TableLabels { sink: NAME, table };
        m.rows_written
            .get_or_create(&table("metric_points"))
            .inc_by(stored.points);
        m.rows_written
            .get_or_create(&table("metric_series"))
            .inc_by(stored.series);
        m.rows_duplicate
            .get_or_create(&table("metric_points"))
            .inc_by(stored.duplicates);
        let reason = |reason| ReasonLabels { sink: NAME, reason };
        m.items_dropped
            .get_or_create(&reason("cardinality_limit"))
            .inc_by(stored.over_limit);
        for item in items {
            for (why, n) in &item.dropped {
                m.items_dropped
                    .get_or_create(&reason(why.as_str()))
                    .inc_by(*n);
            }
        }
        m.items_flagged
            .get_or_create(&reason("cumulative_reset"))
            .inc_by(resets);
        Ok(Vec::new())
    }
}
