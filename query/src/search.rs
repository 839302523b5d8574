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
//! The candidates, cursors and rounds are [`crate::summaries`]', the span
//! conditions are compiled by [`crate::span_filter`]: Tempo's `/api/search`
//! reads the same path.
//!
//! PostgreSQL holds the last `RETENTION_TRACES_DAYS` days; the part of a
//! window older than that is searched in the Tempo blocks
//! ([`crate::blocks::Blocks::search`]) with the same conditions, and the two
//! parts are merged in the page's order, a trace both hold shown once (from
//! PostgreSQL). `store=postgres|blocks` forces one store for the whole
//! window. Conditions the blocks cannot answer (provider, model,
//! environment, cost, user, session, full text) are a 400 naming the
//! parameter when the window lies wholly in the blocks; when it straddles
//! the retention, only the PostgreSQL part is searched and the page says so
//! ([`BlocksReport::not_searched_because`]).
//!
//! What it guarantees: the SQL text is assembled only from fixed fragments
//! (here and in those two modules); every value from the request is a bound
//! parameter (`$n`).

use crate::filters::{
    format_time, parse_attr, parse_duration, parse_in, parse_non_negative, AttrFilter, Op, Operand,
    Params, Range, Scope, MAX_ATTR_FILTERS,
};
use crate::problem::Problem;
use crate::span_filter::{Attributes, Cmp, Column, Filter, Number, Subject, Test, TextOp};
use crate::sql::Sql;
use crate::summaries::{Candidates, Cursor, Next, Order, Rounds, SortKey, Status, SummaryFilter};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest window a search may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);

/// The most traces a page may hold.
pub const MAX_LIMIT: i64 = 1000;

/// Which store a search reads (`store=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// PostgreSQL for its retention window, the blocks for what is older.
    Auto,
    /// PostgreSQL only, whatever the window.
    Postgres,
    /// The Tempo blocks only, whatever the window.
    Blocks,
}

impl Store {
    /// `auto`, `postgres` or `blocks`.
    pub fn parse(text: &str) -> Result<Store, String> {
        match text {
            "auto" => Ok(Store::Auto),
            "postgres" => Ok(Store::Postgres),
            "blocks" => Ok(Store::Blocks),
            _ => Err("one of auto, postgres, blocks".into()),
        }
    }
}

/// Which part of the window each store answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// PostgreSQL's part.
    pub postgres: Option<Range>,
    /// The blocks' part.
    pub blocks: Option<Range>,
    /// The parameter that kept the blocks' part from being searched.
    pub blocks_unsupported: Option<&'static str>,
}

