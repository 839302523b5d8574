//! `blocksearchbench`: search over a day of Tempo blocks through the real
//! API, for BENCHMARKS.md ("Search over Tempo blocks").
//!
//! Writes 24 hours of one-minute vParquet4 blocks (realistic GenAI traces
//! from `observatory_schemas::testing`, mixed services, a planted "needle"
//! trace) into a bucket once, with a tenant index, and keeps them for later
//! runs; then starts `observatory-api` on them (no Redis: every answer
//! computed) and runs searches of different selectivity over the whole day
//! with `store=blocks`, each `--repeats` times: `GET /api/v1/traces` and
//! Tempo's `/api/search`. Reports, per search, the latency at the client
//! (p50, p99, max, over loopback), the bytes it read from object storage
//! (from the answer) and its matches; then the API's CPU seconds and peak
//! RSS (`/proc`).
//!
//! ```text
//! set -a; eval "$(integration/stack.sh up)"; set +a
//! cargo build --release -p observatory-api -p observatory-integration --bin blocksearchbench
//! OBSERVATORY_BIN_DIR=target/release target/release/blocksearchbench
//! ```
//!
//! With `--compact-window 1h` (or `24h`) the bench first runs
//! `observatory-consumer compact` once over the day (`COMPACTOR_ONCE`, the
//! minute blocks deleted as soon as they are compacted), then searches the
//! compacted blocks; give such a run its own `--url`, the minute blocks of
//! the bucket are gone afterwards.
//!
//! `BENCH_OBJECT_STORE_URL` (default `s3://observatory/blocksearchbench`,
//! the stack's S3 server, reached with `AWS_ENDPOINT` etc. as the stack
//! exports them) is where the blocks are kept; `file:///path` works too.

use anyhow::{bail, Context as _};
use clap::Parser;
use hdrhistogram::Histogram;
use object_store::ObjectStoreExt;
use observatory_consumer::tempo::store::BlockStore;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::tempo::meta::{block_id, BlockMeta};
use observatory_schemas::tempo::tenant_index::{TenantIndex, INDEX_JSON};
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockWriter, DEFAULT_ROW_GROUP_BYTES};
use observatory_schemas::testing::{kv_str, spans_by_trace, TraceGenerator};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The day the blocks cover: 2026-01-01T00:00:00Z, fixed so that a later
/// run finds the blocks of an earlier one.
const DAY_START_NS: u64 = 1_767_225_600_000_000_000;
const MINUTE_NS: u64 = 60_000_000_000;
const TENANT: &str = "bench";

/// Search over a day of Tempo blocks through the API.
#[derive(Debug, Parser)]
#[command(name = "blocksearchbench", about)]
struct Args {
    /// Where the blocks are written once and kept.
    #[arg(
        long,
        env = "BENCH_OBJECT_STORE_URL",
        default_value = "s3://observatory/blocksearchbench"
    )]
    url: String,
    /// One-minute blocks (1440: a day).
    #[arg(long, default_value_t = 1440)]
    minutes: usize,
    /// Traces a minute.
    #[arg(long, default_value_t = 100)]
    traces_per_minute: usize,
    /// Runs of each search.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// PostgreSQL the API connects to (its readiness; `store=blocks` never queries it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// The API's listen address.
    #[arg(long, env = "BENCH_API_ADDR", default_value = "127.0.0.1:18099")]
    api_addr: String,
    /// Compact the day into blocks of this window before searching (`1h`,
    /// `24h`); the minute blocks are searched when not given.
    #[arg(long, env = "BENCH_COMPACT_WINDOW")]
    compact_window: Option<String>,
}

/// The id of the needle trace, in the block of minute `minutes / 2`.
const NEEDLE: [u8; 16] = [0x5e; 16];

