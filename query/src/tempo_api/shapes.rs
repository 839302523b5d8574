//! Tempo's answer shapes, byte for byte where clients parse them.
//!
//! - Trace by id, JSON: what Tempo's gogo `jsonpb` marshaler writes (and so
//!   what Tempo clients parse): lowerCamelCase names, ids as **base64** of
//!   the raw bytes (not OTLP/JSON's hex), 64-bit integers as strings, enums
//!   by name (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`), zero values left out,
//!   a oneof value written even when zero. v1 is `tempopb.Trace` with its
//!   list named `batches`; v2 is `tempopb.TraceByIDResponse`
//!   (`{"trace":{"resourceSpans":[...]},"metrics":{}}`).
//!   `opentelemetry-proto`'s serde output differs (hex ids, numeric enums,
//!   every default written), so it is not used here.
//! - Trace by id, protobuf (`Accept: application/protobuf`, what Grafana's
//!   Tempo data source asks for): `tempopb.Trace` (v1) and
//!   `tempopb.TraceByIDResponse` (v2), whose resource spans are wire-equal
//!   to OTLP's.
//! - Search and tags: `tempopb.SearchResponse` and friends as `jsonpb`
//!   writes them (trace ids hex without leading zeros, span ids 16 hex
//!   digits, `startTimeUnixNano` a string, `durationMs` a number).
//!
//! Pure code: no I/O.

use observatory_schemas::otlp::common::{any_value::Value as Any, AnyValue, KeyValue};
use observatory_schemas::otlp::trace::{ResourceSpans, Span};
use prost::Message;
use serde::Serialize;

/// `tempopb.Trace`.
#[derive(Clone, PartialEq, Message)]
pub struct TempoTrace {
    /// `resourceSpans` (`batches` in v1 JSON).
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, PartialEq, Message)]
pub struct TraceByIdMetrics {
    /// Bytes read to find the trace.
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
}

/// `tempopb.TraceByIDResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct TraceByIdResponse {
    /// The trace (always present, empty when not found, as Tempo answers).
    #[prost(message, optional, tag = "1")]
    pub trace: Option<TempoTrace>,
    /// Metrics.
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    /// Why partial.
    #[prost(string, tag = "4")]
    pub message: String,
}

/// Fills in what Tempo always writes and Grafana's Tempo data source reads
/// without checking (its `trace_transform.go` dereferences a span's
/// `status` and a batch's `scope`, and drops the spans of a resource
/// without attributes): a status on every span (unset when none was sent),
/// a scope on every batch, and `service.name` (`unknown_service`, as the
/// OpenTelemetry SDKs default it) on a resource that has no attributes.
pub fn complete(resource_spans: &mut [ResourceSpans]) {
    for rs in resource_spans {
        let resource = rs.resource.get_or_insert_with(Default::default);
        if resource.attributes.is_empty() {
            resource.attributes.push(KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Any::StringValue(
                        observatory_schemas::span::UNKNOWN_SERVICE.into(),
                    )),
                }),
                ..Default::default()
            });
        }
        for ss in &mut rs.scope_spans {
            ss.scope.get_or_insert_with(Default::default);
            for span in &mut ss.spans {
                span.status.get_or_insert_with(Default::default);
            }
        }
    }
}

/// v1 protobuf: `tempopb.Trace`.
pub fn trace_v1_protobuf(resource_spans: Vec<ResourceSpans>) -> Vec<u8> {
    TempoTrace { resource_spans }.encode_to_vec()
}

/// v2 protobuf: `tempopb.TraceByIDResponse`.
pub fn trace_v2_protobuf(resource_spans: Vec<ResourceSpans>) -> Vec<u8> {
    TraceByIdResponse {
        trace: Some(TempoTrace { resource_spans }),
        metrics: Some(TraceByIdMetrics::default()),
        status: 0,
        message: String::new(),
    }
    .encode_to_vec()
}

/// v1 JSON: `{"batches":[...]}`.
pub fn trace_v1_json(resource_spans: &[ResourceSpans]) -> String {
    let mut out = String::from("{");
    if !resource_spans.is_empty() {
        out.push_str("\"batches\":");
        list(&mut out, resource_spans, resource_spans_json);
    }
    out.push('}');
    out
}

/// v2 JSON: `{"trace":{"resourceSpans":[...]},"metrics":{}}`.
pub fn trace_v2_json(resource_spans: &[ResourceSpans]) -> String {
    let mut out = String::from("{\"trace\":{");
    if !resource_spans.is_empty() {
        out.push_str("\"resourceSpans\":");
        list(&mut out, resource_spans, resource_spans_json);
    }
    out.push_str("},\"metrics\":{}}");
    out
}

