//! Shutdown signals: what Kubernetes (SIGTERM) and a terminal (SIGINT)
//! send when the process must drain and stop.
//!
//! What it guarantees: the future resolves once, on the first of either,
//! and logs which.

/// Waits for SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
