//! The HTTP surface: health, then `/api/v1/...`, every API route behind
//! [`authorized`], every error a problem document (`problem.rs`).

use crate::auth::{Claims, Keys, Role};
use crate::problem::{recover, Problem};
use crate::traces;
use deadpool_postgres::Pool;
use std::convert::Infallible;
use warp::{Filter, Rejection, Reply};

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// Token keys.
    pub keys: Keys,
    /// PostgreSQL.
    pub db: Pool,
}

/// Passes the claims of a token whose role is at least `need`; else a
/// 401/403 problem.
pub fn authorized(
    keys: Keys,
    need: Role,
) -> impl Filter<Extract = (Claims,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |h: Option<String>| {
        let keys = keys.clone();
        async move {
            keys.authorize(h.as_deref(), need)
                .map_err(|e| warp::reject::custom(Problem::from(e)))
        }
    })
}

fn with_state(state: State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

async fn trace_by_id(
    id: String,
    claims: Claims,
    state: State,
) -> Result<warp::reply::Response, Rejection> {
    let id = traces::parse_trace_id(&id).map_err(warp::reject::custom)?;
    let client = state
        .db
        .get()
        .await
        .map_err(|e| warp::reject::custom(Problem::unavailable("PostgreSQL", e)))?;
    match traces::load(&client, &claims.tenant, &id).await {
        Ok(Some(trace)) => Ok(warp::reply::json(&trace).into_response()),
        Ok(None) => Err(warp::reject::custom(Problem::not_found(
            "no trace with this id for your tenant",
        ))),
        Err(e) => Err(warp::reject::custom(Problem::unavailable("PostgreSQL", e))),
    }
}

async fn readyz(state: State) -> Result<warp::reply::Response, Infallible> {
    let ok = match state.db.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    Ok(if ok {
        warp::reply::with_status("ready\n", warp::http::StatusCode::OK).into_response()
    } else {
        warp::reply::with_status(
            "PostgreSQL is unreachable\n",
            warp::http::StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    })
}

/// Every route.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok\n".into_response());
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(readyz);
    let trace = warp::path!("api" / "v1" / "traces" / String)
        .and(warp::get())
        .and(authorized(state.keys.clone(), Role::Viewer))
        .and(with_state(state))
        .and_then(trace_by_id);
    healthz
        .or(ready)
        .unify()
        .or(trace)
        .unify()
        .recover(recover)
        .unify()
}
