//! The sinks' failure paths that must never stall or end silently, against
//! the real broker and PostgreSQL: a poison message at the topic's size
//! limit goes to the dead-letter topic (which takes anything the topic can
//! hold); a dead letter that cannot be delivered stops the sink with a
//! non-zero exit naming the message; a panic of the consumer thread is an
//! error, never a clean exit.

use observatory_consumer::admin::Health;
use observatory_consumer::config::KafkaConfig;
use observatory_consumer::metrics::Metrics;
use observatory_consumer::source::{
    run_on_thread, Assignment, Batching, InMessage, Rejected, RunError, Shared, Sink, WriteError,
};
use observatory_integration::collector::Collector;
use observatory_integration::kafka::read_topic;
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for, workspace_bin};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::testing::{spans_of, TraceGenerator};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
/// The collector's default `KAFKA_MESSAGE_MAX_BYTES`.
const MESSAGE_MAX_BYTES: usize = 1_000_000;

/// A producer that can write records as large as the topic allows.
fn big_producer() -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap()
}

/// Undecodable bytes (wire type 7 does not exist) of exactly `len` bytes.
fn poison(len: usize) -> Vec<u8> {
    vec![0xff; len]
}

async fn stream(collector: &Collector, seed: u64, requests: usize) -> i64 {
    let mut generator = TraceGenerator::new(seed).with_now_ns(now_ns());
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    let mut spans = 0;
    for _ in 0..requests {
        let request = generator.request(50);
        spans += spans_of(&request).count() as i64;
        client.export(request).await.expect("acknowledged");
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_of_the_size_limit_on_every_partition_goes_to_the_dlq() {
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let producer = big_producer();
    for partition in 0..4 {
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key("poison")
                    .payload(&poison(MESSAGE_MAX_BYTES)),
                Duration::from_secs(10),
            )
            .await
            .expect("the topic takes a record of KAFKA_MESSAGE_MAX_BYTES");
    }
    let sink = Service::consumer(
        "timescale",
        &[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", topic.clone()),
            ("KAFKA_GROUP_ID", unique("group")),
            ("DATABASE_URL", db.url.clone()),
            ("COPY_FLUSH_INTERVAL", "200ms".into()),
        ],
    );
    sink.wait_ready(WAIT).await;
    let brokers = kafka_brokers();
    let dlq = format!("{topic}.dlq");
    let letters =
        tokio::task::spawn_blocking(move || read_topic(&brokers, &dlq, WAIT, |r| r.len() >= 4))
            .await
            .unwrap();
    assert_eq!(letters.len(), 4, "one letter per partition");
    for letter in &letters {
        assert_eq!(letter.payload.len(), MESSAGE_MAX_BYTES);
        assert!(
            letter.headers["dlq-reason"].contains("undecodable"),
            "{:?}",
            letter.headers
        );
    }
    let mut partitions: Vec<String> = letters
        .iter()
        .map(|l| l.headers["dlq-source-partition"].clone())
        .collect();
    partitions.sort();
    assert_eq!(partitions, ["0", "1", "2", "3"]);
    // The traffic behind the letters is written.
    let spans = stream(&collector, 91, 8).await;
    wait_for("the traffic behind the poison", WAIT, || async {
        (db.count("SELECT count(*) FROM spans").await == spans).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_dlq_cannot_take_stops_the_sink_naming_the_message() {
    let db = TestDb::create().await;
    let topic = unique("spans");
    let _collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    // A record larger than the sink was told the topic holds: its letter
    // cannot be produced, however long the sink retries.
    let delivered = big_producer()
        .send(
            FutureRecord::to(&topic)
                .partition(2)
                .key("poison")
                .payload(&poison(200_000)),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let offset = delivered.offset;
    let mut command = std::process::Command::new(workspace_bin("observatory-consumer"));
    command
        .arg("timescale")
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("KAFKA_TRACES_TOPIC", &topic)
        .env("KAFKA_GROUP_ID", unique("group"))
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_MESSAGE_MAX_BYTES", "16384")
        .env("KAFKA_DLQ_TIMEOUT", "5s")
        .env("COPY_FLUSH_INTERVAL", "200ms")
        .env(
            "CONSUMER_ADMIN_ADDR",
            observatory_integration::free_addr().to_string(),
        )
        .env("RUST_LOG", "error");
    let output = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .expect("the sink stops by itself")
    .unwrap();
    assert!(!output.status.success(), "a non-zero exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{topic}/2@{offset}")) && stderr.contains("KAFKA_DLQ_TIMEOUT"),
        "the error names the message and the setting: {stderr}"
    );
}

/// A sink whose every write panics.
struct Panicking;

impl Sink for Panicking {
    type Item = ();
    const NAME: &'static str = "panicking";

    fn decode(&self, _: &InMessage) -> Result<(), String> {
        Ok(())
    }

    async fn write(&mut self, _: &[&()], _: &Assignment) -> Result<Rejected, WriteError> {
        panic!("a bug in the sink")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_consumer_thread_is_an_error_not_a_clean_exit() {
    let topic = unique("spans");
    let _collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    big_producer()
        .send(
            FutureRecord::to(&topic).key("k").payload(&b"x"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let config = KafkaConfig {
        brokers: kafka_brokers(),
        topic: topic.clone(),
        group_id: unique("group"),
        auto_offset_reset: "earliest".into(),
        dlq_topic: format!("{topic}.dlq"),
        dlq_partitions: 1,
        replication_factor: 1,
        max_poll_interval: Duration::from_secs(20),
        message_max_bytes: MESSAGE_MAX_BYTES,
        dlq_timeout: Duration::from_secs(30),
        extra: Vec::new(),
    };
    let shared = Shared {
        metrics: Arc::new(Metrics::new()),
        health: Health::default(),
        runtime: tokio::runtime::Handle::current(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let batching = Batching {
        batch_size: 1,
        batch_bytes: 1 << 20,
        flush_interval: Duration::from_millis(100),
    };
    let result = tokio::time::timeout(WAIT, run_on_thread(Panicking, config, batching, shared))
        .await
        .expect("the loop ends");
    match result {
        Err(RunError::Panicked { sink, message }) => {
            assert_eq!(sink, "panicking");
            assert_eq!(message, "a bug in the sink");
        }
        other => panic!("a panic must be an error, got {other:?}"),
    }
}
