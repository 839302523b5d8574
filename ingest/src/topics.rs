//! Topic creation and broker readiness.
//!
//! The collector starts whether or not Kafka is reachable. A background task
//! asks the broker for metadata every few seconds, creates whichever of our
//! topics is missing (with `KAFKA_TRACES_PARTITIONS` partitions and the
//! configured replication), and sets the readiness that `/readyz` reports.
//! Existing topics are never altered.

use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::producer::{client_config, Producer, BATCH_OVERHEAD};
use observatory_schemas::kafka::Signal;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long a metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between checks while not ready: quick, so a restarted broker is seen soon.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between checks while ready.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Whether the broker answered the last check and every topic exists.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// The last check's verdict.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Topics of ours that the metadata does not list.
fn missing_topics(producer: &Producer) -> Result<Vec<String>, rdkafka::error::KafkaError> {
    let metadata = producer.client().fetch_metadata(None, METADATA_TIMEOUT)?;
    let wanted = Signal::ALL.map(|s| producer.config().topic(s).to_owned());
    Ok(wanted
        .into_iter()
        .filter(|name| {
            !metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        })
        .collect())
}

async fn create_topics(config: &KafkaConfig, names: &[String]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let max_bytes = (config.message_max_bytes + BATCH_OVERHEAD).to_string();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| format!("create topics: {e}"))?;
    for result in results {
        match result {
            Ok(name) => info!(
                topic = name,
                partitions = config.partitions,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("create topic {name}: {code}")),
        }
    }
    Ok(())
}

/// Checks the broker and creates topics until `shutdown` fires; returns an
/// error when the producer hit a fatal error and the process must restart.
pub async fn maintain(
    producer: Producer,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        if let Some(fatal) = producer.fatal_error() {
            // The idempotent producer cannot recover; a restart gives a new one.
            readiness.set(false);
            metrics.kafka_ready.set(0);
            return Err(fatal);
        }
        let check = {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || missing_topics(&producer)).await
        };
        let ready = match check {
            Ok(Ok(missing)) if missing.is_empty() => true,
            Ok(Ok(missing)) => match create_topics(producer.config(), &missing).await {
                Ok(()) => matches!(
                    tokio::task::spawn_blocking({
                        let producer = producer.clone();
                        move || missing_topics(&producer)
                    })
                    .await,
                    Ok(Ok(m)) if m.is_empty()
                ),
                Err(error) => {
                    warn!(%error, "cannot create topics yet");
                    false
                }
            },
            Ok(Err(error)) => {
                if readiness.is_ready() {
                    warn!(%error, "kafka is unreachable");
                }
                false
            }
            Err(join_error) => {
                warn!(%join_error, "metadata check failed");
                false
            }
        };
        if ready != readiness.is_ready() {
            info!(ready, "kafka readiness changed");
        }
        readiness.set(ready);
        metrics.kafka_ready.set(ready as i64);
        let pause = if ready {
            CHECK_INTERVAL
        } else {
            RETRY_INTERVAL
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
