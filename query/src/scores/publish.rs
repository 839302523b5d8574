//! Publishing score writes to the `scores` topic: the API's only write
//! path for scores (the PostgreSQL sink stores them).
//!
//! What it guarantees: [`Publisher::publish`] returns `Ok` only once the
//! broker acknowledged every message (`acks=all`, idempotent producer), as
//! the collector does for spans; otherwise the caller answers 503 and the
//! client retries, which is harmless (a score's id is stable, the sink
//! keeps the later write). Each message carries the tenant header the
//! sink checks and is keyed by [`ScoreMessage::key`] (the target trace).

use observatory_schemas::kafka::headers;
use observatory_schemas::scores::ScoreMessage;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// How long one publish may wait for the broker.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer could not be created.
    #[error("kafka producer: {0}")]
    Create(rdkafka::error::KafkaError),
    /// The broker did not acknowledge a message.
    #[error("the broker did not acknowledge a score: {0}")]
    Delivery(rdkafka::error::KafkaError),
    /// A message did not encode (never for a checked score).
    #[error("score message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The scores topic's producer.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    /// A producer for `topic` on `brokers`, with `extra` librdkafka settings
    /// (TLS, SASL).
    pub fn new(
        brokers: &str,
        topic: &str,
        extra: &[(String, String)],
    ) -> Result<Publisher, PublishError> {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("partitioner", "murmur2_random");
        for (k, v) in extra {
            config.set(k, v);
        }
        Ok(Publisher {
            producer: config.create().map_err(PublishError::Create)?,
            topic: topic.to_owned(),
        })
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `messages` of `tenant`, all at once; `Ok` once the broker
    /// acknowledged every one.
    pub async fn publish(
        &self,
        tenant: &str,
        messages: &[ScoreMessage],
    ) -> Result<(), PublishError> {
        let payloads: Vec<Vec<u8>> = messages
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()?;
        let sends = messages.iter().zip(&payloads).map(|(message, payload)| {
            let record = FutureRecord::to(&self.topic)
                .key(message.key())
                .payload(payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: headers::TENANT,
                    value: Some(tenant),
                }));
            self.producer.send(record, DELIVERY_TIMEOUT)
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| PublishError::Delivery(e))?;
        }
        Ok(())
    }
}
