//! Splitting an OTLP export request into Kafka messages: the collector's hot path.
//!
//! Traces become **one message per trace**, keyed by the trace id; log
//! records that carry a trace id likewise; metrics, and logs without a
//! trace, one message per resource, keyed by [`resource_key`]. Every
//! message is itself a valid export request of its signal that keeps the
//! resource and scope of its items, so a stock OpenTelemetry Collector kafka
//! receiver reads it as it is.
//!
//! No message value is larger than the budget it is given: a group that does
//! not fit is cut into several messages with the same key, and an item that
//! cannot fit even alone (a span with a huge prompt, say) is rejected with a
//! description that names it, while the rest of the request goes on.
//!
//! How: each item is encoded once into one arena, each resource and scope
//! "head" (every field but the repeated children) once per request; messages
//! are then assembled from those bytes with fresh length prefixes. Protobuf
//! readers accept fields in any order, so a head's fields may precede the
//! children they were declared after.

use observatory_schemas::ids::{self, IdError};
use observatory_schemas::kafka::{push_hex, trace_key};
use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
use observatory_schemas::otlp::metrics::{metric, Metric};
use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::resource_key::resource_key;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use std::collections::HashMap;
use std::ops::Range;
use thiserror::Error;

/// Field number of the repeated children in every OTLP envelope level:
/// `resource_spans` in the request, `scope_spans` in `ResourceSpans`, `spans`
/// in `ScopeSpans`, and likewise for metrics and logs.
const CHILDREN_FIELD: u32 = 2;
/// Field number of the resources in an export request.
const RESOURCES_FIELD: u32 = 1;
/// The longest varint of a length below 4 GiB, used to bound a wrapper's size
/// before its exact length is known.
const MAX_LEN_VARINT: usize = 5;

/// One Kafka message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message key.
    pub key: String,
    /// An encoded export request of the signal.
    pub payload: Vec<u8>,
    /// Spans, metric data points or log records in the payload.
    pub items: u32,
}

/// A request split into messages, and what had to be left out.
#[derive(Debug, Default)]
pub struct Split {
    /// Messages, grouped by key in order of first appearance.
    pub messages: Vec<Message>,
    /// Items left out because not even one fits a message.
    pub rejected_items: u64,
    /// Why, naming the first item left out.
    pub rejection: Option<String>,
}

impl Split {
    /// Items in all messages.
    pub fn accepted_items(&self) -> u64 {
        self.messages.iter().map(|m| m.items as u64).sum()
    }
}

/// A request that cannot be taken at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SplitError {
    /// A span id or trace id is invalid.
    #[error("resource_spans[{resource}].scope_spans[{scope}].spans[{span}]: {source}")]
    InvalidId {
        /// Index of the resource in the request.
        resource: usize,
        /// Index of the scope in the resource.
        scope: usize,
        /// Index of the span in the scope.
        span: usize,
        /// What is wrong with the id.
        source: IdError,
    },
}

/// Encoded request parts: items and envelope heads, all in one buffer.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    /// Per resource: its head.
    resource_heads: Vec<Range<usize>>,
    /// Per scope (numbered across the request): its resource and head.
    scope_heads: Vec<(usize, Range<usize>)>,
}

impl Arena {
    fn push(&mut self, message: &impl prost::Message) -> Range<usize> {
        let start = self.bytes.len();
        message
            .encode(&mut self.bytes)
            .expect("a Vec grows as needed");
        start..self.bytes.len()
    }

    fn head_cost(head: &Range<usize>) -> usize {
        1 + MAX_LEN_VARINT + head.len()
    }
}

/// One encoded item.
#[derive(Clone)]
struct Item {
    scope: usize,
    bytes: Range<usize>,
    count: u32,
}

impl Item {
    fn cost(&self) -> usize {
        field_len(self.bytes.len())
    }
}

/// Items of one key, in request order.
struct Group {
    key: String,
    items: Vec<Item>,
}

