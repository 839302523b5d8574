//! End-to-end tests of `observatory-collector` against the real broker of
//! the local stack (`integration/stack.sh up`): official OpenTelemetry SDK
//! exporters in front, the topic read back behind.

use observatory_integration::collector::Collector;
use observatory_integration::kafka::{read_topic, Record};
use observatory_integration::{kafka_brokers, unique};
use observatory_schemas::kafka::{partition_for_key, trace_key};
use observatory_schemas::otlp::trace::Span;
use observatory_schemas::otlp::trace_service::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use observatory_schemas::testing::{kv_str, spans_of, TraceGenerator};
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PARTITIONS: i32 = 8;
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Topic names of one test.
struct Topics {
    traces: String,
    metrics: String,
    logs: String,
}

fn topics() -> Topics {
    Topics {
        traces: unique("spans"),
        metrics: unique("metrics"),
        logs: unique("logs"),
    }
}

fn env(topics: &Topics, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topics.traces.clone()),
        ("KAFKA_METRICS_TOPIC", topics.metrics.clone()),
        ("KAFKA_LOGS_TOPIC", topics.logs.clone()),
        ("KAFKA_TRACES_PARTITIONS", PARTITIONS.to_string()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.push((k, v.to_string()));
    }
    env
}

async fn start(topics: &Topics, extra: &[(&str, &str)]) -> Collector {
    let collector = Collector::spawn(&env(topics, extra));
    collector.wait_ready(Duration::from_secs(60)).await;
    collector
}

/// Every span in the records, with the record it came in.
fn spans_in(records: &[Record]) -> Vec<(Record, Span)> {
    let mut out = Vec::new();
    for r in records {
        let request = ExportTraceServiceRequest::decode(&r.payload[..])
            .expect("every message is an OTLP export request");
        for span in spans_of(&request) {
            out.push((r.clone(), span.clone()));
        }
    }
    out
}

fn span_count(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| {
            r.headers
                .get("span-count")
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
}

async fn read_spans(topic: &str, expected: usize) -> Vec<(Record, Span)> {
    let brokers = kafka_brokers();
    let topic = topic.to_owned();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, READ_TIMEOUT, |records| {
            span_count(records) >= expected
        })
    })
    .await
    .expect("the reader does not panic");
    spans_in(&records)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks the contract of every message: key, partition, headers.
fn check_contract(spans: &[(Record, Span)], tenant_of: impl Fn(&Span) -> String) {
    let started = now_ms() - 600_000;
    for (record, span) in spans {
        let id: [u8; 16] = span.trace_id.clone().try_into().expect("16-byte trace id");
        let key = trace_key(&id);
        assert_eq!(
            record.key.as_deref(),
            Some(key.as_str()),
            "key is the trace id in lowercase hex"
        );
        assert_eq!(
            record.partition as u32,
            partition_for_key(key.as_bytes(), PARTITIONS as u32),
            "partition is murmur2(key) mod N"
        );
        let h = &record.headers;
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["otlp-signal"], "traces");
        assert_eq!(h["schema-version"], "1");
        assert_eq!(h["tenant"], tenant_of(span));
        let received: u64 = h["received-at-ms"].parse().expect("a number");
        assert!(
            received > started && received <= now_ms(),
            "received-at-ms is recent"
        );
        let request = ExportTraceServiceRequest::decode(&record.payload[..]).unwrap();
        assert_eq!(h["span-count"], spans_of(&request).count().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exporters_over_grpc_and_http_deliver_every_span_once() {
    let topics = topics();
    let collector = start(&topics, &[]).await;

    // gRPC exporter, tenant from metadata.
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("x-scope-orgid", "team-grpc".parse().unwrap());
    let grpc_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", collector.grpc))
        .with_metadata(metadata)
        .build()
        .unwrap();
    // HTTP/protobuf exporter, default tenant.
    let http_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("http://{}/v1/traces", collector.http))
        .with_headers(HashMap::new())
        .build()
        .unwrap();

    let mut sent: HashMap<String, &str> = HashMap::new();
    for (exporter_name, provider) in [
        (
            "grpc",
            opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(grpc_exporter)
                .build(),
        ),
        (
            "http",
            opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(http_exporter)
                .build(),
        ),
    ] {
        let tracer = provider.tracer("observatory-test");
        for t in 0..40 {
            tracer.in_span(format!("invoke_agent {exporter_name}-{t}"), |cx| {
                use opentelemetry::trace::TraceContextExt;
                let root = cx.span().span_context().span_id().to_string();
                sent.insert(root, exporter_name);
                for c in 0..3 {
                    let mut child = tracer.start(format!("chat gpt-4o {c}"));
                    child.set_attribute(opentelemetry::KeyValue::new(
                        "gen_ai.provider.name",
                        "openai",
                    ));
                    child.set_attribute(opentelemetry::KeyValue::new(
                        "gen_ai.usage.input_tokens",
                        120,
                    ));
                    sent.insert(child.span_context().span_id().to_string(), exporter_name);
                    child.end();
                }
            });
        }
        provider.force_flush().expect("flush reaches the collector");
        provider.shutdown().expect("clean shutdown");
    }
    assert_eq!(sent.len(), 2 * 40 * 4);

    let spans = read_spans(&topics.traces, sent.len()).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, span) in &spans {
        let id: String = span.span_id.iter().map(|b| format!("{b:02x}")).collect();
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), sent.len(), "every span arrived");
    assert!(seen.values().all(|n| *n == 1), "no span arrived twice");
    check_contract(&spans, |span| {
        let id: String = span.span_id.iter().map(|b| format!("{b:02x}")).collect();
        match sent[&id] {
            "grpc" => "team-grpc".into(),
            _ => "default".into(),
        }
    });
    assert!(
        collector
            .metric(
                "observatory_collector_accepted_items_total{signal=\"traces\",transport=\"grpc\"}"
            )
            .await
            >= 160.0
    );
    assert!(collector.metric("observatory_collector_accepted_items_total{signal=\"traces\",transport=\"http_protobuf\"}").await >= 160.0);
}

