//! The acknowledgement flow: write a batch, dead-letter what can never be
//! written, and only then commit, only what this member still owns.
//!
//! [`Batcher::flush`] is the whole of it. Everything that can take long
//! (a write, a dead letter, a backoff) runs through [`wait`], which keeps
//! the member in its group meanwhile ([`KeepAlive`]) and bounds the time by
//! the flush's [`Mode`].

use super::dlq::{self, DeadLetters};
use super::lag::Lag;
use super::rebalance::{Assignment, SourceContext};
use super::{InMessage, Rejected, RunError, Sink, WriteError};
use crate::admin::Health;
use crate::config::KafkaConfig;
use crate::metrics::{BatchLabels, FlushLabels, Metrics, OldestUnwritten, SinkLabels};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Handle;
use tracing::{debug, error, warn};

/// The longest pause between backoff retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a long wait polls the consumer to stay in the group: far
/// below any max.poll.interval librdkafka accepts (its floor is the
/// session timeout, 10 s here).
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(1);
/// How long the flush at SIGTERM may retry a store that is down before the
/// batch is left uncommitted (its next owner writes it): below Kubernetes'
/// default grace period of 30 s.
const SHUTDOWN_FLUSH_BUDGET: Duration = Duration::from_secs(20);
/// Attempts at committing one batch's offsets.
const COMMIT_ATTEMPTS: u32 = 5;

/// Where a flush runs, which bounds how long it may take.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// From the poll loop: a store that is down is retried until it is back
    /// (or SIGTERM, then for [`SHUTDOWN_FLUSH_BUDGET`]); the member is kept
    /// alive meanwhile.
    Loop,
    /// Inside a rebalance callback: everything before `deadline`, and no
    /// polling (librdkafka does not poll from inside its callbacks).
    Revoke {
        /// When the partitions are let go, flushed or not.
        deadline: Instant,
    },
}

/// A message read and its decoded item.
pub(super) struct Pending<I> {
    pub(super) message: InMessage,
    pub(super) item: Result<I, String>,
    /// Kafka timestamp, ms (the time it was read when the message has none).
    pub(super) timestamp_ms: i64,
}

/// Keeps the member in its group during a long wait.
///
/// It polls the consumer once a tick without blocking: librdkafka then
/// counts the member as alive (max.poll.interval) and serves rebalances.
/// A poll may return a message (the next one of its partition, after
/// everything in the batch being written): it is kept, in order, and the
/// loop takes it before it polls again. At most one message a tick is
/// kept, so a wait of minutes holds a few hundred messages at most. The
/// partitions are not paused: pausing makes librdkafka drop what it
/// prefetched and fetch again from the last message returned, and a broker
/// that mishandles a fetch from the middle of a record batch (tansu 0.6)
/// then skips messages.
#[derive(Default)]
pub(super) struct KeepAlive {
    /// Messages the keep-alive polls returned, with their timestamps.
    pub(super) stash: Vec<(InMessage, i64)>,
}

impl KeepAlive {
    fn poll<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        match consumer.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                let timestamp_ms = m.timestamp().to_millis().unwrap_or_else(now_ms);
                self.stash.push((InMessage::from_kafka(&m), timestamp_ms));
            }
            Some(Err(e)) => warn!(error = %e, "kafka consumer error"),
            None => {}
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs `fut` until it ends (`Some`) or `timeout` passes (`None`), polling
/// the consumer every [`KEEP_ALIVE_EVERY`] meanwhile when `keep` is given.
fn wait<T, C: ConsumerContext>(
    runtime: &Handle,
    consumer: &BaseConsumer<C>,
    mut keep: Option<&mut KeepAlive>,
    timeout: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    runtime.block_on(async {
        tokio::pin!(fut);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let tick = (deadline - tokio::time::Instant::now()).min(KEEP_ALIVE_EVERY);
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep(tick) => {
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    if let Some(keep) = keep.as_deref_mut() {
                        keep.poll(consumer);
                    }
                }
            }
        }
    })
}

