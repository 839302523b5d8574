//! `GET /api/v1/traces`: trace search over PostgreSQL.
//!
//! A trace matches when one of its spans in `[from, to)` meets every span
//! condition at once (service, span name, status, attribute filters) and,
//! when an LLM condition is given (provider, model, user, session,
//! environment, full text `q`), that span is a model call meeting them all;
//! then the trace-level conditions (duration, cost) apply to the trace's
//! spans in the window. Results are ordered by start time, duration or cost
//! with the trace id as tie-breaker, and paged with an opaque keyset cursor,
//! so a page never repeats or skips a trace when the order key is stable.
//!
//! What it guarantees: the SQL text is assembled only from the fixed
//! fragments in this file; every value from the request is a bound
//! parameter (`$n`).

use crate::filters::{
    format_time, parse_attr, parse_duration, parse_in, parse_non_negative, AttrFilter, Op, Operand,
    Params, Range, Scope, MAX_ATTR_FILTERS,
};
use crate::problem::Problem;
use crate::sql::Sql;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// The longest window a search may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);

/// What a result is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Start of the trace's first span.
    StartTime,
    /// First start to last end.
    Duration,
    /// Summed LLM cost.
    Cost,
}

impl SortKey {
    fn name(self) -> &'static str {
        match self {
            SortKey::StartTime => "start_time",
            SortKey::Duration => "duration",
            SortKey::Cost => "cost",
        }
    }

    /// The order value of the `traces` CTE below, as float8.
    fn column(self) -> &'static str {
        match self {
            SortKey::StartTime => "start_us",
            SortKey::Duration => "duration_ms",
            SortKey::Cost => "cost_usd",
        }
    }
}

/// A span status, as OTLP codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0.
    Unset,
    /// 1.
    Ok,
    /// 2.
    Error,
}

/// Where a page starts: after this order value and trace id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    key: SortKey,
    descending: bool,
    value: f64,
    trace_id: [u8; 16],
}

impl Cursor {
    /// `<sort>.<order>.<value>.<trace id hex>`, base64url without padding.
    fn encode(&self) -> String {
        let mut text = format!(
            "{}.{}.{:?}.",
            self.key.name(),
            if self.descending { "desc" } else { "asc" },
            self.value
        );
        observatory_schemas::kafka::push_hex(&mut text, &self.trace_id);
        base64url(text.as_bytes())
    }

    fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || "not a cursor from an earlier page".to_owned();
        let raw = unbase64url(text).ok_or_else(bad)?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let mut parts = raw.splitn(4, '.');
        let key = match parts.next() {
            Some("start_time") => SortKey::StartTime,
            Some("duration") => SortKey::Duration,
            Some("cost") => SortKey::Cost,
            _ => return Err(bad()),
        };
        let descending = match parts.next() {
            Some("desc") => true,
            Some("asc") => false,
            _ => return Err(bad()),
        };
        // The value may itself hold a '.', so the id is the last 32 characters.
        let rest = parts.collect::<Vec<_>>().join(".");
        if rest.len() < 34 {
            return Err(bad());
        }
        let (value, id) = rest.split_at(rest.len() - 32);
        let value: f64 = value
            .strip_suffix('.')
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(bad)?;
        let trace_id = crate::traces::parse_trace_id(id).map_err(|_| bad())?;
        Ok(Cursor {
            key,
            descending,
            value,
            trace_id,
        })
    }
}

/// A checked search request.
#[derive(Debug, Clone)]
pub struct Search {
    /// The window.
    pub range: Range,
    service: Option<String>,
    name: Option<String>,
    status: Option<Status>,
    provider: Option<String>,
    model: Option<String>,
    user: Option<String>,
    session: Option<String>,
    environment: Option<String>,
    text: Option<String>,
    attrs: Vec<AttrFilter>,
    min_duration: Option<Duration>,
    max_duration: Option<Duration>,
    min_cost: Option<f64>,
    sort: SortKey,
    descending: bool,
    limit: i64,
    cursor: Option<Cursor>,
}

