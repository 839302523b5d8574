//! The collector's Prometheus metrics, served on the admin port's `/metrics`.
//!
//! Names follow `observatory_collector_<noun>_<unit>`; counters end in
//! `_total`. "Items" are what the signal carries: spans, metric data points
//! or log records, with the `signal` label telling which. Every label is
//! bounded: signals, transports, refusal reasons and Kafka error kinds are
//! closed enums, never text from the wire.

use observatory_schemas::kafka::Signal;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Transport {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http_protobuf",
            Transport::HttpJson => "http_json",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The `signal` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalLabel(pub Signal);

impl EncodeLabelValue for SignalLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

/// Labels of per-request counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The signal.
    pub signal: SignalLabel,
    /// The transport.
    pub transport: Transport,
}

/// Labels of refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The signal.
    pub signal: SignalLabel,
    /// The transport.
    pub transport: Transport,
    /// [`crate::error::IngestError::reason`], or `too_large_item`.
    pub reason: &'static str,
}

/// Labels of per-signal counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SignalLabels {
    /// The signal.
    pub signal: SignalLabel,
}

/// Labels of Kafka errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KafkaErrorLabels {
    /// `queue_full`, `delivery`, `timeout` or `client`.
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of the collector.
pub struct Metrics {
    registry: Registry,
    /// Requests received.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests refused, by reason.
    pub refused_requests: Family<RefusedLabels, Counter>,
    /// Items received in decodable requests.
    pub received_items: Family<RequestLabels, Counter>,
    /// Items Kafka acknowledged.
    pub accepted_items: Family<RequestLabels, Counter>,
    /// Items refused, by reason.
    pub refused_items: Family<RefusedLabels, Counter>,
    /// Request handling time, from decoded body to answer.
    pub request_duration: HistogramFamily<RequestLabels>,
    /// Time from the first send to the last Kafka acknowledgement of a request.
    pub produce_duration: HistogramFamily<SignalLabels>,
    /// Messages Kafka acknowledged.
    pub produced_messages: Family<SignalLabels, Counter>,
    /// Payload bytes Kafka acknowledged.
    pub produced_bytes: Family<SignalLabels, Counter>,
    /// Bytes of requests waiting for Kafka.
    pub inflight_bytes: Gauge,
    /// Kafka errors by kind.
    pub kafka_errors: Family<KafkaErrorLabels, Counter>,
    /// 1 when the broker answered the last metadata request and every topic exists.
    pub kafka_ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            refused_requests: Family::default(),
            received_items: Family::default(),
            accepted_items: Family::default(),
            refused_items: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            produce_duration: Family::new_with_constructor(latency_histogram),
            produced_messages: Family::default(),
            produced_bytes: Family::default(),
            inflight_bytes: Gauge::default(),
            kafka_errors: Family::default(),
            kafka_ready: Gauge::default(),
            registry: Registry::default(),
        };
        let p = "observatory_collector_";
        registry.register(
            format!("{p}requests"),
            "OTLP export requests received",
            m.requests.clone(),
        );
        registry.register(
            format!("{p}refused_requests"),
            "OTLP export requests answered with an error, by reason",
            m.refused_requests.clone(),
        );
        registry.register(
            format!("{p}received_items"),
            "Spans, metric points or log records received in decodable requests",
            m.received_items.clone(),
        );
        registry.register(
            format!("{p}accepted_items"),
            "Spans, metric points or log records acknowledged by Kafka",
            m.accepted_items.clone(),
        );
        registry.register(
            format!("{p}refused_items"),
            "Spans, metric points or log records refused, by reason",
            m.refused_items.clone(),
        );
        registry.register(
            format!("{p}request_duration_seconds"),
            "Time to handle a decoded request, up to its answer",
            m.request_duration.clone(),
        );
        registry.register(
            format!("{p}produce_duration_seconds"),
            "Time from the first send of a request's messages to Kafka's last acknowledgement",
            m.produce_duration.clone(),
        );
        registry.register(
            format!("{p}produced_messages"),
            "Kafka messages acknowledged by the broker",
            m.produced_messages.clone(),
        );
        registry.register(
            format!("{p}produced_bytes"),
            "Payload bytes of Kafka messages acknowledged by the broker",
            m.produced_bytes.clone(),
        );
        registry.register(
            format!("{p}inflight_bytes"),
            "Bytes of decoded requests not yet acknowledged by Kafka",
            m.inflight_bytes.clone(),
        );
        registry.register(
            format!("{p}kafka_errors"),
            "Kafka producer errors by kind",
            m.kafka_errors.clone(),
        );
        registry.register(
            format!("{p}kafka_ready"),
            "1 when the broker is reachable and every topic exists",
            m.kafka_ready.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts a Kafka error.
    pub fn kafka_error(&self, kind: &'static str) {
        self.kafka_errors
            .get_or_create(&KafkaErrorLabels { kind })
            .inc();
    }
}

/// Shorthand for request labels.
pub fn request_labels(signal: Signal, transport: Transport) -> RequestLabels {
    RequestLabels {
        signal: SignalLabel(signal),
        transport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_component_prefix_and_units() {
        let metrics = Metrics::new();
        metrics
            .requests
            .get_or_create(&request_labels(Signal::Traces, Transport::Grpc))
            .inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                "observatory_collector_requests_total{signal=\"traces\",transport=\"grpc\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("observatory_collector_inflight_bytes 0"));
    }
}
