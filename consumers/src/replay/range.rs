//! What a replay reads: `--from`/`--to` positions and `--partitions`, parsed
//! without I/O, then resolved against the broker into one offset range per
//! partition (`[first, end)`).
//!
//! A time is matched with Kafka's own index (ListOffsets by timestamp, as
//! `kafka-consumer-groups --to-datetime` does): the first message whose
//! timestamp is at or after it. An offset is taken as it is, for every
//! partition read, and clamped to what the partition holds. Without `--to`
//! a replay ends at the end offsets it found at start, so it ends even
//! while the collector keeps producing.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// How long one broker request of the resolution may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A place in the topic, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The oldest message kept (`earliest`).
    Earliest,
    /// The end offset at start (`latest`).
    Latest,
    /// An offset, the same for every partition read.
    Offset(i64),
    /// The first message at or after this time (milliseconds since the epoch).
    TimeMs(i64),
}

/// Why a range cannot be read.
#[derive(Debug, Error)]
pub enum RangeError {
    /// A flag's value does not parse.
    #[error("invalid {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The broker did not answer as needed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic or a partition asked for does not exist.
    #[error("{0}")]
    Missing(String),
}

impl Position {
    /// Parses an offset (digits), `earliest`, `latest`, or an RFC 3339 time
    /// (`2026-03-01T00:00:00Z`, `2026-03-01T02:00:00+02:00`, fractions allowed).
    ///
    /// ```
    /// use observatory_consumer::replay::range::Position;
    /// assert_eq!(Position::parse("42"), Ok(Position::Offset(42)));
    /// assert_eq!(Position::parse("1970-01-01T00:00:01Z"), Ok(Position::TimeMs(1000)));
    /// assert_eq!(Position::parse("1970-01-01T01:00:01+01:00"), Ok(Position::TimeMs(1000)));
    /// ```
    pub fn parse(text: &str) -> Result<Position, String> {
        let text = text.trim();
        match text {
            "earliest" | "beginning" => return Ok(Position::Earliest),
            "latest" | "end" => return Ok(Position::Latest),
            _ => {}
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(Position::Offset)
                .map_err(|e| format!("{text:?}: {e}"));
        }
        parse_time_ms(text).map(Position::TimeMs)
    }
}

/// RFC 3339 with `Z` or a numeric offset, to milliseconds since the epoch.
fn parse_time_ms(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("{text:?} is neither an offset nor an RFC 3339 time such as 2026-03-01T00:00:00Z")
    };
    if !text.is_ascii() {
        return Err(bad());
    }
    // humantime reads UTC times; a numeric offset is applied by hand.
    let (utc, shift_s) = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
        Some((head, tail))
            if head.contains('T')
                && (tail.starts_with('+') || tail.starts_with('-'))
                && tail.as_bytes()[3] == b':' =>
        {
            let hours: i64 = tail[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = tail[4..6].parse().map_err(|_| bad())?;
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (format!("{head}Z"), sign * (hours * 3600 + minutes * 60))
        }
        _ => (text.to_owned(), 0),
    };
    let time = humantime::parse_rfc3339(&utc).map_err(|_| bad())?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_millis() as i64;
    Ok(ms - shift_s * 1000)
}

/// Parses `--partitions`: comma-separated numbers, empty for all.
///
/// ```
/// use observatory_consumer::replay::range::parse_partitions;
/// assert_eq!(parse_partitions("0, 3,5"), Ok(vec![0, 3, 5]));
/// assert_eq!(parse_partitions(""), Ok(vec![]));
/// assert!(parse_partitions("a").is_err());
/// ```
pub fn parse_partitions(text: &str) -> Result<Vec<i32>, String> {
    let mut out: Vec<i32> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{p:?} is not a partition number"))
        })
        .collect::<Result<_, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The partitions of `topic`, sorted.
pub fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, RangeError> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| RangeError::Missing(format!("topic {topic} does not exist")))?;
    let mut out: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    out.sort_unstable();
    Ok(out)
}

/// The partitions to read: `wanted`, or all when empty; a partition the
/// topic does not have is an error.
pub fn select(all: &[i32], wanted: &[i32], topic: &str) -> Result<Vec<i32>, RangeError> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    if let Some(p) = wanted.iter().find(|p| !all.contains(p)) {
        return Err(RangeError::Missing(format!(
            "topic {topic} has no partition {p} (it has {})",
            all.len()
        )));
    }
    Ok(wanted.to_vec())
}

