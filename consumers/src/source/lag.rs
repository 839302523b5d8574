//! The lag gauge: for each partition this member owns, the log end minus
//! the group's committed offset (what `observatory-consumer lag` and
//! Kafka's own tools print), so messages read but not yet durable count as
//! lag. Refreshed from the poll loop and while a write retries, so it keeps
//! telling how far behind the sink falls while its store is down.

use crate::config::KafkaConfig;
use crate::metrics::{LagLabels, Metrics};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The longest one refresh spends asking for log ends (a small share of
/// any sane max.poll.interval): a slow broker must not hold up polling for
/// a metric.
const REPORT_BUDGET: Duration = Duration::from_secs(2);
/// How often the gauge is refreshed: often enough for an alert on a
/// minute's lag, rare enough to cost the broker nothing.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What the gauge needs to remember between refreshes.
pub(super) struct Lag {
    group: String,
    earliest: bool,
    due: Instant,
    /// The partitions the gauge holds a value for.
    reported: BTreeSet<(String, i32)>,
    /// The offsets this replica committed, per partition it owns.
    committed: BTreeMap<(String, i32), i64>,
}

impl Lag {
    pub(super) fn new(config: &KafkaConfig) -> Lag {
        Lag {
            group: config.group_id.clone(),
            earliest: config.auto_offset_reset == "earliest",
            due: Instant::now(),
            reported: BTreeSet::new(),
            committed: BTreeMap::new(),
        }
    }

    /// Remembers offsets this replica committed.
    pub(super) fn committed(&mut self, offsets: &BTreeMap<(String, i32), i64>) {
        self.committed
            .extend(offsets.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// Forgets a partition this replica no longer owns.
    pub(super) fn revoked(&mut self, topic: &str, partition: i32) {
        self.committed.remove(&(topic.to_owned(), partition));
    }

    /// Refreshes the gauge when it is due.
    pub(super) fn report_if_due<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        metrics: &Metrics,
    ) {
        if Instant::now() >= self.due {
            self.report(consumer, metrics);
            self.due = Instant::now() + REPORT_INTERVAL;
        }
    }

    /// The committed offset is the one this replica last committed, or,
    /// before it committed any for the partition, its fetch position (where
    /// it resumed: the group's committed offset); only the log end is asked
    /// of the broker. A partition this member no longer owns is dropped from
    /// the gauge, so that after a rebalance only its new owner reports it
    /// (summing the gauge over replicas stays right).
    fn report<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, metrics: &Metrics) {
        let Ok(positions) = consumer.position() else {
            return;
        };
        let owned: BTreeSet<(String, i32)> = positions
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let labels = |(topic, partition): &(String, i32)| LagLabels {
            group: self.group.clone(),
            topic: topic.clone(),
            partition: *partition,
        };
        for gone in self.reported.difference(&owned) {
            metrics.lag.remove(&labels(gone));
        }
        self.reported.retain(|k| owned.contains(k));
        self.committed.retain(|k, _| owned.contains(k));
        let deadline = Instant::now() + REPORT_BUDGET;
        for elem in positions.elements() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Ok((low, high)) = consumer.fetch_watermarks(elem.topic(), elem.partition(), left)
            else {
                break;
            };
            let key = (elem.topic().to_owned(), elem.partition());
            let done = self.committed.get(&key).copied().or(match elem.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            let lag = match done {
                Some(o) => (high - o).max(0),
                // Nothing read yet: the group starts where
                // KAFKA_AUTO_OFFSET_RESET says.
                None if self.earliest => (high - low).max(0),
                None => 0,
            };
            metrics.lag.get_or_create(&labels(&key)).set(lag);
            self.reported.insert(key);
        }
    }
}
