//! Sessions: `GET /api/v1/sessions` (the conversations of a window, one
//! row each) and `GET /api/v1/sessions/{id}` (one conversation as a
//! transcript across its traces).
//!
//! What it guarantees: the list reads `session_summaries` only (kept by the
//! sink at write time, exact under replay), walking the index of its sort
//! with the window checked inside the index, and stops at `limit`: its
//! cost is the page's, not the tenant's. Mean scores are read for the
//! page's sessions only. The transcript reads the session's traces from
//! `session_traces` and their model calls by trace id. Everything is the
//! token's tenant's; every request value is bound.

use crate::filters::{format_time, parse_in, Params, Range};
use crate::keyset;
use crate::problem::Problem;
use crate::scores::read::{ScoreView, COLUMNS as SCORE_COLUMNS};
use crate::sql::Sql;
use crate::summaries::micros;
use crate::traces::{hex, LlmCall};
use observatory_schemas::messages::chat;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest window of the list.
const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);
/// The window when none is given.
const DEFAULT_RANGE: Duration = Duration::from_secs(7 * 86_400);
/// Most traces a transcript holds.
pub const MAX_TRACES: i64 = 500;

/// How the list is sorted (always descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Last activity, newest first.
    LastActivity,
    /// Cost, highest first.
    Cost,
    /// Traces (turns), most first.
    Length,
}

impl Sort {
    fn column(self) -> &'static str {
        match self {
            Sort::LastActivity => "last_time",
            Sort::Cost => "cost_usd",
            Sort::Length => "traces",
        }
    }
}

/// A mean-score condition: sessions whose mean `name` is in `[min, max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreFilter {
    /// The score name.
    pub name: String,
    /// Least mean.
    pub min: Option<f64>,
    /// Greatest mean.
    pub max: Option<f64>,
}

/// `GET /api/v1/sessions`, parsed.
#[derive(Debug)]
pub struct ListQuery {
    range: Range,
    user: Option<String>,
    service: Option<String>,
    has_errors: Option<bool>,
    score: Option<ScoreFilter>,
    sort: Sort,
    limit: i64,
    after: Option<(Keyed, String)>,
}

/// A sort value of a cursor, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keyed {
    /// A time.
    Time(SystemTime),
    /// A cost.
    Cost(f64),
    /// A count.
    Count(i64),
}

impl Keyed {
    /// The sort value `text` of a cursor of `sort` (`"last_time"`,
    /// `"cost_usd"` or a count column).
    pub fn parse(sort: &str, text: &str) -> Result<Keyed, String> {
        let bad = || "not a cursor this API gave".to_owned();
        Ok(match sort {
            "last_time" | "last_seen" => {
                let us: u64 = text.parse().map_err(|_| bad())?;
                Keyed::Time(UNIX_EPOCH + Duration::from_micros(us))
            }
            "cost_usd" => Keyed::Cost(
                text.parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(bad)?,
            ),
            _ => Keyed::Count(text.parse().map_err(|_| bad())?),
        })
    }

    /// The `limit` (1 to 200, default 50) and the `cursor` of a list sorted
    /// by `sort` (a column name), checked.
    pub fn page(p: &mut Params, sort: &str) -> Result<(i64, Option<(Keyed, String)>), Problem> {
        let limit = p.parsed("limit", |t| parse_in(t, 1..=200))?.unwrap_or(50);
        let after = p.parsed("cursor", |t| {
            let parts = keyset::decode(t, 3)?;
            if parts[0] != sort {
                return Err("a cursor of another sort".to_owned());
            }
            Ok((Keyed::parse(&parts[0], &parts[1])?, parts[2].clone()))
        })?;
        Ok((limit, after))
    }

    /// Binds the value.
    pub fn bind(self, sql: &mut Sql) -> String {
        match self {
            Keyed::Time(t) => sql.bind(t),
            Keyed::Cost(c) => sql.bind(c),
            Keyed::Count(n) => sql.bind(n),
        }
    }

