//! Prometheus' HTTP API under `/api/prom`, so that Grafana's Prometheus
//! data source (URL `http://<observatory-api>:8080/api/prom`) charts the
//! stored OpenTelemetry metrics: `api/v1/query_range` and `api/v1/query`
//! (GET, or POST with a form body, Grafana's default), `api/v1/labels` and
//! `api/v1/series` (GET or POST), `api/v1/label/{name}/values` and
//! `api/v1/status/buildinfo`.
//!
//! What it guarantees: answers have Prometheus' JSON shapes
//! (`{"status":"success","data":…}`, values as strings, times as unix
//! seconds), errors too (`{"status":"error","errorType":"bad_data",
//! "error":"invalid parameter \"step\": …","parameter":"step"}`, HTTP 400;
//! `execution`, 422, for a query past a bound; `unavailable`, 503, when
//! PostgreSQL is); `parameter` is ours, so a client sees which parameter
//! was wrong. Parameters are read as Prometheus reads them (unknown names
//! ignored: Grafana adds some) except that a single-valued parameter given
//! twice is refused. Every route needs a viewer token and reads only its
//! tenant (the routes sit behind [`crate::routes::authorized`], like every
//! `/api/v1` route: rate limit and `X-Scope-OrgID` check included); answers
//! go through the Redis cache, keyed by tenant and the parameters as
//! parsed. Bounds: 11 000 points per series as Prometheus, the
//! evaluator's and the store's limits ([`super::eval`], [`super::store`]).

use super::eval::{self, Buckets, Row, Steps, Value};
use super::names::{self, Labels, Part, LE, NAME, QUANTILE};
use super::parse::{self, Expr, Selector};
use super::store::{self, Budget, Matchers, StoreError};
use crate::auth::Claims;
use crate::problem::Problem;
use crate::routes::State;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

/// The Prometheus version reported by `status/buildinfo`: Grafana picks
/// features by it; 2.45 has every endpoint served here.
pub const PROMETHEUS_VERSION: &str = "2.45.0";

/// Largest POST body (a 64 KiB query, percent-encoded).
pub const MAX_BODY: u64 = 256 * 1024;

/// Most points per series of a range query (Prometheus' own limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Longest value of a parameter other than `query` and `match[]`.
const MAX_VALUE_BYTES: usize = 1024;

/// How long `/series` looks back for the buckets of an exponential
/// histogram, at most.
const BUCKETS_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A window ending this close to now can still change: short cache.
const OPEN: Duration = Duration::from_secs(120);

/// Query pairs.
pub type Pairs = Vec<(String, String)>;

/// The parameters of a request: the form body's then the URL's, as
/// Prometheus merges them. Every name a route reads is recorded, so that a
/// test compares them with the OpenAPI document.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Pairs,
    asked: Vec<&'static str>,
}

impl Form {
    /// The pairs as received.
    pub fn new(pairs: Pairs) -> Form {
        Form {
            pairs,
            asked: Vec::new(),
        }
    }

    fn all(&mut self, name: &'static str) -> Vec<String> {
        if !self.asked.contains(&name) {
            self.asked.push(name);
        }
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value of `name` (empty counts as absent); given twice or longer
    /// than `max` bytes is an error naming it.
    fn one(&mut self, name: &'static str, max: usize) -> Result<Option<String>, PromError> {
        let mut values = self.all(name);
        if values.len() > 1 {
            return Err(PromError::bad(name, "given more than once"));
        }
        match values.pop().filter(|v| !v.is_empty()) {
            Some(v) if v.len() > max => {
                Err(PromError::bad(name, format!("longer than {max} bytes")))
            }
            v => Ok(v),
        }
    }

    /// Every name read, in order.
    pub fn asked(&self) -> &[&'static str] {
        &self.asked
    }
}

/// A form body (`application/x-www-form-urlencoded`) as pairs.
fn decode_form(body: &[u8]) -> Pairs {
    let decode = |s: &[u8]| {
        let s: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The parameters of a GET (its URL's) or of a POST (its form body's,
/// then its URL's).
pub fn params() -> impl Filter<Extract = (Pairs,), Error = Rejection> + Clone {
    let get = warp::get().and(warp::query::<Pairs>());
    let post = warp::post()
        .and(warp::query::<Pairs>())
        .and(warp::body::stream())
        .and_then(|url: Pairs, body| async move {
            let body = read_body(body).await?;
            let mut pairs = decode_form(&body);
            pairs.extend(url);
            Ok::<_, Rejection>(pairs)
        });
    get.or(post).unify()
}

/// A request body, at most [`MAX_BODY`] bytes (with or without a
/// `Content-Length`).
async fn read_body<S, B>(body: S) -> Result<Vec<u8>, Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::TryStreamExt;
    futures::pin_mut!(body);
    let mut out = Vec::new();
    while let Some(mut chunk) = body
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(Problem::bad_parameter("body", "unreadable")))?
    {
        if out.len() + chunk.remaining() > MAX_BODY as usize {
            return Err(warp::reject::custom(Problem::bad_parameter(
                "body",
                format!("a form body is at most {MAX_BODY} bytes"),
            )));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

/// An error in Prometheus' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PromError {
    /// HTTP status.
    pub status: u16,
    /// Prometheus' `errorType`: `bad_data`, `execution`, `unavailable`.
    pub error_type: &'static str,
    /// The message.
    pub error: String,
    /// The parameter at fault.
    pub parameter: Option<String>,
}

impl PromError {
    /// A parameter we cannot use (400 `bad_data`).
    pub fn bad(parameter: &str, why: impl std::fmt::Display) -> PromError {
        PromError {
            status: 400,
            error_type: "bad_data",
            error: format!("invalid parameter {parameter:?}: {why}"),
            parameter: Some(parameter.to_owned()),
        }
    }

    /// The document.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.error,
        });
        if let Some(p) = &self.parameter {
            body["parameter"] = p.clone().into();
        }
        body
    }

    /// The reply.
    pub fn reply(&self) -> warp::reply::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        warp::reply::with_status(warp::reply::json(&self.body()), status).into_response()
    }
}