impl Search {
    /// Reads every search parameter; refuses unknown ones.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<Search, Problem> {
        let range = Range::take(p, now, Duration::from_secs(3600), MAX_RANGE)?;
        let status = p.parsed("status", |s| match s {
            "unset" => Ok(Status::Unset),
            "ok" => Ok(Status::Ok),
            "error" => Ok(Status::Error),
            _ => Err("one of unset, ok, error".into()),
        })?;
        let mut attrs = Vec::new();
        for text in p.all("attr") {
            attrs.push(parse_attr(&text).map_err(|why| Problem::bad_parameter("attr", why))?);
        }
        if attrs.len() > MAX_ATTR_FILTERS {
            return Err(Problem::bad_parameter(
                "attr",
                format!("at most {MAX_ATTR_FILTERS} attribute filters"),
            ));
        }
        let sort = p
            .parsed("sort", |s| match s {
                "start_time" => Ok(SortKey::StartTime),
                "duration" => Ok(SortKey::Duration),
                "cost" => Ok(SortKey::Cost),
                _ => Err("one of start_time, duration, cost".into()),
            })?
            .unwrap_or(SortKey::StartTime);
        let descending = p
            .parsed("order", |s| match s {
                "desc" => Ok(true),
                "asc" => Ok(false),
                _ => Err("asc or desc".into()),
            })?
            .unwrap_or(true);
        let cursor = p.parsed("cursor", Cursor::decode)?;
        if let Some(c) = &cursor {
            if c.key != sort || c.descending != descending {
                return Err(Problem::bad_parameter(
                    "cursor",
                    "the cursor belongs to another sort or order",
                ));
            }
        }
        let search = Search {
            range,
            service: p.one("service")?,
            name: p.one("name")?,
            status,
            provider: p.one("provider")?,
            model: p.one("model")?,
            user: p.one("user")?,
            session: p.one("session")?,
            environment: p.one("environment")?,
            text: p.one("q")?,
            attrs,
            min_duration: p.parsed("min_duration", parse_duration)?,
            max_duration: p.parsed("max_duration", parse_duration)?,
            min_cost: p.parsed("min_cost", parse_non_negative)?,
            sort,
            descending,
            limit: p.parsed("limit", |s| parse_in(s, 1..=1000))?.unwrap_or(50),
            cursor,
        };
        p.finish()?;
        if let (Some(min), Some(max)) = (search.min_duration, search.max_duration) {
            if min > max {
                return Err(Problem::bad_parameter(
                    "min_duration",
                    "min_duration is above max_duration",
                ));
            }
        }
        Ok(search)
    }

    fn has_llm_condition(&self) -> bool {
        self.provider.is_some()
            || self.model.is_some()
            || self.user.is_some()
            || self.session.is_some()
            || self.environment.is_some()
            || self.text.is_some()
    }
}

/// The JSON value of attribute `key` as text, or as a number when it is one
/// (or a string that spells one).
fn attr_condition(sql: &mut Sql, f: &AttrFilter) {
    let column = match f.scope {
        Scope::Span => "s.attributes",
        Scope::Resource => "s.resource",
    };
    let key = sql.bind(f.key.clone());
    let text = format!("({column} ->> {key})");
    let present = format!("{column} ? {key}");
    let condition = match (&f.op, &f.operand) {
        (Op::Eq, Operand::Text(v)) => format!("{text} = {}", sql.bind(v.clone())),
        (Op::Ne, Operand::Text(v)) => format!("({present} AND {text} <> {})", sql.bind(v.clone())),
        (Op::In, Operand::List(v)) => format!("{text} = ANY({})", sql.bind(v.clone())),
        (Op::NotIn, Operand::List(v)) => {
            format!(
                "({present} AND NOT ({text} = ANY({})))",
                sql.bind(v.clone())
            )
        }
        (Op::Contains, Operand::Text(v)) => format!("strpos({text}, {}) > 0", sql.bind(v.clone())),
        (Op::NotContains, Operand::Text(v)) => {
            format!(
                "({present} AND strpos({text}, {}) = 0)",
                sql.bind(v.clone())
            )
        }
        (Op::StartsWith, Operand::Text(v)) => {
            format!("starts_with({text}, {})", sql.bind(v.clone()))
        }
        (Op::EndsWith, Operand::Text(v)) => {
            let p = sql.bind(v.clone());
            format!("right({text}, length({p})) = {p}")
        }
        (Op::Regex, Operand::Text(v)) => format!("{text} ~ {}", sql.bind(v.clone())),
        (op, Operand::Number(v)) => {
            let cmp = match op {
                Op::Gt => ">",
                Op::Gte => ">=",
                Op::Lt => "<",
                _ => "<=",
            };
            // CASE, not AND: PostgreSQL may evaluate AND's operands in any
            // order, and a cast of a non-number must never run.
            format!(
                "(CASE jsonb_typeof({column} -> {key}) \
                   WHEN 'number' THEN ({column} ->> {key})::float8 \
                   WHEN 'string' THEN CASE WHEN {text} ~ '^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$' \
                                           THEN {text}::float8 END END) {cmp} {}",
                sql.bind(*v)
            )
        }
        _ => unreachable!("parse_attr pairs each operator with its operand"),
    };
    sql.push(" AND ");
    sql.push(&condition);
}

