//! The dead-letter topic: where a message goes that a sink can never write,
//! and the only way its offset may move on without it being written.
//!
//! A letter is the original record (key, value, headers) plus the `dlq-*`
//! headers of [`dlq_headers`]. The topic and the producer are sized so that
//! any record the source topic can hold fits with those headers added
//! (`KAFKA_MESSAGE_MAX_BYTES`, [`observatory_schemas::kafka::dlq_topic_max_bytes`]):
//! a poison message at the size limit must not stall the sink. How long a
//! letter is retried is the acknowledgement flow's business (`ack.rs`).

use super::InMessage;
use crate::config::KafkaConfig;
use observatory_schemas::kafka::{self, DLQ_REASON_MAX_BYTES};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;
use tracing::warn;

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

/// How long one produce may wait for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the topic check waits for the broker.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The producer of one sink's dead letters.
pub(super) struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    sink: &'static str,
}

/// The producer's settings: idempotent, acknowledged by every in-sync
/// replica, and able to send the largest letter.
pub(super) fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
        .set(
            "message.max.bytes",
            kafka::dlq_topic_max_bytes(config.message_max_bytes).to_string(),
        );
    for (k, v) in &config.extra {
        c.set(k, v);
    }
    c
}

/// `reason`, cut at a character boundary to fit [`DLQ_REASON_MAX_BYTES`].
pub(super) fn bounded_reason(reason: &str) -> &str {
    if reason.len() <= DLQ_REASON_MAX_BYTES {
        return reason;
    }
    let mut end = DLQ_REASON_MAX_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl DeadLetters {
    /// A producer for `config.dlq_topic`; connects lazily.
    pub(super) fn new(
        config: &KafkaConfig,
        sink: &'static str,
    ) -> Result<DeadLetters, rdkafka::error::KafkaError> {
        Ok(DeadLetters {
            producer: producer_config(config).create()?,
            topic: config.dlq_topic.clone(),
            sink,
        })
    }

    /// One attempt to produce `message` as a letter; `Ok` once the broker
    /// acknowledged it.
    pub(super) async fn send(&self, message: &InMessage, reason: &str) -> Result<(), String> {
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        // A dead letter sent back through a sink (`dlq replay`) that fails
        // again keeps its original source and gets a new reason.
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
                value: Some(bounded_reason(reason)),
            })
            .insert(Header {
                key: dlq_headers::SINK,
                value: Some(self.sink),
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
        let mut record = FutureRecord::to(&self.topic)
            .payload(&message.payload[..])
            .headers(h);
        if let Some(key) = &message.key {
            record = record.key(key);
        }
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}

/// Creates the dead-letter topic when missing (brokers seldom auto-create
/// topics in production, and a DLQ that cannot be written would stall the
/// sink on its first poison message), sized for the largest letter, with
/// `min.insync.replicas` of [`kafka::min_insync_replicas`]. An existing
/// topic is not altered; one that is too small for the largest letter is
/// named in a warning. Retries until the topic exists or `stop`.
pub(super) fn ensure_topic(config: &KafkaConfig, runtime: &Handle, stop: &AtomicBool) {
    let client = producer_config(config);
    let max_bytes = kafka::dlq_topic_max_bytes(config.message_max_bytes);
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let result = (|| {
            let admin: AdminClient<DefaultClientContext> =
                client.create().map_err(|e| e.to_string())?;
            let max_bytes = max_bytes.to_string();
            let min_isr = kafka::min_insync_replicas(config.replication_factor).to_string();
            let topic = NewTopic::new(
                &config.dlq_topic,
                config.dlq_partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("max.message.bytes", &max_bytes)
            .set("min.insync.replicas", &min_isr);
            let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
            let results = runtime
                .block_on(admin.create_topics([&topic], &options))
                .map_err(|e| e.to_string())?;
            let mut existed = false;
            for r in results {
                match r {
                    Ok(_) => {}
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
                    Err((name, code)) => return Err(format!("{name}: {code}")),
                }
            }
            if existed {
                warn_if_too_small(&admin, config, runtime, &options);
            }
            Ok::<(), String>(())
        })();
        match result {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, topic = %config.dlq_topic, "cannot create the dead-letter topic yet");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Warns when an existing dead-letter topic's `max.message.bytes` is below
/// what the largest letter needs (a topic made by hand or by an older
/// version). Best effort: a broker that does not describe configs is quiet.
fn warn_if_too_small(
    admin: &AdminClient<DefaultClientContext>,
    config: &KafkaConfig,
    runtime: &Handle,
    options: &AdminOptions,
) {
    let needed = kafka::dlq_topic_max_bytes(config.message_max_bytes);
    let described = runtime
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(&config.dlq_topic)], options));
    let Ok(results) = described else { return };
    for resource in results.into_iter().flatten() {
        let current = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(current) = current.filter(|c| *c < needed) {
            warn!(
                topic = %config.dlq_topic,
                current,
                needed,
                "the dead-letter topic's max.message.bytes is below the largest letter \
                 (KAFKA_MESSAGE_MAX_BYTES plus the dlq headers): raise it, or a poison \
                 message at the size limit will stop the sink"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(DLQ_REASON_MAX_BYTES);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= DLQ_REASON_MAX_BYTES);
        assert!(cut.len() >= DLQ_REASON_MAX_BYTES - 1);
        assert_eq!(bounded_reason("short"), "short");
    }
}
