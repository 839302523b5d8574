//! The scores sink: reads the `scores` topic in its own consumer group
//! (`observatory-timescale-scores`, or `KAFKA_GROUP_ID` with `-scores`) and writes the `scores` table. It runs inside
//! `observatory-consumer timescale` beside the spans' loop (same database,
//! same process), with its own offsets, lag and dead letters
//! (`scores.dlq`).
//!
//! Delivery: as for every sink ([`crate::source`]): a batch is one
//! PostgreSQL transaction, committed before its offsets. Writes are upserts
//! that keep the later write of each id ([`store`]), so a crash, a
//! re-delivery or a replay in any order ends with the same rows. A message
//! that is not a valid score message of its tenant (undecodable JSON, a
//! check that fails, a tenant other than its header's) goes to the DLQ.

pub mod store;

use crate::config::Db;
use crate::metrics::{Metrics, TableLabels};
use crate::source::{self, Assignment, InMessage, Sink, WriteError};
use crate::timescale::writer::{classify, Writer};
use observatory_schemas::scores::ScoreMessage;
use std::sync::Arc;
use store::{Batch, ScoreWrite};

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "scores";

/// The sink: score messages to rows.
pub struct ScoresSink {
    writer: Writer,
    metrics: Arc<Metrics>,
}

impl ScoresSink {
    /// A sink writing to `db` (migrated already by the spans' sink).
    pub fn new(db: Db, metrics: Arc<Metrics>) -> ScoresSink {
        ScoresSink {
            writer: Writer::new(db, false),
            metrics,
        }
    }
}

/// Creates a topic read beside the spans (scores, metrics, logs) when it
/// is missing, with as many partitions as `like` (the traces topic; 16
/// when it cannot be read), so that a trace's spans and scores share a
/// partition number. A topic the API has not
/// created yet would otherwise be seen by this group's subscription only at
/// librdkafka's next metadata refresh (5 minutes). Best effort: a few
/// tries, then a warning; the loop subscribes either way.
pub async fn ensure_topic(config: &crate::config::KafkaConfig, like: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::types::RDKafkaErrorCode;
    use std::time::Duration;
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (k, v) in &config.extra {
        client.set(k, v);
    }
    for attempt in 0..5u32 {
        let result = async {
            let metadata = {
                let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
                let like = like.to_owned();
                tokio::task::spawn_blocking(move || {
                    consumer
                        .fetch_metadata(Some(&like), Duration::from_secs(5))
                        .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
            };
            let partitions = if metadata > 0 { metadata as i32 } else { 16 };
            let admin: AdminClient<DefaultClientContext> =
                client.create().map_err(|e| e.to_string())?;
            let topic = NewTopic::new(
                &config.topic,
                partitions,
                TopicReplication::Fixed(config.replication_factor),
            );
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
            for r in admin
                .create_topics([&topic], &options)
                .await
                .map_err(|e| e.to_string())?
            {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => return Err(format!("{name}: {code}")),
                }
            }
            Ok::<(), String>(())
        }
        .await;
        match result {
            Ok(()) => return,
            Err(error) if attempt == 4 => {
                tracing::warn!(%error, topic = %config.topic, "cannot create the topic; subscribing anyway");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500 << attempt)).await,
        }
    }
}

/// Decodes one message of the topic, refusing what can never be stored.
pub fn decode(message: &InMessage) -> Result<ScoreWrite, String> {
    let tenant = message.tenant()?;
    let parsed: ScoreMessage = serde_json::from_slice(&message.payload)
        .map_err(|e| format!("not a score message: {e}"))?;
    let (of, id) = match &parsed {
        ScoreMessage::Upsert { score } => {
            score.check().map_err(|e| format!("invalid score: {e}"))?;
            (score.tenant.as_str(), score.id.as_str())
        }
        ScoreMessage::Delete { tenant, id, .. } => (tenant.as_str(), id.as_str()),
    };
    if of != tenant {
        return Err(format!(
            "score {id:?} is of tenant {of:?} but its message's header says {tenant:?}"
        ));
    }
    if id.is_empty() {
        return Err("a score message without an id".into());
    }
    Ok(ScoreWrite::of(parsed))
}

impl Sink for ScoresSink {
    type Item = ScoreWrite;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<ScoreWrite, String> {
        decode(message)
    }

    async fn write(
        &mut self,
        items: &[&ScoreWrite],
        _owned: &Assignment,
    ) -> Result<source::Rejected, WriteError> {
        let mut batch = Batch::default();
        for item in items {
            batch.add(item);
        }
        let changed = async {
            let client = self.writer.client().await?;
            let tx = client.transaction().await?;
            let changed = batch.upsert(&tx).await?;
            tx.commit().await?;
            Ok::<u64, tokio_postgres::Error>(changed)
        }
        .await
        .map_err(|e| {
            self.writer.forget_closed();
            classify(e)
        })?;
        self.metrics
            .rows_written
            .get_or_create(&TableLabels {
                sink: NAME,
                table: "scores",
            })
            .inc_by(changed);
        self.metrics
            .rows_duplicate
            .get_or_create(&TableLabels {
                sink: NAME,
                table: "scores",
            })
            .inc_by(items.len() as u64 - changed);
        Ok(Vec::new())
    }
}
