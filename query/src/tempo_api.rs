//! Grafana Tempo's HTTP API, in Tempo's own shapes, for Grafana's Tempo
//! data source (and any Tempo client) pointed at this API with a bearer
//! token.
//!
//! Routes: `/api/echo`, `/api/status/buildinfo`, trace by id
//! (`/api/traces/{id}`, `/api/v2/traces/{id}`, JSON or protobuf by
//! `Accept`), `/api/search` (TraceQL `q` subset or logfmt `tags`), tag
//! names (`/api/search/tags`, `/api/v2/search/tags`) and tag values
//! (`/api/search/tag/{name}/values`, `/api/v2/search/tag/{tag}/values`).
//!
//! What it guarantees: every route, `/api/echo` included, needs a viewer
//! token (Grafana's data source proxy sends its configured `Authorization`
//! header on every call, "Save & test" too) and answers only from the
//! token's tenant; every request value reaches PostgreSQL as a bound
//! parameter ([`store`]); a value we cannot use is a 400 problem naming its
//! parameter. Traces come from PostgreSQL, and from the Tempo blocks for
//! what PostgreSQL no longer has: trace by id when PostgreSQL has none of
//! it, search for the part of its range older than `RETENTION_TRACES_DAYS`
//! (`store=postgres|blocks` forces one store; the blocks' byte budget
//! shows in the answer's metrics as jobs left undone). Tags read
//! PostgreSQL only (the retention window), bounded in time and rows.
//!
//! Start reading at [`routes`]; the shapes are in [`shapes`], the query
//! languages in [`traceql`].

pub mod shapes;
pub mod store;
pub mod traceql;

use crate::auth::{Claims, Role};
use crate::problem::Problem;
use crate::routes::{authorized, State};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use traceql::Field;
use warp::http::header::CONTENT_TYPE;
use warp::http::HeaderValue;
use warp::{Filter, Rejection, Reply};

/// `Accept` asking for protobuf.
const PROTOBUF: &str = "application/protobuf";
/// Range of search when the request gives none.
const DEFAULT_SEARCH_RANGE: Duration = Duration::from_secs(3600);
/// Range of tag lookups when the request gives none.
const DEFAULT_TAGS_RANGE: Duration = Duration::from_secs(24 * 3600);
/// Traces answered by default, and at most.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;
/// Spans per span set by default, and at most.
const DEFAULT_SPSS: usize = 3;
const MAX_SPSS: usize = 100;
/// The Tempo version reported to clients that pick features by version:
/// one whose HTTP API this module implements (v2 trace by id and tags).
const TEMPO_VERSION: &str = "2.6.0";

/// The query string of a Tempo route, read as Tempo reads it: the first
/// value of a repeated name counts and unknown names are ignored (Grafana
/// sends parameters a route may not use). Every name a route reads is
/// recorded, so the OpenAPI test compares them with the document.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct Query {
    pairs: Vec<(String, String)>,
    asked: Vec<&'static str>,
}

impl From<Vec<(String, String)>> for Query {
    fn from(pairs: Vec<(String, String)>) -> Query {
        Query {
            pairs,
            asked: Vec::new(),
        }
    }
}

impl Query {
    /// The first value of `name`.
    fn get(&mut self, name: &'static str) -> Option<String> {
        if !self.asked.contains(&name) {
            self.asked.push(name);
        }
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Every name the route read, in order.
    pub fn asked(&self) -> &[&'static str] {
        &self.asked
    }
}

fn reject(p: Problem) -> Rejection {
    warp::reject::custom(p)
}

fn with_type(body: impl Reply, content_type: &'static str) -> warp::reply::Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_reply(body: String) -> warp::reply::Response {
    with_type(body, "application/json")
}

fn wants_protobuf(accept: &Option<String>) -> bool {
    accept.as_deref().is_some_and(|a| a.contains(PROTOBUF))
}

/// `start`/`end` in unix seconds, optional.
fn seconds(query: &mut Query, name: &'static str) -> Result<Option<i64>, Problem> {
    match query.get(name).as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|s| (0..=i64::from(u32::MAX)).contains(s))
            .map(Some)
            .ok_or_else(|| Problem::bad_parameter(name, "unix seconds, a whole number")),
    }
}

fn at(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64)
}