/// Writes the blocks unless a complete set is there; their metas.
async fn write_blocks(store: &BlockStore, args: &Args) -> anyhow::Result<()> {
    let marker = format!(
        "{TENANT}/bench-complete-{}-{}",
        args.minutes, args.traces_per_minute
    );
    if store.get(&marker).await.is_ok() {
        println!("blocks already written ({marker})");
        return Ok(());
    }
    let started = Instant::now();
    let mut metas: Vec<BlockMeta> = Vec::with_capacity(args.minutes);
    let mut spans = 0usize;
    let mut bytes = 0u64;
    for minute in 0..args.minutes {
        let minute_ns = DAY_START_NS + minute as u64 * MINUTE_NS;
        let mut gen = TraceGenerator::new(minute as u64 + 1).with_now_ns(minute_ns + MINUTE_NS / 2);
        let mut traces: BTreeMap<[u8; 16], Vec<ResourceSpans>> = BTreeMap::new();
        while traces.len() < args.traces_per_minute {
            // A request of one service, a few traces: services mix in a block.
            let request = gen.request(40);
            for (id, batches) in spans_by_trace(request) {
                let id: [u8; 16] = id.try_into().expect("16-byte trace ids");
                traces.entry(id).or_default().extend(batches);
            }
        }
        if minute == args.minutes / 2 {
            let (_, mut batches) = spans_by_trace(gen.request(8))
                .into_iter()
                .next()
                .context("a trace")?;
            for rs in &mut batches {
                for s in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
                    s.trace_id = NEEDLE.to_vec();
                    if s.parent_span_id.is_empty() {
                        s.attributes.push(kv_str("user.id", "user-needle"));
                    }
                }
            }
            traces.insert(NEEDLE, batches);
        }
        let mut writer = BlockWriter::new(traces.len() as u64, DEFAULT_ROW_GROUP_BYTES)?;
        for (id, batches) in &traces {
            let slices: Vec<&[ResourceSpans]> = batches.iter().map(std::slice::from_ref).collect();
            spans += batches
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>();
            writer.push(&TraceRow::merge(*id, &slices).context("a trace with spans")?)?;
        }
        let block = writer.finish(block_id(TENANT, 0, minute as u64, 1), TENANT)?;
        bytes += block.meta.size;
        store
            .put_block(&block, || true)
            .await?
            .context("the block was written")?;
        metas.push(block.meta);
        if minute % 120 == 119 {
            println!("  {} blocks written", minute + 1);
        }
    }
    // The tenant index, as a compactor writes it: one read lists the day.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let index = TenantIndex::new(now, metas, vec![]);
    let objects = store.object_store();
    objects
        .put(
            &object_store::path::Path::from(format!("{TENANT}/{INDEX_JSON}")),
            index.to_json_gz().into(),
        )
        .await?;
    objects
        .put(
            &object_store::path::Path::from(marker),
            bytes::Bytes::from_static(b"done").into(),
        )
        .await?;
    println!(
        "wrote {} blocks, {spans} spans, {:.1} MiB of data.parquet in {:.1?}",
        args.minutes,
        bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );
    Ok(())
}

