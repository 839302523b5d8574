//! One trace as Tempo stores it in a row: all of its spans merged (spans of
//! identical resources and scopes under one entry), with the derived trace
//! fields of tempo-blocks.md §4.2: start, end, root span and service, per
//! service span and error counts, and the nested-set numbering TraceQL's
//! structural queries use.

use crate::otlp::common::{InstrumentationScope, KeyValue};
use crate::otlp::resource::Resource;
use crate::otlp::trace::{span::Link, ResourceSpans, Span};
use crate::span::string_attribute;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Status code of an error span.
const STATUS_ERROR: i32 = 2;

/// The spans of one scope.
#[derive(Debug)]
pub struct ScopeGroup<'a> {
    /// The scope (empty when the sender gave none).
    pub scope: Option<&'a InstrumentationScope>,
    /// Its spans.
    pub spans: Vec<&'a Span>,
}

/// The scopes of one resource.
#[derive(Debug)]
pub struct ResourceGroup<'a> {
    /// The resource.
    pub resource: Option<&'a Resource>,
    /// Its `service.name`, "" when none.
    pub service: &'a str,
    /// Its scopes.
    pub scopes: Vec<ScopeGroup<'a>>,
}

/// Nested-set numbers of a span: parent's left (-1 for a root), left, right.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NestedSet {
    /// The parent's `left`, -1 for a root.
    pub parent: i32,
    /// Number on entry.
    pub left: i32,
    /// Number on exit.
    pub right: i32,
}

/// A trace ready to be written as one row.
#[derive(Debug)]
pub struct TraceRow<'a> {
    /// The id, 16 bytes.
    pub trace_id: [u8; 16],
    /// Earliest span start, ns since the epoch.
    pub start: u64,
    /// Latest span end.
    pub end: u64,
    /// Root span's service, "" without a root.
    pub root_service: &'a str,
    /// Root span's name.
    pub root_span: &'a str,
    /// Spans and error spans per service.
    pub service_stats: BTreeMap<&'a str, (i32, i32)>,
    /// The spans, by resource and scope.
    pub resources: Vec<ResourceGroup<'a>>,
    /// Nested-set numbers, one per span in the order of `resources`.
    pub nested: Vec<NestedSet>,
}

fn is_child_of_link(trace_id: &[u8], link: &Link) -> bool {
    link.trace_id == trace_id
        && string_attribute(&link.attributes, "opentracing.ref_type") == Some("child_of")
}

