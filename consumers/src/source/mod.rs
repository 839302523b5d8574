//! The acknowledgement flow every sink shares: read a partitioned topic in a
//! consumer group, write batches durably, and only then commit offsets.
//!
//! The guarantee, in order ([`ack`] is where it happens, on one screen):
//! 1. messages are decoded into a batch (an undecodable one is marked for
//!    the dead-letter topic, never dropped);
//! 2. the batch is written by the [`Sink`] in one durable step; a transient
//!    failure (store down) retries with backoff, a permanent one is narrowed
//!    down to the messages that cause it, which go to the DLQ;
//! 3. dead letters are produced to `<topic>.dlq` and **acknowledged** (a
//!    letter that stays unacknowledged past `KAFKA_DLQ_TIMEOUT` stops the
//!    sink with an error naming its partition and offset, [`RunError`]);
//! 4. only then are offsets committed: for each partition this member still
//!    owns, one past the last offset of the batch. A batch holds a
//!    contiguous run of each partition, because messages are taken in order
//!    and nothing is skipped. A failed commit is retried.
//!
//! `enable.auto.commit` and `enable.auto.offset.store` are off: this module is
//! the only place that moves offsets. A crash anywhere before step 4 means the
//! batch is read again; sinks write idempotently, so that stores nothing twice.
//!
//! While a write or a dead letter takes long, the member stays in its group:
//! the consumer is polled once a second (a message it returns is kept for
//! the next batch, in order), so a slow store never gets the member evicted
//! mid-write. A rebalance
//! that revokes partitions during a write marks them in the [`Assignment`]
//! the sink can consult before its commit point, and nothing of them is
//! committed here. On revocation between writes the pending batch is
//! flushed within a bounded time and committed before the partitions are
//! let go (or left uncommitted for the next owner to write again). On
//! SIGTERM the loop stops fetching, flushes (within a bounded time when the
//! store is down) and commits.
//!
//! Messages are taken in order, each partition's offsets one after the
//! other: a message past a gap is not taken, the partition is read again
//! from the gap ([`positions`]), so a broker or client that skips records
//! after a refetch cannot make the sink commit past them.
//!
//! Files: [`consume`] is the poll loop and batching, [`ack`] the flush,
//! dead-letter and commit steps, [`positions`] the gap check,
//! [`rebalance`] the group callbacks,
//! [`dlq`] the dead-letter producer and topic, [`lag`] the lag gauge,
//! [`range`] bounded reads for replays, [`message`] the message type.

mod ack;
mod consume;
pub mod dlq;
mod lag;
pub mod message;
mod positions;
pub mod range;
mod rebalance;

pub use consume::{run, run_on_thread, run_range};
pub use dlq::dlq_headers;
pub use message::InMessage;
pub use range::{Range, RangeProgress};
pub use rebalance::Assignment;

use crate::admin::Health;
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Why a write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The store is down or slow: retry the same batch later.
    #[error("transient: {0}")]
    Transient(String),
    /// Something in the batch can never be written.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The batch is too much for the store at once (PostgreSQL out of
    /// memory or locks): written again in halves, down to single messages,
    /// and a single message that still fails goes to the DLQ.
    #[error("too large for one write: {0}")]
    TooLarge(String),
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
    /// written before must change nothing. A sink whose commit point is
    /// not atomic (object storage) checks `owned` just before it, and
    /// leaves out the partitions this member lost meanwhile.
    fn write(
        &mut self,
        items: &[&Self::Item],
        owned: &Assignment,
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

/// A write that has not answered in this long is abandoned and retried
/// (unless the sink says otherwise, [`Sink::write_timeout`]).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a sink's loop stopped with an error: the process must exit non-zero
/// so that its supervisor restarts it and the failure is seen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A dead letter was not acknowledged within `KAFKA_DLQ_TIMEOUT`.
    #[error(
        "the dead-letter topic {dlq_topic} did not take the message at {topic}/{partition}@{offset} \
         within {timeout:?} (KAFKA_DLQ_TIMEOUT): {error}; nothing of it was committed"
    )]
    DeadLetterStuck {
        /// The dead-letter topic.
        dlq_topic: String,
        /// The message's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// How long it was retried.
        timeout: Duration,
        /// The last error.
        error: String,
    },
    /// The consumer thread panicked.
    #[error("the {sink} consumer thread panicked: {message}")]
    Panicked {
        /// The sink.
        sink: &'static str,
        /// The panic's message.
        message: String,
    },
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
    pub runtime: tokio::runtime::Handle,
    /// Set to stop (SIGTERM).
    pub stop: Arc<AtomicBool>,
}
