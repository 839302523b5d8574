//! The Redis cache of analytics and search answers, and the per-token rate
//! limit.
//!
//! What it guarantees:
//!
//! - [`Cache::json`] never fails because of Redis: Redis down, slow or
//!   refusing means the answer is computed from the database. Every Redis
//!   operation is bounded by `REDIS_TIMEOUT`; after [`TRIP_AFTER`]
//!   consecutive failures the cache stops asking Redis at all (no wait per
//!   request) and one background task probes until Redis answers again.
//!   An outage is logged once when it starts and once when it ends.
//! - Tenants never share an entry: the key is a fixed prefix, the crate
//!   version, then the tenant, the endpoint and the normalized query as
//!   length-prefixed parts ([`cache_key`]), so no choice of characters in
//!   one part can imitate another.
//! - Only successful answers are stored, never errors, never answers above
//!   `CACHE_MAX_VALUE_BYTES`; the client never waits for the store.
//! - The rate limit ([`Cache::rate_limit`]) is a GCRA per token (keyed by a
//!   SHA-256 of the token, never the token) in one `EVALSHA`; while Redis
//!   is unavailable it lets every request through (fails open): the API
//!   stays up, unprotected, rather than down.
//!
//! Start reading at [`Cache::json`].

use crate::metrics::Metrics;
use crate::problem::Problem;
use bytes::Bytes;
use clap::Args;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use warp::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use warp::reply::Reply;

