//! Creating the topics the API produces to (the audit log's, the scores')
//! when they are missing, in the background, retrying until the broker
//! answers. Existing topics are never altered.

use std::time::Duration;

/// Creates `topic` with `partitions` partitions (the broker's default
/// replication) unless it exists; retries with backoff until it does.
pub fn ensure(brokers: &str, topic: &str, partitions: i32, extra: &[(String, String)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let (brokers, topic, extra) = (brokers.to_owned(), topic.to_owned(), extra.to_vec());
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut config = rdkafka::ClientConfig::new();
            config.set("bootstrap.servers", &brokers);
            for (k, v) in &extra {
                config.set(k, v);
            }
            let result = async {
                let admin: AdminClient<DefaultClientContext> =
                    config.create().map_err(|e| e.to_string())?;
                let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(-1));
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
                for r in admin
                    .create_topics([&new], &options)
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
                Err(error) => {
                    tracing::warn!(%error, %topic, "cannot create the topic yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
}
