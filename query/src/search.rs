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
use std::time::{Duration, SystemTime};

/// The longest window a search may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);

/// The most traces a page may hold.
pub const MAX_LIMIT: i64 = 1000;

/// A checked search request.
#[derive(Debug, Clone)]
pub struct Search {
    /// The window.
    pub range: Range,
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
        let search = Search {
            range,
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

/// Runs the search for `tenant`; a span-level scan stops after `budget`.
pub async fn run(
    client: &tokio_postgres::Client,
    tenant: &str,
    search: &Search,
    budget: Duration,
) -> Result<Page, tokio_postgres::Error> {
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
    let next_cursor = if hits.len() > limit {
        Some(position(&hits[limit - 1]).encode())
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
