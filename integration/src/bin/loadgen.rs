//! `loadgen`: drives an OTLP endpoint with realistic LLM-application traces.
//!
//! Requests are built and encoded before the clock starts (GenAI traces of 1
//! to 20 spans in every dialect, optional prompt and completion text, about
//! 2% errors), so the generator spends its CPU on sending, not encoding. It
//! sends over OTLP/gRPC, OTLP/HTTP protobuf or OTLP/HTTP JSON with a chosen
//! concurrency and, optionally, a target rate, then reports spans/s, request
//! latency percentiles and refusals. Given the collector's pid it also
//! reports the collector's CPU seconds per million spans and its peak RSS,
//! read from /proc.
//!
//! ```text
//! loadgen --endpoint 127.0.0.1:4317 --protocol grpc --concurrency 8 --duration 30s
//! ```

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use observatory_integration::grpc::{RawCodec, TRACE_EXPORT_PATH};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::TraceGenerator;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

/// OTLP load generator with LLM-application traces.
#[derive(Debug, Parser)]
#[command(name = "loadgen", about)]
struct Args {
    /// host:port of the OTLP receiver (4317 for gRPC, 4318 for HTTP).
    #[arg(long, env = "LOADGEN_ENDPOINT", default_value = "127.0.0.1:4317")]
    endpoint: String,
    /// Transport and encoding.
    #[arg(long, env = "LOADGEN_PROTOCOL", value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// Requests in flight at once.
    #[arg(long, env = "LOADGEN_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Target spans per second in total (0: as fast as answers come).
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 0)]
    rate: u64,
    /// How long to send.
    #[arg(long, env = "LOADGEN_DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Spans per request.
    #[arg(long, env = "LOADGEN_SPANS_PER_REQUEST", default_value_t = 512)]
    spans_per_request: usize,
    /// Bytes of prompt and completion text per model call (0: none).
    #[arg(long, env = "LOADGEN_CONTENT_BYTES", default_value_t = 0)]
    content_bytes: usize,
    /// Distinct pre-encoded requests to cycle through.
    #[arg(long, env = "LOADGEN_DISTINCT", default_value_t = 64)]
    distinct: usize,
    /// Seed of the traces.
    #[arg(long, env = "LOADGEN_SEED", default_value_t = 1)]
    seed: u64,
    /// Tenant sent in X-Scope-OrgID.
    #[arg(long, env = "LOADGEN_TENANT", default_value = "default")]
    tenant: String,
    /// Pid of the collector, to report its CPU time and peak memory.
    #[arg(long, env = "LOADGEN_COLLECTOR_PID")]
    collector_pid: Option<u32>,
    /// Give every request sent new trace and span ids (protobuf only), so a
    /// sink downstream stores every span instead of deduplicating repeats;
    /// the ids differ from one run to the next too (a trace id seen again an
    /// hour later would be the same trace, an hour long).
    #[arg(long, env = "LOADGEN_UNIQUE_IDS", default_value_t = false)]
    unique_ids: bool,
    /// Stop after this many requests in total (0: no limit).
    #[arg(long, env = "LOADGEN_MAX_REQUESTS", default_value_t = 0)]
    max_requests: u64,
}

/// What the workers found.
#[derive(Default)]
struct Tally {
    latency_us: Option<Histogram<u64>>,
    ok: u64,
    refused: BTreeMap<String, u64>,
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
fn process_usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux for every architecture we run on.
    Ok((ticks / 100.0, hwm))
}

/// A pre-encoded request and where its ids sit in the bytes.
struct Encoded {
    bytes: Bytes,
    /// Offsets of the last 4 bytes of every trace id, span id and parent
    /// span id, for `--unique-ids`.
    id_tails: Vec<usize>,
}