    /// The value of column `index` of `row` as a cursor's text.
    pub fn text_of(sort: &str, row: &tokio_postgres::Row, index: usize) -> String {
        match sort {
            "last_time" | "last_seen" => micros(row.get(index)).to_string(),
            "cost_usd" => row.get::<_, f64>(index).to_string(),
            _ => row.get::<_, i64>(index).to_string(),
        }
    }
}

fn number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| "a finite number".to_owned())
}

impl ListQuery {
    /// The sessions of `user` active in `range`, newest first.
    pub fn for_user(user: &str, range: Range) -> ListQuery {
        ListQuery {
            range,
            user: Some(user.to_owned()),
            service: None,
            has_errors: None,
            score: None,
            sort: Sort::LastActivity,
            limit: 50,
            after: None,
        }
    }

    /// Sets the page size.
    pub fn set_limit(&mut self, limit: i64) {
        self.limit = limit.max(1);
    }

    /// Parses the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<ListQuery, Problem> {
        let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
        let user = p.one("user")?;
        let service = p.one("service")?;
        let has_errors = p.parsed("has_errors", |t| match t {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("true or false".to_owned()),
        })?;
        let score_name = p.one("score")?;
        let min = p.parsed("min_score", number)?;
        let max = p.parsed("max_score", number)?;
        let score = match (score_name, min, max) {
            (Some(name), min, max) => Some(ScoreFilter { name, min, max }),
            (None, None, None) => None,
            (None, _, _) => {
                return Err(Problem::bad_parameter(
                    "score",
                    "min_score and max_score need the score name",
                ))
            }
        };
        let sort = p
            .parsed("sort", |t| match t {
                "last_activity" => Ok(Sort::LastActivity),
                "cost" => Ok(Sort::Cost),
                "length" => Ok(Sort::Length),
                _ => Err("last_activity, cost or length".to_owned()),
            })?
            .unwrap_or(Sort::LastActivity);
        let (limit, after) = Keyed::page(p, sort.column())?;
        p.finish()?;
        Ok(ListQuery {
            range,
            user,
            service,
            has_errors,
            score,
            sort,
            limit,
            after,
        })
    }
}

/// Mean and count of one score name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreMean {
    /// Mean of the valued scores (`null`: none has a number).
    pub mean: Option<f64>,
    /// Scores.
    pub count: i64,
}

/// One session of the list.
#[derive(Debug, Serialize)]
pub struct SessionRow {
    /// Its id.
    pub session_id: String,
    /// First call's start.
    pub first_time: String,
    /// Last call's end.
    pub last_time: String,
    /// From first to last, ms.
    pub duration_ms: f64,
    /// Traces (turns).
    pub traces: i64,
    /// Model calls.
    pub llm_calls: i64,
    /// Calls that failed.
    pub errors: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Both.
    pub total_tokens: i64,
    /// Cost, USD.
    pub cost_usd: f64,
    /// End users (at most 64).
    pub users: Vec<String>,
    /// Services.
    pub services: Vec<String>,
    /// Models.
    pub models: Vec<String>,
    /// Mean scores by name: scores of the session and of its traces.
    pub scores: BTreeMap<String, ScoreMean>,
}

const ROW_COLUMNS: &str =
    "s.session_id, s.first_time, s.last_time, s.traces, s.llm_calls, s.errors, \
    s.input_tokens, s.output_tokens, s.total_tokens, s.cost_usd, s.users, s.services, s.models";

fn row_of(r: &tokio_postgres::Row) -> SessionRow {
    let first: SystemTime = r.get(1);
    let last: SystemTime = r.get(2);
    SessionRow {
        session_id: r.get(0),
        first_time: format_time(first),
        last_time: format_time(last),
        duration_ms: last.duration_since(first).unwrap_or_default().as_secs_f64() * 1e3,
        traces: r.get(3),
        llm_calls: r.get(4),
        errors: r.get(5),
        input_tokens: r.get(6),
        output_tokens: r.get(7),
        total_tokens: r.get(8),
        cost_usd: r.get(9),
        users: r.get(10),
        services: r.get(11),
        models: r.get(12),
        scores: BTreeMap::new(),
    }
}

/// A page of sessions.
#[derive(Debug, Serialize)]
pub struct SessionPage {
    /// In the sort's order.
    pub sessions: Vec<SessionRow>,
    /// The next page's `cursor`, when there is one.
    pub next_cursor: Option<String>,
}