/// Redis settings.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Redis URL for the cache and the rate limit (redis://, rediss:// for TLS, redis+unix://); unset disables both.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = parse_redis_url)]
    pub redis_url: Option<String>,
    /// Redis password (AUTH), used instead of the one in REDIS_URL (so that a secret holds only the password and it needs no URL escaping).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Use TLS to Redis even when REDIS_URL says redis:// (it is then used as rediss://).
    #[arg(long, env = "REDIS_TLS")]
    pub redis_tls: bool,
    /// Cache lifetime of answers whose range ends within this of now (or later).
    #[arg(long, env = "CACHE_TTL_OPEN", default_value = "10s", value_parser = parse_duration)]
    pub cache_ttl_open: Duration,
    /// Cache lifetime of answers over a closed range.
    #[arg(long, env = "CACHE_TTL_CLOSED", default_value = "1h", value_parser = parse_duration)]
    pub cache_ttl_closed: Duration,
    /// Largest answer (bytes of JSON) stored; larger ones are computed every time.
    #[arg(long, env = "CACHE_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub cache_max_value_bytes: usize,
    /// Longest wait for one Redis operation before answering without Redis.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// Requests per second a token may make on average; 0 disables the rate limit.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 200)]
    pub rate_limit_per_second: u32,
    /// Requests a token may make at once before the rate applies; 0 disables the rate limit.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 1000)]
    pub rate_limit_burst: u32,
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    redis::Client::open(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a Redis URL: {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

/// Key prefix of cached answers. The crate version is part of it so that a
/// release that changes an answer's shape never serves the old shape.
const CACHE_PREFIX: &str = concat!("observatory:api:cache:", env!("CARGO_PKG_VERSION"), ":");

/// Key prefix of the rate limit's per-token state.
const RATE_PREFIX: &str = "observatory:api:rate:v1:";

/// Consecutive failed Redis operations after which the cache stops asking
/// Redis until a probe succeeds. More than one, so that a single slow reply
/// under load does not send every request to the database for a second.
pub const TRIP_AFTER: u32 = 3;

/// Longest wait to open a connection (TCP, and TLS for rediss://). Only the
/// background probe and start-up wait this long; requests wait
/// `REDIS_TIMEOUT` at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest pause between two probes of an unavailable Redis.
const MAX_PROBE_PAUSE: Duration = Duration::from_secs(5);

/// The rate limit: GCRA (a leaky bucket with no timer). `ARGV[1]` is the
/// emission interval and `ARGV[2]` the burst tolerance, in microseconds;
/// the key holds the theoretical arrival time. Returns 0 when the request
/// is allowed, else the milliseconds until it would be. Redis's own clock
/// (TIME) is used so that every API replica agrees.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return math.ceil((allow_at - now) / 1000)
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// The checked settings.
#[derive(Debug, Clone)]
struct Settings {
    ttl_open: Duration,
    ttl_closed: Duration,
    max_value_bytes: usize,
    timeout: Duration,
    /// GCRA emission interval and tolerance, microseconds; `None`: off.
    rate: Option<(f64, f64)>,
}

impl Settings {
    fn new(args: &CacheArgs) -> Settings {
        let rate = (args.rate_limit_per_second > 0 && args.rate_limit_burst > 0).then(|| {
            let interval = 1e6 / f64::from(args.rate_limit_per_second);
            (interval, interval * f64::from(args.rate_limit_burst))
        });
        Settings {
            ttl_open: args.cache_ttl_open,
            ttl_closed: args.cache_ttl_closed,
            max_value_bytes: args.cache_max_value_bytes,
            timeout: args.redis_timeout,
            rate,
        }
    }

    /// How long an answer lives: short when its range touches the present.
    fn ttl(&self, open: bool) -> Duration {
        if open {
            self.ttl_open
        } else {
            self.ttl_closed
        }
    }
}

/// The cache (cheap to clone).
#[derive(Clone, Default)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    client: redis::Client,
    /// The multiplexed connection; `None` until the first connect succeeds.
    conn: RwLock<Option<ConnectionManager>>,
    /// Redis answered lately; false: do not ask it (misses, rate limit open).
    up: AtomicBool,
    /// Failed operations since the last success.
    failures: AtomicU32,
    /// A probe task is running.
    probing: AtomicBool,
    settings: Settings,
    metrics: Arc<Metrics>,
    gcra: redis::Script,
}

/// Why Redis was not used for an operation.
#[derive(Debug)]
enum Skipped {
    /// Known unavailable: not asked.
    Down,
    /// Asked, and it failed or timed out.
    Failed,
}

impl Cache {
    /// Connects to `REDIS_URL` (lazily: Redis down at start is a cache
    /// that misses until it comes back); unset: disabled.
    pub async fn connect(args: &CacheArgs, metrics: Arc<crate::metrics::Metrics>) -> Cache {
        let Some(url) = &args.redis_url else {
            tracing::info!("REDIS_URL unset: no cache, no rate limit");
            return Cache::disabled();
        };
        let url = match url.strip_prefix("redis://") {
            Some(rest) if args.redis_tls => format!("rediss://{rest}"),
            _ => url.clone(),
        };
        if args.redis_tls && !url.starts_with("rediss://") {
            tracing::warn!("REDIS_TLS is set but REDIS_URL is not a TCP URL: TLS does not apply");
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).map(|mut info| {
            if let Some(password) = &args.redis_password {
                info.redis.password = Some(password.clone());
            }
            info
        });
        let client = match info.and_then(redis::Client::open) {
            Ok(client) => client,
            Err(e) => {
                // parse_redis_url already accepted it; kept for safety.
                tracing::error!(error = %e, "invalid REDIS_URL: no cache, no rate limit");
                return Cache::disabled();
            }
        };
        let inner = Arc::new(Inner {
            client,
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(true),
            settings: Settings::new(args),
            metrics,
            gcra: redis::Script::new(GCRA),
        });
        match inner.open().await {
            Ok(conn) => {
                inner.recovered(conn, false);
                tracing::info!(
                    ttl_open = ?inner.settings.ttl_open,
                    ttl_closed = ?inner.settings.ttl_closed,
                    rate_limit = inner.settings.rate.is_some(),
                    "Redis connected: caching and rate limiting"
                );
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "Redis unavailable at start: answering from the database, rate limit open, until it is back"
                );
                inner.probing.store(false, Ordering::Release);
                inner.spawn_probe();
            }
        }
        Cache { inner: Some(inner) }
    }

    /// A cache that always misses.
    pub fn disabled() -> Cache {
        Cache { inner: None }
    }

    /// Answers `(tenant, endpoint, query)` from Redis, or with `compute`,
    /// storing the result; `open` says the range touches the present (short
    /// TTL). Sets `X-Cache: hit|miss`.
    ///
    /// `endpoint` is one of a handful of fixed names (it is a metric
    /// label); `query` is the request's parameters as received (order and
    /// empty values do not matter) and must hold every parameter the answer
    /// depends on, since it is the key. A `compute` error is returned as
    /// is and not stored.
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
        let Some(inner) = &self.inner else {
            let value = compute().await?;
            return Ok(encode(&value).map_or_else(unencodable, |body| reply(body, MISS)));
        };
        let label = inner.metrics.endpoint(endpoint);
        let key = cache_key(tenant, endpoint, query);
        match inner.get(&key).await {
            Ok(Some(body)) => {
                inner.metrics.cache_result(label, "hit");
                return Ok(reply(Bytes::from(body), HIT));
            }
            Ok(None) => inner.metrics.cache_result(label, "miss"),
            Err(_) => inner.metrics.cache_result(label, "error"),
        }
        let value = compute().await?;
        let Some(body) = encode(&value) else {
            return Ok(unencodable());
        };
        if body.len() <= inner.settings.max_value_bytes && inner.up.load(Ordering::Acquire) {
            let (inner, stored) = (inner.clone(), body.clone());
            let ttl = inner.settings.ttl(open);
            tokio::spawn(async move { inner.set(key, stored, ttl).await });
        }
        Ok(reply(body, MISS))
    }

    /// Counts a request of the token; a 429 problem when over the limit.
    /// Lets the request through when Redis is unavailable or the limit is
    /// off.
    pub async fn rate_limit(&self, token: &str) -> Result<(), Problem> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let Some((interval, tolerance)) = inner.settings.rate else {
            return Ok(());
        };
        match inner.gcra(&rate_key(token), interval, tolerance).await {
            Ok(0) | Err(_) => Ok(()),
            Ok(wait_ms) => {
                inner.metrics.rate_limited.inc();
                Err(Problem::too_many_requests(wait_ms.max(1).div_ceil(1000)))
            }
        }
    }
}

