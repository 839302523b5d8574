//! The acknowledgement flow every sink shares: read a partitioned topic in a
//! consumer group, write batches durably, and only then commit offsets.
//!
//! The guarantee, in order:
//! 1. messages are decoded into a batch (an undecodable one is marked for
//!    the dead-letter topic, never dropped);
//! 2. the batch is written by the [`Sink`] in one durable step; a transient
//!    failure (store down) pauses the partitions and retries with backoff for
//!    as long as it takes, a permanent one is narrowed down to the messages
//!    that cause it, which go to the DLQ;
//! 3. dead letters are produced to `<topic>.dlq` and **acknowledged**;
//! 4. only then are offsets committed: for each partition, one past the last
//!    offset of the batch. A batch holds a contiguous run of each partition,
//!    because messages are taken in order and nothing is skipped.
//!
//! `enable.auto.commit` and `enable.auto.offset.store` are off: this module is
//! the only place that moves offsets. A crash anywhere before step 4 means the
//! batch is read again; sinks write idempotently, so that stores nothing twice.
//! On partition revocation the pending batch is flushed and committed before
//! the partitions are let go (or, if the store is down, left uncommitted for
//! the next owner to write again).
//!
//! Two gauges show how far behind a sink is: the lag of each partition it
//! owns (log end minus the group's committed offset, the number that
//! `observatory-consumer lag` and Kafka's own tools print), and the age of
//! the oldest message read but not yet durable.

use crate::admin::Health;
use crate::config::KafkaConfig;
use crate::metrics::{
    BatchLabels, FlushLabels, GroupLabels, LagLabels, Metrics, OldestUnwritten, SinkLabels,
};
use observatory_schemas::kafka::headers;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Handle;
use tracing::{debug, error, info, warn};

/// The longest one poll waits: how often an idle loop checks for SIGTERM
/// and refreshes the lag gauge.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Headers a dead letter carries besides the original ones.
pub mod dlq_headers {
    /// Why the message could not be written.
    pub const REASON: &str = "dlq-reason";
    /// The sink that gave up on it.
    pub const SINK: &str = "dlq-sink";
    /// Where it came from.
    pub const SOURCE_TOPIC: &str = "dlq-source-topic";
    /// Its partition there.
    pub const SOURCE_PARTITION: &str = "dlq-source-partition";
    /// Its offset there.
    pub const SOURCE_OFFSET: &str = "dlq-source-offset";
}

/// One Kafka message, owned.
#[derive(Debug, Clone)]
pub struct InMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (shared, not copied, by a sink that keeps it).
    pub payload: bytes::Bytes,
    /// All headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl InMessage {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The tenant header, or `default`.
    pub fn tenant(&self) -> &str {
        self.header(headers::TENANT)
            .filter(|t| observatory_schemas::tenant::validate(t).is_ok())
            .unwrap_or(observatory_schemas::tenant::DEFAULT_TENANT)
    }

    /// The collector's receive time.
    pub fn received_at_ms(&self) -> Option<u64> {
        self.header(headers::RECEIVED_AT_MS)?.parse().ok()
    }
}

/// Why a write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The store is down or slow: retry the same batch later.
    #[error("transient: {0}")]
    Transient(String),
    /// Something in the batch can never be written.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Items a write left out for good: (index in the batch, reason).
pub type Rejected = Vec<(usize, String)>;

/// A store that batches are written to.
pub trait Sink: Send + 'static {
    /// A decoded message, ready to write.
    type Item: Send;
    /// The sink's name, for metrics and the DLQ header.
    const NAME: &'static str;
    /// Decodes one message, or says why it can never be written.
    fn decode(&self, message: &InMessage) -> Result<Self::Item, String>;
    /// Writes the items durably, all or nothing, except the items it
    /// finds it can never write: it leaves those out and returns them
    /// (index in `items`, reason) for the DLQ. Writing items that were
    /// written before must change nothing.
    fn write(
        &mut self,
        items: &[&Self::Item],
    ) -> impl Future<Output = Result<Rejected, WriteError>> + Send;
    /// Payload bytes at which the sink wants its batch written now, below
    /// [`Batching::batch_bytes`] (the Tempo sink: its block size estimate).
    fn batch_bytes_limit(&self) -> usize {
        usize::MAX
    }
    /// How long one write may take before it is abandoned as hung and
    /// retried.
    fn write_timeout(&self) -> Duration {
        WRITE_TIMEOUT
    }
}

