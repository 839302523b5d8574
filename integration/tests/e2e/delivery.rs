//! Nothing acknowledged is lost: a broker outage and a SIGTERM in the middle
//! of a stream. Every span of every request the collector answered with
//! success must be in the topic afterwards.

use observatory_integration::broker::Broker;
use observatory_integration::collector::Collector;
use observatory_integration::kafka::read_topic;
use observatory_integration::{kafka_brokers, unique, wait_for};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{spans_of, TraceGenerator};
use prost::Message;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a sender made.
#[derive(Clone)]
struct Attempt {
    started: Instant,
    finished: Instant,
    ok: bool,
    span_ids: Vec<Vec<u8>>,
}

/// Sends distinct 20-span requests over gRPC until stopped, recording each.
fn spawn_sender(
    endpoint: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let mut client = TraceServiceClient::new(channel);
        let mut generator = TraceGenerator::new(seed);
        while !stop.load(Ordering::Relaxed) {
            let request: ExportTraceServiceRequest = generator.request(20);
            let span_ids = spans_of(&request).map(|s| s.span_id.clone()).collect();
            let started = Instant::now();
            let ok = client.export(request).await.is_ok();
            log.lock().unwrap().push(Attempt {
                started,
                finished: Instant::now(),
                ok,
                span_ids,
            });
            if !ok {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

fn ok_count(log: &Mutex<Vec<Attempt>>, after: Instant) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|a| a.ok && a.started > after)
        .count()
}

/// Span ids in the topic, and how many messages carried a span already seen.
fn stored_spans(
    brokers: &str,
    topic: &str,
    expected: &HashSet<Vec<u8>>,
) -> (HashSet<Vec<u8>>, usize) {
    let records = read_topic(brokers, topic, Duration::from_secs(60), |records| {
        let mut seen = HashSet::new();
        for r in records {
            for span in spans_of(&ExportTraceServiceRequest::decode(&r.payload[..]).unwrap()) {
                seen.insert(span.span_id.clone());
            }
        }
        expected.is_subset(&seen)
    });
    let mut seen = HashSet::new();
    let mut repeated = 0;
    for r in &records {
        for span in spans_of(&ExportTraceServiceRequest::decode(&r.payload[..]).unwrap()) {
            if !seen.insert(span.span_id.clone()) {
                repeated += 1;
            }
        }
    }
    (seen, repeated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_never_acknowledged_and_the_collector_recovers_by_itself() {
    let mut broker = Broker::start().await;
    let topic = unique("spans");
    let collector = Collector::spawn(&[
        ("KAFKA_BROKERS", broker.brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("KAFKA_TRACES_PARTITIONS", "4".into()),
        ("COLLECTOR_PRODUCE_TIMEOUT", "2s".into()),
    ]);
    collector.wait_ready(Duration::from_secs(60)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|i| {
            spawn_sender(
                format!("http://{}", collector.grpc),
                100 + i,
                stop.clone(),
                log.clone(),
            )
        })
        .collect();
    wait_for(
        "20 acknowledged requests",
        Duration::from_secs(60),
        || async { (ok_count(&log, t0) >= 20).then_some(()) },
    )
    .await;

    broker.kill();
    let killed = Instant::now();
    // While the broker is down: HTTP answers 503 with Retry-After, /readyz turns not ready.
    let body = TraceGenerator::new(1).request(5).encode_to_vec();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", collector.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    wait_for(
        "/readyz to report the outage",
        Duration::from_secs(30),
        || async { matches!(collector.admin_get("/readyz").await, Some((503, _))).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The outage ends when the restart begins: the restarted broker may take
    // a request before `restart` returns.
    let restarting = Instant::now();
    broker.restart().await;
    let restarted = Instant::now();
    wait_for(
        "the collector to acknowledge again after the restart",
        Duration::from_secs(90),
        || async { (ok_count(&log, restarted) >= 10).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let attempts = log.lock().unwrap().clone();
    let during_outage: Vec<_> = attempts
        .iter()
        .filter(|a| a.started > killed && a.finished < restarting)
        .collect();
    assert!(
        !during_outage.is_empty(),
        "requests were sent during the outage"
    );
    assert!(
        during_outage.iter().all(|a| !a.ok),
        "a request sent while the broker was down was acknowledged"
    );
    let acknowledged: HashSet<Vec<u8>> = attempts
        .iter()
        .filter(|a| a.ok)
        .flat_map(|a| a.span_ids.clone())
        .collect();
    let brokers = broker.brokers();
    let expected = acknowledged.clone();
    let (stored, repeated) =
        tokio::task::spawn_blocking(move || stored_spans(&brokers, &topic, &expected))
            .await
            .unwrap();
    let missing = acknowledged.difference(&stored).count();
    assert_eq!(
        missing, 0,
        "{missing} acknowledged spans are missing from the topic"
    );
    eprintln!(
        "outage: {} attempts, {} acknowledged, {} refused during the outage, {repeated} spans stored twice (retried requests)",
        attempts.len(),
        attempts.iter().filter(|a| a.ok).count(),
        during_outage.len()
    );
    assert!(collector.metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"grpc\",reason=\"kafka_unavailable\"}").await
        + collector.metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"grpc\",reason=\"overloaded\"}").await
        >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_loses_nothing() {
    let topic = unique("spans");
    let mut collector = Collector::spawn(&[
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("KAFKA_TRACES_PARTITIONS", "4".into()),
    ]);
    collector.wait_ready(Duration::from_secs(60)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|i| {
            spawn_sender(
                format!("http://{}", collector.grpc),
                200 + i,
                stop.clone(),
                log.clone(),
            )
        })
        .collect();
    wait_for(
        "30 acknowledged requests",
        Duration::from_secs(60),
        || async { (ok_count(&log, t0) >= 30).then_some(()) },
    )
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let status = collector.terminate();
        (status, collector)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "the collector exits cleanly on SIGTERM: {:?}",
        status.0
    );
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let attempts = log.lock().unwrap().clone();
    let acknowledged: HashSet<Vec<u8>> = attempts
        .iter()
        .filter(|a| a.ok)
        .flat_map(|a| a.span_ids.clone())
        .collect();
    let expected = acknowledged.clone();
    let brokers = kafka_brokers();
    let (stored, _) =
        tokio::task::spawn_blocking(move || stored_spans(&brokers, &topic, &expected))
            .await
            .unwrap();
    assert_eq!(
        acknowledged.difference(&stored).count(),
        0,
        "acknowledged spans are missing after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_starts_without_a_broker_and_gets_ready_once_one_appears() {
    let mut broker = Broker::not_started();
    let topic = unique("spans");
    let collector = Collector::spawn(&[
        ("KAFKA_BROKERS", broker.brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("KAFKA_TRACES_PARTITIONS", "3".into()),
        ("COLLECTOR_PRODUCE_TIMEOUT", "1s".into()),
    ]);
    wait_for("/healthz", Duration::from_secs(30), || async {
        matches!(collector.admin_get("/healthz").await, Some((200, _))).then_some(())
    })
    .await;
    let (status, body) = collector.admin_get("/readyz").await.unwrap();
    assert_eq!(status, 503, "not ready without a broker: {body}");
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    let refused = client
        .export(TraceGenerator::new(1).request(5))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    broker.restart().await;
    collector.wait_ready(Duration::from_secs(60)).await;
    client
        .export(TraceGenerator::new(2).request(5))
        .await
        .expect("accepted once the broker is up");
    let brokers = broker.brokers();
    let partitions = tokio::task::spawn_blocking(move || {
        observatory_integration::kafka::partition_count(&brokers, &topic, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(
        partitions, 3,
        "the collector created its topic with KAFKA_TRACES_PARTITIONS"
    );
}