impl Inner {
    /// The connection to use, when Redis is up.
    fn connection(&self) -> Option<ConnectionManager> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn get(self: &Arc<Self>, key: &str) -> Result<Option<Vec<u8>>, Skipped> {
        let mut conn = self.connection().ok_or(Skipped::Down)?;
        let mut get = redis::cmd("GET");
        get.arg(key);
        let get = get.query_async(&mut conn);
        self.settle(tokio::time::timeout(self.settings.timeout, get).await)
    }

    async fn set(self: &Arc<Self>, key: String, body: Bytes, ttl: Duration) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(key).arg(body.as_ref()).arg("PX").arg(ttl_ms);
        let set = set.query_async::<()>(&mut conn);
        let _ = self.settle(tokio::time::timeout(self.settings.timeout, set).await);
    }

    async fn gcra(
        self: &Arc<Self>,
        key: &str,
        interval: f64,
        tolerance: f64,
    ) -> Result<u64, Skipped> {
        let mut conn = self.connection().ok_or(Skipped::Down)?;
        let mut invocation = self.gcra.key(key);
        invocation.arg(interval).arg(tolerance);
        let run = invocation.invoke_async::<u64>(&mut conn);
        self.settle(tokio::time::timeout(self.settings.timeout, run).await)
    }

    /// Books the outcome of one operation: a success resets the failure
    /// count; an I/O error or a timeout counts towards tripping; a reply
    /// error (e.g. out of memory on SET) is that operation's failure only.
    fn settle<T>(
        self: &Arc<Self>,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Skipped> {
        match outcome {
            Ok(Ok(value)) => {
                self.failures.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) if !e.is_io_error() && !e.is_unrecoverable_error() => {
                tracing::debug!(error = %e, "Redis refused an operation");
                Err(Skipped::Failed)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                Err(Skipped::Failed)
            }
            Err(_) => {
                self.failed(&format_args!(
                    "no answer within REDIS_TIMEOUT ({:?})",
                    self.settings.timeout
                ));
                Err(Skipped::Failed)
            }
        }
    }

    fn failed(self: &Arc<Self>, cause: &dyn std::fmt::Display) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < TRIP_AFTER {
            return;
        }
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.redis_up.set(0);
            tracing::warn!(
                error = %cause,
                "Redis unavailable: answering from the database, rate limit open, until it is back"
            );
        }
        self.spawn_probe();
    }

    fn spawn_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                tokio::time::sleep(pause).await;
                match inner.open().await {
                    Ok(conn) => return inner.recovered(conn, true),
                    Err(e) => tracing::debug!(error = %e, "Redis still unavailable"),
                }
                pause = (pause * 2).min(MAX_PROBE_PAUSE);
            }
        });
    }

    /// A fresh connection that has answered a PING (a new one each time, so
    /// a connection that went silent is never reused).
    async fn open(&self) -> Result<ConnectionManager, String> {
        let connect_timeout = CONNECT_TIMEOUT.max(self.settings.timeout);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(self.settings.timeout)
            // One attempt per reconnection: the probe is the retry loop.
            .set_number_of_retries(0);
        let open = async {
            let mut conn = ConnectionManager::new_with_config(self.client.clone(), config).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(connect_timeout + self.settings.timeout, open).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {connect_timeout:?}")),
        }
    }

    fn recovered(&self, conn: ConnectionManager, log: bool) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        self.failures.store(0, Ordering::Relaxed);
        self.metrics.redis_up.set(1);
        // Probing ends before `up` is set, so a failure right after is
        // always free to start the next probe.
        self.probing.store(false, Ordering::Release);
        let was_up = self.up.swap(true, Ordering::AcqRel);
        if log && !was_up {
            tracing::info!("Redis is back: caching and rate limiting again");
        }
    }
}