// ---- jsonpb writer ----

/// Writes an object's fields, each with its comma.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }

    fn string(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            let out = self.key(name);
            json_string(out, value);
        }
    }

    fn bytes(&mut self, name: &str, value: &[u8]) {
        if !value.is_empty() {
            let out = self.key(name);
            out.push('"');
            out.push_str(&base64(value));
            out.push('"');
        }
    }

    fn u32(&mut self, name: &str, value: u32) {
        if value != 0 {
            let out = self.key(name);
            out.push_str(&value.to_string());
        }
    }

    fn u64(&mut self, name: &str, value: u64) {
        if value != 0 {
            let out = self.key(name);
            out.push('"');
            out.push_str(&value.to_string());
            out.push('"');
        }
    }

    fn list<T>(&mut self, name: &str, items: &[T], each: fn(&mut String, &T)) {
        if !items.is_empty() {
            let out = self.key(name);
            list(out, items, each);
        }
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn list<T>(out: &mut String, items: &[T], each: fn(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn resource_spans_json(out: &mut String, rs: &ResourceSpans) {
    let mut o = Obj::open(out);
    if let Some(r) = &rs.resource {
        let out = o.key("resource");
        let mut r_o = Obj::open(out);
        r_o.list("attributes", &r.attributes, key_value_json);
        r_o.u32("droppedAttributesCount", r.dropped_attributes_count);
        r_o.close();
    }
    o.list("scopeSpans", &rs.scope_spans, |out, ss| {
        let mut o = Obj::open(out);
        if let Some(s) = &ss.scope {
            let out = o.key("scope");
            let mut s_o = Obj::open(out);
            s_o.string("name", &s.name);
            s_o.string("version", &s.version);
            s_o.list("attributes", &s.attributes, key_value_json);
            s_o.u32("droppedAttributesCount", s.dropped_attributes_count);
            s_o.close();
        }
        o.list("spans", &ss.spans, span_json);
        o.string("schemaUrl", &ss.schema_url);
        o.close();
    });
    o.string("schemaUrl", &rs.schema_url);
    o.close();
}

const KIND_NAMES: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_NAMES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn enum_value(out: &mut String, names: &[&str], value: i32) {
    match usize::try_from(value).ok().and_then(|i| names.get(i)) {
        Some(name) => {
            out.push('"');
            out.push_str(name);
            out.push('"');
        }
        None => out.push_str(&value.to_string()),
    }
}

fn span_json(out: &mut String, s: &Span) {
    let mut o = Obj::open(out);
    o.bytes("traceId", &s.trace_id);
    o.bytes("spanId", &s.span_id);
    o.string("traceState", &s.trace_state);
    o.bytes("parentSpanId", &s.parent_span_id);
    o.string("name", &s.name);
    if s.kind != 0 {
        let out = o.key("kind");
        enum_value(out, &KIND_NAMES, s.kind);
    }
    o.u64("startTimeUnixNano", s.start_time_unix_nano);
    o.u64("endTimeUnixNano", s.end_time_unix_nano);
    o.list("attributes", &s.attributes, key_value_json);
    o.u32("droppedAttributesCount", s.dropped_attributes_count);
    o.list("events", &s.events, |out, e| {
        let mut o = Obj::open(out);
        o.u64("timeUnixNano", e.time_unix_nano);
        o.string("name", &e.name);
        o.list("attributes", &e.attributes, key_value_json);
        o.u32("droppedAttributesCount", e.dropped_attributes_count);
        o.close();
    });
    o.u32("droppedEventsCount", s.dropped_events_count);
    o.list("links", &s.links, |out, l| {
        let mut o = Obj::open(out);
        o.bytes("traceId", &l.trace_id);
        o.bytes("spanId", &l.span_id);
        o.string("traceState", &l.trace_state);
        o.list("attributes", &l.attributes, key_value_json);
        o.u32("droppedAttributesCount", l.dropped_attributes_count);
        o.u32("flags", l.flags);
        o.close();
    });
    o.u32("droppedLinksCount", s.dropped_links_count);
    // Tempo always sets a status, so jsonpb always writes the object.
    {
        let out = o.key("status");
        let mut st = Obj::open(out);
        if let Some(status) = &s.status {
            st.string("message", &status.message);
            if status.code != 0 {
                let out = st.key("code");
                enum_value(out, &STATUS_NAMES, status.code);
            }
        }
        st.close();
    }
    o.u32("flags", s.flags);
    o.close();
}

fn key_value_json(out: &mut String, kv: &KeyValue) {
    let mut o = Obj::open(out);
    o.string("key", &kv.key);
    if let Some(v) = &kv.value {
        let out = o.key("value");
        any_value_json(out, v);
    }
    o.close();
}

fn any_value_json(out: &mut String, v: &AnyValue) {
    let mut o = Obj::open(out);
    match &v.value {
        None => {}
        Some(Any::StringValue(s)) => {
            let out = o.key("stringValue");
            json_string(out, s);
        }
        Some(Any::BoolValue(b)) => o
            .key("boolValue")
            .push_str(if *b { "true" } else { "false" }),
        Some(Any::IntValue(i)) => {
            let out = o.key("intValue");
            out.push('"');
            out.push_str(&i.to_string());
            out.push('"');
        }
        Some(Any::DoubleValue(d)) => {
            let out = o.key("doubleValue");
            double(out, *d);
        }
        Some(Any::ArrayValue(a)) => {
            let out = o.key("arrayValue");
            let mut a_o = Obj::open(out);
            a_o.list("values", &a.values, any_value_json);
            a_o.close();
        }
        Some(Any::KvlistValue(kv)) => {
            let out = o.key("kvlistValue");
            let mut k_o = Obj::open(out);
            k_o.list("values", &kv.values, key_value_json);
            k_o.close();
        }
        Some(Any::BytesValue(b)) => {
            let out = o.key("bytesValue");
            out.push('"');
            out.push_str(&base64(b));
            out.push('"');
        }
        #[allow(unreachable_patterns)]
        Some(_) => {}
    }
    o.close();
}

fn double(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("\"NaN\"");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        out.push_str(&serde_json::Number::from_f64(d).expect("finite").to_string());
    }
}

// ---- search ----

/// Tempo's text for a trace whose root span has not arrived.
pub const ROOT_NOT_YET_RECEIVED: &str = "<root span not yet received>";

/// `tempopb.SearchResponse`.
#[derive(Debug, Default, Serialize)]
pub struct SearchResponse {
    /// Matching traces, newest first.
    pub traces: Vec<TraceSearchMetadata>,
    /// What the search read.
    pub metrics: SearchMetrics,
}

/// `tempopb.TraceSearchMetadata`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSearchMetadata {
    /// Hex, leading zeros trimmed (Tempo's `TraceIDToHexString`).
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Service of the root span.
    pub root_service_name: String,
    /// Name of the root span.
    pub root_trace_name: String,
    /// Start, ns (a string, as jsonpb writes uint64).
    pub start_time_unix_nano: String,
    /// Duration, ms (left out when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub duration_ms: u32,
    /// The first span set (deprecated by Tempo, still read by older Grafanas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_set: Option<SpanSet>,
    /// The span sets (one: the spans that matched the filter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub span_sets: Vec<SpanSet>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `tempopb.SpanSet`.
#[derive(Debug, Clone, Serialize)]
pub struct SpanSet {
    /// Up to `spss` matching spans.
    pub spans: Vec<SearchSpan>,
    /// How many spans matched.
    pub matched: u32,
}

/// `tempopb.Span`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSpan {
    /// 16 hex digits.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Start, ns (string).
    pub start_time_unix_nano: String,
    /// Duration, ns (string).
    pub duration_nanos: String,
    /// The attributes the query named, as `tempopb.common.v1.KeyValue`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<serde_json::Value>,
}

/// `tempopb.SearchMetrics` (zeros left out).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMetrics {
    /// Traces looked at.
    #[serde(skip_serializing_if = "is_zero")]
    pub inspected_traces: u32,
    /// Spans looked at (a string, as jsonpb writes uint64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspected_spans: Option<String>,
    /// Bytes of blocks read (a string, as jsonpb writes uint64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspected_bytes: Option<String>,
    /// Blocks whose time range the search overlapped.
    #[serde(skip_serializing_if = "is_zero")]
    pub total_blocks: u32,
    /// Jobs done: PostgreSQL's query, and each block searched to the end.
    pub completed_jobs: u32,
    /// Jobs: PostgreSQL's query (when its window was searched), and one
    /// per block.
    pub total_jobs: u32,
    /// Size of those blocks' data files (a string, as jsonpb writes uint64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_block_bytes: Option<String>,
}

