//! An idle sink costs (almost) nothing: once both sinks have written what
//! came and their flush interval has passed with nothing new, each uses a
//! small fraction of a core (the loop polls Kafka every 100 ms and
//! refreshes its lag gauge every 10 s). Measured from `/proc/<pid>/stat`
//! over 5 s of idleness on the real stack; a busy poll loop uses a whole
//! core and fails it.

use observatory_integration::bucket::local_bucket;
use observatory_integration::collector::Collector;
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, unique, wait_for};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::testing::{spans_of, TraceGenerator};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(90);

/// The most CPU an idle sink may use in [`IDLE`] (a tenth of a core).
const IDLE_CPU_SECONDS: f64 = 0.5;
const IDLE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sinks_do_not_spin() {
    let db = TestDb::create().await;
    let bucket = local_bucket();
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let common = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("COPY_FLUSH_INTERVAL", "200ms".to_owned()),
        ("TEMPO_BLOCK_MAX_AGE", "200ms".to_owned()),
    ];
    let mut timescale_env = common.clone();
    timescale_env.push(("KAFKA_GROUP_ID", unique("timescale")));
    timescale_env.push(("DATABASE_URL", db.url.clone()));
    let mut tempo_env = common;
    tempo_env.push(("KAFKA_GROUP_ID", unique("tempo")));
    tempo_env.extend(bucket.env.iter().cloned());
    let timescale = Service::consumer("timescale", &timescale_env);
    let tempo = Service::consumer("tempo", &tempo_env);
    timescale.wait_ready(WAIT).await;
    tempo.wait_ready(WAIT).await;

    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let request = TraceGenerator::new(61).with_now_ns(now_ns).request(20);
    let spans = spans_of(&request).count() as f64;
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    client.export(request).await.expect("acknowledged");
    wait_for("both sinks to write the spans", WAIT, || async {
        let rows = timescale
            .metric("observatory_consumer_rows_written_total{sink=\"timescale\",table=\"spans\"}")
            .await;
        let blocks = tempo
            .metric("observatory_consumer_block_spans_written_total{sink=\"tempo\"}")
            .await;
        (rows == spans && blocks == spans).then_some(())
    })
    .await;

    // Past the flush interval with nothing pending, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = (timescale.cpu_seconds(), tempo.cpu_seconds());
    tokio::time::sleep(IDLE).await;
    let used = (
        timescale.cpu_seconds() - before.0,
        tempo.cpu_seconds() - before.1,
    );
    eprintln!("CPU seconds in {IDLE:?} idle (PostgreSQL sink, Tempo sink): {used:.2?}");
    assert!(
        used.0 < IDLE_CPU_SECONDS,
        "the idle PostgreSQL sink used {:.2} CPU-s in {IDLE:?}",
        used.0
    );
    assert!(
        used.1 < IDLE_CPU_SECONDS,
        "the idle Tempo sink used {:.2} CPU-s in {IDLE:?}",
        used.1
    );
}