/// A problem from the cache or PostgreSQL, in Prometheus' shape.
impl From<Problem> for PromError {
    fn from(p: Problem) -> PromError {
        let error_type = match p.status {
            400 => "bad_data",
            422 => "execution",
            503 | 429 => "unavailable",
            _ => "internal",
        };
        PromError {
            status: p.status,
            error_type,
            error: p.detail,
            parameter: p.parameter,
        }
    }
}

/// Our error, carried through the cache (which deals in problems).
impl From<PromError> for Problem {
    fn from(e: PromError) -> Problem {
        Problem {
            kind: format!(
                "https://llm-observatory.dev/problems/prometheus-{}",
                e.error_type
            ),
            title: "Prometheus API error",
            status: e.status,
            detail: e.error,
            parameter: e.parameter,
            retry_after: None,
        }
    }
}

fn store_error(e: StoreError, parameter: &str) -> PromError {
    match e {
        StoreError::Db(e) => Problem::postgres(e).into(),
        StoreError::Limit(why) => PromError {
            status: 422,
            error_type: "execution",
            error: why,
            parameter: Some(parameter.to_owned()),
        },
        StoreError::Matcher(why) => PromError::bad(parameter, why),
    }
}

fn eval_error(e: eval::EvalError) -> PromError {
    PromError {
        status: 422,
        error_type: "execution",
        error: e.to_string(),
        parameter: Some("query".to_owned()),
    }
}

/// A time: unix seconds (a float) or RFC 3339, as unix milliseconds.
///
/// ```
/// use observatory_api::promql::api::parse_time;
/// assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
/// assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
/// assert!(parse_time("yesterday").is_err());
/// ```
pub fn parse_time(text: &str) -> Result<i64, String> {
    // Year 9999, the last RFC 3339 can write.
    const MAX_SECONDS: f64 = 253_402_300_799.0;
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && (0.0..=MAX_SECONDS).contains(&seconds) {
            return Ok((seconds * 1000.0).round() as i64);
        }
        return Err(format!(
            "cannot parse {text:?} to a valid timestamp: unix seconds from 0 to {MAX_SECONDS}"
        ));
    }
    crate::filters::parse_rfc3339(text)
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64)
        .map_err(|_| {
            format!(
                "cannot parse {text:?} to a valid timestamp: unix seconds (1700000000.5) or RFC \
                 3339 (2023-11-14T22:13:20Z)"
            )
        })
}

/// A step: seconds (a float) or a duration (`15s`, `1m`, `1h30m`), as
/// milliseconds, at least 1.
///
/// ```
/// use observatory_api::promql::api::parse_step;
/// assert_eq!(parse_step("15"), Ok(15_000));
/// assert_eq!(parse_step("0.5"), Ok(500));
/// assert_eq!(parse_step("1m30s"), Ok(90_000));
/// assert!(parse_step("0").is_err());
/// assert!(parse_step("-1").is_err());
/// ```
pub fn parse_step(text: &str) -> Result<i64, String> {
    let ms = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds < 1e12 => (seconds * 1000.0).round(),
        Ok(_) => -1.0,
        Err(_) => match parse::parse_duration(text) {
            Some(d) if d.as_millis() < 1_000_000_000_000_000 => d.as_millis() as f64,
            _ => {
                return Err(format!(
                    "cannot parse {text:?} to a valid duration: seconds (15, 0.5) or a duration \
                     (15s, 1m, 1h30m)"
                ))
            }
        },
    };
    if ms < 1.0 {
        return Err(
            "zero or negative query resolution step widths are not accepted. Try a positive \
             integer"
                .to_owned(),
        );
    }
    Ok(ms as i64)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn query_expr(form: &mut Form) -> Result<(String, Expr), PromError> {
    let text = form
        .one("query", parse::MAX_QUERY_BYTES)?
        .ok_or_else(|| PromError::bad("query", "missing: a PromQL query is required"))?;
    let expr = parse::parse(&text).map_err(|e| PromError::bad("query", e))?;
    Ok((text, expr))
}

