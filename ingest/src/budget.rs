//! The in-flight budget: how much memory requests may hold at once, from
//! decoding until Kafka has them.
//!
//! A request reserves the estimate of its decoded size
//! ([`observatory_schemas::decoded_size`]) **before** it is decoded, then,
//! once split, resizes the reservation to the larger of its body and its
//! messages, and holds that until Kafka has answered for every one of its
//! messages, even after a timeout has already answered the client. A request
//! that finds the budget spent is refused at once with UNAVAILABLE / 503: it
//! never waits in memory; one whose estimate alone passes the budget is
//! refused for good (413 / RESOURCE_EXHAUSTED). Together with the
//! per-transport concurrency limit and the request size cap this bounds the
//! collector's memory whatever the load.

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
    permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: Gauge,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Holds `bytes` from now on: gives back what is over, or reserves what
    /// is missing (refused at once when the budget is spent, keeping what
    /// it held).
    pub fn resize(&mut self, budget: &Budget, bytes: usize) -> Result<(), IngestError> {
        let want = units(bytes);
        let have = self.permit.num_permits() as u32;
        if want < have {
            drop(self.permit.split((have - want) as usize));
        } else if want > have {
            let more = budget
                .semaphore
                .clone()
                .try_acquire_many_owned(want - have)
                .map_err(|_| IngestError::Overloaded {
                    limit: budget.limit,
                })?;
            self.permit.merge(more);
        }
        let now = (want as usize * UNIT) as i64;
        self.gauge.inc_by(now - self.bytes);
        self.bytes = now;
        Ok(())
    }
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
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
        let units = units(bytes);
        let permit = self
            .semaphore
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| IngestError::Overloaded { limit: self.limit })?;
        let bytes = (units as usize * UNIT) as i64;
        self.gauge.inc_by(bytes);
        Ok(Reservation {
            permit,
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

    #[test]
    fn a_reservation_shrinks_and_grows_within_the_budget() {
        let gauge = Gauge::default();
        let budget = Budget::new(10 * UNIT, gauge.clone());
        let mut a = budget.try_reserve(8 * UNIT).unwrap();
        a.resize(&budget, 3 * UNIT).unwrap();
        assert_eq!(gauge.get(), 3 * UNIT as i64);
        let b = budget.try_reserve(7 * UNIT).unwrap();
        assert!(matches!(
            a.resize(&budget, 4 * UNIT),
            Err(IngestError::Overloaded { .. })
        ));
        assert_eq!(a.bytes(), 3 * UNIT);
        drop(b);
        a.resize(&budget, 9 * UNIT).unwrap();
        assert_eq!(gauge.get(), 9 * UNIT as i64);
        drop(a);
        assert_eq!(gauge.get(), 0);
        assert!(budget.try_reserve(10 * UNIT).is_ok());
    }
}