/// Adds the blocks' matches of a search to an answer: a trace the answer
/// holds already (from PostgreSQL) is kept as it is; newest first, at most
/// `limit`; the blocks' reading in the metrics, every block a job (one the
/// byte budget left unread is a job not completed).
pub fn add_block_hits(
    answer: &mut SearchResponse,
    result: &crate::blocks::BlockSearchResult,
    limit: usize,
) {
    for hit in &result.hits {
        let id = trace_id_text(&hit.trace_id);
        if answer.traces.iter().any(|t| t.trace_id == id) {
            continue;
        }
        let spans: Vec<SearchSpan> = hit
            .spans
            .iter()
            .map(|s| SearchSpan {
                span_id: crate::traces::hex(&s.span_id),
                name: s.name.clone(),
                start_time_unix_nano: s.start_ns.to_string(),
                duration_nanos: s.duration_ns.to_string(),
                attributes: s.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
            })
            .collect();
        let set = SpanSet {
            spans,
            matched: hit.matched,
        };
        // Microsecond times, as the PostgreSQL part answers them.
        let start_ns = hit.start_ns.max(0) / 1_000 * 1_000;
        let duration = (hit.end_ns.max(0) / 1_000 * 1_000 - start_ns).max(0) / 1_000_000;
        answer.traces.push(TraceSearchMetadata {
            trace_id: id,
            root_service_name: hit
                .root_service
                .clone()
                .unwrap_or_else(|| ROOT_NOT_YET_RECEIVED.into()),
            root_trace_name: hit.root_name.clone().unwrap_or_default(),
            start_time_unix_nano: start_ns.to_string(),
            duration_ms: duration.clamp(0, i64::from(u32::MAX)) as u32,
            span_set: Some(set.clone()),
            span_sets: vec![set],
        });
    }
    answer.traces.sort_by_key(|t| {
        std::cmp::Reverse(t.start_time_unix_nano.parse::<u64>().unwrap_or_default())
    });
    answer.traces.truncate(limit);
    let m = &mut answer.metrics;
    m.inspected_traces = m
        .inspected_traces
        .saturating_add(result.inspected_traces.min(u64::from(u32::MAX)) as u32);
    let spans = m
        .inspected_spans
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + result.inspected_spans;
    m.inspected_spans = (spans > 0).then(|| spans.to_string());
    m.inspected_bytes = (result.bytes_read > 0).then(|| result.bytes_read.to_string());
    m.total_blocks = result.blocks;
    m.total_block_bytes = (result.block_bytes > 0).then(|| result.block_bytes.to_string());
    m.total_jobs += result.blocks;
    m.completed_jobs += result.blocks - result.blocks_unsearched;
}

