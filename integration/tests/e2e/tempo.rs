//! End-to-end tests of the Tempo block sink: the real collector in front,
//! the real broker, `observatory-consumer tempo` as a process, blocks in a
//! local folder and in a real S3-compatible server (s3s-fs, started by the
//! stack script), read back with our block reader.

use observatory_consumer::redact::is_content_key;
use observatory_integration::blocks::{
    assert_all_found, assert_nested_sets_hold, blocks, find_all, placed, Sent,
};
use observatory_integration::broker::Broker;
use observatory_integration::bucket::{local_bucket, s3_bucket, s3_endpoint, Bucket};
use observatory_integration::collector::Collector;
use observatory_integration::process::Service;
use observatory_integration::proxy::Proxy;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for};
use observatory_schemas::otlp::common::{any_value::Value, AnyValue, ArrayValue, KeyValueList};
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv, kv_bool, kv_f64, kv_int, kv_str, TraceGenerator};
use std::collections::BTreeMap;
use std::time::Duration;

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

fn sink_with(
    brokers: &str,
    topic: &str,
    group: &str,
    bucket: &Bucket,
    extra: &[(&'static str, String)],
) -> Service {
    let mut env = vec![
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("KAFKA_TRACES_TOPIC", topic.to_owned()),
        ("KAFKA_GROUP_ID", group.to_owned()),
        ("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".to_owned()),
    ];
    env.extend(bucket.env.iter().cloned());
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v.clone()));
    }
    Service::consumer("tempo", &env)
}

