//! The poll loop: read messages, decode them into the batch, and flush it
//! (`ack.rs`) at its size, its bytes, its age, on revocation and on
//! SIGTERM. One thread per sink; nothing here moves an offset.

use super::ack::{Batcher, Mode, Parts, Pending};
use super::positions::Verdict;
use super::rebalance::{Assignment, SourceContext};
use super::{dlq, Batching, InMessage, Range, RunError, Shared, Sink};
use crate::config::KafkaConfig;
use crate::metrics::{GroupLabels, SinkLabels};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

/// The longest one poll waits: how often an idle loop checks for SIGTERM
/// and refreshes the lag gauge.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The consumer's librdkafka settings.
fn client_config<S: Sink>(config: &KafkaConfig, bounded: bool) -> ClientConfig {
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
        .set("enable.partition.eof", bounded.to_string());
    for (k, v) in &config.extra {
        client.set(k, v);
    }
    client
}

/// The batch's running totals, to decide when it is flushed.
struct Fill {
    items: usize,
    bytes: usize,
    bytes_limit: usize,
    flush_due: Instant,
}

/// Runs a sink until `stop` is set: polls, batches, flushes at the batch
/// size or interval, commits, and on stop flushes once more.
/// Blocking: run it on its own thread.
pub fn run<S: Sink>(
    sink: S,
    config: KafkaConfig,
    batching: Batching,
    shared: Shared,
) -> Result<(), RunError> {
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
) -> Result<(), RunError> {
    let Shared {
        metrics,
        health,
        runtime,
        stop,
    } = shared;
    dlq::ensure_topic(&config, &runtime, &stop);
    let oldest = metrics
        .oldest_unwritten
        .get_or_create(&GroupLabels {
            group: config.group_id.clone(),
        })
        .clone();
    oldest.set(None);
    let assignment = if range.is_some() {
        Assignment::everything()
    } else {
        Assignment::default()
    };
    let batcher = Arc::new(Mutex::new(Some(Batcher::new(Parts {
        sink,
        config: config.clone(),
        metrics: metrics.clone(),
        health,
        runtime,
        stop: stop.clone(),
        oldest,
        assignment: assignment.clone(),
    })?)));
    let consumer: BaseConsumer<SourceContext<S>> = client_config::<S>(&config, range.is_some())
        .create_with_context(SourceContext {
            batcher: batcher.clone(),
            assignment,
        })?;
    match &range {
        None => consumer.subscribe(&[&config.topic])?,
        Some(range) => {
            let mut tpl = TopicPartitionList::new();
            for (p, next) in range.unfinished() {
                tpl.add_partition_offset(&config.topic, p, Offset::Offset(next))?;
            }
            consumer.assign(&tpl)?;
        }
    }
    info!(topic = %config.topic, group = %config.group_id, sink = S::NAME, bounded = range.is_some(), "consuming");

    let mut fill = Fill {
        items: 0,
        bytes: 0,
        bytes_limit: batching.batch_bytes,
        flush_due: Instant::now() + batching.flush_interval,
    };
    let labels = SinkLabels { sink: S::NAME };
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let mut guard = batcher.lock().expect("no poisoned lock");
        let b = guard
            .as_mut()
            .expect("the batcher lives as long as the loop");
        if let Some(fatal) = b.fatal.take() {
            break Err(fatal);
        }
        // Messages a keep-alive poll returned come first, in order.
        for (message, timestamp_ms) in std::mem::take(&mut b.keep_alive.stash) {
            accept(
                b,
                &consumer,
                range.as_ref(),
                &batching,
                &mut fill,
                message,
                timestamp_ms,
            );
        }
        drop(guard);
        // Until the batch's flush is due, at most IDLE_POLL. With nothing
        // pending no flush is due: a past `flush_due` must not turn the poll
        // into a busy loop.
        let wait = if fill.items == 0 {
            IDLE_POLL
        } else {
            fill.flush_due
                .saturating_duration_since(Instant::now())
                .min(IDLE_POLL)
        };
        let polled = consumer.poll(wait);
        let mut guard = batcher.lock().expect("no poisoned lock");
        let b = guard
            .as_mut()
            .expect("the batcher lives as long as the loop");
        match polled {
            Some(Ok(m)) => {
                b.metrics.messages.get_or_create(&labels).inc();
                let timestamp_ms = m.timestamp().to_millis().unwrap_or_else(now_ms);
                let message = InMessage::from_kafka(&m);
                accept(
                    b,
                    &consumer,
                    range.as_ref(),
                    &batching,
                    &mut fill,
                    message,
                    timestamp_ms,
                );
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                if let Some(range) = &range {
                    range.reached_eof(p);
                }
            }
            Some(Err(e)) => warn!(error = %e, "kafka consumer error"),
            None => {}
        }
        let reason = if fill.items >= batching.batch_size {
            Some("size")
        } else if fill.bytes >= fill.bytes_limit {
            Some("bytes")
        } else if fill.items > 0 && Instant::now() >= fill.flush_due {
            Some("interval")
        } else {
            None
        };
        if let Some(reason) = reason {
            // The loop does not poll for messages while a flush runs: the
            // flush pauses the partitions and polls only to stay alive.
            b.count_flush(reason);
            if let Err(fatal) = b.flush(&consumer, Mode::Loop) {
                break Err(fatal);
            }
            fill.items = b.pending.iter().map(|p| p.message.span_count()).sum();
            fill.bytes = b.pending.iter().map(|p| p.message.payload.len()).sum();
            fill.flush_due = Instant::now() + batching.flush_interval;
        }
        b.lag.report_if_due(&consumer, &b.metrics);
        if range.as_ref().is_some_and(Range::done) && b.keep_alive.stash.is_empty() {
            info!("the range is read: flushing and committing");
            break Ok(());
        }
    };
    if let Some(mut b) = batcher.lock().expect("no poisoned lock").take() {
        if result.is_ok() {
            info!("stopping: flushing and committing");
            b.count_flush("shutdown");
            b.flush(&consumer, Mode::Loop)?;
        } else {
            error!("stopping on an error: nothing pending is committed");
        }
    }
    match range {
        None => consumer.unsubscribe(),
        Some(_) => {
            let _ = consumer.unassign();
        }
    }
    result
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Takes one message into the batch (or, past a bounded read's end, pauses
/// its partition: that partition is done; or, past a gap, reads its
/// partition again, [`super::positions`]).
fn accept<S: Sink>(
    b: &mut Batcher<S>,
    consumer: &BaseConsumer<SourceContext<S>>,
    range: Option<&Range>,
    batching: &Batching,
    fill: &mut Fill,
    message: InMessage,
    timestamp_ms: i64,
) -> Verdict {
    if let Some(range) = range {
        if range.past_end(message.partition, message.offset) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&message.topic, message.partition);
            let _ = consumer.pause(&tpl);
            return Verdict::Pass;
        }
    }
    let verdict = b.positions.check(consumer, &message);
    if verdict != Verdict::Take {
        return verdict;
    }
    let item = b.sink.decode(&message);
    if b.pending.is_empty() {
        // A message waits at most one interval for its batch.
        fill.flush_due = Instant::now() + batching.flush_interval;
    }
    fill.bytes += message.payload.len();
    fill.bytes_limit = batching.batch_bytes.min(b.sink.batch_bytes_limit());
    let spans = message.span_count();
    fill.items += spans;
    if let Some(range) = range {
        range.read(message.partition, message.offset, spans as u64);
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
    Verdict::Take
}

/// Runs [`run`] on a thread of its own (`<sink>-consumer`) until `stop`,
/// then marks the process as draining (`/readyz` 503). A panic of that
/// thread is an error, so that the process exits non-zero and its
/// supervisor restarts it.
pub async fn run_on_thread<S: Sink>(
    sink: S,
    config: KafkaConfig,
    batching: Batching,
    shared: Shared,
) -> Result<(), RunError> {
    let health = shared.health.clone();
    let consumer = std::thread::Builder::new()
        .name(format!("{}-consumer", S::NAME))
        .spawn(move || run(sink, config, batching, shared))
        .expect("spawning the consumer thread");
    let result = tokio::task::spawn_blocking(move || consumer.join()).await;
    health.draining.store(true, Ordering::Relaxed);
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(RunError::Panicked {
            sink: S::NAME,
            message: panic_message(panic.as_ref()),
        }),
        Err(join) => Err(RunError::Panicked {
            sink: S::NAME,
            message: join.to_string(),
        }),
    }
}

/// The text a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