/// A `tempopb.common.v1.KeyValue` in jsonpb form from a stored JSON value.
pub fn key_value(key: &str, value: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "key": key, "value": json_any_value(value) })
}

fn json_any_value(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n }),
        Value::Array(a) => {
            json!({ "arrayValue": { "values": a.iter().map(json_any_value).collect::<Vec<_>>() } })
        }
        Value::Object(m) => json!({ "kvlistValue": { "values":
            m.iter().map(|(k, v)| key_value(k, v)).collect::<Vec<_>>() } }),
        Value::Null => json!({}),
    }
}

/// Tempo's trace id text in search results: hex without leading zeros.
pub fn trace_id_text(id: &[u8]) -> String {
    let mut hex = String::with_capacity(32);
    observatory_schemas::kafka::push_hex(&mut hex, id);
    let trimmed = hex.trim_start_matches('0');
    trimmed.to_owned()
}

/// `tempopb.SearchTagsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagNames {
    /// Attribute names.
    pub tag_names: Vec<String>,
}

/// `tempopb.SearchTagsV2Response`.
#[derive(Debug, Serialize)]
pub struct TagScopes {
    /// Per scope.
    pub scopes: Vec<TagScope>,
}

/// `tempopb.SearchTagsV2Scope`.
#[derive(Debug, Serialize)]
pub struct TagScope {
    /// `span`, `resource` or `intrinsic`.
    pub name: String,
    /// Names.
    pub tags: Vec<String>,
}

/// `tempopb.SearchTagValuesResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagValues {
    /// Values.
    pub tag_values: Vec<String>,
}

/// `tempopb.SearchTagValuesV2Response`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypedTagValues {
    /// Values with their TraceQL type.
    pub tag_values: Vec<TypedValue>,
}

