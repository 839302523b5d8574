//! Reading a topic back, from the beginning, without a consumer group.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One message read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Headers, as text.
    pub headers: BTreeMap<String, String>,
    /// Value.
    pub payload: Vec<u8>,
}

/// Partitions of `topic`, waiting up to `timeout` for it to exist.
pub fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> i32 {
    let consumer = consumer(brokers);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(3)) {
            if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    return t.partitions().len() as i32;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} did not appear within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create a kafka reader")
}

/// Reads `topic` from the beginning until `done` says the records read so far
/// are enough, or `timeout` passes (then returns what it has). Blocking.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let partitions = partition_count(brokers, topic, timeout);
    let consumer = consumer(brokers);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("a valid offset");
    }
    consumer.assign(&assignment).expect("assign partitions");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while Instant::now() < deadline && !done(&records) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(header.key.to_owned(), value.unwrap_or_default());
                    }
                }
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    records
}
