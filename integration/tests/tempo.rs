//! End-to-end tests of the Tempo block sink: the real collector in front,
//! the real broker, `observatory-consumer tempo` as a process, blocks in a
//! local folder and in a real S3-compatible server (s3s-fs, started by the
//! stack script), read back with our block reader.

use observatory_consumer::redact::{is_content_key, Policy};
use observatory_consumer::tempo::store::BlockStore;
use observatory_integration::broker::Broker;
use observatory_integration::bucket::{local_bucket, s3_bucket, s3_endpoint, Bucket};
use observatory_integration::collector::Collector;
use observatory_integration::process::Service;
use observatory_integration::proxy::Proxy;
use observatory_integration::{kafka_brokers, unique, wait_for};
use observatory_schemas::otlp::common::{
    any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::BlockMeta;
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::testing::{kv, kv_bool, kv_f64, kv_int, kv_str, TraceGenerator};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(90);

async fn collector_on(brokers: &str, topic: &str) -> Collector {
    Collector::for_topic(brokers, topic, WAIT).await
}

fn sink(brokers: &str, topic: &str, group: &str, bucket: &Bucket) -> Service {
    let mut env = vec![
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("KAFKA_TRACES_TOPIC", topic.to_owned()),
        ("KAFKA_GROUP_ID", group.to_owned()),
        ("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".to_owned()),
    ];
    env.extend(bucket.env.iter().cloned());
    Service::consumer("tempo", &env)
}

async fn send(collector: &Collector, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    client
        .export(request)
        .await
        .expect("the collector acknowledges");
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A trace with every attribute value type, events, links, a status, a
/// scope with attributes and a resource with Tempo's well-known columns.
fn every_value_type(trace: u8) -> ExportTraceServiceRequest {
    let start = now_ns() - 2_000_000_000;
    let root = Span {
        trace_id: vec![trace; 16],
        span_id: vec![1; 8],
        parent_span_id: vec![],
        name: "POST /v1/chat".into(),
        kind: 2,
        trace_state: "vendor=x".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 900_000_000,
        attributes: vec![
            kv_str("http.method", "POST"),
            kv_int("http.status_code", 200),
            kv_str("s", "text"),
            kv_int("i", -7),
            kv_f64("d", 0.25),
            kv_bool("b", false),
            kv(
                "sa",
                Value::ArrayValue(ArrayValue {
                    values: vec![text("a"), text("b")],
                }),
            ),
            kv(
                "ba",
                Value::ArrayValue(ArrayValue {
                    values: vec![boolean(true), boolean(false)],
                }),
            ),
            kv("bytes", Value::BytesValue(vec![0, 1, 2])),
            kv(
                "kvlist",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv_str("k", "v")],
                }),
            ),
        ],
        dropped_attributes_count: 1,
        events: vec![span::Event {
            time_unix_nano: start + 10_000_000,
            name: "gen_ai.choice".into(),
            attributes: vec![kv_int("index", 0)],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: vec![span::Link {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: String::new(),
            attributes: vec![kv_str("link.kind", "follows")],
            dropped_attributes_count: 0,
            flags: 0,
        }],
        dropped_links_count: 0,
        status: Some(Status {
            code: 2,
            message: "upstream 500".into(),
        }),
        flags: 0,
    };
    let child = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: start + 100_000_000,
        end_time_unix_nano: start + 800_000_000,
        attributes: vec![
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.input_tokens", 12),
        ],
        events: vec![],
        links: vec![],
        status: None,
        ..root.clone()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", "gateway"),
                    kv_str("k8s.pod.name", "gateway-0"),
                    kv_str("deployment.environment.name", "test"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(observatory_schemas::otlp::common::InstrumentationScope {
                    name: "manual".into(),
                    version: "1.0".into(),
                    attributes: vec![kv_str("scope.k", "v")],
                    dropped_attributes_count: 0,
                }),
                spans: vec![root, child],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn text(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

fn boolean(b: bool) -> AnyValue {
    AnyValue {
        value: Some(Value::BoolValue(b)),
    }
}

/// A span as comparable data: resource and scope it ran under, attributes
/// in key order (the block keeps some attributes in columns of their own).
type Placed = (Vec<KeyValue>, String, Vec<KeyValue>, Span);

/// Spans by (trace id, span id), as they must be found in the blocks.
type Sent = BTreeMap<(Vec<u8>, Vec<u8>), Vec<Placed>>;

fn sorted(mut a: Vec<KeyValue>) -> Vec<KeyValue> {
    a.sort_by(|x, y| x.key.cmp(&y.key));
    a
}

/// What the sink must store of a span: the span after the default content
/// policy (`CAPTURE_CONTENT=false`: prompt and completion text removed).
fn stored(span: &Span) -> Span {
    static POLICY: std::sync::LazyLock<Policy> =
        std::sync::LazyLock::new(|| Policy::new(false, 16 * 1024, vec![], vec![]));
    let mut span = span.clone();
    POLICY.apply_to_span(&mut span);
    span
}

fn placed(rs: &[ResourceSpans], out: &mut Sent) {
    for r in rs {
        let resource = sorted(r.resource.clone().unwrap_or_default().attributes);
        for ss in &r.scope_spans {
            let scope = ss.scope.clone().unwrap_or_default();
            for s in &ss.spans {
                let mut s = stored(s);
                s.attributes = sorted(s.attributes);
                for e in &mut s.events {
                    e.attributes = sorted(std::mem::take(&mut e.attributes));
                }
                for l in &mut s.links {
                    l.attributes = sorted(std::mem::take(&mut l.attributes));
                }
                out.entry((s.trace_id.clone(), s.span_id.clone()))
                    .or_default()
                    .push((
                        resource.clone(),
                        format!("{}/{}", scope.name, scope.version),
                        sorted(scope.attributes.clone()),
                        s,
                    ));
            }
        }
    }
}

/// Every complete block of `tenant` (those with a meta.json).
async fn blocks(store: &BlockStore, tenant: &str) -> Vec<(BlockMeta, bytes::Bytes, Vec<Bloom>)> {
    let mut out = Vec::new();
    let mut names = store.list(tenant).await.unwrap();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with("/meta.json")) {
        let folder = name.trim_end_matches("/meta.json");
        let meta: BlockMeta = serde_json::from_slice(&store.get(name).await.unwrap()).unwrap();
        let data = store.get(&format!("{folder}/data.parquet")).await.unwrap();
        assert_eq!(meta.size, data.len() as u64, "meta.json size of {folder}");
        let mut blooms = Vec::new();
        for i in 0..meta.bloom_shards {
            let bytes = store.get(&format!("{folder}/bloom-{i}")).await.unwrap();
            blooms.push(Bloom::from_bytes(&bytes).unwrap());
        }
        out.push((meta, data, blooms));
    }
    out
}

/// Every span found in the complete blocks of `tenant` (each block read in
/// one pass; the bloom filter must say maybe for every trace a block holds,
/// as Tempo looks traces up by it): span key -> the copies found.
async fn find_all(store: &BlockStore, tenant: &str) -> Sent {
    let blocks = blocks(store, tenant).await;
    let mut found: Sent = BTreeMap::new();
    for (meta, data, blooms) in &blocks {
        let file = DataFile::open(data.clone()).unwrap();
        assert_eq!(file.traces(), meta.total_objects);
        for (id, rs) in file.all().unwrap() {
            let shard = shard_of(&id, blooms.len() as u64) as usize;
            assert!(
                blooms[shard].may_contain(&id),
                "bloom says no for a trace block {} holds",
                meta.block_id
            );
            placed(&rs, &mut found);
        }
    }
    found
}

/// Waits until every sent span is in a complete block (the sink's counters
/// also count blocks rewritten after a failed cut, so they can run ahead of
/// the store), then checks that each is there exactly once, as sent.
async fn assert_all_found(store: &BlockStore, tenant: &str, sent: &Sent) {
    let found = wait_for("every span in a complete block", WAIT, || async {
        let found = find_all(store, tenant).await;
        sent.keys()
            .all(|key| found.contains_key(key))
            .then_some(found)
    })
    .await;
    for (key, spans) in &found {
        assert_eq!(
            spans.len(),
            1,
            "span {key:02x?} is in {} blocks",
            spans.len()
        );
    }
    assert_eq!(found.len(), sent.len(), "only the spans sent are stored");
    for (key, expected) in sent {
        assert_eq!(found.get(key), Some(expected), "span {key:02x?}");
    }
}

async fn traces_written(sink: &Service) -> f64 {
    sink.metric("observatory_consumer_block_spans_written_total{sink=\"tempo\"}")
        .await
}

async fn found_span_for_span(bucket: Bucket) {
    let topic = unique("spans");
    let collector = collector_on(&kafka_brokers(), &topic).await;
    let sink = sink(&kafka_brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;

    let mut sent = BTreeMap::new();
    let fixture = every_value_type(0x5e);
    placed(&fixture.resource_spans, &mut sent);
    send(&collector, fixture).await;
    let mut generator = TraceGenerator::new(21)
        .with_now_ns(now_ns())
        .with_content_bytes(32);
    let mut content = 0;
    for _ in 0..10 {
        let request = generator.request(300);
        content += observatory_schemas::testing::spans_of(&request)
            .flat_map(|s| &s.attributes)
            .filter(|kv| is_content_key(&kv.key))
            .count();
        placed(&request.resource_spans, &mut sent);
        send(&collector, request).await;
    }
    assert!(content > 0, "the workload carries prompts and completions");
    let total = sent.len() as f64;
    wait_for("every span in a block", WAIT, || async {
        (traces_written(&sink).await >= total).then_some(())
    })
    .await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_found_span_for_span_in_a_local_folder() {
    found_span_for_span(local_bucket()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_found_span_for_span_in_s3() {
    found_span_for_span(s3_bucket(&s3_endpoint())).await;
}

/// Sends `requests` generated requests of 200 spans; returns their spans.
async fn stream(collector: &Collector, seed: u64, requests: usize, sent: &mut Sent) {
    let mut generator = TraceGenerator::new(seed).with_now_ns(now_ns());
    for _ in 0..requests {
        let request = generator.request(200);
        placed(&request.resource_spans, sent);
        send(collector, request).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_block_then_restart_loses_no_trace_and_copies_no_block() {
    // A private broker, as the PostgreSQL sink's SIGKILL test: group
    // coordination after a SIGKILL stalls on the shared tansu.
    let broker = Broker::start().await;
    let bucket = local_bucket();
    let topic = unique("spans");
    let collector = collector_on(&broker.brokers(), &topic).await;
    let mut sink = sink(&broker.brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;
    let mut sent = BTreeMap::new();
    stream(&collector, 31, 30, &mut sent).await;
    wait_for("a first block", WAIT, || async {
        (traces_written(&sink).await > 0.0).then_some(())
    })
    .await;
    // Killed in the middle: messages read, a block being built or uploaded,
    // offsets of the last cut not committed.
    stream(&collector, 32, 10, &mut sent).await;
    sink.kill();
    stream(&collector, 33, 20, &mut sent).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    sink.start();
    let total = sent.len();
    wait_for("every span in a block after the restart", WAIT, || async {
        (find_all(&bucket.store, "single-tenant").await.len() >= total).then_some(())
    })
    .await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_storage_down_for_a_while_loses_nothing() {
    let endpoint = s3_endpoint();
    let target = endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(target).await;
    let bucket = s3_bucket(&format!("http://{}", proxy.addr));
    let topic = unique("spans");
    let collector = collector_on(&kafka_brokers(), &topic).await;
    let sink = sink(&kafka_brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;
    let mut sent = BTreeMap::new();
    stream(&collector, 41, 5, &mut sent).await;
    wait_for("a first block", WAIT, || async {
        (traces_written(&sink).await > 0.0).then_some(())
    })
    .await;
    proxy.cut();
    stream(&collector, 42, 10, &mut sent).await;
    wait_for("/readyz to report the outage", WAIT, || async {
        matches!(sink.admin_get("/readyz").await, Some((503, _))).then_some(())
    })
    .await;
    proxy.restore();
    let total = sent.len() as f64;
    wait_for("every span in a block", WAIT, || async {
        (traces_written(&sink).await >= total).then_some(())
    })
    .await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_and_the_stream_behind_them_is_written() {
    use observatory_integration::kafka::read_topic;
    use prost::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let bucket = local_bucket();
    let topic = unique("spans");
    let collector = collector_on(&kafka_brokers(), &topic).await;
    let sink = sink(&kafka_brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;
    // Broken framing (refused when read) and a span name that is not UTF-8
    // (frames well, refused when its block is decoded).
    let mut bad_utf8 = every_value_type(0x77).encode_to_vec();
    let at = bad_utf8
        .windows(b"POST /v1/chat".len())
        .position(|w| w == b"POST /v1/chat")
        .unwrap();
    bad_utf8[at] = 0xff;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    for (key, payload) in [
        ("framing", b"\x0a\xff\xff\xff\x0fnot protobuf".to_vec()),
        ("utf8", bad_utf8),
    ] {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(&payload[..]),
                Duration::from_secs(10),
            )
            .await
            .expect("the poison is produced");
    }
    let mut sent = BTreeMap::new();
    stream(&collector, 51, 5, &mut sent).await;
    let total = sent.len() as f64;
    wait_for("every span in a block", WAIT, || async {
        (traces_written(&sink).await >= total).then_some(())
    })
    .await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;

    let brokers = kafka_brokers();
    let dlq = format!("{topic}.dlq");
    let records =
        tokio::task::spawn_blocking(move || read_topic(&brokers, &dlq, WAIT, |r| r.len() >= 2))
            .await
            .unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        let h = &r.headers;
        assert!(
            h["dlq-reason"].contains("undecodable OTLP protobuf"),
            "{h:?}"
        );
        assert_eq!(h["dlq-sink"], "tempo");
        assert_eq!(h["dlq-source-topic"], topic);
    }
    let mut keys: Vec<_> = records.iter().map(|r| r.key.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["framing", "utf8"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_gets_its_own_folder_and_default_is_single_tenant() {
    use prost::Message;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let bucket = local_bucket();
    let topic = unique("spans");
    // The collector creates the topic; the messages are produced as it
    // would, with the tenant header its API keys set.
    let _collector = collector_on(&kafka_brokers(), &topic).await;
    let sink = sink(&kafka_brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let mut expected: BTreeMap<&str, Sent> = BTreeMap::new();
    for (tenant, trace) in [("acme", 0x0a), ("default", 0x0d)] {
        let request = every_value_type(trace);
        placed(
            &request.resource_spans,
            expected
                .entry(if tenant == "default" {
                    "single-tenant"
                } else {
                    tenant
                })
                .or_default(),
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: observatory_schemas::kafka::headers::TENANT,
            value: Some(tenant),
        });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&vec![trace; 16])
                    .payload(&request.encode_to_vec())
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
    wait_for("both tenants' spans in blocks", WAIT, || async {
        (traces_written(&sink).await >= 4.0).then_some(())
    })
    .await;
    for (folder, sent) in &expected {
        assert_all_found(&bucket.store, folder, sent).await;
        for (meta, _, _) in blocks(&bucket.store, folder).await {
            assert_eq!(meta.tenant_id, *folder);
        }
    }
}
