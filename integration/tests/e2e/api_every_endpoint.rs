//! End to end, over every operation of the OpenAPI document (so a new
//! endpoint is covered the day it is documented): the auth matrix, tenant
//! isolation and hostile input in every parameter.
//!
//! Two tenants' traces go through the real pipeline. Acme's data carries
//! markers (its trace id, service, user, attribute, prompt, model) that
//! appear nowhere in beta's; each data endpoint first shows a marker to
//! acme (so the isolation check can fail), then never to beta, whatever the
//! parameters, SQL metacharacters included. The API runs with the real
//! Redis cache, so a cached acme answer must not reach beta either.

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::process::Service;
use observatory_integration::wait_for;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_int, kv_str};
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(90);

/// Acme's trace id, and strings only acme's data holds.
const ACME_ID: &str = "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7";
const MARKERS: &[&str] = &[
    "a7a7a7a7a7a7",
    "p6enp6enp6en", // the id in base64, as Tempo's JSON writes it
    "acme-private-svc",
    "acme-root-op",
    "acme.secret",
    "acme-marker-7",
    "acme-user",
    "acme-session",
    "acme-env",
    "gpt-4o-mini",
    "confidential",
    "acme_secret", // the attribute key as Prometheus spells a label
];

/// When the metrics were sent (unix seconds): the Prometheus API's instant
/// queries are evaluated then.
static SIGNALS_SENT_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A trace of two spans: a root with an attribute and a model call.
fn trace(id: u8, tenant: &str, model: &str) -> ExportTraceServiceRequest {
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 60_000_000_000;
    let root = Span {
        trace_id: vec![id; 16],
        span_id: vec![1; 8],
        name: format!("{tenant}-root-op"),
        kind: 2,
        start_time_unix_nano: end - 2_000_000_000,
        end_time_unix_nano: end,
        attributes: vec![kv_str(&format!("{tenant}.secret"), "acme-marker-7")],
        ..Default::default()
    };
    let root = if tenant == "acme" {
        root
    } else {
        Span {
            attributes: vec![kv_str("beta.plain", "beta-value")],
            ..root
        }
    };
    let call = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: format!("chat {model}"),
        kind: 3,
        start_time_unix_nano: end - 1_500_000_000,
        end_time_unix_nano: end - 500_000_000,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", model),
            kv_int("gen_ai.usage.input_tokens", 1000),
            kv_int("gen_ai.usage.output_tokens", 100),
            kv_str("user.id", format!("{tenant}-user")),
            kv_str("session.id", format!("{tenant}-session")),
            kv_str(
                "gen_ai.input.messages",
                format!("a {tenant} question, confidential to {tenant}"),
            ),
        ],
        ..root.clone()
    };
    let call = if tenant == "acme" {
        call
    } else {
        let mut call = call;
        call.attributes.pop();
        call
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str(
                        "service.name",
                        if tenant == "acme" {
                            "acme-private-svc"
                        } else {
                            "beta-svc"
                        },
                    ),
                    kv_str("deployment.environment.name", format!("{tenant}-env")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![root, call],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One documented operation.
struct Operation {
    method: Method,
    path: String,
    /// No token needed (`security: []`).
    public: bool,
    /// Only admins (a documented 403).
    admin_only: bool,
    /// Its query parameters: name and whether it repeats (`type: array`).
    query: Vec<(String, bool)>,
    /// Its path parameters.
    path_params: Vec<String>,
}

fn operations() -> Vec<Operation> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../query/openapi.json"
    ))
    .expect("read query/openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let of = |place: &str| {
                params
                    .iter()
                    .filter(|p| p["in"] == place)
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_owned(),
                            p["schema"]["type"] == "array",
                        )
                    })
                    .collect::<Vec<_>>()
            };
            out.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                public: op["security"] == serde_json::json!([]),
                admin_only: op["responses"].get("403").is_some(),
                query: of("query"),
                path_params: of("path").into_iter().map(|(n, _)| n).collect(),
            });
        }
    }
    assert!(out.len() >= 20, "the document lists every operation");
    out
}

