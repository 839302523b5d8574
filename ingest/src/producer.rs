//! Producing messages to Kafka and waiting for the broker's acknowledgement.
//!
//! The guarantee of the whole collector rests here: [`Producer::send_all`]
//! returns `Ok` only once the broker acknowledged **every** message of the
//! request (`acks=all`, idempotent producer, so librdkafka's own retries
//! cannot reorder or double a message). Anything else (a full local queue, a
//! delivery error, no answer within the produce timeout) is an error the
//! client is told to retry; messages of that request that did reach Kafka
//! will then be there twice, which the sinks dedupe on (trace id, span id).
//!
//! Partitioning is librdkafka's `murmur2_random`, the Java client's murmur2
//! over the key ([`observatory_schemas::kafka::partition_for_key`]).

use crate::budget::Reservation;
use crate::config::KafkaConfig;
use crate::error::IngestError;
use crate::metrics::{Metrics, SignalLabel, SignalLabels};
use crate::split::Message;
use observatory_schemas::kafka::{headers, Signal, CONTENT_TYPE_PROTOBUF, SCHEMA_VERSION};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{debug, warn};

/// Bytes kept free in every message for its key, headers and record framing,
/// so that the whole record stays within `KAFKA_MESSAGE_MAX_BYTES`. The key is
/// 32 bytes and the six headers under 200 with a 64-character tenant.
pub const RECORD_OVERHEAD_RESERVE: usize = 512;

/// The acknowledgements of one request: a count of messages without an
/// answer yet, the first failure, and one wake-up for the waiting request
/// when the count reaches zero (not one per message).
///
/// It also holds the request's in-flight [`Reservation`]: every queued
/// message holds an `Arc` of it, so the budget is freed only when librdkafka
/// has answered for the last one, even if the client gave up or was told to
/// retry long before.
pub struct Acks {
    pending: AtomicUsize,
    delivered: AtomicU64,
    failure: Mutex<Option<String>>,
    done: Mutex<Option<oneshot::Sender<()>>>,
    _reservation: Reservation,
}

impl Acks {
    /// Marks `n` messages answered; wakes the request after the last.
    fn settle(&self, n: usize) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            if let Some(done) = self.done.lock().expect("no poisoned lock").take() {
                let _ = done.send(());
            }
        }
    }

    fn fail(&self, reason: String) {
        self.failure
            .lock()
            .expect("no poisoned lock")
            .get_or_insert(reason);
    }
}

/// Room for record-batch framing on top of the message limit: the topic's
/// `max.message.bytes` is `KAFKA_MESSAGE_MAX_BYTES + BATCH_OVERHEAD`.
pub const BATCH_OVERHEAD: usize = observatory_schemas::kafka::TOPIC_BATCH_OVERHEAD;

/// librdkafka context: counts deliveries per request and logs client errors.
pub struct Context {
    metrics: Arc<Metrics>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_error("client");
        warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        match result {
            Ok(_) => {
                acks.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.metrics.kafka_error("delivery");
                acks.fail(error.to_string());
            }
        }
        acks.settle(1);
    }
}

/// Who sent a request, and when: the per-message headers.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The tenant.
    pub tenant: String,
    /// Receive time, milliseconds since the epoch.
    pub received_at_ms: u64,
}

/// The Kafka producer of all three signals.
#[derive(Clone)]
pub struct Producer {
    inner: ThreadedProducer<Context>,
    config: Arc<KafkaConfig>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

/// The librdkafka settings of the producer.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", "observatory-collector")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("batch.num.messages", config.batch_size.to_string())
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        // Records are at most KAFKA_MESSAGE_MAX_BYTES; a request (a batch of
        // records) may hold several of them.
        .set(
            "message.max.bytes",
            (config.message_max_bytes + BATCH_OVERHEAD)
                .max(1_000_000)
                .to_string(),
        )
        // A batch must fit the topic's max.message.bytes (the limit plus
        // BATCH_OVERHEAD, set by topics.rs), or the broker refuses it whole.
        .set("batch.size", config.message_max_bytes.to_string())
        // The in-flight budget bounds memory; librdkafka's own queue only
        // needs to hold that much.
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.keepalive.enable", "true");
    for (k, v) in &config.extra {
        c.set(k, v);
    }
    c
}

impl Producer {
    /// Creates the producer; it connects lazily, so this works with the broker down.
    pub fn new(
        config: KafkaConfig,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let inner = client_config(&config).create_with_context(Context {
            metrics: metrics.clone(),
        })?;
        Ok(Producer {
            inner,
            config: Arc::new(config),
            metrics,
            timeout,
        })
    }

