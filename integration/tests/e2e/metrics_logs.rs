//! End to end: OTLP metrics and logs through the real pipeline (collector,
//! broker, the PostgreSQL sink's metrics and logs loops, `observatory-api`).
//!
//! - The official OpenTelemetry Python SDK sends metrics and logs over HTTP
//!   and gRPC; every point and record is stored exactly once, through a
//!   SIGKILL of the sink and a replay of each topic (`replay --sink metrics`
//!   and `--sink logs`) in a fresh group.
//! - A model call whose content came only as a
//!   `gen_ai.client.inference.operation.details` log record shows the
//!   messages with the call; `gen_ai.evaluation.result` records become the
//!   span's scores; the metrics API answers the SDK's known totals.
//! - The Rust OpenTelemetry SDK's OTLP exporters (metrics over gRPC, logs
//!   over HTTP) deliver every record once and the counter's true total.
//! - Known answer: an application tracing one call in ten but recording the
//!   GenAI metrics of all of them (`genai_app.py`, the Python SDK):
//!   `/llm/costs` and `/llm/metrics` with `source=auto` give the true totals
//!   of every call, each once, beside an application that has spans only.
//! - Hostile input (100 000 attribute sets of one metric, inconsistent
//!   histograms, NaN and infinite values, a cumulative counter going
//!   backwards, a 10 MB log body) is handled with a counted reason, and
//!   nothing else of the same requests is lost.

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::process::Service;
use observatory_integration::{now_ns, wait_for, workspace_bin};
use observatory_schemas::otlp::common::{any_value, AnyValue, KeyValue};
use observatory_schemas::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
use observatory_schemas::otlp::logs_service::logs_service_client::LogsServiceClient;
use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
use observatory_schemas::otlp::metrics::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use observatory_schemas::otlp::metrics_service::metrics_service_client::MetricsServiceClient;
use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_int, kv_str};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const MS: u64 = 1_000_000;