/// Every complete block's `data.parquet` of `tenant` keeps the nested-set
/// numbers of each trace right (read with the parquet crate itself).
async fn assert_blocks_nested_right(store: &observatory_consumer::tempo::store::BlockStore) {
    for (meta, data, _) in blocks(store, "single-tenant").await {
        assert_nested_sets_hold(&data);
        assert!(meta.total_objects > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_acknowledged_twice_is_one_copy_of_each_span_in_a_block_and_in_a_replay() {
    let bucket = local_bucket();
    let topic = unique("spans");
    let collector = collector_on(&kafka_brokers(), &topic).await;
    // Both copies are in the topic before the sink reads: one cut holds both.
    let mut sent = BTreeMap::new();
    let mut generator = TraceGenerator::new(61).with_now_ns(now_ns());
    for _ in 0..4 {
        let request = generator.request(120);
        placed(&request.resource_spans, &mut sent);
        send(&collector, request.clone()).await;
        send(&collector, request).await;
    }
    let sink = sink(&kafka_brokers(), &topic, &unique("group"), &bucket);
    sink.wait_ready(WAIT).await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
    assert_blocks_nested_right(&bucket.store).await;

    // A replay of the whole topic into an empty bucket: the same.
    let fresh = local_bucket();
    let mut replay = std::process::Command::new(observatory_integration::workspace_bin(
        "observatory-consumer",
    ));
    replay
        .args(["replay", "--sink", "tempo", "--from", "0"])
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("KAFKA_TRACES_TOPIC", &topic)
        .env("RUST_LOG", "warn");
    for (k, v) in &fresh.env {
        replay.env(k, v);
    }
    let status = tokio::task::spawn_blocking(move || replay.status().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the replay succeeds");
    assert_all_found(&fresh.store, "single-tenant", &sent).await;
    assert_blocks_nested_right(&fresh.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_read_again_from_older_offsets_with_other_cuts_writes_no_second_copy() {
    // What a failed offset commit leads to: the partition's next owner reads
    // from the older committed offset and cuts elsewhere. Here the group is
    // moved back to the start of the log after two cuts per partition were
    // written, and the sink comes back with more data behind them.
    let bucket = local_bucket();
    let brokers = kafka_brokers();
    let topic = unique("spans");
    let group = unique("group");
    let collector = collector_on(&brokers, &topic).await;
    let mut first = sink(&brokers, &topic, &group, &bucket);
    first.wait_ready(WAIT).await;
    let mut sent = BTreeMap::new();
    stream(&collector, 71, 4, &mut sent).await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
    stream(&collector, 72, 4, &mut sent).await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
    let cuts = blocks(&bucket.store, "single-tenant").await.len();
    assert!(cuts >= 2, "two cuts at least ({cuts})");
    assert!(first.terminate().is_some_and(|s| s.success()));

    let reset = std::process::Command::new(observatory_integration::workspace_bin(
        "observatory-consumer",
    ))
    .args([
        "offsets",
        "reset",
        "--group",
        &group,
        "--topic",
        &topic,
        "--to-earliest",
    ])
    .env("KAFKA_BROKERS", &brokers)
    .env("RUST_LOG", "warn")
    .output()
    .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    stream(&collector, 73, 4, &mut sent).await;
    // One cut over everything: its first offsets are those of the first
    // blocks, its end past the second ones.
    let second = sink_with(
        &brokers,
        &topic,
        &group,
        &bucket,
        &[("TEMPO_BLOCK_MAX_AGE", "3s".to_owned())],
    );
    second.wait_ready(WAIT).await;
    assert_all_found(&bucket.store, "single-tenant", &sent).await;
    assert_blocks_nested_right(&bucket.store).await;
    wait_for("the skipped messages counted", WAIT, || async {
        (second
            .metric("observatory_consumer_already_stored_messages_total")
            .await
            > 0.0)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_object_store_during_a_rebalance_keeps_blocks_whole_and_spans_once() {
    // Replica A uploads through a proxy that holds every chunk it sends, so
    // a cut takes far longer than max.poll.interval (10 s); replica B joins
    // the group meanwhile and writes the same store directly. A must stay in
    // the group (it polls while it uploads), give up the partitions it is
    // asked to, and never complete a block of a partition it lost; no block
    // id has two writers (claims), so every complete block is whole (its
    // meta.json matches its data.parquet) and every span is in one.
    let endpoint = s3_endpoint();
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").parse().unwrap()).await;
    proxy.slow_down(Duration::from_millis(1000));
    let slow = s3_bucket(&format!("http://{}", proxy.addr));
    let mut direct = slow.env.clone();
    for (k, v) in &mut direct {
        if *k == "AWS_ENDPOINT" {
            *v = endpoint.clone();
        }
    }
    let brokers = kafka_brokers();
    let topic = unique("spans");
    let group = unique("group");
    let collector = collector_on(&brokers, &topic).await;
    let mut sent = BTreeMap::new();
    stream(&collector, 101, 8, &mut sent).await;
    let poll = [("KAFKA_MAX_POLL_INTERVAL", "10s".to_owned())];
    let a = sink_with(&brokers, &topic, &group, &slow, &poll);
    a.wait_ready(WAIT).await;
    wait_for("replica A uploading its first cut", WAIT, || async {
        let names = slow.store.list("single-tenant").await.unwrap_or_default();
        (!names.is_empty()).then_some(())
    })
    .await;
    // More data while A uploads: B's first cuts hold more than A's, so a
    // block id written by both would hold two different contents.
    stream(&collector, 103, 4, &mut sent).await;
    let mut b_env: Vec<(&'static str, String)> = vec![
        ("KAFKA_BROKERS", brokers.clone()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_GROUP_ID", group.clone()),
        ("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL", "10s".to_owned()),
    ];
    b_env.extend(direct);
    let b = Service::consumer("tempo", &b_env);
    b.wait_ready(WAIT).await;
    stream(&collector, 102, 8, &mut sent).await;
    assert_all_found(&slow.store, "single-tenant", &sent).await;
    assert_blocks_nested_right(&slow.store).await;
    // Both replicas wrote blocks: the partitions were shared, A kept some.
    for (name, sink) in [("A", &a), ("B", &b)] {
        assert!(
            sink.metric("observatory_consumer_blocks_written_total")
                .await
                > 0.0,
            "replica {name} wrote blocks"
        );
    }
}
