//! The monitoring we ship reads what the pipeline really produces:
//!
//! - the alerting rules (`deploy/alerts/`) and the pipeline health dashboard
//!   (`deploy/grafana/dashboards/pipeline-health.json`) name only metrics
//!   that a running collector, PostgreSQL sink, Tempo sink, compactor and
//!   API expose on `/metrics`, and the dashboard groups only by labels those
//!   metrics carry; the PrometheusRule holds the plain file's rules;
//! - every SQL query of the LLM usage and cost dashboard
//!   (`deploy/grafana/dashboards/llm-usage.json`), its variables' included,
//!   expanded as Grafana's PostgreSQL data source expands its variables and
//!   macros, runs against a database that the real pipeline filled (and a
//!   budget set through the API) and returns rows that are not all zero:
//!   over a 1-hour range with a 1-minute interval (the per-minute rollups)
//!   and over a 7-hour range with a 1-hour interval (the hourly ones).
//!
//! YAML is read with a real YAML parser (the deployment checks' Python).

use observatory_integration::bucket::local_bucket;
use observatory_integration::collector::Collector;
use observatory_integration::grafana::{dashboard, panel_queries, rows, Grafana};
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, unique};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A YAML file as JSON, parsed by PyYAML (the deployment checks' venv).
fn yaml(path: &str) -> serde_json::Value {
    let python = std::env::var("DEPLOY_CHECK_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join(path))
        .output()
        .expect("run python (integration/deploy-check/install.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (alert name, expression) of every rule of `groups`.
fn rules(groups: &serde_json::Value) -> Vec<(String, String)> {
    groups
        .as_array()
        .expect("groups is a list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules is a list").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("an alert name").to_owned(),
                r["expr"].as_str().expect("an expression").to_owned(),
            )
        })
        .collect()
}

/// The metric names an expression uses: identifiers starting
/// `observatory_`.
fn names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("observatory_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_')) {
            out.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The metric names of a Prometheus/OpenMetrics text, with the suffixes
/// samples carry (`_total`, `_bucket`, `_sum`, `_count`).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        out.insert(name.to_owned());
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboards_read_what_the_pipeline_produces() {
    let plain = yaml("deploy/alerts/observatory.rules.yaml");
    let operator = yaml("deploy/alerts/observatory.prometheusrule.yaml");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    let rules_plain = rules(&plain["groups"]);
    assert_eq!(
        rules_plain,
        rules(&operator["spec"]["groups"]),
        "the PrometheusRule holds the plain file's rules"
    );
    // The issue's list, each covered by a rule.
    for needed in [
        "AuthFailureSpike",
        "CrossTenantRefusals",
        "RateLimitStorm",
        "DeadLettersGrowing",
        "ConsumerLagHigh",
        "ConsumerLagGrowing",
        "CollectorRefusing",
        "SinkCommitDelayHigh",
    ] {
        assert!(
            rules_plain.iter().any(|(a, _)| a.ends_with(needed)),
            "no rule for {needed}"
        );
    }

    // Every binary running, its /metrics scraped.
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let db = TestDb::create().await;
    let timescale = Service::consumer(
        "timescale",
        &[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", topic.clone()),
            ("KAFKA_GROUP_ID", unique("group")),
            ("DATABASE_URL", db.url.clone()),
        ],
    );
    let bucket = local_bucket();
    let mut env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_GROUP_ID", unique("group")),
    ];
    env.extend(bucket.env.iter().cloned());
    env.push(("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()));
    let tempo = Service::consumer("tempo", &env);
    timescale.wait_ready(WAIT).await;
    tempo.wait_ready(WAIT).await;
    // Minute blocks of a day ago for the compactor to merge, so that its
    // job metrics count.
    let day_ago = {
        let now = observatory_integration::now_ns();
        now - now % (86_400 * 1_000_000_000) - 86_400 * 1_000_000_000
    };
    observatory_integration::minute_blocks::write(&bucket.store, "monitoring", day_ago, 8, 10, 7)
        .await;
    let mut compactor_env = bucket.env.clone();
    compactor_env.push(("TEMPO_COMPACTION_INTERVAL", "1s".to_owned()));
    let compactor = Service::consumer("compact", &compactor_env);
    compactor.wait_ready(WAIT).await;
    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        (
            "JWT_SECRET",
            observatory_integration::api::SECRET.to_owned(),
        ),
        (
            "REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        ("RATE_LIMIT_PER_SECOND", "1".into()),
        ("RATE_LIMIT_BURST", "1".into()),
    ]);
    api.wait_ready(WAIT).await;

    // Each labelled metric shows in /metrics once it has counted something:
    // make every one the rules name count.
    let http = reqwest::Client::new();
    let on_api = |path: &str| format!("http://{}{path}", api.admin);
    let _ = http.get(on_api("/api/v1/models")).send().await.unwrap();
    let token = observatory_integration::api::token(&unique("alerts"), "viewer", "1h");
    for _ in 0..3 {
        let _ = http
            .get(on_api("/api/v1/models"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    let refused = http
        .post(format!("http://{}/v1/traces", collector.http))
        .header("content-type", "text/plain")
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 415);
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("poison")
                .payload(&b"\xff\xff not protobuf"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let mut client =
        observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", collector.grpc),
        )
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Model calls of several services, models and users, some failing,
    // some streaming (time to first token).
    let mut traces = observatory_schemas::testing::TraceGenerator::new(3)
        .with_now_ns(now)
        .with_error_rate(0.2);
    for i in 0..5 {
        let mut request = traces.request(200);
        // End users on the model calls themselves (the generator puts
        // user.id on agent roots only), for the users' table.
        for (n, span) in request
            .resource_spans
            .iter_mut()
            .flat_map(|r| r.scope_spans.iter_mut())
            .flat_map(|s| s.spans.iter_mut())
            .enumerate()
        {
            if span
                .attributes
                .iter()
                .any(|a| a.key == "gen_ai.request.model")
            {
                let user = format!("user-{}", (i * 7 + n) % 13);
                span.attributes
                    .push(observatory_schemas::testing::kv_str("user.id", user));
            }
        }
        client.export(request).await.unwrap();
    }
    for sink in [&timescale, &tempo] {
        observatory_integration::wait_for("the sink's dead letter and commit", WAIT, || async {
            let text = sink.admin_get("/metrics").await?.1;
            (text.contains("observatory_consumer_dlq_messages_total{")
                && text.contains("observatory_consumer_commit_delay_seconds_bucket{"))
            .then_some(())
        })
        .await;
    }
    observatory_integration::wait_for("the compactor's first job", WAIT, || async {
        let text = compactor.admin_get("/metrics").await?.1;
        text.contains("observatory_consumer_compaction_jobs_total{")
            .then_some(())
    })
    .await;
    let mut all = BTreeSet::new();
    let mut samples = String::new();
    for (what, text) in [
        ("collector", collector.admin_get("/metrics").await),
        ("timescale", timescale.admin_get("/metrics").await),
        ("tempo", tempo.admin_get("/metrics").await),
        ("compactor", compactor.admin_get("/metrics").await),
        ("api", api.admin_get("/metrics").await),
    ] {
        let (status, text) = text.unwrap_or_else(|| panic!("{what} /metrics"));
        assert_eq!(status, 200, "{what}");
        all.extend(exposed(&text));
        samples.push_str(&text);
    }
    let mut missing = Vec::new();
    for (alert, expr) in &rules_plain {
        let used = names(expr);
        assert!(!used.is_empty(), "{alert} uses no metric of ours: {expr}");
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{alert}: unbalanced parentheses"
        );
        for name in used {
            if !all.contains(&name) {
                missing.push(format!("{alert}: {name}"));
            }
        }
    }
    // The pipeline health dashboard: its metrics exist, and it groups by
    // labels they carry.
    let pipeline = dashboard("pipeline-health.json");
    let exprs = panel_queries(&pipeline, "expr");
    assert!(
        exprs.len() >= 15,
        "the pipeline dashboard has {} queries",
        exprs.len()
    );
    for (title, expr) in &exprs {
        let used = names(expr);
        assert!(
            !used.is_empty(),
            "panel {title:?} uses no metric of ours: {expr}"
        );
        for name in &used {
            if !all.contains(name) {
                missing.push(format!("dashboard panel {title:?}: {name}"));
            }
        }
        for label in grouped_by(expr) {
            if label != "le" && !used.iter().any(|n| carries(&samples, n, &label)) {
                missing.push(format!(
                    "dashboard panel {title:?}: no metric of {used:?} has the label {label}"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics or labels no binary exposes: {missing:#?}"
    );

    // The LLM usage dashboard, over what the PostgreSQL sink wrote and a
    // budget of each scope set through the API.
    let admin = observatory_integration::api::token("default", "admin", "1h");
    // (This API allows a request a second: the rate-limit metric above.)
    for path in [
        "/api/v1/budgets/tenant",
        "/api/v1/budgets/services/chat-api",
    ] {
        observatory_integration::wait_for(&format!("PUT {path}"), WAIT, || async {
            let put = http
                .put(on_api(path))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(r#"{"monthly_usd": 100.0}"#)
                .send()
                .await
                .ok()?;
            if put.status().as_u16() == 429 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return None;
            }
            assert!(put.status().is_success(), "PUT {path}: {}", put.status());
            Some(())
        })
        .await;
    }
    observatory_integration::wait_for("the model calls in the rollups", WAIT, || async {
        let n = db
            .count("SELECT count(*) FROM llm_latency_1m WHERE metric = 1")
            .await;
        (n > 0 && db.count("SELECT count(*) FROM user_calls_1d").await > 0).then_some(())
    })
    .await;
    let client = db.client().await;
    let usage = dashboard("llm-usage.json");
    let queries = panel_queries(&usage, "rawSql");
    assert!(
        queries.len() >= 12,
        "the usage dashboard has {} queries",
        queries.len()
    );
    for (range, interval) in [(3_600, 60), (7 * 3_600, 3_600)] {
        let mut grafana = Grafana::last(
            Duration::from_secs(range),
            Duration::from_secs(300),
            interval,
        );
        // The variables first, as Grafana loads them: the tenant from its
        // query; the others All.
        for var in usage["templating"]["list"].as_array().unwrap() {
            let Some(query) = var["query"].as_str().filter(|_| var["type"] == "query") else {
                continue;
            };
            let sql = grafana.expand(query);
            let listed = rows(&client, &sql).await;
            assert!(
                !listed.is_empty(),
                "variable {} lists nothing: {sql}",
                var["name"]
            );
            grafana.variable(var, &listed);
        }
        assert_eq!(grafana.vars[0], ("tenant".to_owned(), "default".to_owned()));
        for (title, query) in &queries {
            let sql = grafana.expand(query);
            let started = std::time::Instant::now();
            let rows = rows(&client, &sql).await;
            let values: Vec<&str> = rows
                .iter()
                .flatten()
                .flatten()
                .map(String::as_str)
                .collect();
            assert!(
                !rows.is_empty(),
                "panel {title:?} ({range} s range) returns no rows: {sql}"
            );
            // Unpriced calls may rightly be none.
            if title != "Unpriced calls" {
                assert!(
                    values.iter().any(|v| !matches!(*v, "0" | "0.0" | "")),
                    "panel {title:?} ({range} s range) returns only zeros: {rows:?}\n{sql}"
                );
            }
            eprintln!("{title}: {} rows in {:?}", rows.len(), started.elapsed());
        }
    }
}

/// The labels of every `by (...)` of an expression.
fn grouped_by(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        rest = &rest[at + 4..];
        let end = rest.find(')').expect("by ( is closed");
        out.extend(rest[..end].split(',').map(|l| l.trim().to_owned()));
        rest = &rest[end..];
    }
    out
}

/// Whether a sample of `name` in the exposition `text` has `label`.
fn carries(text: &str, name: &str, label: &str) -> bool {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|l| l.strip_prefix('{'))
        .any(|labels| labels.contains(&format!("{label}=\"")))
}

#[test]
fn the_name_finder_finds_names_and_nothing_else() {
    let expr = "sum(rate(observatory_api_auth_failures_total[5m])) / sum(rate(observatory_api_requests_total{route=\"x_observatory_y\"}[5m]))";
    assert_eq!(
        names(expr).into_iter().collect::<Vec<_>>(),
        [
            "observatory_api_auth_failures_total",
            "observatory_api_requests_total"
        ]
    );
    let text = "# TYPE observatory_api_requests counter\n# TYPE observatory_x_seconds histogram\n";
    let e = exposed(text);
    assert!(e.contains("observatory_api_requests_total"));
    assert!(e.contains("observatory_x_seconds_bucket"));
}
