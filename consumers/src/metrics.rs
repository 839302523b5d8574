//! The consumer's Prometheus metrics, served on the admin port's `/metrics`.
//!
//! Names follow `observatory_consumer_<noun>_<unit>`; labels are bounded:
//! the sink and table are fixed names, the partition is bounded by the
//! topic's partition count, the group and topic come from configuration.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Labels naming the sink.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    /// `timescale` or `tempo`.
    pub sink: &'static str,
}

/// Labels of rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TableLabels {
    /// The sink.
    pub sink: &'static str,
    /// The table.
    pub table: &'static str,
}

/// Labels of batches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BatchLabels {
    /// The sink.
    pub sink: &'static str,
    /// `ok`, `transient_error` or `permanent_error`.
    pub outcome: &'static str,
}

/// Labels of flushes (for the Tempo sink: block cuts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FlushLabels {
    /// The sink.
    pub sink: &'static str,
    /// `size`, `bytes`, `interval`, `revoke` or `shutdown`.
    pub reason: &'static str,
}

/// Labels of counts by a fixed reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The sink.
    pub sink: &'static str,
    /// A fixed reason (never from input).
    pub reason: &'static str,
}

/// Labels of consumer lag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LagLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Labels naming the consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabels {
    /// Consumer group.
    pub group: String,
}

/// A gauge of the age, by Kafka timestamp, of the oldest message read but
/// not yet durable in the store; 0 when nothing is pending.
///
/// The sink records only the oldest pending timestamp; the age is computed
/// when `/metrics` is scraped, so it keeps growing while a write is stuck
/// (the store down), which is exactly when it matters.
#[derive(Debug, Clone, Default)]
pub struct OldestUnwritten {
    /// Kafka timestamp (ms since the epoch) of the oldest pending message;
    /// 0 when none is pending.
    oldest_ms: Arc<AtomicI64>,
}

impl OldestUnwritten {
    /// Records the oldest pending message's timestamp (`None`: nothing pending).
    pub fn set(&self, oldest_ms: Option<i64>) {
        self.oldest_ms
            .store(oldest_ms.unwrap_or(0).max(0), Ordering::Relaxed);
    }