/// The operation's path with acme's values in its path parameters.
fn concrete(op: &Operation) -> String {
    if op.path.starts_with("/api/prom/") {
        return prometheus_concrete(op);
    }
    let tag = if op.path.starts_with("/api/v2/") {
        "resource.service.name"
    } else {
        "service.name"
    };
    let path = op
        .path
        .replace("{trace_id}", ACME_ID)
        .replace("{service}", "acme-private-svc")
        .replace("{tag}", tag)
        .replace("{score_id}", "acme-score-1")
        .replace("{name}", "acme-marker-7")
        .replace("{session_id}", "acme-session")
        .replace("{user_id}", "acme-user");
    // A required query parameter: acme's metric.
    match op.path.as_str() {
        "/api/v1/metrics/labels" | "/api/v1/metrics/query" => {
            format!("{path}?name={ACME_METRIC}")
        }
        _ => path,
    }
}

/// A Prometheus API route with parameters that show acme's metric: its
/// series (`job` is acme's service), label names and `job`'s values.
fn prometheus_concrete(op: &Operation) -> String {
    let sent = SIGNALS_SENT_AT.load(std::sync::atomic::Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = op.path.replace("{name}", "job");
    match op.path.as_str() {
        "/api/prom/api/v1/query_range" => format!(
            "{path}?query=queue_depth&start={}&end={now}&step=60",
            now - 3600
        ),
        "/api/prom/api/v1/query" => format!("{path}?query=queue_depth&time={}", sent + 1),
        "/api/prom/api/v1/series" => format!("{path}?match[]=queue_depth"),
        _ => path,
    }
}

/// A metric both tenants send (acme's description and labels hold markers).
const ACME_METRIC: &str = "queue.depth";

/// The body a write sends: acme's budget, score config or score.
fn body_of(method: &Method, path: &str) -> Option<String> {
    match (method.as_str(), path) {
        ("PUT", p) if p.starts_with("/api/v1/budgets/") => Some(r#"{"monthly_usd": 5}"#.into()),
        ("PUT", p) if p.starts_with("/api/v1/score-configs/") => {
            Some(r#"{"data_type": "numeric", "min": 0, "max": 1}"#.into())
        }
        ("POST", "/api/v1/scores") => Some(format!(
            r#"{{"id": "acme-score-1", "trace_id": "{ACME_ID}", "name": "acme-marker-7", "value": 0.5}}"#
        )),
        _ => None,
    }
}

/// Parameters that make an endpoint show what it holds (grouped by the
/// dimensions the markers are in).
fn probe_query(op: &Operation) -> &'static str {
    match op.path.as_str() {
        "/api/v1/llm/metrics" => "group_by=service,user,environment,model",
        "/api/v1/llm/costs" => "group_by=service,user,model&top=100",
        "/api/v1/metrics/query" => "group_by=svc",
        _ => "",
    }
}

struct Client {
    http: reqwest::Client,
    api: String,
}

struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    /// The `parameter` of a problem document.
    fn parameter(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["parameter"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn markers(&self) -> Vec<&'static str> {
        MARKERS
            .iter()
            .copied()
            .filter(|m| self.body.contains(m))
            .collect()
    }
}

impl Client {
    async fn call(&self, method: Method, path_and_query: &str, token: Option<&str>) -> Answer {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.api));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let path = path_and_query.split('?').next().unwrap_or_default();
        if let Some(body) = body_of(&method, path) {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Answer { status, body }
    }
}

/// Sends one gauge point of [`ACME_METRIC`] labelled `svc` (described,
/// for acme) and one log
/// record of service `svc` with `body`, with the tenant's ingest `key`.
async fn signals(pipeline: &Pipeline, key: &str, svc: &str, body: &str) {
    use observatory_schemas::otlp::common::{any_value, AnyValue};
    use observatory_schemas::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use observatory_schemas::otlp::logs_service::logs_service_client::LogsServiceClient;
    use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
    use observatory_schemas::otlp::metrics::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use observatory_schemas::otlp::metrics_service::metrics_service_client::MetricsServiceClient;
    use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    SIGNALS_SENT_AT.store(now / 1_000_000_000, std::sync::atomic::Ordering::Relaxed);
    let mut attributes = vec![kv_str("svc", svc)];
    if svc.starts_with("acme") {
        attributes.push(kv_str("acme.secret", "acme-marker-7"));
    }
    let resource = Some(Resource {
        attributes: vec![kv_str("service.name", svc)],
        ..Default::default()
    });
    fn keyed<T>(key: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().unwrap());
        request
    }
    let endpoint = format!("http://{}", pipeline.collector.grpc);
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: ACME_METRIC.into(),
                    description: if svc.starts_with("acme") {
                        "confidential queue depth".into()
                    } else {
                        String::new()
                    },
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes,
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsDouble(3.0)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    MetricsServiceClient::connect(endpoint.clone())
        .await
        .unwrap()
        .export(keyed(key, metrics))
        .await
        .expect("metrics accepted");
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: now,
                    severity_number: 9,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    LogsServiceClient::connect(endpoint)
        .await
        .unwrap()
        .export(keyed(key, logs))
        .await
        .expect("logs accepted");
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_checks_auth_keeps_tenants_apart_and_names_bad_parameters() {
    let pipeline = Pipeline::start(
        "key-acme=acme,key-beta=beta",
        &[("CAPTURE_CONTENT", "true".into())],
        WAIT,
    )
    .await;
    export(
        &pipeline.collector,
        "key-acme",
        trace(0xa7, "acme", "gpt-4o-mini"),
    )
    .await;
    export(
        &pipeline.collector,
        "key-beta",
        trace(0xb7, "beta", "gpt-4o"),
    )
    .await;
    pipeline.wait_for_spans(4, WAIT).await;
    // A metric and a log record of each tenant, acme's with markers.
    for (key, svc, body) in [
        ("key-acme", "acme-private-svc", "acme-marker-7 confidential"),
        ("key-beta", "beta-svc", "beta record"),
    ] {
        signals(&pipeline, key, svc, body).await;
    }
    wait_for("the metrics and logs stored", WAIT, || async {
        let points = pipeline
            .db
            .count("SELECT count(*) FROM metric_points")
            .await;
        let logs = pipeline.db.count("SELECT count(*) FROM logs").await;
        (points == 2 && logs == 2).then_some(())
    })
    .await;

    let api = Service::api(&[
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
        ("JWT_LEEWAY", "0s".into()),
        (
            "REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        ("RATE_LIMIT_BURST", "100000".into()),
        ("PIPELINE_TENANTS", "acme".into()),
        ("KAFKA_BROKERS", observatory_integration::kafka_brokers()),
        ("KAFKA_SCORES_TOPIC", pipeline.scores_topic.clone()),
        ("KAFKA_SCORES_PARTITIONS", "2".into()),
        ("RATE_LIMIT_PER_SECOND", "100000".into()),
    ]);
    api.wait_ready(WAIT).await;
    let c = Client {
        http: reqwest::Client::new(),
        api: format!("http://{}", api.admin),
    };
    let acme_viewer = token("acme", "viewer", "1h");
    let acme_admin = token("acme", "admin", "1h");
    let beta_viewer = token("beta", "viewer", "1h");
    let beta_admin = token("beta", "admin", "1h");
    let expired = token("acme", "admin", "1s");
    let forged = {
        let mut t = acme_admin.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    let ops = operations();

    // Acme's budget on its service, so the budget endpoints hold acme data.
    let put = c
        .call(
            Method::PUT,
            "/api/v1/budgets/services/acme-private-svc",
            Some(&acme_admin),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);

    // --- The auth matrix, on every operation.
    tokio::time::sleep(Duration::from_secs(2)).await; // `expired` is now past (leeway 0)
    for op in &ops {
        let path = concrete(op);
        let what = format!("{} {}", op.method, op.path);
        if op.public {
            let a = c.call(op.method.clone(), &path, None).await;
            assert_eq!(a.status, 200, "{what} needs no token: {}", a.body);
            continue;
        }
        let none = c.call(op.method.clone(), &path, None).await;
        assert_eq!(none.status, 401, "{what} without a token");
        assert_eq!(none.parameter(), "Authorization", "{what}");
        for (why, bad) in [
            ("malformed", "not-a-jwt"),
            ("badly signed", forged.as_str()),
            ("expired", expired.as_str()),
        ] {
            let a = c.call(op.method.clone(), &path, Some(bad)).await;
            assert_eq!(a.status, 401, "{what} with a {why} token: {}", a.body);
        }
        let viewer = c.call(op.method.clone(), &path, Some(&acme_viewer)).await;
        if op.admin_only {
            assert_eq!(viewer.status, 403, "{what} as a viewer: {}", viewer.body);
            let admin = c.call(op.method.clone(), &path, Some(&acme_admin)).await;
            assert!(
                matches!(admin.status, 200 | 202 | 204 | 404),
                "{what} as an admin: {} {}",
                admin.status,
                admin.body
            );
            if op.method == Method::DELETE && op.path.starts_with("/api/v1/scores/") {
                // Write it again for the isolation checks below.
                let post = c
                    .call(Method::POST, "/api/v1/scores", Some(&acme_admin))
                    .await;
                assert_eq!(post.status, 202, "{what}: {}", post.body);
            } else if op.method == Method::DELETE {
                // Put it back for the isolation checks below.
                let put = c.call(Method::PUT, &path, Some(&acme_admin)).await;
                assert_eq!(put.status, 200, "{what}: {}", put.body);
            }
        } else {
            assert!(
                matches!(viewer.status, 200 | 404),
                "{what} as a viewer: {} {}",
                viewer.status,
                viewer.body
            );
        }
    }

    // Acme's score goes through the broker and the sink: wait until it is read.
    observatory_integration::wait_for("acme's score stored", WAIT, || async {
        let a = c
            .call(
                Method::GET,
                "/api/v1/scores?name=acme-marker-7",
                Some(&acme_viewer),
            )
            .await;
        a.body.contains("acme-score-1").then_some(())
    })
    .await;

    // --- Tenant isolation: acme sees its data, beta never does.
    let data_ops: Vec<&Operation> = ops
        .iter()
        .filter(|op| op.method == Method::GET && !op.public && !op.admin_only)
        .collect();
    let mut shown = 0;
    for op in &data_ops {
        let path = with_query(&concrete(op), probe_query(op));
        let acme = c.call(Method::GET, &path, Some(&acme_viewer)).await;
        assert_eq!(acme.status, 200, "GET {} for acme: {}", op.path, acme.body);
        let data = !matches!(
            op.path.as_str(),
            "/api/echo" | "/api/status/buildinfo" | "/api/prom/api/v1/status/buildinfo"
        );
        if data {
            assert!(
                !acme.markers().is_empty(),
                "GET {path} shows acme its own data: {}",
                acme.body
            );
            shown += 1;
        }
        // The same request (same cache key apart from the tenant) for beta.
        let beta = c.call(Method::GET, &path, Some(&beta_viewer)).await;
        assert!(
            matches!(beta.status, 200 | 404),
            "GET {path} for beta: {} {}",
            beta.status,
            beta.body
        );
        assert!(
            beta.markers().is_empty(),
            "GET {path} shows beta acme's {:?}: {}",
            beta.markers(),
            beta.body
        );
    }
    assert!(shown >= 13, "{shown} data endpoints checked");
    // Beta's admin cannot touch acme's budget: it is not there for beta.
    let delete = c
        .call(
            Method::DELETE,
            "/api/v1/budgets/services/acme-private-svc",
            Some(&beta_admin),
        )
        .await;
    assert_eq!(delete.status, 404, "{}", delete.body);
    let budgets = c
        .call(Method::GET, "/api/v1/budgets", Some(&acme_viewer))
        .await;
    assert!(
        budgets.body.contains("acme-private-svc"),
        "{}",
        budgets.body
    );

    // --- Hostile input in every parameter, as beta.
    let huge = "9".repeat(5000);
    let sql = [
        "'%20OR%20'1'='1",
        "1;%20DROP%20TABLE%20spans;%20--",
        "acme%27)%20UNION%20SELECT%20*%20FROM%20spans--",
        "%25%27%22%5C",
    ];
    let mut checked = 0;
    for op in data_ops.iter().filter(|op| !op.query.is_empty()) {
        let path = concrete(op);
        for (name, repeats) in &op.query {
            let what = format!("GET {} {name}", op.path);
            // Too long: refused by name.
            let a = c
                .call(
                    Method::GET,
                    &with_query(&path, &format!("{name}={huge}")),
                    Some(&beta_viewer),
                )
                .await;
            assert_eq!(a.status, 400, "{what}: a 5000-byte value: {}", a.body);
            assert_eq!(a.parameter(), *name, "{what}: {}", a.body);
            // SQL metacharacters: data or a 400 naming it, never acme's rows.
            for value in sql {
                let a = c
                    .call(
                        Method::GET,
                        &with_query(&path, &format!("{name}={value}")),
                        Some(&beta_viewer),
                    )
                    .await;
                assert!(
                    a.status == 200 || (a.status == 400 && a.parameter() == *name),
                    "{what}={value}: {} {}",
                    a.status,
                    a.body
                );
                assert!(a.markers().is_empty(), "{what}={value}: {}", a.body);
            }
            // Given twice, on our own endpoints (Tempo's take the first, as Tempo does).
            if op.path.starts_with("/api/v1/") && !repeats {
                let a = c
                    .call(
                        Method::GET,
                        &with_query(&path, &format!("{name}=1&{name}=2")),
                        Some(&beta_viewer),
                    )
                    .await;
                assert_eq!(
                    (a.status, a.parameter()),
                    (400, name.clone()),
                    "{what} twice: {}",
                    a.body
                );
            }
            checked += 1;
        }
        // Inverted ranges name their first bound.
        let names: Vec<&str> = op.query.iter().map(|(n, _)| n.as_str()).collect();
        let inverted = if names.contains(&"from") {
            Some(("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"))
        } else if names.contains(&"start") {
            Some(("start=2000000000&end=1000000000", "start"))
        } else {
            None
        };
        if let Some((query, bound)) = inverted {
            let a = c
                .call(Method::GET, &with_query(&path, query), Some(&beta_viewer))
                .await;
            assert_eq!(
                (a.status, a.parameter()),
                (400, bound.to_owned()),
                "GET {} inverted: {}",
                op.path,
                a.body
            );
        }
    }
    assert!(checked >= 50, "{checked} parameters checked");

    // Bad path parameters.
    let long_tag = "t".repeat(300);
    for op in data_ops.iter().filter(|op| !op.path_params.is_empty()) {
        for name in &op.path_params {
            let bad: &[&str] = match name.as_str() {
                "trace_id" => &[
                    "zz",
                    "1'%20OR%20'1'='1",
                    "ffffffffffffffffffffffffffffffffffffffff",
                ],
                "tag" | "name" => &[&long_tag, "%ZZ", "%27%3B%20DROP"],
                "session_id" | "user_id" => &[&long_tag, "%ZZ", "%27%3B%20DROP"],
                other => panic!("no hostile values for path parameter {other}"),
            };
            let lookup = matches!(name.as_str(), "session_id" | "user_id");
            for value in bad {
                let path = op.path.replace(&format!("{{{name}}}"), value);
                let a = c.call(Method::GET, &path, Some(&beta_viewer)).await;
                assert!(
                    a.status == 400 && a.parameter() == *name
                        || (matches!(name.as_str(), "tag" | "name")
                            && a.status == 200
                            && a.markers().is_empty())
                        || (lookup && a.status == 404),
                    "GET {path}: {} {}",
                    a.status,
                    a.body
                );
            }
        }
    }
    let long_service = "s".repeat(5000);
    for method in [Method::PUT, Method::DELETE] {
        let a = c
            .call(
                method.clone(),
                &format!("/api/v1/budgets/services/{long_service}"),
                Some(&beta_admin),
            )
            .await;
        assert_eq!(
            (a.status, a.parameter()),
            (400, "service".to_owned()),
            "{method} a 5000-byte service: {}",
            a.body
        );
    }

    // Nothing above changed the data: acme's trace is whole.
    let trace = c
        .call(
            Method::GET,
            &format!("/api/v1/traces/{ACME_ID}"),
            Some(&acme_viewer),
        )
        .await;
    assert_eq!(trace.status, 200, "{}", trace.body);
    let trace: Value = serde_json::from_str(&trace.body).unwrap();
    assert_eq!(trace["span_count"], 2);
    pipeline.wait_for_spans(4, WAIT).await;
}
