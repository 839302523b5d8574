//! End users of the LLM application: `GET /api/v1/users` (one row each:
//! calls, tokens, cost, error rate, latency, sessions, mean scores) and
//! `GET /api/v1/users/{id}` (their cost over time by model, and their
//! sessions).
//!
//! What it guarantees: the list reads `user_summaries` only (kept by the
//! sink at write time from the calls it inserted, exact under replay),
//! walking the index of its sort with the window (last seen) checked in
//! the index, and stops at `limit`. Totals are over everything stored for
//! the user; the window selects who was active in it. p95 latency is read
//! from the user's latency histogram (at most 19% above the true value,
//! as for the metrics). Everything is the token's tenant's.

use crate::filters::{format_time, Params, Range};
use crate::keyset;
use crate::problem::Problem;
use crate::sessions::{mean_scores, Keyed, ScoreMean, SessionRow};
use crate::sql::Sql;
use observatory_schemas::histogram::upper_bound_ms;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);
const DEFAULT_RANGE: Duration = Duration::from_secs(30 * 86_400);

/// How the list is sorted (always descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Last seen, newest first.
    LastSeen,
    /// Cost, highest first.
    Cost,
    /// Calls, most first.
    Calls,
}

impl Sort {
    fn column(self) -> &'static str {
        match self {
            Sort::LastSeen => "last_seen",
            Sort::Cost => "cost_usd",
            Sort::Calls => "llm_calls",
        }
    }

    fn index(self) -> usize {
        match self {
            Sort::LastSeen => 2,
            Sort::Cost => 8,
            Sort::Calls => 3,
        }
    }
}

/// `GET /api/v1/users`, parsed.
#[derive(Debug)]
pub struct ListQuery {
    range: Range,
    sort: Sort,
    limit: i64,
    after: Option<(Keyed, String)>,
}

impl ListQuery {
    /// Parses the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<ListQuery, Problem> {
        let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
        let sort = p
            .parsed("sort", |t| match t {
                "last_seen" => Ok(Sort::LastSeen),
                "cost" => Ok(Sort::Cost),
                "calls" => Ok(Sort::Calls),
                _ => Err("last_seen, cost or calls".to_owned()),
            })?
            .unwrap_or(Sort::LastSeen);
        let (limit, after) = Keyed::page(p, sort.column())?;
        p.finish()?;
        Ok(ListQuery {
            range,
            sort,
            limit,
            after,
        })
    }
}

/// One end user.
#[derive(Debug, Serialize)]
pub struct UserRow {
    /// Their id.
    pub user_id: String,
    /// First call.
    pub first_seen: String,
    /// Last call's end.
    pub last_seen: String,
    /// Model calls.
    pub llm_calls: i64,
    /// Calls that failed.
    pub errors: i64,
    /// errors / llm_calls.
    pub error_rate: f64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Both.
    pub total_tokens: i64,
    /// Cost, USD.
    pub cost_usd: f64,
    /// Mean call latency, ms.
    pub mean_latency_ms: f64,
    /// 95th percentile of call latency, ms (histogram bucket bound).
    pub p95_latency_ms: Option<f64>,
    /// Sessions.
    pub sessions: i64,
    /// Mean scores of their traces, by name.
    pub scores: BTreeMap<String, ScoreMean>,
}

const COLUMNS: &str =
    "u.user_id, u.first_seen, u.last_seen, u.llm_calls, u.errors, u.input_tokens, \
    u.output_tokens, u.total_tokens, u.cost_usd, u.duration_ms_sum, u.sessions, u.latency";

/// The `q` quantile of a histogram of [`observatory_schemas::histogram`] buckets.
pub fn quantile_ms(counts: &[i64], q: f64) -> Option<f64> {
    let total: i64 = counts.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (bucket, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(upper_bound_ms(bucket as i16));
        }
    }
    None
}

fn row_of(r: &tokio_postgres::Row) -> UserRow {
    let calls: i64 = r.get(3);
    let errors: i64 = r.get(4);
    let latency: Vec<i64> = r.get(11);
    let duration_sum: f64 = r.get(9);
    UserRow {
        user_id: r.get(0),
        first_seen: format_time(r.get(1)),
        last_seen: format_time(r.get(2)),
        llm_calls: calls,
        errors,
        error_rate: if calls > 0 {
            errors as f64 / calls as f64
        } else {
            0.0
        },
        input_tokens: r.get(5),
        output_tokens: r.get(6),
        total_tokens: r.get(7),
        cost_usd: r.get(8),
        mean_latency_ms: if calls > 0 {
            duration_sum / calls as f64
        } else {
            0.0
        },
        p95_latency_ms: quantile_ms(&latency, 0.95),
        sessions: r.get(10),
        scores: BTreeMap::new(),
    }
}

