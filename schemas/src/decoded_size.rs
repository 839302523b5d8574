//! How much memory an OTLP protobuf request takes once decoded, read off
//! its wire bytes without decoding them.
//!
//! A request's decoded size can be far larger than its wire size: an empty
//! span is 2 bytes on the wire and a few hundred in memory, so 8 MiB of
//! minimal spans decode into about a gigabyte. The collector reserves this
//! estimate from its memory budget **before** it decodes, and refuses a
//! request whose estimate alone passes the budget.
//!
//! The estimate walks the protobuf framing with the OTLP schema (which
//! field of which message is a nested message) and adds, per element, the
//! size of the Rust type prost decodes it into, twice (a `Vec` grows by
//! doubling), plus the bytes of every string and byte field, plus 8 bytes
//! per scalar (a packed varint of one byte becomes a `u64`). It is an upper
//! bound for well-formed input; a malformed body ends the walk where it
//! breaks, with what was counted so far (the decoder then fails there).

use crate::otlp::{common, logs, metrics, resource, trace};
use std::mem::size_of;

/// Which OTLP request a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
    /// `ExportLogsServiceRequest`.
    Logs,
}

/// The message types whose nested fields are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    TraceRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    NumberPoints,
    HistogramPoints,
    ExpHistogramPoints,
    SummaryPoints,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    Resource,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a length-delimited field holds.
enum Field {
    /// A nested message of this type.
    Message(Ty),
    /// Packed varints, each decoded into 8 bytes.
    PackedVarints,
    /// Bytes, a string, or packed fixed-width numbers: as long as on the wire.
    Bytes,
}

impl Ty {
    /// The in-memory size of one element of this type.
    fn size(self) -> usize {
        match self {
            Ty::TraceRequest | Ty::MetricsRequest | Ty::LogsRequest => 0,
            Ty::ResourceSpans => size_of::<trace::ResourceSpans>(),
            Ty::ScopeSpans => size_of::<trace::ScopeSpans>(),
            Ty::Span => size_of::<trace::Span>(),
            Ty::Event => size_of::<trace::span::Event>(),
            Ty::Link => size_of::<trace::span::Link>(),
            Ty::Status => size_of::<trace::Status>(),
            Ty::ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
            Ty::ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
            Ty::Metric => size_of::<metrics::Metric>(),
            // Gauge, Sum, Histogram, ...: a Vec and two scalars at most.
            Ty::NumberPoints | Ty::HistogramPoints | Ty::ExpHistogramPoints | Ty::SummaryPoints => {
                size_of::<metrics::Sum>()
            }
            Ty::NumberPoint => size_of::<metrics::NumberDataPoint>(),
            Ty::HistogramPoint => size_of::<metrics::HistogramDataPoint>(),
            Ty::ExpHistogramPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
            Ty::Buckets => size_of::<metrics::exponential_histogram_data_point::Buckets>(),
            Ty::SummaryPoint => size_of::<metrics::SummaryDataPoint>(),
            Ty::Quantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
            Ty::Exemplar => size_of::<metrics::Exemplar>(),
            Ty::ResourceLogs => size_of::<logs::ResourceLogs>(),
            Ty::ScopeLogs => size_of::<logs::ScopeLogs>(),
            Ty::LogRecord => size_of::<logs::LogRecord>(),
            Ty::Resource => size_of::<resource::Resource>(),
            Ty::Scope => size_of::<common::InstrumentationScope>(),
            Ty::KeyValue => size_of::<common::KeyValue>(),
            Ty::AnyValue => size_of::<common::AnyValue>(),
            Ty::ArrayValue => size_of::<common::ArrayValue>(),
            Ty::KeyValueList => size_of::<common::KeyValueList>(),
        }
    }

