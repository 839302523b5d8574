//! Test fixtures of the blocks module: small spans and traces, and blocks
//! written into an in-memory bucket with the sink's own writer.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use observatory_schemas::otlp::common::{any_value::Value as Any, AnyValue, KeyValue};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::tempo::meta::{block_id, META};
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{Block, BlockWriter, DEFAULT_ROW_GROUP_BYTES};
use std::sync::Arc;

pub(crate) fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, Any::StringValue(value.into()))
}

pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, Any::IntValue(value))
}

/// Span `id` of trace `trace` (ids made of one repeated byte), 1 ms long.
pub(crate) fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    start: u64,
    attrs: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span {id}"),
        kind: 1,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

/// The spans under one resource of service `bot`.
pub(crate) fn resource_spans(spans: Vec<Span>) -> Vec<ResourceSpans> {
    service_spans("bot", vec![], spans)
}

/// The spans under one resource of `service`, with more resource attributes.
pub(crate) fn service_spans(
    service: &str,
    mut resource: Vec<KeyValue>,
    spans: Vec<Span>,
) -> Vec<ResourceSpans> {
    resource.insert(0, kv_str("service.name", service));
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// A block of `traces` (sorted here) for `tenant`, its id made from `offset`.
pub(crate) fn block(
    tenant: &str,
    offset: u64,
    mut traces: Vec<([u8; 16], Vec<ResourceSpans>)>,
    row_group_bytes: Option<usize>,
) -> Block {
    traces.sort_by_key(|(id, _)| *id);
    let mut w = BlockWriter::new(
        traces.len() as u64,
        row_group_bytes.unwrap_or(DEFAULT_ROW_GROUP_BYTES),
    )
    .unwrap();
    for (id, rs) in &traces {
        let batches = [&rs[..]];
        w.push(&TraceRow::merge(*id, &batches).unwrap()).unwrap();
    }
    w.finish(block_id(tenant, 0, offset, 1), tenant).unwrap()
}

/// Puts every object of `block` into `store`; `meta.json` only when `with_meta`.
pub(crate) async fn put(store: &Arc<dyn ObjectStore>, block: &Block, with_meta: bool) {
    let folder = format!("{}/{}", block.meta.tenant_id, block.meta.block_id);
    for (name, data) in &block.objects {
        if name == META && !with_meta {
            continue;
        }
        store
            .put(&Path::from(format!("{folder}/{name}")), data.clone().into())
            .await
            .unwrap();
    }
}