/// Compacts the day into blocks of `window` with the real compactor, once
/// per bucket: the minute blocks are gone afterwards.
async fn compact(store: &BlockStore, args: &Args, window: &str) -> anyhow::Result<()> {
    let marker = format!("{TENANT}/bench-compacted-{window}");
    if store.get(&marker).await.is_ok() {
        println!("blocks already compacted ({marker})");
        return Ok(());
    }
    let started = Instant::now();
    let out = Command::new(observatory_integration::workspace_bin(
        "observatory-consumer",
    ))
    .arg("compact")
    .env("OBJECT_STORE_URL", &args.url)
    .env("DATABASE_URL", &args.database_url)
    .env("COMPACTOR_ONCE", "true")
    .env(
        "CONSUMER_ADMIN_ADDR",
        observatory_integration::free_addr().to_string(),
    )
    .env("TEMPO_COMPACTION_WINDOW", window)
    .env("TEMPO_COMPACTED_BLOCK_RETENTION", "0s")
    // The bench's day is fixed in the past: keep it.
    .env("RETENTION_TRACES_DAYS", "36500")
    .env("RUST_LOG", "warn")
    .output()?;
    if !out.status.success() {
        bail!("compactor failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let live = store
        .list(TENANT)
        .await?
        .into_iter()
        .filter(|n| n.ends_with("/meta.json"))
        .count();
    store
        .object_store()
        .put(
            &object_store::path::Path::from(marker),
            bytes::Bytes::from_static(b"done").into(),
        )
        .await?;
    println!(
        "compacted into {live} blocks of {window} in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// `/proc/<pid>`: (CPU seconds, peak RSS in MiB).
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, hwm_kib / 1024.0)
}

struct Api {
    child: Child,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    async fn start(args: &Args) -> anyhow::Result<Api> {
        let bin = observatory_integration::workspace_bin("observatory-api");
        let secret = "blocksearchbench-secret-0123456789";
        let child = Command::new(&bin)
            .env_remove("REDIS_URL")
            .env("API_ADDR", &args.api_addr)
            .env("DATABASE_URL", &args.database_url)
            .env("JWT_SECRET", secret)
            .env("OBJECT_STORE_URL", &args.url)
            .env("KAFKA_SCORES_TOPIC", "")
            .env("AUDIT_LOG", "false")
            .env("BLOCKS_LIST_REFRESH", "1h")
            // The index is as old as the blocks: the bench reads it anyway.
            .env("BLOCKS_TENANT_INDEX_MAX_AGE", "100000h")
            .env("BLOCKS_TENANT_CONCURRENCY", "64")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let out = Command::new(&bin)
            .args([
                "token", "--tenant", TENANT, "--role", "viewer", "--ttl", "2h",
            ])
            .env("JWT_SECRET", secret)
            .output()?;
        if !out.status.success() {
            bail!("token: {}", String::from_utf8_lossy(&out.stderr));
        }
        let api = Api {
            child,
            base: format!("http://{}", args.api_addr),
            token: String::from_utf8(out.stdout)?.trim().to_owned(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = api.http.get(format!("{}/readyz", api.base)).send().await {
                if r.status().is_success() {
                    return Ok(api);
                }
            }
            if Instant::now() > deadline {
                bail!("the API is not ready");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status();
        let body: Value = serde_json::from_slice(&r.bytes().await?)?;
        if !status.is_success() {
            bail!("{path_and_query}: {status} {body}");
        }
        Ok(body)
    }
}

fn escape(text: &str) -> String {
    observatory_integration::api::escape(text)
}

/// (matches, bytes read, complete) of an answer.
fn answer_facts(body: &Value) -> (usize, u64, bool) {
    let hits = body["traces"].as_array().map_or(0, Vec::len);
    if body.get("metrics").is_some() {
        let m = &body["metrics"];
        let bytes = m["inspectedBytes"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (hits, bytes, m["completedJobs"] == m["totalJobs"])
    } else {
        let bytes = body["blocks"]["bytes_read"].as_u64().unwrap_or(0);
        (hits, bytes, body["partial"] == false)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = BlockStore::open(&args.url, false)?;
    write_blocks(&store, &args).await?;
    if let Some(window) = &args.compact_window {
        compact(&store, &args, window).await?;
    }

    let api = Api::start(&args).await?;
    let pid = api.child.id();
    let from = observatory_schemas::civil::rfc3339_nanos(DAY_START_NS as i64);
    let to = observatory_schemas::civil::rfc3339_nanos(
        (DAY_START_NS + args.minutes as u64 * MINUTE_NS) as i64,
    );
    let window = format!("from={}&to={}&store=blocks", escape(&from), escape(&to));
    let (start_s, end_s) = (
        DAY_START_NS / 1_000_000_000,
        (DAY_START_NS + args.minutes as u64 * MINUTE_NS) / 1_000_000_000,
    );
    let tempo = |q: &str| {
        format!(
            "/api/search?q={}&start={start_s}&end={end_s}&limit=20&store=blocks",
            escape(q)
        )
    };
    let list = |filters: &str| format!("/api/v1/traces?{window}&limit=50{filters}");
    let searches: Vec<(&str, String)> = vec![
        ("list, no condition (newest 50)", list("")),
        ("list, service=support-bot", list("&service=support-bot")),
        ("list, status=error", list("&status=error")),
        (
            "list, name=execute_tool run_sql",
            list(&format!("&name={}", escape("execute_tool run_sql"))),
        ),
        (
            "list, attr model = claude-3-5-haiku",
            list(&format!(
                "&attr={}",
                escape("gen_ai.request.model:eq:claude-3-5-haiku-20241022")
            )),
        ),
        (
            "list, attr user.id = needle (1 trace a day)",
            list(&format!("&attr={}", escape("user.id:eq:user-needle"))),
        ),
        (
            "list, name = no such span (none)",
            list(&format!("&name={}", escape("no such span"))),
        ),
        (
            "list, min_duration=2s sort=duration (whole day)",
            list("&min_duration=2s&sort=duration"),
        ),
        (
            "tempo, {span.gen_ai.request.model=\"gpt-4o-mini\"}",
            tempo(r#"{ span.gen_ai.request.model = "gpt-4o-mini" }"#),
        ),
        (
            "tempo, {span.user.id=\"user-needle\"}",
            tempo(r#"{ span.user.id = "user-needle" }"#),
        ),
        (
            "tempo, {status=error && resource.service.name=\"search-api\"}",
            tempo(r#"{ status = error && resource.service.name = "search-api" }"#),
        ),
    ];

    // The first search lists the blocks (the tenant index) and reads every
    // footer it needs: the cold start.
    let (cpu0, _) = usage(pid);
    let started = Instant::now();
    let first = api.get(&searches[5].1).await?;
    let cold = started.elapsed();
    let (hits, bytes, complete) = answer_facts(&first);
    let (cpu1, rss1) = usage(pid);
    println!(
        "cold: {} in {:.0?}: {hits} matches, {:.2} MiB read, complete {complete}, {:.2} CPU-s, peak RSS {rss1:.0} MiB",
        searches[5].0,
        cold,
        bytes as f64 / (1 << 20) as f64,
        cpu1 - cpu0
    );

    println!(
        "\n| search | p50 | p99 | max | bytes read | matches | complete | CPU per search |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    );
    let (cpu_start, _) = usage(pid);
    let mut total = 0usize;
    for (name, path) in &searches {
        let mut h = Histogram::<u64>::new(3)?;
        let mut facts = (0, 0, true);
        let (c0, _) = usage(pid);
        for _ in 0..args.repeats {
            let t = Instant::now();
            let body = api.get(path).await?;
            h.record(t.elapsed().as_micros() as u64)?;
            facts = answer_facts(&body);
        }
        let (c1, _) = usage(pid);
        total += args.repeats;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} MiB | {} | {} | {:.0} ms |",
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1e3,
            facts.1 as f64 / (1 << 20) as f64,
            facts.0,
            if facts.2 { "yes" } else { "no (budget)" },
            (c1 - c0) / args.repeats as f64 * 1e3,
        );
    }
    let (cpu_end, rss) = usage(pid);
    println!(
        "\n{total} warm searches: {:.1} CPU-s in the API; peak RSS {rss:.0} MiB",
        cpu_end - cpu_start
    );
    Ok(())
}
