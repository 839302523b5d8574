//! Bad input gets a specific status and message, quickly, while a good
//! client next to it keeps being served; API keys are enforced.

use observatory_integration::collector::Collector;
use observatory_integration::grpc::{RawCodec, TRACE_EXPORT_PATH};
use observatory_integration::kafka::read_topic;
use observatory_integration::{kafka_brokers, unique};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::TraceGenerator;
use prost::Message;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(topic: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.to_owned()),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("KAFKA_TRACES_PARTITIONS", "4".to_owned()),
        ("COLLECTOR_MAX_REQUEST_BYTES", (1024 * 1024).to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// `google.rpc.Status` as the collector answers errors.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("the collector answers");
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let body = response.bytes().await.unwrap();
    let message = if json {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON status");
        v["message"].as_str().unwrap_or_default().to_owned()
    } else {
        RpcStatus::decode(&body[..])
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned())
    };
    (status, message)
}

fn request_with<F: FnOnce(&mut ExportTraceServiceRequest)>(
    seed: u64,
    f: F,
) -> ExportTraceServiceRequest {
    let mut request = TraceGenerator::new(seed).request(20);
    f(&mut request);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_while_a_good_client_is_served() {
    let topic = unique("spans");
    let collector = Collector::spawn(&env(&topic, &[]));
    collector.wait_ready(Duration::from_secs(60)).await;

    // A good client sends all along.
    let stop = Arc::new(AtomicBool::new(false));
    let good_ok = Arc::new(AtomicU64::new(0));
    let good_failed = Arc::new(AtomicU64::new(0));
    let good = {
        let (stop, ok, failed) = (stop.clone(), good_ok.clone(), good_failed.clone());
        let endpoint = format!("http://{}", collector.grpc);
        tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
            let mut generator = TraceGenerator::new(99);
            while !stop.load(Ordering::Relaxed) {
                match client.export(generator.request(50)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        eprintln!("good client refused: {status}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    let url = format!("http://{}/v1/traces", collector.http);
    let pb = ("content-type", "application/x-protobuf");
    let json = ("content-type", "application/json");
    let good_body = TraceGenerator::new(5).request(10).encode_to_vec();
    let mut bomb = Vec::new();
    bomb.resize(20 << 20, b'a');
    // (what, headers, body, expected status, words the message must hold)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed protobuf",
            vec![pb],
            vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01],
            400,
            "malformed protobuf",
        ),
        (
            "malformed JSON",
            vec![json],
            br#"{"resourceSpans": [ {"#.to_vec(),
            400,
            "malformed OTLP/JSON",
        ),
        (
            "JSON of the wrong shape",
            vec![json],
            br#"{"resourceSpans": 7}"#.to_vec(),
            400,
            "malformed OTLP/JSON",
        ),
        (
            "truncated gzip",
            vec![pb, ("content-encoding", "gzip")],
            gzip(&good_body)[..40].to_vec(),
            400,
            "invalid gzip body",
        ),
        (
            "decompression bomb",
            vec![pb, ("content-encoding", "gzip")],
            gzip(&bomb),
            413,
            "after decompression",
        ),
        (
            "wrong content type",
            vec![("content-type", "text/plain")],
            good_body.clone(),
            415,
            "unsupported content type",
        ),
        (
            "unknown encoding",
            vec![pb, ("content-encoding", "br")],
            good_body.clone(),
            415,
            "unsupported content encoding",
        ),
        (
            "oversized body",
            vec![pb],
            vec![0u8; 2 << 20],
            413,
            "larger than 1048576 bytes",
        ),
        (
            "short trace id",
            vec![pb],
            request_with(1, |r| {
                r.resource_spans[0].scope_spans[0].spans[3].trace_id = vec![7; 8]
            })
            .encode_to_vec(),
            400,
            "trace_id must be 16 bytes, got 8",
        ),
        (
            "zero trace id",
            vec![pb],
            request_with(2, |r| {
                r.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16]
            })
            .encode_to_vec(),
            400,
            "trace_id must not be all zeroes",
        ),
        (
            "zero span id",
            vec![json],
            serde_json::to_vec(&request_with(3, |r| {
                r.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8]
            }))
            .unwrap(),
            400,
            "span_id must not be all zeroes",
        ),
        (
            "bad tenant",
            vec![pb, ("x-scope-orgid", "../etc")],
            good_body.clone(),
            400,
            "invalid X-Scope-OrgID",
        ),
    ];
    for (name, headers, body, status, needle) in cases {
        let started = Instant::now();
        let (got, message) = post(&url, &headers, body).await;
        assert_eq!(got, status, "{name}: {message}");
        assert!(
            message.contains(needle),
            "{name}: {message:?} should say {needle:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name} was answered slowly"
        );
    }

    // The same over gRPC: INVALID_ARGUMENT with a message, never INTERNAL or a retryable code.
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    let bad_ids = request_with(4, |r| {
        r.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1; 3]
    });
    let status = client.export(bad_ids).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("span_id must be 8 bytes, got 3"),
        "{}",
        status.message()
    );

    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", collector.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(TRACE_EXPORT_PATH);
    let status = raw
        .unary(
            tonic::Request::new(bytes::Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0x0f])),
            path.clone(),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("malformed protobuf"),
        "{}",
        status.message()
    );

    let big = TraceGenerator::new(6).with_content_bytes(5000).request(512);
    assert!(big.encoded_len() > 1 << 20);
    let status = client.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("COLLECTOR_MAX_REQUEST_BYTES"),
        "{}",
        status.message()
    );

    stop.store(true, Ordering::Relaxed);
    good.await.unwrap();
    assert_eq!(
        good_failed.load(Ordering::Relaxed),
        0,
        "the good client was never refused"
    );
    assert!(good_ok.load(Ordering::Relaxed) > 0);
    // Still serving after all that.
    client
        .export(TraceGenerator::new(7).request(5))
        .await
        .expect("still serving");
    assert!(collector.metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"http_protobuf\",reason=\"malformed_protobuf\"}").await >= 1.0);
    assert!(collector.metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"http_json\",reason=\"invalid_span\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_required_when_configured_and_choose_the_tenant() {
    let topic = unique("spans");
    let collector = Collector::spawn(&env(
        &topic,
        &[("INGEST_API_KEYS", "k-alpha=alpha,k-beta=beta")],
    ));
    collector.wait_ready(Duration::from_secs(60)).await;
    let url = format!("http://{}/v1/traces", collector.http);
    let body = TraceGenerator::new(8).request(3).encode_to_vec();
    let pb = ("content-type", "application/x-protobuf");

    let (status, message) = post(&url, &[pb], body.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("API key"));
    let (status, _) = post(&url, &[pb, ("authorization", "Bearer wrong")], body.clone()).await;
    assert_eq!(status, 401);
    let (status, message) = post(
        &url,
        &[
            pb,
            ("authorization", "Bearer k-beta"),
            ("x-scope-orgid", "alpha"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{message}");

    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    let status = client
        .export(TraceGenerator::new(9).request(3))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(TraceGenerator::new(10).request(3));
    request
        .metadata_mut()
        .insert("x-api-key", "k-alpha".parse().unwrap());
    client
        .export(request)
        .await
        .expect("a valid key is accepted");

    let brokers = kafka_brokers();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, Duration::from_secs(60), |r| {
            let tenants: std::collections::HashSet<_> =
                r.iter().map(|r| r.headers["tenant"].clone()).collect();
            tenants.len() >= 2
        })
    })
    .await
    .unwrap();
    let tenants: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| r.headers["tenant"].as_str())
        .collect();
    assert_eq!(
        tenants,
        ["alpha", "beta"].into(),
        "the key, not the header, names the tenant"
    );
}
