//! `observatory-consumer dlq list` and `dlq replay --sink timescale|tempo`.
//!
//! Dead letters are what a sink gave up on: the original message (key,
//! value, headers) plus `dlq-reason`, `dlq-sink`, `dlq-source-topic`,
//! `dlq-source-partition` and `dlq-source-offset`
//! ([`crate::source::dlq_headers`]), in `<topic>.dlq`.
//!
//! - `list` reads the whole dead-letter topic and prints each letter with
//!   its sink, origin and reason, marked `sent-back` when the sink's DLQ
//!   group (`observatory-<sink>-dlq`) has already replayed past it, else
//!   `pending`.
//! - `replay` reads that sink's letters from where its DLQ group stopped up
//!   to the end offsets at start, through the same sink as
//!   `observatory-consumer <sink>` and the same flow
//!   ([`crate::source::run_range`]): what now succeeds is written
//!   (idempotently: a letter written before changes nothing); what still
//!   fails is produced to the dead-letter topic again, with its new reason
//!   and its original source, and acknowledged before the group's offset
//!   moves past the old letter. Letters of the other sink are skipped.

use super::{drive, finish, lookup_client, ReplayError, SinkSettings};
use crate::config::{DlqListArgs, DlqReplayArgs, KafkaConfig, SinkName};
use crate::metrics::Metrics;
use crate::source::{dlq_headers, Assignment, Batching, InMessage, Rejected, Sink, WriteError};
use crate::{tempo, timescale};
use observatory_schemas::kafka::headers;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a lookup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `list` waits for the letters it knows are there.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The DLQ group of `sink` unless one is given.
pub fn default_group(sink: SinkName) -> String {
    format!("observatory-{}-dlq", sink.as_str())
}

/// One dead letter, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// Partition in the dead-letter topic.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
    /// The sink that gave up (`dlq-sink`).
    pub sink: String,
    /// Why (`dlq-reason`).
    pub reason: String,
    /// Where it came from: topic, partition, offset.
    pub source: String,
    /// Its tenant header.
    pub tenant: String,
    /// Its span count header.
    pub spans: String,
}

impl Letter {
    /// Reads a letter's headers.
    pub fn from_headers(partition: i32, offset: i64, h: &BTreeMap<String, String>) -> Letter {
        let get = |k: &str| h.get(k).cloned().unwrap_or_else(|| "?".to_owned());
        Letter {
            partition,
            offset,
            sink: get(dlq_headers::SINK),
            reason: get(dlq_headers::REASON).replace(['\n', '\r'], " "),
            source: format!(
                "{}/{}@{}",
                get(dlq_headers::SOURCE_TOPIC),
                get(dlq_headers::SOURCE_PARTITION),
                get(dlq_headers::SOURCE_OFFSET)
            ),
            tenant: get(headers::TENANT),
            spans: get(headers::SPAN_COUNT),
        }
    }

    /// Its line in `list`.
    pub fn line(&self, status: &str) -> String {
        format!(
            "letter partition={} offset={} sink={} status={status} source={} tenant={} spans={} reason={}",
            self.partition, self.offset, self.sink, self.source, self.tenant, self.spans, self.reason
        )
    }
}