impl Encoded {
    /// The request with every id's last 4 bytes XORed with `seq ^ salt`
    /// (`salt` chosen once per run): new traces and spans, with every
    /// parent link kept.
    fn with_fresh_ids(&self, seq: u32, salt: u32) -> Bytes {
        let mask = seq ^ salt;
        if mask == 0 || self.id_tails.is_empty() {
            return self.bytes.clone();
        }
        let mut out = self.bytes.to_vec();
        let mask = mask.to_le_bytes();
        for &at in &self.id_tails {
            for i in 0..4 {
                out[at + i] ^= mask[i];
            }
        }
        Bytes::from(out)
    }
}

/// Offsets of the last 4 bytes of each occurrence of each id in `bytes`.
fn id_tails(request: &ExportTraceServiceRequest, bytes: &[u8]) -> Vec<usize> {
    let mut ids: Vec<&[u8]> = Vec::new();
    for span in observatory_schemas::testing::spans_of(request) {
        ids.push(&span.trace_id);
        ids.push(&span.span_id);
    }
    ids.sort();
    ids.dedup();
    let mut tails = Vec::new();
    for id in ids {
        let mut from = 0;
        while let Some(pos) = bytes[from..].windows(id.len()).position(|w| w == id) {
            let at = from + pos;
            tails.push(at + id.len() - 4);
            from = at + id.len();
        }
    }
    tails.sort_unstable();
    tails.dedup();
    tails
}

