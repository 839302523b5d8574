//! Benchmark of the Tempo block lifecycle: writes a day of one-minute
//! blocks into a bucket, runs `observatory-consumer compact` on it (under
//! `/usr/bin/time`: CPU seconds and peak RSS), then looks traces up by id
//! through the API (`GET /api/v1/traces/{id}`, PostgreSQL holding none of
//! them, so every lookup reads the compacted blocks): latency percentiles
//! and bytes read per lookup (the API's `blocks_read_bytes` counter).
//!
//! Needs the stack (`integration/stack.sh up`) for the S3 server and
//! PostgreSQL; run the release binaries (`OBSERVATORY_BIN_DIR=target/release`).
//! The command and the figures are in BENCHMARKS.md.

use clap::Parser;
use hdrhistogram::Histogram;
use observatory_integration::api::{token, SECRET};
use observatory_integration::bucket::{local_bucket, s3_bucket, s3_endpoint};
use observatory_integration::minute_blocks;
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{free_addr, now_ns, workspace_bin};
use observatory_schemas::tempo::meta::SINGLE_TENANT;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// One-minute blocks to write (1440: a day).
    #[arg(long, default_value_t = 1440)]
    minutes: usize,
    /// Spans per block.
    #[arg(long, default_value_t = 1000)]
    spans_per_block: usize,
    /// `s3` (the stack's server) or `local`.
    #[arg(long, default_value = "s3")]
    backend: String,
    /// TEMPO_COMPACTION_WINDOW.
    #[arg(long, default_value = "1h")]
    window: String,
    /// TEMPO_ROW_GROUP_BYTES of the outputs.
    #[arg(long, default_value_t = 64 << 20)]
    row_group_bytes: usize,
    /// Trace-by-id lookups.
    #[arg(long, default_value_t = 300)]
    lookups: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bucket = match args.backend.as_str() {
        "local" => local_bucket(),
        _ => s3_bucket(&s3_endpoint()),
    };
    let now = now_ns();
    let first = now - now % 86_400_000_000_000 - 2 * 86_400_000_000_000;
    let started = Instant::now();
    let written = minute_blocks::write_keeping(
        &bucket.store,
        SINGLE_TENANT,
        first,
        args.minutes,
        args.spans_per_block,
        7,
        minute_blocks::Keep::Counts,
    )
    .await;
    let input_bytes: u64 = written.blocks.iter().map(|m| m.size).sum();
    println!(
        "wrote {} blocks, {} traces, {} spans ({} with duplicates), {:.1} MiB of data.parquet in {:.1} s",
        written.blocks.len(),
        written.traces.len(),
        written.spans,
        written.spans_written,
        input_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    // Compaction, measured by /usr/bin/time: wall, user, system, max RSS.
    let mut command = std::process::Command::new("/usr/bin/time");
    command
        .args(["-f", "TIME %e %U %S %M"])
        .arg(workspace_bin("observatory-consumer"))
        .arg("compact")
        .env("COMPACTOR_ONCE", "true")
        .env("CONSUMER_ADMIN_ADDR", free_addr().to_string())
        .env("TEMPO_COMPACTED_BLOCK_RETENTION", "0s")
        .env("TEMPO_COMPACTION_WINDOW", &args.window)
        .env("TEMPO_ROW_GROUP_BYTES", args.row_group_bytes.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    for (k, v) in &bucket.env {
        command.env(k, v);
    }
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "compactor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let time: Vec<f64> = stderr
        .lines()
        .find_map(|l| l.strip_prefix("TIME "))
        .ok_or_else(|| anyhow::anyhow!("no /usr/bin/time line: {stderr}"))?
        .split(' ')
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let (wall, cpu, rss_kib) = (time[0], time[1] + time[2], time[3]);
    // Spans every job wrote (each level rewrites them) and bytes it read.
    let (mut spans, mut read, mut jobs) = (0u64, 0u64, 0u64);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["fields"]["message"] == "compaction job done" {
            jobs += 1;
            spans += v["fields"]["spans"].as_u64().unwrap_or(0);
            read += v["fields"]["read_bytes"].as_u64().unwrap_or(0);
        }
    }
    let live: Vec<String> = bucket
        .store
        .list(SINGLE_TENANT)
        .await?
        .into_iter()
        .filter(|n| n.ends_with("/meta.json"))
        .collect();
    let mut largest = 0u64;
    for name in &live {
        let meta: observatory_schemas::tempo::meta::BlockMeta =
            serde_json::from_slice(&bucket.store.get(name).await?)?;
        largest = largest.max(meta.size);
    }
    println!(
        "compaction: {jobs} jobs, {} blocks -> {} blocks (largest {:.1} MiB), {:.1} s wall, {:.1} CPU-s, peak RSS {:.0} MiB",
        written.blocks.len(),
        live.len(),
        largest as f64 / 1048576.0,
        wall,
        cpu,
        rss_kib / 1024.0
    );
    println!(
        "  {spans} spans written over all levels ({:.0} per CPU-second; {:.2} CPU-s per million); the day's {} spans: {:.0} per CPU-second; {:.1} MiB read",
        spans as f64 / cpu,
        cpu / spans as f64 * 1e6,
        written.spans,
        written.spans as f64 / cpu,
        read as f64 / 1048576.0
    );

    // Trace by id through the API.
    let db = TestDb::create().await;
    let migrate = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()?;
    anyhow::ensure!(migrate.status.success(), "migrate failed");
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        // Every lookup a different id: no answer comes from the cache.
        ("RATE_LIMIT_PER_SECOND", "100000".to_owned()),
    ];
    env.extend(bucket.env.iter().map(|(k, v)| (*k, v.clone())));
    let api = Service::api(&env);
    api.wait_ready(Duration::from_secs(60)).await;
    let viewer = token("default", "viewer", "1h");
    let client = reqwest::Client::new();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut bytes = Histogram::<u64>::new(3)?;
    let step = (written.traces.len() / args.lookups).max(1);
    for id in written.traces.keys().step_by(step).take(args.lookups) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let before = api.metric("observatory_api_blocks_read_bytes").await;
        let t = Instant::now();
        let answer = client
            .get(format!("http://{}/api/v1/traces/{hex}", api.admin))
            .bearer_auth(&viewer)
            .send()
            .await?;
        let status = answer.status();
        answer.bytes().await?;
        latency.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(status == 200, "trace {hex}: {status}");
        let after = api.metric("observatory_api_blocks_read_bytes").await;
        bytes.record((after - before) as u64)?;
    }
    println!(
        "trace by id over {} live blocks, {} lookups: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; bytes read p50 {:.0} KiB, p99 {:.0} KiB, max {:.0} KiB",
        live.len(),
        latency.len(),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
        bytes.value_at_quantile(0.5) as f64 / 1024.0,
        bytes.value_at_quantile(0.99) as f64 / 1024.0,
        bytes.max() as f64 / 1024.0
    );
    Ok(())
}
