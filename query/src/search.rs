//! `GET /api/v1/traces`: the trace list and search, read from
//! `trace_summaries` (one row per trace, kept by the PostgreSQL sink).
//!
//! A trace is in the window when it starts in `[from, to)`. Conditions the
//! summary holds are checked on it, through the index of the chosen sort:
//! services, status, provider, model, environment (a span or call of the
//! trace has it), user and session (of the trace's earliest call naming
//! one), duration, cost. Conditions only spans hold (span name, attribute
//! filters, and service and status with them: one span must meet them all
//! at once) and the full text `q` over captured prompts and completions
//! are then checked on the candidates, a chunk at a time in sort order,
//! each trace's spans found by key: a page costs about what it shows, not
//! what the tenant stores. Such a scan stops when its time budget is spent
//! and says so (`partial`), with a cursor that goes on from the last trace
//! it looked at.
//!
//! Results are ordered by start time, duration, cost, tokens or span count
//! with the trace id as tie-breaker, and paged with an opaque keyset
//! cursor, so a page never repeats or skips a trace when the order key is
//! stable.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest window a search may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);

/// The most traces a page may hold.
pub const MAX_LIMIT: i64 = 1000;

/// Candidates a span-level scan looks at in its first round; each later
/// round doubles it, up to [`MAX_CHUNK`].
const FIRST_CHUNK: i64 = 200;
const MAX_CHUNK: i64 = 5000;

/// What a result is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Start of the trace's first span.
    StartTime,
    /// First start to last end.
    Duration,
    /// Summed LLM cost.
    Cost,
    /// Input plus output tokens.
    Tokens,
    /// Spans.
    SpanCount,
}

impl SortKey {
    fn name(self) -> &'static str {
        match self {
            SortKey::StartTime => "start_time",
            SortKey::Duration => "duration",
            SortKey::Cost => "cost",
            SortKey::Tokens => "tokens",
            SortKey::SpanCount => "span_count",
        }
    }

    fn parse(text: &str) -> Option<SortKey> {
        [
            SortKey::StartTime,
            SortKey::Duration,
            SortKey::Cost,
            SortKey::Tokens,
            SortKey::SpanCount,
        ]
        .into_iter()
        .find(|k| k.name() == text)
    }

    /// The summary column, with an index led by (tenant, column, trace id).
    fn column(self) -> &'static str {
        match self {
            SortKey::StartTime => "start_time",
            SortKey::Duration => "duration_us",
            SortKey::Cost => "cost_usd",
            SortKey::Tokens => "total_tokens",
            SortKey::SpanCount => "span_count",
        }
    }
}

/// An order value, typed as its column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    /// Microseconds: start (since the epoch) or duration.
    Micros(i64),
    /// Cost.
    Float(f64),
    /// Tokens, spans.
    Count(i64),
}

impl Value {
    fn parse(key: SortKey, text: &str) -> Option<Value> {
        match key {
            SortKey::StartTime | SortKey::Duration => text.parse().ok().map(Value::Micros),
            SortKey::Cost => text
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .map(Value::Float),
            SortKey::Tokens | SortKey::SpanCount => text.parse().ok().map(Value::Count),
        }
    }

    fn text(self) -> String {
        match self {
            Value::Micros(v) | Value::Count(v) => v.to_string(),
            Value::Float(v) => format!("{v:?}"),
        }
    }

    /// Binds the value as its column's type.
    fn bind(self, key: SortKey, sql: &mut Sql) -> String {
        match (key, self) {
            (SortKey::StartTime, Value::Micros(us)) => sql.bind(from_micros(us)),
            (_, Value::Micros(v) | Value::Count(v)) => sql.bind(v),
            (_, Value::Float(v)) => sql.bind(v),
        }
    }
}

fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
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
    value: Value,
    trace_id: [u8; 16],
}

impl Cursor {
    /// `<sort>.<order>.<value>.<trace id hex>`, base64url without padding.
    fn encode(&self) -> String {
        let mut text = format!(
            "{}.{}.{}.",
            self.key.name(),
            if self.descending { "desc" } else { "asc" },
            self.value.text()
        );
        observatory_schemas::kafka::push_hex(&mut text, &self.trace_id);
        base64url(text.as_bytes())
    }

    fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || "not a cursor from an earlier page".to_owned();
        let raw = unbase64url(text).ok_or_else(bad)?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let mut parts = raw.splitn(3, '.');
        let key = parts.next().and_then(SortKey::parse).ok_or_else(bad)?;
        let descending = match parts.next() {
            Some("desc") => true,
            Some("asc") => false,
            _ => return Err(bad()),
        };
        // The value may itself hold a '.', so the id is the last 32 characters.
        let rest = parts.next().ok_or_else(bad)?;
        if rest.len() < 34 {
            return Err(bad());
        }
        let (value, id) = rest.split_at(rest.len() - 32);
        let value = value
            .strip_suffix('.')
            .and_then(|v| Value::parse(key, v))
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
            .parsed("sort", |s| {
                SortKey::parse(s)
                    .ok_or_else(|| "one of start_time, duration, cost, tokens, span_count".into())
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
            limit: p
                .parsed("limit", |s| parse_in(s, 1..=MAX_LIMIT))?
                .unwrap_or(50),
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

    /// Whether a condition needs the spans themselves.
    fn has_span_condition(&self) -> bool {
        self.name.is_some() || !self.attrs.is_empty()
    }

    /// Whether candidates are checked a round at a time within the time
    /// budget: conditions on the spans, and summary conditions that no
    /// index of the list serves (a set, status, duration or cost: in the
    /// order of another column they may match only far down, as the
    /// costliest traces of a cheap model do). The window, user and session
    /// are always in the candidates' own query.
    fn needs_scan(&self) -> bool {
        self.has_span_condition()
            || self.text.is_some()
            || self.service.is_some()
            || self.provider.is_some()
            || self.model.is_some()
            || self.environment.is_some()
            || self.status.is_some()
            || self.min_duration.is_some()
            || self.max_duration.is_some()
            || self.min_cost.is_some()
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

/// The summary columns a page shows, then the order value.
const COLUMNS: &str = "t.trace_id, t.start_time, t.duration_us, t.span_count, t.llm_calls, t.cost_usd, \
    t.statuses, t.root_service, t.root_name, t.models, t.total_tokens, t.input_tokens, t.output_tokens, \
    t.services, t.providers, t.user_id, t.session_id, t.root_parented";

/// The summary conditions that no index of the list serves (sets, status,
/// duration, cost), as `AND ...` on the summary columns of `alias`.
fn summary_conditions(search: &Search, alias: &str, sql: &mut Sql) -> String {
    let mut out = String::new();
    for (column, value) in [
        ("services", &search.service),
        ("providers", &search.provider),
        ("models", &search.model),
        ("environments", &search.environment),
    ] {
        if let Some(v) = value {
            let p = sql.bind(v.clone());
            out.push_str(&format!(" AND {p} = ANY({alias}.{column})"));
        }
    }
    if let Some(status) = search.status {
        let p = sql.bind(1i16 << status as i16);
        out.push_str(&format!(" AND {alias}.statuses & {p} <> 0"));
    }
    if let Some(d) = search.min_duration {
        let p = sql.bind(d.as_micros() as i64);
        out.push_str(&format!(" AND {alias}.duration_us >= {p}"));
    }
    if let Some(d) = search.max_duration {
        let p = sql.bind(d.as_micros().min(i64::MAX as u128) as i64);
        out.push_str(&format!(" AND {alias}.duration_us <= {p}"));
    }
    if let Some(c) = search.min_cost {
        let p = sql.bind(c);
        out.push_str(&format!(" AND {alias}.cost_usd >= {p}"));
    }
    out
}

/// The candidates in order: the window, user and session (each with an
/// index), after `after`, at most `limit`; with `all_conditions`, every
/// other summary condition too.
fn candidates(
    search: &Search,
    tenant: &str,
    after: Option<&Cursor>,
    limit: i64,
    all_conditions: bool,
    sql: &mut Sql,
) {
    let t = sql.bind(tenant.to_owned());
    let from = sql.bind(search.range.from);
    let to = sql.bind(search.range.to);
    let key = search.sort.column();
    sql.push(&format!(
        "SELECT {COLUMNS}, t.end_time, t.{key} AS order_key, t.environments FROM trace_summaries t \
         WHERE t.tenant = {t} AND t.start_time >= {from} AND t.start_time < {to}"
    ));
    for (column, value) in [("user_id", &search.user), ("session_id", &search.session)] {
        if let Some(v) = value {
            let p = sql.bind(v.clone());
            sql.push(&format!(" AND t.{column} = {p}"));
        }
    }
    if all_conditions {
        let more = summary_conditions(search, "t", sql);
        sql.push(&more);
    }
    let (cmp, dir) = if search.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = after {
        let v = c.value.bind(search.sort, sql);
        let id = sql.bind(c.trace_id.to_vec());
        sql.push(&format!(" AND (t.{key}, t.trace_id) {cmp} ({v}, {id})"));
    }
    let limit = sql.bind(limit);
    sql.push(&format!(
        " ORDER BY t.{key} {dir}, t.trace_id {dir} LIMIT {limit}"
    ));
}

/// A page without span-level conditions: the candidates are the answer.
fn build(search: &Search, tenant: &str) -> Sql {
    let mut sql = Sql::default();
    candidates(
        search,
        tenant,
        search.cursor.as_ref(),
        search.limit + 1,
        true,
        &mut sql,
    );
    sql
}

/// One round of a scan: `chunk` candidates after `after`, each with whether
/// its spans (and calls) meet the span-level conditions, found by key.
fn build_scan(search: &Search, tenant: &str, after: Option<&Cursor>, chunk: i64) -> Sql {
    let mut sql = Sql::default();
    candidates(search, tenant, after, chunk, false, &mut sql);
    let inner = std::mem::take(&mut sql.text);
    // `candidates` bound the tenant first: it is $1.
    let mut hit = vec!["TRUE".to_owned() + &summary_conditions(search, "c", &mut sql)];
    if search.has_span_condition() {
        sql.push(
            "EXISTS (SELECT 1 FROM span_rows s WHERE s.tenant = $1 AND s.trace_id = c.trace_id \
             AND s.start_time >= c.start_time AND s.start_time <= c.end_time",
        );
        for (column, value) in [("s.service", &search.service), ("s.name", &search.name)] {
            if let Some(v) = value {
                let p = sql.bind(v.clone());
                sql.push(&format!(" AND {column} = {p}"));
            }
        }
        if let Some(status) = search.status {
            let p = sql.bind(status as i16);
            sql.push(&format!(" AND s.status_code = {p}"));
        }
        for f in &search.attrs {
            attr_condition(&mut sql, f);
        }
        sql.push(")");
        hit.push(std::mem::take(&mut sql.text));
    }
    if let Some(q) = &search.text {
        let p = sql.bind(q.clone());
        hit.push(format!(
            "EXISTS (SELECT 1 FROM llm_calls l WHERE l.tenant = $1 AND l.trace_id = c.trace_id \
             AND l.start_time >= c.start_time AND l.start_time <= c.end_time \
             AND to_tsvector('simple', coalesce(l.prompt, '') || ' ' || coalesce(l.completion, '')) \
             @@ websearch_to_tsquery('simple', {p}))"
        ));
    }
    sql.text = format!("SELECT c.*, {} AS hit FROM ({inner}) c", hit.join(" AND "));
    sql
}

/// One trace in the results.
#[derive(Debug, Serialize)]
pub struct TraceSummary {
    /// Trace id, hex.
    pub trace_id: String,
    /// Service of the root span (until it arrives, of the earliest span).
    pub root_service: String,
    /// Name of that span.
    pub root_name: String,
    /// Whether the root span (one without a parent) has arrived.
    pub root_received: bool,
    /// Start of the first span, RFC 3339.
    pub start_time: String,
    /// First start to last end, ms.
    pub duration_ms: f64,
    /// Spans.
    pub span_count: i64,
    /// Model calls among them.
    pub llm_calls: i64,
    /// Their summed cost, USD.
    pub cost_usd: f64,
    /// Input plus output tokens.
    pub tokens: i64,
    /// Input tokens (cache reads included).
    pub input_tokens: i64,
    /// Output tokens (reasoning included).
    pub output_tokens: i64,
    /// Whether a span has status error.
    pub error: bool,
    /// Services of its spans.
    pub services: Vec<String>,
    /// Models called.
    pub models: Vec<String>,
    /// Their providers.
    pub providers: Vec<String>,
    /// User of the trace's earliest call naming one.
    pub user_id: Option<String>,
    /// Session of the trace's earliest call naming one.
    pub session_id: Option<String>,
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
    /// `true` when a span-level search spent its time budget before it
    /// filled the page: the traces are the matches among those looked at,
    /// and `next_cursor` goes on from the last one looked at.
    pub partial: bool,
    /// Traces whose spans were looked at (span-level searches; else 0).
    pub scanned_traces: u64,
}

fn summary(r: &tokio_postgres::Row) -> TraceSummary {
    let id: &[u8] = r.get(0);
    let mut hex = String::with_capacity(32);
    observatory_schemas::kafka::push_hex(&mut hex, id);
    let statuses: i16 = r.get(6);
    TraceSummary {
        trace_id: hex,
        start_time: format_time(r.get::<_, SystemTime>(1)),
        duration_ms: r.get::<_, i64>(2) as f64 / 1e3,
        span_count: r.get(3),
        llm_calls: r.get(4),
        cost_usd: r.get(5),
        error: statuses & 4 != 0,
        root_service: r.get(7),
        root_name: r.get(8),
        models: r.get(9),
        tokens: r.get(10),
        input_tokens: r.get(11),
        output_tokens: r.get(12),
        services: r.get(13),
        providers: r.get(14),
        user_id: r.get(15),
        session_id: r.get(16),
        root_received: !r.get::<_, bool>(17),
    }
}

/// Where the page after row `r` starts.
fn cursor_after(search: &Search, r: &tokio_postgres::Row) -> Cursor {
    const KEY: usize = 19;
    let value = match search.sort {
        SortKey::StartTime => Value::Micros(micros(r.get(KEY))),
        SortKey::Duration => Value::Micros(r.get(KEY)),
        SortKey::Cost => Value::Float(r.get(KEY)),
        SortKey::Tokens | SortKey::SpanCount => Value::Count(r.get(KEY)),
    };
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(r.get::<_, &[u8]>(0));
    Cursor {
        key: search.sort,
        descending: search.descending,
        value,
        trace_id,
    }
}

/// Runs the search for `tenant`; a span-level scan stops after `budget`.
pub async fn run(
    client: &tokio_postgres::Client,
    tenant: &str,
    search: &Search,
    budget: Duration,
) -> Result<Page, tokio_postgres::Error> {
    let started = Instant::now();
    let limit = search.limit as usize;
    let mut hits: Vec<tokio_postgres::Row> = Vec::with_capacity(limit + 1);
    let mut partial = false;
    let mut scanned = 0u64;
    let mut last_seen = None;
    if !search.needs_scan() {
        let sql = build(search, tenant);
        hits = client.query(sql.text.as_str(), &sql.refs()).await?;
    } else {
        let mut after = search.cursor.clone();
        let mut chunk = FIRST_CHUNK;
        loop {
            let sql = build_scan(search, tenant, after.as_ref(), chunk);
            let rows = client.query(sql.text.as_str(), &sql.refs()).await?;
            let exhausted = (rows.len() as i64) < chunk;
            for r in rows {
                scanned += 1;
                after = Some(cursor_after(search, &r));
                if r.get::<_, bool>(21) {
                    hits.push(r);
                    if hits.len() > limit {
                        break;
                    }
                }
            }
            if hits.len() > limit || exhausted {
                break;
            }
            if started.elapsed() >= budget {
                partial = true;
                last_seen = after;
                break;
            }
            chunk = (chunk * 2).min(MAX_CHUNK);
        }
    }
    let next_cursor = if hits.len() > limit {
        Some(cursor_after(search, &hits[limit - 1]).encode())
    } else {
        last_seen.map(|c| c.encode())
    };
    hits.truncate(limit);
    Ok(Page {
        traces: hits.iter().map(summary).collect(),
        next_cursor,
        from: format_time(search.range.from),
        to: format_time(search.range.to),
        partial,
        scanned_traces: scanned,
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
                value: Value::Float(value),
                trace_id: [0xab; 16],
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        let c = Cursor {
            key: SortKey::StartTime,
            descending: true,
            value: Value::Micros(1_780_003_723_456_789),
            trace_id: [7; 16],
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "!!!",
            &base64url(b"tokens.asc.1.5.abababababababababababababababab"),
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
            value: Value::Float(1.0),
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
        assert_eq!(sql.params.len(), 9, "{}", sql.text);
        let sql = build_scan(&s, hostile, s.cursor.as_ref(), 100);
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert_eq!(sql.params.len(), 18, "{}", sql.text);
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
