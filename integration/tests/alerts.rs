//! The alerting rules (`deploy/alerts/`) name only metrics our binaries
//! really expose: each rule file is read with a real YAML parser (the
//! deployment checks' Python), every metric name in every expression is
//! looked up in the `/metrics` of a running collector, PostgreSQL sink,
//! Tempo sink and API, and the PrometheusRule holds the same rules as the
//! plain file.

use observatory_integration::bucket::local_bucket;
use observatory_integration::collector::Collector;
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
async fn every_metric_an_alert_uses_is_exposed_by_our_binaries() {
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
    // The list, each covered by a rule.
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
    client
        .export(
            observatory_schemas::testing::TraceGenerator::new(3)
                .with_now_ns(now)
                .request(20),
        )
        .await
        .unwrap();
    for sink in [&timescale, &tempo] {
        observatory_integration::wait_for("the sink's dead letter and commit", WAIT, || async {
            let text = sink.admin_get("/metrics").await?.1;
            (text.contains("observatory_consumer_dlq_messages_total{")
                && text.contains("observatory_consumer_commit_delay_seconds_bucket{"))
            .then_some(())
        })
        .await;
    }
    let mut all = BTreeSet::new();
    for (what, text) in [
        ("collector", collector.admin_get("/metrics").await),
        ("timescale", timescale.admin_get("/metrics").await),
        ("tempo", tempo.admin_get("/metrics").await),
        ("api", api.admin_get("/metrics").await),
    ] {
        let (status, text) = text.unwrap_or_else(|| panic!("{what} /metrics"));
        assert_eq!(status, 200, "{what}");
        all.extend(exposed(&text));
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
    assert!(
        missing.is_empty(),
        "metrics no binary exposes: {missing:#?}"
    );
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
