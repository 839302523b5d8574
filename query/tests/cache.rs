//! The cache and the rate limit against the real Redis at `REDIS_URL`
//! (default `redis://127.0.0.1:6379`), and against a Redis that is not
//! there, that goes away mid-test, or that stops answering (a TCP proxy the
//! test controls). Every test uses its own tenants and tokens, so tests run
//! in parallel against one Redis.

use observatory_api::cache::{cache_key, Cache, CacheArgs, TRIP_AFTER};
use observatory_api::metrics::Metrics;
use observatory_api::problem::Problem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use warp::http::StatusCode;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{what}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const TIMEOUT: Duration = Duration::from_millis(50);

fn args(url: &str) -> CacheArgs {
    CacheArgs {
        redis_url: Some(url.into()),
        redis_password: None,
        redis_tls: false,
        cache_ttl_open: Duration::from_secs(1),
        cache_ttl_closed: Duration::from_secs(3600),
        cache_max_value_bytes: 1 << 20,
        redis_timeout: TIMEOUT,
        rate_limit_per_second: 0,
        rate_limit_burst: 0,
    }
}

async fn connect(args: &CacheArgs) -> (Cache, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (Cache::connect(args, metrics.clone()).await, metrics)
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a call answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    x_cache: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
}

async fn body(response: warp::reply::Response) -> Answer {
    use warp::hyper::body::Body as _;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (x_cache, content_type) = (header("x-cache"), header("content-type"));
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Answer {
        status,
        x_cache,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap(),
    }
}

/// One cached call whose `compute` answers `{"n": <value>}` and counts its
/// runs; bounded so that a hang fails the test.
async fn call(
    cache: &Cache,
    tenant: &str,
    endpoint: &str,
    query: &[(String, String)],
    open: bool,
    runs: &AtomicUsize,
    value: u64,
) -> Answer {
    let compute = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Problem>(serde_json::json!({ "n": value }))
    };
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        cache.json(tenant, endpoint, query, open, compute),
    )
    .await
    .expect("a cached call must never hang")
    .expect("compute succeeded");
    body(response).await
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at REDIS_URL")
}

/// Waits until the background store of `key` is visible.
async fn stored(key: &str) -> Vec<u8> {
    let mut conn = redis().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(v) = v {
            return v;
        }
        assert!(Instant::now() < deadline, "{key} never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn absent(key: &str) -> bool {
    let mut conn = redis().await;
    let n: u64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    n == 0
}

fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_identical_call_is_a_hit() {
    let (cache, metrics) = connect(&args(&redis_url())).await;
    let tenant = unique("hit");
    let runs = AtomicUsize::new(0);
    let query = q(&[
        ("from", "2024-01-01T00:00:00Z"),
        ("to", "2024-01-02T00:00:00Z"),
    ]);
    let first = call(&cache, &tenant, "llm_metrics", &query, false, &runs, 1).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.x_cache.as_deref(), Some("miss"));
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(first.body, serde_json::json!({ "n": 1 }));
    let key = cache_key(&tenant, "llm_metrics", &query);
    assert_eq!(stored(&key).await, br#"{"n":1}"#);

    // Same query, other order, plus an empty parameter: the same entry.
    let reordered = q(&[
        ("to", "2024-01-02T00:00:00Z"),
        ("model", ""),
        ("from", "2024-01-01T00:00:00Z"),
    ]);
    let second = call(&cache, &tenant, "llm_metrics", &reordered, false, &runs, 2).await;
    assert_eq!(second.x_cache.as_deref(), Some("hit"));
    assert_eq!(second.content_type.as_deref(), Some("application/json"));
    assert_eq!(second.body, serde_json::json!({ "n": 1 }));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "compute ran once");

    let hit = "observatory_api_cache_requests_total{endpoint=\"llm_metrics\",result=\"hit\"}";
    let miss = "observatory_api_cache_requests_total{endpoint=\"llm_metrics\",result=\"miss\"}";
    assert_eq!(metric(&metrics, hit), 1.0);
    assert_eq!(metric(&metrics, miss), 1.0);
    assert_eq!(metric(&metrics, "observatory_api_redis_up"), 1.0);

    // A closed range has the long TTL.
    let mut conn = redis().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 3_500_000, "closed range TTL {ttl} ms");
}