fn time_param(form: &mut Form, name: &'static str) -> Result<Option<i64>, PromError> {
    form.one(name, MAX_VALUE_BYTES)?
        .map(|t| parse_time(&t).map_err(|why| PromError::bad(name, why)))
        .transpose()
}

/// A range or instant query, checked.
#[derive(Debug, Clone)]
pub struct QueryParams {
    /// The query as sent.
    pub text: String,
    /// Parsed.
    pub expr: Expr,
    /// When to evaluate.
    pub steps: Steps,
}

impl QueryParams {
    /// `query`, `start`, `end`, `step` of `query_range`.
    pub fn range(form: &mut Form) -> Result<QueryParams, PromError> {
        let query = query_expr(form);
        let start = time_param(form, "start");
        let end = time_param(form, "end");
        let step = form.one("step", MAX_VALUE_BYTES).and_then(|s| {
            s.map(|s| parse_step(&s).map_err(|why| PromError::bad("step", why)))
                .transpose()
        });
        let (text, expr) = query?;
        let start = start?.ok_or_else(|| PromError::bad("start", "missing: a time is required"))?;
        let end = end?.ok_or_else(|| PromError::bad("end", "missing: a time is required"))?;
        let step = step?.ok_or_else(|| PromError::bad("step", "missing: a step is required"))?;
        if end < start {
            return Err(PromError::bad("start", "start must not be after end"));
        }
        let points = (end - start) / step + 1;
        if points > MAX_POINTS_PER_SERIES {
            return Err(PromError::bad(
                "step",
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
                 query resolution (?step=XX)",
            ));
        }
        Ok(QueryParams {
            text,
            expr,
            steps: Steps {
                start,
                step,
                count: points as usize,
            },
        })
    }

    /// `query`, `time` (default now) of `query`.
    pub fn instant(form: &mut Form, now: i64) -> Result<QueryParams, PromError> {
        let query = query_expr(form);
        let time = time_param(form, "time");
        let (text, expr) = query?;
        Ok(QueryParams {
            text,
            expr,
            steps: Steps {
                start: time?.unwrap_or(now),
                step: 1,
                count: 1,
            },
        })
    }

    fn cache_key(&self) -> Pairs {
        vec![
            ("query".into(), self.text.clone()),
            ("start".into(), self.steps.start.to_string()),
            ("step".into(), self.steps.step.to_string()),
            ("count".into(), self.steps.count.to_string()),
        ]
    }
}

/// `match[]`, `start`, `end` of the label and series routes, checked.
#[derive(Debug, Clone)]
pub struct MatchParams {
    /// `match[]` as sent.
    pub texts: Vec<String>,
    /// Each a selector.
    pub selectors: Vec<Selector>,
    /// `start`.
    pub start: Option<i64>,
    /// `end`.
    pub end: Option<i64>,
}

impl MatchParams {
    /// Reads them.
    pub fn parse(form: &mut Form) -> Result<MatchParams, PromError> {
        let texts: Vec<String> = form
            .all("match[]")
            .into_iter()
            .filter(|m| !m.is_empty())
            .collect();
        let start = time_param(form, "start");
        let end = time_param(form, "end");
        let mut selectors = Vec::new();
        for text in &texts {
            match parse::parse(text).map_err(|e| PromError::bad("match[]", e))? {
                Expr::Selector(s) => selectors.push(s),
                _ => {
                    return Err(PromError::bad(
                        "match[]",
                        format!("{text:?} is not a series selector such as up{{job=\"api\"}}"),
                    ))
                }
            }
        }
        let (start, end) = (start?, end?);
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                return Err(PromError::bad("start", "start must not be after end"));
            }
        }
        Ok(MatchParams {
            texts,
            selectors,
            start,
            end,
        })
    }

    fn cache_key(&self) -> Pairs {
        let mut key: Pairs = self
            .texts
            .iter()
            .map(|t| ("match[]".to_owned(), t.clone()))
            .collect();
        key.extend(self.start.map(|s| ("start".to_owned(), s.to_string())));
        key.extend(self.end.map(|e| ("end".to_owned(), e.to_string())));
        key
    }

    /// Series seen since then may have data in the window.
    fn since(&self) -> Option<SystemTime> {
        self.start.map(|s| {
            store::time_of(s)
                .checked_sub(store::LAST_SEEN_SLACK)
                .unwrap_or(UNIX_EPOCH)
        })
    }

    fn open(&self, now: i64) -> bool {
        self.end.is_none_or(|e| e + OPEN.as_millis() as i64 >= now)
    }
}

