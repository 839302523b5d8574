//! The HTTP surface: health, then `/api/v1/...`, every API route behind
//! [`authorized`], every error a problem document (`problem.rs`).

use crate::audit::AuditHandle;
use crate::auth::{Claims, Keys, Role};
use crate::blocks::Blocks;
use crate::budgets::Scope;
use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::problem::{recover, Problem};
use crate::traces;
use crate::v1;
use deadpool_postgres::Pool;
use std::convert::Infallible;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// Token keys.
    pub keys: Keys,
    /// PostgreSQL.
    pub db: Pool,
    /// Redis cache and rate limit.
    pub cache: Cache,
    /// Tempo blocks, when object storage is configured.
    pub blocks: Option<Blocks>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Most spans one trace answer holds (`TRACE_MAX_SPANS`); a larger
    /// trace is cut and says so (`truncated`).
    pub trace_max_spans: usize,
    /// How long a span-level trace search may scan (`SEARCH_TIME_BUDGET`).
    pub search_time_budget: std::time::Duration,
    /// How far back PostgreSQL holds traces (`RETENTION_TRACES_DAYS`);
    /// searches read the blocks for what is older.
    pub traces_retention: std::time::Duration,
    /// The services whose metrics `GET /api/v1/pipeline` reads (`PIPELINE_METRICS`).
    pub pipeline: Arc<Vec<crate::pipeline::Target>>,
    /// Tenants whose admins may read it (`PIPELINE_TENANTS`).
    pub pipeline_tenants: Arc<Vec<String>>,
    /// The scores topic's producer; `None` when score writes are off.
    pub scores: Option<Arc<crate::scores::publish::Publisher>>,
}