/// The range of a search or tag lookup: `start`/`end` or the last `default`.
fn range(query: &mut Query, default: Duration) -> Result<(SystemTime, SystemTime), Problem> {
    let (start, end) = (seconds(query, "start")?, seconds(query, "end")?);
    let end = end.map_or_else(SystemTime::now, at);
    let start = start.map_or_else(|| end - default, at);
    if start >= end {
        return Err(Problem::bad_parameter("start", "start must be before end"));
    }
    if end.duration_since(start).unwrap_or_default() > store::MAX_RANGE {
        return Err(Problem::bad_parameter(
            "end",
            format!(
                "a range is at most {}",
                humantime::format_duration(store::MAX_RANGE)
            ),
        ));
    }
    Ok((start, end))
}

fn count(
    query: &mut Query,
    name: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, Problem> {
    match query.get(name).as_deref() {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<u32>() {
            Ok(0) if name == "limit" => Err(Problem::bad_parameter(name, "must be positive")),
            Ok(0) => Ok(default),
            Ok(n) => Ok((n as usize).min(max)),
            Err(_) => Err(Problem::bad_parameter(name, "a positive whole number")),
        },
    }
}

fn duration(query: &mut Query, name: &'static str) -> Result<Option<i64>, Problem> {
    match query.get(name).as_deref() {
        None | Some("") => Ok(None),
        Some(text) => traceql::parse_go_duration(text)
            .filter(|ns| *ns >= 0)
            .map(Some)
            .ok_or_else(|| Problem::bad_parameter(name, "a duration such as 100ms, 1.5s or 2m")),
    }
}

async fn db(state: &State) -> Result<deadpool_postgres::Client, Rejection> {
    state
        .db
        .get()
        .await
        .map_err(|e| reject(Problem::unavailable("PostgreSQL", e)))
}

fn store_error(e: store::StoreError) -> Rejection {
    match e {
        store::StoreError::Regex(detail) => reject(Problem::bad_parameter("q", detail)),
        store::StoreError::Db(e) => reject(Problem::unavailable("PostgreSQL", e)),
    }
}

// ---- trace by id ----

/// Which trace-by-id endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The trace from PostgreSQL, else from the blocks (within `start`/`end`
/// when given, as Tempo prunes blocks by them).
async fn find_trace(
    state: &State,
    tenant: &str,
    id: &[u8; 16],
    range: Option<(i64, i64)>,
) -> Result<Option<Vec<observatory_schemas::otlp::trace::ResourceSpans>>, Rejection> {
    let client = db(state).await?;
    let found = store::trace(&client, tenant, id, state.trace_max_spans)
        .await
        .map_err(|e| reject(Problem::unavailable("PostgreSQL", e)))?;
    drop(client);
    match (found, &state.blocks) {
        (Some(spans), _) => Ok(Some(spans)),
        (None, Some(blocks)) => blocks
            .find_between(tenant, id, range)
            .await
            .map(|found| {
                found.map(|mut spans| {
                    crate::blocks::cap_spans(&mut spans, state.trace_max_spans);
                    spans
                })
            })
            .map_err(|e| reject(Problem::blocks(e))),
        (None, None) => Ok(None),
    }
}

/// `mode`, `start` and `end` of a trace by id: the range in unix
/// nanoseconds that blocks are pruned by, when either bound is given.
pub(crate) fn parse_trace_range(query: &mut Query) -> Result<Option<(i64, i64)>, Problem> {
    match query.get("mode").as_deref() {
        None | Some("" | "all" | "blocks" | "ingesters" | "external") => {}
        Some(_) => {
            return Err(Problem::bad_parameter(
                "mode",
                "all, blocks, ingesters or external",
            ))
        }
    }
    let start = seconds(query, "start")?;
    let end = seconds(query, "end")?;
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            return Err(Problem::bad_parameter("start", "start must be before end"));
        }
    }
    Ok(match (start, end) {
        (None, None) => None,
        (s, e) => Some((
            s.map_or(i64::MIN, |s| s * 1_000_000_000),
            e.map_or(i64::MAX, |e| e * 1_000_000_000),
        )),
    })
}

async fn trace_by_id(
    version: Version,
    id: String,
    mut query: Query,
    accept: Option<String>,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let id = crate::traces::parse_trace_id(&id).map_err(reject)?;
    let range = parse_trace_range(&mut query).map_err(reject)?;
    let mut found = find_trace(&state, &claims.tenant, &id, range).await?;
    if let Some(spans) = &mut found {
        shapes::complete(spans);
    }
    let protobuf = wants_protobuf(&accept);
    match (version, found) {
        (Version::V1, None) => Err(reject(Problem::not_found(
            "trace not found for your tenant",
        ))),
        (Version::V1, Some(spans)) if protobuf => {
            Ok(with_type(shapes::trace_v1_protobuf(spans), PROTOBUF))
        }
        (Version::V1, Some(spans)) => Ok(json_reply(shapes::trace_v1_json(&spans))),
        // v2 answers an empty trace, as Tempo's v2 does.
        (Version::V2, spans) if protobuf => Ok(with_type(
            shapes::trace_v2_protobuf(spans.unwrap_or_default()),
            PROTOBUF,
        )),
        (Version::V2, spans) => Ok(json_reply(shapes::trace_v2_json(
            &spans.unwrap_or_default(),
        ))),
    }
}