fn build(search: &Search, tenant: &str) -> Sql {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let from = sql.bind(search.range.from);
    let to = sql.bind(search.range.to);
    let llm = search.has_llm_condition();
    let join = "c.tenant = s.tenant AND c.trace_id = s.trace_id AND c.span_id = s.span_id \
                AND c.start_time = s.start_time";
    sql.push("WITH hits AS (SELECT DISTINCT s.trace_id FROM spans s ");
    if llm {
        sql.push(&format!(
            "JOIN llm_calls c ON {join} AND c.start_time >= {from} AND c.start_time < {to} "
        ));
    }
    sql.push(&format!(
        "WHERE s.tenant = {t} AND s.start_time >= {from} AND s.start_time < {to}"
    ));
    let equal = |sql: &mut Sql, column: &str, value: &Option<String>| {
        if let Some(v) = value {
            let p = sql.bind(v.clone());
            sql.push(&format!(" AND {column} = {p}"));
        }
    };
    equal(&mut sql, "s.service", &search.service);
    equal(&mut sql, "s.name", &search.name);
    equal(&mut sql, "c.provider", &search.provider);
    equal(&mut sql, "c.model", &search.model);
    equal(&mut sql, "c.user_id", &search.user);
    equal(&mut sql, "c.session_id", &search.session);
    equal(&mut sql, "c.environment", &search.environment);
    if let Some(status) = search.status {
        let p = sql.bind(status as i16);
        sql.push(&format!(" AND s.status_code = {p}"));
    }
    if let Some(q) = &search.text {
        let p = sql.bind(q.clone());
        sql.push(&format!(
            " AND to_tsvector('simple', coalesce(c.prompt, '') || ' ' || coalesce(c.completion, '')) \
             @@ websearch_to_tsquery('simple', {p})"
        ));
    }
    for f in &search.attrs {
        attr_condition(&mut sql, f);
    }
    sql.push(&format!(
        "), traces AS (
  SELECT s.trace_id,
         min(s.start_time) AS start_time,
         (extract(epoch FROM min(s.start_time)) * 1000000)::float8 AS start_us,
         ((max((extract(epoch FROM s.start_time) * 1000000)::float8 + s.duration_ns / 1000.0)
           - (extract(epoch FROM min(s.start_time)) * 1000000)::float8) / 1000.0)::float8 AS duration_ms,
         count(*) AS span_count,
         count(c.span_id) AS llm_calls,
         coalesce(sum(c.cost_usd), 0)::float8 AS cost_usd,
         bool_or(s.status_code = 2) AS error,
         (array_agg(s.service ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1] AS root_service,
         (array_agg(s.name ORDER BY s.parent_span_id IS NOT NULL, s.start_time))[1] AS root_name,
         array_remove(array_agg(DISTINCT c.model), NULL) AS models
  FROM spans s
  LEFT JOIN llm_calls c ON {join} AND c.start_time >= {from} AND c.start_time < {to}
  WHERE s.tenant = {t} AND s.start_time >= {from} AND s.start_time < {to}
    AND s.trace_id IN (SELECT trace_id FROM hits)
  GROUP BY s.trace_id
)
SELECT trace_id, start_time, duration_ms, span_count, llm_calls, cost_usd, error,
       root_service, root_name, models, {key}
FROM traces WHERE true",
        key = search.sort.column()
    ));
    if let Some(d) = search.min_duration {
        let p = sql.bind(d.as_secs_f64() * 1e3);
        sql.push(&format!(" AND duration_ms >= {p}"));
    }
    if let Some(d) = search.max_duration {
        let p = sql.bind(d.as_secs_f64() * 1e3);
        sql.push(&format!(" AND duration_ms <= {p}"));
    }
    if let Some(c) = search.min_cost {
        let p = sql.bind(c);
        sql.push(&format!(" AND cost_usd >= {p}"));
    }
    let (cmp, dir) = if search.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let key = search.sort.column();
    if let Some(c) = &search.cursor {
        let v = sql.bind(c.value);
        let id = sql.bind(c.trace_id.to_vec());
        sql.push(&format!(" AND ({key}, trace_id) {cmp} ({v}, {id})"));
    }
    let limit = sql.bind(search.limit + 1);
    sql.push(&format!(
        " ORDER BY {key} {dir}, trace_id {dir} LIMIT {limit}"
    ));
    sql
}

