//! The PostgreSQL side of the Tempo API: a trace as OTLP resource spans,
//! search, tag names and tag values, all scoped to one tenant.
//!
//! Guarantees: every value from a request (tenant, ids, times, attribute
//! keys, strings, numbers, regular expressions) is a bound parameter; the
//! SQL text only ever holds column names and operators chosen from fixed
//! lists. Search and tags are bounded: a time range (at most
//! [`MAX_RANGE`]), a cap on the spans read ([`SCAN_SPANS`],
//! [`SAMPLE_SPANS`]) and a statement timeout ([`STATEMENT_TIMEOUT`]), so a
//! broad query costs at most that much and answers with the newest matches.

use super::shapes::{
    key_value, trace_id_text, SearchMetrics, SearchResponse, SearchSpan, SpanSet,
    TraceSearchMetadata, TypedValue, ROOT_NOT_YET_RECEIVED,
};
use super::traceql::{anchored, Cond, Expr, Field, Literal, Op, Query};
use observatory_schemas::otlp::common::{
    any_value::Value as Any, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest search or tag range.
pub const MAX_RANGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most traces a search looks at in one round (rounds start at 100 and double).
pub const SCAN_TRACES: i64 = 5_000;
/// Traces sampled (newest first) for tag names and values.
pub const SAMPLE_TRACES: i64 = 1_000;
/// Spans sampled from them.
pub const SAMPLE_SPANS: i64 = 5_000;
/// Most tag names per scope or tag values answered.
pub const MAX_TAGS: usize = 1_000;
/// How long one search or tag query may run.
pub const STATEMENT_TIMEOUT: &str = "10s";

// ---- trace by id ----

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The trace `id` of `tenant` as OTLP resource spans (grouped by resource
/// and scope), its first `max_spans` spans by start time; `None` when
/// PostgreSQL has no span of it. Read by the same loader as
/// `GET /api/v1/traces/{id}` ([`crate::traces::load_spans`]).
pub async fn trace(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &[u8; 16],
    max_spans: usize,
) -> Result<Option<Vec<ResourceSpans>>, tokio_postgres::Error> {
    let spans = crate::traces::load_spans(client, tenant, id, max_spans).await?;
    if spans.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resources: HashMap<String, usize> = HashMap::new();
    let mut scopes: HashMap<(usize, String), usize> = HashMap::new();
    for s in spans {
        let start = s.start_ns();
        let span = Span {
            trace_id: id.to_vec(),
            span_id: s.span_id,
            parent_span_id: s.parent_span_id.unwrap_or_default(),
            name: s.name,
            kind: i32::from(s.kind),
            start_time_unix_nano: start,
            end_time_unix_nano: start + s.duration_ns.max(0) as u64,
            attributes: object_to_kvs(&parse(s.attributes)),
            events: events(&parse(s.events)),
            links: links(&parse(s.links)),
            status: Some(Status {
                code: i32::from(s.status_code),
                message: s.status_message,
            }),
            ..Default::default()
        };
        let i = *resources.entry(s.resource).or_insert_with_key(|text| {
            out.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: object_to_kvs(&parse(text.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            });
            out.len() - 1
        });
        let j = *scopes
            .entry((i, s.scope_name))
            .or_insert_with_key(|(_, name)| {
                out[i].scope_spans.push(ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                out[i].scope_spans.len() - 1
            });
        out[i].scope_spans[j].spans.push(span);
    }
    Ok(Some(out))
}

fn parse(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A stored JSON value back as an OTLP value (bytes were stored as hex and
/// come back as strings; a whole double as an integer).
pub fn any_value(v: &Value) -> Option<AnyValue> {
    let value = match v {
        Value::Null => return None,
        Value::Bool(b) => Any::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Any::StringValue(s.clone()),
        Value::Array(a) => Any::ArrayValue(ArrayValue {
            values: a.iter().map(|v| any_value(v).unwrap_or_default()).collect(),
        }),
        Value::Object(_) => Any::KvlistValue(KeyValueList {
            values: object_to_kvs(v),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

fn object_to_kvs(v: &Value) -> Vec<KeyValue> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: any_value(v),
                ..Default::default()
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_default();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn events(v: &Value) -> Vec<span::Event> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| span::Event {
                    time_unix_nano: e["time_unix_nano"].as_u64().unwrap_or_default(),
                    name: e["name"].as_str().unwrap_or_default().to_owned(),
                    attributes: object_to_kvs(&e["attributes"]),
                    dropped_attributes_count: 0,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn links(v: &Value) -> Vec<span::Link> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| span::Link {
                    trace_id: hex_bytes(&l["trace_id"]),
                    span_id: hex_bytes(&l["span_id"]),
                    attributes: object_to_kvs(&l["attributes"]),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---- SQL building ----

pub use crate::sql::Sql;

fn text_column(field: &Field) -> Option<&'static str> {
    match field {
        Field::Name => Some("s.name"),
        Field::StatusMessage => Some("s.status_message"),
        Field::Service => Some("s.service"),
        Field::ScopeName => Some("s.scope_name"),
        Field::SpanId => Some("encode(s.span_id, 'hex')"),
        Field::ParentSpanId => Some("encode(s.parent_span_id, 'hex')"),
        Field::TraceId => Some("encode(s.trace_id, 'hex')"),
        _ => None,
    }
}

fn number_text(v: &Literal) -> String {
    match v {
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) => f.to_string(),
        _ => "0".into(),
    }
}

/// The SQL of one attribute test on a jsonb column.
fn attribute_sql(sql: &mut Sql, col: &str, key: &str, op: Op, value: &Literal) -> String {
    let k = sql.bind(key.to_owned());
    let get = format!("{col} -> {k}::text");
    match (value, op) {
        (Literal::Str(s), Op::Re | Op::NotRe) => {
            let v = sql.bind(anchored(s));
            format!(
                "(CASE WHEN jsonb_typeof({get}) = 'string' THEN {col} ->> {k}::text END) {} {v}::text",
                op.sql()
            )
        }
        (Literal::Str(s), Op::Contains) => {
            let v = sql.bind(s.clone());
            format!("strpos({col} ->> {k}::text, {v}::text) > 0")
        }
        (Literal::Str(s), _) => {
            let v = sql.bind(s.clone());
            format!("{get} {} to_jsonb({v}::text)", op.sql())
        }
        (Literal::Int(_) | Literal::Float(_), op) if op.is_order() => {
            let v = sql.bind(number_text(value));
            format!(
                "(CASE WHEN jsonb_typeof({get}) = 'number' THEN ({get})::numeric END) {} {v}::text::numeric",
                op.sql()
            )
        }
        (Literal::Int(_) | Literal::Float(_), _) => {
            let v = sql.bind(number_text(value));
            format!("{get} {} to_jsonb({v}::text::numeric)", op.sql())
        }
        (Literal::Bool(b), _) => {
            let v = sql.bind(*b);
            format!("{get} {} to_jsonb({v}::bool)", op.sql())
        }
        // The parser refuses every other pairing.
        _ => "FALSE".into(),
    }
}

fn cond_sql(sql: &mut Sql, c: &Cond) -> String {
    if let (Some(col), Literal::Str(s)) = (text_column(&c.field), &c.value) {
        return match c.op {
            Op::Contains => {
                let v = sql.bind(s.clone());
                format!("strpos({col}, {v}::text) > 0")
            }
            Op::Re | Op::NotRe => {
                let v = sql.bind(anchored(s));
                format!("{col} {} {v}::text", c.op.sql())
            }
            op => {
                let v = sql.bind(s.clone());
                format!("{col} {} {v}::text", op.sql())
            }
        };
    }
    match (&c.field, &c.value) {
        (Field::Status, Literal::Status(code)) => {
            let v = sql.bind(*code);
            format!("s.status_code {} {v}::int2", c.op.sql())
        }
        (Field::Kind, Literal::Kind(kind)) => {
            let v = sql.bind(*kind);
            format!("s.kind {} {v}::int2", c.op.sql())
        }
        (Field::Duration, Literal::Duration(ns)) => {
            let v = sql.bind(*ns);
            format!("s.duration_ns {} {v}::int8", c.op.sql())
        }
        (Field::Span(k), v) => attribute_sql(sql, "s.attributes", k, c.op, v),
        (Field::Resource(k), v) => attribute_sql(sql, "s.resource", k, c.op, v),
        (Field::Any(k), v) => {
            let a = attribute_sql(sql, "s.attributes", k, c.op, v);
            let b = attribute_sql(sql, "s.resource", k, c.op, v);
            format!("({a} OR {b})")
        }
        // Trace-level conditions are applied to trace summaries.
        _ => "TRUE".into(),
    }
}

/// The SQL of a span filter.
pub fn expr_sql(sql: &mut Sql, e: &Expr) -> String {
    match e {
        Expr::Cond(c) => cond_sql(sql, c),
        Expr::And(v) => format!(
            "({})",
            v.iter()
                .map(|e| expr_sql(sql, e))
                .collect::<Vec<_>>()
                .join(" AND ")
        ),
        Expr::Or(v) => format!(
            "({})",
            v.iter()
                .map(|e| expr_sql(sql, e))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    }
}

/// The attributes a query names, with the SQL that reads each (shown in
/// the span sets of search results, as Tempo shows them).
fn selected_attributes(query: &Query) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for c in query.spans.iter().flat_map(Expr::conds) {
        let (key, col, other) = match &c.field {
            Field::Service => ("service.name".to_owned(), "s.resource", None),
            Field::Span(k) => (k.clone(), "s.attributes", None),
            Field::Resource(k) => (k.clone(), "s.resource", None),
            Field::Any(k) => (k.clone(), "s.attributes", Some("s.resource")),
            _ => continue,
        };
        if out.iter().all(|(k, _, _)| *k != key) {
            out.push((key, col.to_owned(), other.map(str::to_owned)));
        }
    }
    out
}

// ---- search ----

/// A search, validated.
#[derive(Debug, Clone)]
pub struct Search {
    /// The filter.
    pub query: Query,
    /// Range start.
    pub start: SystemTime,
    /// Range end.
    pub end: SystemTime,
    /// Most traces answered.
    pub limit: usize,
    /// Most spans per span set.
    pub spans_per_set: usize,
    /// Shortest trace, ns.
    pub min_duration_ns: Option<i64>,
    /// Longest trace, ns.
    pub max_duration_ns: Option<i64>,
}

/// Why a store query failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed (or timed out).
    #[error("postgresql: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// PostgreSQL refused a regular expression the parser accepted.
    #[error("regular expression refused by the database: {0}")]
    Regex(String),
}

fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if *code == tokio_postgres::error::SqlState::INVALID_REGULAR_EXPRESSION => {
            StoreError::Regex(e.to_string())
        }
        _ => StoreError::Db(e),
    }
}

struct Found {
    id: Vec<u8>,
    matched: u32,
    spans: Vec<SearchSpan>,
    summary: Summary,
}

struct Summary {
    start_ns: u64,
    end_ns: u64,
    root_service: Option<String>,
    root_name: Option<String>,
}

fn trace_level_holds(c: &Cond, summary: &Summary) -> bool {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| ROOT_NOT_YET_RECEIVED.into());
    let compare = |have: &str, want: &str| match c.op {
        Op::Eq => have == want,
        Op::Ne => have != want,
        Op::Contains => have.contains(want),
        Op::Re | Op::NotRe => {
            let hit = regex::Regex::new(&anchored(want)).is_ok_and(|re| re.is_match(have));
            hit == (c.op == Op::Re)
        }
        _ => false,
    };
    match (&c.field, &c.value) {
        (Field::TraceDuration, Literal::Duration(want)) => {
            let have = summary.end_ns.saturating_sub(summary.start_ns) as i64;
            match c.op {
                Op::Eq => have == *want,
                Op::Ne => have != *want,
                Op::Gt => have > *want,
                Op::Ge => have >= *want,
                Op::Lt => have < *want,
                Op::Le => have <= *want,
                _ => false,
            }
        }
        (Field::RootName, Literal::Str(want)) => compare(&text(&summary.root_name), want),
        (Field::RootServiceName, Literal::Str(want)) => compare(&text(&summary.root_service), want),
        _ => false,
    }
}

/// Runs a search for `tenant`: the newest traces of the range from
/// `trace_summaries` (as `GET /api/v1/traces` reads them), a chunk at a
/// time, each with its spans that match the span conditions found by the
/// trace's key; trace-level conditions are checked on the summary. Stops
/// when `limit` traces matched, the range has no more traces, or
/// `budget` is spent (the answer's metrics then say fewer jobs completed
/// than there were).
pub async fn search(
    client: &mut deadpool_postgres::Client,
    tenant: &str,
    search: &Search,
    budget: Duration,
) -> Result<SearchResponse, StoreError> {
    let started = std::time::Instant::now();
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await?;

    let attributes = selected_attributes(&search.query);
    let mut traces = Vec::new();
    let mut inspected_traces = 0u32;
    let mut inspected_spans = 0u64;
    let mut after: Option<(SystemTime, Vec<u8>)> = None;
    let mut chunk: i64 = 100;
    let mut complete = true;
    'scan: loop {
        let mut sql = Sql::default();
        let t = sql.bind(tenant.to_owned());
        let from = sql.bind(search.start);
        let to = sql.bind(search.end);
        let mut conditions = String::new();
        if let Some(min) = search.min_duration_ns {
            let p = sql.bind(min / 1000);
            conditions.push_str(&format!(" AND t.duration_us >= {p}"));
        }
        if let Some(max) = search.max_duration_ns {
            let p = sql.bind((max + 999) / 1000);
            conditions.push_str(&format!(" AND t.duration_us <= {p}"));
        }
        if let Some((start, id)) = &after {
            let p = sql.bind(*start);
            let q = sql.bind(id.clone());
            conditions.push_str(&format!(" AND (t.start_time, t.trace_id) < ({p}, {q})"));
        }
        let filter = match &search.query.spans {
            Some(e) => expr_sql(&mut sql, e),
            None => "TRUE".into(),
        };
        // The selected attributes, named a0, a1, ... for the outer query.
        let (mut columns, mut columns_out) = (String::new(), String::new());
        for (i, (key, col, other)) in attributes.iter().enumerate() {
            let k = sql.bind(key.clone());
            match other {
                Some(other) => columns.push_str(&format!(
                    ", COALESCE({col} -> {k}::text, {other} -> {k}::text)::text AS a{i}"
                )),
                None => columns.push_str(&format!(", ({col} -> {k}::text)::text AS a{i}")),
            }
            columns_out.push_str(&format!(", m.a{i}"));
        }
        let n = sql.bind(chunk);
        let per_set = sql.bind(search.spans_per_set.max(1) as i64);
        let text = format!(
            "SELECT t.trace_id, t.start_time, t.end_time, t.root_service, t.root_name, t.root_parented,
                    m.span_id, m.name, m.start_time, m.duration_ns, m.matched{columns_out}
             FROM (SELECT * FROM trace_summaries t
                   WHERE t.tenant = {t} AND t.start_time >= {from} AND t.start_time <= {to}{conditions}
                   ORDER BY t.start_time DESC, t.trace_id DESC LIMIT {n}) t
             LEFT JOIN LATERAL (
                 SELECT s.span_id, s.name, s.start_time, s.duration_ns, count(*) OVER () AS matched{columns}
                 FROM span_rows s
                 WHERE s.tenant = {t} AND s.trace_id = t.trace_id
                   AND s.start_time >= t.start_time AND s.start_time <= t.end_time AND {filter}
                 ORDER BY s.start_time LIMIT {per_set}) m ON true
             ORDER BY t.start_time DESC, t.trace_id DESC, m.start_time"
        );
        let rows = tx.query(&text, &sql.refs()).await.map_err(db_error)?;
        let mut found: Vec<Found> = Vec::new();
        let mut candidates = 0i64;
        for r in &rows {
            let id: Vec<u8> = r.get(0);
            if found.last().is_none_or(|f| f.id != id) {
                candidates += 1;
                after = Some((r.get(1), id.clone()));
                let parented: bool = r.get(5);
                found.push(Found {
                    id,
                    matched: 0,
                    spans: Vec::new(),
                    summary: Summary {
                        start_ns: unix_nanos(r.get(1)),
                        end_ns: unix_nanos(r.get(2)),
                        root_service: (!parented).then(|| r.get(3)),
                        root_name: (!parented).then(|| r.get(4)),
                    },
                });
            }
            let Some(span_id) = r.get::<_, Option<&[u8]>>(6) else {
                continue; // no span of this trace matches
            };
            let f = found.last_mut().expect("pushed above");
            f.matched = r.get::<_, i64>(10) as u32;
            let mut hex = String::with_capacity(16);
            observatory_schemas::kafka::push_hex(&mut hex, span_id);
            let attrs = attributes
                .iter()
                .enumerate()
                .filter_map(|(j, (key, _, _))| {
                    let text: Option<String> = r.get(11 + j);
                    let value: Value = serde_json::from_str(&text?).ok()?;
                    Some(key_value(key, &value))
                })
                .collect();
            f.spans.push(SearchSpan {
                span_id: hex,
                name: r.get(7),
                start_time_unix_nano: unix_nanos(r.get(8)).to_string(),
                duration_nanos: r.get::<_, i64>(9).to_string(),
                attributes: attrs,
            });
        }
        inspected_traces += candidates as u32;
        for f in found {
            inspected_spans += u64::from(f.matched);
            let s = &f.summary;
            if f.matched == 0
                || !search
                    .query
                    .traces
                    .iter()
                    .all(|any| any.iter().any(|c| trace_level_holds(c, s)))
            {
                continue;
            }
            let duration = s.end_ns.saturating_sub(s.start_ns) as i64;
            let set = SpanSet {
                spans: f.spans,
                matched: f.matched,
            };
            traces.push(TraceSearchMetadata {
                trace_id: trace_id_text(&f.id),
                root_service_name: s
                    .root_service
                    .clone()
                    .unwrap_or_else(|| ROOT_NOT_YET_RECEIVED.into()),
                root_trace_name: s.root_name.clone().unwrap_or_default(),
                start_time_unix_nano: s.start_ns.to_string(),
                duration_ms: (duration / 1_000_000).clamp(0, i64::from(u32::MAX)) as u32,
                span_set: Some(set.clone()),
                span_sets: vec![set],
            });
            if traces.len() == search.limit {
                break 'scan;
            }
        }
        if candidates < chunk {
            break;
        }
        if started.elapsed() >= budget {
            complete = false;
            break;
        }
        chunk = (chunk * 2).min(SCAN_TRACES);
    }
    tx.commit().await?;
    Ok(SearchResponse {
        metrics: SearchMetrics {
            inspected_traces,
            inspected_spans: (inspected_spans > 0).then(|| inspected_spans.to_string()),
            completed_jobs: u32::from(complete),
            total_jobs: 1,
        },
        traces,
    })
}

// ---- tags ----

/// The intrinsics the search understands, for `/api/v2/search/tags`.
pub const INTRINSICS: [&str; 12] = [
    "duration",
    "instrumentation:name",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "span:id",
    "span:parentID",
    "status",
    "statusMessage",
    "trace:id",
    "traceDuration",
];

/// A bounded, filtered sample of the spans of the newest traces in the
/// range (found in `trace_summaries`, their spans by key).
fn sample(
    sql: &mut Sql,
    tenant: &str,
    start: SystemTime,
    end: SystemTime,
    filter: Option<&Expr>,
    columns: &str,
) -> String {
    let t = sql.bind(tenant.to_owned());
    let from = sql.bind(start);
    let to = sql.bind(end);
    let filter = filter.map_or_else(|| "TRUE".to_owned(), |e| expr_sql(sql, e));
    let traces = sql.bind(SAMPLE_TRACES);
    let n = sql.bind(SAMPLE_SPANS);
    format!(
        "SELECT {columns}
         FROM (SELECT trace_id, start_time, end_time FROM trace_summaries
               WHERE tenant = {t} AND start_time >= {from} AND start_time <= {to}
               ORDER BY start_time DESC LIMIT {traces}) r
         JOIN span_rows s ON s.tenant = {t} AND s.trace_id = r.trace_id
                     AND s.start_time >= r.start_time AND s.start_time <= r.end_time
         WHERE {filter}
         LIMIT {n}"
    )
}

/// Span and resource attribute names seen in the sample.
pub async fn tag_names(
    client: &mut deadpool_postgres::Client,
    tenant: &str,
    start: SystemTime,
    end: SystemTime,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut sql = Sql::default();
    let recent = sample(
        &mut sql,
        tenant,
        start,
        end,
        None,
        "s.attributes, s.resource",
    );
    let text = format!(
        "WITH recent AS ({recent})
         SELECT 0::int2, k FROM (SELECT DISTINCT jsonb_object_keys(attributes) AS k FROM recent) a
         UNION ALL
         SELECT 1::int2, k FROM (SELECT DISTINCT jsonb_object_keys(resource) AS k FROM recent) b"
    );
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await?;
    let rows = tx.query(&text, &sql.refs()).await.map_err(db_error)?;
    tx.commit().await?;
    let (mut span, mut resource) = (BTreeSet::new(), BTreeSet::new());
    for r in rows {
        let name: String = r.get(1);
        if r.get::<_, i16>(0) == 0 {
            span.insert(name);
        } else {
            resource.insert(name);
        }
    }
    Ok((
        span.into_iter().take(MAX_TAGS).collect(),
        resource.into_iter().take(MAX_TAGS).collect(),
    ))
}

fn typed(v: &Value) -> Option<TypedValue> {
    let (kind, value) = match v {
        Value::String(s) => ("string", s.clone()),
        Value::Bool(b) => ("bool", b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("int", n.to_string()),
        Value::Number(n) => ("float", n.to_string()),
        _ => return None,
    };
    Some(TypedValue {
        kind: kind.into(),
        value,
    })
}

/// The values of `field` seen in the sample (filtered by `filter`).
pub async fn tag_values(
    client: &mut deadpool_postgres::Client,
    tenant: &str,
    field: &Field,
    start: SystemTime,
    end: SystemTime,
    filter: Option<&Expr>,
) -> Result<Vec<TypedValue>, StoreError> {
    let keyword = |names: &[&str]| {
        names
            .iter()
            .map(|n| TypedValue {
                kind: "keyword".into(),
                value: (*n).into(),
            })
            .collect()
    };
    let mut sql = Sql::default();
    let (column, is_json) = match field {
        Field::Status => return Ok(keyword(&["error", "ok", "unset"])),
        Field::Kind => {
            return Ok(keyword(&[
                "unspecified",
                "internal",
                "server",
                "client",
                "producer",
                "consumer",
            ]))
        }
        Field::Duration | Field::TraceDuration => return Ok(Vec::new()),
        Field::Name | Field::RootName => ("s.name".to_owned(), false),
        Field::Service | Field::RootServiceName => ("s.service".to_owned(), false),
        Field::StatusMessage => ("s.status_message".to_owned(), false),
        Field::ScopeName | Field::SpanId | Field::ParentSpanId | Field::TraceId => {
            (text_column(field).unwrap_or("NULL::text").to_owned(), false)
        }
        Field::Span(k) => {
            let k = sql.bind(k.clone());
            (format!("(s.attributes -> {k}::text)::text"), true)
        }
        Field::Resource(k) => {
            let k = sql.bind(k.clone());
            (format!("(s.resource -> {k}::text)::text"), true)
        }
        Field::Any(k) => {
            let k = sql.bind(k.clone());
            (
                format!("COALESCE(s.attributes -> {k}::text, s.resource -> {k}::text)::text"),
                true,
            )
        }
    };
    let recent = sample(
        &mut sql,
        tenant,
        start,
        end,
        filter,
        &format!("{column} AS v"),
    );
    let limit = sql.bind(MAX_TAGS as i64);
    let text =
        format!("SELECT DISTINCT v FROM ({recent}) x WHERE v IS NOT NULL ORDER BY v LIMIT {limit}");
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await?;
    let rows = tx.query(&text, &sql.refs()).await.map_err(db_error)?;
    tx.commit().await?;
    let mut out: Vec<TypedValue> = rows
        .iter()
        .filter_map(|r| {
            let v: String = r.get(0);
            if is_json {
                typed(&serde_json::from_str(&v).ok()?)
            } else {
                Some(TypedValue {
                    kind: "string".into(),
                    value: v,
                })
            }
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempo_api::traceql::parse;

    fn render(q: &str) -> (String, usize) {
        let query = parse(q).unwrap();
        let mut sql = Sql::default();
        let text = expr_sql(&mut sql, query.spans.as_ref().unwrap());
        (text, sql.params.len())
    }

    #[test]
    fn values_are_bound_never_inlined() {
        let hostile = "x' OR '1'='1";
        let (text, n) = render(&format!(
            r#"{{ name = "{hostile}" && span.{k} = "{hostile}" && resource.r =~ "a.*" }}"#,
            k = "evil"
        ));
        assert!(!text.contains(hostile), "{text}");
        assert!(!text.contains("evil"), "keys are bound too: {text}");
        assert_eq!(n, 5);
        assert!(text.starts_with(
            "(s.name = $1::text AND s.attributes -> $2::text = to_jsonb($3::text) AND"
        ));
    }

    #[test]
    fn typed_comparisons() {
        let (text, _) = render("{ span.tokens > 100 }");
        assert!(
            text.contains("jsonb_typeof(s.attributes -> $1::text) = 'number'"),
            "{text}"
        );
        assert!(text.ends_with("> $2::text::numeric"), "{text}");
        let (text, _) = render("{ status = error || kind != server }");
        assert_eq!(text, "(s.status_code = $1::int2 OR s.kind <> $2::int2)");
        let (text, _) = render("{ duration >= 1s }");
        assert_eq!(text, "s.duration_ns >= $1::int8");
        let (text, _) = render("{ .region = true }");
        assert!(text.contains(" OR "), "{text}");
    }

    #[test]
    fn stored_json_becomes_otlp() {
        let v: Value =
            serde_json::json!({"s": "a", "i": 3, "d": 0.5, "b": true, "a": [1], "o": {"k": null}});
        let kvs = object_to_kvs(&v);
        let get = |k: &str| {
            kvs.iter()
                .find(|kv| kv.key == k)
                .unwrap()
                .value
                .clone()
                .unwrap()
                .value
                .unwrap()
        };
        assert_eq!(get("s"), Any::StringValue("a".into()));
        assert_eq!(get("i"), Any::IntValue(3));
        assert_eq!(get("d"), Any::DoubleValue(0.5));
        assert_eq!(get("b"), Any::BoolValue(true));
        assert!(matches!(get("a"), Any::ArrayValue(_)));
        assert!(matches!(get("o"), Any::KvlistValue(_)));
        assert_eq!(hex_bytes(&serde_json::json!("0aff")), vec![0x0a, 0xff]);
        let e = events(
            &serde_json::json!([{"time_unix_nano": 5, "name": "x", "attributes": {"k": 1}}]),
        );
        assert_eq!(e[0].time_unix_nano, 5);
        assert_eq!(e[0].attributes[0].key, "k");
    }

    #[test]
    fn trace_level_conditions() {
        let s = Summary {
            start_ns: 0,
            end_ns: 3_000_000_000,
            root_service: Some("bot".into()),
            root_name: None,
        };
        let q = parse(r#"{ traceDuration > 2s && rootServiceName =~ "b.t" && rootName = "<root span not yet received>" }"#).unwrap();
        assert!(q.traces.iter().flatten().all(|c| trace_level_holds(c, &s)));
        let q = parse("{ traceDuration < 2s }").unwrap();
        assert!(!trace_level_holds(&q.traces[0][0], &s));
    }
}