/// The batch and everything needed to flush it.
pub(super) struct Batcher<S: Sink> {
    pub(super) sink: S,
    pub(super) pending: Vec<Pending<S::Item>>,
    dead_letters: DeadLetters,
    config: KafkaConfig,
    pub(super) metrics: Arc<Metrics>,
    health: Health,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    /// When a flush after SIGTERM stops retrying.
    shutdown_deadline: Option<Instant>,
    /// The age gauge of the oldest pending message.
    pub(super) oldest: OldestUnwritten,
    pub(super) lag: Lag,
    pub(super) assignment: Assignment,
    pub(super) keep_alive: KeepAlive,
    /// Where each partition's next message is expected.
    pub(super) positions: super::positions::Positions,
    /// An error a flush inside a rebalance callback could not return.
    pub(super) fatal: Option<RunError>,
}

/// What [`Batcher::new`] takes.
pub(super) struct Parts<S> {
    pub(super) sink: S,
    pub(super) config: KafkaConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Health,
    pub(super) runtime: Handle,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) oldest: OldestUnwritten,
    pub(super) assignment: Assignment,
}

impl<S: Sink> Batcher<S> {
    pub(super) fn new(parts: Parts<S>) -> Result<Batcher<S>, rdkafka::error::KafkaError> {
        Ok(Batcher {
            dead_letters: DeadLetters::new(&parts.config, S::NAME)?,
            lag: Lag::new(&parts.config),
            sink: parts.sink,
            pending: Vec::new(),
            config: parts.config,
            metrics: parts.metrics,
            health: parts.health,
            runtime: parts.runtime,
            stop: parts.stop,
            shutdown_deadline: None,
            oldest: parts.oldest,
            assignment: parts.assignment,
            keep_alive: KeepAlive::default(),
            positions: super::positions::Positions::default(),
            fatal: None,
        })
    }

    fn labels(&self) -> SinkLabels {
        SinkLabels { sink: S::NAME }
    }

    /// Sets the oldest-unwritten gauge from what is pending now.
    fn note_pending(&self) {
        self.oldest
            .set(self.pending.iter().map(|p| p.timestamp_ms).min());
    }