const HIT: &str = "hit";
const MISS: &str = "miss";

/// The name of the header saying `hit` or `miss`.
pub const X_CACHE: &str = "x-cache";

/// The answer's JSON; `None` (logged) when it cannot be encoded.
fn encode<T: Serialize>(value: &T) -> Option<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| tracing::error!(error = %e, "encoding an answer as JSON"))
        .ok()
}

/// What `warp::reply::json` answers for a value it cannot encode.
fn unencodable() -> warp::reply::Response {
    warp::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

fn reply(body: Bytes, cache: &'static str) -> warp::reply::Response {
    let mut response = warp::http::Response::new(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static(X_CACHE),
        HeaderValue::from_static(cache),
    );
    response
}

/// The Redis key of an answer: the prefix, then the tenant, the endpoint
/// and the query's pairs, each part as `<byte length>:<bytes>,` (a
/// netstring), which no content can imitate. The query is normalized:
/// pairs with an empty value are dropped, and pairs are sorted by name,
/// keeping the order of a repeated name's values (which may matter).
pub fn cache_key(tenant: &str, endpoint: &str, query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let parts =
        tenant.len() + endpoint.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut key = String::with_capacity(CACHE_PREFIX.len() + parts + 8 * (2 + 2 * pairs.len()));
    key.push_str(CACHE_PREFIX);
    for part in [tenant, endpoint]
        .into_iter()
        .chain(pairs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
    {
        let _ = write!(key, "{}:{part},", part.len());
    }
    key
}

/// The Redis key of a token's rate-limit state: a SHA-256 of the token (the
/// first 128 bits, hex), never the token.
pub fn rate_key(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut key = String::with_capacity(RATE_PREFIX.len() + 32);
    key.push_str(RATE_PREFIX);
    for b in &digest[..16] {
        let _ = write!(key, "{b:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::SystemTime;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_ignore_order_and_empty_values() {
        let a = cache_key("acme", "llm_metrics", &q(&[("a", "1"), ("b", "2")]));
        assert_eq!(
            a,
            cache_key("acme", "llm_metrics", &q(&[("b", "2"), ("a", "1")]))
        );
        assert_eq!(
            a,
            cache_key(
                "acme",
                "llm_metrics",
                &q(&[("c", ""), ("b", "2"), ("a", "1")])
            )
        );
        assert!(a.starts_with("observatory:api:cache:"));
        assert!(
            a.ends_with(":4:acme,11:llm_metrics,1:a,1:1,1:b,1:2,"),
            "{a}"
        );
        // A repeated name keeps its values' order: a different key, never a
        // wrong answer.
        assert_ne!(
            cache_key("t", "e", &q(&[("tag", "x"), ("tag", "y")])),
            cache_key("t", "e", &q(&[("tag", "y"), ("tag", "x")]))
        );
    }

    #[test]
    fn keys_never_collide_across_parts() {
        let cases = [
            ("a:b", "e", q(&[])),
            ("a", "b:e", q(&[])),
            ("a", "b", q(&[("e", "")])),
            ("a", "b", q(&[(":e", "x")])),
            ("a", "b:e", q(&[("x", "y")])),
            ("a", "b", q(&[("e", "x,1:y")])),
            ("a", "b", q(&[("e", "x"), ("1", "y")])),
            ("1:a,", "b", q(&[])),
            ("", "1:a,1:b,", q(&[])),
            ("a,", "b", q(&[])),
            ("a", ",b", q(&[])),
            ("a", "b", q(&[("k", "v"), ("k2", "v2")])),
            ("a", "b", q(&[("k", "v,2:k2,2:v2")])),
            ("a", "b", q(&[("k", "v\u{0}")])),
        ];
        let keys: Vec<String> = cases
            .iter()
            .map(|(t, e, query)| cache_key(t, e, query))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // "a" + "b" and "" + "ab" differ too.
        assert_ne!(cache_key("a", "b", &[]), cache_key("", "ab", &[]));
        assert_ne!(cache_key("ab", "", &[]), cache_key("a", "b", &[]));
    }

    #[test]
    fn rate_keys_hide_the_token() {
        let k = rate_key("Bearer eyJhbGciOi.secret.sig");
        assert!(k.starts_with(RATE_PREFIX));
        assert_eq!(k.len(), RATE_PREFIX.len() + 32);
        assert!(!k.contains("secret"));
        assert_ne!(k, rate_key("Bearer eyJhbGciOi.secret.sih"));
        assert_eq!(k, rate_key("Bearer eyJhbGciOi.secret.sig"));
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let cache = Cache::disabled();
        let query = q(&[("a", "1")]);
        send(&cache.json("t", "e", &query, false, || async { Ok::<_, Problem>(1) }));
        send(&cache.rate_limit("Bearer x"));
        send(&Cache::connect(&args(&[]), Arc::new(Metrics::new())));
    }

    #[test]
    fn ttl_follows_the_range() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ten = Duration::from_secs(10);
        assert!(crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now
        }
        .is_open(now, ten));
        assert!(crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now + ten
        }
        .is_open(now, ten));
        assert!(crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now - Duration::from_secs(9)
        }
        .is_open(now, ten));
        assert!(crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now - ten
        }
        .is_open(now, ten));
        assert!(!crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now - Duration::from_secs(11)
        }
        .is_open(now, ten));
        assert!(!crate::filters::Range {
            from: SystemTime::UNIX_EPOCH,
            to: now - Duration::from_secs(86_400)
        }
        .is_open(now, ten));
        let settings = Settings::new(&args(&[]));
        assert_eq!(settings.ttl(true), ten);
        assert_eq!(settings.ttl(false), Duration::from_secs(3600));
    }

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        cache: CacheArgs,
    }

    fn args(extra: &[&str]) -> CacheArgs {
        let argv = ["api"].iter().chain(extra).copied();
        Wrap::try_parse_from(argv).unwrap().cache
    }

    #[test]
    fn settings_parse() {
        let a = args(&[
            "--redis-timeout",
            "20ms",
            "--redis-url",
            "redis://127.0.0.1:1/",
        ]);
        assert_eq!(a.redis_timeout, Duration::from_millis(20));
        assert_eq!(a.cache_max_value_bytes, 1 << 20);
        let s = Settings::new(&a);
        let (interval, tolerance) = s.rate.unwrap();
        assert_eq!(interval, 1e6 / f64::from(a.rate_limit_per_second));
        assert_eq!(tolerance, interval * f64::from(a.rate_limit_burst));
        assert!(Settings::new(&args(&["--rate-limit-per-second", "0"]))
            .rate
            .is_none());
        assert!(Settings::new(&args(&["--rate-limit-burst", "0"]))
            .rate
            .is_none());
        assert!(args(&["--redis-tls"]).redis_tls);
        for bad in [
            ["--redis-url", "http://x"],
            ["--redis-timeout", "0s"],
            ["--cache-ttl-open", "soon"],
        ] {
            let argv = ["api"].iter().chain(&bad).copied();
            assert!(Wrap::try_parse_from(argv).is_err(), "{bad:?}");
        }
        assert!(Wrap::try_parse_from(["api", "--redis-url", "rediss://h:6380/0"]).is_ok());
    }
}
