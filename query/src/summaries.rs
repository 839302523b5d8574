//! The summary path, written once for both searches (`GET /api/v1/traces`
//! in [`crate::search`], Tempo's `/api/search` in [`crate::tempo_api`]):
//! candidate traces read from `trace_summaries` in one of its indexed
//! orders, a position in that order ([`Cursor`]), the summary conditions
//! ([`SummaryFilter`]), and the rounds of a scan that checks candidates a
//! chunk at a time within a time budget ([`Rounds`]).
//!
//! What it guarantees: a candidate query reads at most `limit` rows from
//! the index of its order, starting after the cursor, so a page costs what
//! it shows and not what the tenant stores; a scan never runs a round once
//! its budget is spent. Every request value is a bound parameter.

use crate::sql::Sql;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What candidates are ordered by.
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
    /// The name in requests and cursors.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::StartTime => "start_time",
            SortKey::Duration => "duration",
            SortKey::Cost => "cost",
            SortKey::Tokens => "tokens",
            SortKey::SpanCount => "span_count",
        }
    }

    /// The key named `text`.
    pub fn parse(text: &str) -> Option<SortKey> {
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

pub(crate) fn micros(t: SystemTime) -> i64 {
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

/// A position in an order: after this order value and trace id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    key: SortKey,
    descending: bool,
    value: Value,
    trace_id: [u8; 16],
}

impl Cursor {
    /// The position of a candidate row of [`Candidates::sql`] (its first column
    /// the trace id, `order_key` the column at `key_index`).
    pub fn at_row(order: Order, row: &tokio_postgres::Row, key_index: usize) -> Cursor {
        let value = match order.key {
            SortKey::StartTime => Value::Micros(micros(row.get(key_index))),
            SortKey::Duration => Value::Micros(row.get(key_index)),
            SortKey::Cost => Value::Float(row.get(key_index)),
            SortKey::Tokens | SortKey::SpanCount => Value::Count(row.get(key_index)),
        };
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(row.get::<_, &[u8]>(0));
        Cursor {
            key: order.key,
            descending: order.descending,
            value,
            trace_id,
        }
    }

    /// The order this position belongs to.
    pub fn order(&self) -> Order {
        Order {
            key: self.key,
            descending: self.descending,
        }
    }

    /// `<sort>.<order>.<value>.<trace id hex>`, base64url without padding:
    /// opaque to clients, but stable across releases.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "{}.{}.{}.",
            self.key.name(),
            if self.descending { "desc" } else { "asc" },
            self.value.text()
        );
        observatory_schemas::kafka::push_hex(&mut text, &self.trace_id);
        URL_SAFE_NO_PAD.encode(text)
    }

    /// The cursor `text` encodes.
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bad = || "not a cursor from an earlier page".to_owned();
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
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
        if rest.len() < 34 || !rest.is_char_boundary(rest.len() - 32) {
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

/// The order values of a trace read outside `trace_summaries` (from the
/// Tempo blocks, which know no cost or tokens: 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Keys {
    /// Start of the first span, µs since the epoch.
    pub start_us: i64,
    /// First start to last end, µs.
    pub duration_us: i64,
    /// Spans.
    pub span_count: i64,
    /// Summed LLM cost.
    pub cost_usd: f64,
    /// Input plus output tokens.
    pub tokens: i64,
}

impl Cursor {
    /// The position of a trace with these order values in `order`.
    pub fn of(order: Order, keys: &Keys, trace_id: [u8; 16]) -> Cursor {
        let value = match order.key {
            SortKey::StartTime => Value::Micros(keys.start_us),
            SortKey::Duration => Value::Micros(keys.duration_us),
            SortKey::Cost => Value::Float(keys.cost_usd),
            SortKey::Tokens => Value::Count(keys.tokens),
            SortKey::SpanCount => Value::Count(keys.span_count),
        };
        Cursor {
            key: order.key,
            descending: order.descending,
            value,
            trace_id,
        }
    }