    /// Counts a flush of a non-empty batch by what triggered it.
    pub(super) fn count_flush(&self, reason: &'static str) {
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

    /// When the flush must give up: the revoke deadline, or after SIGTERM
    /// the shutdown budget; `None` (retry until the store is back) else.
    fn deadline(&mut self, mode: Mode) -> Option<Instant> {
        match mode {
            Mode::Revoke { deadline } => Some(deadline),
            Mode::Loop if self.stop.load(Ordering::Relaxed) => Some(
                *self
                    .shutdown_deadline
                    .get_or_insert_with(|| Instant::now() + SHUTDOWN_FLUSH_BUDGET),
            ),
            Mode::Loop => None,
        }
    }

    /// Sleeps `backoff`, keeping the member alive when `mode` allows.
    fn sleep(&mut self, consumer: &BaseConsumer<SourceContext<S>>, mode: Mode, backoff: Duration) {
        let keep = matches!(mode, Mode::Loop).then_some(&mut self.keep_alive);
        wait(
            &self.runtime,
            consumer,
            keep,
            backoff,
            std::future::pending::<()>(),
        );
    }

    /// Writes the pending batch, dead-letters what can never be written,
    /// and commits. `Ok(false)` when the store stayed down past the mode's
    /// deadline: nothing was committed, and the messages of partitions this
    /// member still owns stay pending.
    pub(super) fn flush(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        mode: Mode,
    ) -> Result<bool, RunError> {
        let flushed = self.flush_pending(consumer, mode);
        // What this member lost meanwhile is its next owner's to write.
        let assignment = self.assignment.clone();
        self.pending
            .retain(|p| assignment.owns(&p.message.topic, p.message.partition));
        self.keep_alive
            .stash
            .retain(|(m, _)| assignment.owns(&m.topic, m.partition));
        self.positions
            .retain(|topic, partition| assignment.owns(topic, partition));
        self.note_pending();
        flushed
    }

    fn flush_pending(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        mode: Mode,
    ) -> Result<bool, RunError> {
        if self.pending.is_empty() {
            return Ok(true);
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
        // 1. Write; what can never be written is narrowed down to messages.
        let mut written = true;
        let all: Vec<usize> = (0..good.len()).collect();
        let mut work = vec![all];
        while let Some(part) = work.pop() {
            let items: Vec<&S::Item> = part.iter().map(|&i| good[i].1).collect();
            match self.write_retrying(consumer, &items, mode) {
                Ok(rejected) => {
                    dead.extend(rejected.into_iter().map(|(i, r)| (good[part[i]].0, r)));
                }
                Err(WriteError::Transient(reason)) => {
                    warn!(%reason, "the store stayed down past the deadline; the batch stays pending");
                    written = false;
                    break;
                }
                Err(WriteError::Permanent(reason) | WriteError::TooLarge(reason))
                    if part.len() == 1 =>
                {
                    dead.push((good[part[0]].0, reason));
                }
                Err(e) => {
                    warn!(error = %e, messages = part.len(), "a write failed for good; writing it again in halves");
                    let (a, b) = part.split_at(part.len() / 2);
                    work.push(b.to_vec());
                    work.push(a.to_vec());
                }
            }
        }
        // 2. Dead-letter, each acknowledged.
        if written {
            for (message, reason) in &dead {
                if !self.dead_letter(consumer, message, reason, mode)? {
                    written = false;
                    break;
                }
            }
        }
        if !written {
            // Nothing is committed. Every message stays pending (those already
            // written are written again harmlessly), so none is ever skipped.
            drop((good, dead));
            self.pending = pending;
            return Ok(false);
        }
        // 3. Everything read is durable now (written or dead-lettered): commit.
        self.oldest.set(None);
        self.commit(
            consumer,
            &pending.iter().map(|p| &p.message).collect::<Vec<_>>(),
            mode,
        );
        Ok(true)
    }

    /// Writes `items`, retrying transient failures until the mode's deadline.
    fn write_retrying(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        items: &[&S::Item],
        mode: Mode,
    ) -> Result<Rejected, WriteError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let deadline = self.deadline(mode);
            // A write that hangs (a half-open connection) counts as transient.
            let timeout = deadline.map_or(self.sink.write_timeout(), |d| {
                self.sink
                    .write_timeout()
                    .min(d.saturating_duration_since(started))
            });
            let keep = matches!(mode, Mode::Loop).then_some(&mut self.keep_alive);
            let result = wait(
                &self.runtime,
                consumer,
                keep,
                timeout,
                self.sink.write(items, &self.assignment),
            )
            .unwrap_or_else(|| {
                Err(WriteError::Transient(format!(
                    "no answer within {timeout:?}"
                )))
            });
            let outcome = match &result {
                Ok(_) => "ok",
                Err(WriteError::Transient(_)) => "transient_error",
                Err(WriteError::Permanent(_) | WriteError::TooLarge(_)) => "permanent_error",
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
                    if self
                        .deadline(mode)
                        .is_some_and(|d| Instant::now() + backoff > d)
                    {
                        return Err(WriteError::Transient(reason));
                    }
                    warn!(%reason, retry_in = ?backoff, "the store is unavailable; retrying");
                    self.lag.report_if_due(consumer, &self.metrics);
                    self.sleep(consumer, mode, backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Produces a dead letter and waits for Kafka's acknowledgement,
    /// retrying. `Ok(false)` when the mode's deadline passed first (a
    /// revocation, SIGTERM: the batch stays uncommitted); an error when the
    /// letter stayed unacknowledged for `KAFKA_DLQ_TIMEOUT`.
    fn dead_letter(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        message: &InMessage,
        reason: &str,
        mode: Mode,
    ) -> Result<bool, RunError> {
        warn!(
            partition = message.partition,
            offset = message.offset,
            reason = %dlq::bounded_reason(reason),
            "sending a message to the dead-letter topic"
        );
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let keep = matches!(mode, Mode::Loop).then_some(&mut self.keep_alive);
            let sent = wait(
                &self.runtime,
                consumer,
                keep,
                self.config.dlq_timeout + Duration::from_secs(5),
                self.dead_letters.send(message, reason),
            )
            .unwrap_or_else(|| Err("no acknowledgement".to_owned()));
            let error = match sent {
                Ok(()) => {
                    self.metrics
                        .dlq_messages
                        .get_or_create(&self.labels())
                        .inc();
                    return Ok(true);
                }
                Err(error) => error,
            };
            if self
                .deadline(mode)
                .is_some_and(|d| Instant::now() + backoff > d)
            {
                return Ok(false);
            }
            if started.elapsed() + backoff > self.config.dlq_timeout {
                return Err(RunError::DeadLetterStuck {
                    dlq_topic: self.config.dlq_topic.clone(),
                    topic: message.topic.clone(),
                    partition: message.partition,
                    offset: message.offset,
                    timeout: self.config.dlq_timeout,
                    error,
                });
            }
            error!(%error, partition = message.partition, offset = message.offset, "the dead-letter topic did not acknowledge; retrying");
            self.sleep(consumer, mode, backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Commits one past the last offset of each partition in `messages`
    /// that this member still owns, retrying a failed commit: a commit lost
    /// for good means the next owner reads the batch again (the sinks store
    /// nothing twice, but it costs a rewrite).
    fn commit(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        messages: &[&InMessage],
        mode: Mode,
    ) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in messages {
            let e = next.entry((m.topic.clone(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=COMMIT_ATTEMPTS {
            next.retain(|(topic, partition), _| self.assignment.owns(topic, *partition));
            if next.is_empty() {
                return;
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &next {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    let now_ms = now_ms() as u64;
                    let delay = self.metrics.commit_delay.get_or_create(&self.labels());
                    for m in messages {
                        if let Some(received) = m.received_at_ms() {
                            delay.observe(now_ms.saturating_sub(received) as f64 / 1000.0);
                        }
                    }
                    debug!(?next, "offsets committed");
                    self.lag.committed(&next);
                    return;
                }
                Err(e) if attempt < COMMIT_ATTEMPTS => {
                    warn!(error = %e, attempt, "committing offsets failed; retrying");
                    self.sleep(consumer, mode, backoff);
                    backoff *= 2;
                }
                Err(e) => error!(
                    error = %e,
                    "committing offsets failed; the batch will be read again and stored nothing twice"
                ),
            }
        }
    }

    /// Flushes before `revoked` are let go (called from the rebalance
    /// callback); when the store stays down past `deadline` their messages
    /// are dropped uncommitted (the rest stays pending).
    pub(super) fn revoke(
        &mut self,
        consumer: &BaseConsumer<SourceContext<S>>,
        revoked: &[(String, i32)],
        deadline: Instant,
    ) {
        self.count_flush("revoke");
        let result = self.flush_pending(consumer, Mode::Revoke { deadline });
        self.pending.retain(|p| {
            !revoked
                .iter()
                .any(|(t, n)| *t == p.message.topic && *n == p.message.partition)
        });
        self.keep_alive.stash.retain(|(m, _)| {
            !revoked
                .iter()
                .any(|(t, n)| *t == m.topic && *n == m.partition)
        });
        self.note_pending();
        for (topic, partition) in revoked {
            self.lag.revoked(topic, *partition);
        }
        self.positions
            .retain(|topic, partition| !revoked.iter().any(|(t, p)| t == topic && *p == partition));
        if let Err(fatal) = result {
            self.fatal.get_or_insert(fatal);
        }
    }
}
