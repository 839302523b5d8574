//! `GET /api/v1/traces/{trace_id}`: one trace as a span tree with its LLM
//! call details, from PostgreSQL, scoped to the token's tenant.
//!
//! Every value from the request is a bound query parameter. Spans whose
//! parent is not in the trace (not received yet, or dropped by the sender)
//! are roots, so a partial trace still shows everything that arrived.

use crate::logs::LogView;
use crate::problem::Problem;
use crate::scores::read::ScoreView;
use observatory_schemas::civil::rfc3339_nanos;
use observatory_schemas::messages::{chat, Chat};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The LLM call a span made.
#[derive(Debug, Serialize, PartialEq)]
pub struct LlmCall {
    /// Provider.
    pub provider: String,
    /// Billed model.
    pub model: String,
    /// Operation.
    pub operation: String,
    /// Input tokens (cache included).
    pub input_tokens: Option<i64>,
    /// Output tokens (reasoning included).
    pub output_tokens: Option<i64>,
    /// Cache reads.
    pub cache_read_tokens: Option<i64>,
    /// Cache writes.
    pub cache_write_tokens: Option<i64>,
    /// Reasoning.
    pub reasoning_tokens: Option<i64>,
    /// Cost, USD (`null` for a model without a price).
    pub cost_usd: Option<f64>,
    /// Time to first token.
    pub time_to_first_token_ms: Option<f64>,
    /// Why generation stopped, one per choice.
    pub finish_reasons: Vec<String>,
    /// The captured content as chat messages (empty lists when the
    /// instrumentation captured none), from any of the dialects
    /// `observatory_schemas::messages` reads.
    pub messages: Chat,
}

/// One span of the tree.
#[derive(Debug, Serialize)]
pub struct SpanNode {
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; `null` for a root.
    pub parent_span_id: Option<String>,
    /// Service.
    pub service: String,
    /// Name.
    pub name: String,
    /// OTLP span kind.
    pub kind: i16,
    /// Start, RFC 3339.
    pub start_time: String,
    /// Duration, ms.
    pub duration_ms: f64,
    /// OTLP status code.
    pub status_code: i16,
    /// Status message.
    pub status_message: String,
    /// Attributes.
    pub attributes: Value,
    /// Resource attributes.
    pub resource: Value,
    /// Events.
    pub events: Value,
    /// Links.
    pub links: Value,
    /// The model call, for LLM spans.
    pub llm: Option<LlmCall>,
    /// Child spans, by start time.
    pub children: Vec<SpanNode>,
    /// Scores of this span, oldest first.
    pub scores: Vec<ScoreView>,
    /// Log records of this span, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogView>,
}

/// The trace.
#[derive(Debug, Serialize)]
pub struct Trace {
    /// Trace id, hex.
    pub trace_id: String,
    /// Spans in the trace.
    pub span_count: usize,
    /// Summed LLM cost, USD.
    pub cost_usd: f64,
    /// Root spans (and orphans), by start time.
    pub roots: Vec<SpanNode>,
    /// The trace has more spans than `TRACE_MAX_SPANS`: only the first
    /// ones (by start time) are here.
    pub truncated: bool,
    /// Scores of the trace itself (not of one span), oldest first.
    pub scores: Vec<ScoreView>,
    /// Log records of the trace that name no span of it, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogView>,
}

impl Trace {
    /// Puts `scores` (by span id, `""` for the trace's own) on the trace
    /// and its spans; scores of a span not in the answer go to the trace.
    pub fn attach_scores(&mut self, mut scores: HashMap<String, Vec<ScoreView>>) {
        fn walk(node: &mut SpanNode, scores: &mut HashMap<String, Vec<ScoreView>>) {
            if let Some(s) = scores.remove(&node.span_id) {
                node.scores = s;
            }
            for child in &mut node.children {
                walk(child, scores);
            }
        }
        for root in &mut self.roots {
            walk(root, &mut scores);
        }
        let mut rest: Vec<ScoreView> = scores.into_values().flatten().collect();
        rest.sort_by(|a, b| a.time.cmp(&b.time));
        self.scores = rest;
    }

    /// Puts log `records` (oldest first) on the spans they name, the rest
    /// on the trace; a model call whose span has GenAI content records
    /// reads its messages from its attributes, its events and those
    /// records together (each side from the first shape that holds it).
    pub fn attach_logs(&mut self, records: Vec<LogView>) {
        let mut by_span: HashMap<String, Vec<LogView>> = HashMap::new();
        for r in records {
            by_span
                .entry(r.span_id.clone().unwrap_or_default())
                .or_default()
                .push(r);
        }
        fn walk(node: &mut SpanNode, by_span: &mut HashMap<String, Vec<LogView>>) {
            if let Some(records) = by_span.remove(&node.span_id) {
                let content: Vec<Value> =
                    records.iter().filter_map(crate::logs::as_event).collect();
                if !content.is_empty() {
                    if let Some(llm) = node.llm.as_mut() {
                        let mut events = node.events.as_array().cloned().unwrap_or_default();
                        events.extend(content);
                        llm.messages = chat(&node.attributes, &Value::Array(events));
                    }
                }
                node.logs = records;
            }
            for child in &mut node.children {
                walk(child, by_span);
            }
        }
        for root in &mut self.roots {
            walk(root, &mut by_span);
        }
        let mut rest: Vec<LogView> = by_span.into_values().flatten().collect();
        rest.sort_by(|a, b| a.time.cmp(&b.time));
        self.logs = rest;
    }
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    observatory_schemas::kafka::push_hex(&mut out, bytes);
    out
}

