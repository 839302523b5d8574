//! The shapes of traces read from blocks: the span tree of
//! `GET /api/v1/traces/{id}` ([`to_trace`]), a trace's parts merged over
//! blocks (`merge`), a trace cut to `TRACE_MAX_SPANS` ([`cap_spans`]),
//! and the price table both need.
//!
//! What it guarantees: a trace from blocks has exactly the shape of one
//! from PostgreSQL: the same span rows (`observatory_schemas::span`), the
//! same LLM call extraction and prices as the PostgreSQL sink, start times
//! at PostgreSQL's microsecond precision; spans PostgreSQL would refuse
//! (bad ids) are left out, as the sink leaves them out. Pure code.

use observatory_schemas::civil::rfc3339_nanos;
use observatory_schemas::genai::llm_call;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::pricing::{cost_usd, PriceBook};
use observatory_schemas::span::flatten;
use std::collections::HashSet;
use std::sync::OnceLock;

/// The prices of [`to_trace`] and of the analytics read from metrics: the
/// built-in table plus `PRICING_FILE`, as the PostgreSQL sink prices spans.
pub(super) static PRICES: OnceLock<PriceBook> = OnceLock::new();

/// The API's price table (set when [`super::Blocks::open`] runs at start-up).
pub fn prices() -> &'static PriceBook {
    PRICES.get_or_init(PriceBook::builtin)
}

/// Keeps the first `max` spans of `spans` (in their order); true when
/// some were cut.
pub fn cap_spans(spans: &mut Vec<ResourceSpans>, max: usize) -> bool {
    let mut left = max;
    let mut cut = false;
    for rs in spans.iter_mut() {
        for ss in rs.scope_spans.iter_mut() {
            if ss.spans.len() > left {
                ss.spans.truncate(left);
                cut = true;
            }
            left -= ss.spans.len();
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    spans.retain(|rs| !rs.scope_spans.is_empty());
    cut
}

/// Merges a trace's parts, newest block first; a span id seen in an
/// earlier part is dropped, and so are scopes and resources left empty.
pub(super) fn merge(parts: impl Iterator<Item = Vec<ResourceSpans>>) -> Vec<ResourceSpans> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    for part in parts {
        for mut rs in part {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| seen.insert(s.span_id.clone()));
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
            if !rs.scope_spans.is_empty() {
                out.push(rs);
            }
        }
    }
    out
}

