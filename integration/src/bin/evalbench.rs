//! `evalbench`: the scores, sessions and users benchmark of BENCHMARKS.md,
//! against a running `observatory-api` over a database loaded by
//! `integration/bench-evaluations.sh`.
//!
//! Phases, latencies measured at the client over loopback with keep-alive
//! (an upper bound of the server time), every request uncached (each list
//! request has a distinct `to`, each detail a distinct id):
//! 1. the sessions list, each sort, page 1 and page 100 (by cursor), and
//!    filtered by user and by a mean score;
//! 2. the users list, each sort, page 1 and page 100;
//! 3. session detail (the transcript) and user detail of random ones;
//! 4. score writes: `--concurrency` clients POST batches of `--batch`
//!    scores on sampled traces for `--duration`; the rate is counted from
//!    the first request to the last score stored (rows in `scores`).
//!
//! ```text
//! evalbench --api http://127.0.0.1:18080 --token "$EDITOR_TOKEN" --database-url "$DATABASE_URL"
//! ```

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser)]
struct Args {
    /// The API.
    #[arg(long, env = "EVALBENCH_API", default_value = "http://127.0.0.1:18080")]
    api: String,
    /// An editor token of the tenant.
    #[arg(long, env = "EVALBENCH_TOKEN")]
    token: String,
    /// The loaded database.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The tenant.
    #[arg(long, env = "EVALBENCH_TENANT", default_value = "bench")]
    tenant: String,
    /// Requests per list and detail case.
    #[arg(long, env = "EVALBENCH_REQUESTS", default_value_t = 200)]
    requests: usize,
    /// Concurrent score writers.
    #[arg(long, env = "EVALBENCH_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Scores per POST.
    #[arg(long, env = "EVALBENCH_BATCH", default_value_t = 100)]
    batch: usize,
    /// How long the writers write.
    #[arg(long, env = "EVALBENCH_DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

struct Client {
    http: reqwest::Client,
    api: String,
    auth: String,
}

impl Client {
    async fn get(&self, path: &str) -> anyhow::Result<(Duration, serde_json::Value)> {
        let start = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .header("authorization", &self.auth)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = start.elapsed();
        if !status.is_success() {
            bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok((took, serde_json::from_slice(&body)?))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
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

/// `to` a distinct second before now per request: a distinct cache key.
fn window(i: usize) -> String {
    let to = SystemTime::now() - Duration::from_secs(i as u64 + 1);
    let from = to - Duration::from_secs(86_400);
    let f = |t: SystemTime| {
        observatory_schemas::civil::rfc3339_nanos(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64 * 1_000_000_000,
        )
    };
    format!("from={}&to={}", f(from), f(to))
}

/// Runs `path(i)` for i in 0..n, one at a time, after 10 unrecorded.
async fn sequential(
    client: &Client,
    name: &str,
    n: usize,
    path: impl Fn(usize) -> String,
    check: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<()> {
    let mut h = histogram();
    for i in 0..n + 10 {
        let p = path(i);
        let (took, body) = client.get(&p).await?;
        if !check(&body) {
            bail!("{name}: {p}: unexpected answer {body}");
        }
        if i >= 10 {
            h.record(took.as_micros().max(1) as u64)?;
        }
    }
    report(name, &h);
    Ok(())
}

/// The cursor of page `pages` of `list` (50 a page).
async fn cursor_at(client: &Client, list: &str, key: &str, pages: usize) -> anyhow::Result<String> {
    let mut cursor = String::new();
    for _ in 1..pages {
        let sep = if cursor.is_empty() {
            String::new()
        } else {
            format!("&cursor={cursor}")
        };
        let (_, body) = client.get(&format!("{list}&limit=50{sep}")).await?;
        cursor = body["next_cursor"]
            .as_str()
            .with_context(|| format!("{list}: fewer pages than {pages} ({key})"))?
            .to_owned();
    }
    Ok(cursor)
}

use observatory_integration::api::escape;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (db, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    let client = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency + 4)
            .build()?,
        api: args.api.trim_end_matches('/').to_owned(),
        auth: format!("Bearer {}", args.token),
    };
    let sample = |sql: &'static str| {
        let db = &db;
        let tenant = args.tenant.clone();
        async move {
            let rows = db.query(sql, &[&tenant]).await?;
            Ok::<Vec<String>, anyhow::Error>(rows.iter().map(|r| r.get(0)).collect())
        }
    };
    // Sessions with traces (the list also holds sessions without), users.
    let sessions = sample(
        "SELECT session_id FROM session_traces TABLESAMPLE SYSTEM (1) WHERE tenant = $1 LIMIT 2000",
    )
    .await?;
    let users =
        sample("SELECT user_id FROM user_summaries WHERE tenant = $1 ORDER BY random() LIMIT 2000")
            .await?;
    if sessions.len() < 50 || users.len() < 50 {
        bail!("too few sessions or users sampled: is the data loaded?");
    }
    let n = args.requests;
    let has = |key: &'static str| {
        move |b: &serde_json::Value| b[key].as_array().is_some_and(|a| !a.is_empty())
    };

