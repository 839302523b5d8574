//! The PostgreSQL side of the Tempo API: a trace as OTLP resource spans,
//! search, tag names and tag values, all scoped to one tenant.
//!
//! Guarantees: every value from a request (tenant, ids, times, attribute
//! keys, strings, numbers, regular expressions) is a bound parameter; the
//! SQL text only ever holds column names and operators chosen from fixed
//! lists (span filters are compiled by [`crate::span_filter`], candidates
//! read by [`crate::summaries`], as `GET /api/v1/traces` does). Search and
//! tags are bounded: a time range (at most [`MAX_RANGE`]), a time budget
//! for search, a cap on the spans sampled for tags ([`SAMPLE_SPANS`]) and a
//! statement timeout ([`STATEMENT_TIMEOUT`]), so a broad query costs at most
//! that much and answers with the newest matches.

use super::shapes::{
    key_value, trace_id_text, SearchMetrics, SearchResponse, SearchSpan, SpanSet,
    TraceSearchMetadata, TypedValue, ROOT_NOT_YET_RECEIVED,
};
use super::traceql::{anchored, Cond, Expr, Field, Literal, Op, Query};
use crate::span_filter::{Attributes, Cmp, Column, Filter, Number, Subject, Test, TextOp};
use crate::sql::Sql;
use crate::summaries::{Candidates, Cursor, Next, Order, Rounds, SortKey, SummaryFilter};
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

// ---- span filters ----

/// A TraceQL span filter as the span filter both searches compile
/// ([`crate::span_filter`]); trace-level conditions (checked on the
/// summaries) hold for every span.
pub fn span_filter(e: &Expr) -> Filter {
    match e {
        Expr::Cond(c) => cond_filter(c),
        Expr::And(v) => Filter::All(v.iter().map(span_filter).collect()),
        Expr::Or(v) => Filter::Any(v.iter().map(span_filter).collect()),
    }
}

/// The span column a field reads, if it reads one.
fn column(field: &Field) -> Option<Column> {
    Some(match field {
        Field::Name => Column::Name,
        Field::StatusMessage => Column::StatusMessage,
        Field::Service => Column::Service,
        Field::ScopeName => Column::ScopeName,
        Field::SpanId => Column::SpanId,
        Field::ParentSpanId => Column::ParentSpanId,
        Field::TraceId => Column::TraceId,
        Field::Status => Column::Status,
        Field::Kind => Column::Kind,
        Field::Duration => Column::DurationNs,
        _ => return None,
    })
}

fn cond_filter(c: &Cond) -> Filter {
    let subject = match (&c.field, column(&c.field)) {
        (_, Some(column)) => Subject::Column(column),
        (Field::Span(k), _) => Subject::Attribute(Attributes::Span, k.clone()),
        (Field::Resource(k), _) => Subject::Attribute(Attributes::Resource, k.clone()),
        (Field::Any(k), _) => Subject::Attribute(Attributes::Either, k.clone()),
        // Trace-level conditions are checked on the summaries.
        _ => return Filter::All(Vec::new()),
    };
    let cmp = match c.op {
        Op::Eq => Some(Cmp::Eq),
        Op::Ne => Some(Cmp::Ne),
        Op::Gt => Some(Cmp::Gt),
        Op::Ge => Some(Cmp::Ge),
        Op::Lt => Some(Cmp::Lt),
        Op::Le => Some(Cmp::Le),
        Op::Re | Op::NotRe | Op::Contains => None,
    };
    let test = match (&c.value, c.op, cmp) {
        (Literal::Str(s), Op::Re, _) => Test::Text(TextOp::Matches, anchored(s)),
        (Literal::Str(s), Op::NotRe, _) => Test::Text(TextOp::NotMatches, anchored(s)),
        (Literal::Str(s), Op::Contains, _) => Test::Text(TextOp::Contains, s.clone()),
        (Literal::Str(s), _, Some(cmp)) => Test::Text(TextOp::Cmp(cmp), s.clone()),
        (Literal::Int(i) | Literal::Duration(i), _, Some(cmp)) => {
            Test::Number(cmp, Number::Int(*i))
        }
        (Literal::Status(i) | Literal::Kind(i), _, Some(cmp)) => {
            Test::Number(cmp, Number::Int(i64::from(*i)))
        }
        (Literal::Float(f), _, Some(cmp)) => Test::Number(cmp, Number::Float(*f)),
        (Literal::Bool(b), Op::Eq | Op::Ne, _) => Test::Bool {
            equal: c.op == Op::Eq,
            value: *b,
        },
        // The parser refuses every other pairing; none of them matches.
        _ => return Filter::Any(Vec::new()),
    };
    Filter::Test(subject, test)
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
    /// Shortest trace.
    pub min_duration: Option<Duration>,
    /// Longest trace.
    pub max_duration: Option<Duration>,
    /// Which store to read (`store`).
    pub store: crate::search::Store,
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

/// What the trace-level conditions read of a trace.
pub(crate) struct Summary {
    /// First span start, ns.
    pub(crate) start_ns: u64,
    /// Last span end, ns.
    pub(crate) end_ns: u64,
    /// The root span's service; `None` until the root arrives.
    pub(crate) root_service: Option<String>,
    /// The root span's name; `None` until the root arrives.
    pub(crate) root_name: Option<String>,
}

/// A trace-level condition, its regular expression compiled once per
/// search (it is checked on every candidate).
pub(crate) struct TraceLevel<'q> {
    cond: &'q Cond,
    re: Option<regex::Regex>,
}