/// A trace read from blocks, in the shape of `GET /api/v1/traces/{id}`.
pub fn to_trace(id: &[u8; 16], resource_spans: Vec<ResourceSpans>) -> crate::traces::Trace {
    use crate::traces::{LlmCall, SpanNode, Trace};
    use observatory_schemas::ids;
    let prices = prices();
    // Spans with ids PostgreSQL would refuse are left out, as the sink does.
    let mut request = ExportTraceServiceRequest { resource_spans };
    for rs in &mut request.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| {
                ids::trace_id(&s.trace_id).is_ok()
                    && ids::span_id(&s.span_id).is_ok()
                    && ids::parent_span_id(&s.parent_span_id).is_ok()
            });
        }
    }
    let rows = flatten(&request).unwrap_or_default();
    let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    let hex = |bytes: &[u8]| {
        let mut out = String::with_capacity(2 * bytes.len());
        observatory_schemas::kafka::push_hex(&mut out, bytes);
        out
    };
    let mut cost = 0.0;
    let mut nodes = Vec::with_capacity(rows.len());
    for (row, span, _) in rows {
        // PostgreSQL keeps microseconds.
        let start_ns = (row.start_unix_nano - row.start_unix_nano % 1_000).min(i64::MAX as u64);
        let duration_ns = row.duration_ns().min(i64::MAX as u64) as i64;
        let llm = llm_call(span).map(|call| {
            let usage = call.usage();
            let computed = prices
                .lookup(&call.model, row.start_unix_nano)
                .map(|price| cost_usd(price, &usage));
            LlmCall {
                provider: call.provider,
                model: call.model,
                operation: call.operation,
                input_tokens: call.input_tokens,
                output_tokens: call.output_tokens,
                cache_read_tokens: call.cache_read_tokens,
                cache_write_tokens: call.cache_write_tokens,
                reasoning_tokens: call.reasoning_tokens,
                cost_usd: call.client_cost_usd.or(computed),
                time_to_first_token_ms: call.time_to_first_token_ms,
                finish_reasons: call.finish_reasons,
                messages: Default::default(),
            }
        });
        cost += llm.as_ref().and_then(|c| c.cost_usd).unwrap_or(0.0);
        nodes.push(crate::traces::with_messages(SpanNode {
            span_id: hex(&row.span_id),
            parent_span_id: row.parent_span_id.map(|p| hex(&p)),
            service: row.service,
            name: row.name,
            kind: row.kind,
            start_time: rfc3339_nanos(start_ns as i64),
            duration_ms: duration_ns as f64 / 1e6,
            status_code: row.status_code,
            status_message: row.status_message,
            attributes: json(&row.attributes),
            resource: json(&row.resource),
            events: json(&row.events),
            links: json(&row.links),
            llm,
            children: Vec::new(),
            scores: Vec::new(),
            logs: Vec::new(),
        }));
    }
    Trace {
        trace_id: hex(id),
        span_count: nodes.len(),
        cost_usd: cost,
        roots: crate::traces::tree(nodes),
        truncated: false,
        scores: Vec::new(),
        logs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{kv_int, kv_str, resource_spans, span};
    use super::*;
    use observatory_schemas::otlp::trace::Span;

    #[test]
    fn merging_drops_duplicate_spans_newest_first() {
        let a = resource_spans(vec![
            span(1, 1, None, 10, vec![kv_str("v", "new")]),
            span(1, 2, Some(1), 20, vec![]),
        ]);
        let b = resource_spans(vec![
            span(1, 1, None, 10, vec![kv_str("v", "old")]),
            span(1, 3, Some(1), 30, vec![]),
        ]);
        let merged = merge([a, b].into_iter());
        let spans: Vec<&Span> = merged
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect();
        assert_eq!(spans.len(), 3);
        assert_eq!(
            spans[0].attributes[0].value.as_ref().unwrap().value,
            Some(observatory_schemas::otlp::common::any_value::Value::StringValue("new".into()))
        );
    }

    #[test]
    fn blocks_trace_has_the_postgresql_shape() {
        let id = [7u8; 16];
        let spans = resource_spans(vec![
            span(7, 1, None, 1_750_000_000_123_456_789, vec![]),
            span(
                7,
                2,
                Some(1),
                1_750_000_000_200_000_000,
                vec![
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.provider.name", "openai"),
                    kv_str("gen_ai.request.model", "gpt-4o"),
                    kv_int("gen_ai.usage.input_tokens", 1000),
                    kv_int("gen_ai.usage.output_tokens", 100),
                ],
            ),
        ]);
        let t = to_trace(&id, spans);
        assert_eq!(t.trace_id, "07".repeat(16));
        assert_eq!(t.span_count, 2);
        assert_eq!(t.roots.len(), 1);
        let root = &t.roots[0];
        assert_eq!(
            root.start_time, "2025-06-15T15:06:40.123456Z",
            "microseconds, as PostgreSQL keeps"
        );
        assert_eq!(root.service, "bot");
        assert_eq!(root.resource["service.name"], "bot");
        let call = root.children[0].llm.as_ref().unwrap();
        assert_eq!(call.model, "gpt-4o");
        assert_eq!(call.input_tokens, Some(1000));
        assert!(call.cost_usd.unwrap() > 0.0);
        assert_eq!(t.cost_usd, call.cost_usd.unwrap());
    }

    #[test]
    fn capping_keeps_the_first_spans() {
        let mut spans = resource_spans(vec![
            span(1, 1, None, 10, vec![]),
            span(1, 2, Some(1), 20, vec![]),
            span(1, 3, Some(1), 30, vec![]),
        ]);
        assert!(!cap_spans(&mut spans.clone(), 3));
        assert!(cap_spans(&mut spans, 2));
        assert_eq!(spans[0].scope_spans[0].spans.len(), 2);
    }
}
