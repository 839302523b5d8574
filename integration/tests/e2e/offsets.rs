//! End-to-end tests of `observatory-consumer offsets` and `lag`, and of the
//! sinks' lag and oldest-unwritten gauges: the real collector, a real broker,
//! `observatory-consumer timescale` as a process and a fresh database.
//!
//! The reset runs on the stack's broker, the gauges on a private one.

use observatory_integration::broker::Broker;
use observatory_integration::collector::Collector;
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::proxy::Proxy;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for, workspace_bin};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::testing::{spans_of, TraceGenerator};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(90);

fn sink_env(brokers: &str, topic: &str, group: &str, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("KAFKA_TRACES_TOPIC", topic.to_owned()),
        ("KAFKA_GROUP_ID", group.to_owned()),
        ("DATABASE_URL", db.to_owned()),
        ("COPY_FLUSH_INTERVAL", "200ms".to_owned()),
        ("COPY_BATCH_SIZE", "2000".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".to_owned()),
    ]
}

/// Sends `requests` requests of 50 GenAI spans, all in the last minutes;
/// returns how many spans.
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

/// What `observatory-consumer <args>` printed, and whether it succeeded.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn cli(brokers: &str, args: &[&str]) -> Run {
    let out = Command::new(workspace_bin("observatory-consumer"))
        .args(args)
        .env("KAFKA_BROKERS", brokers)
        .env_remove("KAFKA_GROUP_ID")
        .env_remove("KAFKA_TRACES_TOPIC")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run observatory-consumer (cargo build --bins)");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A table's rows (after the header, up to the summary line), as columns.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .take_while(|l| !l.starts_with("group ") && !l.starts_with("total lag"))
        .filter(|l| {
            !l.starts_with("note:") && !l.starts_with("dry run") && !l.starts_with("committed ")
        })
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn num(text: &str) -> Option<i64> {
    (text != "-").then(|| text.parse().expect("a number or -"))
}

/// Per partition: (committed, log start, log end, lag), from `offsets show`.
type Shown = BTreeMap<i32, (Option<i64>, i64, i64, Option<i64>)>;

fn show(brokers: &str, group: &str, topic: &str) -> (Shown, String) {
    let run = cli(
        brokers,
        &["offsets", "show", "--group", group, "--topic", topic],
    );
    assert!(run.ok, "offsets show failed: {}", run.stderr);
    let rows = table(&run.stdout)
        .into_iter()
        .map(|r| {
            assert_eq!((r[0].as_str(), r[1].as_str()), (group, topic), "{r:?}");
            (
                r[2].parse().unwrap(),
                (
                    num(&r[3]),
                    r[4].parse().unwrap(),
                    r[5].parse().unwrap(),
                    num(&r[6]),
                ),
            )
        })
        .collect();
    (rows, run.stdout)
}

/// Per partition: (committed, log end, lag), from `lag`.
type Lagged = BTreeMap<i32, (Option<i64>, i64, Option<i64>)>;

/// Runs `lag` and parses its table.
fn lag(brokers: &str, group: &str, topic: &str) -> (Lagged, String) {
    let run = cli(brokers, &["lag", "--group", group, "--topic", topic]);
    assert!(run.ok, "lag failed: {}", run.stderr);
    let rows = table(&run.stdout)
        .into_iter()
        .map(|r| {
            (
                r[2].parse().unwrap(),
                (num(&r[3]), r[4].parse().unwrap(), num(&r[5])),
            )
        })
        .collect();
    (rows, run.stdout)
}

async fn rollup_snapshot(db: &TestDb) -> [i64; 5] {
    [
        db.count("SELECT count(*) FROM spans").await,
        db.count("SELECT count(*) FROM llm_calls").await,
        db.count("SELECT sum(calls)::bigint FROM llm_rollup_1m")
            .await,
        db.count("SELECT sum(input_tokens)::bigint FROM llm_rollup_1m")
            .await,
        db.count("SELECT sum(count)::bigint FROM llm_latency_1m WHERE metric = 0")
            .await,
    ]
}