/// Collects items into groups, rejecting those that can never fit.
struct Builder {
    arena: Arena,
    groups: Vec<Group>,
    budget: usize,
    split: Split,
}

impl Builder {
    fn new(budget: usize, size_hint: usize) -> Self {
        Builder {
            arena: Arena {
                bytes: Vec::with_capacity(size_hint + size_hint / 8),
                ..Arena::default()
            },
            groups: Vec::new(),
            budget,
            split: Split::default(),
        }
    }

    fn begin_resource(&mut self, head: &impl prost::Message) -> usize {
        let range = self.arena.push(head);
        self.arena.resource_heads.push(range);
        self.arena.resource_heads.len() - 1
    }

    fn begin_scope(&mut self, resource: usize, head: &impl prost::Message) -> usize {
        let range = self.arena.push(head);
        self.arena.scope_heads.push((resource, range));
        self.arena.scope_heads.len() - 1
    }

    /// Encodes `item` into group `group`; returns false when it cannot fit
    /// any message (then it is not kept, and `describe` is called to say why).
    fn push_item(
        &mut self,
        group: usize,
        scope: usize,
        item: &impl prost::Message,
        count: u32,
        describe: impl FnOnce(usize, usize) -> String,
    ) -> bool {
        let bytes = self.arena.push(item);
        let item = Item {
            scope,
            bytes,
            count,
        };
        let (resource, scope_head) = &self.arena.scope_heads[scope];
        let alone = item.cost()
            + Arena::head_cost(scope_head)
            + Arena::head_cost(&self.arena.resource_heads[*resource]);
        if alone > self.budget {
            self.arena.bytes.truncate(item.bytes.start);
            self.split.rejected_items += count as u64;
            if self.split.rejection.is_none() {
                self.split.rejection = Some(describe(item.bytes.len(), self.budget));
            }
            return false;
        }
        self.groups[group].items.push(item);
        true
    }

    fn group(&mut self, key: String) -> usize {
        self.groups.push(Group {
            key,
            items: Vec::new(),
        });
        self.groups.len() - 1
    }

    /// Cuts every group into messages under the budget and encodes them.
    fn finish(mut self) -> Split {
        for group in &self.groups {
            let mut start = 0;
            while start < group.items.len() {
                let end = start + fitting_prefix(&self.arena, &group.items[start..], self.budget);
                let chunk = &group.items[start..end];
                self.split.messages.push(Message {
                    key: group.key.clone(),
                    payload: encode_chunk(&self.arena, chunk),
                    items: chunk.iter().map(|i| i.count).sum(),
                });
                start = end;
            }
        }
        self.split
    }
}

/// Bytes of a length-delimited field of `len` bytes, with its one-byte tag.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// How many leading items fit one message, by a bound that is never below
/// the exact size (at least one: every item kept fits alone).
fn fitting_prefix(arena: &Arena, items: &[Item], budget: usize) -> usize {
    let mut size = 0;
    let mut scope = usize::MAX;
    let mut resource = usize::MAX;
    for (n, item) in items.iter().enumerate() {
        let mut cost = item.cost();
        if item.scope != scope {
            let (r, head) = &arena.scope_heads[item.scope];
            cost += Arena::head_cost(head);
            if *r != resource {
                cost += Arena::head_cost(&arena.resource_heads[*r]);
            }
        }
        if size + cost > budget && n > 0 {
            return n;
        }
        size += cost;
        scope = item.scope;
        resource = arena.scope_heads[scope].0;
    }
    items.len()
}