/// A checked search request.
#[derive(Debug, Clone)]
pub struct Search {
    /// The window.
    pub range: Range,
    /// Which store to read.
    pub store: Store,
    /// Conditions on the trace's summary.
    summary: SummaryFilter,
    name: Option<String>,
    user: Option<String>,
    session: Option<String>,
    text: Option<String>,
    attrs: Vec<AttrFilter>,
    order: Order,
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
        let key = p
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
        let order = Order { key, descending };
        let cursor = p.parsed("cursor", Cursor::decode)?;
        if cursor.as_ref().is_some_and(|c| c.order() != order) {
            return Err(Problem::bad_parameter(
                "cursor",
                "the cursor belongs to another sort or order",
            ));
        }
        let summary = SummaryFilter {
            service: p.one("service")?,
            provider: p.one("provider")?,
            model: p.one("model")?,
            environment: p.one("environment")?,
            status,
            min_duration: p.parsed("min_duration", parse_duration)?,
            max_duration: p.parsed("max_duration", parse_duration)?,
            min_cost: p.parsed("min_cost", parse_non_negative)?,
        };
        let store = p.parsed("store", Store::parse)?.unwrap_or(Store::Auto);
        let search = Search {
            range,
            store,
            name: p.one("name")?,
            user: p.one("user")?,
            session: p.one("session")?,
            text: p.one("q")?,
            attrs,
            order,
            limit: p
                .parsed("limit", |s| parse_in(s, 1..=MAX_LIMIT))?
                .unwrap_or(50),
            cursor,
            summary,
        };
        p.finish()?;
        if let (Some(min), Some(max)) = (search.summary.min_duration, search.summary.max_duration) {
            if min > max {
                return Err(Problem::bad_parameter(
                    "min_duration",
                    "min_duration is above max_duration",
                ));
            }
        }
        Ok(search)
    }

    /// The first parameter set whose condition the Tempo blocks cannot
    /// check: what they do not store (calls, cost, tokens, users, sessions,
    /// captured content).
    pub fn blocks_unsupported(&self) -> Option<&'static str> {
        [
            ("provider", self.summary.provider.is_some()),
            ("model", self.summary.model.is_some()),
            ("environment", self.summary.environment.is_some()),
            ("min_cost", self.summary.min_cost.is_some()),
            ("user", self.user.is_some()),
            ("session", self.session.is_some()),
            ("q", self.text.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(name, _)| name)
    }

    /// Which store answers which part of the window: PostgreSQL holds the
    /// `retention` before `now`, the blocks (when `blocks` are configured)
    /// what is older. A window wholly in the blocks with a condition they
    /// cannot check, and `store=blocks` without blocks, are a 400.
    pub fn split(
        &self,
        now: SystemTime,
        retention: Duration,
        blocks: bool,
    ) -> Result<Split, Problem> {
        let whole = Some(self.range);
        let only_blocks = |search: &Search| -> Result<Split, Problem> {
            if let Some(name) = search.blocks_unsupported() {
                return Err(Problem::bad_parameter(
                    name,
                    format!(
                        "{name} cannot be answered from the Tempo blocks, which hold this window \
                         (PostgreSQL keeps the last RETENTION_TRACES_DAYS days)"
                    ),
                ));
            }
            Ok(Split {
                postgres: None,
                blocks: whole,
                blocks_unsupported: None,
            })
        };
        let postgres_only = Split {
            postgres: whole,
            blocks: None,
            blocks_unsupported: None,
        };
        match self.store {
            Store::Postgres => Ok(postgres_only),
            Store::Blocks if !blocks => Err(Problem::bad_parameter(
                "store",
                "no object storage is configured (OBJECT_STORE_URL): the blocks cannot be searched",
            )),
            Store::Blocks => only_blocks(self),
            Store::Auto if !blocks => Ok(postgres_only),
            Store::Auto => {
                let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
                if self.range.to <= cutoff {
                    only_blocks(self)
                } else if self.range.from >= cutoff {
                    Ok(postgres_only)
                } else {
                    let unsupported = self.blocks_unsupported();
                    Ok(Split {
                        postgres: Some(Range {
                            from: cutoff,
                            to: self.range.to,
                        }),
                        blocks: unsupported.is_none().then_some(Range {
                            from: self.range.from,
                            to: cutoff,
                        }),
                        blocks_unsupported: unsupported,
                    })
                }
            }
        }
    }

    /// The blocks' search for the part `range` of the window, `limit + 1`
    /// traces (one more tells whether there is a next page).
    pub fn block_search(&self, range: Range) -> crate::blocks::BlockSearch {
        let ns = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
        };
        let dur = |d: Option<Duration>| d.map(|d| d.as_nanos().min(i64::MAX as u128) as i64);
        crate::blocks::BlockSearch {
            from_ns: ns(range.from),
            to_ns: ns(range.to),
            filter: crate::blocks::TraceFilter {
                service: self.summary.service.clone(),
                status: self.summary.status.map(|s| s as i64),
                min_duration_ns: dur(self.summary.min_duration),
                max_duration_ns: dur(self.summary.max_duration),
                spans: self.has_span_condition().then(|| self.span_filter()),
                trace_level: Vec::new(),
            },
            order: self.order,
            after: self.cursor.clone(),
            limit: self.limit as usize + 1,
            span_sets: None,
            selected: Vec::new(),
        }
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
        self.has_span_condition() || self.text.is_some() || !self.summary.is_empty()
    }

    /// What one span must meet at once: the name, every attribute filter,
    /// and with them the service and status.
    fn span_filter(&self) -> Filter {
        let text_eq = |column, value: &String| {
            Filter::Test(
                Subject::Column(column),
                Test::Text(TextOp::Cmp(Cmp::Eq), value.clone()),
            )
        };
        let mut all = Vec::new();
        all.extend(
            self.summary
                .service
                .iter()
                .map(|v| text_eq(Column::Service, v)),
        );
        all.extend(self.name.iter().map(|v| text_eq(Column::Name, v)));
        all.extend(self.summary.status.map(|s| {
            Filter::Test(
                Subject::Column(Column::Status),
                Test::Number(Cmp::Eq, Number::Int(s as i64)),
            )
        }));
        all.extend(self.attrs.iter().map(attr_filter));
        Filter::All(all)
    }

    fn candidates<'a>(
        &'a self,
        tenant: &'a str,
        after: Option<&'a Cursor>,
        limit: i64,
    ) -> Candidates<'a> {
        Candidates {
            tenant,
            from: self.range.from,
            to: self.range.to,
            order: self.order,
            after,
            limit,
            user: self.user.as_deref(),
            session: self.session.as_deref(),
            filter: None,
        }
    }
}

