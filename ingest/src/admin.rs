//! The collector's admin server on :8888 (`observatory_plumbing::admin`):
//! `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only
//! when Kafka is reachable, our topics exist and the collector is not
//! shutting down, so a load balancer sends traffic only where it can be
//! acknowledged.

use crate::metrics::Metrics;
use crate::topics::Readiness;
use axum::Router;
use observatory_plumbing::admin::Probe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct CollectorProbe {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    draining: Arc<AtomicBool>,
}

impl Probe for CollectorProbe {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.readiness.is_ready() {
            Err("kafka is unreachable or the topics are missing")
        } else {
            Ok(())
        }
    }
}

/// The admin router.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness, draining: Arc<AtomicBool>) -> Router {
    observatory_plumbing::admin::router(Arc::new(CollectorProbe {
        metrics,
        readiness,
        draining,
    }))
}
