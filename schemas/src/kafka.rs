//! The Kafka wire contract: topics, message keys, headers and partitioning.
//!
//! One message carries the spans of **one trace** from one incoming request,
//! as a protobuf `ExportTraceServiceRequest` that keeps their resource and
//! scope. Its key is the trace id as 32 lowercase hex characters (the key the
//! OpenTelemetry Collector's kafka exporter writes with
//! `partition_traces_by_id`), and its partition is [`partition_for_key`]:
//! murmur2 as Java clients compute it (librdkafka's `murmur2_random`). A
//! stock OpenTelemetry Collector `kafka` receiver with `encoding: otlp_proto`
//! reads these topics as they are.
//!
//! Metrics and logs are keyed by a stable hash of their resource attributes
//! (see [`crate::resource_key`]).

use crate::murmur2::murmur2;

/// Default topic of traces.
pub const TRACES_TOPIC: &str = "otlp_spans";
/// Default topic of metrics.
pub const METRICS_TOPIC: &str = "otlp_metrics";
/// Default topic of logs.
pub const LOGS_TOPIC: &str = "otlp_logs";
/// Default topic of scores (JSON messages of [`crate::scores`]).
pub const SCORES_TOPIC: &str = "scores";
/// Suffix of a topic's dead-letter topic: `otlp_spans` → `otlp_spans.dlq`.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `topic`.
///
/// ```
/// assert_eq!(observatory_schemas::kafka::dlq_topic("otlp_spans"), "otlp_spans.dlq");
/// ```
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Room for record-batch framing on top of `KAFKA_MESSAGE_MAX_BYTES`: a
/// topic's `max.message.bytes` is the limit plus this, so the largest
/// record a topic can hold is `KAFKA_MESSAGE_MAX_BYTES + TOPIC_BATCH_OVERHEAD`.
pub const TOPIC_BATCH_OVERHEAD: usize = 1024;

/// Bytes a dead letter may add to its message: the `dlq-*` headers, with the
/// reason cut to [`DLQ_REASON_MAX_BYTES`] and a topic name of at most 249
/// bytes (Kafka's own limit).
pub const DLQ_HEADERS_RESERVE: usize = 4096;

/// The longest `dlq-reason` header, bytes.
pub const DLQ_REASON_MAX_BYTES: usize = 1024;

/// The largest record of a topic created for `message_max_bytes`
/// (`KAFKA_MESSAGE_MAX_BYTES`), and so the largest message a sink may read.
///
/// ```
/// assert_eq!(observatory_schemas::kafka::topic_record_limit(1_000_000), 1_001_024);
/// ```
pub const fn topic_record_limit(message_max_bytes: usize) -> usize {
    message_max_bytes + TOPIC_BATCH_OVERHEAD
}

/// The `max.message.bytes` of the dead-letter topic of a topic created for
/// `message_max_bytes`: any record of the source topic fits, with the
/// dead-letter headers added.
///
/// ```
/// use observatory_schemas::kafka::{dlq_topic_max_bytes, topic_record_limit};
/// assert!(dlq_topic_max_bytes(1_000_000) > topic_record_limit(1_000_000) + 4000);
/// ```
pub const fn dlq_topic_max_bytes(message_max_bytes: usize) -> usize {
    topic_record_limit(message_max_bytes) + DLQ_HEADERS_RESERVE + TOPIC_BATCH_OVERHEAD
}

/// The `min.insync.replicas` of a topic we create with `replication`
/// replicas: 2 when it has 2 or more, so that `acks=all` means "on two
/// brokers" and one broker's loss loses nothing acknowledged; 1 otherwise.
///
/// ```
/// use observatory_schemas::kafka::min_insync_replicas;
/// assert_eq!(min_insync_replicas(1), 1);
/// assert_eq!(min_insync_replicas(2), 2);
/// assert_eq!(min_insync_replicas(3), 2);
/// ```
pub const fn min_insync_replicas(replication: i32) -> i32 {
    if replication >= 2 {
        2
    } else {
        1
    }
}

/// Names of the headers every message carries.
pub mod headers {
    /// Media type of the value: always [`super::CONTENT_TYPE_PROTOBUF`].
    pub const CONTENT_TYPE: &str = "content-type";
    /// The OTLP signal: [`super::Signal::as_str`].
    pub const OTLP_SIGNAL: &str = "otlp-signal";
    /// The tenant that sent the data.
    pub const TENANT: &str = "tenant";
    /// When the collector received the request, milliseconds since the Unix epoch.
    pub const RECEIVED_AT_MS: &str = "received-at-ms";
    /// How many spans (or data points, or log records) the message holds.
    pub const SPAN_COUNT: &str = "span-count";
    /// Version of this contract, [`super::SCHEMA_VERSION`].
    pub const SCHEMA_VERSION: &str = "schema-version";
}

/// Value of the `content-type` header.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

/// Version of the message contract described in this module. Bumped only when
/// a consumer written for the old contract would misread the new one.
pub const SCHEMA_VERSION: &str = "1";

/// An OTLP signal, and so a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in a fixed order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The value of the `otlp-signal` header, also used as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// The message key of a trace: its id as 32 lowercase hex characters.
///
/// ```
/// let id = [0xab; 16];
/// assert_eq!(observatory_schemas::kafka::trace_key(&id), "abababababababababababababababab");
/// ```
pub fn trace_key(trace_id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(32);
    push_hex(&mut out, trace_id);
    out
}

/// Appends `bytes` as lowercase hex to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0f) as usize] as char);
    }
}

/// The bytes of a hex text (either case), `None` when it is not one.
///
/// ```
/// use observatory_schemas::kafka::parse_hex;
/// assert_eq!(parse_hex("0aFf"), Some(vec![0x0a, 0xff]));
/// assert_eq!(parse_hex("abc"), None);
/// assert_eq!(parse_hex("zz"), None);
/// ```
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The partition of a message with this key among `partitions` partitions:
/// `(murmur2(key) & 0x7fffffff) % partitions`, as the Java client's default
/// partitioner and librdkafka's `murmur2_random` compute it.
///
/// ```
/// use observatory_schemas::kafka::partition_for_key;
/// // The Java client puts key "21" of a 16-partition topic in partition 12.
/// assert_eq!(partition_for_key(b"21", 16), 12);
/// ```
///
/// # Panics
/// When `partitions` is zero.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_stable() {
        let names: Vec<_> = Signal::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["traces", "metrics", "logs"]);
    }

    #[test]
    fn trace_key_is_lowercase_hex_of_all_bytes() {
        let mut id = [0u8; 16];
        id[0] = 0x01;
        id[15] = 0xfe;
        assert_eq!(trace_key(&id), "010000000000000000000000000000fe");
    }
}
