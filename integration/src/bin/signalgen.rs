//! `signalgen`: fills the collector with OTLP metric points or log records
//! over gRPC, for the PostgreSQL sink's metrics and logs benchmark
//! (`integration/bench-signals.sh`).
//!
//! Metrics: `--series` streams (default 1 000) spread over `--services`
//! resources, a GenAI mix of cumulative counters (int and double), gauges,
//! explicit-bucket histograms (operation duration with the GenAI duration
//! bounds, token usage with the token bounds, one point in ten of the
//! durations with an exemplar) and one exponential histogram (time to
//! first token), with attributes such as `gen_ai.request.model`,
//! `gen_ai.token.type` and `gen_ai.operation.name`. Point `g` of the run
//! (request `n` holds points `n * per_request ..`) belongs to series
//! `g % series` at step `g / series`, and a step is `--interval` (default
//! 10 s) after the previous one: every point of a series has its own time
//! (PostgreSQL stores them to the microsecond), all in the past.
//!
//! Logs: records in traces of 8 (one trace in five without trace and span
//! ids, as plain application logs): a request log, three GenAI events
//! (`gen_ai.user.message`, `gen_ai.choice`,
//! `gen_ai.client.inference.operation.details`) and four application logs
//! of mixed severity with a body of `--body-bytes` (default 300) and a few
//! attributes; record `g` is `--interval` (default 1 ms) after record
//! `g - 1`, so every record is another one.
//!
//! Everything is derived from the request's number and `--seed`, so a
//! request sent again (after an UNAVAILABLE or RESOURCE_EXHAUSTED answer,
//! retried with backoff) is the same request. What it prints: the requests
//! and points (records) the collector acknowledged, less any it reported as
//! rejected in `partial_success`.
//!
//! ```text
//! signalgen --signal metrics --endpoint 127.0.0.1:4317 --requests 2000 --per-request 1000
//! signalgen --signal logs --requests 2000 --per-request 500
//! ```

use anyhow::{bail, Context as _};
use bytes::{Buf, BufMut, Bytes};
use clap::{Parser, ValueEnum};
use observatory_schemas::otlp::common::{
    any_value, AnyValue, InstrumentationScope, KeyValue, KeyValueList,
};
use observatory_schemas::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
use observatory_schemas::otlp::logs_service::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use observatory_schemas::otlp::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point, Exemplar,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use observatory_schemas::otlp::metrics_service::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::testing::{kv_bool, kv_int, kv_str};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Which signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Signal {
    /// OTLP metrics (ExportMetricsServiceRequest).
    Metrics,
    /// OTLP logs (ExportLogsServiceRequest).
    Logs,
}

/// OTLP metrics and logs load generator with GenAI-application content.
#[derive(Debug, Parser)]
#[command(name = "signalgen", about)]
struct Args {
    /// What to send.
    #[arg(long, value_enum, default_value = "metrics")]
    signal: Signal,
    /// host:port of the collector's OTLP/gRPC receiver.
    #[arg(long, env = "SIGNALGEN_ENDPOINT", default_value = "127.0.0.1:4317")]
    endpoint: String,
    /// Requests to send in total.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Data points (metrics) or log records (logs) per request.
    #[arg(long, default_value_t = 1000)]
    per_request: u64,
    /// Metric series (distinct streams) in all.
    #[arg(long, default_value_t = 1000)]
    series: u64,
    /// Resources (`service.name`s) the series and records are spread over.
    #[arg(long, default_value_t = 5)]
    services: u64,
    /// Put in front of every `service.name` (the demo keeps its metrics'
    /// services apart from its traces' ones, which describe other calls).
    #[arg(long, default_value = "")]
    service_prefix: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Metrics: time between two points of a series (default 10s); logs:
    /// time between two consecutive records (default 1ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Logs: bytes of an application log's body.
    #[arg(long, default_value_t = 300)]
    body_bytes: usize,
    /// Seed of the values, ids and texts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tenant sent in X-Scope-OrgID.
    #[arg(long, default_value = "default")]
    tenant: String,
}

