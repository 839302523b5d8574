//! The admin server on :8888: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only
//! when Kafka is reachable, our topics exist and the collector is not
//! shutting down, so a load balancer sends traffic only where it can be
//! acknowledged.

use crate::metrics::Metrics;
use crate::topics::Readiness;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    draining: Arc<AtomicBool>,
}

/// The admin router.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness, draining: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState {
            metrics,
            readiness,
            draining,
        })
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !state.readiness.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka is unreachable or the topics are missing\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