struct Pending<I> {
    message: InMessage,
    item: Result<I, String>,
    /// Kafka timestamp, ms (the time it was read when the message has none).
    timestamp_ms: i64,
}

/// The batch and everything needed to flush it.
pub struct Batcher<S: Sink> {
    sink: S,
    pending: Vec<Pending<S::Item>>,
    dlq: FutureProducer,
    config: KafkaConfig,
    metrics: Arc<Metrics>,
    health: Health,
    runtime: Handle,
    /// The age gauge of the oldest pending message.
    oldest: OldestUnwritten,
    /// When the lag gauge is next refreshed.
    lag_due: Instant,
    /// The partitions the lag gauge holds a value for.
    lag_reported: BTreeSet<(String, i32)>,
    /// The offsets this replica committed, per partition it owns.
    committed: BTreeMap<(String, i32), i64>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest the poll loop spends asking for the log ends for the lag
/// gauge (a small share of any sane max.poll.interval).
const LAG_REPORT_BUDGET: Duration = Duration::from_secs(2);
/// How often the lag gauge is refreshed: often enough for an alert on a
/// minute's lag, rare enough to cost the broker nothing.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// A write that has not answered in this long is abandoned and retried
/// (unless the sink says otherwise, [`Sink::write_timeout`]).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a flush inside a rebalance may retry before the partitions are
/// let go uncommitted (their next owner writes the data again).
const REBALANCE_FLUSH_BUDGET: Duration = Duration::from_secs(15);

impl<S: Sink> Batcher<S> {
    fn labels(&self) -> SinkLabels {
        SinkLabels { sink: S::NAME }
    }

    /// Refreshes the lag gauge when it is due: from the poll loop, and while
    /// a write retries (the store down), so the gauge keeps telling how far
    /// behind the sink falls.
    fn report_lag_if_due<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if Instant::now() >= self.lag_due {
            report_lag(
                consumer,
                &self.config,
                &self.metrics,
                &mut self.lag_reported,
                &mut self.committed,
            );
            self.lag_due = Instant::now() + LAG_REPORT_INTERVAL;
        }
    }

    /// Sets the oldest-unwritten gauge from what is pending now.
    fn note_pending(&self) {
        self.oldest
            .set(self.pending.iter().map(|p| p.timestamp_ms).min());
    }

    /// Counts a flush of a non-empty batch by what triggered it.
    fn count_flush(&self, reason: &'static str) {
        if !self.pending.is_empty() {
            self.metrics
                .flushes
                .get_or_create(&FlushLabels {
                    sink: S::NAME,
                    reason,
                })
                .inc();
        }
    }