/// An `attr=` filter as a span filter test.
fn attr_filter(f: &AttrFilter) -> Filter {
    let whose = match f.scope {
        Scope::Span => Attributes::Span,
        Scope::Resource => Attributes::Resource,
    };
    let text = |op| match &f.operand {
        Operand::Text(v) => Test::Text(op, v.clone()),
        _ => unreachable!("parse_attr pairs each operator with its operand"),
    };
    let test = match (f.op, &f.operand) {
        (Op::Eq, _) => text(TextOp::Cmp(Cmp::Eq)),
        (Op::Ne, _) => text(TextOp::Cmp(Cmp::Ne)),
        (Op::Contains, _) => text(TextOp::Contains),
        (Op::NotContains, _) => text(TextOp::NotContains),
        (Op::StartsWith, _) => text(TextOp::StartsWith),
        (Op::EndsWith, _) => text(TextOp::EndsWith),
        (Op::Regex, _) => text(TextOp::Matches),
        (Op::In | Op::NotIn, Operand::List(values)) => Test::OneOf {
            values: values.clone(),
            negated: f.op == Op::NotIn,
        },
        (op, Operand::Number(v)) => {
            let cmp = match op {
                Op::Gt => Cmp::Gt,
                Op::Gte => Cmp::Ge,
                Op::Lt => Cmp::Lt,
                _ => Cmp::Le,
            };
            Test::Number(cmp, Number::Float(*v))
        }
        _ => unreachable!("parse_attr pairs each operator with its operand"),
    };
    Filter::Test(Subject::Attribute(whose, f.key.clone()), test)
}

/// The summary columns a page shows (then what a scan checks), before the
/// order value.
const COLUMNS: &str = "t.trace_id, t.start_time, t.duration_us, t.span_count, t.llm_calls, t.cost_usd, \
    t.statuses, t.root_service, t.root_name, t.models, t.total_tokens, t.input_tokens, t.output_tokens, \
    t.services, t.providers, t.user_id, t.session_id, t.root_parented, t.end_time, t.environments";
/// Where the order value is in a row.
const ORDER_KEY: usize = 20;
/// Where a scan's verdict is.
const HIT: usize = 21;

/// A page without span-level conditions: the candidates are the answer.
fn build(search: &Search, tenant: &str) -> Sql {
    let mut sql = Sql::default();
    Candidates {
        filter: Some(&search.summary),
        ..search.candidates(tenant, search.cursor.as_ref(), search.limit + 1)
    }
    .sql(COLUMNS, &mut sql);
    sql
}