// ---- search ----

pub(crate) fn parse_search(query: &mut Query) -> Result<store::Search, Problem> {
    let q = query.get("q").filter(|q| !q.trim().is_empty());
    let tags = query.get("tags").filter(|t| !t.trim().is_empty());
    let parsed = match (q.as_deref(), tags.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_parameter(
                "tags",
                "tags and q cannot be used together",
            ))
        }
        (Some(q), None) => traceql::parse(q).map_err(|e| Problem::bad_parameter("q", e.0))?,
        (None, Some(t)) => traceql::tags(t).map_err(|e| Problem::bad_parameter("tags", e.0))?,
        (None, None) => traceql::Query::default(),
    };
    let (start, end) = range(query, DEFAULT_SEARCH_RANGE)?;
    let min_duration_ns = duration(query, "minDuration")?;
    let max_duration_ns = duration(query, "maxDuration")?;
    if let (Some(min), Some(max)) = (min_duration_ns, max_duration_ns) {
        if max < min {
            return Err(Problem::bad_parameter(
                "maxDuration",
                "must be at least minDuration",
            ));
        }
    }
    Ok(store::Search {
        query: parsed,
        start,
        end,
        limit: count(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        spans_per_set: count(query, "spss", DEFAULT_SPSS, MAX_SPSS)?,
        min_duration: min_duration_ns.map(|ns| Duration::from_nanos(ns as u64)),
        max_duration: max_duration_ns.map(|ns| Duration::from_nanos(ns as u64)),
        store: match query.get("store").as_deref() {
            None | Some("") => crate::search::Store::Auto,
            Some(s) => {
                crate::search::Store::parse(s).map_err(|e| Problem::bad_parameter("store", e))?
            }
        },
    })
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// PostgreSQL's part of a search (start and end, Tempo's end included)
/// and the blocks' (`[from, to)` in ns).
type SearchParts = (Option<(SystemTime, SystemTime)>, Option<(i64, i64)>);

/// The parts of a search's range each store answers: PostgreSQL its
/// retention window (`[start, end]`, Tempo's end included), the blocks what
/// is older (`[from, to)` in ns), as `store` asks.
fn split_search(
    search: &store::Search,
    now: SystemTime,
    retention: Duration,
    blocks: bool,
) -> Result<SearchParts, Problem> {
    use crate::search::Store;
    let whole_blocks = Some((unix_ns(search.start), unix_ns(search.end).saturating_add(1)));
    let whole_pg = Some((search.start, search.end));
    match search.store {
        Store::Postgres => Ok((whole_pg, None)),
        Store::Blocks if !blocks => Err(Problem::bad_parameter(
            "store",
            "no object storage is configured (OBJECT_STORE_URL): the blocks cannot be searched",
        )),
        Store::Blocks => Ok((None, whole_blocks)),
        Store::Auto if !blocks => Ok((whole_pg, None)),
        Store::Auto => {
            let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
            if search.end < cutoff {
                Ok((None, whole_blocks))
            } else if search.start >= cutoff {
                Ok((whole_pg, None))
            } else {
                Ok((
                    Some((cutoff, search.end)),
                    Some((unix_ns(search.start), unix_ns(cutoff))),
                ))
            }
        }
    }
}

/// The blocks' search of a TraceQL query over `[from, to)` ns.
fn block_search(search: &store::Search, from: i64, to: i64) -> crate::blocks::BlockSearch {
    use crate::blocks::Whose;
    let mut selected: Vec<(String, Whose)> = Vec::new();
    for c in search.query.spans.iter().flat_map(traceql::Expr::conds) {
        let (key, whose) = match &c.field {
            Field::Service => ("service.name".to_owned(), Whose::Resource),
            Field::Span(k) => (k.clone(), Whose::Span),
            Field::Resource(k) => (k.clone(), Whose::Resource),
            Field::Any(k) => (k.clone(), Whose::Either),
            _ => continue,
        };
        if selected.iter().all(|(k, _)| *k != key) {
            selected.push((key, whose));
        }
    }
    let ns = |d: Option<Duration>| d.map(|d| d.as_nanos().min(i64::MAX as u128) as i64);
    crate::blocks::BlockSearch {
        from_ns: from,
        to_ns: to,
        filter: crate::blocks::TraceFilter {
            service: None,
            status: None,
            min_duration_ns: ns(search.min_duration),
            max_duration_ns: ns(search.max_duration),
            spans: search.query.spans.as_ref().map(store::span_filter),
            trace_level: search.query.traces.clone(),
        },
        order: crate::summaries::Order {
            key: crate::summaries::SortKey::StartTime,
            descending: true,
        },
        after: None,
        limit: search.limit,
        span_sets: Some(search.spans_per_set.max(1)),
        selected,
    }
}

async fn search(
    mut query: Query,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let search = parse_search(&mut query).map_err(reject)?;
    let (pg, older) = split_search(
        &search,
        SystemTime::now(),
        state.traces_retention,
        state.blocks.is_some(),
    )
    .map_err(reject)?;
    let mut answer = shapes::SearchResponse::default();
    if let Some((start, end)) = pg {
        let mut client = db(&state).await?;
        let part = store::Search {
            start,
            end,
            ..search.clone()
        };
        answer = store::search(&mut client, &claims.tenant, &part, state.search_time_budget)
            .await
            .map_err(store_error)?;
    }
    // Newest first: the blocks' older part only when PostgreSQL's did not
    // fill the answer.
    if let (Some((from, to)), Some(blocks)) = (older, &state.blocks) {
        if answer.traces.len() < search.limit {
            let result = blocks
                .search(&claims.tenant, &block_search(&search, from, to))
                .await
                .map_err(|e| reject(Problem::blocks(e)))?;
            shapes::add_block_hits(&mut answer, &result, search.limit);
        }
    }
    Ok(warp::reply::json(&answer).into_response())
}

// ---- tags ----

/// Which scopes of tag names to answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    Span,
    Resource,
    Intrinsic,
}

