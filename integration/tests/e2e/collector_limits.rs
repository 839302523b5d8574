//! The collector's bounds under hostile clients, against the real broker:
//! requests that decode into far more memory than their size are refused
//! before they are decoded (peak memory stays bounded, and the docs'
//! formula holds), a client that sends its gRPC body a byte a second gives
//! its slot back after `COLLECTOR_BODY_TIMEOUT`, and `ENVIRONMENT=production`
//! names topics that have a single replica.

use bytes::Bytes;
use observatory_integration::collector::Collector;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for, workspace_bin};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::testing::TraceGenerator;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const MIB: usize = 1 << 20;
/// The collector's defaults.
const MAX_REQUEST_BYTES: usize = 8 * MIB;
const MAX_INFLIGHT_BYTES: usize = 128 * MIB;

/// An `ExportTraceServiceRequest` of about `size` bytes of empty spans (2
/// bytes each on the wire, a few hundred decoded).
fn minimal_spans(size: usize) -> Bytes {
    let spans = (size - 16) / 2;
    let mut scope = Vec::with_capacity(spans * 2);
    for _ in 0..spans {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut resource = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut resource);
    resource.extend_from_slice(&scope);
    let mut body = vec![0x0a];
    prost::encoding::encode_varint(resource.len() as u64, &mut body);
    body.extend_from_slice(&resource);
    assert!(body.len() <= MAX_REQUEST_BYTES);
    Bytes::from(body)
}

/// A field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// The worst case docs/collector.md gives for `requests` requests at once
/// on one transport: every body read and decompressed (twice the request
/// limit), the whole in-flight budget, and 64 MiB for the process itself.
fn documented_worst_case(requests: usize) -> usize {
    requests * 2 * MAX_REQUEST_BYTES + MAX_INFLIGHT_BYTES + 64 * MIB
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_decode_into_gigabytes_are_refused_before_decoding() {
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let body = minimal_spans(MAX_REQUEST_BYTES);
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", collector.http);
    let hostile = (0..32).map(|_| {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    });
    // A normal client is served meanwhile.
    let normal = async {
        let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
            .await
            .unwrap();
        let mut generator = TraceGenerator::new(5).with_now_ns(now_ns());
        for _ in 0..10 {
            client
                .export(generator.request(100))
                .await
                .expect("a normal request is acknowledged");
        }
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(hostile), normal);
    for (status, body) in &answers {
        assert_eq!(*status, 413);
        let text = String::from_utf8_lossy(body);
        assert!(
            text.contains("COLLECTOR_MAX_INFLIGHT_BYTES") && text.contains("decoded"),
            "the answer names the limit: {text}"
        );
    }
    // The same over gRPC: RESOURCE_EXHAUSTED, not retried by exporters.
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(format!("http://{}", collector.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let status = raw
        .unary::<Bytes, (), _>(
            tonic::Request::new(body.clone()),
            http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ),
            observatory_integration::grpc::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let peak = status_bytes(collector.pid(), "VmHWM:");
    println!("peak RSS {} MiB", peak / MIB);
    assert!(peak < 512 * MIB, "peak RSS {} MiB", peak / MIB);
    assert!(
        peak < documented_worst_case(32),
        "the documented bound holds"
    );
    assert_eq!(
        collector
            .metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"http_protobuf\",reason=\"too_large_decoded\"}")
            .await,
        32.0
    );
}

/// Opens an OTLP/gRPC export on its own connection and sends its body one
/// byte a second; returns the grpc-status and message the collector answers.
async fn slow_export(addr: std::net::SocketAddr) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let trickle = tokio::spawn(async move {
        // A gRPC frame announcing 1000 bytes, then a byte a second.
        let mut frame = vec![0u8, 0, 0, 0x03, 0xe8];
        frame.truncate(5);
        let _ = body.send_data(Bytes::from(frame), false);
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if body.send_data(Bytes::from_static(&[0x0a]), false).is_err() {
                return;
            }
        }
    });
    let response = response.await.unwrap();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let trailers = body
        .trailers()
        .await
        .unwrap_or_default()
        .unwrap_or_default();
    trickle.abort();
    let get = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_grpc_bodies_give_their_slots_back_after_the_body_timeout() {
    let topic = unique("spans");
    let collector = Collector::spawn(&[
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("KAFKA_TRACES_PARTITIONS", "4".into()),
        ("COLLECTOR_MAX_CONCURRENT_REQUESTS", "4".into()),
        ("COLLECTOR_BODY_TIMEOUT", "3s".into()),
    ]);
    collector.wait_ready(WAIT).await;
    let grpc = collector.grpc;
    let slow: Vec<_> = (0..4).map(|_| tokio::spawn(slow_export(grpc))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every slot is taken by a slow client; the slots come back after the
    // body timeout and a normal client is served.
    let started = Instant::now();
    let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut generator = TraceGenerator::new(6).with_now_ns(now_ns());
    let request = generator.request(50);
    let refused = client.export(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused
            .message()
            .contains("COLLECTOR_MAX_CONCURRENT_REQUESTS"),
        "the slow clients hold every slot: {refused:?}"
    );
    wait_for("a normal request served", Duration::from_secs(15), || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.export(request).await.ok() }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served after {:?}",
        started.elapsed()
    );
    client.export(request).await.expect("served again");
    for handle in slow {
        let (status, message) = handle.await.unwrap();
        assert_eq!(status, "14", "UNAVAILABLE: {message}");
        assert!(message.contains("COLLECTOR_BODY_TIMEOUT"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_names_topics_with_a_single_replica() {
    let mut child = Command::new(workspace_bin("observatory-collector"))
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("KAFKA_TRACES_TOPIC", unique("spans"))
        .env("KAFKA_METRICS_TOPIC", unique("metrics"))
        .env("KAFKA_LOGS_TOPIC", unique("logs"))
        .env(
            "COLLECTOR_GRPC_ADDR",
            observatory_integration::free_addr().to_string(),
        )
        .env(
            "COLLECTOR_HTTP_ADDR",
            observatory_integration::free_addr().to_string(),
        )
        .env(
            "COLLECTOR_ADMIN_ADDR",
            observatory_integration::free_addr().to_string(),
        )
        .env("ENVIRONMENT", "production")
        .env("INGEST_ALLOW_ANONYMOUS", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let found = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + WAIT;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if line.contains("single replica") {
                return Some(line);
            }
            if Instant::now() > deadline {
                break;
            }
        }
        None
    });
    let line = tokio::time::timeout(WAIT, found).await;
    let _ = child.kill();
    let _ = child.wait();
    let line = line
        .expect("a warning in time")
        .unwrap()
        .expect("a single-replica warning");
    assert!(
        line.contains("ENVIRONMENT=production") && line.contains("min.insync.replicas"),
        "{line:?}"
    );
}