/// Where `position` is in each partition, within `[low, high]` (watermarks).
fn offsets_of(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    position: Position,
    watermarks: &BTreeMap<i32, (i64, i64)>,
) -> Result<BTreeMap<i32, i64>, RangeError> {
    let clamp = |p: i32, o: i64| {
        let (low, high) = watermarks[&p];
        o.clamp(low, high)
    };
    match position {
        Position::Earliest => Ok(partitions.iter().map(|p| (*p, watermarks[p].0)).collect()),
        Position::Latest => Ok(partitions.iter().map(|p| (*p, watermarks[p].1)).collect()),
        Position::Offset(o) => Ok(partitions.iter().map(|p| (*p, clamp(*p, o))).collect()),
        Position::TimeMs(ms) => {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
            }
            let found = consumer.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
            let mut out = BTreeMap::new();
            for e in found.elements() {
                if let Some(err) = e.error().err() {
                    return Err(RangeError::Kafka(err));
                }
                let offset = match e.offset() {
                    Offset::Offset(o) => clamp(e.partition(), o),
                    // No message at or after the time: the partition's end.
                    Offset::End | Offset::Invalid => watermarks[&e.partition()].1,
                    other => {
                        return Err(RangeError::Missing(format!(
                            "partition {}: the broker answered {other:?} for a time",
                            e.partition()
                        )))
                    }
                };
                out.insert(e.partition(), offset);
            }
            Ok(out)
        }
    }
}

/// `(low, end)` of each partition: the oldest offset kept and one past the
/// last message.
///
/// The end is the broker's high watermark, checked by reading from the
/// message before it to the end of the log: tansu 0.6 answers ListOffsets
/// (latest) with one past the *first* offset of the partition's last record
/// batch, so when that batch holds several messages (one request of the
/// collector, several traces on one partition) the others would be left
/// out; and it serves nothing to a fetch that starts inside a batch, hence
/// the read starts at that first offset (the watermark minus one). On Apache
/// Kafka the check reads the last message (and what was produced meanwhile)
/// and costs one fetch per partition. `consumer` must have
/// `enable.partition.eof` on.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>, RangeError> {
    let mut out = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, REQUEST_TIMEOUT)?;
        out.insert(*p, (low, high));
        tpl.add_partition_offset(topic, *p, Offset::Offset((high - 1).max(low)))?;
    }
    consumer.assign(&tpl)?;
    let mut open: Vec<i32> = partitions.to_vec();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    // Bounded: on a busy topic the end moves; what was found by then is the end.
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some((_, end)) = out.get_mut(&m.partition()) {
                    *end = (*end).max(m.offset() + 1);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|o| *o != p),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    consumer.unassign()?;
    Ok(out)
}

/// Resolves `[from, to)` for `partitions` of `topic`: `(first, end)` per
/// partition, with `to` defaulting to the end offsets now.
pub fn resolve(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    from: Position,
    to: Option<Position>,
) -> Result<BTreeMap<i32, (i64, i64)>, RangeError> {
    let watermarks = watermarks(consumer, topic, partitions)?;
    let first = offsets_of(consumer, topic, partitions, from, &watermarks)?;
    let end = offsets_of(
        consumer,
        topic,
        partitions,
        to.unwrap_or(Position::Latest),
        &watermarks,
    )?;
    Ok(partitions
        .iter()
        .map(|p| {
            let first = first[p];
            (*p, (first, end[p].max(first)))
        })
        .collect())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(Position::parse("0"), Ok(Position::Offset(0)));
        assert_eq!(Position::parse("earliest"), Ok(Position::Earliest));
        assert_eq!(Position::parse("latest"), Ok(Position::Latest));
        assert_eq!(
            Position::parse("2026-03-01T00:00:00Z"),
            Ok(Position::TimeMs(1_772_323_200_000))
        );
        assert_eq!(
            Position::parse("2026-03-01T00:00:00.250Z"),
            Ok(Position::TimeMs(1_772_323_200_250))
        );
        assert_eq!(
            Position::parse("2026-02-28T19:00:00-05:00"),
            Ok(Position::TimeMs(1_772_323_200_000))
        );
        assert!(Position::parse("yesterday").is_err());
        assert!(Position::parse("-5").is_err());
        assert!(Position::parse("").is_err());
    }

    #[test]
    fn partitions_are_checked() {
        assert_eq!(select(&[0, 1, 2], &[], "t").unwrap(), vec![0, 1, 2]);
        assert_eq!(select(&[0, 1, 2], &[2], "t").unwrap(), vec![2]);
        assert!(select(&[0, 1, 2], &[3], "t").is_err());
        assert_eq!(parse_partitions("5,1,5").unwrap(), vec![1, 5]);
        assert!(parse_partitions("-1").is_err());
    }
}