    /// Writes `items`, retrying transient failures until `deadline` (forever with `None`).
    fn write_retrying(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        items: &[&S::Item],
        deadline: Option<Instant>,
    ) -> Result<Rejected, WriteError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            // A write that hangs (a half-open connection) counts as a transient failure.
            let timeout = self.sink.write_timeout();
            let result = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, self.sink.write(items)).await })
                .unwrap_or_else(|_| {
                    Err(WriteError::Transient(format!(
                        "no answer within {timeout:?}"
                    )))
                });
            let outcome = match &result {
                Ok(_) => "ok",
                Err(WriteError::Transient(_)) => "transient_error",
                Err(WriteError::Permanent(_)) => "permanent_error",
            };
            self.metrics
                .batches
                .get_or_create(&BatchLabels {
                    sink: S::NAME,
                    outcome,
                })
                .inc();
            match result {
                Ok(rejected) => {
                    self.health.store_ok.store(true, Ordering::Relaxed);
                    self.metrics
                        .batch_duration
                        .get_or_create(&self.labels())
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(rejected);
                }
                Err(WriteError::Transient(reason)) => {
                    self.health.store_ok.store(false, Ordering::Relaxed);
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return Err(WriteError::Transient(reason));
                    }
                    warn!(%reason, retry_in = ?backoff, "the store is unavailable; retrying");
                    self.report_lag_if_due(consumer);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(permanent) => return Err(permanent),
            }
        }
    }

    /// Writes the pending batch, dead-letters what can never be written,
    /// and commits. Returns false when the store stayed down past `deadline`
    /// (nothing was committed then).
    fn flush(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        deadline: Option<Instant>,
    ) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut dead: Vec<(&InMessage, String)> = pending
            .iter()
            .filter_map(|p| p.item.as_ref().err().map(|e| (&p.message, e.clone())))
            .collect();
        let good: Vec<(&InMessage, &S::Item)> = pending
            .iter()
            .filter_map(|p| p.item.as_ref().ok().map(|i| (&p.message, i)))
            .collect();
        let items: Vec<&S::Item> = good.iter().map(|(_, i)| *i).collect();
        let mut gave_up = false;
        match self.write_retrying(consumer, &items, deadline) {
            Ok(rejected) => {
                for (i, reason) in rejected {
                    dead.push((good[i].0, reason));
                }
            }
            Err(WriteError::Transient(reason)) => {
                warn!(%reason, "the store stayed down past the deadline; the batch stays pending");
                gave_up = true;
            }
            Err(WriteError::Permanent(reason)) => {
                warn!(%reason, messages = good.len(), "a batch failed for good; writing its messages one by one");
                for (message, item) in &good {
                    match self.write_retrying(consumer, &[*item], deadline) {
                        Ok(rejected) => {
                            if let Some((_, reason)) = rejected.into_iter().next() {
                                dead.push((message, reason));
                            }
                        }
                        Err(WriteError::Permanent(reason)) => dead.push((message, reason)),
                        Err(WriteError::Transient(_)) => {
                            gave_up = true;
                            break;
                        }
                    }
                }
            }
        }
        if !gave_up {
            gave_up = !dead
                .iter()
                .all(|(message, reason)| self.dead_letter(message, reason, deadline));
        }
        if gave_up {
            // Nothing is committed. Every message stays pending (those already
            // written are written again harmlessly), so none is ever skipped.
            drop((good, dead));
            self.pending = pending;
            return false;
        }
        // Everything read is durable now (written or dead-lettered).
        self.oldest.set(None);
        self.commit(
            consumer,
            &pending.iter().map(|p| &p.message).collect::<Vec<_>>(),
        );
        true
    }

    /// Produces a dead letter and waits for Kafka's acknowledgement, retrying
    /// until it comes or `deadline` passes (then false).
    fn dead_letter(&self, message: &InMessage, reason: &str, deadline: Option<Instant>) -> bool {
        warn!(
            partition = message.partition,
            offset = message.offset,
            %reason,
            "sending a message to the dead-letter topic"
        );
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let mut backoff = Duration::from_millis(100);
        loop {
            // A dead letter sent back through a sink (`dlq replay`) that
            // fails again keeps its original source and gets a new reason.
            let redelivered = message.header(dlq_headers::SOURCE_TOPIC).is_some();
            let mut h = OwnedHeaders::new_with_capacity(message.headers.len() + 5);
            for (k, v) in &message.headers {
                if k == dlq_headers::REASON || k == dlq_headers::SINK {
                    continue;
                }
                h = h.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            h = h
                .insert(Header {
                    key: dlq_headers::REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: dlq_headers::SINK,
                    value: Some(S::NAME),
                });
            if !redelivered {
                h = h
                    .insert(Header {
                        key: dlq_headers::SOURCE_TOPIC,
                        value: Some(&message.topic),
                    })
                    .insert(Header {
                        key: dlq_headers::SOURCE_PARTITION,
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: dlq_headers::SOURCE_OFFSET,
                        value: Some(&offset),
                    });
            }
            let mut record = FutureRecord::to(&self.config.dlq_topic)
                .payload(&message.payload[..])
                .headers(h);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            match self
                .runtime
                .block_on(self.dlq.send(record, Duration::from_secs(30)))
            {
                Ok(_) => {
                    self.metrics
                        .dlq_messages
                        .get_or_create(&self.labels())
                        .inc();
                    return true;
                }
                Err((e, _)) => {
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return false;
                    }
                    error!(error = %e, "the dead-letter topic did not acknowledge; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Commits one past the last offset of each partition in `messages`.
    fn commit(&mut self, consumer: &BaseConsumer<SourceContext<S>>, messages: &[&InMessage]) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in messages {
            let e = next.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let delay = self.metrics.commit_delay.get_or_create(&self.labels());
                for m in messages {
                    if let Some(received) = m.received_at_ms() {
                        delay.observe(now_ms.saturating_sub(received) as f64 / 1000.0);
                    }
                }
                debug!(?next, "offsets committed");
                self.committed.extend(next);
            }
            // The data is stored; at worst it is read and deduplicated again.
            Err(e) => warn!(error = %e, "committing offsets failed; the batch may be read again"),
        }
    }
}

/// librdkafka context: flushes and commits on revocation.
pub struct SourceContext<S: Sink> {
    batcher: Arc<Mutex<Option<Batcher<S>>>>,
}

impl<S: Sink> ClientContext for SourceContext<S> {}

impl<S: Sink> ConsumerContext for SourceContext<S> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            if let Ok(mut guard) = self.batcher.try_lock() {
                if let Some(batcher) = guard.as_mut() {
                    for e in partitions.elements() {
                        batcher
                            .committed
                            .remove(&(e.topic().to_owned(), e.partition()));
                    }
                }
            }
            info!(
                partitions = partitions.count(),
                "partitions revoked: flushing before letting go"
            );
            // The callback runs inside poll() on the loop's own thread, which
            // never holds the lock while it polls.
            if let Ok(mut guard) = self.batcher.try_lock() {
                if let Some(batcher) = guard.as_mut() {
                    batcher.count_flush("revoke");
                    let flushed =
                        batcher.flush(consumer, Some(Instant::now() + REBALANCE_FLUSH_BUDGET));
                    if !flushed {
                        // The store is down: let the revoked partitions go
                        // uncommitted (their next owner reads them again) and
                        // keep the kept partitions' messages pending here.
                        let revoked: Vec<(String, i32)> = partitions
                            .elements()
                            .iter()
                            .map(|e| (e.topic().to_owned(), e.partition()))
                            .collect();
                        batcher.pending.retain(|p| {
                            !revoked
                                .iter()
                                .any(|(t, n)| *t == p.message.topic && *n == p.message.partition)
                        });
                        batcher.note_pending();
                    }
                }
            }
        }
    }
}