/// One round of a scan: `chunk` candidates after `after`, each with whether
/// its summary, its spans and its calls meet the conditions (spans and
/// calls found by the trace's key).
fn build_scan(search: &Search, tenant: &str, after: Option<&Cursor>, chunk: i64) -> Sql {
    let mut sql = Sql::default();
    search
        .candidates(tenant, after, chunk)
        .sql(COLUMNS, &mut sql);
    let inner = std::mem::take(&mut sql.text);
    // The candidates bound the tenant first: it is $1.
    let mut hit = vec!["TRUE".to_owned() + &search.summary.sql("c", &mut sql)];
    if search.has_span_condition() {
        let filter = search.span_filter().sql(&mut sql);
        hit.push(format!(
            "EXISTS (SELECT 1 FROM span_rows s WHERE s.tenant = $1 AND s.trace_id = c.trace_id \
             AND s.start_time >= c.start_time AND s.start_time <= c.end_time AND {filter})"
        ));
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

/// What the Tempo blocks answered of a page.
#[derive(Debug, Serialize)]
pub struct BlocksReport {
    /// The part of the window that lies in the blocks.
    pub from: String,
    /// Its end.
    pub to: String,
    /// Whether the blocks were searched: not when PostgreSQL's part filled
    /// the page first, or when a condition cannot be checked on them.
    pub searched: bool,
    /// The parameter whose condition the blocks cannot check: the part of
    /// the window older than PostgreSQL's retention was not searched.
    pub not_searched_because: Option<String>,
    /// Blocks whose time range overlaps that part.
    pub blocks: u32,
    /// Those left unread because `BLOCKS_SEARCH_MAX_BYTES` was spent.
    pub blocks_unsearched: u32,
    /// Bytes read from object storage.
    pub bytes_read: u64,
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
    /// `true` when a span-level search spent its time budget, or a search
    /// of the blocks its byte budget, before it filled the page: the
    /// traces are the matches among those looked at, and `next_cursor`
    /// (when not null) goes on from where the search is complete.
    pub partial: bool,
    /// Traces whose spans were looked at (span-level searches; else 0).
    pub scanned_traces: u64,
    /// The stores that answered: `postgres`, `blocks`.
    pub stores: Vec<&'static str>,
    /// What the blocks answered, when the window reaches past PostgreSQL's
    /// retention (or `store=blocks`); else null.
    pub blocks: Option<BlocksReport>,
}

/// What one store found for a page, in the page's order.
pub struct Found {
    /// Matches with their positions, at most `limit + 1`.
    pub rows: Vec<(Cursor, TraceSummary)>,
    /// Up to where the matches are complete.
    pub frontier: Frontier,
    /// Traces whose spans were looked at.
    pub scanned: u64,
}

/// Up to where a store's matches are complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Frontier {
    /// Every match (up to the `limit + 1`-th) is found.
    Complete,
    /// Every match before this position is found, none after it is given.
    At(Cursor),
    /// The store stopped short and cannot say where.
    Unknown,
}

/// Merges the stores' matches into a page: one row per trace (the first
/// store's), in `order`, cut where the least complete store stops.
pub fn merge(limit: usize, parts: Vec<Found>) -> (Vec<TraceSummary>, Option<String>, bool) {
    let mut frontier: Option<Cursor> = None;
    let mut unknown = false;
    let mut seen = std::collections::HashSet::new();
    let mut rows: Vec<(Cursor, TraceSummary)> = Vec::new();
    for part in parts {
        match part.frontier {
            Frontier::Complete => {}
            Frontier::Unknown => unknown = true,
            Frontier::At(c) => {
                if frontier.as_ref().is_none_or(|f| c.position_cmp(f).is_lt()) {
                    frontier = Some(c);
                }
            }
        }
        for (c, t) in part.rows {
            if seen.insert(t.trace_id.clone()) {
                rows.push((c, t));
            }
        }
    }
    rows.sort_by(|a, b| a.0.position_cmp(&b.0));
    if let Some(f) = &frontier {
        rows.retain(|(c, _)| c.position_cmp(f).is_lt());
    }
    if rows.len() > limit {
        let next = rows[limit - 1].0.encode();
        rows.truncate(limit);
        (
            rows.into_iter().map(|(_, t)| t).collect(),
            Some(next),
            unknown,
        )
    } else {
        let partial = unknown || frontier.is_some();
        (
            rows.into_iter().map(|(_, t)| t).collect(),
            frontier.map(|f| f.encode()),
            partial,
        )
    }
}

/// A trace from the blocks as a result: what they know (ids, root, times,
/// spans, errors, services), zero or null for what only PostgreSQL holds
/// (calls, cost, tokens, models, providers, user, session).
pub fn from_block(hit: &crate::blocks::BlockHit) -> TraceSummary {
    let start_us = hit.start_ns.div_euclid(1_000);
    let duration_us = hit.keys().duration_us;
    TraceSummary {
        trace_id: crate::traces::hex(&hit.trace_id),
        root_service: hit
            .root_service
            .clone()
            .or_else(|| hit.services.first().cloned())
            .unwrap_or_default(),
        root_name: hit.root_name.clone().unwrap_or_default(),
        root_received: hit.root_name.is_some(),
        start_time: observatory_schemas::civil::rfc3339_nanos(start_us * 1_000),
        duration_ms: duration_us as f64 / 1e3,
        span_count: hit.span_count,
        llm_calls: 0,
        cost_usd: 0.0,
        tokens: 0,
        input_tokens: 0,
        output_tokens: 0,
        error: hit.error_count > 0,
        services: hit.services.clone(),
        models: Vec::new(),
        providers: Vec::new(),
        user_id: None,
        session_id: None,
    }
}

fn summary(r: &tokio_postgres::Row) -> TraceSummary {
    let id: &[u8] = r.get(0);
    let statuses: i16 = r.get(6);
    TraceSummary {
        trace_id: crate::traces::hex(id),
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

/// Runs the search for `tenant` in PostgreSQL over `range` (a part of the
/// search's window); a span-level scan stops after `budget`.
pub async fn postgres(
    client: &tokio_postgres::Client,
    tenant: &str,
    search: &Search,
    range: Range,
    budget: Duration,
) -> Result<Found, tokio_postgres::Error> {
    let part = Search {
        range,
        ..search.clone()
    };
    let search = &part;
    let limit = search.limit as usize;
    let position = |r: &tokio_postgres::Row| Cursor::at_row(search.order, r, ORDER_KEY);
    let mut hits: Vec<tokio_postgres::Row> = Vec::with_capacity(limit + 1);
    let mut partial = false;
    let mut scanned = 0u64;
    let mut last_seen = None;
    if !search.needs_scan() {
        let sql = build(search, tenant);
        hits = client.query(sql.text.as_str(), &sql.refs()).await?;
    } else {
        let mut after = search.cursor.clone();
        let mut rounds = Rounds::new(budget);
        loop {
            let sql = build_scan(search, tenant, after.as_ref(), rounds.chunk());
            let rows = client.query(sql.text.as_str(), &sql.refs()).await?;
            let read = rows.len() as i64;
            for r in rows {
                scanned += 1;
                after = Some(position(&r));
                if r.get::<_, bool>(HIT) {
                    hits.push(r);
                    if hits.len() > limit {
                        break;
                    }
                }
            }
            if hits.len() > limit {
                break;
            }
            match rounds.next(read) {
                Next::Round => {}
                Next::Exhausted => break,
                Next::BudgetSpent => {
                    partial = true;
                    last_seen = after;
                    break;
                }
            }
        }
    }
    let frontier = match (partial, last_seen) {
        (true, Some(c)) => Frontier::At(c),
        (true, None) => Frontier::Unknown,
        (false, _) => Frontier::Complete,
    };
    Ok(Found {
        rows: hits.iter().map(|r| (position(r), summary(r))).collect(),
        frontier,
        scanned,
    })
}

/// The blocks' matches as a store's part of a page.
pub fn blocks_found(order: Order, result: &crate::blocks::BlockSearchResult) -> Found {
    let frontier = match (&result.frontier, result.complete) {
        (_, true) => Frontier::Complete,
        (Some(c), false) => Frontier::At(c.clone()),
        (None, false) => Frontier::Unknown,
    };
    Found {
        rows: result
            .hits
            .iter()
            .map(|h| (Cursor::of(order, &h.keys(), h.trace_id), from_block(h)))
            .collect(),
        frontier,
        scanned: result.inspected_traces,
    }
}

/// Runs the search for `tenant`: PostgreSQL for its part of the window, the
/// blocks for theirs (as [`Search::split`] decided), merged. Ordered by
/// start time, the store holding the page's first part is read first, and
/// the other only when the page is not full.
pub async fn run(
    state: &crate::routes::State,
    tenant: &str,
    search: &Search,
    split: Split,
) -> Result<Page, Problem> {
    let limit = search.limit as usize;
    let order = search.order;
    let blocks_first = order.key == SortKey::StartTime && !order.descending;
    let postgres_first = order.key == SortKey::StartTime && order.descending;
    let fills = |f: &Found| f.rows.len() > limit && f.frontier == Frontier::Complete;
    let mut parts: Vec<Option<Found>> = vec![None, None];
    let mut block_result: Option<crate::blocks::BlockSearchResult> = None;
    let run_postgres = |range: Range| async move {
        let client = crate::v1::db(state).await?;
        postgres(&client, tenant, search, range, state.search_time_budget)
            .await
            .map_err(Problem::postgres)
    };
    let run_blocks = |range: Range| async move {
        let blocks = state
            .blocks
            .as_ref()
            .ok_or_else(|| Problem::bad_parameter("store", "no object storage is configured"))?;
        blocks
            .search(tenant, &search.block_search(range))
            .await
            .map_err(Problem::blocks)
    };
    match (split.postgres, split.blocks) {
        (Some(pg), Some(b)) if postgres_first => {
            let found = run_postgres(pg).await?;
            if !fills(&found) {
                block_result = Some(run_blocks(b).await?);
            }
            parts[0] = Some(found);
        }
        (Some(pg), Some(b)) if blocks_first => {
            let result = run_blocks(b).await?;
            let found = blocks_found(order, &result);
            if !fills(&found) {
                parts[0] = Some(run_postgres(pg).await?);
            }
            block_result = Some(result);
        }
        (Some(pg), Some(b)) => {
            let (found, result) = futures::try_join!(run_postgres(pg), run_blocks(b))?;
            parts[0] = Some(found);
            block_result = Some(result);
        }
        (Some(pg), None) => parts[0] = Some(run_postgres(pg).await?),
        (None, Some(b)) => block_result = Some(run_blocks(b).await?),
        (None, None) => {}
    }
    if let Some(result) = &block_result {
        parts[1] = Some(blocks_found(order, result));
    }
    let mut stores = Vec::new();
    if parts[0].is_some() {
        stores.push("postgres");
    }
    if parts[1].is_some() {
        stores.push("blocks");
    }
    let scanned = parts.iter().flatten().map(|f| f.scanned).sum();
    let (traces, next_cursor, partial) = merge(limit, parts.into_iter().flatten().collect());
    let blocks = split
        .blocks
        .or_else(|| {
            // Not searched for an unsupported condition: the older part.
            split.blocks_unsupported.and(split.postgres.map(|pg| Range {
                from: search.range.from,
                to: pg.from,
            }))
        })
        .map(|range| BlocksReport {
            from: format_time(range.from),
            to: format_time(range.to),
            searched: block_result.is_some(),
            not_searched_because: split.blocks_unsupported.map(str::to_owned),
            blocks: block_result.as_ref().map_or(0, |r| r.blocks),
            blocks_unsearched: block_result.as_ref().map_or(0, |r| r.blocks_unsearched),
            bytes_read: block_result.as_ref().map_or(0, |r| r.bytes_read),
        });
    Ok(Page {
        traces,
        next_cursor,
        from: format_time(search.range.from),
        to: format_time(search.range.to),
        partial,
        scanned_traces: scanned,
        stores,
        blocks,
    })
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
    fn a_cursor_is_tied_to_its_order() {
        use base64::Engine as _;
        let c = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("cost.desc.1.0.{}", "01".repeat(16)));
        assert!(Cursor::decode(&c).is_ok());
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
    fn the_window_is_split_at_the_retention() {
        let now = parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        let day = Duration::from_secs(86_400);
        let split =
            |q: &[(&str, &str)], blocks: bool| parse(q).and_then(|s| s.split(now, 2 * day, blocks));
        let recent = split(&[], true).unwrap();
        assert!(recent.postgres.is_some() && recent.blocks.is_none());
        let old = [
            ("from", "2026-11-20T00:00:00Z"),
            ("to", "2026-11-21T00:00:00Z"),
        ];
        let s = split(&old, true).unwrap();
        assert!(s.postgres.is_none() && s.blocks.is_some());
        let e = split(&[old[0], old[1], ("model", "gpt-4o")], true).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("model"));
        assert!(
            split(&old, false).unwrap().blocks.is_none(),
            "no blocks: PostgreSQL"
        );
        let both = [
            ("from", "2026-11-20T00:00:00Z"),
            ("to", "2026-11-27T00:00:00Z"),
        ];
        let s = split(&both, true).unwrap();
        let cutoff = now - 2 * day;
        assert_eq!(s.postgres.unwrap().from, cutoff);
        assert_eq!(s.blocks.unwrap().to, cutoff);
        let s = split(&[both[0], both[1], ("q", "refund")], true).unwrap();
        assert!(s.blocks.is_none() && s.postgres.is_some());
        assert_eq!(s.blocks_unsupported, Some("q"));
        let forced = split(&[("store", "blocks")], true).unwrap();
        assert!(forced.postgres.is_none() && forced.blocks.is_some());
        let e = split(&[("store", "blocks")], false).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("store"));
        let e = split(&[("store", "blocks"), ("user", "u")], true).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("user"));
        let pg = split(&[old[0], old[1], ("store", "postgres")], true).unwrap();
        assert!(pg.postgres.is_some() && pg.blocks.is_none());
        assert_eq!(
            parse(&[("store", "tempo")])
                .unwrap_err()
                .parameter
                .as_deref(),
            Some("store")
        );
    }

    fn row(order: Order, start_us: i64, id: u8) -> (Cursor, TraceSummary) {
        let hit = crate::blocks::BlockHit {
            trace_id: [id; 16],
            start_ns: start_us * 1_000,
            end_ns: start_us * 1_000 + 5_000,
            root_service: Some("bot".into()),
            root_name: Some("run".into()),
            services: vec!["bot".into()],
            span_count: 2,
            error_count: 1,
            matched: 2,
            spans: Vec::new(),
        };
        let keys = crate::summaries::Keys {
            start_us,
            ..Default::default()
        };
        (Cursor::of(order, &keys, [id; 16]), from_block(&hit))
    }

    #[test]
    fn stores_merge_in_order_once_per_trace_up_to_the_least_complete() {
        let order = Order {
            key: SortKey::StartTime,
            descending: true,
        };
        let pg = Found {
            rows: vec![row(order, 100, 1), row(order, 90, 2)],
            frontier: Frontier::Complete,
            scanned: 0,
        };
        let blocks = Found {
            rows: vec![row(order, 90, 2), row(order, 50, 3), row(order, 40, 4)],
            frontier: Frontier::Complete,
            scanned: 0,
        };
        let (traces, next, partial) = merge(3, vec![pg, blocks]);
        let ids: Vec<&str> = traces.iter().map(|t| &t.trace_id[..2]).collect();
        assert_eq!(ids, ["01", "02", "03"]);
        assert!(next.is_some() && !partial);
        assert_eq!(traces[2].span_count, 2);
        assert!(traces[2].error && traces[2].root_received);
        assert_eq!(traces[2].duration_ms, 0.005);
        // The blocks stopped at start 45: nothing at or below it is shown,
        // and the next page goes on from there.
        let frontier = Cursor::of(
            order,
            &crate::summaries::Keys {
                start_us: 45,
                ..Default::default()
            },
            [0xff; 16],
        );
        let pg = Found {
            rows: vec![row(order, 100, 1)],
            frontier: Frontier::Complete,
            scanned: 0,
        };
        let blocks = Found {
            rows: vec![row(order, 50, 3), row(order, 40, 4)],
            frontier: Frontier::At(frontier.clone()),
            scanned: 0,
        };
        let (traces, next, partial) = merge(10, vec![pg, blocks]);
        assert_eq!(traces.len(), 2);
        assert!(partial);
        assert_eq!(next, Some(frontier.encode()));
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
            ("store", "tempo"),
        ] {
            let e = parse(&[(name, value)]).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.parameter.as_deref(), Some(name), "{name}={value}");
        }
        let e = parse(&[("min_duration", "2s"), ("max_duration", "1s")]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("min_duration"));
    }
}
