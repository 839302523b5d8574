//! End to end: trace search, LLM metrics, costs, budgets and models of the
//! query API, on fixtures with known answers loaded through the pipeline
//! (collector, broker, PostgreSQL sink) for two tenants.

use observatory_integration::api::{escape, export, token, Pipeline, SECRET};
use observatory_integration::process::Service;
use observatory_integration::{unique, wait_for};
use observatory_schemas::histogram::{bucket, upper_bound_ms};
use observatory_schemas::otlp::common::KeyValue;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{status, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_f64, kv_int, kv_str};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(90);
const MS: u64 = 1_000_000;

/// One LLM call of a fixture.
struct Call {
    provider: &'static str,
    model: &'static str,
    input: i64,
    output: i64,
    duration_ms: u64,
    user: &'static str,
    prompt: Option<&'static str>,
    /// The call itself failed (its span's status is an error).
    error: bool,
    /// Time to first token, reported in seconds as the SDKs do.
    ttft_ms: Option<u64>,
}

/// A fixture trace: a root span with attributes, and its model calls.
struct Fixture {
    id: u8,
    service: &'static str,
    environment: &'static str,
    root_ms: u64,
    error: bool,
    attrs: Vec<KeyValue>,
    calls: Vec<Call>,
}

fn request(f: &Fixture, base_ns: u64) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: vec![f.id; 16],
        span_id: vec![1; 8],
        name: "agent run".into(),
        kind: 1,
        start_time_unix_nano: base_ns,
        end_time_unix_nano: base_ns + f.root_ms * MS,
        attributes: f.attrs.clone(),
        status: f.error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: "tool failed".into(),
        }),
        ..Default::default()
    };
    let mut spans = vec![root.clone()];
    for (i, c) in f.calls.iter().enumerate() {
        let start = base_ns + (i as u64 + 1) * MS;
        let mut attributes = vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", c.provider),
            kv_str("gen_ai.request.model", c.model),
            kv_int("gen_ai.usage.input_tokens", c.input),
            kv_int("gen_ai.usage.output_tokens", c.output),
            kv_str("user.id", c.user),
            kv_str("session.id", format!("s-{}", f.id)),
        ];
        if let Some(p) = c.prompt {
            attributes.push(kv_str("gen_ai.input.messages", p));
        }
        if let Some(ttft) = c.ttft_ms {
            attributes.push(kv_f64(
                "gen_ai.response.time_to_first_chunk",
                ttft as f64 / 1000.0,
            ));
        }
        spans.push(Span {
            span_id: vec![2, i as u8 + 1, 0, 0, 0, 0, 0, 0],
            parent_span_id: vec![1; 8],
            name: format!("chat {}", c.model),
            kind: 3,
            start_time_unix_nano: start,
            end_time_unix_nano: start + c.duration_ms * MS,
            attributes,
            status: c.error.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: "rate limited".into(),
            }),
            ..root.clone()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", f.service),
                    kv_str("deployment.environment.name", f.environment),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn call(
    provider: &'static str,
    model: &'static str,
    input: i64,
    output: i64,
    duration_ms: u64,
    user: &'static str,
) -> Call {
    Call {
        provider,
        model,
        input,
        output,
        duration_ms,
        user,
        prompt: None,
        error: false,
        ttft_ms: None,
    }
}

/// Acme's traces: A (gold), B (silver, error), C (bronze, with a prompt),
/// D (ten gpt-4o calls of 10..100 ms, for percentiles).
fn acme() -> Vec<Fixture> {
    vec![
        Fixture {
            id: 0xa1,
            service: "support-bot",
            environment: "prod",
            root_ms: 2000,
            error: false,
            attrs: vec![
                kv_str("tier", "gold"),
                kv_int("retries", 3),
                kv_str("region", "eu-west-1"),
            ],
            calls: vec![call("openai", "gpt-4o", 1000, 100, 100, "u-1")],
        },
        Fixture {
            id: 0xa2,
            service: "billing",
            environment: "staging",
            root_ms: 5000,
            error: true,
            attrs: vec![
                kv_str("tier", "silver"),
                kv_int("retries", 0),
                kv_str("region", "us-east-1"),
            ],
            calls: vec![call(
                "anthropic",
                "claude-3-5-sonnet",
                2000,
                200,
                1000,
                "u-2",
            )],
        },
        Fixture {
            id: 0xa3,
            service: "support-bot",
            environment: "prod",
            root_ms: 500,
            error: false,
            attrs: vec![
                kv_str("tier", "bronze"),
                kv_str("retries", "7"),
                kv_str("region", "eu-central-1"),
            ],
            calls: vec![Call {
                prompt: Some("How do I get a refund for my order?"),
                ..call("openai", "gpt-4o-mini", 500, 50, 10, "u-1")
            }],
        },
        Fixture {
            id: 0xa4,
            service: "batch",
            environment: "prod",
            root_ms: 1500,
            error: false,
            attrs: vec![],
            calls: (1..=10)
                .map(|i| call("openai", "gpt-4o", 100, 20, 10 * i, "u-3"))
                .collect(),
        },
    ]
}