/// Passes the claims of a token whose role is at least `need`, once the
/// caller is within its rate limit; else a 401/403/429 problem. The rate
/// limit is keyed on the verified identity (tenant and subject), never on
/// the header's bytes, so another spelling of the same token gets no budget
/// of its own. A request that names a tenant (`X-Scope-OrgID`, as Grafana
/// sends it) other than its token's is refused with 403: a token reads its
/// own tenant only. What it finds goes into the request's audit event, and
/// a refusal into `auth_failures_total`, `cross_tenant_refusals_total` or
/// `rate_limited_requests_total`.
pub fn authorized(
    state: State,
    need: Role,
) -> impl Filter<Extract = (Claims,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-scope-orgid"))
        .and(warp::path::full())
        .and(warp::ext::optional::<AuditHandle>())
        .and_then(
            move |h: Option<String>,
                  org: Option<String>,
                  path: FullPath,
                  audit: Option<AuditHandle>| {
                let state = state.clone();
                async move {
                    let audit = audit.unwrap_or_default();
                    let claims = match state.keys.authorize(h.as_deref(), need) {
                        Ok(claims) => claims,
                        Err(e) => {
                            state.metrics.auth_failure(e.reason(), path.as_str());
                            audit.refused_auth(&e);
                            return Err(warp::reject::custom(Problem::from(e)));
                        }
                    };
                    audit.verified(&claims);
                    if let Some(org) = org.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
                        let own = org == claims.tenant
                            || (claims.tenant == observatory_schemas::tenant::DEFAULT_TENANT
                                && org == observatory_schemas::tempo::meta::SINGLE_TENANT);
                        if !own {
                            state.metrics.cross_tenant_refusals.inc();
                            audit.refused("cross_tenant");
                            return Err(warp::reject::custom(Problem::forbidden(
                                "X-Scope-OrgID names another tenant than the token's; a token reads its own tenant only",
                            )));
                        }
                    }
                    let identity = format!("{}\u{0}{}", claims.tenant, claims.sub);
                    if let Err(problem) = state.cache.rate_limit(&identity).await {
                        state.metrics.rate_limited_tenant(&claims.tenant);
                        audit.refused("rate_limited");
                        return Err(warp::reject::custom(problem));
                    }
                    Ok::<_, Rejection>(claims)
                }
            },
        )
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
    let trace = match traces::load(&client, &claims.tenant, &id, state.trace_max_spans).await {
        Ok(Some(trace)) => Some(trace),
        Ok(None) => None,
        Err(e) => return Err(warp::reject::custom(Problem::unavailable("PostgreSQL", e))),
    };
    // Scores are kept past the spans' retention: a trace read from the
    // blocks shows them too.
    let scores = crate::scores::of_trace(&client, &claims.tenant, &id)
        .await
        .map_err(|e| warp::reject::custom(Problem::postgres(e)))?;
    let logs = crate::logs::of_trace(&client, &claims.tenant, &id)
        .await
        .map_err(|e| warp::reject::custom(Problem::postgres(e)))?;
    drop(client);
    // Past the PostgreSQL retention, the Tempo blocks still hold it.
    let trace = match (trace, &state.blocks) {
        (Some(trace), _) => Some(trace),
        (None, Some(blocks)) => blocks
            .find(&claims.tenant, &id)
            .await
            .map_err(|e| warp::reject::custom(Problem::blocks(e)))?
            .map(|mut spans| {
                let truncated = crate::blocks::cap_spans(&mut spans, state.trace_max_spans);
                let mut trace = crate::blocks::to_trace(&id, spans);
                trace.truncated = truncated;
                trace
            }),
        (None, None) => None,
    };
    match trace {
        Some(mut trace) => {
            trace.attach_scores(scores);
            trace.attach_logs(logs);
            Ok(warp::reply::json(&trace).into_response())
        }
        None => Err(warp::reject::custom(Problem::not_found(
            "no trace with this id for your tenant",
        ))),
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

/// Scores, score configs, sessions and users: boxed, so that the route
/// tree's type stays small (warp's nested `or` types otherwise make the
/// crate slow to compile).
fn evaluation_routes(state: State) -> BoxedFilter<(warp::reply::Response,)> {
    let query = || warp::query::<v1::Pairs>();
    let viewer = || authorized(state.clone(), Role::Viewer);
    let admin = || authorized(state.clone(), Role::Admin);
    let editor = || authorized(state.clone(), Role::Editor);
    let post_scores = warp::path!("api" / "v1" / "scores")
        .and(warp::post())
        .and(editor())
        .and(warp::body::content_length_limit(crate::scores::MAX_BODY))
        .and(warp::body::bytes())
        .and(with_state(state.clone()))
        .and_then(crate::scores::post)
        .boxed();
    let delete_score = warp::path!("api" / "v1" / "scores" / String)
        .and(warp::delete())
        .and(editor())
        .and(with_state(state.clone()))
        .and_then(crate::scores::delete)
        .boxed();
    let list_scores = warp::path!("api" / "v1" / "scores")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::scores)
        .boxed();
    let score_summary = warp::path!("api" / "v1" / "scores" / "summary")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::score_summary)
        .boxed();
    let score_configs = warp::path!("api" / "v1" / "score-configs")
        .and(warp::get())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(crate::scores::configs::list)
        .boxed();
    let put_score_config = warp::path!("api" / "v1" / "score-configs" / String)
        .and(warp::put())
        .and(admin())
        .and(warp::body::content_length_limit(65_536))
        .and(warp::body::bytes())
        .and(with_state(state.clone()))
        .and_then(crate::scores::configs::put)
        .boxed();
    let delete_score_config = warp::path!("api" / "v1" / "score-configs" / String)
        .and(warp::delete())
        .and(admin())
        .and(with_state(state.clone()))
        .and_then(crate::scores::configs::delete)
        .boxed();
    let sessions = warp::path!("api" / "v1" / "sessions")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::sessions)
        .boxed();
    let session = warp::path!("api" / "v1" / "sessions" / String)
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::session)
        .boxed();
    let users = warp::path!("api" / "v1" / "users")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::users)
        .boxed();
    let user = warp::path!("api" / "v1" / "users" / String)
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::user)
        .boxed();
    let logs = warp::path!("api" / "v1" / "logs")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::logs)
        .boxed();
    let metric_names = warp::path!("api" / "v1" / "metrics" / "names")
        .and(warp::get())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::metric_names)
        .boxed();
    let metric_labels = warp::path!("api" / "v1" / "metrics" / "labels")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::metric_labels)
        .boxed();
    let metric_query = warp::path!("api" / "v1" / "metrics" / "query")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::metric_query)
        .boxed();
    // Prometheus' HTTP API for Grafana's Prometheus data source
    // (`crate::promql::api`): GET, or POST with a form body.
    let prom_params = crate::promql::api::params;
    let prom_query_range = warp::path!("api" / "prom" / "api" / "v1" / "query_range")
        .and(prom_params())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(crate::promql::api::query_range)
        .boxed();
    let prom_query = warp::path!("api" / "prom" / "api" / "v1" / "query")
        .and(prom_params())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(crate::promql::api::query)
        .boxed();
    let prom_labels = warp::path!("api" / "prom" / "api" / "v1" / "labels")
        .and(prom_params())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(crate::promql::api::labels)
        .boxed();
    let prom_label_values =
        warp::path!("api" / "prom" / "api" / "v1" / "label" / String / "values")
            .and(warp::get())
            .and(query())
            .and(viewer())
            .and(with_state(state.clone()))
            .and_then(crate::promql::api::label_values)
            .boxed();
    let prom_series = warp::path!("api" / "prom" / "api" / "v1" / "series")
        .and(prom_params())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(crate::promql::api::series)
        .boxed();
    let prom_buildinfo = warp::path!("api" / "prom" / "api" / "v1" / "status" / "buildinfo")
        .and(warp::get())
        .and(viewer())
        .map(|_: Claims| crate::promql::api::buildinfo())
        .boxed();
    let signals = logs
        .or(metric_names)
        .unify()
        .or(metric_labels)
        .unify()
        .or(metric_query)
        .unify()
        .or(prom_query_range)
        .unify()
        .or(prom_query)
        .unify()
        .or(prom_labels)
        .unify()
        .or(prom_label_values)
        .unify()
        .or(prom_series)
        .unify()
        .or(prom_buildinfo)
        .unify()
        .boxed();
    post_scores
        .or(signals)
        .unify()
        .or(score_summary)
        .unify()
        .or(list_scores)
        .unify()
        .or(delete_score)
        .unify()
        .or(score_configs)
        .unify()
        .or(put_score_config)
        .unify()
        .or(delete_score_config)
        .unify()
        .or(sessions)
        .unify()
        .or(session)
        .unify()
        .or(users)
        .unify()
        .or(user)
        .unify()
        .boxed()
}