fn build_requests(args: &Args) -> anyhow::Result<Vec<Encoded>> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut generator = TraceGenerator::new(args.seed)
        .with_content_bytes(args.content_bytes)
        .with_now_ns(now_ns);
    (0..args.distinct.max(1))
        .map(|_| {
            let request: ExportTraceServiceRequest = generator.request(args.spans_per_request);
            Ok(match args.protocol {
                Protocol::Grpc | Protocol::HttpProtobuf => {
                    let bytes = request.encode_to_vec();
                    let id_tails = if args.unique_ids {
                        id_tails(&request, &bytes)
                    } else {
                        Vec::new()
                    };
                    Encoded {
                        bytes: Bytes::from(bytes),
                        id_tails,
                    }
                }
                Protocol::HttpJson => Encoded {
                    bytes: Bytes::from(serde_json::to_vec(&request)?),
                    id_tails: Vec::new(),
                },
            })
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.spans_per_request == 0 {
        bail!("--concurrency and --spans-per-request must be at least 1");
    }
    let requests = Arc::new(build_requests(&args)?);
    if args.unique_ids && args.protocol == Protocol::HttpJson {
        bail!("--unique-ids works with protobuf bodies only");
    }
    let bytes_per_request = requests.iter().map(|r| r.bytes.len()).sum::<usize>() / requests.len();
    eprintln!(
        "loadgen: {} distinct requests of {} spans, {} bytes each on average, {:?} to {}",
        requests.len(),
        args.spans_per_request,
        bytes_per_request,
        args.protocol,
        args.endpoint
    );

    let channel = match args.protocol {
        Protocol::Grpc => Some(
            tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))?
                .tcp_nodelay(true)
                .connect()
                .await
                .context("connecting over gRPC")?,
        ),
        _ => None,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let usage_before = args.collector_pid.map(process_usage).transpose()?;

    let started = Instant::now();
    let deadline = started + args.duration;
    // Another run's ids are other ids (zero without --unique-ids: unused).
    let salt = if args.unique_ids {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() | 1)
    } else {
        0
    };
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.spans_per_request as f64 / args.rate as f64));

    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let requests = requests.clone();
        let sent = sent.clone();
        let stop = stop.clone();
        let tally = tally.clone();
        let channel = channel.clone();
        let http = http.clone();
        let endpoint = args.endpoint.clone();
        let tenant = args.tenant.clone();
        let protocol = args.protocol;
        let max_requests = args.max_requests;
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("a valid histogram");
            let mut ok = 0u64;
            let mut refused: BTreeMap<String, u64> = BTreeMap::new();
            let mut grpc = channel.map(tonic::client::Grpc::new);
            let path = http::uri::PathAndQuery::from_static(TRACE_EXPORT_PATH);
            let url = format!("http://{endpoint}/v1/traces");
            let content_type = if protocol == Protocol::HttpJson {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed)
                    || Instant::now() >= deadline
                    || (max_requests > 0 && n >= max_requests)
                {
                    break;
                }
                if let Some(interval) = interval {
                    let slot = started + interval.mul_f64(n as f64);
                    tokio::time::sleep_until(slot.into()).await;
                }
                let encoded = &requests[n as usize % requests.len()];
                let body = encoded.with_fresh_ids((n as usize / requests.len()) as u32, salt);
                let t0 = Instant::now();
                let outcome: Result<(), String> = match grpc.as_mut() {
                    Some(client) => {
                        let mut request = tonic::Request::new(body);
                        request
                            .metadata_mut()
                            .insert("x-scope-orgid", tenant.parse().expect("an ASCII tenant"));
                        async {
                            client
                                .ready()
                                .await
                                .map_err(|e| format!("transport: {e}"))?;
                            client
                                .unary(request, path.clone(), RawCodec)
                                .await
                                .map(|_| ())
                                .map_err(|s| format!("grpc {:?}", s.code()))
                        }
                        .await
                    }
                    None => match http
                        .post(&url)
                        .header("content-type", content_type)
                        .header("x-scope-orgid", &tenant)
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            Ok(())
                        }
                        Ok(r) => Err(format!("http {}", r.status().as_u16())),
                        Err(e) => Err(format!("transport: {e}")),
                    },
                };
                let micros = t0.elapsed().as_micros() as u64;
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        latency.record(micros.max(1)).expect("in range");
                    }
                    Err(kind) => *refused.entry(kind).or_default() += 1,
                }
            }
            let mut t = tally.lock().expect("no poisoned lock");
            t.ok += ok;
            match &mut t.latency_us {
                Some(h) => h.add(&latency).expect("same bounds"),
                None => t.latency_us = Some(latency),
            }
            for (k, v) in refused {
                *t.refused.entry(k).or_default() += v;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let usage_after = args.collector_pid.map(process_usage).transpose()?;

    let tally = tally.lock().expect("no poisoned lock");
    let spans = tally.ok * args.spans_per_request as u64;
    let latency = tally
        .latency_us
        .clone()
        .unwrap_or_else(|| Histogram::new(3).expect("valid"));
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!("protocol            {:?}", args.protocol);
    println!("requests ok         {}", tally.ok);
    println!("spans acknowledged  {spans}");
    println!("elapsed             {elapsed:.1} s");
    println!("throughput          {:.0} spans/s", spans as f64 / elapsed);
    println!(
        "latency ms          p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latency.max() as f64 / 1000.0
    );
    if tally.refused.is_empty() {
        println!("refused             none");
    } else {
        for (kind, n) in &tally.refused {
            println!("refused             {n} x {kind}");
        }
    }
    let mut json = serde_json::json!({
        "protocol": format!("{:?}", args.protocol),
        "requests_ok": tally.ok,
        "spans": spans,
        "elapsed_s": elapsed,
        "spans_per_s": spans as f64 / elapsed,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "refused": tally.refused,
    });
    if let (Some((cpu0, _)), Some((cpu1, hwm))) = (usage_before, usage_after) {
        let cpu = cpu1 - cpu0;
        let per_million = if spans > 0 {
            cpu / (spans as f64 / 1e6)
        } else {
            0.0
        };
        println!("collector CPU       {cpu:.1} s = {per_million:.2} CPU-s per million spans");
        println!("collector peak RSS  {:.0} MiB", hwm as f64 / 1024.0);
        json["collector_cpu_s_per_million_spans"] = per_million.into();
        json["collector_peak_rss_mib"] = (hwm as f64 / 1024.0).into();
    }
    println!("json {json}");
    Ok(())
}