/// A trace id from the path: 32 hex digits (shorter ids are left-padded
/// with zeros, as Tempo does).
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], Problem> {
    let bad = |why: &str| Problem::bad_parameter("trace_id", why.to_owned());
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("a trace id is 1 to 32 hexadecimal digits"));
    }
    let padded = format!("{text:0>32}");
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    if id == [0; 16] {
        return Err(bad("the all-zero trace id is invalid"));
    }
    Ok(id)
}

/// One stored span as every reader of a trace gets it: both APIs' trace by
/// id (`GET /api/v1/traces/{id}` and Tempo's) go through [`load_spans`].
pub(crate) struct StoredSpan {
    pub span_id: Vec<u8>,
    pub parent_span_id: Option<Vec<u8>>,
    pub service: String,
    pub name: String,
    pub kind: i16,
    pub start: SystemTime,
    pub duration_ns: i64,
    pub status_code: i16,
    pub status_message: String,
    pub scope_name: String,
    /// JSON text.
    pub attributes: String,
    /// JSON text.
    pub resource: String,
    /// JSON text.
    pub events: String,
    /// JSON text.
    pub links: String,
    pub llm: Option<LlmCall>,
}

impl StoredSpan {
    /// Start, ns since the epoch.
    pub fn start_ns(&self) -> u64 {
        self.start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

const QUERY: &str = "
SELECT s.span_id, s.parent_span_id, s.service, s.name, s.kind, s.start_time, s.duration_ns,
       s.status_code, s.status_message, s.scope_name, s.attributes::text, s.resource::text,
       s.events::text, s.links::text,
       c.provider, c.model, c.operation, c.input_tokens, c.output_tokens, c.cache_read_tokens,
       c.cache_write_tokens, c.reasoning_tokens, c.cost_usd, c.time_to_first_token_ms,
       c.finish_reasons
FROM span_rows s
LEFT JOIN llm_calls c
  ON c.tenant = s.tenant AND c.trace_id = s.trace_id AND c.span_id = s.span_id AND c.start_time = s.start_time
WHERE s.tenant = $1 AND s.trace_id = $2
ORDER BY s.start_time, s.span_id
LIMIT $3";

/// The first `limit` spans of trace `id` of `tenant` by start time, with
/// their model calls; empty when PostgreSQL has none.
pub(crate) async fn load_spans(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &[u8; 16],
    limit: usize,
) -> Result<Vec<StoredSpan>, tokio_postgres::Error> {
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows = client.query(QUERY, &[&tenant, &&id[..], &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| StoredSpan {
            span_id: r.get(0),
            parent_span_id: r.get(1),
            service: r.get(2),
            name: r.get(3),
            kind: r.get(4),
            start: r.get(5),
            duration_ns: r.get(6),
            status_code: r.get(7),
            status_message: r.get(8),
            scope_name: r.get(9),
            attributes: r.get(10),
            resource: r.get(11),
            events: r.get(12),
            links: r.get(13),
            llm: r.get::<_, Option<String>>(14).map(|provider| LlmCall {
                provider,
                model: r.get(15),
                operation: r.get(16),
                input_tokens: r.get(17),
                output_tokens: r.get(18),
                cache_read_tokens: r.get(19),
                cache_write_tokens: r.get(20),
                reasoning_tokens: r.get(21),
                cost_usd: r.get(22),
                time_to_first_token_ms: r.get(23),
                finish_reasons: r.get(24),
                messages: Chat::default(),
            }),
        })
        .collect())
}

fn json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Reads the trace `id` of `tenant`; `None` when PostgreSQL has no span of it.
pub async fn load(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &[u8; 16],
    max_spans: usize,
) -> Result<Option<Trace>, tokio_postgres::Error> {
    let mut spans = load_spans(client, tenant, id, max_spans.saturating_add(1)).await?;
    if spans.is_empty() {
        return Ok(None);
    }
    let truncated = spans.len() > max_spans;
    spans.truncate(max_spans);
    let mut nodes: Vec<SpanNode> = Vec::with_capacity(spans.len());
    let mut cost = 0.0;
    for s in spans {
        cost += s.llm.as_ref().and_then(|c| c.cost_usd).unwrap_or(0.0);
        nodes.push(with_messages(SpanNode {
            span_id: hex(&s.span_id),
            parent_span_id: s.parent_span_id.as_deref().map(hex),
            start_time: rfc3339_nanos(s.start_ns() as i64),
            duration_ms: s.duration_ns as f64 / 1e6,
            service: s.service,
            name: s.name,
            kind: s.kind,
            status_code: s.status_code,
            status_message: s.status_message,
            attributes: json(s.attributes),
            resource: json(s.resource),
            events: json(s.events),
            links: json(s.links),
            llm: s.llm,
            children: Vec::new(),
            scores: Vec::new(),
            logs: Vec::new(),
        }));
    }
    Ok(Some(Trace {
        trace_id: hex(id),
        span_count: nodes.len(),
        cost_usd: cost,
        roots: tree(nodes),
        truncated,
        scores: Vec::new(),
        logs: Vec::new(),
    }))
}

/// Fills a model call's `messages` from its span's attributes and events.
pub(crate) fn with_messages(mut node: SpanNode) -> SpanNode {
    if let Some(llm) = node.llm.as_mut() {
        llm.messages = chat(&node.attributes, &node.events);
    }
    node
}

/// Nests spans under their parents (input and children in start order).
pub(crate) fn tree(nodes: Vec<SpanNode>) -> Vec<SpanNode> {
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.span_id.clone(), i))
        .collect();
    let parent_of: Vec<Option<usize>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.parent_span_id
                .as_ref()
                .and_then(|p| index.get(p).copied())
                .filter(|&p| p != i)
        })
        .collect();
    // Attach children from the last span backwards, so that each node is
    // complete before it is moved under its parent; a cycle (bad input)
    // leaves its spans as roots.
    let mut slots: Vec<Option<SpanNode>> = nodes.into_iter().map(Some).collect();
    let mut depth = vec![0usize; slots.len()];
    for i in 0..slots.len() {
        let mut d = 0;
        let mut p = parent_of[i];
        while let Some(q) = p {
            d += 1;
            if d > slots.len() {
                break;
            }
            p = parent_of[q];
        }
        depth[i] = d;
    }
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(depth[i]));
    let mut roots = Vec::new();
    for i in order {
        let node = slots[i].take().expect("each span is moved once");
        match parent_of[i].filter(|_| depth[i] <= slots.len()) {
            Some(p) if slots[p].is_some() => {
                slots[p].as_mut().expect("checked").children.push(node)
            }
            _ => roots.push(node),
        }
    }
    let by_start = |a: &SpanNode, b: &SpanNode| {
        a.start_time
            .cmp(&b.start_time)
            .then(a.span_id.cmp(&b.span_id))
    };
    fn sort(nodes: &mut [SpanNode], by: &impl Fn(&SpanNode, &SpanNode) -> std::cmp::Ordering) {
        nodes.sort_by(by);
        for n in nodes {
            sort(&mut n.children, by);
        }
    }
    sort(&mut roots, &by_start);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_hex_and_padded() {
        assert_eq!(parse_trace_id("1").unwrap()[15], 1);
        assert_eq!(parse_trace_id(&"ab".repeat(16)).unwrap(), [0xab; 16]);
        for bad in ["", "xyz", &"a".repeat(33), "0", "1' OR '1'='1"] {
            let p = parse_trace_id(bad).unwrap_err();
            assert_eq!(p.status, 400);
            assert_eq!(p.parameter.as_deref(), Some("trace_id"));
        }
    }

    fn node(id: &str, parent: Option<&str>, start: &str) -> SpanNode {
        SpanNode {
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            service: String::new(),
            name: id.into(),
            kind: 0,
            start_time: start.into(),
            duration_ms: 0.0,
            status_code: 0,
            status_message: String::new(),
            attributes: Value::Null,
            resource: Value::Null,
            events: Value::Null,
            links: Value::Null,
            llm: None,
            children: vec![],
            scores: vec![],
            logs: vec![],
        }
    }

    #[test]
    fn spans_nest_under_their_parents_and_orphans_are_roots() {
        let roots = tree(vec![
            node("a", None, "1"),
            node("b", Some("a"), "2"),
            node("c", Some("b"), "3"),
            node("d", Some("a"), "4"),
            node("e", Some("missing"), "5"),
            node("x", Some("y"), "6"),
            node("y", Some("x"), "7"),
        ]);
        let names: Vec<&str> = roots.iter().map(|n| n.name.as_str()).collect();
        assert!(names.starts_with(&["a", "e"]), "{names:?}");
        assert_eq!(roots[0].children.len(), 2);
        assert_eq!(roots[0].children[0].children[0].name, "c");
        let total = |ns: &[SpanNode]| {
            fn count(ns: &[SpanNode]) -> usize {
                ns.iter().map(|n| 1 + count(&n.children)).sum()
            }
            count(ns)
        };
        assert_eq!(total(&roots), 7, "a cycle loses no span");
    }
}