/// The sink's lag gauge, per partition, when it reports all of `partitions`.
async fn gauge_lag(sink: &Service, partitions: usize) -> Option<Vec<f64>> {
    let (_, text) = sink.admin_get("/metrics").await?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("observatory_consumer_lag_messages{"))
        // The spans' group only, not the scores loop beside it.
        .filter(|l| !l.contains("topic=\"scores\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (values.len() == partitions).then_some(values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_to_a_time_rewrites_from_there_without_duplicates() {
    // The stack's broker: tansu's SQLite engine (the private brokers) fails
    // DescribeGroups for any group with members, so `reset` would refuse
    // there (it never guesses whether a group runs).
    let brokers = kafka_brokers();
    let db = TestDb::create().await;
    let topic = unique("spans");
    let group = unique("group");
    let collector = Collector::for_topic(&brokers, &topic, WAIT).await;
    let mut sink = Service::consumer("timescale", &sink_env(&brokers, &topic, &group, &db.url));
    sink.wait_ready(WAIT).await;

    // A first half, written and committed.
    let first = stream(&collector, 11, 12).await;
    wait_for("the first half to be committed", WAIT, || async {
        let (rows, _) = lag(&brokers, &group, &topic);
        (rows.len() == 4 && rows.values().all(|(_, _, l)| *l == Some(0))).then_some(())
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM spans").await, first);
    // Where the second half starts in each partition: the committed offsets
    // now. (Not the log ends: tansu's in-memory engine reports the high
    // watermark at batch granularity, up to a batch short.)
    let (after_first, _) = show(&brokers, &group, &topic);
    let middle_offsets: BTreeMap<i32, i64> = after_first
        .iter()
        .map(|(p, (c, ..))| (*p, c.expect("committed")))
        .collect();
    // The middle: after every message of the first half, before the second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = stream(&collector, 12, 12).await;
    let total = first + second;
    wait_for("the second half to be committed", WAIT, || async {
        let (rows, _) = lag(&brokers, &group, &topic);
        rows.values().all(|(_, _, l)| *l == Some(0)).then_some(())
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM spans").await, total);

    // The running sink's gauges: no lag on any of the 4 partitions, nothing pending.
    let gauges = wait_for(
        "the lag gauge to report 4 partitions at 0",
        WAIT,
        || async {
            gauge_lag(&sink, 4)
                .await
                .filter(|v| v.iter().all(|l| *l == 0.0))
        },
    )
    .await;
    assert_eq!(gauges.len(), 4);
    assert_eq!(
        sink.metric("observatory_consumer_oldest_unwritten_age_seconds{")
            .await,
        0.0
    );

    // `show` agrees with `lag`, and the log ends grew by the second half.
    let (shown, text) = show(&brokers, &group, &topic);
    assert_eq!(shown.len(), 4, "{text}");
    assert!(text.contains("1 live member(s)"), "{text}");
    let grown: i64 = shown
        .iter()
        .map(|(p, (_, _, end, _))| (end - middle_offsets[p]).max(0))
        .sum();
    assert!(grown > 0, "{text}");

    let at = humantime::format_rfc3339_millis(middle).to_string();
    // Refused while the sink runs; nothing moves.
    let refused = cli(
        &brokers,
        &[
            "offsets",
            "reset",
            "--group",
            &group,
            "--topic",
            &topic,
            "--to-datetime",
            &at,
        ],
    );
    assert!(
        !refused.ok,
        "a reset of a running group must fail: {}",
        refused.stdout
    );
    assert!(refused.stderr.contains("live member"), "{}", refused.stderr);
    assert_eq!(show(&brokers, &group, &topic).0, shown);

    // Stopped gracefully, the sink leaves the group.
    sink.terminate();
    wait_for("the group to be empty", WAIT, || async {
        show(&brokers, &group, &topic)
            .1
            .contains("0 live member(s)")
            .then_some(())
    })
    .await;

    // A dry run prints the plan and changes nothing.
    let dry = cli(
        &brokers,
        &[
            "offsets",
            "reset",
            "--group",
            &group,
            "--topic",
            &topic,
            "--to-datetime",
            &at,
            "--dry-run",
        ],
    );
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("dry run: nothing was changed"),
        "{}",
        dry.stdout
    );
    let plan: BTreeMap<i32, (Option<i64>, i64)> = table(&dry.stdout)
        .into_iter()
        .map(|r| (r[2].parse().unwrap(), (num(&r[3]), r[4].parse().unwrap())))
        .collect();
    for (p, (current, new)) in &plan {
        assert_eq!(*current, shown[p].0, "partition {p}: {}", dry.stdout);
        assert_eq!(
            *new, middle_offsets[p],
            "partition {p} goes back to the middle: {}",
            dry.stdout
        );
    }
    assert_eq!(
        show(&brokers, &group, &topic).0,
        shown,
        "a dry run changes nothing"
    );
    let shift = cli(
        &brokers,
        &[
            "offsets",
            "reset",
            "--group",
            &group,
            "--topic",
            &topic,
            "--shift-by",
            "-2",
            "--dry-run",
        ],
    );
    assert!(shift.ok, "{}", shift.stderr);
    for r in table(&shift.stdout) {
        let p: i32 = r[2].parse().unwrap();
        let (committed, start, end, _) = shown[&p];
        assert_eq!(
            num(&r[4]),
            Some((committed.unwrap() - 2).clamp(start, end)),
            "{r:?}"
        );
    }

    // The reset: committed offsets go back to the middle, the lag is the second half.
    let before = rollup_snapshot(&db).await;
    let reset = cli(
        &brokers,
        &[
            "offsets",
            "reset",
            "--group",
            &group,
            "--topic",
            &topic,
            "--to-datetime",
            &at,
        ],
    );
    assert!(reset.ok, "{}", reset.stderr);
    assert!(
        reset.stdout.contains("committed 4 offset(s)"),
        "{}",
        reset.stdout
    );
    let (moved, text) = show(&brokers, &group, &topic);
    for (p, (committed, _, end, lag)) in &moved {
        assert_eq!(*committed, Some(middle_offsets[p]), "{text}");
        assert_eq!(*lag, Some((end - middle_offsets[p]).max(0)), "{text}");
    }
    let (lagged, text) = lag(&brokers, &group, &topic);
    let behind: i64 = lagged.values().filter_map(|(_, _, l)| *l).sum();
    assert_eq!(behind, grown, "{text}");
    assert!(text.contains(&format!("total lag {grown}")), "{text}");

    // Restarted, the sink reads the second half again and stores nothing twice.
    sink.start();
    wait_for("the sink to read the second half again", WAIT, || async {
        (sink
            .metric("observatory_consumer_rows_duplicate_total{sink=\"timescale\",table=\"spans\"}")
            .await
            >= second as f64)
            .then_some(())
    })
    .await;
    wait_for("the group to catch up", WAIT, || async {
        lag(&brokers, &group, &topic)
            .0
            .values()
            .all(|(_, _, l)| *l == Some(0))
            .then_some(())
    })
    .await;
    assert_eq!(
        sink.metric(
            "observatory_consumer_rows_duplicate_total{sink=\"timescale\",table=\"spans\"}"
        )
        .await,
        second as f64,
        "exactly the second half is read again"
    );
    assert_eq!(
        sink.metric("observatory_consumer_rows_written_total{sink=\"timescale\",table=\"spans\"}")
            .await,
        0.0
    );
    assert_eq!(
        rollup_snapshot(&db).await,
        before,
        "rows and rollups unchanged"
    );
    assert_eq!(before[0], total);
    assert_eq!(
        before[2], before[1],
        "every call counted once in the rollups"
    );

    // `lag` works for any group, even one that never committed.
    let (unknown, text) = lag(&brokers, &unique("nobody"), &topic);
    assert_eq!(unknown.len(), 4);
    assert!(
        unknown.values().all(|(c, _, l)| c.is_none() && l.is_none()),
        "{text}"
    );
    assert!(
        text.contains("total lag 0 (4 partition(s) with no committed offset"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_show_what_waits_while_postgres_is_down() {
    let db = TestDb::create().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let broker = Broker::start().await;
    let brokers = broker.brokers();
    let topic = unique("spans");
    let collector = Collector::for_topic(&brokers, &topic, WAIT).await;
    let sink = Service::consumer(
        "timescale",
        &sink_env(&brokers, &topic, &unique("group"), &db.url_via(proxy.addr)),
    );
    sink.wait_ready(WAIT).await;
    let first = stream(&collector, 21, 4).await;
    wait_for("the first rows", WAIT, || async {
        (db.count("SELECT count(*) FROM spans").await == first).then_some(())
    })
    .await;
    let age = "observatory_consumer_oldest_unwritten_age_seconds{";
    // The rows are visible once the transaction commits; the sink clears the
    // gauge just after, when it hands the offsets to the commit path.
    wait_for("nothing pending", WAIT, || async {
        (sink.metric(age).await == 0.0).then_some(())
    })
    .await;

    proxy.cut();
    let sent = SystemTime::now();
    let second = stream(&collector, 22, 4).await;
    // The age grows while the write is stuck, and stays below the time since
    // the messages were produced.
    let seen = wait_for(
        "the oldest unwritten message to age past 3 s",
        WAIT,
        || async {
            let a = sink.metric(age).await;
            (a >= 3.0).then_some(a)
        },
    )
    .await;
    let since = SystemTime::now()
        .duration_since(sent)
        .unwrap()
        .as_secs_f64();
    assert!(seen <= since + 1.0, "age {seen} s, sent {since} s ago");
    wait_for(
        "the lag gauge to count the unwritten messages",
        WAIT,
        || async { (sink.metric("observatory_consumer_lag_messages{").await > 0.0).then_some(()) },
    )
    .await;

    proxy.restore();
    wait_for("every row", WAIT, || async {
        (db.count("SELECT count(*) FROM spans").await == first + second).then_some(())
    })
    .await;
    wait_for("the gauges back at 0", WAIT, || async {
        let (a, lags) = (sink.metric(age).await, gauge_lag(&sink, 4).await);
        eprintln!("age {a}, lag {lags:?}");
        (a == 0.0 && lags.is_some_and(|v| v.iter().all(|l| *l == 0.0))).then_some(())
    })
    .await;
}
