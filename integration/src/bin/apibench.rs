//! `apibench`: the query-API benchmark of BENCHMARKS.md, against a running
//! `observatory-api` over a loaded database (`integration/bench-api.sh`).
//!
//! Phases, each reported with latency percentiles measured at the client
//! over loopback with keep-alive (an upper bound of the server time):
//! 1. trace by id, random ids sampled from PostgreSQL, one at a time;
//!    then the trace list over 24 hours, uncached (each request a distinct
//!    `to`): every sort, page 1 and page 1 000 (by cursor, 50 a page), and
//!    filters by model, user, session (summary columns) and by a span
//!    attribute and a span name (checked on the spans);
//! 2. a 24-hour `/llm/metrics` query uncached: each request has a distinct
//!    `to` (so a distinct cache key) over the same amount of data;
//! 3. the same query cached, one at a time;
//! 4. cached throughput: `--concurrency` connections for `--duration`.
//!
//! ```text
//! apibench --api http://127.0.0.1:18080 --token "$TOKEN" --database-url "$DATABASE_URL"
//! ```

use anyhow::{bail, Context as _};
use clap::Parser;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Query-API benchmark.
#[derive(Debug, Parser)]
#[command(name = "apibench", about)]
struct Args {
    /// Base URL of the API.
    #[arg(long, env = "APIBENCH_API", default_value = "http://127.0.0.1:18080")]
    api: String,
    /// Bearer token (a viewer of the benchmark tenant).
    #[arg(long, env = "APIBENCH_TOKEN")]
    token: String,
    /// PostgreSQL, to sample trace ids.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The tenant of the data.
    #[arg(long, env = "APIBENCH_TENANT", default_value = "bench")]
    tenant: String,
    /// Requests of each sequential phase.
    #[arg(long, env = "APIBENCH_REQUESTS", default_value_t = 2000)]
    requests: usize,
    /// Connections of the throughput phase.
    #[arg(long, env = "APIBENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Requests of each trace-list case.
    #[arg(long, env = "APIBENCH_LIST_REQUESTS", default_value_t = 200)]
    list_requests: usize,
    /// Length of the throughput phase.
    #[arg(long, env = "APIBENCH_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    observatory_schemas::civil::rfc3339_nanos(ns)
}

struct Client {
    http: reqwest::Client,
    api: String,
    auth: String,
}

impl Client {
    /// GETs `path`; the latency and the X-Cache header.
    async fn get(&self, path: &str) -> anyhow::Result<(Duration, String)> {
        let (took, cache, _) = self.get_all(path).await?;
        Ok((took, cache))
    }

    /// GETs `path`; the latency and the body.
    async fn get_body(&self, path: &str) -> anyhow::Result<(Duration, String)> {
        let (took, _, body) = self.get_all(path).await?;
        Ok((took, body))
    }

    async fn get_all(&self, path: &str) -> anyhow::Result<(Duration, String, String)> {
        let start = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .header("authorization", &self.auth)
            .send()
            .await?;
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.bytes().await?;
        let took = start.elapsed();
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("{path}: {status}: {body}");
        }
        Ok((took, cache, body))
    }
}