/// The mean scores of `keys` (sessions, or users with `column`
/// `trace_user`) by name.
pub async fn mean_scores(
    client: &tokio_postgres::Client,
    tenant: &str,
    column: &'static str,
    keys: &[&str],
) -> Result<HashMap<String, BTreeMap<String, ScoreMean>>, tokio_postgres::Error> {
    let mut out: HashMap<String, BTreeMap<String, ScoreMean>> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let rows = client
        .query(
            &format!(
                "SELECT {column}, name, avg(value), count(*) FROM scores
                  WHERE tenant = $1 AND {column} = ANY($2) AND NOT deleted GROUP BY 1, 2"
            ),
            &[&tenant, &keys],
        )
        .await?;
    for r in &rows {
        out.entry(r.get(0)).or_default().insert(
            r.get(1),
            ScoreMean {
                mean: r.get(2),
                count: r.get(3),
            },
        );
    }
    Ok(out)
}

/// Runs a [`ListQuery`].
pub async fn list(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &ListQuery,
) -> Result<SessionPage, tokio_postgres::Error> {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let (from, to) = (sql.bind(q.range.from), sql.bind(q.range.to));
    let sort = q.sort.column();
    match &q.user {
        // A user's sessions come from their pairs, not a scan.
        Some(user) => {
            let u = sql.bind(user.clone());
            sql.push(&format!(
                "SELECT {ROW_COLUMNS} FROM user_sessions us JOIN session_summaries s
                   ON s.tenant = us.tenant AND s.session_id = us.session_id
                  WHERE us.tenant = {t} AND us.user_id = {u}"
            ));
        }
        None => sql.push(&format!(
            "SELECT {ROW_COLUMNS} FROM session_summaries s WHERE s.tenant = {t}"
        )),
    }
    sql.push(&format!(
        " AND s.last_time >= {from} AND s.last_time < {to}"
    ));
    if let Some(service) = &q.service {
        let p = sql.bind(service.clone());
        sql.push(&format!(" AND {p} = ANY(s.services)"));
    }
    match q.has_errors {
        Some(true) => sql.push(" AND s.errors > 0"),
        Some(false) => sql.push(" AND s.errors = 0"),
        None => {}
    }
    if let Some(f) = &q.score {
        let name = sql.bind(f.name.clone());
        let mean = format!(
            "(SELECT avg(value) FROM scores sc WHERE sc.tenant = s.tenant AND sc.session_key = s.session_id
                AND sc.name = {name} AND NOT sc.deleted)"
        );
        sql.push(&format!(" AND {mean} IS NOT NULL"));
        if let Some(min) = f.min {
            let p = sql.bind(min);
            sql.push(&format!(" AND {mean} >= {p}"));
        }
        if let Some(max) = f.max {
            let p = sql.bind(max);
            sql.push(&format!(" AND {mean} <= {p}"));
        }
    }
    if let Some((value, id)) = &q.after {
        let v = value.bind(&mut sql);
        let id = sql.bind(id.clone());
        sql.push(&format!(" AND (s.{sort}, s.session_id) < ({v}, {id})"));
    }
    let limit = sql.bind(q.limit + 1);
    sql.push(&format!(
        " ORDER BY s.{sort} DESC, s.session_id DESC LIMIT {limit}"
    ));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    let more = rows.len() as i64 > q.limit;
    let rows = &rows[..rows.len().min(q.limit as usize)];
    let mut sessions: Vec<SessionRow> = rows.iter().map(row_of).collect();
    let keys: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    let mut means = mean_scores(client, tenant, "session_key", &keys).await?;
    for s in &mut sessions {
        s.scores = means.remove(&s.session_id).unwrap_or_default();
    }
    let next_cursor = if more {
        let last = rows.last().expect("more than limit rows");
        let index = match q.sort {
            Sort::LastActivity => 2,
            Sort::Cost => 9,
            Sort::Length => 3,
        };
        let value = Keyed::text_of(sort, last, index);
        Some(keyset::encode(&[
            sort.to_owned(),
            value,
            last.get::<_, String>(0),
        ]))
    } else {
        None
    };
    Ok(SessionPage {
        sessions,
        next_cursor,
    })
}