fn beta() -> Vec<Fixture> {
    vec![Fixture {
        id: 0xb1,
        service: "support-bot",
        environment: "prod",
        root_ms: 3000,
        error: false,
        attrs: vec![kv_str("tier", "gold")],
        calls: vec![call("openai", "gpt-4o", 1_000_000, 0, 100, "u-1")],
    }]
}

/// Gamma's traces, for error rates and time to first token: G1 (four
/// gpt-4o-mini calls of 100..400 ms, TTFT 50..80 ms, the 300 ms one failed)
/// and G2 (two claude-3-5-sonnet calls of 1 s and 3 s, TTFT 0.5 s and 0.9 s,
/// the 3 s one failed), one minute apart.
fn gamma() -> Vec<Fixture> {
    let mini = |ms: u64, ttft: u64, error: bool| Call {
        error,
        ttft_ms: Some(ttft),
        ..call("openai", "gpt-4o-mini", 100, 10, ms, "g-1")
    };
    let sonnet = |ms: u64, ttft: u64, error: bool| Call {
        error,
        ttft_ms: Some(ttft),
        ..call("anthropic", "claude-3-5-sonnet", 1000, 100, ms, "g-2")
    };
    vec![
        Fixture {
            id: 0xc1,
            service: "chat-api",
            environment: "prod",
            root_ms: 2000,
            error: false,
            attrs: vec![],
            calls: vec![
                mini(100, 50, false),
                mini(200, 60, false),
                mini(300, 70, true),
                mini(400, 80, false),
            ],
        },
        Fixture {
            id: 0xc2,
            service: "rag",
            environment: "dev",
            root_ms: 4000,
            error: false,
            attrs: vec![],
            calls: vec![sonnet(1000, 500, false), sonnet(3000, 900, true)],
        },
    ]
}

struct Client {
    http: reqwest::Client,
    api: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("authorization", format!("Bearer {token}"));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let response = r.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The ids (first byte, hex) of the traces a search finds, in order.
    async fn ids(&self, query: &str, token: &str) -> Vec<String> {
        let body = self.get(&format!("/api/v1/traces?{query}"), token).await;
        body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap()[..2].to_owned())
            .collect()
    }

    async fn bad(&self, path: &str, token: &str) -> String {
        let (status, body) = self.call(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        body["parameter"].as_str().unwrap_or_default().to_owned()
    }
}

fn set(ids: Vec<String>) -> BTreeSet<String> {
    ids.into_iter().collect()
}