/// Every route.
pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok\n".into_response());
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(readyz);
    let metrics = {
        let metrics = state.metrics.clone();
        warp::path!("metrics").and(warp::get()).map(move || {
            warp::reply::with_header(
                metrics.encode(),
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .into_response()
        })
    };
    let trace = warp::path!("api" / "v1" / "traces" / String)
        .and(warp::get())
        .and(authorized(state.clone(), Role::Viewer))
        .and(with_state(state.clone()))
        .and_then(trace_by_id);
    let query = || warp::query::<v1::Pairs>();
    let viewer = || authorized(state.clone(), Role::Viewer);
    let admin = || authorized(state.clone(), Role::Admin);
    let search = warp::path!("api" / "v1" / "traces")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::search);
    let llm_metrics = warp::path!("api" / "v1" / "llm" / "metrics")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::metrics);
    let costs = warp::path!("api" / "v1" / "llm" / "costs")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::costs);
    let models = warp::path!("api" / "v1" / "models")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::models);
    let budgets = warp::path!("api" / "v1" / "budgets")
        .and(warp::get())
        .and(query())
        .and(viewer())
        .and(with_state(state.clone()))
        .and_then(v1::list_budgets);
    let scope = warp::path!("api" / "v1" / "budgets" / "tenant")
        .map(|| Scope::Tenant)
        .or(
            warp::path!("api" / "v1" / "budgets" / "services" / String).and_then(
                |name: String| async move {
                    Scope::from_path("services", Some(&name)).map_err(warp::reject::custom)
                },
            ),
        )
        .unify();
    let audit = || warp::ext::optional::<AuditHandle>().map(Option::unwrap_or_default);
    let put_budget = scope
        .and(warp::put())
        .and(admin())
        .and(warp::body::content_length_limit(4096))
        .and(warp::body::bytes())
        .map(|scope, claims, body| (scope, body, claims))
        .untuple_one()
        .and(with_state(state.clone()))
        .and(audit())
        .and_then(v1::put_budget);
    let delete_budget = scope
        .and(warp::delete())
        .and(admin())
        .and(with_state(state.clone()))
        .and(audit())
        .and_then(v1::delete_budget);
    let pipeline = warp::path!("api" / "v1" / "pipeline")
        .and(warp::get())
        .and(query())
        .and(admin())
        .and(with_state(state.clone()))
        .and_then(v1::pipeline);
    let openapi = warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .map(crate::openapi::reply);
    let observe = state.metrics.clone();
    healthz
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .or(search)
        .unify()
        .or(trace)
        .unify()
        .or(llm_metrics)
        .unify()
        .or(costs)
        .unify()
        .or(models)
        .unify()
        .or(budgets)
        .unify()
        .or(put_budget)
        .unify()
        .or(delete_budget)
        .unify()
        .or(pipeline)
        .unify()
        .or(evaluation_routes(state.clone()))
        .unify()
        .or(crate::tempo_api::routes(state))
        .unify()
        .or(crate::ui::routes())
        .unify()
        .recover(recover)
        .unify()
        .with(warp::log::custom(move |info| observe.observe(info)))
}