impl<'a> TraceRow<'a> {
    /// Merges every span of `trace_id` found in `batches` (the Kafka messages
    /// of that trace), each span id once: a span delivered twice (a client
    /// retry, a replay) is kept as first seen. `None` when there is none.
    pub fn merge(trace_id: [u8; 16], batches: &[&'a [ResourceSpans]]) -> Option<TraceRow<'a>> {
        let mut resources: Vec<ResourceGroup<'a>> = Vec::new();
        let mut seen: HashSet<&'a [u8]> = HashSet::new();
        for rs in batches.iter().flat_map(|b| b.iter()) {
            let resource = rs.resource.as_ref();
            let at = match resources.iter().position(|g| g.resource == resource) {
                Some(i) => i,
                None => {
                    resources.push(ResourceGroup {
                        resource,
                        service: resource
                            .and_then(|r| string_attribute(&r.attributes, "service.name"))
                            .unwrap_or(""),
                        scopes: Vec::new(),
                    });
                    resources.len() - 1
                }
            };
            let group = &mut resources[at];
            for ss in &rs.scope_spans {
                let spans = ss.spans.iter().filter(|s| {
                    s.trace_id == trace_id && (s.span_id.is_empty() || seen.insert(&s.span_id))
                });
                let scope = ss.scope.as_ref();
                match group.scopes.iter_mut().find(|g| g.scope == scope) {
                    Some(g) => g.spans.extend(spans),
                    None => group.scopes.push(ScopeGroup {
                        scope,
                        spans: spans.collect(),
                    }),
                }
            }
            group.scopes.retain(|s| !s.spans.is_empty());
        }
        resources.retain(|r| !r.scopes.is_empty());
        if resources.is_empty() {
            return None;
        }

        let mut row = TraceRow {
            trace_id,
            start: u64::MAX,
            end: 0,
            root_service: "",
            root_span: "",
            service_stats: BTreeMap::new(),
            resources: Vec::new(),
            nested: Vec::new(),
        };
        let mut root_found = false;
        for r in &resources {
            for s in r.scopes.iter().flat_map(|s| &s.spans) {
                row.start = row.start.min(s.start_time_unix_nano);
                row.end = row
                    .end
                    .max(s.end_time_unix_nano.max(s.start_time_unix_nano));
                let stats = row.service_stats.entry(r.service).or_default();
                stats.0 += 1;
                stats.1 += i32::from(s.status.as_ref().is_some_and(|st| st.code == STATUS_ERROR));
                let root = s.parent_span_id.is_empty()
                    && !s.links.iter().any(|l| is_child_of_link(&trace_id, l));
                if root && !root_found {
                    root_found = true;
                    row.root_span = &s.name;
                    row.root_service = r.service;
                }
            }
        }
        row.resources = resources;
        row.nested = nested_set(&row.spans().collect::<Vec<_>>());
        Some(row)
    }

    /// Every span, in row order.
    pub fn spans(&self) -> impl Iterator<Item = &'a Span> + '_ {
        self.resources
            .iter()
            .flat_map(|r| r.scopes.iter().flat_map(|s| s.spans.iter().copied()))
    }
}

/// Numbers the span tree depth first from each root (a span without a
/// parent), a counter from 1: `left` on entry, `right` on exit, `parent` the
/// parent's `left`. All zero when a span id repeats or there is no root;
/// spans not under a root stay zero (as in Tempo's nested_set_model.go).
pub fn nested_set(spans: &[&Span]) -> Vec<NestedSet> {
    let mut out = vec![NestedSet::default(); spans.len()];
    let mut by_id: HashMap<&[u8], usize> = HashMap::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        if by_id.insert(&s.span_id, i).is_some() {
            return out;
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if s.parent_span_id.is_empty() {
            roots.push(i);
        } else if let Some(&p) = by_id.get(&s.parent_span_id[..]) {
            children[p].push(i);
        }
    }
    let mut counter = 1;
    // (span, parent's left, next child to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in roots {
        out[root] = NestedSet {
            parent: -1,
            left: counter,
            right: 0,
        };
        counter += 1;
        stack.push((root, 0));
        while let Some((span, next)) = stack.last_mut() {
            let span = *span;
            if let Some(&child) = children[span].get(*next) {
                *next += 1;
                out[child] = NestedSet {
                    parent: out[span].left,
                    left: counter,
                    right: 0,
                };
                counter += 1;
                stack.push((child, 0));
            } else {
                out[span].right = counter;
                counter += 1;
                stack.pop();
            }
        }
    }
    out
}

/// The attributes of a resource or span minus the ones Tempo keeps in
/// columns of their own.
pub fn generic_attributes<'a>(
    attributes: &'a [KeyValue],
    in_columns: &'a [(&'a str, bool)],
) -> impl Iterator<Item = &'a KeyValue> + Clone + 'a {
    use crate::otlp::common::any_value::Value;
    attributes.iter().filter(move |kv| {
        !in_columns.iter().any(|(key, int)| {
            kv.key == *key
                && match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(_)) => !int,
                    Some(Value::IntValue(_)) => *int,
                    _ => false,
                }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("s{id}"),
            start_time_unix_nano: 100 + u64::from(id),
            end_time_unix_nano: 200,
            ..Default::default()
        }
    }

    #[test]
    fn nested_set_numbers_depth_first() {
        // 1 -> (2 -> 4), 3
        let spans = [
            span(1, None),
            span(2, Some(1)),
            span(3, Some(1)),
            span(4, Some(2)),
        ];
        let refs: Vec<&Span> = spans.iter().collect();
        let n = nested_set(&refs);
        assert_eq!(
            n[0],
            NestedSet {
                parent: -1,
                left: 1,
                right: 8
            }
        );
        assert_eq!(
            n[1],
            NestedSet {
                parent: 1,
                left: 2,
                right: 5
            }
        );
        assert_eq!(
            n[3],
            NestedSet {
                parent: 2,
                left: 3,
                right: 4
            }
        );
        assert_eq!(
            n[2],
            NestedSet {
                parent: 1,
                left: 6,
                right: 7
            }
        );
    }

    #[test]
    fn repeated_span_ids_give_zeros() {
        let spans = [span(1, None), span(1, Some(1))];
        let refs: Vec<&Span> = spans.iter().collect();
        assert!(nested_set(&refs).iter().all(|n| *n == NestedSet::default()));
    }

    #[test]
    fn merge_groups_same_resource_and_finds_root() {
        let rs = |spans: Vec<Span>| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(crate::otlp::common::AnyValue {
                        value: Some(crate::otlp::common::any_value::Value::StringValue(
                            "api".into(),
                        )),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![crate::otlp::trace::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        };
        let a = [rs(vec![span(2, Some(1))])];
        let b = [rs(vec![span(1, None)])];
        let row = TraceRow::merge([1; 16], &[&a, &b]).unwrap();
        assert_eq!(row.resources.len(), 1);
        assert_eq!(row.resources[0].scopes.len(), 1);
        assert_eq!(row.spans().count(), 2);
        assert_eq!((row.root_service, row.root_span), ("api", "s1"));
        assert_eq!((row.start, row.end), (101, 200));
        assert_eq!(row.service_stats["api"], (2, 0));
        assert!(TraceRow::merge([2; 16], &[&a]).is_none());
    }

    #[test]
    fn a_span_delivered_twice_is_merged_once() {
        let rs = |spans: Vec<Span>| ResourceSpans {
            scope_spans: vec![crate::otlp::trace::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        };
        let first = [rs(vec![span(1, None), span(2, Some(1))])];
        let again = [rs(vec![span(2, Some(1)), span(1, None), span(3, Some(2))])];
        let row = TraceRow::merge([1; 16], &[&first, &again]).unwrap();
        let ids: Vec<u8> = row.spans().map(|s| s.span_id[0]).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(row.service_stats[""], (3, 0));
        assert!(row.nested.iter().all(|n| n.left > 0), "{:?}", row.nested);
    }
}