impl<'q> TraceLevel<'q> {
    pub(crate) fn new(cond: &'q Cond) -> TraceLevel<'q> {
        let re = match (&cond.value, cond.op) {
            (Literal::Str(want), Op::Re | Op::NotRe) => regex::Regex::new(&anchored(want)).ok(),
            _ => None,
        };
        TraceLevel { cond, re }
    }

    pub(crate) fn holds(&self, summary: &Summary) -> bool {
        let c = self.cond;
        fn text(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or(ROOT_NOT_YET_RECEIVED)
        }
        let compare = |have: &str, want: &str| match c.op {
            Op::Eq => have == want,
            Op::Ne => have != want,
            Op::Contains => have.contains(want),
            Op::Re | Op::NotRe => {
                let hit = self.re.as_ref().is_some_and(|re| re.is_match(have));
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
            (Field::RootName, Literal::Str(want)) => compare(text(&summary.root_name), want),
            (Field::RootServiceName, Literal::Str(want)) => {
                compare(text(&summary.root_service), want)
            }
            _ => false,
        }
    }
}

/// What the search reads of a candidate, before its order value.
const CANDIDATE: &str = "t.trace_id, t.start_time, t.end_time, t.root_service, t.root_name, \
    t.root_parented, t.duration_us";
/// Where the order value is in a row, and the matching span's columns after it.
const ORDER_KEY: usize = 7;
const SPAN: usize = ORDER_KEY + 1;

/// Runs a search for `tenant`: the newest traces of the range from
/// `trace_summaries` (the summary path of `GET /api/v1/traces`,
/// [`crate::summaries`]), a round of candidates at a time, each with its
/// spans that match the span filter found by the trace's key; trace-level
/// conditions are checked on the summary. Stops when `limit` traces
/// matched, the range has no more traces, or `budget` is spent (the
/// answer's metrics then say fewer jobs completed than there were).
pub async fn search(
    client: &mut deadpool_postgres::Client,
    tenant: &str,
    search: &Search,
    budget: Duration,
) -> Result<SearchResponse, StoreError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await?;

    let attributes = selected_attributes(&search.query);
    let trace_level: Vec<Vec<TraceLevel>> = search
        .query
        .traces
        .iter()
        .map(|any| any.iter().map(TraceLevel::new).collect())
        .collect();
    let order = Order {
        key: SortKey::StartTime,
        descending: true,
    };
    let durations = SummaryFilter {
        min_duration: search.min_duration,
        max_duration: search.max_duration,
        ..SummaryFilter::default()
    };
    let mut traces = Vec::new();
    let mut inspected_traces = 0u32;
    let mut inspected_spans = 0u64;
    let mut after: Option<Cursor> = None;
    let mut rounds = Rounds::new(budget);
    let mut complete = true;
    'scan: loop {
        let mut sql = Sql::default();
        Candidates {
            tenant,
            from: search.start,
            // Tempo's end is inclusive.
            to: search.end + Duration::from_micros(1),
            order,
            after: after.as_ref(),
            limit: rounds.chunk(),
            user: None,
            session: None,
            filter: None,
        }
        .sql(CANDIDATE, &mut sql);
        let candidates = std::mem::take(&mut sql.text);
        let mut filter = match &search.query.spans {
            Some(e) => span_filter(e).sql(&mut sql),
            None => "TRUE".into(),
        };
        filter.push_str(&durations.sql("t", &mut sql));
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
        let per_set = sql.bind(search.spans_per_set.max(1) as i64);
        // The candidates bound the tenant first: it is $1.
        sql.text = format!(
            "SELECT t.*, m.span_id, m.name, m.start_time, m.duration_ns, m.matched{columns_out}
             FROM ({candidates}) t
             LEFT JOIN LATERAL (
                 SELECT s.span_id, s.name, s.start_time, s.duration_ns, count(*) OVER () AS matched{columns}
                 FROM span_rows s
                 WHERE s.tenant = $1 AND s.trace_id = t.trace_id
                   AND s.start_time >= t.start_time AND s.start_time <= t.end_time AND {filter}
                 ORDER BY s.start_time LIMIT {per_set}) m ON true
             ORDER BY t.order_key DESC, t.trace_id DESC, m.start_time"
        );
        let rows = tx.query(&sql.text, &sql.refs()).await.map_err(db_error)?;
        let mut found: Vec<Found> = Vec::new();
        for r in &rows {
            let id: Vec<u8> = r.get(0);
            if found.last().is_none_or(|f| f.id != id) {
                after = Some(Cursor::at_row(order, r, ORDER_KEY));
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
            let Some(span_id) = r.get::<_, Option<&[u8]>>(SPAN) else {
                continue; // no span of this trace matches
            };
            let f = found.last_mut().expect("pushed above");
            f.matched = r.get::<_, i64>(SPAN + 4) as u32;
            let attrs = attributes
                .iter()
                .enumerate()
                .filter_map(|(j, (key, _, _))| {
                    let text: Option<String> = r.get(SPAN + 5 + j);
                    let value: Value = serde_json::from_str(&text?).ok()?;
                    Some(key_value(key, &value))
                })
                .collect();
            f.spans.push(SearchSpan {
                span_id: crate::traces::hex(span_id),
                name: r.get(SPAN + 1),
                start_time_unix_nano: unix_nanos(r.get(SPAN + 2)).to_string(),
                duration_nanos: r.get::<_, i64>(SPAN + 3).to_string(),
                attributes: attrs,
            });
        }
        let candidates = found.len() as i64;
        inspected_traces += candidates as u32;
        for f in found {
            inspected_spans += u64::from(f.matched);
            let s = &f.summary;
            if f.matched == 0 || !trace_level.iter().all(|any| any.iter().any(|c| c.holds(s))) {
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
        match rounds.next(candidates) {
            Next::Round => {}
            Next::Exhausted => break,
            Next::BudgetSpent => {
                complete = false;
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(SearchResponse {
        metrics: SearchMetrics {
            inspected_traces,
            inspected_spans: (inspected_spans > 0).then(|| inspected_spans.to_string()),
            completed_jobs: u32::from(complete),
            total_jobs: 1,
            ..SearchMetrics::default()
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
    let filter = filter.map_or_else(|| "TRUE".to_owned(), |e| span_filter(e).sql(sql));
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
        Field::RootName => (Column::Name.sql().to_owned(), false),
        Field::RootServiceName => (Column::Service.sql().to_owned(), false),
        Field::Name
        | Field::Service
        | Field::StatusMessage
        | Field::ScopeName
        | Field::SpanId
        | Field::ParentSpanId
        | Field::TraceId => {
            let column = column(field).expect("a column field");
            (column.sql().to_owned(), false)
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
        let text = span_filter(query.spans.as_ref().unwrap()).sql(&mut sql);
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
        assert_eq!(
            text,
            "(s.name = $1::text AND (s.attributes ->> $2::text) = $3::text \
             AND (s.resource ->> $4::text) ~ $5::text)"
        );
    }

    #[test]
    fn each_condition_lowers_to_its_test() {
        let lowered = |q: &str| span_filter(parse(q).unwrap().spans.as_ref().unwrap());
        assert_eq!(
            lowered("{ span.tokens > 100 }"),
            Filter::Test(
                Subject::Attribute(Attributes::Span, "tokens".into()),
                Test::Number(Cmp::Gt, Number::Int(100))
            )
        );
        let (text, _) = render("{ status = error || kind != server }");
        assert_eq!(text, "(s.status_code = $1::int8 OR s.kind <> $2::int8)");
        let (text, _) = render("{ duration >= 1s }");
        assert_eq!(text, "s.duration_ns >= $1::int8");
        assert_eq!(
            lowered(r#"{ name =~ "chat.*" }"#),
            Filter::Test(
                Subject::Column(Column::Name),
                Test::Text(TextOp::Matches, "^(?:chat.*)$".into())
            )
        );
        let (text, _) = render("{ .region = true }");
        assert!(text.contains(" OR "), "{text}");
        // Trace-level conditions are checked on the summaries, not the spans.
        let trace_level = Cond {
            field: Field::TraceDuration,
            op: Op::Gt,
            value: Literal::Duration(1),
        };
        assert_eq!(cond_filter(&trace_level), Filter::All(vec![]));
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
        assert!(q
            .traces
            .iter()
            .flatten()
            .all(|c| TraceLevel::new(c).holds(&s)));
        let q = parse("{ traceDuration < 2s }").unwrap();
        assert!(!TraceLevel::new(&q.traces[0][0]).holds(&s));
    }
}