/// Encodes `items` as one export request: resources and scopes in the order
/// their items come, each head written once per run.
fn encode_chunk(arena: &Arena, items: &[Item]) -> Vec<u8> {
    // Exact sizes first: per scope run, then per resource run.
    struct ScopeRun {
        scope: usize,
        items: Range<usize>,
        len: usize,
    }
    struct ResourceRun {
        resource: usize,
        scopes: Range<usize>,
        len: usize,
    }
    let mut scope_runs: Vec<ScopeRun> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match scope_runs.last_mut() {
            Some(run) if run.scope == item.scope => {
                run.items.end = i + 1;
                run.len += item.cost();
            }
            _ => scope_runs.push(ScopeRun {
                scope: item.scope,
                items: i..i + 1,
                len: arena.scope_heads[item.scope].1.len() + item.cost(),
            }),
        }
    }
    let mut resource_runs: Vec<ResourceRun> = Vec::new();
    for (i, run) in scope_runs.iter().enumerate() {
        let resource = arena.scope_heads[run.scope].0;
        match resource_runs.last_mut() {
            Some(r) if r.resource == resource => {
                r.scopes.end = i + 1;
                r.len += field_len(run.len);
            }
            _ => resource_runs.push(ResourceRun {
                resource,
                scopes: i..i + 1,
                len: arena.resource_heads[resource].len() + field_len(run.len),
            }),
        }
    }
    let total: usize = resource_runs.iter().map(|r| field_len(r.len)).sum();

    let mut out = Vec::with_capacity(total);
    for r in &resource_runs {
        encode_key(RESOURCES_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint(r.len as u64, &mut out);
        out.extend_from_slice(&arena.bytes[arena.resource_heads[r.resource].clone()]);
        for s in &scope_runs[r.scopes.clone()] {
            encode_key(CHILDREN_FIELD, WireType::LengthDelimited, &mut out);
            encode_varint(s.len as u64, &mut out);
            out.extend_from_slice(&arena.bytes[arena.scope_heads[s.scope].1.clone()]);
            for item in &items[s.items.clone()] {
                encode_key(CHILDREN_FIELD, WireType::LengthDelimited, &mut out);
                encode_varint(item.bytes.len() as u64, &mut out);
                out.extend_from_slice(&arena.bytes[item.bytes.clone()]);
            }
        }
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// Splits traces into one message per trace (several when a trace is larger
/// than `budget` bytes). Spans with an invalid id fail the whole request; a
/// parent span id of eight zero bytes is cleared, as OTLP means "no parent".
pub fn split_traces(
    request: ExportTraceServiceRequest,
    budget: usize,
    size_hint: usize,
) -> Result<Split, SplitError> {
    let mut builder = Builder::new(budget, size_hint);
    let mut by_trace: HashMap<[u8; 16], usize> = HashMap::new();
    for (ri, mut resource_spans) in request.resource_spans.into_iter().enumerate() {
        let scopes = std::mem::take(&mut resource_spans.scope_spans);
        let resource = builder.begin_resource(&resource_spans);
        for (si, mut scope_spans) in scopes.into_iter().enumerate() {
            let spans = std::mem::take(&mut scope_spans.spans);
            let scope = builder.begin_scope(resource, &scope_spans);
            for (pi, mut span) in spans.into_iter().enumerate() {
                let invalid = |source| SplitError::InvalidId {
                    resource: ri,
                    scope: si,
                    span: pi,
                    source,
                };
                let trace_id = ids::trace_id(&span.trace_id).map_err(invalid)?;
                ids::span_id(&span.span_id).map_err(invalid)?;
                if ids::parent_span_id(&span.parent_span_id)
                    .map_err(invalid)?
                    .is_none()
                {
                    span.parent_span_id.clear();
                }
                let group = match by_trace.get(&trace_id) {
                    Some(g) => *g,
                    None => {
                        let g = builder.group(trace_key(&trace_id));
                        by_trace.insert(trace_id, g);
                        g
                    }
                };
                builder.push_item(group, scope, &span, 1, |len, budget| {
                    let mut span_id = String::new();
                    push_hex(&mut span_id, &span.span_id);
                    format!(
                        "span {span_id} ({:?}) of trace {} is {len} bytes encoded and cannot fit \
                         a Kafka message of at most {budget} bytes of payload (KAFKA_MESSAGE_MAX_BYTES); \
                         it was dropped",
                        span.name,
                        trace_key(&trace_id),
                    )
                });
            }
        }
    }
    Ok(builder.finish())
}

/// Data points in a metric.
pub fn data_points(metric: &Metric) -> u32 {
    let n = match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    n as u32
}

/// Splits metrics into one message per resource (several when a resource's
/// metrics are larger than `budget` bytes), keyed by [`resource_key`].
pub fn split_metrics(
    request: ExportMetricsServiceRequest,
    budget: usize,
    size_hint: usize,
) -> Split {
    let mut builder = Builder::new(budget, size_hint);
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for mut resource_metrics in request.resource_metrics {
        let scopes = std::mem::take(&mut resource_metrics.scope_metrics);
        let key = resource_key(resource_metrics.resource.as_ref());
        let group = *by_key
            .entry(key.clone())
            .or_insert_with(|| builder.group(key));
        let resource = builder.begin_resource(&resource_metrics);
        for mut scope_metrics in scopes {
            let metrics = std::mem::take(&mut scope_metrics.metrics);
            let scope = builder.begin_scope(resource, &scope_metrics);
            for metric in metrics {
                builder.push_item(group, scope, &metric, data_points(&metric), |len, budget| {
                    format!(
                        "metric {:?} is {len} bytes encoded and cannot fit a Kafka message of at most \
                         {budget} bytes of payload (KAFKA_MESSAGE_MAX_BYTES); it was dropped",
                        metric.name
                    )
                });
            }
        }
    }
    builder.finish()
}

/// Splits logs into one message per trace for the records that carry a
/// trace id (keyed by [`trace_key`], as the trace's spans are, so a trace's
/// spans and records share a partition number), and one per resource for
/// the others (keyed by [`resource_key`]); several when a group is larger
/// than `budget` bytes.
pub fn split_logs(request: ExportLogsServiceRequest, budget: usize, size_hint: usize) -> Split {
    let mut builder = Builder::new(budget, size_hint);
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for mut resource_logs in request.resource_logs {
        let scopes = std::mem::take(&mut resource_logs.scope_logs);
        let own_key = resource_key(resource_logs.resource.as_ref());
        let resource = builder.begin_resource(&resource_logs);
        for mut scope_logs in scopes {
            let records = std::mem::take(&mut scope_logs.log_records);
            let scope = builder.begin_scope(resource, &scope_logs);
            for record in records {
                let key = match <[u8; 16]>::try_from(record.trace_id.as_slice()) {
                    Ok(trace) if trace != [0; 16] => trace_key(&trace),
                    _ => own_key.clone(),
                };
                let group = *by_key
                    .entry(key.clone())
                    .or_insert_with(|| builder.group(key));
                builder.push_item(group, scope, &record, 1, |len, budget| {
                    format!(
                        "a log record of {len} bytes encoded cannot fit a Kafka message of at most \
                         {budget} bytes of payload (KAFKA_MESSAGE_MAX_BYTES); it was dropped"
                    )
                });
            }
        }
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::otlp::common::InstrumentationScope;
    use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
    use observatory_schemas::testing::{kv_str, spans_of, TraceGenerator};
    use prost::Message as _;
    use std::collections::BTreeMap;

    const BIG: usize = 1 << 30;

    /// A span with the resource and scope it came with.
    type Placed = (String, String, Span);

    /// Spans by (trace, span id), with the resource and scope names they came with.
    fn index(request: &ExportTraceServiceRequest) -> BTreeMap<(Vec<u8>, Vec<u8>), Placed> {
        let mut out = BTreeMap::new();
        for rs in &request.resource_spans {
            let service = format!("{:?}", rs.resource);
            for ss in &rs.scope_spans {
                let scope = ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for span in &ss.spans {
                    let old = out.insert(
                        (span.trace_id.clone(), span.span_id.clone()),
                        (service.clone(), scope.clone(), span.clone()),
                    );
                    assert!(old.is_none(), "duplicate span");
                }
            }
        }
        out
    }

    fn decode_all(split: &Split) -> ExportTraceServiceRequest {
        let mut all = ExportTraceServiceRequest::default();
        for m in &split.messages {
            let part = ExportTraceServiceRequest::decode(&m.payload[..]).expect("valid protobuf");
            all.resource_spans.extend(part.resource_spans);
        }
        all
    }

    #[test]
    fn every_span_lands_once_with_its_resource_and_scope() {
        let request = TraceGenerator::new(3).request(512);
        let expected = index(&request);
        let split = split_traces(request, BIG, 0).unwrap();
        assert_eq!(split.rejected_items, 0);
        assert_eq!(split.accepted_items(), 512);
        assert_eq!(index(&decode_all(&split)), expected);
    }

    #[test]
    fn one_message_per_trace_keyed_by_its_id() {
        let request = TraceGenerator::new(4).request(300);
        let split = split_traces(request, BIG, 0).unwrap();
        let mut keys = std::collections::HashSet::new();
        for m in &split.messages {
            assert!(keys.insert(m.key.clone()), "a trace got two messages");
            let part = ExportTraceServiceRequest::decode(&m.payload[..]).unwrap();
            let spans: Vec<_> = spans_of(&part).collect();
            assert_eq!(spans.len() as u32, m.items);
            for span in spans {
                assert_eq!(trace_key(&span.trace_id.clone().try_into().unwrap()), m.key);
            }
        }
    }

    #[test]
    fn a_large_trace_is_cut_under_the_budget() {
        let request = TraceGenerator::new(5)
            .with_content_bytes(20_000)
            .with_max_spans(20)
            .request(200);
        let expected = index(&request);
        let budget = 64 * 1024;
        let split = split_traces(request, budget, 0).unwrap();
        assert_eq!(split.rejected_items, 0);
        let mut per_key = HashMap::<&str, usize>::new();
        for m in &split.messages {
            assert!(m.payload.len() <= budget, "{} > {budget}", m.payload.len());
            *per_key.entry(&m.key).or_default() += 1;
        }
        assert!(
            per_key.values().any(|n| *n > 1),
            "some trace should need several messages"
        );
        assert_eq!(index(&decode_all(&split)), expected);
    }

    #[test]
    fn a_span_that_cannot_fit_is_rejected_by_name_and_the_rest_kept() {
        let mut request = TraceGenerator::new(6).request(10);
        let huge = &mut request.resource_spans[0].scope_spans[0].spans[0];
        huge.name = "chat gpt-huge".into();
        huge.attributes
            .push(kv_str("gen_ai.input.messages", "x".repeat(100_000)));
        let split = split_traces(request, 50_000, 0).unwrap();
        assert_eq!(split.rejected_items, 1);
        assert_eq!(split.accepted_items(), 9);
        let why = split.rejection.unwrap();
        assert!(why.contains("chat gpt-huge"), "{why}");
        assert!(why.contains("KAFKA_MESSAGE_MAX_BYTES"), "{why}");
    }

    #[test]
    fn bad_ids_are_refused_with_their_place() {
        let mut request = TraceGenerator::new(8).request(5);
        request.resource_spans[0].scope_spans[0].spans[2].trace_id = vec![1; 8];
        let err = split_traces(request, BIG, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resource_spans[0].scope_spans[0].spans[2]: trace_id must be 16 bytes, got 8"
        );

        let mut request = TraceGenerator::new(8).request(5);
        request.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
        let err = split_traces(request, BIG, 0).unwrap_err();
        assert!(err.to_string().contains("span_id must not be all zeroes"));
    }

    #[test]
    fn a_zero_parent_becomes_a_root() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![0; 8],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope::default()),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let split = split_traces(request, BIG, 0).unwrap();
        let out = decode_all(&split);
        assert!(spans_of(&out).next().unwrap().parent_span_id.is_empty());
    }
}