fn report(name: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name}: n={} p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
        h.len(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Runs `paths` one at a time after `warmup` unrecorded ones; checks X-Cache.
async fn sequential(
    client: &Client,
    name: &str,
    paths: &[String],
    warmup: usize,
    want_cache: Option<&str>,
) -> anyhow::Result<()> {
    let mut h = histogram();
    let mut partial = 0;
    for (i, path) in paths.iter().enumerate() {
        let (took, cache, body) = client.get_all(path).await?;
        if i >= warmup && body.contains("\"partial\":true") {
            partial += 1;
        }
        if let Some(want) = want_cache {
            if i >= warmup && cache != want {
                bail!("{name}: {path} was a cache {cache:?}, expected {want}");
            }
        }
        if i >= warmup {
            h.record(took.as_micros().max(1) as u64)?;
        } else if i + 1 == warmup {
            // Misses are stored in the background: let the last one land.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    report(name, &h);
    if partial > 0 {
        println!(
            "{name}: {partial} of {} answers partial (time budget spent)",
            h.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    let rows = db
        .query(
            "SELECT DISTINCT trace_id FROM spans TABLESAMPLE SYSTEM (0.2) WHERE tenant = $1 LIMIT $2",
            &[&args.tenant, &(args.requests as i64 + 200)],
        )
        .await?;
    if rows.len() < 100 {
        bail!("only {} trace ids sampled: is the data loaded?", rows.len());
    }
    let client = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency + 4)
            .build()?,
        api: args.api.trim_end_matches('/').to_owned(),
        auth: format!("Bearer {}", args.token),
    };

    // 1. Trace by id.
    let ids: Vec<String> = rows
        .iter()
        .map(|r| {
            let id: &[u8] = r.get(0);
            let mut hex = String::new();
            observatory_schemas::kafka::push_hex(&mut hex, id);
            format!("/api/v1/traces/{hex}")
        })
        .collect();
    sequential(&client, "trace by id", &ids, 100, None).await?;

    // The trace list.
    let now = SystemTime::now();
    let window = |i: usize| {
        let to = now - Duration::from_secs(i as u64 + 1);
        format!(
            "from={}&to={}",
            rfc3339(to - Duration::from_secs(86_400)),
            rfc3339(to)
        )
    };
    let n = args.list_requests;
    for sort in ["start_time", "duration", "cost", "tokens", "span_count"] {
        let paths: Vec<String> = (0..n + 10)
            .map(|i| format!("/api/v1/traces?{}&sort={sort}&limit=50", window(i)))
            .collect();
        sequential(
            &client,
            &format!("list 24h sort={sort} page 1"),
            &paths,
            10,
            Some("miss"),
        )
        .await?;
        // The cursor after 999 pages of 50: walked in pages of 1 000.
        let mut cursor = String::new();
        for page in 0..50 {
            let limit = if page == 49 { 950 } else { 1000 };
            let (_, body) = client
                .get_body(&format!(
                    "/api/v1/traces?{}&sort={sort}&limit={limit}{cursor}",
                    window(0)
                ))
                .await?;
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let next = v["next_cursor"].as_str().context("a next page")?;
            cursor = format!("&cursor={next}");
        }
        let paths: Vec<String> = (0..n + 10)
            .map(|i| {
                format!(
                    "/api/v1/traces?{}&sort={sort}&limit=50{cursor}",
                    window(i + n + 10)
                )
            })
            .collect();
        sequential(
            &client,
            &format!("list 24h sort={sort} page 1000"),
            &paths,
            10,
            Some("miss"),
        )
        .await?;
    }
    for (label, filter) in [
        ("model", "model=gpt-4o"),
        ("user", "user=user-7"),
        ("session", "session=s-777"),
        ("model, sort=cost", "model=claude-3-5-haiku&sort=cost"),
        ("attribute (spans)", "attr=tier:eq:gold"),
        ("span name (spans)", "name=tool%20search&sort=duration"),
    ] {
        let paths: Vec<String> = (0..n + 10)
            .map(|i| format!("/api/v1/traces?{}&{filter}&limit=50", window(i)))
            .collect();
        sequential(
            &client,
            &format!("list 24h {label}"),
            &paths,
            10,
            Some("miss"),
        )
        .await?;
    }

    // 2. and 3. The 24-hour metrics query, uncached then cached.
    for (label, query) in [
        ("bucket=1h", "bucket=1h"),
        ("bucket=1h&group_by=model", "bucket=1h&group_by=model"),
        ("bucket=5m", "bucket=5m"),
    ] {
        let n = (args.requests / 10).max(50);
        let uncached: Vec<String> = (0..n + 10)
            .map(|i| {
                let to = now - Duration::from_secs(i as u64 + 1);
                let from = to - Duration::from_secs(86_400);
                format!(
                    "/api/v1/llm/metrics?from={}&to={}&{query}",
                    rfc3339(from),
                    rfc3339(to)
                )
            })
            .collect();
        sequential(
            &client,
            &format!("metrics 24h {label} uncached"),
            &uncached,
            10,
            Some("miss"),
        )
        .await?;
        // The first request stores the answer (a window ending now has the
        // short TTL, which the uncached phase may outlast).
        let cached = vec![uncached[0].clone(); args.requests + 1];
        sequential(
            &client,
            &format!("metrics 24h {label} cached"),
            &cached,
            1,
            Some("hit"),
        )
        .await?;
    }

    // 4. Cached throughput.
    let path = Arc::new(format!(
        "/api/v1/llm/metrics?from={}&to={}&bucket=1h",
        rfc3339(now - Duration::from_secs(86_401)),
        rfc3339(now - Duration::from_secs(1))
    ));
    let client = Arc::new(client);
    client.get(&path).await?;
    tokio::time::sleep(Duration::from_millis(50)).await; // the miss is stored in the background
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    println!("throughput: start");
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, path, stop, done, failed) = (
                client.clone(),
                path.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&path).await {
                        Ok((_, cache)) if cache == "hit" => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("first failure: {other:?}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!("throughput: end");
    println!(
        "cached throughput: {n} requests in {secs:.1}s = {:.0} req/s over {} connections, {} failed or not hits",
        n as f64 / secs,
        args.concurrency,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