    /// The librdkafka client, for metadata requests.
    pub fn client(&self) -> &rdkafka::client::Client<Context> {
        self.inner.client()
    }

    /// The Kafka configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Largest payload of one message.
    pub fn value_budget(&self) -> usize {
        self.config.message_max_bytes - RECORD_OVERHEAD_RESERVE
    }

    /// Produces `messages` and waits until Kafka acknowledged all of them.
    ///
    /// `reservation` is held until every message has an answer from librdkafka
    /// (see [`Acks`]), so that librdkafka's queue stays within the in-flight budget.
    pub async fn send_all(
        &self,
        signal: Signal,
        origin: &Origin,
        messages: Vec<Message>,
        reservation: Reservation,
    ) -> Result<(), IngestError> {
        let started = Instant::now();
        let topic = self.config.topic(signal);
        let received_at = origin.received_at_ms.to_string();
        let (done, answered) = oneshot::channel();
        // One extra pending count guards against the last delivery arriving
        // before every message is queued.
        let acks = Arc::new(Acks {
            pending: AtomicUsize::new(messages.len() + 1),
            delivered: AtomicU64::new(0),
            failure: Mutex::new(None),
            done: Mutex::new(Some(done)),
            _reservation: reservation,
        });
        let mut bytes = 0u64;
        let mut refused = false;
        for (queued, message) in messages.iter().enumerate() {
            let count = message.items.to_string();
            let headers = OwnedHeaders::new_with_capacity(6)
                .insert(header(headers::CONTENT_TYPE, CONTENT_TYPE_PROTOBUF))
                .insert(header(headers::OTLP_SIGNAL, signal.as_str()))
                .insert(header(headers::TENANT, &origin.tenant))
                .insert(header(headers::RECEIVED_AT_MS, &received_at))
                .insert(header(headers::SPAN_COUNT, &count))
                .insert(header(headers::SCHEMA_VERSION, SCHEMA_VERSION));
            let record = BaseRecord::with_opaque_to(topic, acks.clone())
                .key(&message.key)
                .payload(&message.payload)
                .headers(headers);
            if let Err((error, _)) = self.inner.send(record) {
                let kind = match error {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => "queue_full",
                    _ => "send",
                };
                self.metrics.kafka_error(kind);
                acks.fail(format!("the producer queue refused a message: {error}"));
                acks.settle(messages.len() - queued);
                refused = true;
                break;
            }
            bytes += message.payload.len() as u64;
        }
        drop(messages);
        acks.settle(1);

        let answered_in_time = !refused
            && matches!(
                tokio::time::timeout(self.timeout, answered).await,
                Ok(Ok(()))
            );
        if !refused && !answered_in_time {
            self.metrics.kafka_error("timeout");
            acks.fail(format!(
                "no acknowledgement within {}",
                humantime::format_duration(self.timeout)
            ));
        }

        let labels = SignalLabels {
            signal: SignalLabel(signal),
        };
        let delivered = acks.delivered.load(Ordering::Relaxed);
        self.metrics
            .produced_messages
            .get_or_create(&labels)
            .inc_by(delivered);
        if let Some(failure) = acks.failure.lock().expect("no poisoned lock").take() {
            return Err(IngestError::Kafka(failure));
        }
        self.metrics
            .produced_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
        self.metrics
            .produce_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        debug!(
            signal = signal.as_str(),
            delivered, "request acknowledged by kafka"
        );
        Ok(())
    }

    /// A fatal producer error (the idempotent producer cannot go on), if any.
    pub fn fatal_error(&self) -> Option<String> {
        self.inner
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
    }

    /// Waits up to `timeout` for every queued message to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::BaseProducer;

    /// Managed Kafka (MSK, Confluent Cloud, Event Hubs) needs TLS and SASL:
    /// librdkafka refuses these settings when built without OpenSSL ("OpenSSL
    /// not available at build time"). Creating the client connects nowhere
    /// yet (the bootstrap address is unused).
    #[test]
    fn tls_and_scram_are_built_in() {
        for (protocol, mechanism) in [
            ("ssl", None),
            ("sasl_ssl", Some("SCRAM-SHA-512")),
            ("sasl_ssl", Some("SCRAM-SHA-256")),
            ("sasl_ssl", Some("PLAIN")),
        ] {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("security.protocol", protocol);
            if let Some(mechanism) = mechanism {
                config
                    .set("sasl.mechanism", mechanism)
                    .set("sasl.username", "u")
                    .set("sasl.password", "p");
            }
            let created: Result<BaseProducer, _> = config.create();
            assert!(
                created.is_ok(),
                "{protocol} {mechanism:?}: {:?}",
                created.err()
            );
        }
    }
}