// ---- answers ----

#[derive(Serialize)]
struct Success<T: Serialize> {
    status: &'static str,
    data: T,
}

fn success<T: Serialize>(data: T) -> Success<T> {
    Success {
        status: "success",
        data,
    }
}

/// `[<unix seconds>, "<value>"]`.
struct Sample(i64, f64);

impl Serialize for Sample {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        if self.0 % 1000 == 0 {
            seq.serialize_element(&(self.0 / 1000))?;
        } else {
            seq.serialize_element(&(self.0 as f64 / 1000.0))?;
        }
        seq.serialize_element(&names::format_float(self.1))?;
        seq.end()
    }
}

/// Labels as a JSON object.
struct Metric(Labels);

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct MatrixSeries {
    metric: Metric,
    values: Vec<Sample>,
}

#[derive(Serialize)]
struct VectorSample {
    metric: Metric,
    value: Sample,
}

#[derive(Serialize)]
#[serde(untagged)]
enum QueryResult {
    Matrix(Vec<MatrixSeries>),
    Vector(Vec<VectorSample>),
    Scalar(Sample),
}

#[derive(Serialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: QueryResult,
}

fn matrix(value: Value, steps: &Steps) -> QueryData {
    let rows = match value {
        Value::Scalar(n) => vec![Row {
            labels: Vec::new(),
            values: vec![Some(n); steps.count],
        }],
        Value::Vector(rows) => rows,
    };
    let series = rows
        .into_iter()
        .map(|row| MatrixSeries {
            values: row
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| Sample(steps.at(i), v)))
                .collect(),
            metric: Metric(row.labels),
        })
        .filter(|s| !s.values.is_empty())
        .collect();
    QueryData {
        result_type: "matrix",
        result: QueryResult::Matrix(series),
    }
}

fn instant(value: Value, t: i64) -> QueryData {
    match value {
        Value::Scalar(n) => QueryData {
            result_type: "scalar",
            result: QueryResult::Scalar(Sample(t, n)),
        },
        Value::Vector(rows) => QueryData {
            result_type: "vector",
            result: QueryResult::Vector(
                rows.into_iter()
                    .filter_map(|row| {
                        let v = row.values.first().copied().flatten()?;
                        Some(VectorSample {
                            metric: Metric(row.labels),
                            value: Sample(t, v),
                        })
                    })
                    .collect(),
            ),
        },
    }
}

// ---- evaluation ----

async fn db(state: &State) -> Result<deadpool_postgres::Object, PromError> {
    crate::v1::db(state).await.map_err(PromError::from)
}

/// Evaluates `expr` at `steps` over `tenant`'s metrics.
async fn run(state: &State, tenant: &str, expr: &Expr, steps: Steps) -> Result<Value, PromError> {
    let uses = eval::selectors(expr);
    let mut data = Vec::with_capacity(uses.len());
    if !uses.is_empty() {
        let client = db(state).await?;
        let earliest = uses
            .iter()
            .map(|u| steps.start - u.window_ms)
            .min()
            .unwrap_or(0);
        let since = store::time_of(earliest)
            .checked_sub(store::LAST_SEEN_SLACK)
            .unwrap_or(UNIX_EPOCH);
        let catalog = store::catalog(&client, tenant, Some(since))
            .await
            .map_err(|e| store_error(e, "query"))?;
        let mut budget = Budget::default();
        for u in &uses {
            let matchers = Matchers::of(u.selector).map_err(|e| store_error(e, "query"))?;
            let selected = store::select(&client, tenant, &catalog, &matchers, Some(since))
                .await
                .map_err(|e| store_error(e, "query"))?;
            let loaded = store::load(
                &client,
                &catalog,
                selected,
                matchers.late,
                steps.start - u.window_ms,
                steps.last(),
                &mut budget,
            )
            .await
            .map_err(|e| store_error(e, "query"))?;
            data.push(loaded);
        }
    }
    // Up to about a second of arithmetic: off the async workers.
    let expr = expr.clone();
    tokio::task::spawn_blocking(move || eval::evaluate(&expr, &data, &steps))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "PromQL evaluation panicked");
            PromError {
                status: 500,
                error_type: "internal",
                error: "the evaluation failed".to_owned(),
                parameter: None,
            }
        })?
        .map_err(eval_error)
}