/// A page of users.
#[derive(Debug, Serialize)]
pub struct UserPage {
    /// In the sort's order.
    pub users: Vec<UserRow>,
    /// The next page's `cursor`, when there is one.
    pub next_cursor: Option<String>,
}

/// Runs a [`ListQuery`].
pub async fn list(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &ListQuery,
) -> Result<UserPage, tokio_postgres::Error> {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let (from, to) = (sql.bind(q.range.from), sql.bind(q.range.to));
    let sort = q.sort.column();
    sql.push(&format!(
        "SELECT {COLUMNS} FROM user_summaries u WHERE u.tenant = {t}
            AND u.last_seen >= {from} AND u.last_seen < {to}"
    ));
    if let Some((value, id)) = &q.after {
        let v = value.bind(&mut sql);
        let id = sql.bind(id.clone());
        sql.push(&format!(" AND (u.{sort}, u.user_id) < ({v}, {id})"));
    }
    let limit = sql.bind(q.limit + 1);
    sql.push(&format!(
        " ORDER BY u.{sort} DESC, u.user_id DESC LIMIT {limit}"
    ));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    let more = rows.len() as i64 > q.limit;
    let rows = &rows[..rows.len().min(q.limit as usize)];
    let mut users: Vec<UserRow> = rows.iter().map(row_of).collect();
    let keys: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    let mut means = mean_scores(client, tenant, "trace_user", &keys).await?;
    for u in &mut users {
        u.scores = means.remove(&u.user_id).unwrap_or_default();
    }
    let next_cursor = more.then(|| {
        let last = rows.last().expect("more than limit rows");
        keyset::encode(&[
            sort.to_owned(),
            Keyed::text_of(sort, last, q.sort.index()),
            last.get::<_, String>(0),
        ])
    });
    Ok(UserPage { users, next_cursor })
}

/// One day and model of a user's calls.
#[derive(Debug, Serialize)]
pub struct DayCost {
    /// The UTC day, `2026-12-04`.
    pub day: String,
    /// Model.
    pub model: String,
    /// Calls.
    pub llm_calls: i64,
    /// Failed calls.
    pub errors: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Cost, USD.
    pub cost_usd: f64,
}

/// `GET /api/v1/users/{id}`.
#[derive(Debug, Serialize)]
pub struct UserDetail {
    /// Their totals.
    #[serde(flatten)]
    pub user: UserRow,
    /// Cost per UTC day and model in the window, oldest first.
    pub cost_by_day: Vec<DayCost>,
    /// Their sessions active in the window, newest first (at most 100).
    pub recent_sessions: Vec<SessionRow>,
}

/// `GET /api/v1/users/{id}`, parsed: the window of the cost over time.
pub fn parse_detail(p: &mut Params, now: SystemTime) -> Result<Range, Problem> {
    let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
    p.finish()?;
    Ok(range)
}

/// Reads user `id` of `tenant`; `None` when there is none.
pub async fn detail(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &str,
    range: Range,
) -> Result<Option<UserDetail>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM user_summaries u WHERE u.tenant = $1 AND u.user_id = $2"
            ),
            &[&tenant, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut user = row_of(&row);
    user.scores = mean_scores(client, tenant, "trace_user", &[id])
        .await?
        .remove(id)
        .unwrap_or_default();
    let days = client
        .query(
            "SELECT to_char(day, 'YYYY-MM-DD'), model, llm_calls, errors, input_tokens, output_tokens, cost_usd
               FROM user_calls_1d
              WHERE tenant = $1 AND user_id = $2
                AND day >= ($3::timestamptz AT TIME ZONE 'UTC')::date
                AND day <= ($4::timestamptz AT TIME ZONE 'UTC')::date
              ORDER BY day, model",
            &[&tenant, &id, &range.from, &range.to],
        )
        .await?;
    let cost_by_day = days
        .iter()
        .map(|r| DayCost {
            day: r.get(0),
            model: r.get(1),
            llm_calls: r.get(2),
            errors: r.get(3),
            input_tokens: r.get(4),
            output_tokens: r.get(5),
            cost_usd: r.get(6),
        })
        .collect();
    let mut q = crate::sessions::ListQuery::for_user(id, range);
    q.set_limit(100);
    let recent_sessions = crate::sessions::list(client, tenant, &q).await?.sessions;
    Ok(Some(UserDetail {
        user,
        cost_by_day,
        recent_sessions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::histogram::bucket;

    #[test]
    fn p95_is_the_bound_of_the_bucket_holding_it() {
        let mut counts = vec![0i64; 65];
        counts[bucket(10.0) as usize] = 90;
        counts[bucket(1000.0) as usize] = 10;
        let p95 = quantile_ms(&counts, 0.95).unwrap();
        assert!((1000.0..1190.0).contains(&p95), "{p95}");
        assert!(quantile_ms(&counts, 0.5).unwrap() < 12.0);
        assert_eq!(quantile_ms(&[0; 65], 0.95), None);
    }
}