/// Committed offsets of `group` on `topic`'s `partitions` (absent: none).
fn committed(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let client = lookup_client(kafka, group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let found = client.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    Ok(found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// `dlq list`: prints every dead letter (of `--sink` only, if given).
pub async fn list(args: DlqListArgs) -> Result<(), ReplayError> {
    let kafka = args.kafka.into_config("dlq")?;
    let topic = match args.sink.and_then(SinkName::own_topic) {
        Some(own) => observatory_schemas::kafka::dlq_topic(&own),
        None => kafka.dlq_topic.clone(),
    };
    let client = lookup_client(&kafka, "observatory-dlq-list")?;
    let partitions = match super::range::partitions_of(&client, &topic) {
        Ok(p) => p,
        Err(super::range::RangeError::Missing(_)) => {
            println!("dlq topic={topic} letters=0 (the topic does not exist)");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, (low, high)) in super::range::watermarks(&client, &topic, &partitions)? {
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))?;
        }
    }
    let mut sent_back: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for sink in [
        SinkName::Timescale,
        SinkName::Tempo,
        SinkName::Metrics,
        SinkName::Logs,
    ] {
        let group = args.group.clone().unwrap_or_else(|| default_group(sink));
        // Unknown when the broker cannot say: the letters show as pending.
        let offsets = committed(&kafka, &group, &topic, &partitions).unwrap_or_default();
        sent_back.insert(sink.as_str().to_owned(), offsets);
    }
    let letters = read_letters(&client, &tpl, &ends)?;
    println!("dlq topic={topic} letters={}", letters.len());
    let (mut shown, mut pending) = (0, 0);
    for letter in &letters {
        if args.sink.is_some_and(|s| s.as_str() != letter.sink) {
            continue;
        }
        let done = sent_back
            .get(&letter.sink)
            .and_then(|o| o.get(&letter.partition))
            .is_some_and(|c| letter.offset < *c);
        if !done {
            pending += 1;
        }
        shown += 1;
        println!(
            "{}",
            letter.line(if done { "sent-back" } else { "pending" })
        );
    }
    println!("dlq shown={shown} pending={pending}");
    Ok(())
}

/// Reads the letters of `tpl` up to `ends` (exclusive).
fn read_letters(
    client: &BaseConsumer,
    tpl: &TopicPartitionList,
    ends: &BTreeMap<i32, i64>,
) -> Result<Vec<Letter>, ReplayError> {
    client.assign(tpl)?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + LIST_TIMEOUT;
    let mut letters = Vec::new();
    while ends
        .iter()
        .any(|(p, end)| next.get(p).is_none_or(|n| n < end))
    {
        if Instant::now() > deadline {
            eprintln!("dlq list: gave up waiting for the rest of the dead-letter topic");
            break;
        }
        match client.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                if ends
                    .get(&m.partition())
                    .is_none_or(|end| m.offset() >= *end)
                {
                    continue;
                }
                let h: BTreeMap<String, String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_owned(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                letters.push(Letter::from_headers(m.partition(), m.offset(), &h));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(letters)
}

/// A sink that only takes the dead letters `inner` gave up on; the other
/// sink's letters are read past (they are not this sink's to retry).
pub struct OnlyOwnLetters<S: Sink> {
    inner: S,
}

impl<S: Sink> Sink for OnlyOwnLetters<S>
where
    S::Item: Sync,
{
    type Item = Option<S::Item>;
    const NAME: &'static str = S::NAME;

    fn decode(&self, message: &InMessage) -> Result<Option<S::Item>, String> {
        if message.header(dlq_headers::SINK) != Some(S::NAME) {
            return Ok(None);
        }
        self.inner.decode(message).map(Some)
    }

    async fn write(
        &mut self,
        items: &[&Option<S::Item>],
        owned: &Assignment,
    ) -> Result<Rejected, WriteError> {
        let (index, own): (Vec<usize>, Vec<&S::Item>) = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.as_ref().map(|item| (i, item)))
            .unzip();
        if own.is_empty() {
            return Ok(Vec::new());
        }
        let rejected = self.inner.write(&own, owned).await?;
        Ok(rejected.into_iter().map(|(i, r)| (index[i], r)).collect())
    }

    fn batch_bytes_limit(&self) -> usize {
        self.inner.batch_bytes_limit()
    }

    fn write_timeout(&self) -> Duration {
        self.inner.write_timeout()
    }
}

/// `dlq replay`: sends the sink's pending dead letters back through it.
pub async fn replay(args: DlqReplayArgs, stop: Arc<AtomicBool>) -> Result<(), ReplayError> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| default_group(args.sink));
    let metrics = Arc::new(Metrics::new());
    match SinkSettings::parse(args.sink, &args.sink_args)? {
        SinkSettings::Timescale(settings) => {
            let health = crate::admin::Health::default();
            let Some(built) = timescale::build(&settings, metrics.clone(), &health, &stop).await?
            else {
                return Err(ReplayError::Interrupted);
            };
            let native = built.flavor == timescale::migrate::Flavor::Postgres;
            let batching = timescale::SIGNAL_BATCHING;
            match args.sink {
                SinkName::Metrics => {
                    let kafka = timescale::signal_kafka(&settings, &built.kafka, args.sink);
                    let inner = timescale::metrics_sink(&settings, native, metrics.clone())?;
                    let sink = OnlyOwnLetters { inner };
                    go(sink, kafka, batching, &args, group, metrics, stop).await
                }
                SinkName::Logs => {
                    let kafka = timescale::signal_kafka(&settings, &built.kafka, args.sink);
                    let inner = timescale::logs_sink(&settings, native, metrics.clone())?;
                    let sink = OnlyOwnLetters { inner };
                    go(sink, kafka, batching, &args, group, metrics, stop).await
                }
                _ => {
                    let sink = OnlyOwnLetters { inner: built.sink };
                    go(
                        sink,
                        built.kafka,
                        built.batching,
                        &args,
                        group,
                        metrics,
                        stop,
                    )
                    .await
                }
            }
        }
        SinkSettings::Tempo(settings) => {
            let (sink, kafka, batching) = tempo::build(&settings, metrics.clone())?;
            let sink = OnlyOwnLetters {
                inner: sink.for_redelivery(&kafka.dlq_topic),
            };
            go(sink, kafka, batching, &args, group, metrics, stop).await
        }
    }
}

