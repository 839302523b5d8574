//! The handlers of `/api/v1`: each checks its parameters (a 400 naming the
//! parameter), then answers from the cache or PostgreSQL for the token's
//! tenant.
//!
//! What it guarantees: search, metrics, costs and models answers go through
//! [`crate::cache::Cache::json`], keyed by tenant and query, with the short
//! TTL whenever the window ends within [`LATE_DATA`] of now (spans still
//! arriving can change it); budgets are never cached, and costs (which carry
//! this month's budget use) always take the short TTL.

use crate::analytics::{self, CostsQuery, MetricsQuery};
use crate::auth::Claims;
use crate::budgets::{self, BudgetBody, Scope};
use crate::filters::Params;
use crate::problem::Problem;
use crate::routes::State;
use crate::search::{self, Search};
use std::time::{Duration, SystemTime};
use warp::http::StatusCode;
use warp::{Rejection, Reply};

/// How late spans may still arrive for a window: a window ending less than
/// this before now is open.
pub const LATE_DATA: Duration = Duration::from_secs(300);

/// Query pairs as warp decodes them.
pub type Pairs = Vec<(String, String)>;

fn reject(p: Problem) -> Rejection {
    warp::reject::custom(p)
}

pub(crate) async fn db(state: &State) -> Result<deadpool_postgres::Object, Problem> {
    state
        .db
        .get()
        .await
        .map_err(|e| Problem::unavailable("PostgreSQL", e))
}

