//! What the query-API tests share: traces loaded through the real pipeline
//! (collector, broker, PostgreSQL sink on a fresh database) for tenants
//! named by ingest keys, and tokens minted by the `observatory-api` binary.

use crate::collector::Collector;
use crate::postgres::TestDb;
use crate::process::Service;
use crate::{kafka_brokers, unique};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::kv_str;
use std::time::Duration;

/// The `JWT_SECRET` of the API in these tests.
pub const SECRET: &str = "integration-test-secret";

/// An export of `spans` from one service in the `prod` environment, one
/// scope.
pub fn service_request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", service),
                    kv_str("deployment.environment", "prod"),
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

/// A token for `tenant` with `role` (`viewer`, `editor`, `admin`), valid for `ttl` (`1h`).
pub fn token(tenant: &str, role: &str, ttl: &str) -> String {
    let out = std::process::Command::new(crate::workspace_bin("observatory-api"))
        .args(["token", "--tenant", tenant, "--role", role, "--ttl", ttl])
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("run observatory-api token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("a token is ASCII")
        .trim()
        .to_owned()
}

/// `text` percent-encoded for a query string (every byte but RFC 3986's
/// unreserved ones).
pub fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `request` over OTLP/gRPC with ingest key `key`; panics unless acknowledged.
pub async fn export(collector: &Collector, key: &str, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .expect("connect to the collector");
    let mut request = tonic::Request::new(request);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("an ASCII key"));
    client.export(request).await.expect("acknowledged");
}

/// A collector and a PostgreSQL sink on a topic and a database of their own.
pub struct Pipeline {
    /// The database the sink writes.
    pub db: TestDb,
    /// The traces topic.
    pub topic: String,
    /// The scores topic (the API's `KAFKA_SCORES_TOPIC` must name it).
    pub scores_topic: String,
    /// The metrics topic.
    pub metrics_topic: String,
    /// The logs topic.
    pub logs_topic: String,
    /// The collector (ingest keys as given).
    pub collector: Collector,
    /// The PostgreSQL sink.
    pub sink: Service,
}

impl Pipeline {
    /// Starts both, ready, with `INGEST_API_KEYS=keys` (`key=tenant,...`)
    /// and `sink_env` added to the sink's settings.
    pub async fn start(keys: &str, sink_env: &[(&str, String)], timeout: Duration) -> Pipeline {
        let db = TestDb::create().await;
        let topic = unique("spans");
        let scores_topic = unique("scores");
        let metrics_topic = unique("metrics");
        let logs_topic = unique("logs");
        let collector = Collector::spawn(&[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", topic.clone()),
            ("KAFKA_METRICS_TOPIC", metrics_topic.clone()),
            ("KAFKA_LOGS_TOPIC", logs_topic.clone()),
            ("KAFKA_TRACES_PARTITIONS", "2".into()),
            ("INGEST_API_KEYS", keys.to_owned()),
        ]);
        collector.wait_ready(timeout).await;
        let mut env = vec![
            ("KAFKA_BROKERS", kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", topic.clone()),
            ("KAFKA_SCORES_TOPIC", scores_topic.clone()),
            ("KAFKA_METRICS_TOPIC", metrics_topic.clone()),
            ("KAFKA_LOGS_TOPIC", logs_topic.clone()),
            ("SIGNALS", "traces,metrics,logs".into()),
            ("KAFKA_GROUP_ID", unique("group")),
            ("DATABASE_URL", db.url.clone()),
            ("COPY_FLUSH_INTERVAL", "200ms".into()),
        ];
        env.extend(sink_env.iter().cloned());
        let sink = Service::consumer("timescale", &env);
        sink.wait_ready(timeout).await;
        Pipeline {
            db,
            topic,
            scores_topic,
            metrics_topic,
            logs_topic,
            collector,
            sink,
        }
    }

    /// Waits until PostgreSQL holds `spans` spans.
    pub async fn wait_for_spans(&self, spans: i64, timeout: Duration) {
        crate::wait_for("the spans stored", timeout, || async {
            (self.db.count("SELECT count(*) FROM spans").await == spans).then_some(())
        })
        .await;
    }
}