/// A Redis of the test's own that asks for a password (`requirepass`),
/// stopped when dropped.
struct PasswordRedis {
    child: std::process::Child,
    url: String,
}

impl PasswordRedis {
    async fn start(password: &str) -> PasswordRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (the machine's Redis) must be on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        PasswordRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `REDIS_PASSWORD` authenticates to a Redis that asks for one, with a URL
/// that carries none (as the Helm chart deploys it); without it the cache is
/// bypassed, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_authenticates() {
    let server = PasswordRedis::start("pa:ss@word/with+signs").await;
    let query = q(&[
        ("from", "2024-01-01T00:00:00Z"),
        ("to", "2024-01-02T00:00:00Z"),
    ]);

    let mut with = args(&server.url);
    with.redis_password = Some("pa:ss@word/with+signs".into());
    let (cache, metrics) = connect(&with).await;
    let runs = AtomicUsize::new(0);
    // The first calls may come before the connection (and its AUTH) is up.
    until_hit(&cache, "pw", &query, &runs).await;
    assert_eq!(metric(&metrics, "observatory_api_redis_up"), 1.0);

    let (cache, metrics) = connect(&args(&server.url)).await;
    let runs = AtomicUsize::new(0);
    for value in [3, 4] {
        let answer = call(&cache, "pw", "llm_metrics", &query, false, &runs, value).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_ne!(answer.x_cache.as_deref(), Some("hit"));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "without the password every call computes"
    );
    assert_eq!(metric(&metrics, "observatory_api_redis_up"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenant_or_query_is_a_miss() {
    let (cache, _) = connect(&args(&redis_url())).await;
    let base = unique("iso");
    let runs = AtomicUsize::new(0);
    let query = q(&[("window", "1h")]);
    let a = format!("{base}-a");
    call(&cache, &a, "llm_costs", &query, false, &runs, 1).await;
    stored(&cache_key(&a, "llm_costs", &query)).await;
    assert_eq!(
        call(&cache, &a, "llm_costs", &query, false, &runs, 1)
            .await
            .x_cache
            .as_deref(),
        Some("hit")
    );

    for (tenant, endpoint, query) in [
        // Another tenant.
        (format!("{base}-b"), "llm_costs", q(&[("window", "1h")])),
        // A tenant whose name imitates a's key with the endpoint.
        (format!("{a}:llm_costs"), "", q(&[("window", "1h")])),
        // Another query.
        (a.clone(), "llm_costs", q(&[("window", "2h")])),
        (
            a.clone(),
            "llm_costs",
            q(&[("window", "1h"), ("model", "x")]),
        ),
        // Another endpoint.
        (a.clone(), "llm_metrics", q(&[("window", "1h")])),
    ] {
        let before = runs.load(Ordering::SeqCst);
        let answer = call(&cache, &tenant, endpoint, &query, false, &runs, 2).await;
        assert_eq!(
            answer.x_cache.as_deref(),
            Some("miss"),
            "{tenant} {endpoint} {query:?}"
        );
        assert_eq!(answer.body, serde_json::json!({ "n": 2 }));
        assert_eq!(runs.load(Ordering::SeqCst), before + 1);
    }
    // a's entry is untouched.
    let again = call(&cache, &a, "llm_costs", &query, false, &runs, 3).await;
    assert_eq!(again.x_cache.as_deref(), Some("hit"));
    assert_eq!(again.body, serde_json::json!({ "n": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_range_expires_after_the_short_ttl() {
    let (cache, _) = connect(&args(&redis_url())).await;
    let tenant = unique("open");
    let runs = AtomicUsize::new(0);
    let open_q = q(&[("window", "15m")]);
    let closed_q = q(&[("from", "a"), ("to", "b")]);
    call(&cache, &tenant, "search", &open_q, true, &runs, 1).await;
    call(&cache, &tenant, "search", &closed_q, false, &runs, 1).await;
    stored(&cache_key(&tenant, "search", &open_q)).await;
    stored(&cache_key(&tenant, "search", &closed_q)).await;
    let start = Instant::now();
    let hit = call(&cache, &tenant, "search", &open_q, true, &runs, 2).await;
    assert_eq!(
        (hit.x_cache.as_deref(), hit.body["n"].as_u64()),
        (Some("hit"), Some(1))
    );

    // The open answer changes once its 1 s TTL is over.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = call(&cache, &tenant, "search", &open_q, true, &runs, 2).await;
        if answer.body["n"] == 2 {
            assert_eq!(answer.x_cache.as_deref(), Some("miss"));
            break;
        }
        assert_eq!(answer.x_cache.as_deref(), Some("hit"));
        assert!(Instant::now() < deadline, "the open range never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "expired too early"
    );
    // The closed one is still there.
    let closed = call(&cache, &tenant, "search", &closed_q, false, &runs, 2).await;
    assert_eq!(
        (closed.x_cache.as_deref(), closed.body["n"].as_u64()),
        (Some("hit"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_large_answers_are_not_stored() {
    let mut a = args(&redis_url());
    a.cache_max_value_bytes = 100;
    let (cache, _) = connect(&a).await;
    let tenant = unique("err");
    let query = q(&[("x", "1")]);
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let result = cache
            .json(&tenant, "search", &query, false, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<serde_json::Value, _>(Problem::bad_parameter("x", "no"))
            })
            .await;
        let problem = result.expect_err("the compute error is returned");
        assert_eq!(problem.parameter.as_deref(), Some("x"));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "an error is never served from the cache"
    );

    let big = "y".repeat(200);
    let big_q = q(&[("big", "1")]);
    for _ in 0..2 {
        let answer = cache
            .json(&tenant, "search", &big_q, false, || async {
                Ok::<_, Problem>(serde_json::json!({ "s": big }))
            })
            .await
            .unwrap();
        assert_eq!(body(answer).await.x_cache.as_deref(), Some("miss"));
    }
    // A small answer stored after the big ones shows the stores have run.
    let small_q = q(&[("small", "1")]);
    call(&cache, &tenant, "search", &small_q, false, &runs, 1).await;
    stored(&cache_key(&tenant, "search", &small_q)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(absent(&cache_key(&tenant, "search", &query)).await);
    assert!(absent(&cache_key(&tenant, "search", &big_q)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_on_a_closed_port_means_computed_answers() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut a = args(&format!("redis://127.0.0.1:{port}"));
    a.rate_limit_per_second = 1;
    a.rate_limit_burst = 1;
    let start = Instant::now();
    let (cache, metrics) = connect(&a).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "connect must not block"
    );
    let tenant = unique("closed");
    let runs = AtomicUsize::new(0);
    for i in 0..10 {
        let start = Instant::now();
        let answer = call(
            &cache,
            &tenant,
            "llm_metrics",
            &q(&[("a", "1")]),
            false,
            &runs,
            i,
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.x_cache.as_deref(), Some("miss"));
        assert_eq!(answer.body["n"], i);
        // The rate limit fails open: 10 requests over a burst of 1.
        cache
            .rate_limit("Bearer some-token")
            .await
            .expect("fails open");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    let errors = "observatory_api_cache_requests_total{endpoint=\"llm_metrics\",result=\"error\"}";
    assert_eq!(metric(&metrics, errors), 10.0);
    assert_eq!(metric(&metrics, "observatory_api_redis_up"), 0.0);
    assert_eq!(metric(&metrics, "observatory_api_rate_limited_total"), 0.0);
}

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards to Redis.
    Forward,
    /// Closes every connection, old and new (Redis is down).
    Refuse,
    /// Holds every connection open and forwards nothing (Redis hangs).
    Blackhole,
}

/// A TCP proxy to Redis the test can take down or make hang.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Forward);
        let task = tokio::spawn(async move {
            loop {
                if let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(Self::serve(client, target, rx.clone()));
                }
            }
        });
        Proxy { addr, mode, task }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    async fn serve(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Refuse => return,
            Mode::Blackhole => {
                let _ = mode.changed().await;
                return;
            }
            Mode::Forward => {}
        }
        let Ok(mut server) = TcpStream::connect(target).await else {
            return;
        };
        tokio::select! {
            _ = copy_bidirectional(&mut client, &mut server) => return,
            _ = mode.changed() => {}
        }
        let now = *mode.borrow_and_update();
        if now == Mode::Blackhole {
            // Keep both ends open, silent, until the mode changes again.
            let _ = mode.changed().await;
        }
    }
}

async fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let host_port = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// Calls until a hit (Redis usable again), with a deadline.
async fn until_hit(cache: &Cache, tenant: &str, query: &[(String, String)], runs: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = call(cache, tenant, "search", query, false, runs, 9).await;
        if answer.x_cache.as_deref() == Some("hit") {
            return;
        }
        assert!(Instant::now() < deadline, "Redis never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis goes away, then hangs, mid-test: every call still answers, in
/// time, computed; the cache stops waiting for Redis after a few failures
/// and comes back by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_or_hanging_mid_test_means_computed_answers() {
    let proxy = Proxy::start(redis_addr().await).await;
    let mut a = args(&format!("redis://{}", proxy.addr));
    a.rate_limit_per_second = 1;
    a.rate_limit_burst = 1;
    let (cache, metrics) = connect(&a).await;
    let tenant = unique("proxy");
    let runs = AtomicUsize::new(0);
    let query = q(&[("a", "1")]);
    call(&cache, &tenant, "search", &query, false, &runs, 1).await;
    stored(&cache_key(&tenant, "search", &query)).await;
    assert_eq!(
        call(&cache, &tenant, "search", &query, false, &runs, 1)
            .await
            .x_cache
            .as_deref(),
        Some("hit")
    );
    // The burst of 1 is spent: the next request is limited.
    cache.rate_limit("Bearer proxy-token").await.unwrap();
    assert!(cache.rate_limit("Bearer proxy-token").await.is_err());

    for (mode, n) in [(Mode::Refuse, 2), (Mode::Blackhole, 9)] {
        proxy.set(mode);
        // Let the proxy's connection tasks see the change.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let outage = Instant::now();
        for i in 0..20u64 {
            let start = Instant::now();
            let answer = call(&cache, &tenant, "search", &query, false, &runs, n).await;
            let took = start.elapsed();
            assert!(
                took < Duration::from_millis(400),
                "{mode:?} call {i}: {took:?}"
            );
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.x_cache.as_deref(), Some("miss"), "{mode:?} call {i}");
            assert_eq!(answer.body["n"], n);
            cache
                .rate_limit("Bearer proxy-token")
                .await
                .expect("the rate limit fails open");
        }
        // After TRIP_AFTER failures nobody waits for Redis: 20 calls took
        // far less than 20 timeouts (each waiting would be 2 x 50 ms).
        let spent = outage.elapsed();
        assert!(
            spent < TIMEOUT * (2 * TRIP_AFTER + 10),
            "{mode:?}: 20 calls took {spent:?}"
        );
        assert_eq!(metric(&metrics, "observatory_api_redis_up"), 0.0);

        proxy.set(Mode::Forward);
        until_hit(&cache, &tenant, &query, &runs).await;
        assert_eq!(metric(&metrics, "observatory_api_redis_up"), 1.0);
    }
    let errors = "observatory_api_cache_requests_total{endpoint=\"search\",result=\"error\"}";
    assert!(metric(&metrics, errors) >= 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_per_token_with_retry_after() {
    let mut a = args(&redis_url());
    a.rate_limit_per_second = 1;
    a.rate_limit_burst = 5;
    let (cache, metrics) = connect(&a).await;
    let token = format!("Bearer {}", unique("token"));
    let other = format!("Bearer {}", unique("token"));
    for i in 0..5 {
        cache
            .rate_limit(&token)
            .await
            .unwrap_or_else(|p| panic!("request {i} within the burst: {p:?}"));
    }
    let refused = cache.rate_limit(&token).await.expect_err("over the burst");
    assert_eq!(refused.status, 429);
    let reply = refused.reply();
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers()["retry-after"], "1");
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
    // Another token is unaffected.
    cache.rate_limit(&other).await.expect("another token");
    assert!(metric(&metrics, "observatory_api_rate_limited_total") >= 1.0);

    // The token's state is under a hash, never the token.
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{}*", token.trim_start_matches("Bearer ")))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    // After Retry-After, the token may go on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.rate_limit(&token).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the limit never let the token on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn disabled_cache_computes_every_time() {
    let cache = Cache::disabled();
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let answer = call(&cache, "t", "search", &q(&[("a", "1")]), false, &runs, 1).await;
        assert_eq!(answer.x_cache.as_deref(), Some("miss"));
        assert_eq!(answer.body["n"], 1);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    cache.rate_limit("Bearer x").await.unwrap();
}