    /// What length-delimited field `tag` of this type holds.
    fn field(self, tag: u32) -> Field {
        use Field::{Bytes, Message as M};
        match (self, tag) {
            (Ty::TraceRequest, 1) => M(Ty::ResourceSpans),
            (Ty::ResourceSpans, 1) | (Ty::ResourceMetrics, 1) | (Ty::ResourceLogs, 1) => {
                M(Ty::Resource)
            }
            (Ty::ResourceSpans, 2) => M(Ty::ScopeSpans),
            (Ty::ScopeSpans, 1) | (Ty::ScopeMetrics, 1) | (Ty::ScopeLogs, 1) => M(Ty::Scope),
            (Ty::ScopeSpans, 2) => M(Ty::Span),
            (Ty::Span, 9) | (Ty::Event, 3) | (Ty::Link, 4) => M(Ty::KeyValue),
            (Ty::Span, 11) => M(Ty::Event),
            (Ty::Span, 13) => M(Ty::Link),
            (Ty::Span, 15) => M(Ty::Status),
            (Ty::MetricsRequest, 1) => M(Ty::ResourceMetrics),
            (Ty::ResourceMetrics, 2) => M(Ty::ScopeMetrics),
            (Ty::ScopeMetrics, 2) => M(Ty::Metric),
            (Ty::Metric, 5 | 7) => M(Ty::NumberPoints),
            (Ty::Metric, 9) => M(Ty::HistogramPoints),
            (Ty::Metric, 10) => M(Ty::ExpHistogramPoints),
            (Ty::Metric, 11) => M(Ty::SummaryPoints),
            (Ty::Metric, 12) => M(Ty::KeyValue),
            (Ty::NumberPoints, 1) => M(Ty::NumberPoint),
            (Ty::HistogramPoints, 1) => M(Ty::HistogramPoint),
            (Ty::ExpHistogramPoints, 1) => M(Ty::ExpHistogramPoint),
            (Ty::SummaryPoints, 1) => M(Ty::SummaryPoint),
            (Ty::NumberPoint | Ty::SummaryPoint, 7) | (Ty::HistogramPoint, 9) => M(Ty::KeyValue),
            (Ty::ExpHistogramPoint, 1) => M(Ty::KeyValue),
            (Ty::NumberPoint, 5) | (Ty::HistogramPoint, 8) | (Ty::ExpHistogramPoint, 11) => {
                M(Ty::Exemplar)
            }
            (Ty::ExpHistogramPoint, 8 | 9) => M(Ty::Buckets),
            (Ty::Buckets, 2) => Field::PackedVarints,
            (Ty::SummaryPoint, 6) => M(Ty::Quantile),
            (Ty::Exemplar, 7) => M(Ty::KeyValue),
            (Ty::LogsRequest, 1) => M(Ty::ResourceLogs),
            (Ty::ResourceLogs, 2) => M(Ty::ScopeLogs),
            (Ty::ScopeLogs, 2) => M(Ty::LogRecord),
            (Ty::LogRecord, 5) => M(Ty::AnyValue),
            (Ty::LogRecord, 6) => M(Ty::KeyValue),
            (Ty::Resource, 1) | (Ty::Scope, 3) | (Ty::KeyValueList, 1) => M(Ty::KeyValue),
            (Ty::KeyValue, 2) | (Ty::ArrayValue, 1) => M(Ty::AnyValue),
            (Ty::AnyValue, 5) => M(Ty::ArrayValue),
            (Ty::AnyValue, 6) => M(Ty::KeyValueList),
            _ => Bytes,
        }
    }
}

/// The deepest nesting followed (prost's own recursion limit is 100).
const MAX_DEPTH: usize = 100;
/// What an allocator adds to each heap block, about.
const ALLOCATION_OVERHEAD: usize = 16;

/// The estimated decoded size, in bytes, of a protobuf `body` of `request`.
///
/// ```
/// use observatory_schemas::decoded_size::{estimate, Request};
/// // 1 000 empty spans: 2 bytes each on the wire, hundreds in memory.
/// let mut scope = Vec::new();
/// for _ in 0..1000 { scope.extend_from_slice(&[0x12, 0x00]); }
/// let mut rs = vec![0x12];
/// prost::encoding::encode_varint(scope.len() as u64, &mut rs);
/// rs.extend_from_slice(&scope);
/// let mut body = vec![0x0a];
/// prost::encoding::encode_varint(rs.len() as u64, &mut body);
/// body.extend_from_slice(&rs);
/// assert!(estimate(Request::Traces, &body) > 100 * body.len());
/// ```
pub fn estimate(request: Request, body: &[u8]) -> usize {
    let ty = match request {
        Request::Traces => Ty::TraceRequest,
        Request::Metrics => Ty::MetricsRequest,
        Request::Logs => Ty::LogsRequest,
    };
    let mut total = 0;
    walk(ty, body, 0, &mut total);
    total.max(body.len())
}

#[inline(always)]
fn read_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    // Tags and most lengths are one byte.
    let first = *buf.get(*at)?;
    *at += 1;
    if first < 0x80 {
        return Some(u64::from(first));
    }
    let mut value = u64::from(first & 0x7f);
    let mut shift = 7;
    while shift < 64 {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
        shift += 7;
    }
    None
}

