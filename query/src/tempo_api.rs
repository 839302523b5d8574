//! Grafana Tempo's HTTP API, in Tempo's own shapes, for Grafana's Tempo
//! data source. (Skeleton: filled in by the Tempo work of issue 5.)

use crate::routes::State;
use warp::{Filter, Rejection, Reply};

/// `/api/echo`, `/api/traces/{id}`, `/api/v2/traces/{id}`, `/api/search`,
/// `/api/search/tags`.
pub fn routes(
    state: State,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let _ = state;
    warp::path!("api" / "echo")
        .and(warp::get())
        .map(|| "echo".into_response())
}
