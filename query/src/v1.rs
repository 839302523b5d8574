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

async fn db(state: &State) -> Result<deadpool_postgres::Object, Problem> {
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
    let open = q.range.is_open(now, LATE_DATA);
    state
        .cache
        .json(&claims.tenant, "traces", &pairs, open, || async {
            let client = db(&state).await?;
            search::run(&client, &claims.tenant, &q, state.search_time_budget)
                .await
                .map_err(Problem::postgres)
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