/// Adds the cost of the fields of one message of type `ty` in `buf`;
/// stops at the first malformed byte.
fn walk(ty: Ty, buf: &[u8], depth: usize, total: &mut usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut at = 0;
    while at < buf.len() {
        let Some(key) = read_varint(buf, &mut at) else {
            return;
        };
        let (tag, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                if read_varint(buf, &mut at).is_none() {
                    return;
                }
                *total += 8;
            }
            1 => {
                at += 8;
                *total += 8;
            }
            5 => {
                at += 4;
                *total += 8;
            }
            2 => {
                let Some(len) = read_varint(buf, &mut at) else {
                    return;
                };
                let Some(end) = at.checked_add(len as usize).filter(|e| *e <= buf.len()) else {
                    return;
                };
                let inner = &buf[at..end];
                match ty.field(tag) {
                    Field::Message(child) => {
                        *total += 2 * child.size() + ALLOCATION_OVERHEAD;
                        walk(child, inner, depth + 1, total);
                    }
                    Field::PackedVarints => {
                        let varints = inner.iter().filter(|b| **b < 0x80).count();
                        *total += 2 * 8 * varints + ALLOCATION_OVERHEAD;
                    }
                    Field::Bytes => *total += inner.len() + ALLOCATION_OVERHEAD,
                }
                at = end;
            }
            _ => return,
        }
    }
}

/// The estimated decoded size of an OTLP/JSON `body` parsed straight into
/// the OTLP types: every JSON object may become one message of the largest
/// OTLP type (counted twice, as above), plus the text itself. A body that
/// needs the second, tree-shaped parse (enum names) needs
/// [`estimate_json_tree`] more.
pub fn estimate_json(body: &[u8]) -> usize {
    let largest = [
        Ty::Span.size(),
        Ty::ExpHistogramPoint.size(),
        Ty::LogRecord.size(),
        Ty::Metric.size(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let objects = count_byte(body, b'{');
    objects * (2 * largest + ALLOCATION_OVERHEAD) + 2 * body.len()
}

/// What parsing an OTLP/JSON `body` as a `serde_json::Value` tree takes:
/// about 64 bytes a value (the values are separated by `,` or opened by
/// `[`, `{`, `:`).
pub fn estimate_json_tree(body: &[u8]) -> usize {
    let values = body
        .iter()
        .filter(|b| matches!(**b, b',' | b'[' | b'{' | b':'))
        .count();
    values * 64 + body.len()
}

/// How many times `needle` is in `haystack`, eight bytes at a time.
fn count_byte(haystack: &[u8], needle: u8) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut count = 0usize;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ pattern;
        // A zero byte of `word` is a match; this marks each with its high bit.
        let zero = !(((word & !HIGH) + !HIGH) | word) & HIGH;
        count += zero.count_ones() as usize;
    }
    count + chunks.remainder().iter().filter(|b| **b == needle).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TraceGenerator;
    use prost::Message;

    #[test]
    fn a_real_request_is_estimated_above_its_decoded_size_and_not_absurdly() {
        let request = TraceGenerator::new(3).request(500);
        let body = request.encode_to_vec();
        let estimate = estimate(Request::Traces, &body);
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        // At least the spans themselves and the wire bytes.
        assert!(estimate > spans * size_of::<trace::Span>() + body.len());
        // Not more than a few times the wire size for real spans.
        assert!(estimate < 12 * body.len(), "{estimate} for {}", body.len());
    }

    #[test]
    fn a_malformed_body_ends_the_walk() {
        assert_eq!(estimate(Request::Traces, &[0x0a, 0xff, 0xff, 0x01]), 4);
        assert_eq!(estimate(Request::Logs, &[]), 0);
    }

    #[test]
    fn bytes_are_counted_in_words_as_one_by_one() {
        let text = b"{{a{,[{}]}}{{x}x}{}{}{{{}}}".repeat(37);
        for start in 0..9 {
            let s = &text[start..];
            assert_eq!(
                count_byte(s, b'{'),
                s.iter().filter(|b| **b == b'{').count()
            );
        }
        assert_eq!(
            count_byte(&[0x7b, 0xfb, 0x7b, 0x00, 0x7b, 0x7a, 0x7c, 0x7b], b'{'),
            4
        );
    }

    #[test]
    fn json_objects_count_as_large_messages() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{},{}]}]}]}"#;
        assert!(estimate_json(body) > 6 * size_of::<trace::Span>());
    }
}
