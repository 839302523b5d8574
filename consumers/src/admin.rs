//! The consumers' admin server (`observatory_plumbing::admin`): `/metrics`,
//! `/healthz`, `/readyz`.
//!
//! `/readyz` is 200 while the sink's store answered its last write or check
//! and the process is not shutting down.

use crate::metrics::Metrics;
use observatory_plumbing::admin::Probe;
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

struct SinkProbe {
    metrics: Arc<Metrics>,
    health: Health,
}

impl Probe for SinkProbe {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn ready(&self) -> Result<(), &'static str> {
        if self.health.draining.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.health.store_ok.load(Ordering::Relaxed) {
            Err("the store is unreachable")
        } else {
            Ok(())
        }
    }
}

/// Binds `addr` and serves the admin router there in the background.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> std::io::Result<()> {
    observatory_plumbing::admin::serve(addr, Arc::new(SinkProbe { metrics, health })).await
}