    /// Where this position lies against `other` (of the same order):
    /// `Less` when it comes first in the order.
    pub fn position_cmp(&self, other: &Cursor) -> std::cmp::Ordering {
        let by_value = match (self.value, other.value) {
            (Value::Micros(a), Value::Micros(b)) | (Value::Count(a), Value::Count(b)) => a.cmp(&b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(&b),
            _ => std::cmp::Ordering::Equal,
        };
        let ascending = by_value.then(self.trace_id.cmp(&other.trace_id));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }

    /// The trace id of the position.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The start time of the position, µs, when its order is by start.
    pub fn start_us(&self) -> Option<i64> {
        match (self.key, self.value) {
            (SortKey::StartTime, Value::Micros(us)) => Some(us),
            _ => None,
        }
    }
}

/// An order of the summaries: a key and a direction (the trace id breaks
/// ties in the same direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The key.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
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

/// Conditions on a trace's summary row.
#[derive(Debug, Clone, Default)]
pub struct SummaryFilter {
    /// A span of this service.
    pub service: Option<String>,
    /// A call to this provider.
    pub provider: Option<String>,
    /// A call to this model.
    pub model: Option<String>,
    /// A span or call in this environment.
    pub environment: Option<String>,
    /// A span with this status.
    pub status: Option<Status>,
    /// At least this long.
    pub min_duration: Option<Duration>,
    /// At most this long.
    pub max_duration: Option<Duration>,
    /// Costing at least this, USD.
    pub min_cost: Option<f64>,
}

impl SummaryFilter {
    /// Whether any condition is set.
    pub fn is_empty(&self) -> bool {
        self.service.is_none()
            && self.provider.is_none()
            && self.model.is_none()
            && self.environment.is_none()
            && self.status.is_none()
            && self.min_duration.is_none()
            && self.max_duration.is_none()
            && self.min_cost.is_none()
    }

    /// The conditions as `AND ...` on the summary columns of `alias`
    /// (none of them served by an index of the list).
    pub fn sql(&self, alias: &str, sql: &mut Sql) -> String {
        let mut out = String::new();
        for (column, value) in [
            ("services", &self.service),
            ("providers", &self.provider),
            ("models", &self.model),
            ("environments", &self.environment),
        ] {
            if let Some(v) = value {
                let p = sql.bind(v.clone());
                out.push_str(&format!(" AND {p} = ANY({alias}.{column})"));
            }
        }
        if let Some(status) = self.status {
            let p = sql.bind(1i16 << status as i16);
            out.push_str(&format!(" AND {alias}.statuses & {p} <> 0"));
        }
        if let Some(d) = self.min_duration {
            let p = sql.bind(d.as_micros().min(i64::MAX as u128) as i64);
            out.push_str(&format!(" AND {alias}.duration_us >= {p}"));
        }
        if let Some(d) = self.max_duration {
            let p = sql.bind(d.as_micros().min(i64::MAX as u128) as i64);
            out.push_str(&format!(" AND {alias}.duration_us <= {p}"));
        }
        if let Some(c) = self.min_cost {
            let p = sql.bind(c);
            out.push_str(&format!(" AND {alias}.cost_usd >= {p}"));
        }
        out
    }
}

/// One candidate query: a tenant's traces that start in `[from, to)`, in
/// `order`, after `after`, at most `limit`.
pub struct Candidates<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Window start.
    pub from: SystemTime,
    /// Window end (excluded).
    pub to: SystemTime,
    /// The order.
    pub order: Order,
    /// Start after this position.
    pub after: Option<&'a Cursor>,
    /// The most rows.
    pub limit: i64,
    /// The trace's user (indexed).
    pub user: Option<&'a str>,
    /// The trace's session (indexed).
    pub session: Option<&'a str>,
    /// Further conditions checked in the same query, or `None` (a scan
    /// checks them per candidate instead).
    pub filter: Option<&'a SummaryFilter>,
}

