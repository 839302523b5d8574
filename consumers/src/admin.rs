//! The admin server: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/readyz` is 200 while the sink's store answered its last write or check
//! and the process is not shutting down.

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared health flags.
#[derive(Clone, Default)]
pub struct Health {
    /// The store answered its last write or check.
    pub store_ok: Arc<AtomicBool>,
    /// Shutting down.
    pub draining: Arc<AtomicBool>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `addr` and serves the admin router there in the background.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let admin = router(metrics, health);
    tokio::spawn(async move { axum::serve(listener, admin).await });
    Ok(())
}

/// The admin router.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { metrics, health })
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
    if state.health.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !state.health.store_ok.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unreachable\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
