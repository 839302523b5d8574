//! The in-flight budget: how many bytes of requests may wait for Kafka at once.
//!
//! A request reserves its decoded size before it is split and produced, and
//! holds the reservation until Kafka has answered for every one of its
//! messages, even after a timeout has already answered the client. A request
//! that finds the budget spent is refused at once with UNAVAILABLE / 503: it
//! never waits in memory. Together with the per-transport concurrency limit
//! and the request size cap this bounds the collector's memory whatever the
//! load.

use crate::error::IngestError;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB, so that a `u32` of permits covers any request.
const UNIT: usize = 1024;

/// The shared budget.
#[derive(Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    limit: usize,
    gauge: Gauge,
}

/// Bytes held against the budget; released on drop.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: Gauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

impl Budget {
    /// A budget of `limit` bytes, reported in `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        Budget {
            semaphore: Arc::new(Semaphore::new(limit.div_ceil(UNIT))),
            limit,
            gauge,
        }
    }

    /// The limit, bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reserves `bytes`, or refuses at once when the budget is spent.
    pub fn try_reserve(&self, bytes: usize) -> Result<Reservation, IngestError> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let permit = self
            .semaphore
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| IngestError::Overloaded { limit: self.limit })?;
        let bytes = (units as usize * UNIT) as i64;
        self.gauge.inc_by(bytes);
        Ok(Reservation {
            _permit: permit,
            bytes,
            gauge: self.gauge.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_on_drop() {
        let gauge = Gauge::default();
        let budget = Budget::new(10 * UNIT, gauge.clone());
        let a = budget.try_reserve(6 * UNIT).unwrap();
        assert_eq!(gauge.get(), 6 * UNIT as i64);
        assert!(matches!(
            budget.try_reserve(5 * UNIT),
            Err(IngestError::Overloaded { .. })
        ));
        drop(a);
        assert_eq!(gauge.get(), 0);
        assert!(budget.try_reserve(10 * UNIT).is_ok());
    }
}