impl Candidates<'_> {
    /// `SELECT <columns>, t.<order column> AS order_key FROM
    /// trace_summaries t ...`; the tenant is always `$1`. `columns` must
    /// start with `t.trace_id` and be fixed text.
    pub fn sql(&self, columns: &str, sql: &mut Sql) {
        assert!(sql.params.is_empty(), "the tenant is bound first, as $1");
        let t = sql.bind(self.tenant.to_owned());
        let from = sql.bind(self.from);
        let to = sql.bind(self.to);
        let key = self.order.key.column();
        sql.push(&format!(
            "SELECT {columns}, t.{key} AS order_key FROM trace_summaries t \
             WHERE t.tenant = {t} AND t.start_time >= {from} AND t.start_time < {to}"
        ));
        for (column, value) in [("user_id", self.user), ("session_id", self.session)] {
            if let Some(v) = value {
                let p = sql.bind(v.to_owned());
                sql.push(&format!(" AND t.{column} = {p}"));
            }
        }
        if let Some(f) = self.filter {
            let more = f.sql("t", sql);
            sql.push(&more);
        }
        let (cmp, dir) = if self.order.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(c) = self.after {
            let v = c.value.bind(self.order.key, sql);
            let id = sql.bind(c.trace_id.to_vec());
            sql.push(&format!(" AND (t.{key}, t.trace_id) {cmp} ({v}, {id})"));
        }
        let limit = sql.bind(self.limit);
        sql.push(&format!(
            " ORDER BY t.{key} {dir}, t.trace_id {dir} LIMIT {limit}"
        ));
    }
}

/// Candidates a scan looks at in its first round; each later round
/// doubles it, up to [`MAX_CHUNK`].
pub const FIRST_CHUNK: i64 = 200;
/// The most candidates in one round.
pub const MAX_CHUNK: i64 = 5000;

/// The rounds of a scan: how many candidates the next one reads, and
/// whether there is a next one.
pub struct Rounds {
    started: Instant,
    budget: Duration,
    chunk: i64,
}

/// What comes after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another round, of [`Rounds::chunk`] candidates.
    Round,
    /// The window has no more candidates.
    Exhausted,
    /// The budget is spent with candidates left: the answer is partial.
    BudgetSpent,
}

impl Rounds {
    /// A scan that may run for `budget`.
    pub fn new(budget: Duration) -> Rounds {
        Rounds {
            started: Instant::now(),
            budget,
            chunk: FIRST_CHUNK,
        }
    }

    /// Candidates to read in this round.
    pub fn chunk(&self) -> i64 {
        self.chunk
    }

    /// After a round that read `candidates` rows.
    pub fn next(&mut self, candidates: i64) -> Next {
        if candidates < self.chunk {
            Next::Exhausted
        } else if self.started.elapsed() >= self.budget {
            Next::BudgetSpent
        } else {
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            Next::Round
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for value in [1.7e15, 0.000_123, 42.0, 1e-300] {
            let c = Cursor {
                key: SortKey::Cost,
                descending: false,
                value: Value::Float(value),
                trace_id: [0xab; 16],
            };
            assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
        let c = Cursor {
            key: SortKey::StartTime,
            descending: true,
            value: Value::Micros(-5),
            trace_id: [7; 16],
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        for garbage in [
            "",
            "!!!",
            &URL_SAFE_NO_PAD.encode("tokens.asc.1.5.abababababababababababababababab"),
            &URL_SAFE_NO_PAD.encode("cost.asc.1.zz"),
            &URL_SAFE_NO_PAD.encode("x.y.z"),
        ] {
            assert!(Cursor::decode(garbage).is_err(), "{garbage}");
        }
        let multibyte = URL_SAFE_NO_PAD.encode(format!("cost.asc.1{}", "é".repeat(17)));
        assert!(Cursor::decode(&multibyte).is_err());
    }

    #[test]
    fn rounds_double_up_to_the_cap_and_stop() {
        let mut r = Rounds::new(Duration::from_secs(60));
        let mut sizes = vec![r.chunk()];
        while r.next(r.chunk()) == Next::Round && sizes.len() < 8 {
            sizes.push(r.chunk());
        }
        assert_eq!(sizes[..6], [200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(r.next(r.chunk() - 1), Next::Exhausted);
        let mut spent = Rounds::new(Duration::ZERO);
        assert_eq!(spent.next(FIRST_CHUNK), Next::BudgetSpent);
    }
}