/// One model call of a turn.
#[derive(Debug, Serialize)]
pub struct TurnCall {
    /// Its span.
    pub span_id: String,
    /// Start, RFC 3339.
    pub start_time: String,
    /// Latency, ms.
    pub duration_ms: f64,
    /// Failed.
    pub is_error: bool,
    /// The call: model, tokens, cost, messages.
    #[serde(flatten)]
    pub call: LlmCall,
    /// Scores of this call's span.
    pub scores: Vec<ScoreView>,
}

/// One trace of the session: a turn of the conversation.
#[derive(Debug, Serialize)]
pub struct Turn {
    /// Trace id.
    pub trace_id: String,
    /// Its first call in the session.
    pub start_time: String,
    /// The trace's duration, ms.
    pub duration_ms: f64,
    /// Root span's name.
    pub root_name: String,
    /// End user.
    pub user_id: Option<String>,
    /// Cost of the trace, USD.
    pub cost_usd: f64,
    /// Tokens of the trace.
    pub total_tokens: i64,
    /// A span of the trace failed.
    pub has_error: bool,
    /// Its model calls of this session, in order.
    pub calls: Vec<TurnCall>,
    /// Scores of the trace itself.
    pub scores: Vec<ScoreView>,
}

/// `GET /api/v1/sessions/{id}`.
#[derive(Debug, Serialize)]
pub struct Transcript {
    /// The session's totals.
    #[serde(flatten)]
    pub session: SessionRow,
    /// Scores of the session itself.
    pub session_scores: Vec<ScoreView>,
    /// Its traces, oldest first.
    pub turns: Vec<Turn>,
    /// The session has more than [`MAX_TRACES`] traces: the first are here.
    pub truncated: bool,
}

const CALLS: &str = "
SELECT c.trace_id, c.span_id, c.start_time, c.duration_ms, c.is_error, c.provider, c.model, c.operation,
       c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens, c.reasoning_tokens,
       c.cost_usd, c.time_to_first_token_ms, c.finish_reasons, s.attributes::text, s.events::text
  FROM llm_calls c
  JOIN spans s ON s.tenant = c.tenant AND s.trace_id = c.trace_id AND s.span_id = c.span_id
              AND s.start_time = c.start_time
 WHERE c.tenant = $1 AND c.trace_id = ANY($2) AND c.session_id = $3
 ORDER BY c.start_time, c.span_id";