    // 1. Sessions.
    for sort in ["last_activity", "cost", "length"] {
        sequential(
            &client,
            &format!("sessions sort={sort} page 1"),
            n,
            |i| format!("/api/v1/sessions?sort={sort}&limit=50&{}", window(i)),
            has("sessions"),
        )
        .await?;
        let list = format!("/api/v1/sessions?sort={sort}&{}", window(n + 50));
        let cursor = cursor_at(&client, &list, sort, 100).await?;
        // Page 100 by its cursor, each request a distinct window (a distinct
        // cache key); the cursor, not the window, places the page.
        sequential(
            &client,
            &format!("sessions sort={sort} page 100"),
            n,
            |i| {
                format!(
                    "/api/v1/sessions?sort={sort}&limit=50&cursor={cursor}&{}",
                    window(i)
                )
            },
            has("sessions"),
        )
        .await?;
    }
    sequential(
        &client,
        "sessions user=",
        n,
        |i| {
            format!(
                "/api/v1/sessions?user={}&{}",
                escape(&users[i % users.len()]),
                window(i)
            )
        },
        |_| true,
    )
    .await?;
    sequential(
        &client,
        "sessions score=helpfulness<0.3",
        n,
        |i| {
            format!(
                "/api/v1/sessions?score=helpfulness&max_score=0.3&limit=50&{}",
                window(i)
            )
        },
        |_| true,
    )
    .await?;

    // 2. Users.
    for sort in ["last_seen", "cost", "calls"] {
        sequential(
            &client,
            &format!("users sort={sort} page 1"),
            n,
            |i| format!("/api/v1/users?sort={sort}&limit=50&{}", window(i)),
            has("users"),
        )
        .await?;
    }

    // 3. Details.
    sequential(
        &client,
        "session detail",
        n,
        |i| format!("/api/v1/sessions/{}", escape(&sessions[i % sessions.len()])),
        has("turns"),
    )
    .await?;
    sequential(
        &client,
        "user detail",
        n,
        |i| {
            format!(
                "/api/v1/users/{}?{}",
                escape(&users[i % users.len()]),
                window(i)
            )
        },
        |_| true,
    )
    .await?;

    // 4. Score writes, through the broker to rows.
    let traces: Vec<String> = db
        .query(
            "SELECT trace_id FROM trace_summaries TABLESAMPLE SYSTEM (1) WHERE tenant = $1 LIMIT 5000",
            &[&args.tenant],
        )
        .await?
        .iter()
        .map(|r| {
            let id: &[u8] = r.get(0);
            let mut hex = String::new();
            observatory_schemas::kafka::push_hex(&mut hex, id);
            hex
        })
        .collect();
    let before: i64 = db
        .query_one("SELECT count(*) FROM scores", &[])
        .await?
        .get(0);
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut writers = Vec::new();
    let client = Arc::new(client);
    let traces = Arc::new(traces);
    // Ids of this run only: a second run must add rows, not replace them.
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for w in 0..args.concurrency {
        let (client, sent, traces) = (client.clone(), sent.clone(), traces.clone());
        let (batch, duration) = (args.batch, args.duration);
        writers.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut k = 0usize;
            while start.elapsed() < duration {
                let body: Vec<serde_json::Value> = (0..batch)
                    .map(|j| {
                        k += 1;
                        serde_json::json!({
                            "id": format!("bench-{run}-{w}-{k}-{j}"),
                            "trace_id": traces[(w * 7919 + k) % traces.len()],
                            "name": "bench_quality",
                            "value": (k % 10) as f64 / 10.0,
                            "source": "eval",
                        })
                    })
                    .collect();
                let t = Instant::now();
                let response = client
                    .http
                    .post(format!("{}/api/v1/scores", client.api))
                    .header("authorization", &client.auth)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&body)?)
                    .send()
                    .await?;
                if response.status().as_u16() != 202 {
                    bail!(
                        "POST /api/v1/scores: {}: {}",
                        response.status(),
                        response.text().await?
                    );
                }
                h.record(t.elapsed().as_micros().max(1) as u64)?;
                sent.fetch_add(batch as u64, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let mut h = histogram();
    for w in writers {
        h.add(w.await??)?;
    }
    let acked = start.elapsed();
    let total = sent.load(Ordering::Relaxed) as i64;
    report(
        &format!("POST /api/v1/scores ({} a request)", args.batch),
        &h,
    );
    loop {
        let now: i64 = db
            .query_one("SELECT count(*) FROM scores", &[])
            .await?
            .get(0);
        if now - before >= total {
            break;
        }
        if start.elapsed() > args.duration + Duration::from_secs(120) {
            bail!("only {} of {total} scores stored", now - before);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = start.elapsed();
    println!(
        "score writes: {total} scores, acknowledged at {:.0}/s, stored at {:.0}/s (first request to last row, {:.1} s)",
        total as f64 / acked.as_secs_f64(),
        total as f64 / stored.as_secs_f64(),
        stored.as_secs_f64()
    );
    Ok(())
}
