//! Per-tenant ingest quotas: spans (data points, log records) per second,
//! a token bucket per tenant, checked once a request is decoded.
//!
//! A tenant over its quota gets 429 / `UNAVAILABLE` with a `Retry-After`
//! of the seconds its bucket needs to hold the request, which OTLP
//! exporters honour; nothing of the request is produced. The buckets live
//! in each collector replica: with N replicas behind a load balancer, a
//! tenant may send N times its quota in all (set it per replica).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The quota settings: a default rate, overrides per tenant, and how many
/// seconds of rate a bucket may hold (the burst).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaConfig {
    /// Items per second of every tenant without an override; 0: no quota.
    pub default_per_second: f64,
    /// Items per second of named tenants (0: no quota for that tenant).
    pub per_tenant: HashMap<String, f64>,
    /// Seconds of rate a bucket holds.
    pub burst_seconds: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets.
pub struct Quotas {
    config: QuotaConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Quotas {
    /// Quotas of `config`.
    pub fn new(config: QuotaConfig) -> Quotas {
        Quotas {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any quota applies.
    pub fn enabled(&self) -> bool {
        self.config.default_per_second > 0.0 || self.config.per_tenant.values().any(|r| *r > 0.0)
    }

    /// Takes `items` from `tenant`'s bucket; `Err(seconds)` to wait when it
    /// does not hold them (nothing is taken then).
    pub fn take(&self, tenant: &str, items: u64, now: Instant) -> Result<(), u32> {
        let rate = self
            .config
            .per_tenant
            .get(tenant)
            .copied()
            .unwrap_or(self.config.default_per_second);
        if rate <= 0.0 || items == 0 {
            return Ok(());
        }
        let capacity = (rate * self.config.burst_seconds.max(1.0)).max(1.0);
        let mut buckets = self.buckets.lock().expect("no poisoned lock");
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        let want = items as f64;
        // A request larger than the whole bucket goes through once the
        // bucket is full, leaving it in debt: refusing it until it fits
        // would refuse it forever, and the debt still holds the tenant to
        // its rate over time.
        if want <= bucket.tokens || bucket.tokens >= capacity {
            bucket.tokens -= want;
            return Ok(());
        }
        let missing = want.min(capacity) - bucket.tokens;
        Err(((missing / rate).ceil() as u32).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_tenant_over_its_rate_waits_and_others_do_not() {
        let mut per_tenant = HashMap::new();
        per_tenant.insert("big".to_owned(), 1000.0);
        let q = Quotas::new(QuotaConfig {
            default_per_second: 100.0,
            per_tenant,
            burst_seconds: 2.0,
        });
        let t0 = Instant::now();
        assert!(q.take("small", 200, t0).is_ok(), "the burst");
        assert_eq!(q.take("small", 100, t0), Err(1));
        assert!(q.take("big", 2000, t0).is_ok());
        assert!(q.take("other", 150, t0).is_ok(), "buckets are per tenant");
        let t1 = t0 + Duration::from_millis(1500);
        assert!(q.take("small", 100, t1).is_ok(), "refilled at its rate");
        assert_eq!(
            q.take("small", 10_000, t1),
            Err(2),
            "never more than a full bucket's wait"
        );
        // Once the bucket is full it goes through, and the debt it leaves
        // is paid back at the tenant's rate.
        let t2 = t1 + Duration::from_secs(2);
        assert!(q.take("small", 10_000, t2).is_ok());
        assert!(q.take("small", 1, t2 + Duration::from_secs(10)).is_err());
        let off = Quotas::new(QuotaConfig::default());
        assert!(!off.enabled());
        assert!(off.take("x", u64::MAX, t0).is_ok());
    }
}