/// One trace in the results.
#[derive(Debug, Serialize)]
pub struct TraceSummary {
    /// Trace id, hex.
    pub trace_id: String,
    /// Service of the root span (or of the earliest span without a parent in the window).
    pub root_service: String,
    /// Name of that span.
    pub root_name: String,
    /// Start of the first span in the window, RFC 3339.
    pub start_time: String,
    /// First start to last end, ms.
    pub duration_ms: f64,
    /// Spans in the window.
    pub span_count: i64,
    /// Model calls among them.
    pub llm_calls: i64,
    /// Their summed cost, USD.
    pub cost_usd: f64,
    /// Whether a span has status error.
    pub error: bool,
    /// Models called.
    pub models: Vec<String>,
}

/// A page of results.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The traces.
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
    /// The window searched.
    pub from: String,
    /// Its end.
    pub to: String,
}

/// Runs the search for `tenant`.
pub async fn run(
    client: &tokio_postgres::Client,
    tenant: &str,
    search: &Search,
) -> Result<Page, tokio_postgres::Error> {
    let sql = build(search, tenant);
    let rows = client.query(sql.text.as_str(), &sql.refs()).await?;
    let more = rows.len() as i64 > search.limit;
    let mut traces = Vec::with_capacity(rows.len());
    let mut next_cursor = None;
    for (i, r) in rows.iter().enumerate() {
        if i as i64 == search.limit {
            break;
        }
        let id: &[u8] = r.get(0);
        let mut hex = String::with_capacity(32);
        observatory_schemas::kafka::push_hex(&mut hex, id);
        if more && i as i64 == search.limit - 1 {
            let mut trace_id = [0u8; 16];
            trace_id.copy_from_slice(id);
            next_cursor = Some(
                Cursor {
                    key: search.sort,
                    descending: search.descending,
                    value: r.get(10),
                    trace_id,
                }
                .encode(),
            );
        }
        traces.push(TraceSummary {
            trace_id: hex,
            start_time: format_time(r.get::<_, SystemTime>(1)),
            duration_ms: r.get(2),
            span_count: r.get(3),
            llm_calls: r.get(4),
            cost_usd: r.get(5),
            error: r.get(6),
            root_service: r.get(7),
            root_name: r.get(8),
            models: r.get(9),
        });
    }
    Ok(Page {
        traces,
        next_cursor,
        from: format_time(search.range.from),
        to: format_time(search.range.to),
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

fn unbase64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::parse_rfc3339;

    fn parse(q: &[(&str, &str)]) -> Result<Search, Problem> {
        let pairs = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Search::parse(
            &mut Params::new(pairs)?,
            parse_rfc3339("2026-11-27T10:00:00Z").unwrap(),
        )
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for value in [1.7e15, 0.000_123, 42.0, 1e-300] {
            let c = Cursor {
                key: SortKey::Cost,
                descending: false,
                value,
                trace_id: [0xab; 16],
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for bad in [
            "",
            "!!!",
            &base64url(b"cost.asc.1.zz"),
            &base64url(b"x.y.z"),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_is_tied_to_its_order() {
        let c = Cursor {
            key: SortKey::Cost,
            descending: true,
            value: 1.0,
            trace_id: [1; 16],
        }
        .encode();
        let e = parse(&[("cursor", &c)]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("cursor"));
        assert!(parse(&[("cursor", &c), ("sort", "cost")]).is_ok());
    }

    #[test]
    fn request_text_never_reaches_the_sql() {
        let hostile = "x'); DROP TABLE spans; --";
        let s = parse(&[
            ("service", hostile),
            ("name", hostile),
            ("model", hostile),
            ("user", hostile),
            ("q", hostile),
            ("attr", &format!("{hostile}:eq:{hostile}")),
            ("attr", &format!("k:in:{hostile},b")),
            ("attr", &format!("k:ends_with:{hostile}")),
            ("min_cost", "0.5"),
            ("min_duration", "1s"),
        ])
        .unwrap();
        let sql = build(&s, hostile);
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert_eq!(sql.params.len(), 17, "{}", sql.text);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (name, value) in [
            ("status", "broken"),
            ("sort", "name"),
            ("order", "up"),
            ("limit", "0"),
            ("limit", "100000"),
            ("min_duration", "fast"),
            ("min_cost", "-1"),
            ("min_cost", "NaN"),
            ("attr", "k:gt:x"),
            ("attr", "k:regex:[a-"),
            ("cursor", "abc"),
            ("from", "yesterday"),
            ("to", "2026-11-27 10:00"),
            ("trace", "x"),
        ] {
            let e = parse(&[(name, value)]).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.parameter.as_deref(), Some(name), "{name}={value}");
        }
        let e = parse(&[("min_duration", "2s"), ("max_duration", "1s")]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("min_duration"));
    }
}