fn answer(
    result: Result<warp::reply::Response, PromError>,
) -> Result<warp::reply::Response, Rejection> {
    Ok(result.unwrap_or_else(|e| e.reply()))
}

/// `GET|POST /api/prom/api/v1/query_range`.
pub async fn query_range(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    answer(
        async {
            let q = QueryParams::range(&mut Form::new(pairs))?;
            let open = q.steps.last() + OPEN.as_millis() as i64 >= now_ms();
            state
                .cache
                .json(
                    &claims.tenant,
                    "prom_query_range",
                    &q.cache_key(),
                    open,
                    || async {
                        let value = run(&state, &claims.tenant, &q.expr, q.steps).await?;
                        Ok(success(matrix(value, &q.steps)))
                    },
                )
                .await
                .map_err(PromError::from)
        }
        .await,
    )
}

/// `GET|POST /api/prom/api/v1/query`.
pub async fn query(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    answer(
        async {
            let now = now_ms();
            let q = QueryParams::instant(&mut Form::new(pairs), now)?;
            let open = q.steps.start + OPEN.as_millis() as i64 >= now;
            state
                .cache
                .json(
                    &claims.tenant,
                    "prom_query",
                    &q.cache_key(),
                    open,
                    || async {
                        let value = run(&state, &claims.tenant, &q.expr, q.steps).await?;
                        Ok(success(instant(value, q.steps.start)))
                    },
                )
                .await
                .map_err(PromError::from)
        }
        .await,
    )
}

/// The series `m.selectors` select, with the catalog.
async fn matched(
    client: &tokio_postgres::Client,
    tenant: &str,
    m: &MatchParams,
) -> Result<
    (
        Vec<names::Family>,
        Vec<(store::Selected, Vec<eval::LabelMatcher>)>,
    ),
    PromError,
> {
    let since = m.since();
    let catalog = store::catalog(client, tenant, since)
        .await
        .map_err(|e| store_error(e, "match[]"))?;
    let mut out = Vec::new();
    for s in &m.selectors {
        let matchers = Matchers::of(s).map_err(|e| store_error(e, "match[]"))?;
        let selected = store::select(client, tenant, &catalog, &matchers, since)
            .await
            .map_err(|e| store_error(e, "match[]"))?;
        out.extend(selected.into_iter().map(|s| (s, matchers.late.clone())));
        if out.len() > store::MAX_SERIES {
            return Err(store_error(
                StoreError::Limit(format!(
                    "more than {} series match: narrow the selectors",
                    store::MAX_SERIES
                )),
                "match[]",
            ));
        }
    }
    Ok((catalog, out))
}

/// Every series (label set, `__name__` included) of the matched parts;
/// `_bucket` series with the `le` of `buckets`.
fn expand(
    catalog: &[names::Family],
    matched: &[(store::Selected, Vec<eval::LabelMatcher>)],
    buckets: &HashMap<usize, Buckets>,
) -> BTreeSet<Labels> {
    let mut out = BTreeSet::new();
    for (s, late) in matched {
        for (name, part) in &s.parts {
            let mut labels = s.labels.clone();
            names::set(&mut labels, NAME, name);
            let les: Vec<String> = match (part, buckets.get(&s.family)) {
                (Part::Bucket, Some(b)) => b.les().into_iter().map(names::format_float).collect(),
                (Part::Bucket, None) => vec!["+Inf".to_owned()],
                _ => Vec::new(),
            };
            if les.is_empty() {
                let summary = catalog[s.family].kind == names::SUMMARY && *part == Part::Value;
                if summary || late.iter().all(|m| m.matches_labels(&labels)) {
                    out.insert(labels);
                }
                continue;
            }
            for le in les {
                let mut l = labels.clone();
                names::set(&mut l, LE, &le);
                if late.iter().all(|m| m.matches_labels(&l)) {
                    out.insert(l);
                }
            }
        }
    }
    out
}