/// `scope`, `start` and `end` of a tag-names lookup.
pub(crate) fn parse_tag_names(
    query: &mut Query,
) -> Result<(Scope, SystemTime, SystemTime), Problem> {
    let scope = match query.get("scope").as_deref() {
        None | Some("" | "all" | "none") => Scope::All,
        Some("span") => Scope::Span,
        Some("resource") => Scope::Resource,
        Some("intrinsic") => Scope::Intrinsic,
        Some(_) => {
            return Err(Problem::bad_parameter(
                "scope",
                "span, resource, intrinsic or all",
            ))
        }
    };
    let (start, end) = range(query, DEFAULT_TAGS_RANGE)?;
    Ok((scope, start, end))
}

async fn tag_names(
    version: Version,
    mut query: Query,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let (scope, start, end) = parse_tag_names(&mut query).map_err(reject)?;
    let (span, resource) = if scope == Scope::Intrinsic {
        (Vec::new(), Vec::new())
    } else {
        let mut client = db(&state).await?;
        store::tag_names(&mut client, &claims.tenant, start, end)
            .await
            .map_err(store_error)?
    };
    if version == Version::V1 {
        let mut names: Vec<String> = span.into_iter().chain(resource).collect();
        names.sort();
        names.dedup();
        names.truncate(store::MAX_TAGS);
        return Ok(warp::reply::json(&shapes::TagNames { tag_names: names }).into_response());
    }
    let mut scopes = Vec::new();
    let all = scope == Scope::All;
    if all || scope == Scope::Span {
        scopes.push(shapes::TagScope {
            name: "span".into(),
            tags: span,
        });
    }
    if all || scope == Scope::Resource {
        scopes.push(shapes::TagScope {
            name: "resource".into(),
            tags: resource,
        });
    }
    if all || scope == Scope::Intrinsic {
        scopes.push(shapes::TagScope {
            name: "intrinsic".into(),
            tags: store::INTRINSICS.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    Ok(warp::reply::json(&shapes::TagScopes { scopes }).into_response())
}

/// Decodes `%XX` escapes of a path segment.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `q`, `start` and `end` of a tag-values lookup. Tempo narrows the values
/// by `q` when it can and ignores it otherwise.
pub(crate) fn parse_tag_values(
    query: &mut Query,
) -> Result<(Option<traceql::Expr>, SystemTime, SystemTime), Problem> {
    let filter = match query.get("q") {
        Some(q) if q.len() > traceql::MAX_QUERY_BYTES => {
            return Err(Problem::bad_parameter(
                "q",
                format!("a query is at most {} bytes", traceql::MAX_QUERY_BYTES),
            ))
        }
        Some(q) => traceql::parse(&q).ok().and_then(|q| q.spans),
        None => None,
    };
    let (start, end) = range(query, DEFAULT_TAGS_RANGE)?;
    Ok((filter, start, end))
}

async fn tag_values(
    version: Version,
    tag: String,
    mut query: Query,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let bad_tag = |why: &str| reject(Problem::bad_parameter("tag", why.to_owned()));
    let name = percent_decode(&tag).ok_or_else(|| bad_tag("not a valid path segment"))?;
    if name.is_empty() || name.len() > 256 {
        return Err(bad_tag("a tag name is 1 to 256 bytes"));
    }
    let field = match version {
        Version::V2 => traceql::field(&name).map_err(|e| bad_tag(&e.0))?,
        // v1 names bare attributes; `name` and `service.name` have columns.
        Version::V1 => match name.as_str() {
            "name" => Field::Name,
            "service.name" => Field::Service,
            _ => Field::Any(name.clone()),
        },
    };
    let (filter, start, end) = parse_tag_values(&mut query).map_err(reject)?;
    let mut client = db(&state).await?;
    let values = store::tag_values(
        &mut client,
        &claims.tenant,
        &field,
        start,
        end,
        filter.as_ref(),
    )
    .await
    .map_err(store_error)?;
    Ok(match version {
        Version::V1 => warp::reply::json(&shapes::TagValues {
            tag_values: values.into_iter().map(|v| v.value).collect(),
        })
        .into_response(),
        Version::V2 => {
            warp::reply::json(&shapes::TypedTagValues { tag_values: values }).into_response()
        }
    })
}

// ---- routes ----

/// `/api/echo`, `/api/status/buildinfo`, `/api/traces/{id}`,
/// `/api/v2/traces/{id}`, `/api/search`, `/api/search/tags`,
/// `/api/v2/search/tags`, `/api/search/tag/{name}/values`,
/// `/api/v2/search/tag/{tag}/values`.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let auth = {
        let state = state.clone();
        move || authorized(state.clone(), Role::Viewer)
    };
    let with_state = move || {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let query = || warp::query::<Query>();
    let accept = || warp::header::optional::<String>("accept");

    let echo = warp::path!("api" / "echo")
        .and(warp::get())
        .and(auth())
        .map(|_: Claims| with_type("echo", "text/plain; charset=utf-8"));
    let buildinfo = warp::path!("api" / "status" / "buildinfo")
        .and(warp::get())
        .and(auth())
        .map(|_: Claims| {
            warp::reply::json(&serde_json::json!({
                "version": TEMPO_VERSION,
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": "",
            }))
            .into_response()
        });
    let trace_v1 = warp::path!("api" / "traces" / String)
        .and(warp::get())
        .and(query())
        .and(accept())
        .and(auth())
        .and(with_state())
        .and_then(|id, q, a, c, s| trace_by_id(Version::V1, id, q, a, c, s));
    let trace_v2 = warp::path!("api" / "v2" / "traces" / String)
        .and(warp::get())
        .and(query())
        .and(accept())
        .and(auth())
        .and(with_state())
        .and_then(|id, q, a, c, s| trace_by_id(Version::V2, id, q, a, c, s));
    let search_route = warp::path!("api" / "search")
        .and(warp::get())
        .and(query())
        .and(auth())
        .and(with_state())
        .and_then(search);
    let tags_v1 = warp::path!("api" / "search" / "tags")
        .and(warp::get())
        .and(query())
        .and(auth())
        .and(with_state())
        .and_then(|q, c, s| tag_names(Version::V1, q, c, s));
    let tags_v2 = warp::path!("api" / "v2" / "search" / "tags")
        .and(warp::get())
        .and(query())
        .and(auth())
        .and(with_state())
        .and_then(|q, c, s| tag_names(Version::V2, q, c, s));
    let values_v1 = warp::path!("api" / "search" / "tag" / String / "values")
        .and(warp::get())
        .and(query())
        .and(auth())
        .and(with_state())
        .and_then(|t, q, c, s| tag_values(Version::V1, t, q, c, s));
    let values_v2 = warp::path!("api" / "v2" / "search" / "tag" / String / "values")
        .and(warp::get())
        .and(query())
        .and(auth())
        .and(with_state())
        .and_then(|t, q, c, s| tag_values(Version::V2, t, q, c, s));
    echo.or(buildinfo)
        .unify()
        .or(trace_v1)
        .unify()
        .or(trace_v2)
        .unify()
        .or(search_route)
        .unify()
        .or(tags_v1)
        .unify()
        .or(tags_v2)
        .unify()
        .or(values_v1)
        .unify()
        .or(values_v2)
        .unify()
}