/// `tempopb.TagValue`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TypedValue {
    /// `string`, `int`, `float`, `bool`, `keyword`, `duration`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value as text.
    pub value: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn complete_fills_what_grafana_dereferences() {
        use observatory_schemas::otlp::trace::ScopeSpans;
        let mut batches = vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![Span::default()],
                ..Default::default()
            }],
            ..Default::default()
        }];
        complete(&mut batches);
        let rs = &batches[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        assert!(rs.scope_spans[0].scope.is_some());
        assert_eq!(rs.scope_spans[0].spans[0].status, Some(Default::default()));
        // A resource with attributes keeps exactly its own.
        let mut again = batches.clone();
        complete(&mut again);
        assert_eq!(again, batches);
    }

    use super::*;
    use observatory_schemas::otlp::common::{ArrayValue, KeyValueList};
    use observatory_schemas::otlp::resource::Resource;
    use observatory_schemas::otlp::trace::{span, ScopeSpans, Status};

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn sample() -> Vec<ResourceSpans> {
        vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Any::StringValue("bot".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(Default::default()),
                spans: vec![Span {
                    trace_id: vec![0xab; 16],
                    span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                    name: "chat".into(),
                    kind: 3,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_001_000_000_000,
                    attributes: vec![
                        kv("i", Any::IntValue(7)),
                        kv("d", Any::DoubleValue(0.25)),
                        kv("b", Any::BoolValue(false)),
                        kv(
                            "a",
                            Any::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(Any::StringValue("x".into())),
                                }],
                            }),
                        ),
                        kv(
                            "m",
                            Any::KvlistValue(KeyValueList {
                                values: vec![kv("k", Any::BytesValue(vec![0, 1]))],
                            }),
                        ),
                    ],
                    events: vec![span::Event {
                        time_unix_nano: 5,
                        name: "e".into(),
                        ..Default::default()
                    }],
                    status: Some(Status {
                        code: 2,
                        message: "boom".into(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn v1_json_is_jsonpb() {
        let json = trace_v1_json(&sample());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let span = &v["batches"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], base64(&[0xab; 16]));
        assert_eq!(span["spanId"], "AQIDBAUGBwg=");
        assert!(span.get("parentSpanId").is_none(), "a root has no parent");
        assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR");
        assert_eq!(span["status"]["message"], "boom");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "7");
        assert_eq!(span["attributes"][1]["value"]["doubleValue"], 0.25);
        assert_eq!(
            span["attributes"][2]["value"]["boolValue"], false,
            "a oneof is written even when zero"
        );
        assert_eq!(
            span["attributes"][3]["value"]["arrayValue"]["values"][0]["stringValue"],
            "x"
        );
        assert_eq!(
            span["attributes"][4]["value"]["kvlistValue"]["values"][0]["value"]["bytesValue"],
            "AAE="
        );
        assert_eq!(span["events"][0]["timeUnixNano"], "5");
        assert!(
            span.get("droppedAttributesCount").is_none(),
            "zeros left out"
        );
        assert_eq!(
            v["batches"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "bot"
        );
        assert_eq!(trace_v1_json(&[]), "{}");
    }

    #[test]
    fn v2_json_wraps_the_trace() {
        let v: serde_json::Value = serde_json::from_str(&trace_v2_json(&sample())).unwrap();
        assert_eq!(
            v["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
            "chat"
        );
        assert_eq!(trace_v2_json(&[]), r#"{"trace":{},"metrics":{}}"#);
    }

    #[test]
    fn protobuf_round_trips_as_tempopb() {
        let v1 = TempoTrace::decode(&trace_v1_protobuf(sample())[..]).unwrap();
        assert_eq!(v1.resource_spans, sample());
        // tempopb.Trace and OTLP's TracesData share field 1.
        let otlp =
            observatory_schemas::otlp::trace::TracesData::decode(&trace_v1_protobuf(sample())[..])
                .unwrap();
        assert_eq!(otlp.resource_spans, sample());
        let v2 = TraceByIdResponse::decode(&trace_v2_protobuf(sample())[..]).unwrap();
        assert_eq!(v2.trace.unwrap().resource_spans, sample());
        let empty = TraceByIdResponse::decode(&trace_v2_protobuf(vec![])[..]).unwrap();
        assert!(
            empty.trace.is_some(),
            "an empty trace is still present (Grafana dereferences it)"
        );
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A==");
    }

    #[test]
    fn search_shapes() {
        assert_eq!(trace_id_text(&[0, 0, 0x0a, 0xbc]), "abc");
        assert_eq!(
            key_value("n", &serde_json::json!(5)),
            serde_json::json!({"key": "n", "value": {"intValue": "5"}})
        );
        let r = SearchResponse {
            traces: vec![TraceSearchMetadata {
                trace_id: "ab".into(),
                root_service_name: "s".into(),
                root_trace_name: "n".into(),
                start_time_unix_nano: "1".into(),
                duration_ms: 0,
                span_set: None,
                span_sets: vec![],
            }],
            metrics: SearchMetrics::default(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["traces"][0]["traceID"], "ab");
        assert_eq!(v["traces"][0]["startTimeUnixNano"], "1");
        assert!(v["traces"][0].get("durationMs").is_none());
    }
}