/// The Python SDK's virtualenv, made (once) by the project's script.
fn python() -> String {
    let out = std::process::Command::new("integration/otel-python/install.sh")
        .current_dir(workspace_root())
        .output()
        .expect("run integration/otel-python/install.sh");
    assert!(
        out.status.success(),
        "install.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("install.sh prints the python path")
        .trim()
        .to_owned()
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs `send.py`; returns its summary line.
fn send(python: &str, args: &[&str]) -> Value {
    run_script(python, "send.py", args)
}

/// Runs a script of integration/otel-python/; returns its summary line.
fn run_script(python: &str, script: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(python)
        .arg(format!("integration/otel-python/{script}"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run the script");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).expect("a JSON summary")
}

async fn count(pipeline: &Pipeline, sql: &str, run: &str) -> i64 {
    let client = pipeline.db.client().await;
    client
        .query_one(sql, &[&run])
        .await
        .unwrap()
        .get::<_, i64>(0)
}

const POINTS_OF_RUN: &str =
    "SELECT count(*) FROM metric_points p JOIN metric_series s USING (series_id)
     WHERE s.attributes ->> 'run_id' = $1";
const LOGS_OF_RUN: &str = "SELECT count(*) FROM logs WHERE attributes ->> 'run_id' = $1";

async fn wait_counts(pipeline: &Pipeline, run: &str, points: i64, logs: i64) {
    wait_for(
        &format!("run {run}: {points} points, {logs} records"),
        WAIT,
        || async {
            let p = count(pipeline, POINTS_OF_RUN, run).await;
            let l = count(pipeline, LOGS_OF_RUN, run).await;
            assert!(
                p <= points && l <= logs,
                "run {run}: {p} points, {l} records: more than sent"
            );
            if std::env::var_os("METRICS_LOGS_DEBUG").is_some() {
                eprintln!("run {run}: {p} points, {l} records");
            }
            (p == points && l == logs).then_some(())
        },
    )
    .await;
}

/// A trace with one model call whose span carries no content.
fn model_call(trace: [u8; 16], span: [u8; 8], at: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "chat-app")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace.to_vec(),
                    span_id: span.to_vec(),
                    name: "chat gpt-4o-mini".into(),
                    kind: 3,
                    start_time_unix_nano: at,
                    end_time_unix_nano: at + 400 * MS,
                    attributes: vec![
                        kv_str("gen_ai.operation.name", "chat"),
                        kv_str("gen_ai.provider.name", "openai"),
                        kv_str("gen_ai.request.model", "gpt-4o-mini"),
                        kv_int("gen_ai.usage.input_tokens", 12),
                        kv_int("gen_ai.usage.output_tokens", 1),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn replay(pipeline: &Pipeline, sink: &str) {
    let out = std::process::Command::new(workspace_bin("observatory-consumer"))
        .args(["replay", "--sink", sink, "--from", "earliest"])
        .env("KAFKA_BROKERS", observatory_integration::kafka_brokers())
        .env("KAFKA_TRACES_TOPIC", &pipeline.topic)
        .env("KAFKA_METRICS_TOPIC", &pipeline.metrics_topic)
        .env("KAFKA_LOGS_TOPIC", &pipeline.logs_topic)
        .env("KAFKA_SCORES_TOPIC", &pipeline.scores_topic)
        .env("REPLAY_GROUP_ID", observatory_integration::unique("replay"))
        .env("DATABASE_URL", &pipeline.db.url)
        .env(
            "CONSUMER_ADMIN_ADDR",
            observatory_integration::free_addr().to_string(),
        )
        .output()
        .expect("run observatory-consumer replay");
    assert!(
        out.status.success(),
        "replay --sink {sink}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn api_get(api: &Service, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", api.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_metrics_and_logs_arrive_once_through_a_kill_and_a_replay() {
    let python = python();
    // Content is stored only when captured (the content policy applies to
    // log records as to spans).
    let mut pipeline =
        Pipeline::start("key-acme=acme", &[("CAPTURE_CONTENT", "true".into())], WAIT).await;
    let trace = [0x5a; 16];
    let span = [0x5b; 8];
    export(
        &pipeline.collector,
        "key-acme",
        model_call(trace, span, now_ns() - 5_000 * MS),
    )
    .await;
    pipeline.wait_for_spans(1, WAIT).await;

    // HTTP, with content and evaluation events on the call's span.
    let run_a = observatory_integration::unique("run-a");
    let http = format!("http://{}", pipeline.collector.http);
    let a = send(
        &python,
        &[
            "--protocol",
            "http",
            "--endpoint",
            &http,
            "--run-id",
            &run_a,
            "--header",
            "x-api-key=key-acme",
            "--trace-id",
            &hex(&trace),
            "--span-id",
            &hex(&span),
        ],
    );
    let points_a = a["points"].as_i64().unwrap();
    let logs_a = a["logs"].as_i64().unwrap();
    assert_eq!((points_a, logs_a), (24, 13), "{a}");
    wait_counts(&pipeline, &run_a, points_a, logs_a).await;

    // gRPC while the sink is down (SIGKILL): stored once it is back.
    pipeline.sink.kill();
    let run_b = observatory_integration::unique("run-b");
    let grpc = format!("http://{}", pipeline.collector.grpc);
    let b = send(
        &python,
        &[
            "--protocol",
            "grpc",
            "--endpoint",
            &grpc,
            "--run-id",
            &run_b,
            "--header",
            "x-api-key=key-acme",
            "--delta",
            "--logs",
            "25",
        ],
    );
    // Let the killed member's session expire, then start it again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    pipeline.sink.start();
    let (points_b, logs_b) = (b["points"].as_i64().unwrap(), b["logs"].as_i64().unwrap());
    wait_counts(&pipeline, &run_b, points_b, logs_b).await;
    wait_counts(&pipeline, &run_a, points_a, logs_a).await;

    // A replay of each topic in a fresh group changes nothing.
    let scores_before = count(&pipeline, "SELECT count(*) FROM scores WHERE $1 <> ''", "x").await;
    replay(&pipeline, "metrics");
    replay(&pipeline, "logs");
    for (run, points, logs) in [(&run_a, points_a, logs_a), (&run_b, points_b, logs_b)] {
        assert_eq!(
            count(&pipeline, POINTS_OF_RUN, run).await,
            points,
            "{run}: points after replay"
        );
        assert_eq!(
            count(&pipeline, LOGS_OF_RUN, run).await,
            logs,
            "{run}: records after replay"
        );
    }
    assert_eq!(
        count(&pipeline, "SELECT count(*) FROM scores WHERE $1 <> ''", "x").await,
        scores_before
    );

    // The API: the call shows the messages of its log record, its logs and
    // the scores of the evaluation records.
    let api = Service::api(&[
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
    ]);
    api.wait_ready(WAIT).await;
    let viewer = token("acme", "viewer", "1h");
    let (status, body) = api_get(&api, &format!("/api/v1/traces/{}", hex(&trace)), &viewer).await;
    assert_eq!(status, 200, "{body}");
    let node = &body["roots"][0];
    let messages = &node["llm"]["messages"];
    assert_eq!(messages["input"][0]["role"], "user", "{node}");
    assert_eq!(messages["input"][0]["content"], "What is 2+2?", "{node}");
    assert_eq!(messages["output"][0]["content"], "4", "{node}");
    assert_eq!(node["logs"].as_array().map(Vec::len), Some(3), "{node}");
    let names: Vec<&str> = node["scores"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"relevance") && names.contains(&"groundedness"),
        "{names:?}"
    );

    // Logs search: by text, by attribute, by severity; another tenant sees none.
    let (status, page) = api_get(
        &api,
        &format!("/api/v1/logs?q=record%203%20of%20{run_a}"),
        &viewer,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    let (_, page) = api_get(
        &api,
        &format!("/api/v1/logs?attr=run_id={run_b}&limit=10"),
        &viewer,
    )
    .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 10, "{page}");
    assert!(page["next_cursor"].is_string(), "{page}");
    let (_, warn) = api_get(
        &api,
        &format!("/api/v1/logs?attr=run_id={run_b}&severity=warn"),
        &viewer,
    )
    .await;
    assert_eq!(
        warn["records"].as_array().unwrap().len(),
        5,
        "every 5th of 25 is WARN: {warn}"
    );
    let other = token("beta", "viewer", "1h");
    let (_, none) = api_get(&api, &format!("/api/v1/logs?attr=run_id={run_b}"), &other).await;
    assert_eq!(none["records"].as_array().unwrap().len(), 0, "{none}");
    let (status, bad) = api_get(&api, "/api/v1/logs?severity=loud", &viewer).await;
    assert_eq!(
        (status, bad["parameter"].as_str()),
        (400, Some("severity")),
        "{bad}"
    );

    // Metrics: names, labels, and the SDK's known totals.
    let (_, names) = api_get(&api, "/api/v1/metrics/names", &viewer).await;
    let listed: Vec<&str> = names["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for name in [
        "obs.test.requests",
        "gen_ai.client.token.usage",
        "obs.test.size",
    ] {
        assert!(listed.contains(&name), "{name} in {listed:?}");
    }
    let (_, labels) = api_get(
        &api,
        "/api/v1/metrics/labels?name=gen_ai.client.token.usage",
        &viewer,
    )
    .await;
    assert!(labels.to_string().contains("gen_ai.token.type"), "{labels}");
    for (run, summary) in [(&run_a, &a), (&run_b, &b)] {
        let total = |answer: &Value| -> f64 {
            answer["series"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["points"].as_array().unwrap())
                .map(|p| p[1].as_f64().unwrap())
                .sum()
        };
        let (status, inc) = api_get(
            &api,
            &format!("/api/v1/metrics/query?name=obs.test.requests&filter=run_id={run}&agg=increase&step=1h"),
            &viewer,
        )
        .await;
        assert_eq!(status, 200, "{inc}");
        assert_eq!(
            total(&inc),
            summary["counter_total"].as_f64().unwrap(),
            "{run}: {inc}"
        );
        let (_, tokens) = api_get(
            &api,
            &format!("/api/v1/metrics/query?name=gen_ai.client.token.usage&filter=run_id={run}&group_by=gen_ai.token.type&agg=sum&step=1h"),
            &viewer,
        )
        .await;
        for line in tokens["series"].as_array().unwrap() {
            let kind = line["labels"]["gen_ai.token.type"].as_str().unwrap();
            let sum: f64 = line["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_f64().unwrap())
                .sum();
            assert_eq!(
                sum,
                summary["tokens"][kind].as_f64().unwrap(),
                "{run} {kind}: {tokens}"
            );
        }
        let (status, p95) = api_get(
            &api,
            &format!("/api/v1/metrics/query?name=gen_ai.client.operation.duration&filter=run_id={run}&agg=p95&step=1h"),
            &viewer,
        )
        .await;
        assert_eq!(status, 200, "{p95}");
        assert!(total(&p95) > 0.0, "{p95}");
    }
    let (status, wrong) = api_get(
        &api,
        "/api/v1/metrics/query?name=obs.test.requests&agg=p95",
        &viewer,
    )
    .await;
    assert_eq!(status, 400, "{wrong}");
}

/// A request with the tenant's ingest key.
fn keyed_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", "key-acme".parse().unwrap());
    request
}

fn attrs(n: usize) -> Vec<KeyValue> {
    vec![kv_str("request.id", format!("r{n}"))]
}

fn gauge_point(value: f64, attributes: Vec<KeyValue>, t: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn metrics_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "hostile")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_metrics_and_logs_are_counted_and_nothing_else_is_lost() {
    let pipeline = Pipeline::start(
        "key-acme=acme",
        &[
            ("METRICS_MAX_SERIES", "1000".into()),
            ("LOG_BODY_MAX_BYTES", "65536".into()),
        ],
        WAIT,
    )
    .await;
    let endpoint = format!("http://{}", pipeline.collector.grpc);
    let mut metrics = MetricsServiceClient::connect(endpoint.clone())
        .await
        .unwrap();
    let t = now_ns();
    // 100 000 attribute sets of one metric, 10 000 per request, and a good
    // gauge in every request.
    for batch in 0..10 {
        let points = (0..10_000)
            .map(|i| gauge_point(1.0, attrs(batch * 10_000 + i), t))
            .collect();
        let good = gauge_point(
            batch as f64,
            vec![kv_str("kind", "good")],
            t + batch as u64 * MS,
        );
        let request = metrics_request(vec![
            Metric {
                name: "hostile.cardinality".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            },
            Metric {
                name: "hostile.good".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![good],
                })),
                ..Default::default()
            },
        ]);
        metrics
            .export(keyed_request(request))
            .await
            .expect("accepted");
    }
    // NaN, infinity, an inconsistent histogram, a counter going backwards.
    let histogram = |counts: Vec<u64>, count: u64, at: u64| HistogramDataPoint {
        time_unix_nano: at,
        start_time_unix_nano: t - 1_000 * MS,
        count,
        sum: Some(1.0),
        bucket_counts: counts,
        explicit_bounds: vec![1.0, 2.0],
        ..Default::default()
    };
    let counter = |value: f64, at: u64| NumberDataPoint {
        start_time_unix_nano: t - 1_000 * MS,
        time_unix_nano: at,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    let request = metrics_request(vec![
        Metric {
            name: "hostile.values".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![
                    gauge_point(f64::NAN, vec![], t),
                    gauge_point(f64::INFINITY, vec![], t + 1),
                    gauge_point(7.0, vec![], t + 2),
                ],
            })),
            ..Default::default()
        },
        Metric {
            name: "hostile.histogram".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![
                    histogram(vec![1, 1], 2, t),
                    histogram(vec![1, 1, 1], 3, t + 1),
                ],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "hostile.counter".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![counter(10.0, t), counter(4.0, t + 1_000 * MS)],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
    ]);
    metrics
        .export(keyed_request(request))
        .await
        .expect("accepted");

    // A 10 MB log body (the collector's limit is 8 MiB per request: refused
    // whole with a clear error), then records around a 1 MB body.
    let mut logs = LogsServiceClient::connect(endpoint)
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let record = |body: String, n: i64| LogRecord {
        time_unix_nano: t,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: vec![kv_int("n", n)],
        ..Default::default()
    };
    let logs_request = |records: Vec<LogRecord>| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "hostile")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let huge = logs
        .export(keyed_request(logs_request(vec![record(
            "x".repeat(10 << 20),
            0,
        )])))
        .await
        .expect_err("a 10 MB request is refused");
    assert!(
        matches!(
            huge.code(),
            tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument | tonic::Code::OutOfRange
        ),
        "{huge:?}"
    );
    logs.export(keyed_request(logs_request(vec![
        record("before".into(), 1),
        record("y".repeat(900_000), 2),
        record("after".into(), 3),
    ])))
    .await
    .expect("accepted");

    let sink = &pipeline.sink;
    wait_for("every point and record counted", WAIT, || async {
        let dropped = |reason: &str| {
            let name = format!("observatory_consumer_items_dropped_total{{sink=\"metrics\",reason=\"{reason}\"}}");
            async move { sink.metric(&name).await }
        };
        let done = dropped("cardinality_limit").await == 99_000.0
            && dropped("non_finite").await == 2.0
            && dropped("invalid_histogram").await == 1.0
            && sink
                .metric("observatory_consumer_items_flagged_total{sink=\"logs\",reason=\"body_truncated\"}")
                .await
                == 1.0;
        done.then_some(())
    })
    .await;
    let client = pipeline.db.client().await;
    let one = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        one("SELECT count(*) FROM metric_series WHERE name = 'hostile.cardinality'").await,
        1000
    );
    assert_eq!(
        one("SELECT series FROM metric_names WHERE name = 'hostile.cardinality'").await,
        1000
    );
    // The first 10 000 attribute sets again, a second later, in a batch of
    // their own: the admitted series get a point each, the refused ones
    // are refused again (never taken as known), and no point is stored
    // without its series.
    let again = (0..10_000)
        .map(|i| gauge_point(1.0, attrs(i), t + 1_000 * MS))
        .collect();
    metrics
        .export(keyed_request(metrics_request(vec![Metric {
            name: "hostile.cardinality".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: again })),
            ..Default::default()
        }])))
        .await
        .expect("accepted");
    // Every point of the 110 000 sent is stored or counted as refused.
    wait_for("the repeated attribute sets stored or counted", WAIT, || async {
        let dropped = sink
            .metric("observatory_consumer_items_dropped_total{sink=\"metrics\",reason=\"cardinality_limit\"}")
            .await as i64;
        let stored = pipeline
            .db
            .count("SELECT count(*) FROM metric_points p JOIN metric_series s USING (series_id) WHERE s.name = 'hostile.cardinality'")
            .await;
        let orphans = pipeline
            .db
            .count("SELECT count(*) FROM metric_points p WHERE NOT EXISTS (SELECT 1 FROM metric_series s WHERE s.series_id = p.series_id)")
            .await;
        (dropped + stored + orphans == 110_000).then_some(())
    })
    .await;
    assert_eq!(
        one("SELECT count(*) FROM metric_points p WHERE NOT EXISTS (SELECT 1 FROM metric_series s WHERE s.series_id = p.series_id)").await,
        0,
        "no point without its series"
    );
    assert_eq!(
        one("SELECT count(*) FROM metric_points p JOIN metric_series s USING (series_id) WHERE s.name = 'hostile.good'").await,
        10,
        "the good metric of every request is stored"
    );
    assert_eq!(
        one("SELECT count(*) FROM metric_points p JOIN metric_series s USING (series_id) WHERE s.name IN ('hostile.values', 'hostile.histogram', 'hostile.counter')").await,
        4,
        "the finite gauge, the consistent histogram, both counter points"
    );
    assert_eq!(
        sink.metric("observatory_consumer_items_flagged_total{sink=\"metrics\",reason=\"cumulative_reset\"}")
            .await,
        1.0
    );
    assert_eq!(
        one("SELECT count(*) FROM logs WHERE service = 'hostile'").await,
        3
    );
    assert_eq!(
        one("SELECT count(*) FROM logs WHERE service = 'hostile' AND length(body::text) < 70000")
            .await,
        3,
        "the long body is cut"
    );

    // A message that is not OTLP at all goes to its signal's dead-letter
    // topic, where `dlq list --sink` finds it; the loops keep serving.
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set(
            "bootstrap.servers",
            observatory_integration::kafka_brokers(),
        )
        .create()
        .unwrap();
    for (topic, sink, what) in [
        (
            &pipeline.metrics_topic,
            "metrics",
            "undecodable OTLP metrics protobuf",
        ),
        (
            &pipeline.logs_topic,
            "logs",
            "undecodable OTLP logs protobuf",
        ),
    ] {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("poison")
                    .payload(&b"\xff\xff\xffnot protobuf"[..]),
                Duration::from_secs(10),
            )
            .await
            .expect("the topic takes the record");
        let brokers = observatory_integration::kafka_brokers();
        let dlq = format!("{topic}.dlq");
        let letters = tokio::task::spawn_blocking(move || {
            observatory_integration::kafka::read_topic(&brokers, &dlq, WAIT, |r| !r.is_empty())
        })
        .await
        .unwrap();
        assert_eq!(letters.len(), 1, "{sink}: one letter");
        assert!(
            letters[0].headers["dlq-reason"].contains(what),
            "{:?}",
            letters[0].headers
        );
        let env_topic = if sink == "metrics" {
            "KAFKA_METRICS_TOPIC"
        } else {
            "KAFKA_LOGS_TOPIC"
        };
        let out = std::process::Command::new(workspace_bin("observatory-consumer"))
            .args(["dlq", "list", "--sink", sink])
            .env("KAFKA_BROKERS", observatory_integration::kafka_brokers())
            .env(env_topic, topic.as_str())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("letters=1"),
            "dlq list --sink {sink}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_metrics_and_logs_arrive_once() {
    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
    let pipeline = Pipeline::start("key-acme=acme", &[], WAIT).await;
    let run = observatory_integration::unique("rust-run");
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("rust-sdk")
        .build();

    // Metrics over gRPC, flushed by hand three times.
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("x-api-key", "key-acme".parse().unwrap());
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", pipeline.collector.grpc))
        .with_metadata(metadata)
        .build()
        .unwrap();
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource.clone())
        .build();
    let meter = meters.meter("observatory-test");
    let counter = meter.u64_counter("rust.requests").build();
    let latency = meter.f64_histogram("rust.latency").with_unit("s").build();
    let labels = [opentelemetry::KeyValue::new("run_id", run.clone())];
    for i in 0..3u64 {
        counter.add(i + 1, &labels);
        latency.record(0.1 * (i + 1) as f64, &labels);
        meters.force_flush().expect("metrics exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    meters.shutdown().expect("metrics exporter shut down");

    // Logs over HTTP/protobuf.
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(format!("http://{}/v1/logs", pipeline.collector.http))
        .with_headers([("x-api-key".to_owned(), "key-acme".to_owned())].into())
        .build()
        .unwrap();
    let loggers = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = loggers.logger("observatory-test");
    for i in 0..20 {
        let mut record = logger.create_log_record();
        record.set_body(format!("rust record {i}").into());
        record.set_severity_number(Severity::Info);
        record.add_attribute("run_id", run.clone());
        record.add_attribute("index", i as i64);
        logger.emit(record);
    }
    loggers.force_flush().expect("logs exported");
    loggers.shutdown().expect("logs exporter shut down");

    // Every record once; the counter's last cumulative value is its total,
    // and every export's points are stored once.
    wait_for("the Rust SDK's records and points", WAIT, || async {
        let logs = count(&pipeline, LOGS_OF_RUN, &run).await;
        assert!(logs <= 20, "{logs} records of 20");
        let total = pipeline
            .db
            .client()
            .await
            .query_one(
                "SELECT coalesce(max(p.value), 0) FROM metric_points p JOIN metric_series s USING (series_id)
                  WHERE s.name = 'rust.requests' AND s.attributes ->> 'run_id' = $1",
                &[&run],
            )
            .await
            .unwrap()
            .get::<_, f64>(0);
        (logs == 20 && total == 6.0).then_some(())
    })
    .await;
    let client = pipeline.db.client().await;
    let duplicates: i64 = client
        .query_one(
            "SELECT count(*) - count(DISTINCT (p.series_id, p.time)) FROM metric_points p
               JOIN metric_series s USING (series_id) WHERE s.attributes ->> 'run_id' = $1",
            &[&run],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(duplicates, 0);
    let histograms: i64 = client
        .query_one(
            "SELECT count(*) FROM metric_points p JOIN metric_series s USING (series_id)
              WHERE s.name = 'rust.latency' AND s.kind = 3 AND s.attributes ->> 'run_id' = $1
                AND p.count IS NOT NULL AND cardinality(p.buckets) = cardinality(s.bounds) + 1",
            &[&run],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        histograms >= 3,
        "{histograms} histogram points with their buckets"
    );
}

/// USD per million (input, output) tokens today, from the price table's
/// public figures (schemas/src/prices.json).
fn price(model: &str) -> (f64, f64) {
    match model {
        "gpt-4o" => (2.5, 10.0),
        "gpt-4o-mini" => (0.15, 0.6),
        "claude-sonnet-4-20250514" => (3.0, 15.0),
        other => panic!("no price for {other}"),
    }
}

/// (calls, errors, input, output, cost) of a `genai_app.py` summary: all
/// calls, or the traced ones only.
fn expected(summary: &Value, traced_only: bool) -> (i64, i64, i64, i64, f64) {
    let mut out = (0, 0, 0, 0, 0.0);
    for (model, m) in summary["models"].as_object().unwrap() {
        let get = |k: &str| m[k].as_i64().unwrap();
        let (calls, input, output) = if traced_only {
            (get("traced"), get("traced_input"), get("traced_output"))
        } else {
            (get("calls"), get("input"), get("output"))
        };
        let (pi, po) = price(model);
        out.0 += calls;
        out.1 += if traced_only { 0 } else { get("errors") };
        out.2 += input;
        out.3 += output;
        out.4 += (input as f64 * pi + output as f64 * po) / 1e6;
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-9 * b.abs()
}

/// Known answer: an application makes 1 000 model calls and traces one in
/// ten, recording the GenAI metrics (duration, token usage) of every call
/// through the official Python SDK (cumulative); a second one does 200 in
/// delta temporality, tracing one in five; a third has no metrics and
/// traces every call. `/llm/costs` with `source=auto` (the default) gives
/// the hand-computed totals of all 1 250 calls, each counted once; `spans`
/// gives the traced ones; `metrics` the 1 200; grouped and filtered answers
/// add up, and `/llm/metrics` agrees in minute and hour buckets.
#[tokio::test(flavor = "multi_thread")]
async fn sampled_traces_still_give_true_totals_from_the_genai_metrics() {
    let python = python();
    let pipeline = Pipeline::start("key-acme=acme", &[], WAIT).await;
    let from = humantime::format_rfc3339(std::time::SystemTime::now() - Duration::from_secs(600));
    let http = format!("http://{}", pipeline.collector.http);
    let header = "x-api-key=key-acme";
    let app = run_script(
        &python,
        "genai_app.py",
        &["--endpoint", &http, "--header", header, "--calls", "1000"],
    );
    let plain = run_script(
        &python,
        "genai_app.py",
        &[
            "--endpoint",
            &http,
            "--header",
            header,
            "--calls",
            "50",
            "--spans-only",
            "--service",
            "spans-only-app",
        ],
    );
    // A third in delta temporality, tracing one call in five.
    let delta = run_script(
        &python,
        "genai_app.py",
        &[
            "--endpoint",
            &http,
            "--header",
            header,
            "--calls",
            "200",
            "--traced-every",
            "5",
            "--delta",
            "--service",
            "genai-delta-app",
        ],
    );
    assert_eq!(app["traced"], 100, "{app}");
    assert_eq!(plain["traced"], 50, "{plain}");
    assert_eq!(delta["traced"], 40, "{delta}");
    let add = |a: (i64, i64, i64, i64, f64), b: (i64, i64, i64, i64, f64)| {
        (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3, a.4 + b.4)
    };
    let all = add(expected(&app, false), expected(&delta, false));
    let traced = add(expected(&app, true), expected(&delta, true));
    let others = expected(&plain, false);
    assert_eq!(all.0, 1200);

    let api = Service::api(&[
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
    ]);
    api.wait_ready(WAIT).await;
    let viewer = token("acme", "viewer", "1h");
    let costs = |query: String| {
        let (api, viewer, from) = (&api, &viewer, &from);
        async move {
            let (status, body) = api_get(
                api,
                &format!("/api/v1/llm/costs?from={from}{query}"),
                viewer,
            )
            .await;
            assert_eq!(status, 200, "{query}: {body}");
            body
        }
    };
    // Everything stored: the 190 spans' calls, and every call in metrics.
    wait_for(
        "190 traced calls and 1 200 calls in metrics",
        WAIT,
        || async {
            let spans = costs("&source=spans".into()).await;
            let metrics = costs("&source=metrics".into()).await;
            (spans["total"]["calls"] == 190 && metrics["total"]["calls"] == 1200).then_some(())
        },
    )
    .await;

    let auto = costs(String::new()).await;
    let total = &auto["total"];
    assert_eq!(total["calls"], all.0 + others.0, "{auto}");
    assert_eq!(total["errors"], all.1 + others.1, "{auto}");
    assert_eq!(total["input_tokens"], all.2 + others.2, "{auto}");
    assert_eq!(total["output_tokens"], all.3 + others.3, "{auto}");
    let cost = total["cost_usd"].as_f64().unwrap();
    assert!(
        close(cost, all.4 + others.4),
        "{cost} vs {}",
        all.4 + others.4
    );
    assert_eq!(auto["signal"]["requested"], "auto", "{auto}");
    assert_eq!(auto["signal"]["used"], "both", "{auto}");
    assert_eq!(
        auto["signal"]["metrics_services"],
        serde_json::json!(["genai-app", "genai-delta-app"])
    );

    let spans = costs("&source=spans".into()).await;
    assert_eq!(spans["total"]["calls"], traced.0 + others.0, "{spans}");
    let spans_cost = spans["total"]["cost_usd"].as_f64().unwrap();
    assert!(close(spans_cost, traced.4 + others.4), "{spans_cost}");
    assert_eq!(spans["signal"]["used"], "spans");

    let metrics = costs("&source=metrics".into()).await;
    assert_eq!(metrics["total"]["calls"], all.0, "{metrics}");
    assert_eq!(metrics["total"]["errors"], all.1, "{metrics}");
    assert!(close(metrics["total"]["cost_usd"].as_f64().unwrap(), all.4));
    assert_eq!(metrics["signal"]["used"], "metrics");

    // Grouped and filtered answers add up to the total.
    let by_model = costs("&group_by=model,service".into()).await;
    let calls: i64 = by_model["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["calls"].as_i64().unwrap())
        .sum();
    assert_eq!(calls, all.0 + others.0, "{by_model}");
    let gpt4o = by_model["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"]["model"] == "gpt-4o" && g["group"]["service"] == "genai-app")
        .unwrap();
    assert_eq!(gpt4o["calls"], app["models"]["gpt-4o"]["calls"], "{gpt4o}");
    assert_eq!(gpt4o["group"]["service"], "genai-app");
    let app_only = costs("&service=genai-app&environment=prod".into()).await;
    assert_eq!(app_only["total"]["calls"], 1000, "{app_only}");
    assert_eq!(app_only["signal"]["used"], "metrics", "{app_only}");

    // The time series, in minutes (every point read) and in hours (the
    // points reduced per hour in PostgreSQL): the same calls, with
    // percentiles from the histograms.
    for bucket in ["1m", "1h"] {
        let (status, series) = api_get(
            &api,
            &format!("/api/v1/llm/metrics?from={from}&bucket={bucket}"),
            &viewer,
        )
        .await;
        assert_eq!(status, 200, "{series}");
        let points: Vec<&Value> = series["series"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        let calls: i64 = points.iter().map(|p| p["calls"].as_i64().unwrap()).sum();
        assert_eq!(calls, all.0 + others.0, "{bucket}: {series}");
        let cost: f64 = points.iter().map(|p| p["cost_usd"].as_f64().unwrap()).sum();
        assert!(close(cost, all.4 + others.4), "{bucket}: {cost}");
        // Durations are 0.05 to 2 s: p95 in the metric's bucket (1.28, 2.56].
        let p95 = points
            .iter()
            .filter_map(|p| p["latency_ms"]["p95"].as_f64())
            .fold(0.0, f64::max);
        assert!((1280.0..=3100.0).contains(&p95), "{bucket}: p95 {p95}");
        assert_eq!(series["signal"]["used"], "both");
    }

    // Metrics carry no user: refused with metrics, spans only with auto.
    let (status, body) = api_get(
        &api,
        "/api/v1/llm/costs?source=metrics&group_by=user",
        &viewer,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("source"), "{body}");
    let by_user = costs("&group_by=user".into()).await;
    assert_eq!(by_user["signal"]["used"], "spans", "{by_user}");
    assert_eq!(by_user["total"]["calls"], traced.0 + others.0, "{by_user}");
}