    /// The recorded timestamp; `None` when nothing is pending.
    pub fn get(&self) -> Option<i64> {
        Some(self.oldest_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    /// The age in seconds at `now_ms`; 0 when nothing is pending.
    pub fn age_seconds(&self, now_ms: i64) -> f64 {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            oldest => (now_ms - oldest).max(0) as f64 / 1000.0,
        }
    }
}

impl TypedMetric for OldestUnwritten {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for OldestUnwritten {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        encoder.encode_gauge(&self.age_seconds(now_ms))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// End-to-end delay, seconds: fine around the 1 to 2 s that a healthy sink
/// shows (flush interval plus write), coarse beyond.
fn delay_histogram() -> Histogram {
    Histogram::new([
        0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0,
    ])
}

/// Every metric of a consumer.
pub struct Metrics {
    registry: Registry,
    /// Kafka messages read.
    pub messages: Family<SinkLabels, Counter>,
    /// Rows a batch inserted.
    pub rows_written: Family<TableLabels, Counter>,
    /// Rows skipped because they were already stored (re-delivery, replay).
    pub rows_duplicate: Family<TableLabels, Counter>,
    /// Batches by outcome.
    pub batches: Family<BatchLabels, Counter>,
    /// Time to write a batch durably.
    pub batch_duration: HistogramFamily<SinkLabels>,
    /// Messages sent to the dead-letter topic.
    pub dlq_messages: Family<SinkLabels, Counter>,
    /// LLM calls whose model has no price.
    pub unpriced_llm_calls: Family<SinkLabels, Counter>,
    /// `gen_ai.evaluation.result` events that are not a valid score.
    pub invalid_evaluations: Family<SinkLabels, Counter>,
    /// Spans not stored because they are older than the retention.
    pub expired_spans: Family<SinkLabels, Counter>,
    /// Spans of messages dead-lettered because a span starts too far ahead.
    pub future_spans: Family<SinkLabels, Counter>,
    /// Metric points and log records not stored, by reason.
    pub items_dropped: Family<ReasonLabels, Counter>,
    /// Metric points and log records stored with a change or a remark, by reason.
    pub items_flagged: Family<ReasonLabels, Counter>,
    /// Messages behind the end of each partition.
    pub lag: Family<LagLabels, Gauge>,
    /// Age of the oldest message read but not yet durable in the store.
    pub oldest_unwritten: Family<GroupLabels, OldestUnwritten>,
    /// From the collector's receipt (`received-at-ms`) to the offset commit.
    pub commit_delay: HistogramFamily<SinkLabels>,
    /// Batches flushed, by trigger (for the Tempo sink: block cuts).
    pub flushes: Family<FlushLabels, Counter>,
    /// Tempo blocks written completely (`meta.json` included).
    pub blocks: Family<SinkLabels, Counter>,
    /// Messages a replay skipped because a complete block holds them.
    pub already_stored: Family<SinkLabels, Counter>,
    /// Bytes of block objects written.
    pub block_bytes: Family<SinkLabels, Counter>,
    /// Traces (rows) in the blocks written.
    pub block_traces: Family<SinkLabels, Counter>,
    /// Spans in the blocks written.
    pub block_spans: Family<SinkLabels, Counter>,
    /// Time to upload one block's objects.
    pub upload_duration: HistogramFamily<SinkLabels>,
    /// Compaction jobs by outcome (`ok`, `busy`, `error`).
    pub compaction_jobs: Family<BatchLabels, Counter>,
    /// Blocks the compactor acted on, by what it did (`compacted`: an input
    /// marked compacted; `written`: an output; `expired`: marked by
    /// retention; `deleted`).
    pub compaction_blocks: Family<ReasonLabels, Counter>,
    /// Bytes of input blocks the compactor read.
    pub compaction_read_bytes: Family<SinkLabels, Counter>,
    /// Time one compaction job took.
    pub compaction_duration: HistogramFamily<SinkLabels>,
    /// Blocks in the bucket at the last cycle, by state (`live`, `compacted`).
    pub bucket_blocks: Family<ReasonLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            messages: Family::default(),
            rows_written: Family::default(),
            rows_duplicate: Family::default(),
            batches: Family::default(),
            batch_duration: Family::new_with_constructor(seconds_histogram),
            dlq_messages: Family::default(),
            unpriced_llm_calls: Family::default(),
            invalid_evaluations: Family::default(),
            expired_spans: Family::default(),
            future_spans: Family::default(),
            items_dropped: Family::default(),
            items_flagged: Family::default(),
            lag: Family::default(),
            oldest_unwritten: Family::default(),
            commit_delay: Family::new_with_constructor(delay_histogram),
            flushes: Family::default(),
            blocks: Family::default(),
            already_stored: Family::default(),
            block_bytes: Family::default(),
            block_traces: Family::default(),
            block_spans: Family::default(),
            upload_duration: Family::new_with_constructor(seconds_histogram),
            compaction_jobs: Family::default(),
            compaction_blocks: Family::default(),
            compaction_read_bytes: Family::default(),
            compaction_duration: Family::new_with_constructor(seconds_histogram),
            bucket_blocks: Family::default(),
        };
        let p = "observatory_consumer_";
        registry.register(
            format!("{p}messages"),
            "Kafka messages read",
            m.messages.clone(),
        );
        registry.register(
            format!("{p}rows_written"),
            "Rows inserted by committed batches",
            m.rows_written.clone(),
        );
        registry.register(
            format!("{p}rows_duplicate"),
            "Rows skipped because they were already stored",
            m.rows_duplicate.clone(),
        );
        registry.register(
            format!("{p}batches"),
            "Batches written, by outcome",
            m.batches.clone(),
        );
        registry.register(
            format!("{p}batch_duration_seconds"),
            "Time to write one batch durably",
            m.batch_duration.clone(),
        );
        registry.register(
            format!("{p}dlq_messages"),
            "Messages sent to the dead-letter topic",
            m.dlq_messages.clone(),
        );
        registry.register(
            format!("{p}unpriced_llm_calls"),
            "LLM calls stored without a price for their model",
            m.unpriced_llm_calls.clone(),
        );
        registry.register(
            format!("{p}invalid_evaluations"),
            "gen_ai.evaluation.result events not stored as a score (no name, no value, too large)",
            m.invalid_evaluations.clone(),
        );
        registry.register(
            format!("{p}expired_spans"),
            "Spans not stored because they are older than ACCEPT_SPANS_MAX_AGE (at most RETENTION_TRACES_DAYS)",
            m.expired_spans.clone(),
        );
        registry.register(
            format!("{p}future_spans"),
            "Spans of messages dead-lettered because a span starts more than ACCEPT_SPANS_MAX_FUTURE ahead",
            m.future_spans.clone(),
        );
        registry.register(
            format!("{p}items_dropped"),
            "Metric points and log records not stored, by reason: cardinality_limit, invalid_histogram, invalid_summary, non_finite, missing_time, expired, future",
            m.items_dropped.clone(),
        );
        registry.register(
            format!("{p}items_flagged"),
            "Metric points and log records stored with a remark, by reason: cumulative_reset (a cumulative series went down without a new start time), body_truncated",
            m.items_flagged.clone(),
        );
        registry.register(
            format!("{p}lag_messages"),
            "Messages behind the end of the partition",
            m.lag.clone(),
        );
        registry.register(
            format!("{p}oldest_unwritten_age_seconds"),
            "Age, by Kafka timestamp, of the oldest message read but not yet durable in the store (0 when none is pending)",
            m.oldest_unwritten.clone(),
        );
        registry.register(
            format!("{p}commit_delay_seconds"),
            "Time from the collector's receipt to the offset commit",
            m.commit_delay.clone(),
        );
        registry.register(
            format!("{p}flushes"),
            "Batches flushed, by trigger: size, bytes, interval, revoke, shutdown (Tempo: block cuts)",
            m.flushes.clone(),
        );
        registry.register(
            format!("{p}blocks_written"),
            "Tempo blocks written completely, meta.json included",
            m.blocks.clone(),
        );
        registry.register(
            format!("{p}already_stored_messages"),
            "Messages a replay skipped because a complete block already holds them",
            m.already_stored.clone(),
        );
        registry.register(
            format!("{p}block_bytes_written"),
            "Bytes of Tempo block objects written",
            m.block_bytes.clone(),
        );
        registry.register(
            format!("{p}block_traces_written"),
            "Traces (rows) in the Tempo blocks written",
            m.block_traces.clone(),
        );
        registry.register(
            format!("{p}block_spans_written"),
            "Spans in the Tempo blocks written",
            m.block_spans.clone(),
        );
        registry.register(
            format!("{p}block_upload_duration_seconds"),
            "Time to upload one block's objects",
            m.upload_duration.clone(),
        );
        registry.register(
            format!("{p}compaction_jobs"),
            "Tempo block compaction jobs, by outcome",
            m.compaction_jobs.clone(),
        );
        registry.register(
            format!("{p}compaction_blocks"),
            "Tempo blocks the compactor compacted, wrote, expired or deleted",
            m.compaction_blocks.clone(),
        );
        registry.register(
            format!("{p}compaction_read_bytes"),
            "Bytes of input blocks the compactor read",
            m.compaction_read_bytes.clone(),
        );
        registry.register(
            format!("{p}compaction_duration_seconds"),
            "Time one compaction job took",
            m.compaction_duration.clone(),
        );
        registry.register(
            format!("{p}bucket_blocks"),
            "Tempo blocks in the bucket at the compactor's last cycle, by state",
            m.bucket_blocks.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported() {
        let m = Metrics::new();
        let labels = SinkLabels { sink: "timescale" };
        m.messages.get_or_create(&labels).inc();
        m.dlq_messages.get_or_create(&labels).inc();
        m.unpriced_llm_calls.get_or_create(&labels).inc();
        m.invalid_evaluations.get_or_create(&labels).inc();
        m.expired_spans.get_or_create(&labels).inc();
        m.future_spans.get_or_create(&labels).inc();
        let text = m.encode();
        for name in [
            "observatory_consumer_messages_total",
            "observatory_consumer_dlq_messages_total",
            "observatory_consumer_unpriced_llm_calls_total",
            "observatory_consumer_invalid_evaluations_total",
            "observatory_consumer_expired_spans_total",
            "observatory_consumer_future_spans_total",
        ] {
            assert!(
                text.contains(&format!("{name}{{sink=\"timescale\"}} 1")),
                "{name} missing:\n{text}"
            );
        }
    }

    #[test]
    fn the_oldest_unwritten_age_is_computed_when_scraped_and_zero_when_idle() {
        let m = Metrics::new();
        let labels = GroupLabels { group: "g".into() };
        let gauge = m.oldest_unwritten.get_or_create(&labels).clone();
        assert!(m
            .encode()
            .contains("observatory_consumer_oldest_unwritten_age_seconds{group=\"g\"} 0.0"));
        gauge.set(Some(1_000));
        assert_eq!(gauge.age_seconds(3_500), 2.5);
        assert_eq!(
            gauge.age_seconds(500),
            0.0,
            "a clock behind is not negative"
        );
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("observatory_consumer_oldest_unwritten_age_seconds{"))
            .expect("exported");
        let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(age > 1e9, "an age since 1970: {line}");
        gauge.set(None);
        assert_eq!(gauge.age_seconds(3_500), 0.0);
    }
}
