//! The admin server every long-running binary serves on its own port:
//! `/metrics` (OpenMetrics text), `/healthz` (200 while the process runs)
//! and `/readyz` (200 only while the component can do its work, else 503
//! with the reason), for Prometheus and for Kubernetes' probes.
//!
//! What it guarantees: it knows nothing of the component; the component
//! says what its metrics are and whether it is ready through [`Probe`],
//! so every binary answers the same paths with the same content types.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What a component shows the admin server.
pub trait Probe: Send + Sync + 'static {
    /// The component's metrics, OpenMetrics text.
    fn metrics(&self) -> String;
    /// `Ok` when the component can do its work; else why not (one line).
    fn ready(&self) -> Result<(), &'static str>;
}

/// The admin router over `probe`.
pub fn router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

/// Binds `addr` and serves the admin router there in the background.
pub async fn serve(addr: std::net::SocketAddr, probe: Arc<dyn Probe>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let admin = router(probe);
    tokio::spawn(async move { axum::serve(listener, admin).await });
    Ok(())
}

async fn metrics(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probe.metrics(),
    )
}

async fn readyz(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    match probe.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Flag(AtomicBool);

    impl Probe for Flag {
        fn metrics(&self) -> String {
            "up 1\n# EOF\n".into()
        }
        fn ready(&self) -> Result<(), &'static str> {
            if self.0.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("the store is unreachable")
            }
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn paths() {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(flag.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.ends_with("the store is unreachable\n"));
        flag.0.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("application/openmetrics-text"));
        assert!(metrics.ends_with("up 1\n# EOF\n"));
    }
}