/// How a sink batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Flush at this many items (spans) ...
    pub batch_size: usize,
    /// ... or at this many payload bytes (a bound on the memory a batch
    /// holds) ...
    pub batch_bytes: usize,
    /// ... or this long after the batch's first message, whichever comes first.
    pub flush_interval: Duration,
}

/// What the loop shares with the rest of the process.
pub struct Shared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Health flags.
    pub health: Health,
    /// Runs the sink's async I/O.
    pub runtime: Handle,
    /// Set to stop (SIGTERM).
    pub stop: Arc<AtomicBool>,
}

/// A bounded read, for replays: the given partitions are assigned by hand
/// (no group membership, no rebalances), each read from its first offset up
/// to its end offset (exclusive), and [`run_range`] returns once every
/// partition reached its end and the last batch is written and committed.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// Per partition: what to read and what was read (shared with whoever
    /// reports progress).
    pub partitions: Arc<Mutex<BTreeMap<i32, RangeProgress>>>,
}

/// One partition of a [`Range`].
#[derive(Debug, Clone, Default)]
pub struct RangeProgress {
    /// First offset read.
    pub first: i64,
    /// Offset at which reading stops (exclusive).
    pub end: i64,
    /// Next offset to read.
    pub next: i64,
    /// Messages read (each written or dead-lettered before the run returns).
    pub messages: u64,
    /// Spans in them (the `span-count` header).
    pub spans: u64,
}