/// `GET|POST /api/prom/api/v1/labels`.
pub async fn labels(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    answer(
        async {
            let m = MatchParams::parse(&mut Form::new(pairs))?;
            let now = now_ms();
            state
                .cache
                .json(
                    &claims.tenant,
                    "prom_labels",
                    &m.cache_key(),
                    m.open(now),
                    || async {
                        let client = db(&state).await?;
                        let found: Vec<String> = if m.selectors.is_empty() {
                            store::label_names(&client, &claims.tenant, m.since())
                                .await
                                .map_err(|e| store_error(e, "match[]"))?
                        } else {
                            let (catalog, matched) = matched(&client, &claims.tenant, &m).await?;
                            let mut out = BTreeSet::new();
                            for (s, _) in &matched {
                                out.insert(NAME.to_owned());
                                out.extend(s.labels.iter().map(|(k, _)| k.clone()));
                                for (_, part) in &s.parts {
                                    match (catalog[s.family].kind, part) {
                                        (_, Part::Bucket) => {
                                            out.insert(LE.to_owned());
                                        }
                                        (names::SUMMARY, Part::Value) => {
                                            out.insert(QUANTILE.to_owned());
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            out.into_iter().collect()
                        };
                        Ok(success(found))
                    },
                )
                .await
                .map_err(PromError::from)
        }
        .await,
    )
}

/// The label name of the path: percent-decoded, 1 to 256 bytes, as
/// Prometheus spells it (`gen_ai.system` is `gen_ai_system`).
pub fn label_param(raw: &str) -> Result<String, PromError> {
    let name = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PromError::bad("name", "not UTF-8 once percent-decoded"))?;
    if raw.contains('%')
        && raw
            .split('%')
            .skip(1)
            .any(|h| h.len() < 2 || !h.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
    {
        return Err(PromError::bad("name", "an invalid percent-encoding"));
    }
    if name.is_empty() || name.len() > 256 {
        return Err(PromError::bad("name", "a label name is 1 to 256 bytes"));
    }
    Ok(if name == NAME {
        name.into_owned()
    } else {
        names::label_name(&name)
    })
}

/// `GET /api/prom/api/v1/label/{name}/values`.
pub async fn label_values(
    name: String,
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    answer(
        async {
            let m = MatchParams::parse(&mut Form::new(pairs));
            let label = label_param(&name)?;
            let m = m?;
            let mut key = m.cache_key();
            key.push(("label".to_owned(), label.clone()));
            let now = now_ms();
            state
                .cache
                .json(
                    &claims.tenant,
                    "prom_label_values",
                    &key,
                    m.open(now),
                    || async {
                        let client = db(&state).await?;
                        let values: Vec<String> = if m.selectors.is_empty() {
                            let catalog = store::catalog(&client, &claims.tenant, m.since())
                                .await
                                .map_err(|e| store_error(e, "name"))?;
                            store::label_values(
                                &client,
                                &claims.tenant,
                                &catalog,
                                &label,
                                m.since(),
                            )
                            .await
                            .map_err(|e| store_error(e, "name"))?
                        } else {
                            let (catalog, matched) = matched(&client, &claims.tenant, &m).await?;
                            let buckets = if label == LE {
                                let (from, to) = m.bucket_window(now);
                                let selected: Vec<store::Selected> =
                                    matched.iter().map(|(s, _)| s.clone()).collect();
                                store::bucket_layouts(&client, &catalog, &selected, from, to)
                                    .await
                                    .map_err(|e| store_error(e, "match[]"))?
                            } else {
                                HashMap::new()
                            };
                            expand(&catalog, &matched, &buckets)
                                .iter()
                                .map(|l| names::get(l, &label).to_owned())
                                .filter(|v| !v.is_empty())
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .take(store::MAX_LABEL_VALUES)
                                .collect()
                        };
                        Ok(success(values))
                    },
                )
                .await
                .map_err(PromError::from)
        }
        .await,
    )
}

impl MatchParams {
    /// The window `/series` reads exponential buckets over: the request's,
    /// at most its last [`BUCKETS_WINDOW_MS`].
    fn bucket_window(&self, now: i64) -> (i64, i64) {
        let end = self.end.unwrap_or(now);
        let start = self.start.unwrap_or(i64::MIN).max(end - BUCKETS_WINDOW_MS);
        (start, end)
    }
}

/// `GET|POST /api/prom/api/v1/series`.
pub async fn series(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    answer(
        async {
            let m = MatchParams::parse(&mut Form::new(pairs))?;
            if m.selectors.is_empty() {
                return Err(PromError::bad("match[]", "no match[] parameter provided"));
            }
            let now = now_ms();
            state
                .cache
                .json(
                    &claims.tenant,
                    "prom_series",
                    &m.cache_key(),
                    m.open(now),
                    || async {
                        let client = db(&state).await?;
                        let (catalog, matched) = matched(&client, &claims.tenant, &m).await?;
                        let (from, to) = m.bucket_window(now);
                        let selected: Vec<store::Selected> =
                            matched.iter().map(|(s, _)| s.clone()).collect();
                        let buckets = store::bucket_layouts(&client, &catalog, &selected, from, to)
                            .await
                            .map_err(|e| store_error(e, "match[]"))?;
                        let series: Vec<Metric> = expand(&catalog, &matched, &buckets)
                            .into_iter()
                            .map(Metric)
                            .collect();
                        Ok(success(series))
                    },
                )
                .await
                .map_err(PromError::from)
        }
        .await,
    )
}

/// `GET /api/prom/api/v1/status/buildinfo`.
pub fn buildinfo() -> warp::reply::Response {
    warp::reply::json(&success(serde_json::json!({
        "version": PROMETHEUS_VERSION,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    })))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn range_err(pairs: &[(&str, &str)]) -> PromError {
        QueryParams::range(&mut form(pairs)).unwrap_err()
    }

    #[test]
    fn range_parameters() {
        let q = QueryParams::range(&mut form(&[
            ("query", "rate(x[5m])"),
            ("start", "1700000000"),
            ("end", "2023-11-14T22:23:20Z"),
            ("step", "1m"),
            ("timeout", "30s"),
        ]))
        .unwrap();
        assert_eq!(
            q.steps,
            Steps {
                start: 1_700_000_000_000,
                step: 60_000,
                count: 11
            }
        );
        let e = range_err(&[
            ("query", "x"),
            ("start", "1"),
            ("end", "2"),
            ("step", "abc"),
        ]);
        assert_eq!((e.status, e.parameter.as_deref()), (400, Some("step")));
        assert!(
            e.error
                .starts_with("invalid parameter \"step\": cannot parse"),
            "{e:?}"
        );
        let e = range_err(&[("query", "x"), ("start", "1"), ("end", "2"), ("step", "0")]);
        assert!(e.error.contains("zero or negative"), "{e:?}");
        let e = range_err(&[
            ("query", "x"),
            ("start", "soon"),
            ("end", "2"),
            ("step", "1"),
        ]);
        assert_eq!(e.parameter.as_deref(), Some("start"));
        let e = range_err(&[("query", "x"), ("start", "5"), ("end", "2"), ("step", "1")]);
        assert_eq!(e.parameter.as_deref(), Some("start"));
        let e = range_err(&[
            ("query", "x"),
            ("start", "0"),
            ("end", "11000"),
            ("step", "1"),
        ]);
        assert!(e.error.contains("11,000 points"), "{e:?}");
        assert!(QueryParams::range(&mut form(&[
            ("query", "x"),
            ("start", "0"),
            ("end", "10999"),
            ("step", "1")
        ]))
        .is_ok());
        let e = range_err(&[("start", "1"), ("end", "2"), ("step", "1")]);
        assert_eq!(e.parameter.as_deref(), Some("query"));
        let e = range_err(&[
            ("query", "topk(5, x)"),
            ("start", "1"),
            ("end", "2"),
            ("step", "1"),
        ]);
        assert!(e.error.contains("the aggregation \"topk\""), "{e:?}");
        assert!(e.error.contains("supported subset"), "{e:?}");
        let e = range_err(&[
            ("query", "x"),
            ("query", "y"),
            ("start", "1"),
            ("end", "2"),
            ("step", "1"),
        ]);
        assert!(e.error.contains("given more than once"), "{e:?}");
        let long = "1".repeat(2000);
        let e = range_err(&[
            ("query", "x"),
            ("start", &long),
            ("end", "2"),
            ("step", "1"),
        ]);
        assert_eq!(e.parameter.as_deref(), Some("start"));
    }

    #[test]
    fn instant_parameters() {
        let q = QueryParams::instant(&mut form(&[("query", "1+1")]), 42_000).unwrap();
        assert_eq!(q.expr, Expr::Number(2.0));
        assert_eq!(q.steps.start, 42_000);
        let q = QueryParams::instant(&mut form(&[("query", "x"), ("time", "10.25")]), 0).unwrap();
        assert_eq!(q.steps.start, 10_250);
        let e = QueryParams::instant(&mut form(&[("query", "x"), ("time", "NaN")]), 0).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("time"));
    }

    #[test]
    fn match_parameters() {
        let m = MatchParams::parse(&mut form(&[
            ("match[]", "up"),
            ("match[]", r#"{job="api"}"#),
            ("start", "10"),
        ]))
        .unwrap();
        assert_eq!(m.selectors.len(), 2);
        assert_eq!(m.start, Some(10_000));
        let e = MatchParams::parse(&mut form(&[("match[]", "rate(x[5m])")])).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("match[]"));
        let e =
            MatchParams::parse(&mut form(&[("match[]", "9".repeat(5000).as_str())])).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("match[]"));
        assert_eq!(label_param("gen_ai.system").unwrap(), "gen_ai_system");
        assert_eq!(label_param("__name__").unwrap(), "__name__");
        assert_eq!(
            label_param("%ZZ").unwrap_err().parameter.as_deref(),
            Some("name")
        );
        assert!(label_param(&"t".repeat(300)).is_err());
        assert_eq!(label_param("a%2Eb").unwrap(), "a_b");
    }

    #[test]
    fn forms_decode_as_go_does() {
        assert_eq!(
            decode_form(b"query=sum%28rate%28x%5B5m%5D%29%29+by+(a)&start=1&empty&match%5B%5D=up"),
            vec![
                ("query".to_owned(), "sum(rate(x[5m])) by (a)".to_owned()),
                ("start".to_owned(), "1".to_owned()),
                ("empty".to_owned(), String::new()),
                ("match[]".to_owned(), "up".to_owned()),
            ]
        );
    }

    #[test]
    fn answers_have_prometheus_shapes() {
        let steps = Steps {
            start: 1_700_000_000_000,
            step: 500,
            count: 3,
        };
        let value = Value::Vector(vec![Row {
            labels: vec![("job".into(), "api".into())],
            values: vec![Some(1.0), None, Some(f64::INFINITY)],
        }]);
        assert_eq!(
            serde_json::to_value(success(matrix(value, &steps))).unwrap(),
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"job": "api"}, "values": [[1700000000, "1"], [1700000001, "+Inf"]]}
            ]}})
        );
        assert_eq!(
            serde_json::to_value(success(matrix(Value::Scalar(2.0), &steps))).unwrap()["data"]
                ["result"][0]["values"][1],
            json!([1700000000.5, "2"])
        );
        assert_eq!(
            serde_json::to_value(success(instant(Value::Scalar(2.0), 1_700_000_000_123))).unwrap(),
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.123, "2"]}})
        );
        let value = Value::Vector(vec![
            Row {
                labels: vec![("__name__".into(), "up".into())],
                values: vec![Some(0.5)],
            },
            Row {
                labels: vec![],
                values: vec![None],
            },
        ]);
        assert_eq!(
            serde_json::to_value(success(instant(value, 1_000))).unwrap()["data"],
            json!({"resultType": "vector", "result": [{"metric": {"__name__": "up"}, "value": [1, "0.5"]}]})
        );
        assert_eq!(
            serde_json::to_value(success(matrix(Value::Vector(vec![]), &steps))).unwrap()["data"],
            json!({"resultType": "matrix", "result": []})
        );
    }

    #[test]
    fn errors_have_prometheus_shapes() {
        let e = PromError::bad("step", "zero");
        assert_eq!(e.reply().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"status": "error", "errorType": "bad_data",
                   "error": "invalid parameter \"step\": zero", "parameter": "step"})
        );
        // Through the cache's problems and back.
        let back = PromError::from(Problem::from(e.clone()));
        assert_eq!(back, e);
        let unavailable = PromError::from(Problem::unavailable("PostgreSQL", "down"));
        assert_eq!(
            (unavailable.status, unavailable.error_type),
            (503, "unavailable")
        );
        let limit = store_error(StoreError::Limit("too many".into()), "query");
        assert_eq!((limit.status, limit.error_type), (422, "execution"));
        assert_eq!(limit.body()["error"], "too many");
    }

    /// The query parameters of each route are exactly those its parser
    /// reads (unknown names are ignored, as Prometheus does, so only this
    /// test keeps the document true).
    #[test]
    fn the_documented_parameters_are_the_read_ones() {
        let doc: serde_json::Value = serde_json::from_str(crate::openapi::DOCUMENT).unwrap();
        let asked = |read: &dyn Fn(&mut Form)| -> BTreeSet<String> {
            let mut f = Form::default();
            read(&mut f);
            f.asked().iter().map(|n| (*n).to_owned()).collect()
        };
        let range = asked(&|f| {
            let _ = QueryParams::range(f);
        });
        let instant = asked(&|f| {
            let _ = QueryParams::instant(f, 0);
        });
        let matching = asked(&|f| {
            let _ = MatchParams::parse(f);
        });
        let cases = [
            ("/api/prom/api/v1/query_range", range),
            ("/api/prom/api/v1/query", instant),
            ("/api/prom/api/v1/labels", matching.clone()),
            ("/api/prom/api/v1/label/{name}/values", matching.clone()),
            ("/api/prom/api/v1/series", matching),
            ("/api/prom/api/v1/status/buildinfo", BTreeSet::new()),
        ];
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|p| p.starts_with("/api/prom/"))
            .collect();
        assert_eq!(
            documented,
            cases.iter().map(|(p, _)| *p).collect::<BTreeSet<&str>>()
        );
        for (path, read) in cases {
            for (method, op) in doc["paths"][path].as_object().unwrap() {
                let params: BTreeSet<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(params, read, "{method} {path}");
            }
        }
    }
}