/// SplitMix64: a small, good-enough generator, seeded per item.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, a: u64, b: u64) -> Rng {
        let mut r = Rng(seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.rotate_left(32));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

const MODELS: [(&str, &str); 12] = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("o3-mini", "openai"),
    ("text-embedding-3-small", "openai"),
    ("claude-sonnet-4", "anthropic"),
    ("claude-3-5-haiku", "anthropic"),
    ("gemini-2.0-flash", "gcp.gemini"),
    ("gemini-1.5-pro", "gcp.gemini"),
    ("llama-3.1-70b-instruct", "aws.bedrock"),
    ("mistral-large", "mistral_ai"),
    ("command-r-plus", "cohere"),
    ("deepseek-chat", "deepseek"),
];
const OPERATIONS: [&str; 3] = ["chat", "text_completion", "embeddings"];
const SERVICES: [&str; 8] = [
    "chat-api",
    "rag-worker",
    "agent-runner",
    "support-bot",
    "summarizer",
    "search-api",
    "eval-jobs",
    "ingest-worker",
];
/// `gen_ai.client.operation.duration` bucket bounds (GenAI semantic conventions).
const DURATION_BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.client.token.usage` bucket bounds (GenAI semantic conventions).
const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The metrics of the mix, one series in `TEMPLATES.len()` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// `gen_ai.client.operation.duration`: explicit histogram, seconds.
    Duration,
    /// `gen_ai.client.token.usage`: explicit histogram, tokens.
    TokenUsage,
    /// `gen_ai.server.time_to_first_token`: exponential histogram.
    TimeToFirstToken,
    /// `llm.requests`: cumulative int counter.
    Requests,
    /// `llm.tokens`: cumulative int counter.
    Tokens,
    /// `llm.cost`: cumulative double counter, USD.
    Cost,
    /// `llm.requests.active`: int gauge.
    Active,
    /// `llm.ratelimit.remaining`: double gauge.
    RateLimit,
}

const TEMPLATES: [Template; 8] = [
    Template::Duration,
    Template::TokenUsage,
    Template::TimeToFirstToken,
    Template::Requests,
    Template::Tokens,
    Template::Cost,
    Template::Active,
    Template::RateLimit,
];

impl Template {
    fn name(self) -> &'static str {
        match self {
            Template::Duration => "gen_ai.client.operation.duration",
            Template::TokenUsage => "gen_ai.client.token.usage",
            Template::TimeToFirstToken => "gen_ai.server.time_to_first_token",
            Template::Requests => "llm.requests",
            Template::Tokens => "llm.tokens",
            Template::Cost => "llm.cost",
            Template::Active => "llm.requests.active",
            Template::RateLimit => "llm.ratelimit.remaining",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Template::Duration | Template::TimeToFirstToken => "s",
            Template::TokenUsage | Template::Tokens | Template::RateLimit => "{token}",
            Template::Requests | Template::Active => "{request}",
            Template::Cost => "USD",
        }
    }
    fn description(self) -> &'static str {
        match self {
            Template::Duration => "GenAI operation duration",
            Template::TokenUsage => "Measures number of input and output tokens used",
            Template::TimeToFirstToken => "Time to generate first token for successful responses",
            Template::Requests => "Model calls",
            Template::Tokens => "Tokens used",
            Template::Cost => "Estimated cost of model calls",
            Template::Active => "Model calls in flight",
            Template::RateLimit => "Tokens left in the provider's rate-limit window",
        }
    }
    /// The metric with no points yet.
    fn empty(self) -> Metric {
        let data = match self {
            Template::Duration | Template::TokenUsage => metric::Data::Histogram(Histogram {
                data_points: Vec::new(),
                aggregation_temporality: 2,
            }),
            Template::TimeToFirstToken => {
                metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: Vec::new(),
                    aggregation_temporality: 2,
                })
            }
            Template::Requests | Template::Tokens | Template::Cost => metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
            Template::Active | Template::RateLimit => metric::Data::Gauge(Gauge {
                data_points: Vec::new(),
            }),
        };
        Metric {
            name: self.name().into(),
            description: self.description().into(),
            unit: self.unit().into(),
            data: Some(data),
            ..Default::default()
        }
    }
}

/// Series `s`: its service, metric and attributes (distinct for every
/// series of one service and metric).
fn series_of(s: u64, services: u64) -> (u64, Template, Vec<KeyValue>) {
    let service = s % services;
    let template = TEMPLATES[((s / services) % TEMPLATES.len() as u64) as usize];
    let v = s / (services * TEMPLATES.len() as u64);
    let (model, provider) = MODELS[(v % 12) as usize];
    let second = (v / 12) % 2;
    let operation = OPERATIONS[((v / 24) % 3) as usize];
    let extra = v / 72;
    let mut attributes = vec![
        kv_str("gen_ai.operation.name", operation),
        kv_str("gen_ai.provider.name", provider),
        kv_str("gen_ai.request.model", model),
    ];
    match template {
        Template::TokenUsage | Template::Tokens | Template::Cost | Template::RateLimit => {
            attributes.push(kv_str(
                "gen_ai.token.type",
                if second == 0 { "input" } else { "output" },
            ));
        }
        Template::Duration | Template::Requests => {
            if second == 1 {
                attributes.push(kv_str("error.type", "timeout"));
            }
        }
        Template::TimeToFirstToken | Template::Active => {
            attributes.push(kv_bool("gen_ai.request.stream", second == 1));
        }
    }
    if extra > 0 {
        attributes.push(kv_str("server.address", format!("llm-gw-{extra}.internal")));
    }
    (service, template, attributes)
}

fn resource(prefix: &str, service: u64) -> Resource {
    let name = SERVICES[(service % SERVICES.len() as u64) as usize];
    let name = if service < SERVICES.len() as u64 {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}{name}-{service}")
    };
    Resource {
        attributes: vec![
            kv_str("service.name", name),
            kv_str("service.version", "2.14.1"),
            kv_str("deployment.environment.name", "production"),
            kv_str(
                "host.name",
                format!("ip-10-0-{}-{}", service % 4, 10 + service),
            ),
            kv_str("telemetry.sdk.language", "python"),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str("telemetry.sdk.version", "1.38.0"),
        ],
        ..Default::default()
    }
}

/// A per-series bell-shaped spread of `n` observations over `buckets`
/// buckets around `centre`.
fn spread(rng: &mut Rng, buckets: usize, centre: usize, n: u64) -> Vec<u64> {
    let mut out = vec![0u64; buckets];
    for _ in 0..n {
        let offset = rng.below(3) as i64 + rng.below(3) as i64 - 2;
        let b = (centre as i64 + offset).clamp(0, buckets as i64 - 1) as usize;
        out[b] += 1;
    }
    out
}

/// Everything shared by the requests of one run.
struct Plan {
    signal: Signal,
    per_request: u64,
    series: u64,
    services: u64,
    interval_ns: u64,
    /// Time of step 0 (metrics) or record 0 (logs).
    t0: u64,
    seed: u64,
    body_bytes: usize,
    service_prefix: String,
}

impl Plan {
    /// Request `n`, encoded, and the points or records it holds.
    fn request(&self, n: u64) -> (Bytes, u64) {
        match self.signal {
            Signal::Metrics => {
                let r = self.metrics(n);
                (Bytes::from(r.encode_to_vec()), self.per_request)
            }
            Signal::Logs => {
                let r = self.logs(n);
                (Bytes::from(r.encode_to_vec()), self.per_request)
            }
        }
    }

    fn metrics(&self, n: u64) -> ExportMetricsServiceRequest {
        let start_ns = self.t0 - 3_600_000_000_000; // cumulative streams started an hour before
        let mut by_service: BTreeMap<u64, BTreeMap<usize, Metric>> = BTreeMap::new();
        for g in n * self.per_request..(n + 1) * self.per_request {
            let s = g % self.series;
            let k = g / self.series;
            let (service, template, attributes) = series_of(s, self.services);
            let time = self.t0 + k * self.interval_ns;
            // What a series is like (its rates, its buckets) comes from its
            // number; the step only moves it along.
            let mut shape = Rng::new(self.seed, s, 0);
            let mut now = Rng::new(self.seed, s, k + 1);
            let steps = k + 1;
            let metric = by_service
                .entry(service)
                .or_default()
                .entry(template as usize)
                .or_insert_with(|| template.empty());
            match (template, metric.data.as_mut().expect("set")) {
                (Template::Duration | Template::TokenUsage, metric::Data::Histogram(h)) => {
                    let (bounds, centre, unit) = match template {
                        Template::Duration => (&DURATION_BOUNDS[..], 5 + shape.below(5), 0.3),
                        _ => (&TOKEN_BOUNDS[..], 4 + shape.below(4), 200.0),
                    };
                    let per_step = 5 + shape.below(40);
                    let base = spread(&mut shape, bounds.len() + 1, centre as usize, per_step);
                    let bucket_counts: Vec<u64> = base.iter().map(|c| c * steps).collect();
                    let count = per_step * steps;
                    let mean = unit * (1.0 + centre as f64) * (0.8 + 0.4 * shape.unit());
                    let exemplars = if template == Template::Duration && now.below(10) == 0 {
                        vec![Exemplar {
                            time_unix_nano: time - now.below(self.interval_ns.max(1)),
                            value: Some(exemplar::Value::AsDouble(mean * (0.5 + now.unit()))),
                            trace_id: now.bytes::<16>().to_vec(),
                            span_id: now.bytes::<8>().to_vec(),
                            ..Default::default()
                        }]
                    } else {
                        Vec::new()
                    };
                    h.data_points.push(HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start_ns,
                        time_unix_nano: time,
                        count,
                        sum: Some(mean * count as f64),
                        bucket_counts,
                        explicit_bounds: bounds.to_vec(),
                        exemplars,
                        min: Some(mean * 0.1),
                        max: Some(mean * 4.0),
                        ..Default::default()
                    });
                }
                (Template::TimeToFirstToken, metric::Data::ExponentialHistogram(h)) => {
                    // Scale 3: bucket i holds (2^(i/8), 2^((i+1)/8)]; from
                    // offset -40 (~0.03 s) 32 buckets to ~0.5 s.
                    let per_step = 5 + shape.below(30);
                    let centre = 8 + shape.below(16) as usize;
                    let base = spread(&mut shape, 32, centre, per_step);
                    let bucket_counts: Vec<u64> = base.iter().map(|c| c * steps).collect();
                    let mean = 2f64.powf((-40.0 + centre as f64) / 8.0);
                    let count = per_step * steps;
                    h.data_points.push(ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start_ns,
                        time_unix_nano: time,
                        count,
                        sum: Some(mean * count as f64),
                        scale: 3,
                        zero_count: 0,
                        positive: Some(Buckets {
                            offset: -40,
                            bucket_counts,
                        }),
                        min: Some(mean * 0.5),
                        max: Some(mean * 2.0),
                        ..Default::default()
                    });
                }
                (
                    Template::Requests | Template::Tokens | Template::Cost,
                    metric::Data::Sum(sum),
                ) => {
                    let rate = 1 + shape.below(50);
                    let value = match template {
                        Template::Requests => {
                            number_data_point::Value::AsInt((rate * steps) as i64)
                        }
                        Template::Tokens => {
                            number_data_point::Value::AsInt((rate * 700 * steps) as i64)
                        }
                        _ => {
                            number_data_point::Value::AsDouble(rate as f64 * 0.0021 * steps as f64)
                        }
                    };
                    sum.data_points.push(NumberDataPoint {
                        attributes,
                        start_time_unix_nano: start_ns,
                        time_unix_nano: time,
                        value: Some(value),
                        ..Default::default()
                    });
                }
                (Template::Active | Template::RateLimit, metric::Data::Gauge(gauge)) => {
                    let value = match template {
                        Template::Active => number_data_point::Value::AsInt(now.below(64) as i64),
                        _ => number_data_point::Value::AsDouble((200_000.0 * now.unit()).round()),
                    };
                    gauge.data_points.push(NumberDataPoint {
                        attributes,
                        time_unix_nano: time,
                        value: Some(value),
                        ..Default::default()
                    });
                }
                _ => unreachable!("a template's metric has its data kind"),
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: by_service
                .into_iter()
                .map(|(service, metrics)| ResourceMetrics {
                    resource: Some(resource(&self.service_prefix, service)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: "opentelemetry.instrumentation.genai".into(),
                            version: "0.4b0".into(),
                            ..Default::default()
                        }),
                        metrics: metrics.into_values().collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn logs(&self, n: u64) -> ExportLogsServiceRequest {
        const TRACE_LEN: u64 = 8;
        let mut by_service: BTreeMap<u64, Vec<LogRecord>> = BTreeMap::new();
        for g in n * self.per_request..(n + 1) * self.per_request {
            let trace = g / TRACE_LEN;
            let position = g % TRACE_LEN;
            let mut t = Rng::new(self.seed, trace, 0);
            let service = t.below(self.services);
            let traced = !trace.is_multiple_of(5);
            let trace_id: [u8; 16] = t.bytes();
            let (model, provider) = MODELS[t.below(12) as usize];
            let user = t.below(50_000);
            let route =
                ["/v1/chat", "/v1/answer", "/v1/summarize", "/v1/agent/run"][t.below(4) as usize];
            let mut r = Rng::new(self.seed, g, 1);
            let span_id: [u8; 8] = r.bytes();
            let time = self.t0 + g * self.interval_ns;
            let mut attributes = vec![
                kv_str("gen_ai.request.model", model),
                kv_str("gen_ai.provider.name", provider),
            ];
            let (event_name, severity, body) = match (traced, position) {
                (true, 1) => {
                    let content = words(&mut r, self.body_bytes);
                    let body = kvlist(vec![kv_str("content", content)]);
                    ("gen_ai.user.message", 9, body)
                }
                (true, 2) => {
                    let content = words(&mut r, self.body_bytes);
                    let message = kvlist(vec![
                        kv_str("role", "assistant"),
                        kv_str("content", content),
                    ]);
                    let body = kvlist(vec![
                        kv_int("index", 0),
                        kv_str("finish_reason", "stop"),
                        KeyValue {
                            key: "message".into(),
                            value: Some(message),
                            ..Default::default()
                        },
                    ]);
                    ("gen_ai.choice", 9, body)
                }
                (true, 3) => {
                    attributes.push(kv_str("gen_ai.operation.name", "chat"));
                    attributes.push(kv_int("gen_ai.usage.input_tokens", r.below(4000) as i64));
                    attributes.push(kv_int("gen_ai.usage.output_tokens", r.below(800) as i64));
                    attributes.push(kv_str("gen_ai.response.finish_reasons", "stop"));
                    let content = words(&mut r, self.body_bytes);
                    let body = kvlist(vec![kv_str("gen_ai.output.messages", content)]);
                    ("gen_ai.client.inference.operation.details", 9, body)
                }
                _ => {
                    let severity = match r.below(20) {
                        0..=2 => 5,    // DEBUG
                        3..=16 => 9,   // INFO
                        17..=18 => 13, // WARN
                        _ => 17,       // ERROR
                    };
                    attributes.push(kv_str("http.route", route));
                    attributes.push(kv_str("enduser.id", format!("user-{user}")));
                    attributes.push(kv_str(
                        "code.function.name",
                        ["handle_request", "retrieve_context", "call_model", "render"]
                            [r.below(4) as usize],
                    ));
                    attributes.push(kv_int("thread.id", 1 + r.below(32) as i64));
                    let text = format!(
                        "{} request={:016x} user=user-{user} model={model} latency_ms={} {}",
                        match severity {
                            5 => "prompt assembled",
                            9 => "model call finished",
                            13 => "slow model response, retrying with a smaller context",
                            _ => "upstream provider returned 529 overloaded",
                        },
                        r.next(),
                        r.below(20_000),
                        words(&mut r, self.body_bytes.saturating_sub(100)),
                    );
                    (
                        "",
                        severity,
                        AnyValue {
                            value: Some(any_value::Value::StringValue(text)),
                        },
                    )
                }
            };
            let severity_text = match severity {
                5 => "DEBUG",
                9 => "INFO",
                13 => "WARN",
                _ => "ERROR",
            };
            by_service.entry(service).or_default().push(LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time + 1_000_000 + r.below(4_000_000),
                severity_number: severity,
                severity_text: severity_text.into(),
                body: Some(body),
                attributes,
                flags: if traced { 1 } else { 0 },
                trace_id: if traced {
                    trace_id.to_vec()
                } else {
                    Vec::new()
                },
                span_id: if traced { span_id.to_vec() } else { Vec::new() },
                event_name: event_name.into(),
                ..Default::default()
            });
        }
        ExportLogsServiceRequest {
            resource_logs: by_service
                .into_iter()
                .map(|(service, records)| ResourceLogs {
                    resource: Some(resource(&self.service_prefix, service)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "app.llm".into(),
                            ..Default::default()
                        }),
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    }
}

/// About `bytes` of English-looking text.
fn words(rng: &mut Rng, bytes: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "model",
        "answer",
        "context",
        "retrieved",
        "document",
        "tokens",
        "policy",
        "customer",
        "order",
        "refund",
        "summary",
        "question",
        "latency",
        "cache",
        "vector",
        "search",
        "result",
        "prompt",
        "assistant",
        "tool",
        "weather",
        "invoice",
        "shipping",
    ];
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out
}

/// Sends bytes as they are; hands back the answer's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Items the collector rejected for good in an answer (`partial_success`).
fn rejected(signal: Signal, answer: &[u8]) -> anyhow::Result<u64> {
    Ok(match signal {
        Signal::Metrics => ExportMetricsServiceResponse::decode(answer)?
            .partial_success
            .map_or(0, |p| p.rejected_data_points.max(0) as u64),
        Signal::Logs => ExportLogsServiceResponse::decode(answer)?
            .partial_success
            .map_or(0, |p| p.rejected_log_records.max(0) as u64),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.per_request == 0 || args.series == 0 || args.services == 0 {
        bail!("--concurrency, --per-request, --series and --services must be at least 1");
    }
    let interval = args.interval.unwrap_or(match args.signal {
        Signal::Metrics => Duration::from_secs(10),
        Signal::Logs => Duration::from_millis(1),
    });
    if interval < Duration::from_micros(1) {
        bail!("--interval must be at least 1µs: PostgreSQL stores times to the microsecond");
    }
    let interval_ns = interval.as_nanos() as u64;
    let total = args.requests * args.per_request;
    // The last step (metrics) or record (logs) lands a minute before now.
    let steps = match args.signal {
        Signal::Metrics => total.div_ceil(args.series),
        Signal::Logs => total,
    };
    let now = observatory_integration::now_ns();
    let span = steps.saturating_mul(interval_ns) + 60_000_000_000;
    if span >= now / 2 {
        bail!("--interval times the steps reaches too far back");
    }
    let plan = Arc::new(Plan {
        signal: args.signal,
        per_request: args.per_request,
        series: args.series,
        services: args.services,
        interval_ns,
        t0: now - span,
        seed: args.seed,
        service_prefix: args.service_prefix.clone(),
        body_bytes: args.body_bytes,
    });
    let (sample, _) = plan.request(0);
    let unit = match args.signal {
        Signal::Metrics => "points",
        Signal::Logs => "records",
    };
    eprintln!(
        "signalgen: {} requests of {} {unit} ({} bytes for the first), {} in flight, to {}",
        args.requests,
        args.per_request,
        sample.len(),
        args.concurrency,
        args.endpoint
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.endpoint))?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connecting over gRPC")?;
    let path = match args.signal {
        Signal::Metrics => METRICS_PATH,
        Signal::Logs => LOGS_PATH,
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let plan = plan.clone();
        let next = next.clone();
        let channel = channel.clone();
        let tenant: tonic::metadata::MetadataValue<_> =
            args.tenant.parse().context("an ASCII tenant")?;
        let requests = args.requests;
        let signal = args.signal;
        workers.push(tokio::spawn(async move {
            let mut client = tonic::client::Grpc::new(channel);
            let path = http::uri::PathAndQuery::from_static(path);
            // (requests acknowledged, items acknowledged, items rejected,
            // retries, requests failed for good)
            let mut tally = (0u64, 0u64, 0u64, 0u64, 0u64);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    break;
                }
                let (body, items) = plan.request(n);
                let mut attempt = 0u32;
                loop {
                    let mut request = tonic::Request::new(body.clone());
                    request
                        .metadata_mut()
                        .insert("x-scope-orgid", tenant.clone());
                    let outcome = async {
                        client
                            .ready()
                            .await
                            .map_err(|e| Status::unavailable(e.to_string()))?;
                        client.unary(request, path.clone(), BytesCodec).await
                    }
                    .await;
                    match outcome {
                        Ok(answer) => {
                            let refused = rejected(signal, answer.get_ref()).unwrap_or(items);
                            tally.0 += 1;
                            tally.1 += items - refused.min(items);
                            tally.2 += refused.min(items);
                            break;
                        }
                        Err(s)
                            if matches!(s.code(), Code::Unavailable | Code::ResourceExhausted)
                                && attempt < 30 =>
                        {
                            attempt += 1;
                            tally.3 += 1;
                            let wait = Duration::from_millis(50 << attempt.min(6));
                            tokio::time::sleep(wait).await;
                        }
                        Err(s) => {
                            eprintln!("signalgen: request {n} failed for good: {s}");
                            tally.4 += 1;
                            break;
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut sum = (0u64, 0u64, 0u64, 0u64, 0u64);
    for w in workers {
        let t = w.await?;
        sum = (
            sum.0 + t.0,
            sum.1 + t.1,
            sum.2 + t.2,
            sum.3 + t.3,
            sum.4 + t.4,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, acknowledged, refused, retries, failed) = sum;
    println!("signal              {:?}", args.signal);
    println!("requests ok         {ok}");
    println!("{:<20}{total}", format!("{unit} sent "));
    println!("{:<20}{acknowledged}", format!("{unit} acknowledged "));
    println!("{:<20}{refused}", format!("{unit} rejected "));
    println!("retries             {retries}");
    println!("requests failed     {failed}");
    println!("elapsed             {elapsed:.1} s");
    println!(
        "throughput          {:.0} {unit}/s",
        acknowledged as f64 / elapsed
    );
    let json = serde_json::json!({
        "signal": format!("{:?}", args.signal).to_lowercase(),
        "requests_ok": ok,
        "sent": total,
        "acknowledged": acknowledged,
        "rejected": refused,
        "retries": retries,
        "failed": failed,
        "elapsed_s": elapsed,
    });
    println!("json {json}");
    if failed > 0 {
        bail!("{failed} requests failed for good");
    }
    Ok(())
}