impl RangeProgress {
    /// Nothing left to read.
    pub fn done(&self) -> bool {
        self.next >= self.end
    }
}

/// Runs a sink until `stop` is set: polls, batches, flushes at the batch
/// size or interval, commits, and on stop flushes once more.
/// Blocking: run it on its own thread.
pub fn run<S: Sink>(
    sink: S,
    config: KafkaConfig,
    batching: Batching,
    shared: Shared,
) -> Result<(), rdkafka::error::KafkaError> {
    run_range(sink, config, batching, shared, None)
}

/// [`run`], or with a `range` a bounded read of it (a replay) through the
/// very same batching, write, dead-letter and commit steps, which returns
/// by itself at the range's end.
pub fn run_range<S: Sink>(
    sink: S,
    config: KafkaConfig,
    batching: Batching,
    shared: Shared,
    range: Option<Range>,
) -> Result<(), rdkafka::error::KafkaError> {
    let Batching {
        batch_size,
        batch_bytes,
        flush_interval,
    } = batching;
    let Shared {
        metrics,
        health,
        runtime,
        stop,
    } = shared;
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("client.id", format!("observatory-consumer-{}", S::NAME))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &config.auto_offset_reset)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval.as_millis().to_string(),
        )
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // A bounded read reports a log that ends before its range does.
        .set("enable.partition.eof", range.is_some().to_string());
    for (k, v) in &config.extra {
        client.set(k, v);
    }
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    for (k, v) in &config.extra {
        producer_config.set(k, v);
    }
    let dlq: FutureProducer = producer_config.create()?;
    ensure_dlq_topic(&producer_config, &config, &runtime, &stop);
    let oldest = metrics
        .oldest_unwritten
        .get_or_create(&GroupLabels {
            group: config.group_id.clone(),
        })
        .clone();
    oldest.set(None);
    let batcher = Arc::new(Mutex::new(Some(Batcher {
        sink,
        pending: Vec::with_capacity(batch_size.min(100_000)),
        dlq,
        config: config.clone(),
        metrics: metrics.clone(),
        health,
        runtime,
        oldest,
        lag_due: Instant::now(),
        lag_reported: BTreeSet::new(),
        committed: BTreeMap::new(),
    })));
    let consumer: BaseConsumer<SourceContext<S>> = client.create_with_context(SourceContext {
        batcher: batcher.clone(),
    })?;
    match &range {
        None => consumer.subscribe(&[&config.topic])?,
        Some(range) => {
            let mut tpl = TopicPartitionList::new();
            for (p, r) in range.partitions.lock().expect("no poisoned lock").iter() {
                if !r.done() {
                    tpl.add_partition_offset(&config.topic, *p, Offset::Offset(r.next))?;
                }
            }
            consumer.assign(&tpl)?;
        }
    }
    info!(topic = %config.topic, group = %config.group_id, sink = S::NAME, bounded = range.is_some(), "consuming");

    let labels = SinkLabels { sink: S::NAME };
    let mut items = 0usize;
    let mut bytes = 0usize;
    let mut bytes_limit = batch_bytes;
    let mut flush_due = Instant::now() + flush_interval;
    while !stop.load(Ordering::Relaxed) {
        // Until the batch's flush is due, at most 100 ms (stop and lag are
        // checked between polls). With nothing pending no flush is due: a
        // past `flush_due` must not turn the poll into a busy loop.
        let wait = if items == 0 {
            IDLE_POLL
        } else {
            flush_due
                .saturating_duration_since(Instant::now())
                .min(IDLE_POLL)
        };
        match consumer.poll(wait) {
            Some(Ok(m)) if range.as_ref().is_some_and(|r| past_end(r, &m)) => {
                // Beyond the range: not read. The partition is done.
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(m.topic(), m.partition());
                let _ = consumer.pause(&tpl);
            }
            Some(Ok(m)) => {
                metrics.messages.get_or_create(&labels).inc();
                let timestamp_ms = m.timestamp().to_millis().unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64)
                });
                let message = InMessage {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                let mut guard = batcher.lock().expect("no poisoned lock");
                let b = guard
                    .as_mut()
                    .expect("the batcher lives as long as the loop");
                let item = b.sink.decode(&message);
                if b.pending.is_empty() {
                    // A message waits at most one interval for its batch.
                    flush_due = Instant::now() + flush_interval;
                }
                bytes += message.payload.len();
                bytes_limit = batch_bytes.min(b.sink.batch_bytes_limit());
                let spans = message
                    .header(headers::SPAN_COUNT)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                items += spans;
                if let Some(range) = &range {
                    let mut partitions = range.partitions.lock().expect("no poisoned lock");
                    if let Some(r) = partitions.get_mut(&message.partition) {
                        r.next = message.offset + 1;
                        r.messages += 1;
                        r.spans += spans as u64;
                    }
                }
                // O(1) per message: the oldest only moves back.
                if b.pending.is_empty() || b.oldest.get().is_none_or(|o| o > timestamp_ms) {
                    b.oldest.set(Some(timestamp_ms));
                }
                b.pending.push(Pending {
                    message,
                    item,
                    timestamp_ms,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                if let Some(range) = &range {
                    reached_eof(range, p);
                }
            }
            Some(Err(e)) => warn!(error = %e, "kafka consumer error"),
            None => {}
        }
        let reason = if items >= batch_size {
            Some("size")
        } else if bytes >= bytes_limit {
            Some("bytes")
        } else if items > 0 && Instant::now() >= flush_due {
            Some("interval")
        } else {
            None
        };
        if let Some(reason) = reason {
            let mut guard = batcher.lock().expect("no poisoned lock");
            let b = guard
                .as_mut()
                .expect("the batcher lives as long as the loop");
            // The loop does not poll while a flush retries, so nothing piles
            // up meanwhile. (Pausing the partitions instead is not safe:
            // librdkafka drops what it had prefetched and resumes past it.)
            b.count_flush(reason);
            b.flush(&consumer, None);
            items = 0;
            bytes = 0;
            flush_due = Instant::now() + flush_interval;
        }
        if let Some(b) = batcher.lock().expect("no poisoned lock").as_mut() {
            b.report_lag_if_due(&consumer);
        }
        if range.as_ref().is_some_and(range_done) {
            info!("the range is read: flushing and committing");
            break;
        }
    }
    info!("stopping: flushing and committing");
    if let Some(mut b) = batcher.lock().expect("no poisoned lock").take() {
        b.count_flush("shutdown");
        b.flush(&consumer, None);
    }
    match range {
        None => consumer.unsubscribe(),
        Some(_) => {
            let _ = consumer.unassign();
        }
    }
    Ok(())
}

