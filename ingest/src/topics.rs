//! Topic creation and broker readiness.
//!
//! The collector starts whether or not Kafka is reachable. A background task
//! asks the broker for metadata every few seconds, creates whichever of our
//! topics is missing (with `KAFKA_TRACES_PARTITIONS` partitions and the
//! configured replication and `min.insync.replicas` of
//! [`observatory_schemas::kafka::min_insync_replicas`]: 2 with two replicas
//! or more, so that `acks=all` means "on two brokers"), and sets the
//! readiness that `/readyz` reports. Existing topics are never altered.
//! With `ENVIRONMENT=production`, a topic it produces to that has a single
//! replica is named in a warning once: one broker's loss would lose what
//! was acknowledged.

use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::producer::{client_config, Producer, BATCH_OVERHEAD};
use observatory_schemas::environment::Environment;
use observatory_schemas::kafka::{self, Signal};
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

/// What the metadata says of our topics.
#[derive(Debug, Default)]
struct TopicsState {
    /// Topics it does not list.
    missing: Vec<String>,
    /// Topics with a partition of a single replica.
    single_replica: Vec<String>,
}

/// Our topics, as the broker's metadata lists them.
fn topics_state(producer: &Producer) -> Result<TopicsState, rdkafka::error::KafkaError> {
    let metadata = producer.client().fetch_metadata(None, METADATA_TIMEOUT)?;
    let mut state = TopicsState::default();
    for name in Signal::ALL.map(|s| producer.config().topic(s).to_owned()) {
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
        match found {
            None => state.missing.push(name),
            Some(t) if t.partitions().iter().any(|p| p.replicas().len() < 2) => {
                state.single_replica.push(name)
            }
            Some(_) => {}
        }
    }
    Ok(state)
}

/// Topics of ours that the metadata does not list.
fn missing_topics(producer: &Producer) -> Result<Vec<String>, rdkafka::error::KafkaError> {
    topics_state(producer).map(|s| s.missing)
}

async fn create_topics(config: &KafkaConfig, names: &[String]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let max_bytes = (config.message_max_bytes + BATCH_OVERHEAD).to_string();
    let min_isr = kafka::min_insync_replicas(config.replication_factor).to_string();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("max.message.bytes", &max_bytes)
            .set("min.insync.replicas", &min_isr)
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

/// With `ENVIRONMENT=production`, names each topic we produce to that has
/// a single replica: `acks=all` then means one broker, whose loss loses
/// what was acknowledged.
async fn warn_about_durability(producer: &Producer, environment: Environment) {
    if !environment.is_production() {
        return;
    }
    let producer = producer.clone();
    let state = tokio::task::spawn_blocking(move || topics_state(&producer)).await;
    if let Ok(Ok(state)) = state {
        for topic in state.single_replica {
            warn!(
                %topic,
                "ENVIRONMENT=production and the topic has a single replica: one broker's loss \
                 loses acknowledged data; use replication 3 with min.insync.replicas 2"
            );
        }
    }
}

/// Checks the broker and creates topics until `shutdown` fires; returns an
/// error when the producer hit a fatal error and the process must restart.
pub async fn maintain(
    producer: Producer,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    environment: Environment,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut durability_checked = false;
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
        if ready && !durability_checked {
            durability_checked = true;
            warn_about_durability(&producer, environment).await;
        }
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