fn of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    observatory_schemas::civil::rfc3339_nanos(ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_metrics_costs_budgets_and_models_on_known_fixtures() {
    let pipeline = Pipeline::start(
        "key-acme=acme,key-beta=beta,key-gamma=gamma",
        &[("CAPTURE_CONTENT", "true".into())],
        WAIT,
    )
    .await;
    let (db, collector) = (&pipeline.db, &pipeline.collector);

    // Every fixture starts in one minute, 20 minutes ago (gamma's second
    // one minute apart).
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minute = (now_s - 20 * 60) / 60 * 60;
    let base_ns = minute * 1_000_000_000 + 5_000_000_000;
    let (acme, beta, gamma) = (acme(), beta(), gamma());
    let spans: usize = acme
        .iter()
        .chain(&beta)
        .chain(&gamma)
        .map(|f| 1 + f.calls.len())
        .sum();
    for f in &acme {
        export(collector, "key-acme", request(f, base_ns)).await;
    }
    for f in &beta {
        export(collector, "key-beta", request(f, base_ns)).await;
    }
    // Gamma's second trace one minute after the first, or before it when
    // that would cross an hour: both stay in one hour (and day).
    let next_minute = if minute % 3600 == 3540 { -60 } else { 60 };
    let gamma_at = [
        base_ns,
        base_ns.wrapping_add_signed(next_minute * 1_000_000_000),
    ];
    for (f, at) in gamma.iter().zip(gamma_at) {
        export(collector, "key-gamma", request(f, at)).await;
    }
    pipeline.wait_for_spans(spans as i64, WAIT).await;

    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
    ]);
    api.wait_ready(WAIT).await;
    let c = Client {
        http: reqwest::Client::new(),
        api: format!("http://{}", api.admin),
    };
    let viewer = token("acme", "viewer", "1h");
    let admin = token("acme", "admin", "1h");
    let other = token("beta", "viewer", "1h");
    let from = rfc3339(UNIX_EPOCH + Duration::from_secs(minute - 3600));
    let to = rfc3339(UNIX_EPOCH + Duration::from_secs(minute + 600));
    let window = format!("from={from}&to={to}");

    // --- Search: each filter and operator against the known answers.
    let all = of(&["a1", "a2", "a3", "a4"]);
    assert_eq!(set(c.ids(&window, &viewer).await), all);
    assert_eq!(set(c.ids("", &viewer).await), all, "default: the last hour");
    assert_eq!(set(c.ids(&window, &other).await), of(&["b1"]));
    let cases: &[(&str, &[&str])] = &[
        ("service=support-bot", &["a1", "a3"]),
        ("name=chat%20gpt-4o-mini", &["a3"]),
        ("status=error", &["a2"]),
        ("provider=anthropic", &["a2"]),
        ("model=gpt-4o", &["a1", "a4"]),
        ("user=u-1", &["a1", "a3"]),
        ("session=s-161", &["a1"]),
        ("environment=staging", &["a2"]),
        ("min_duration=1s", &["a1", "a2", "a4"]),
        ("max_duration=1s", &["a3"]),
        ("min_duration=1600ms&max_duration=2500ms", &["a1"]),
        ("min_cost=0.005", &["a2"]),
        ("q=refund", &["a3"]),
        ("q=refunds%20-order", &[]),
        ("attr=tier:eq:gold", &["a1"]),
        ("attr=tier:ne:gold", &["a2", "a3"]),
        ("attr=retries:gt:2", &["a1", "a3"]),
        ("attr=retries:gte:3", &["a1", "a3"]),
        ("attr=retries:lt:3", &["a2"]),
        ("attr=retries:lte:0", &["a2"]),
        ("attr=tier:in:gold,bronze", &["a1", "a3"]),
        ("attr=tier:not_in:gold,bronze", &["a2"]),
        ("attr=region:contains:east", &["a2"]),
        ("attr=region:not_contains:eu", &["a2"]),
        ("attr=region:starts_with:eu-", &["a1", "a3"]),
        ("attr=region:ends_with:central-1", &["a3"]),
        (
            "attr=region:regex:%5Eeu-(west%7Ccentral)-1%24",
            &["a1", "a3"],
        ),
        (
            "attr=resource.deployment.environment.name:eq:staging",
            &["a2"],
        ),
        ("attr=tier:eq:gold&attr=region:starts_with:us", &[]),
        ("service=support-bot&attr=tier:eq:bronze", &["a3"]),
        ("attr=tier:eq:x%27%20OR%20%271%27=%271", &[]),
        ("service=%27;%20DROP%20TABLE%20spans;%20--", &[]),
    ];
    for (query, want) in cases {
        let got = set(c.ids(&format!("{window}&{query}"), &viewer).await);
        assert_eq!(got, of(want), "{query}");
    }
    // Tempo's search compiles its span conditions with the same compiler:
    // the same conditions in TraceQL find the same traces (a3's retries is
    // the string "7", which both count as a number).
    let tempo_window = format!("start={}&end={}", minute - 3600, minute + 600);
    let same: &[(&str, &str)] = &[
        ("attr=tier:eq:gold", r#"{ span.tier = "gold" }"#),
        ("attr=tier:ne:gold", r#"{ span.tier != "gold" }"#),
        ("attr=retries:gt:2", "{ span.retries > 2 }"),
        ("attr=retries:lte:0", "{ span.retries <= 0 }"),
        ("attr=retries:eq:7", r#"{ span.retries = "7" }"#),
        (
            "attr=region:regex:%5Eeu-(west%7Ccentral)-1%24",
            r#"{ span.region =~ "eu-(west|central)-1" }"#,
        ),
        (
            "attr=resource.deployment.environment.name:eq:staging",
            r#"{ resource.deployment.environment.name = "staging" }"#,
        ),
        (
            "service=support-bot&attr=tier:eq:bronze",
            r#"{ resource.service.name = "support-bot" && span.tier = "bronze" }"#,
        ),
        (
            "name=chat%20gpt-4o-mini",
            r#"{ name = "chat gpt-4o-mini" }"#,
        ),
        ("status=error", "{ status = error }"),
    ];
    for (query, traceql) in same {
        let listed = set(c.ids(&format!("{window}&{query}"), &viewer).await);
        let path = format!("/api/search?{tempo_window}&q={}", escape(traceql));
        let found = c.get(&path, &viewer).await;
        let found = set(found["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| format!("{:0>32}", t["traceID"].as_str().unwrap())[..2].to_owned())
            .collect());
        assert_eq!(found, listed, "{query} and {traceql}");
        assert!(!found.is_empty(), "{query}");
    }
    // Sorting, and a cursor walking every page once.
    let costs_asc = c
        .ids(&format!("{window}&sort=cost&order=asc"), &viewer)
        .await;
    assert_eq!(costs_asc, ["a3", "a1", "a4", "a2"]);
    let by_duration = c.ids(&format!("{window}&sort=duration"), &viewer).await;
    assert_eq!(by_duration, ["a2", "a1", "a4", "a3"]);
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let body = c
            .get(
                &format!("/api/v1/traces?{window}&sort=cost&order=asc&limit=1{cursor}"),
                &viewer,
            )
            .await;
        pages.push(body["traces"][0]["trace_id"].as_str().unwrap()[..2].to_owned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, costs_asc, "the cursor neither repeats nor skips");
    // Every sort, both ways, and a cursor walk of each: a4 has 11 spans and
    // 1 200 tokens, a2 2 200, a1 1 100, a3 550.
    let by_tokens = c.ids(&format!("{window}&sort=tokens"), &viewer).await;
    assert_eq!(by_tokens, ["a2", "a4", "a1", "a3"]);
    let by_spans = c
        .ids(&format!("{window}&sort=span_count&order=asc"), &viewer)
        .await;
    assert_eq!(by_spans[3], "a4");
    for sort in ["start_time", "duration", "cost", "tokens", "span_count"] {
        for order in ["asc", "desc"] {
            let whole = c
                .ids(&format!("{window}&sort={sort}&order={order}"), &viewer)
                .await;
            let mut walked = Vec::new();
            let mut cursor = String::new();
            loop {
                let body = c
                    .get(
                        &format!(
                            "/api/v1/traces?{window}&sort={sort}&order={order}&limit=1{cursor}"
                        ),
                        &viewer,
                    )
                    .await;
                assert_eq!(body["partial"], false);
                walked.push(body["traces"][0]["trace_id"].as_str().unwrap()[..2].to_owned());
                match body["next_cursor"].as_str() {
                    Some(next) => cursor = format!("&cursor={next}"),
                    None => break,
                }
            }
            assert_eq!(walked, whole, "{sort} {order}");
            assert_eq!(set(walked), all, "{sort} {order}");
        }
    }
    let a4 = &c
        .get(
            &format!("/api/v1/traces?{window}&sort=span_count&limit=1"),
            &viewer,
        )
        .await["traces"][0];
    assert_eq!(a4["span_count"], 11);
    assert_eq!(a4["tokens"], 1200);
    assert_eq!(a4["input_tokens"], 1000);
    assert_eq!(a4["user_id"], "u-3");
    assert_eq!(a4["session_id"], "s-164");
    assert_eq!(a4["models"], serde_json::json!(["gpt-4o"]));
    assert_eq!(a4["services"], serde_json::json!(["batch"]));
    assert_eq!(a4["root_received"], true);
    let a1 = &c
        .get(
            &format!("/api/v1/traces?{window}&attr=tier:eq:gold"),
            &viewer,
        )
        .await["traces"][0];
    assert_eq!(a1["root_name"], "agent run");
    assert_eq!(a1["root_service"], "support-bot");
    assert_eq!(a1["span_count"], 2);
    assert_eq!(a1["llm_calls"], 1);
    assert!(close(a1["duration_ms"].as_f64().unwrap(), 2000.0));
    // gpt-4o: $2.50 / $10 per million.
    let a1_cost = 1000.0 * 2.5e-6 + 100.0 * 10e-6;
    assert!(close(a1["cost_usd"].as_f64().unwrap(), a1_cost), "{a1}");

    // Hostile input: a 400 naming the parameter.
    for (query, parameter) in [
        ("from=2026-13-01T00:00:00Z", "from"),
        (&*format!("from={to}&to={from}"), "from"),
        ("from=2000-01-01T00:00:00Z", "to"),
        ("limit=-1", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("sort=name;DROP", "sort"),
        ("attr=retries:gt:1%3B%20DROP", "attr"),
        ("attr=region:regex:(unclosed", "attr"),
        ("attr=region:like:x", "attr"),
        ("min_cost=1e999", "min_cost"),
        ("cursor=%00%01", "cursor"),
        ("status=%27", "status"),
        ("bogus=1", "bogus"),
        (&*format!("service={}", "x".repeat(5000)), "service"),
    ] {
        assert_eq!(
            c.bad(&format!("/api/v1/traces?{query}"), &viewer).await,
            parameter,
            "{query}"
        );
    }

    // --- Metrics: sums, percentiles and isolation.
    let m = c
        .get(
            &format!("/api/v1/llm/metrics?{window}&bucket=1h&group_by=model"),
            &viewer,
        )
        .await;
    assert_eq!(m["source"], "rollups_1h");
    let series = |m: &Value, model: &str| -> Value {
        let found: Vec<&Value> = m["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["group"]["model"] == model)
            .collect();
        assert_eq!(found.len(), 1, "{model}: {m}");
        let points = found[0]["points"].as_array().unwrap();
        assert_eq!(points.len(), 1, "one hour bucket: {m}");
        points[0].clone()
    };
    let p = series(&m, "gpt-4o");
    assert_eq!(p["calls"], 11);
    assert_eq!(p["errors"], 0);
    assert_eq!(p["input_tokens"], 1000 + 10 * 100);
    assert_eq!(p["output_tokens"], 100 + 10 * 20);
    let gpt4o_cost = a1_cost + 10.0 * (100.0 * 2.5e-6 + 20.0 * 10e-6);
    assert!(close(p["cost_usd"].as_f64().unwrap(), gpt4o_cost), "{p}");
    // Durations 10, 20, ..., 100 and 100 ms: rank 6 is 60 ms, ranks 11 are 100 ms;
    // each reported as the upper bound of its histogram bucket.
    let ub = |ms: f64| upper_bound_ms(bucket(ms));
    assert!(
        close(p["latency_ms"]["p50"].as_f64().unwrap(), ub(60.0)),
        "{p}"
    );
    assert!(
        close(p["latency_ms"]["p95"].as_f64().unwrap(), ub(100.0)),
        "{p}"
    );
    assert!(
        close(p["latency_ms"]["p99"].as_f64().unwrap(), ub(100.0)),
        "{p}"
    );
    assert!(p["ttft_ms"].is_null());
    let sonnet = series(&m, "claude-3-5-sonnet");
    assert_eq!(
        sonnet["errors"], 0,
        "the failed span is the root, not the call"
    );
    assert!(close(
        sonnet["cost_usd"].as_f64().unwrap(),
        2000.0 * 3e-6 + 200.0 * 15e-6
    ));
    // By user, from llm_calls: the same sums.
    let by_user = c
        .get(
            &format!("/api/v1/llm/metrics?{window}&bucket=1h&group_by=user&model=gpt-4o"),
            &viewer,
        )
        .await;
    assert_eq!(by_user["source"], "llm_calls");
    let users: Vec<(String, i64)> = by_user["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["group"]["user"].as_str().unwrap().to_owned(),
                s["points"][0]["calls"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, [("u-1".to_owned(), 1), ("u-3".to_owned(), 10)]);
    let u3 = &by_user["series"][1]["points"][0];
    assert!(
        close(u3["latency_ms"]["p50"].as_f64().unwrap(), ub(50.0)),
        "{u3}"
    );
    // Beta sees only its own call.
    let mb = c
        .get(&format!("/api/v1/llm/metrics?{window}&bucket=1h"), &other)
        .await;
    assert_eq!(mb["series"].as_array().unwrap().len(), 1);
    assert_eq!(mb["series"][0]["points"][0]["calls"], 1);
    for (query, parameter) in [
        ("bucket=2m", "bucket"),
        ("group_by=model,tenant", "group_by"),
        ("group_by=model%27--", "group_by"),
        (
            "bucket=1m&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "bucket",
        ),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("model=a&model=b", "model"),
    ] {
        assert_eq!(
            c.bad(&format!("/api/v1/llm/metrics?{query}"), &viewer)
                .await,
            parameter,
            "{query}"
        );
    }

    // --- Costs, top-N and budgets.
    let sonnet_cost = 2000.0 * 3e-6 + 200.0 * 15e-6;
    let mini_cost = 500.0 * 0.15e-6 + 50.0 * 0.6e-6;
    let total = gpt4o_cost + sonnet_cost + mini_cost;
    let costs = c
        .get(
            &format!("/api/v1/llm/costs?{window}&group_by=model&top=1"),
            &viewer,
        )
        .await;
    assert!(
        close(costs["total"]["cost_usd"].as_f64().unwrap(), total),
        "{costs}"
    );
    assert_eq!(costs["total"]["calls"], 13);
    assert_eq!(costs["top"].as_array().unwrap().len(), 1);
    assert_eq!(costs["top"][0]["group"]["model"], "claude-3-5-sonnet");
    assert!(close(
        costs["top"][0]["share"].as_f64().unwrap(),
        sonnet_cost / total
    ));
    assert!(close(
        costs["other"]["cost_usd"].as_f64().unwrap(),
        gpt4o_cost + mini_cost
    ));
    assert_eq!(costs["budgets"], Value::Array(vec![]));
    let beta_costs = c.get(&format!("/api/v1/llm/costs?{window}"), &other).await;
    assert_eq!(beta_costs["total"]["calls"], 1, "{beta_costs}");
    // Budgets: admins only, body checked, spend from this month.
    let put = |path: &'static str, token: String, body: &'static str| {
        let c = &c;
        async move { c.call(reqwest::Method::PUT, path, &token, Some(body)).await }
    };
    let (status, _) = put(
        "/api/v1/budgets/tenant",
        viewer.clone(),
        r#"{"monthly_usd": 1}"#,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = put(
        "/api/v1/budgets/tenant",
        admin.clone(),
        r#"{"monthly_usd": -5}"#,
    )
    .await;
    assert_eq!(
        (status, body["parameter"].as_str()),
        (400, Some("monthly_usd"))
    );
    let (status, body) = put(
        "/api/v1/budgets/tenant",
        admin.clone(),
        r#"{"monthly_usd": 0.01}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = put(
        "/api/v1/budgets/services/support%20bot",
        admin.clone(),
        r#"{"monthly_usd": 100}"#,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = put(
        "/api/v1/budgets/services/support-bot",
        admin.clone(),
        r#"{"monthly_usd": 100}"#,
    )
    .await;
    assert_eq!(status, 200);
    let budgets = c.get("/api/v1/budgets", &viewer).await;
    let list = budgets["budgets"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{budgets}");
    let tenant_budget = list.iter().find(|b| b["scope"] == "tenant").unwrap();
    // This month's spend is every acme call (the fixtures are 20 minutes old;
    // on the first of a month they may fall in the last one).
    let month = |secs: u64| {
        let (y, m, _) = observatory_schemas::civil::civil_from_days((secs / 86_400) as i64);
        (y, m)
    };
    if month(minute) == month(now_s + 60) {
        assert!(
            close(tenant_budget["spent_usd"].as_f64().unwrap(), total),
            "{budgets}"
        );
        assert_eq!(tenant_budget["exceeded"], true);
        let bot = list.iter().find(|b| b["service"] == "support-bot").unwrap();
        assert!(close(
            bot["spent_usd"].as_f64().unwrap(),
            a1_cost + mini_cost
        ));
        assert_eq!(bot["exceeded"], false);
    }
    assert!(c.get("/api/v1/budgets", &other).await["budgets"]
        .as_array()
        .unwrap()
        .is_empty());
    let (status, _) = c
        .call(
            reqwest::Method::DELETE,
            "/api/v1/budgets/services/support%20bot",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = c
        .call(
            reqwest::Method::DELETE,
            "/api/v1/budgets/services/support%20bot",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);

    for (path, parameter) in [
        ("/api/v1/llm/costs?top=0", "top"),
        ("/api/v1/llm/costs?top=1%20OR%201=1", "top"),
        ("/api/v1/llm/costs?group_by=cost", "group_by"),
        ("/api/v1/llm/costs?service=a&service=b", "service"),
        ("/api/v1/models?to=now", "to"),
        ("/api/v1/models?group_by=model", "group_by"),
        ("/api/v1/budgets?tenant=beta", "tenant"),
    ] {
        assert_eq!(c.bad(path, &viewer).await, parameter, "{path}");
    }

    // --- Models with their prices.
    let models = c.get(&format!("/api/v1/models?{window}"), &viewer).await;
    let list = models["models"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{models}");
    assert_eq!(list[0]["model"], "gpt-4o");
    assert_eq!(list[0]["calls"], 11);
    assert_eq!(list[0]["price"]["input_per_million"], 2.5);
    assert_eq!(list[0]["price"]["output_per_million"], 10.0);
    let beta_models = c.get(&format!("/api/v1/models?{window}"), &other).await;
    assert_eq!(beta_models["models"].as_array().unwrap().len(), 1);

    errors_and_time_to_first_token(&c, &window, &token("gamma", "viewer", "1h")).await;
}

/// Gamma's calls: error counts and rates, latency and TTFT percentiles per
/// provider and overall, at every bucket size from 1m to 1d, by service and
/// environment, and the costs split by provider; against hand-computed values.
async fn errors_and_time_to_first_token(c: &Client, window: &str, gamma: &str) {
    let ub = |ms: f64| upper_bound_ms(bucket(ms));
    let mini_cost = 4.0 * (100.0 * 0.15e-6 + 10.0 * 0.6e-6);
    let sonnet_cost = 2.0 * (1000.0 * 3e-6 + 100.0 * 15e-6);
    let num = |v: &Value, path: &str| -> f64 {
        v.pointer(path)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{path} in {v}"))
    };
    // Per provider: each provider's calls are in one minute, so one point.
    let m = c
        .get(
            &format!("/api/v1/llm/metrics?{window}&bucket=1h&group_by=provider"),
            gamma,
        )
        .await;
    let point = |provider: &str| -> Value {
        let series: Vec<&Value> = m["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["group"]["provider"] == provider)
            .collect();
        assert_eq!(series.len(), 1, "{provider}: {m}");
        assert_eq!(series[0]["points"].as_array().unwrap().len(), 1, "{m}");
        series[0]["points"][0].clone()
    };
    let openai = point("openai");
    assert_eq!(openai["calls"], 4, "{openai}");
    assert_eq!(openai["errors"], 1, "{openai}");
    assert!(close(num(&openai, "/error_rate"), 0.25), "{openai}");
    assert_eq!(openai["input_tokens"], 400);
    assert_eq!(openai["output_tokens"], 40);
    assert!(close(num(&openai, "/cost_usd"), mini_cost), "{openai}");
    // Latencies 100, 200, 300, 400: p50 is rank 2, p95 and p99 rank 4.
    assert!(
        close(num(&openai, "/latency_ms/p50"), ub(200.0)),
        "{openai}"
    );
    assert!(
        close(num(&openai, "/latency_ms/p95"), ub(400.0)),
        "{openai}"
    );
    assert!(
        close(num(&openai, "/latency_ms/p99"), ub(400.0)),
        "{openai}"
    );
    // TTFT 50, 60, 70, 80.
    assert!(close(num(&openai, "/ttft_ms/p50"), ub(60.0)), "{openai}");
    assert!(close(num(&openai, "/ttft_ms/p95"), ub(80.0)), "{openai}");
    let anthropic = point("anthropic");
    assert_eq!(anthropic["calls"], 2);
    assert_eq!(anthropic["errors"], 1);
    assert!(close(num(&anthropic, "/error_rate"), 0.5), "{anthropic}");
    assert!(close(num(&anthropic, "/cost_usd"), sonnet_cost));
    assert!(close(num(&anthropic, "/latency_ms/p50"), ub(1000.0)));
    assert!(close(num(&anthropic, "/latency_ms/p99"), ub(3000.0)));
    assert!(close(num(&anthropic, "/ttft_ms/p50"), ub(500.0)));
    assert!(close(num(&anthropic, "/ttft_ms/p95"), ub(900.0)));

    // Every bucket size sums to the same totals; from the hour up the two
    // minutes share one bucket, whose percentiles are over all six calls:
    // latencies 100..400, 1000, 3000 (p50 rank 3), TTFT 50..80, 500, 900.
    for (size, source) in [
        ("1m", "rollups_1m"),
        ("5m", "rollups_1m"),
        ("15m", "rollups_1m"),
        ("1h", "rollups_1h"),
        ("6h", "rollups_1h"),
        ("1d", "rollups_1h"),
    ] {
        let m = c
            .get(
                &format!("/api/v1/llm/metrics?{window}&bucket={size}"),
                gamma,
            )
            .await;
        assert_eq!(m["source"], source, "{size}: {m}");
        assert_eq!(m["series"].as_array().unwrap().len(), 1, "{size}: {m}");
        let points = m["series"][0]["points"].as_array().unwrap();
        let sum = |key: &str| -> f64 { points.iter().map(|p| p[key].as_f64().unwrap()).sum() };
        assert_eq!(sum("calls"), 6.0, "{size}: {m}");
        assert_eq!(sum("errors"), 2.0, "{size}: {m}");
        assert!(close(sum("cost_usd"), mini_cost + sonnet_cost), "{size}");
        if size == "1m" {
            let calls: Vec<i64> = points
                .iter()
                .map(|p| p["calls"].as_i64().unwrap())
                .collect();
            assert!(calls == [4, 2] || calls == [2, 4], "{m}");
        }
        if matches!(size, "1h" | "6h" | "1d") {
            assert_eq!(points.len(), 1, "{size}: {m}");
            let p = &points[0];
            assert!(close(num(p, "/error_rate"), 2.0 / 6.0), "{size}: {p}");
            assert!(close(num(p, "/latency_ms/p50"), ub(300.0)), "{size}: {p}");
            assert!(close(num(p, "/latency_ms/p95"), ub(3000.0)), "{size}: {p}");
            assert!(close(num(p, "/latency_ms/p99"), ub(3000.0)), "{size}: {p}");
            assert!(close(num(p, "/ttft_ms/p50"), ub(70.0)), "{size}: {p}");
            assert!(close(num(p, "/ttft_ms/p95"), ub(900.0)), "{size}: {p}");
        }
    }

    // By service and environment together.
    let m = c
        .get(
            &format!("/api/v1/llm/metrics?{window}&bucket=1d&group_by=service,environment"),
            gamma,
        )
        .await;
    let mut groups: Vec<(String, String, i64)> = m["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["group"]["service"].as_str().unwrap().to_owned(),
                s["group"]["environment"].as_str().unwrap().to_owned(),
                s["points"][0]["calls"].as_i64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("chat-api".to_owned(), "prod".to_owned(), 4),
            ("rag".to_owned(), "dev".to_owned(), 2)
        ],
        "{m}"
    );
    // By user, read from llm_calls: the same errors and TTFT as the rollups.
    let m = c
        .get(
            &format!("/api/v1/llm/metrics?{window}&bucket=1h&group_by=user&provider=openai"),
            gamma,
        )
        .await;
    assert_eq!(m["source"], "llm_calls");
    let p = &m["series"][0]["points"][0];
    assert_eq!(m["series"][0]["group"]["user"], "g-1", "{m}");
    assert_eq!(
        (p["calls"].as_i64(), p["errors"].as_i64()),
        (Some(4), Some(1))
    );
    assert!(close(num(p, "/ttft_ms/p50"), ub(60.0)), "{p}");
    assert!(close(num(p, "/ttft_ms/p95"), ub(80.0)), "{p}");

    // Costs by provider: the top one, its share, and the rest.
    let costs = c
        .get(
            &format!("/api/v1/llm/costs?{window}&group_by=provider&top=1"),
            gamma,
        )
        .await;
    let total = mini_cost + sonnet_cost;
    assert!(close(num(&costs, "/total/cost_usd"), total), "{costs}");
    assert_eq!(costs["total"]["calls"], 6);
    assert_eq!(costs["top"][0]["group"]["provider"], "anthropic");
    assert!(close(num(&costs, "/top/0/share"), sonnet_cost / total));
    assert!(close(num(&costs, "/other/cost_usd"), mini_cost), "{costs}");
}

async fn get_with_cache(c: &Client, path: &str, token: &str) -> (Value, String) {
    let response = c
        .http
        .get(format!("{}{path}", c.api))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
        cache,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_repeats_sees_new_spans_and_survives_redis_going_away() {
    // A tenant of this run only: Redis outlives test runs and is shared by
    // tests running in parallel.
    let tenant = unique("t").replace('_', "-");
    let pipeline = Pipeline::start(&format!("key-run={tenant}"), &[], WAIT).await;
    let (db, collector) = (&pipeline.db, &pipeline.collector);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let fixtures = acme();
    export(
        collector,
        "key-run",
        request(&fixtures[0], now_ns - 60_000 * MS),
    )
    .await;
    pipeline.wait_for_spans(2, WAIT).await;

    let redis: std::net::SocketAddr = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = observatory_integration::proxy::Proxy::start(redis).await;
    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
        ("REDIS_URL", format!("redis://{}", proxy.addr)),
        ("CACHE_TTL_OPEN", "1s".into()),
    ]);
    api.wait_ready(WAIT).await;
    let c = Client {
        http: reqwest::Client::new(),
        api: format!("http://{}", api.admin),
    };
    let viewer = token(&tenant, "viewer", "1h");

    // A repeat comes from Redis, with the same body.
    let path = format!(
        "/api/v1/llm/metrics?bucket=1m&group_by=model&x_run={}",
        unique("r")
    );
    let bad_run = c.bad(&path, &viewer).await;
    assert_eq!(
        bad_run, "x_run",
        "unknown parameters are refused before the cache"
    );
    let path = "/api/v1/llm/metrics?bucket=1m&group_by=model";
    let (first, _) = get_with_cache(&c, path, &viewer).await;
    // A miss is stored in the background, so the repeat that follows may
    // still miss; one within the 1 s TTL is a hit with the same body.
    let mut repeats = 0;
    let second = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (again, cache) = get_with_cache(&c, path, &viewer).await;
        repeats += 1;
        if cache == "hit" {
            break again;
        }
        assert!(repeats < 20, "no repeat came from Redis");
    };
    assert_eq!(first, second);
    assert_eq!(first["series"][0]["points"][0]["calls"], 1);

    // A new trace in the open range shows up once the short TTL has passed.
    let search = "/api/v1/traces?limit=10";
    let (before, _) = get_with_cache(&c, search, &viewer).await;
    assert_eq!(before["traces"].as_array().unwrap().len(), 1);
    export(
        collector,
        "key-run",
        request(&fixtures[1], now_ns - 30_000 * MS),
    )
    .await;
    pipeline.wait_for_spans(4, WAIT).await;
    let stored = std::time::Instant::now();
    wait_for("the new trace in the search", WAIT, || async {
        let (page, _) = get_with_cache(&c, search, &viewer).await;
        (page["traces"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    assert!(
        stored.elapsed() < Duration::from_secs(3),
        "visible within the 1 s TTL (plus polling), took {:?}",
        stored.elapsed()
    );

    // Redis gone: every answer is still right, from PostgreSQL.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await; // the proxy notices within 50 ms
    let (page, cache) = get_with_cache(&c, search, &viewer).await;
    assert_eq!(page["traces"].as_array().unwrap().len(), 2);
    assert_eq!(cache, "miss");
    let (m, cache) = get_with_cache(&c, path, &viewer).await;
    assert_eq!(cache, "miss");
    assert_eq!(m["series"][0]["points"][0]["calls"], 1);
    for _ in 0..5 {
        let (m2, _) = get_with_cache(&c, path, &viewer).await;
        assert_eq!(m2["series"], m["series"]);
    }
    let costs = c.get("/api/v1/llm/costs", &viewer).await;
    assert_eq!(costs["total"]["calls"], 2);
    proxy.restore();

    let metrics = observatory_integration::admin_get(api.admin, "/metrics")
        .await
        .unwrap()
        .1;
    let hits: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("observatory_api_cache_requests_total{")
                && l.contains("endpoint=\"llm_metrics\"")
                && l.contains("result=\"hit\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(hits >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_level_search_past_its_time_budget_answers_partial_and_goes_on_by_cursor() {
    // 450 one-span traces a second apart; only the oldest has tier=gold.
    // With no time budget, each request looks at one round of candidates
    // (200), answers what it found with `partial` and a cursor from the
    // last trace it looked at, and the walk finds the match exactly once.
    let pipeline = Pipeline::start("key-delta=delta", &[], WAIT).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Span> = (0..450u64)
        .map(|i| Span {
            trace_id: [vec![0xd0], (i as u32).to_be_bytes().to_vec(), vec![7; 11]].concat(),
            span_id: vec![1; 8],
            name: "job".into(),
            kind: 1,
            start_time_unix_nano: now - (600 - i) * 1_000_000_000,
            end_time_unix_nano: now - (600 - i) * 1_000_000_000 + MS,
            attributes: vec![kv_str("tier", if i == 0 { "gold" } else { "free" })],
            ..Default::default()
        })
        .collect();
    export(
        &pipeline.collector,
        "key-delta",
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", "jobs")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
    )
    .await;
    pipeline.wait_for_spans(450, WAIT).await;
    let api = Service::api(&[
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
        ("SEARCH_TIME_BUDGET", "0s".into()),
    ]);
    api.wait_ready(WAIT).await;
    let c = Client {
        http: reqwest::Client::new(),
        api: format!("http://{}", api.admin),
    };
    let viewer = token("delta", "viewer", "1h");
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut rounds = 0;
    let mut cursor = String::new();
    loop {
        let body = c
            .get(
                &format!("/api/v1/traces?attr=tier:eq:gold&limit=5{cursor}"),
                &viewer,
            )
            .await;
        rounds += 1;
        scanned += body["scanned_traces"].as_u64().unwrap();
        for t in body["traces"].as_array().unwrap() {
            found.push(t["trace_id"].as_str().unwrap().to_owned());
        }
        if rounds == 1 {
            assert_eq!(body["partial"], true, "{body}");
            assert!(body["traces"].as_array().unwrap().is_empty(), "{body}");
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
        assert!(rounds < 10, "the walk ends");
    }
    assert_eq!(found, ["d0000000000707070707070707070707"]);
    assert_eq!(scanned, 450, "every trace looked at once");
    assert_eq!(rounds, 3);
    // Without span-level conditions the summary answers at once, whole.
    let body = c
        .get(
            "/api/v1/traces?limit=500&sort=start_time&order=asc",
            &viewer,
        )
        .await;
    assert_eq!(body["partial"], false);
    assert_eq!(body["traces"].as_array().unwrap().len(), 450);
    assert_eq!(
        body["traces"][0]["trace_id"],
        "d0000000000707070707070707070707"
    );
}