/// Is `m` at or past the end of its partition's range? Then the partition
/// is done (offsets up to its end that hold no message, after compaction
/// or transaction markers, have been passed).
fn past_end<M: rdkafka::message::Message>(range: &Range, m: &M) -> bool {
    let mut partitions = range.partitions.lock().expect("no poisoned lock");
    match partitions.get_mut(&m.partition()) {
        Some(r) if m.offset() < r.end => false,
        Some(r) => {
            r.next = r.next.max(r.end);
            true
        }
        None => true,
    }
}

/// Says so when `partition` reached the end of its log before the end of
/// its range. It is not marked done: a broker that serves nothing to a
/// fetch starting inside a record batch (tansu 0.6) says "end of log" there
/// too, and taking its word would skip messages silently.
fn reached_eof(range: &Range, partition: i32) {
    if let Some(r) = range
        .partitions
        .lock()
        .expect("no poisoned lock")
        .get(&partition)
        .filter(|r| !r.done())
    {
        warn!(
            partition,
            next = r.next,
            end = r.end,
            "the broker reports the end of the log before the end of the range; waiting for the rest"
        );
    }
}

/// Has every partition of `range` been read to its end?
fn range_done(range: &Range) -> bool {
    range
        .partitions
        .lock()
        .expect("no poisoned lock")
        .values()
        .all(RangeProgress::done)
}