async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("the collector answers");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_yields_the_same_spans_as_protobuf() {
    let topics = topics();
    let collector = start(&topics, &[]).await;
    let request = TraceGenerator::new(11).with_content_bytes(200).request(200);
    let url = format!("http://{}/v1/traces", collector.http);

    let (status, headers, body) = post(
        &url,
        "application/x-protobuf",
        request.encode_to_vec(),
        &[("x-scope-orgid", "pb")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(
        ExportTraceServiceResponse::decode(&body[..])
            .unwrap()
            .partial_success,
        None
    );

    let json = serde_json::to_vec(&request).unwrap();
    let (status, headers, body) =
        post(&url, "application/json", json, &[("x-scope-orgid", "json")]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    assert!(answer.get("partialSuccess").is_none(), "{answer}");

    let spans = read_spans(&topics.traces, 400).await;
    let mut by_tenant: BTreeMap<String, BTreeMap<Vec<u8>, Span>> = BTreeMap::new();
    for (record, span) in spans {
        by_tenant
            .entry(record.headers["tenant"].clone())
            .or_default()
            .insert(span.span_id.clone(), span);
    }
    assert_eq!(by_tenant["pb"].len(), 200);
    assert_eq!(
        by_tenant["pb"], by_tenant["json"],
        "JSON and protobuf carry the same spans"
    );
    let sent: BTreeMap<Vec<u8>, Span> = spans_of(&request)
        .map(|s| (s.span_id.clone(), s.clone()))
        .collect();
    assert_eq!(by_tenant["pb"], sent, "the spans are those sent, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_logs_reach_their_topics_keyed_by_resource_or_trace() {
    use observatory_schemas::otlp::common::KeyValue;
    use observatory_schemas::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
    use observatory_schemas::otlp::metrics::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
    use observatory_schemas::otlp::resource::Resource;
    use observatory_schemas::resource_key::resource_key;

    let topics = topics();
    let collector = start(&topics, &[]).await;
    let resource = |service: &str| Resource {
        attributes: vec![kv_str("service.name", service)],
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: ["chat", "search"]
            .iter()
            .map(|service| ResourceMetrics {
                resource: Some(resource(service)),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "gen_ai.client.token.usage".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint::default(),
                                NumberDataPoint::default(),
                            ],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("chat")),
            scope_logs: vec![ScopeLogs {
                log_records: [
                    vec![
                        LogRecord {
                            attributes: vec![KeyValue::default()],
                            ..Default::default()
                        };
                        3
                    ],
                    // Records of a trace: keyed by it, as its spans are.
                    vec![
                        LogRecord {
                            trace_id: vec![0x7e; 16],
                            span_id: vec![1; 8],
                            ..Default::default()
                        };
                        2
                    ],
                ]
                .concat(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _, _) = post(
        &format!("http://{}/v1/metrics", collector.http),
        "application/x-protobuf",
        metrics.encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = post(
        &format!("http://{}/v1/logs", collector.http),
        "application/x-protobuf",
        logs.encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    let brokers = kafka_brokers();
    let (mt, lt) = (topics.metrics.clone(), topics.logs.clone());
    let (metric_records, log_records) = tokio::task::spawn_blocking(move || {
        (
            read_topic(&brokers, &mt, READ_TIMEOUT, |r| r.len() >= 2),
            read_topic(&brokers, &lt, READ_TIMEOUT, |r| r.len() >= 2),
        )
    })
    .await
    .unwrap();
    assert_eq!(metric_records.len(), 2, "one message per resource");
    let keys: HashSet<_> = metric_records
        .iter()
        .map(|r| r.key.clone().unwrap())
        .collect();
    let expected: HashSet<_> = ["chat", "search"]
        .iter()
        .map(|s| resource_key(Some(&resource(s))))
        .collect();
    assert_eq!(keys, expected);
    for r in &metric_records {
        assert_eq!(r.headers["otlp-signal"], "metrics");
        assert_eq!(r.headers["span-count"], "2", "data points per message");
    }
    assert_eq!(
        log_records.len(),
        2,
        "one message per resource, one per trace"
    );
    let mut by_key: HashMap<String, String> = log_records
        .iter()
        .map(|r| {
            assert_eq!(r.headers["otlp-signal"], "logs");
            (r.key.clone().unwrap(), r.headers["span-count"].clone())
        })
        .collect();
    assert_eq!(
        by_key
            .remove(&resource_key(Some(&resource("chat"))))
            .as_deref(),
        Some("3")
    );
    assert_eq!(by_key.remove(&"7e".repeat(16)).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_trace_is_split_and_a_span_that_cannot_fit_is_refused_by_name() {
    let topics = topics();
    let limit = 64 * 1024;
    let collector = start(&topics, &[("KAFKA_MESSAGE_MAX_BYTES", &limit.to_string())]).await;

    // One trace of 60 spans with 4 KB of prompt each: about 500 KB, far over 64 KB.
    let mut request = TraceGenerator::new(21)
        .with_content_bytes(4000)
        .with_max_spans(1)
        .request(60);
    let trace_id = request.resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .clone();
    for rs in &mut request.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                span.trace_id = trace_id.clone();
                span.parent_span_id.clear();
            }
        }
    }
    // Plus one span that cannot fit any message.
    let mut huge = request.resource_spans[0].scope_spans[0].spans[0].clone();
    huge.span_id = vec![0xee; 8];
    huge.name = "chat with a novel-sized prompt".into();
    huge.attributes
        .push(kv_str("gen_ai.input.messages", "x".repeat(200_000)));
    request.resource_spans[0].scope_spans[0].spans.push(huge);

    let mut client = observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient::connect(format!(
        "http://{}",
        collector.grpc
    ))
    .await
    .unwrap();
    let response = client
        .export(request.clone())
        .await
        .expect("the rest of the request is accepted")
        .into_inner();
    let partial = response
        .partial_success
        .expect("a partial success names the refused span");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("eeeeeeeeeeeeeeee"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("novel-sized"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("KAFKA_MESSAGE_MAX_BYTES"),
        "{}",
        partial.error_message
    );

    let spans = read_spans(&topics.traces, 60).await;
    assert_eq!(spans.len(), 60, "every span that fits arrived once");
    let records: HashMap<i64, &Record> = spans.iter().map(|(r, _)| (r.offset, r)).collect();
    assert!(
        records.len() > 1,
        "the trace was split into several messages"
    );
    let key = trace_key(&trace_id.clone().try_into().unwrap());
    for record in records.values() {
        assert_eq!(
            record.key.as_deref(),
            Some(key.as_str()),
            "every part keeps the trace's key"
        );
        let size = record.payload.len()
            + key.len()
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        assert!(
            size <= limit,
            "a message of {size} bytes is over the {limit}-byte limit"
        );
    }
    assert!(collector.metric("observatory_collector_refused_items_total{signal=\"traces\",transport=\"grpc\",reason=\"too_large_item\"}").await >= 1.0);
}