/// Reads session `id` of `tenant`; `None` when there is none.
pub async fn transcript(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &str,
) -> Result<Option<Transcript>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {ROW_COLUMNS} FROM session_summaries s WHERE s.tenant = $1 AND s.session_id = $2"
            ),
            &[&tenant, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut session = row_of(&row);
    session.scores = mean_scores(client, tenant, "session_key", &[id])
        .await?
        .remove(id)
        .unwrap_or_default();
    let traces = client
        .query(
            "SELECT p.trace_id, p.start_time, t.duration_us, t.root_name, t.user_id, t.cost_usd,
                    t.total_tokens, (t.statuses & 4) <> 0
               FROM session_traces p
               LEFT JOIN trace_summaries t ON t.tenant = p.tenant AND t.trace_id = p.trace_id
              WHERE p.tenant = $1 AND p.session_id = $2
              ORDER BY p.start_time, p.trace_id LIMIT $3",
            &[&tenant, &id, &(MAX_TRACES + 1)],
        )
        .await?;
    let truncated = traces.len() as i64 > MAX_TRACES;
    let traces = &traces[..traces.len().min(MAX_TRACES as usize)];
    let ids: Vec<Vec<u8>> = traces.iter().map(|r| r.get(0)).collect();
    let calls = client.query(CALLS, &[&tenant, &ids, &id]).await?;
    let scores = client
        .query(
            &format!(
                "SELECT * FROM (
                    SELECT {SCORE_COLUMNS} FROM scores
                     WHERE tenant = $1 AND trace_id = ANY($2) AND NOT deleted
                    UNION ALL
                    SELECT {SCORE_COLUMNS} FROM scores
                     WHERE tenant = $1 AND session_key = $3 AND trace_id IS NULL AND NOT deleted
                 ) s ORDER BY time"
            ),
            &[&tenant, &ids, &id],
        )
        .await?;
    // Scores by (trace, span): "" for a trace's own, ("", "") the session's.
    let mut by_target: HashMap<(String, String), Vec<ScoreView>> = HashMap::new();
    for r in &scores {
        let v = ScoreView::of(r);
        let key = (
            v.trace_id.clone().unwrap_or_default(),
            v.span_id.clone().unwrap_or_default(),
        );
        by_target.entry(key).or_default().push(v);
    }
    let mut turns: Vec<Turn> = traces
        .iter()
        .map(|r| {
            let trace_id = hex(&r.get::<_, Vec<u8>>(0));
            Turn {
                scores: by_target
                    .remove(&(trace_id.clone(), String::new()))
                    .unwrap_or_default(),
                trace_id,
                start_time: format_time(r.get(1)),
                duration_ms: r.get::<_, Option<i64>>(2).unwrap_or(0) as f64 / 1e3,
                root_name: r.get::<_, Option<String>>(3).unwrap_or_default(),
                user_id: r.get(4),
                cost_usd: r.get::<_, Option<f64>>(5).unwrap_or(0.0),
                total_tokens: r.get::<_, Option<i64>>(6).unwrap_or(0),
                has_error: r.get::<_, Option<bool>>(7).unwrap_or(false),
                calls: Vec::new(),
            }
        })
        .collect();
    let index: HashMap<String, usize> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| (t.trace_id.clone(), i))
        .collect();
    for r in &calls {
        let trace_id = hex(&r.get::<_, Vec<u8>>(0));
        let span_id = hex(&r.get::<_, Vec<u8>>(1));
        let json = |i: usize| -> serde_json::Value {
            serde_json::from_str(r.get::<_, &str>(i)).unwrap_or_default()
        };
        let (attributes, events) = (json(16), json(17));
        let call = TurnCall {
            scores: by_target
                .remove(&(trace_id.clone(), span_id.clone()))
                .unwrap_or_default(),
            span_id,
            start_time: format_time(r.get(2)),
            duration_ms: r.get(3),
            is_error: r.get(4),
            call: LlmCall {
                provider: r.get(5),
                model: r.get(6),
                operation: r.get(7),
                input_tokens: r.get(8),
                output_tokens: r.get(9),
                cache_read_tokens: r.get(10),
                cache_write_tokens: r.get(11),
                reasoning_tokens: r.get(12),
                cost_usd: r.get(13),
                time_to_first_token_ms: r.get(14),
                finish_reasons: r.get(15),
                messages: chat(&attributes, &events),
            },
        };
        if let Some(&i) = index.get(&trace_id) {
            turns[i].calls.push(call);
        }
    }
    Ok(Some(Transcript {
        session_scores: by_target
            .remove(&(String::new(), String::new()))
            .unwrap_or_default(),
        session,
        turns,
        truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn list_parameters_are_checked() {
        let now = SystemTime::now();
        let field = |pairs: &[(&str, &str)]| {
            ListQuery::parse(&mut params(pairs), now)
                .unwrap_err()
                .parameter
                .unwrap()
        };
        assert_eq!(field(&[("sort", "name")]), "sort");
        assert_eq!(field(&[("has_errors", "yes")]), "has_errors");
        assert_eq!(field(&[("min_score", "0.5")]), "score");
        assert_eq!(field(&[("limit", "201")]), "limit");
        let cost = keyset::encode(&["cost_usd".into(), "1.5".into(), "s".into()]);
        assert_eq!(
            field(&[("cursor", &cost)]),
            "cursor",
            "a cost cursor on the time sort"
        );
        let q = ListQuery::parse(&mut params(&[("sort", "cost"), ("cursor", &cost)]), now).unwrap();
        assert_eq!(q.after, Some((Keyed::Cost(1.5), "s".into())));
        let bad = keyset::encode(&["cost_usd".into(), "inf".into(), "s".into()]);
        assert_eq!(field(&[("sort", "cost"), ("cursor", &bad)]), "cursor");
    }
}