/// Runs [`run`] on a thread of its own (`<sink>-consumer`) until `stop`,
/// then marks the process as draining (`/readyz` 503).
pub async fn run_on_thread<S: Sink>(
    sink: S,
    config: KafkaConfig,
    batching: Batching,
    shared: Shared,
) -> Result<(), rdkafka::error::KafkaError> {
    let health = shared.health.clone();
    let consumer = std::thread::Builder::new()
        .name(format!("{}-consumer", S::NAME))
        .spawn(move || run(sink, config, batching, shared))
        .expect("spawning the consumer thread");
    let result = tokio::task::spawn_blocking(move || consumer.join()).await;
    health.draining.store(true, Ordering::Relaxed);
    match result {
        Ok(Ok(r)) => r,
        _ => {
            error!("the consumer thread panicked");
            Ok(())
        }
    }
}

/// Creates the dead-letter topic when missing (brokers seldom auto-create
/// topics in production, and a DLQ that cannot be written would stall the
/// sink on its first poison message). Retries until it exists or `stop`.
fn ensure_dlq_topic(
    client: &ClientConfig,
    config: &KafkaConfig,
    runtime: &Handle,
    stop: &AtomicBool,
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let result = (|| {
            let admin: AdminClient<DefaultClientContext> =
                client.create().map_err(|e| e.to_string())?;
            let topic = NewTopic::new(
                &config.dlq_topic,
                config.dlq_partitions,
                TopicReplication::Fixed(config.replication_factor),
            );
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
            let results = runtime
                .block_on(admin.create_topics([&topic], &options))
                .map_err(|e| e.to_string())?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => return Err(format!("{name}: {code}")),
                }
            }
            Ok::<(), String>(())
        })();
        match result {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, topic = %config.dlq_topic, "cannot create the dead-letter topic yet");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sets the lag gauge of each partition this member owns: the log end minus
/// the group's committed offset (what `observatory-consumer lag` prints), so
/// messages read but not yet durable count as lag. The committed offset is
/// the one this replica last committed, or, before it committed any for the
/// partition, its fetch position (where it resumed: the group's committed
/// offset); only the log end is asked of the broker. A partition this member
/// no longer owns is dropped from the gauge, so that after a rebalance only
/// its new owner reports it (summing the gauge over replicas stays right).
fn report_lag<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaConfig,
    metrics: &Metrics,
    reported: &mut BTreeSet<(String, i32)>,
    committed: &mut BTreeMap<(String, i32), i64>,
) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let owned: BTreeSet<(String, i32)> = positions
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let labels = |(topic, partition): &(String, i32)| LagLabels {
        group: config.group_id.clone(),
        topic: topic.clone(),
        partition: *partition,
    };
    for gone in reported.difference(&owned) {
        metrics.lag.remove(&labels(gone));
    }
    reported.retain(|k| owned.contains(k));
    committed.retain(|k, _| owned.contains(k));
    // Bounded: a slow broker must not hold up polling for a metric, so the
    // whole report gets LAG_REPORT_BUDGET and stops when it is spent.
    let deadline = Instant::now() + LAG_REPORT_BUDGET;
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
        let done = committed.get(&key).copied().or(match elem.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        let lag = match done {
            Some(o) => (high - o).max(0),
            // Nothing read yet: the group starts where
            // KAFKA_AUTO_OFFSET_RESET says.
            None if config.auto_offset_reset == "earliest" => (high - low).max(0),
            None => 0,
        };
        metrics.lag.get_or_create(&labels(&key)).set(lag);
        reported.insert(key);
    }
}