/// `GET /api/v1/traces`.
pub async fn search(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let q = Search::parse(&mut Params::new(pairs.clone()).map_err(reject)?, now).map_err(reject)?;
    let split = q
        .split(now, state.traces_retention, state.blocks.is_some())
        .map_err(reject)?;
    let open = q.range.is_open(now, LATE_DATA);
    state
        .cache
        .json(&claims.tenant, "traces", &pairs, open, || async {
            search::run(&state, &claims.tenant, &q, split).await
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/llm/metrics`.
pub async fn metrics(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let q = MetricsQuery::parse(&mut Params::new(pairs.clone()).map_err(reject)?, now)
        .map_err(reject)?;
    let open = q.selection.range.is_open(now, LATE_DATA);
    state
        .cache
        .json(&claims.tenant, "llm_metrics", &pairs, open, || async {
            let client = db(&state).await?;
            analytics::metrics(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/llm/costs`.
pub async fn costs(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let q =
        CostsQuery::parse(&mut Params::new(pairs.clone()).map_err(reject)?, now).map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "llm_costs", &pairs, true, || async {
            let client = db(&state).await?;
            analytics::costs(&client, &claims.tenant, &q, now)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/models`.
pub async fn models(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let range = analytics::parse_models(&mut Params::new(pairs.clone()).map_err(reject)?, now)
        .map_err(reject)?;
    state
        .cache
        .json(
            &claims.tenant,
            "models",
            &pairs,
            range.is_open(now, LATE_DATA),
            || async {
                let client = db(&state).await?;
                analytics::models(&client, &claims.tenant, range, now)
                    .await
                    .map_err(Problem::postgres)
            },
        )
        .await
        .map_err(reject)
}

/// Refuses any query parameter (the endpoint takes none), with a 400 naming it.
fn no_parameters(pairs: Pairs) -> Result<(), Rejection> {
    Params::new(pairs).and_then(|p| p.finish()).map_err(reject)
}

/// `GET /api/v1/pipeline` (admin): the services' health from their own metrics.
pub async fn pipeline(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    no_parameters(pairs)?;
    // Every tenant's traffic together: only the operators' tenants see it.
    if !state.pipeline_tenants.contains(&claims.tenant) {
        return Err(reject(Problem::forbidden(
            "the pipeline's health is the whole deployment's: only admins of the tenants in PIPELINE_TENANTS read it",
        )));
    }
    let answer = crate::pipeline::read(&state.pipeline).await;
    Ok(warp::reply::json(&answer).into_response())
}

/// `GET /api/v1/budgets`.
pub async fn list_budgets(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    no_parameters(pairs)?;
    let client = db(&state).await.map_err(reject)?;
    let budgets = budgets::usage(&client, &claims.tenant, SystemTime::now())
        .await
        .map_err(|e| reject(Problem::postgres(e)))?;
    Ok(warp::reply::json(&serde_json::json!({ "budgets": budgets })).into_response())
}

/// `PUT /api/v1/budgets/tenant` and `/api/v1/budgets/services/{service}`.
pub async fn put_budget(
    scope: Scope,
    body: bytes::Bytes,
    claims: Claims,
    state: State,
    audit: crate::audit::AuditHandle,
) -> Result<warp::reply::Response, Rejection> {
    let body = BudgetBody::parse(&body).map_err(reject)?;
    let client = db(&state).await.map_err(reject)?;
    let before = budgets::set(&client, &claims.tenant, &scope, &body, &claims.sub)
        .await
        .map_err(|e| reject(Problem::postgres(e)))?;
    audit.changed(
        serde_json::json!({ "monthly_usd": before }),
        serde_json::json!({ "monthly_usd": body.monthly_usd }),
    );
    let now = SystemTime::now();
    let all = budgets::usage(&client, &claims.tenant, now)
        .await
        .map_err(|e| reject(Problem::postgres(e)))?;
    let this = all.into_iter().find(|b| b.scope == scope);
    Ok(warp::reply::json(&this).into_response())
}

/// `DELETE` of a budget: 204, or 404 when there was none.
pub async fn delete_budget(
    scope: Scope,
    claims: Claims,
    state: State,
    audit: crate::audit::AuditHandle,
) -> Result<warp::reply::Response, Rejection> {
    let client = db(&state).await.map_err(reject)?;
    match budgets::remove(&client, &claims.tenant, &scope)
        .await
        .map_err(|e| reject(Problem::postgres(e)))?
    {
        Some(before) => {
            audit.changed(
                serde_json::json!({ "monthly_usd": before }),
                serde_json::json!({ "monthly_usd": null }),
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(reject(Problem::not_found("no such budget for your tenant"))),
    }
}

/// `GET /api/v1/scores`: newest first, short-lived cache (scores change).
pub async fn scores(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let q = crate::scores::read::ListQuery::parse(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        SystemTime::now(),
    )
    .map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "scores", &pairs, true, || async {
            let client = db(&state).await?;
            crate::scores::read::list(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/scores/summary`.
pub async fn score_summary(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let q = crate::scores::read::SummaryQuery::parse(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        SystemTime::now(),
    )
    .map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "score_summary", &pairs, true, || async {
            let client = db(&state).await?;
            crate::scores::read::summary(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/sessions`.
pub async fn sessions(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let q = crate::sessions::ListQuery::parse(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        SystemTime::now(),
    )
    .map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "sessions", &pairs, true, || async {
            let client = db(&state).await?;
            crate::sessions::list(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// A path segment, percent-decoded, 1 to 256 bytes.
fn path_id(raw: &str, name: &str) -> Result<String, Problem> {
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Problem::bad_parameter(name, "not UTF-8 once decoded"))?
        .into_owned();
    if id.is_empty() || id.len() > 256 {
        return Err(Problem::bad_parameter(name, "1 to 256 bytes"));
    }
    Ok(id)
}

/// `GET /api/v1/sessions/{id}`: the conversation as a transcript.
pub async fn session(
    id: String,
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    no_parameters(pairs.clone())?;
    let id = path_id(&id, "session_id").map_err(reject)?;
    let key = vec![("id".to_owned(), id.clone())];
    state
        .cache
        .json(&claims.tenant, "session", &key, true, || async {
            let client = db(&state).await?;
            crate::sessions::transcript(&client, &claims.tenant, &id)
                .await
                .map_err(Problem::postgres)?
                .ok_or_else(|| Problem::not_found("no session with this id for your tenant"))
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/users`.
pub async fn users(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let q = crate::users::ListQuery::parse(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        SystemTime::now(),
    )
    .map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "users", &pairs, true, || async {
            let client = db(&state).await?;
            crate::users::list(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/users/{id}`.
pub async fn user(
    id: String,
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let range = crate::users::parse_detail(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        SystemTime::now(),
    )
    .map_err(reject)?;
    let id = path_id(&id, "user_id").map_err(reject)?;
    let mut key = pairs;
    key.push(("id".to_owned(), id.clone()));
    state
        .cache
        .json(&claims.tenant, "user", &key, true, || async {
            let client = db(&state).await?;
            crate::users::detail(&client, &claims.tenant, &id, range)
                .await
                .map_err(Problem::postgres)?
                .ok_or_else(|| Problem::not_found("no user with this id for your tenant"))
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/logs`: log records, newest first.
pub async fn logs(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let q = crate::logs::ListQuery::parse(&mut Params::new(pairs.clone()).map_err(reject)?, now)
        .map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "logs", &pairs, true, || async {
            let client = db(&state).await?;
            crate::logs::list(&client, &claims.tenant, &q)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/metrics/names`: the stored metrics.
pub async fn metric_names(
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    state
        .cache
        .json(&claims.tenant, "metric_names", &[], true, || async {
            let client = db(&state).await?;
            crate::metric_queries::names(&client, &claims.tenant)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/metrics/labels?name=`: a metric's label keys and values.
pub async fn metric_labels(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let mut p = Params::new(pairs.clone()).map_err(reject)?;
    let name = p
        .one("name")
        .map_err(reject)?
        .filter(|n| !n.is_empty() && n.len() <= 256)
        .ok_or_else(|| {
            reject(Problem::bad_parameter(
                "name",
                "the metric's name, 1 to 256 bytes",
            ))
        })?;
    p.finish().map_err(reject)?;
    state
        .cache
        .json(&claims.tenant, "metric_labels", &pairs, true, || async {
            let client = db(&state).await?;
            crate::metric_queries::labels(&client, &claims.tenant, &name)
                .await
                .map_err(Problem::postgres)
        })
        .await
        .map_err(reject)
}

/// `GET /api/v1/metrics/query`: a metric over time, aggregated.
pub async fn metric_query(
    pairs: Pairs,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let now = SystemTime::now();
    let q = crate::metric_queries::MetricQuery::parse(
        &mut Params::new(pairs.clone()).map_err(reject)?,
        now,
    )
    .map_err(reject)?;
    let open = q.range.is_open(now, std::time::Duration::from_secs(120));
    state
        .cache
        .json(&claims.tenant, "metric_query", &pairs, open, || async {
            let client = db(&state).await?;
            crate::metric_queries::query(&client, &claims.tenant, &q)
                .await
                .map_err(|e| match e {
                    crate::metric_queries::QueryError::Db(e) => Problem::postgres(e),
                    crate::metric_queries::QueryError::Invalid(why) => {
                        Problem::bad_parameter("agg", why)
                    }
                })
        })
        .await
        .map_err(reject)
}
