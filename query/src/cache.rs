//! The Redis cache of analytics and search answers, and the per-token rate
//! limit. (Skeleton: filled in by the cache work of issue 5.)
//!
//! Contract the handlers rely on: [`Cache::json`] never fails because of
//! Redis; Redis down or slow means the answer is computed from the
//! database.

use crate::problem::Problem;
use clap::Args;
use serde::Serialize;
use std::future::Future;

/// Redis settings.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Redis URL for the cache and the rate limit; unset disables both.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
}

/// The cache (cheap to clone).
#[derive(Clone, Default)]
pub struct Cache {}

impl Cache {
    /// Connects to `REDIS_URL` (lazily: Redis down at start is a cache
    /// that misses until it comes back); unset: disabled.
    pub async fn connect(
        args: &CacheArgs,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Cache {
        let _ = (args, metrics);
        Cache::disabled()
    }

    /// A cache that always misses.
    pub fn disabled() -> Cache {
        Cache {}
    }

    /// Answers `(tenant, endpoint, query)` from Redis, or with `compute`,
    /// storing the result; `open` says the range touches the present (short
    /// TTL). Sets `X-Cache: hit|miss`.
    pub async fn json<T, F, Fut>(
        &self,
        tenant: &str,
        endpoint: &str,
        query: &[(String, String)],
        open: bool,
        compute: F,
    ) -> Result<warp::reply::Response, Problem>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Problem>>,
    {
        let _ = (tenant, endpoint, query, open);
        let value = compute().await?;
        Ok(warp::reply::Reply::into_response(warp::reply::json(&value)))
    }

    /// Counts a request of the token; a 429 problem when over the limit.
    pub async fn rate_limit(&self, token: &str) -> Result<(), Problem> {
        let _ = token;
        Ok(())
    }
}