async fn go<S: Sink>(
    sink: S,
    mut kafka: KafkaConfig,
    batching: Batching,
    args: &DlqReplayArgs,
    group: String,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<(), ReplayError> {
    // Read the dead-letter topic; what fails again goes back to it.
    kafka.topic = kafka.dlq_topic.clone();
    kafka.group_id = group;
    let client = lookup_client(&kafka, &kafka.group_id)?;
    let partitions = match super::range::partitions_of(&client, &kafka.topic) {
        Ok(p) => p,
        Err(super::range::RangeError::Missing(_)) => {
            println!(
                "dlq replay topic={} letters=0 (the topic does not exist)",
                kafka.topic
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let done = committed(&kafka, &kafka.group_id, &kafka.topic, &partitions)?;
    let mut ranges = BTreeMap::new();
    for (p, (low, high)) in super::range::watermarks(&client, &kafka.topic, &partitions)? {
        let first = done.get(&p).copied().unwrap_or(low).clamp(low, high);
        ranges.insert(p, (first, high));
    }
    drop(client);
    println!(
        "dlq replay sink={} topic={} group={}",
        S::NAME,
        kafka.topic,
        kafka.group_id
    );
    for (p, (first, end)) in &ranges {
        println!("plan partition={p} from={first} to={end}");
    }
    let outcome = drive(
        sink,
        kafka,
        batching,
        &ranges,
        metrics,
        stop,
        args.progress_interval,
    )
    .await?;
    finish("dlq replay finished", &outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_shows_its_origin_and_reason() {
        let h: BTreeMap<String, String> = [
            (dlq_headers::SINK, "timescale"),
            (dlq_headers::REASON, "permanent: db error:\nERROR: check"),
            (dlq_headers::SOURCE_TOPIC, "otlp_spans"),
            (dlq_headers::SOURCE_PARTITION, "3"),
            (dlq_headers::SOURCE_OFFSET, "120"),
            (headers::TENANT, "acme"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let letter = Letter::from_headers(0, 7, &h);
        assert_eq!(
            letter.line("pending"),
            "letter partition=0 offset=7 sink=timescale status=pending source=otlp_spans/3@120 \
             tenant=acme spans=? reason=permanent: db error: ERROR: check"
        );
        assert_eq!(default_group(SinkName::Tempo), "observatory-tempo-dlq");
    }
}
