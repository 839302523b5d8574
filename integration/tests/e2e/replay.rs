//! End-to-end tests of `observatory-consumer replay` and `dlq list|replay`
//! against the real broker and PostgreSQL: a replay of a time window twice
//! changes nothing, stops by itself at `--to` with the right counts,
//! `--partitions` limits it, and a dead letter whose cause is fixed is
//! written exactly once by `dlq replay` (and kept, with its new reason, while
//! the cause is not fixed); a Tempo replay writes only what no block holds
//! (nothing when everything is stored, a lost block's traces when it is
//! lost), in a local folder and in S3; and a Tempo dead letter sent back
//! twice lands in one block.

use observatory_consumer::tempo::store::BlockStore;
use observatory_integration::bucket::{local_bucket, s3_bucket, s3_endpoint, Bucket};
use observatory_integration::collector::Collector;
use observatory_integration::kafka::{read_topic, Record};
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for, workspace_bin};
use observatory_schemas::kafka::trace_key;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::testing::{kv_int, kv_str, spans_of, TraceGenerator};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(90);

/// Now as RFC 3339, milliseconds, UTC.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The environment of a sink (and of a replay through it) on `topic`.
fn sink_env(topic: &str, database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("COPY_FLUSH_INTERVAL", "200ms".to_owned()),
        ("COPY_BATCH_SIZE", "2000".to_owned()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".to_owned()),
        ("REPLAY_PROGRESS_INTERVAL", "1s".to_owned()),
    ]
}

/// What a command printed, and whether it succeeded.
struct Ran {
    ok: bool,
    stdout: String,
}

impl Ran {
    /// The value of `key=` on the `summary` line.
    fn summary(&self, key: &str) -> i64 {
        let line = self
            .stdout
            .lines()
            .rfind(|l| l.starts_with("summary "))
            .unwrap_or_else(|| panic!("no summary in:\n{}", self.stdout));
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    }

    /// The `letter` lines.
    fn letters(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("letter "))
            .collect()
    }
}

/// Runs `observatory-consumer <args>` to its exit (which it must reach by
/// itself within `WAIT`).
async fn consumer(args: &[&str], env: &[(&'static str, String)]) -> Ran {
    let mut command = Command::new(workspace_bin("observatory-consumer"));
    command
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("CONSUMER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("start observatory-consumer");
    let pid = child.id();
    let waited = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
        panic!("observatory-consumer {args:?} did not stop by itself within {WAIT:?}");
    };
    let output = output.unwrap().expect("the process ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "observatory-consumer {args:?} -> {}\n{stdout}",
        output.status
    );
    Ran {
        ok: output.status.success(),
        stdout,
    }
}

/// Sends `requests` requests of 20 GenAI spans; returns the spans and the
/// trace keys sent.
async fn stream(collector: &Collector, seed: u64, requests: usize) -> (i64, BTreeSet<String>) {
    let mut generator = TraceGenerator::new(seed).with_now_ns(now_ns());
    let mut client = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    let mut spans = 0;
    let mut traces = BTreeSet::new();
    for _ in 0..requests {
        let request = generator.request(20);
        for span in spans_of(&request) {
            spans += 1;
            traces.insert(trace_key(&span.trace_id[..].try_into().unwrap()));
        }
        client.export(request).await.expect("acknowledged");
    }
    (spans, traces)
}

/// Reads the whole topic back once it holds `spans` spans.
async fn topic_records(topic: &str, spans: i64) -> Vec<Record> {
    let (brokers, topic) = (kafka_brokers(), topic.to_owned());
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, WAIT, |r| span_count(r.iter()) >= spans)
    })
    .await
    .unwrap();
    assert_eq!(
        span_count(records.iter()),
        spans,
        "the topic holds every span"
    );
    records
}

fn span_count<'a>(records: impl Iterator<Item = &'a Record>) -> i64 {
    records
        .map(|r| r.headers["span-count"].parse::<i64>().unwrap())
        .sum()
}

/// Row counts and rollup sums: what a replay of stored data must not change.
async fn snapshot(db: &TestDb) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*) FROM spans",
        "SELECT count(*) FROM llm_calls",
        "SELECT sum(calls)::bigint FROM llm_rollup_1m",
        "SELECT sum(errors)::bigint FROM llm_rollup_1m",
        "SELECT sum(input_tokens)::bigint FROM llm_rollup_1m",
        "SELECT sum(output_tokens)::bigint FROM llm_rollup_1m",
        "SELECT (sum(cost_usd) * 1e9)::bigint FROM llm_rollup_1m",
        "SELECT sum(count)::bigint FROM llm_latency_1m",
        "SELECT sum(calls)::bigint FROM llm_rollup_1h",
        "SELECT sum(input_tokens)::bigint FROM llm_rollup_1h",
        "SELECT sum(count)::bigint FROM llm_latency_1h",
    ] {
        out.push(db.count(sql).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_window_stops_at_to_and_twice_changes_nothing() {
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let env = sink_env(&topic, &db.url);

    // Three bursts; the replay window is the middle one, by Kafka time.
    let (spans_a, _) = stream(&collector, 11, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (spans_b, traces_b) = stream(&collector, 12, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (spans_c, _) = stream(&collector, 13, 4).await;
    let records = topic_records(&topic, spans_a + spans_b + spans_c).await;
    let messages_b = records
        .iter()
        .filter(|r| traces_b.contains(r.key.as_deref().unwrap()))
        .count() as i64;

    // No sink ran: the replay alone backfills the database (and migrates it).
    let window = [
        "replay",
        "--sink",
        "timescale",
        "--from",
        &from,
        "--to",
        &to,
    ];
    let first = consumer(&window, &env).await;
    assert!(first.ok, "the replay succeeds");
    assert_eq!(
        first.summary("messages"),
        messages_b,
        "only the window is read"
    );
    assert_eq!(first.summary("spans"), spans_b);
    assert_eq!(first.summary("dead_letters"), 0);
    assert!(first.stdout.contains("complete=true"), "{}", first.stdout);
    assert_eq!(db.count("SELECT count(*) FROM spans").await, spans_b);
    assert_eq!(
        db.count("SELECT count(DISTINCT encode(trace_id, 'hex')) FROM spans")
            .await,
        traces_b.len() as i64
    );
    let calls = db.count("SELECT count(*) FROM llm_calls").await;
    assert!(calls > 0, "the window holds LLM calls");
    assert_eq!(
        db.count("SELECT sum(calls)::bigint FROM llm_rollup_1m")
            .await,
        calls
    );
    let before = snapshot(&db).await;

    // The same window again: the same counts read, nothing stored twice.
    let second = consumer(&window, &env).await;
    assert!(second.ok);
    assert_eq!(second.summary("messages"), messages_b);
    assert_eq!(second.summary("spans"), spans_b);
    assert_eq!(
        snapshot(&db).await,
        before,
        "a second replay changes nothing"
    );

    // --partitions: only partitions 0 and 1, from the start to the end.
    let partial = consumer(
        &[
            "replay",
            "--sink",
            "timescale",
            "--from",
            "earliest",
            "--partitions",
            "0,1",
        ],
        &env,
    )
    .await;
    assert!(partial.ok);
    let in_01: Vec<&Record> = records.iter().filter(|r| r.partition <= 1).collect();
    assert_eq!(partial.summary("partitions"), 2);
    assert_eq!(partial.summary("messages"), in_01.len() as i64);
    assert_eq!(partial.summary("spans"), span_count(in_01.iter().copied()));
    // Stored now: the window, plus everything of partitions 0 and 1.
    let expected: i64 = records
        .iter()
        .filter(|r| r.partition <= 1 || traces_b.contains(r.key.as_deref().unwrap()))
        .map(|r| r.headers["span-count"].parse::<i64>().unwrap())
        .sum();
    assert!(expected > spans_b, "partitions 0 and 1 add data");
    assert_eq!(db.count("SELECT count(*) FROM spans").await, expected);
    let calls = db.count("SELECT count(*) FROM llm_calls").await;
    assert_eq!(
        db.count("SELECT sum(calls)::bigint FROM llm_rollup_1m")
            .await,
        calls,
        "rollups count each call once"
    );
    assert_eq!(
        db.count("SELECT sum(calls)::bigint FROM llm_rollup_1h")
            .await,
        calls
    );

    // A bad partition is refused, naming it.
    let bad = consumer(
        &[
            "replay",
            "--sink",
            "timescale",
            "--from",
            "0",
            "--partitions",
            "9",
        ],
        &env,
    )
    .await;
    assert!(!bad.ok);
}

/// An LLM call span of a model the test can make PostgreSQL refuse.
fn poison_request(trace: u8) -> ExportTraceServiceRequest {
    let end = now_ns();
    let span = Span {
        trace_id: vec![trace; 16],
        span_id: vec![7; 8],
        name: "chat fixable-model".into(),
        kind: 3,
        start_time_unix_nano: end - 900_000_000,
        end_time_unix_nano: end,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "fixable-model"),
            kv_int("gen_ai.usage.input_tokens", 123),
            kv_int("gen_ai.usage.output_tokens", 45),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "dlq-test")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_dead_letter_is_written_once_by_dlq_replay() {
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let mut env = sink_env(&topic, &db.url);
    env.push(("KAFKA_GROUP_ID", unique("group")));
    // DLQ groups of their own (the defaults are per sink, not per test).
    let dlq_group = unique("dlq");
    let sink = Service::consumer("timescale", &env);
    sink.wait_ready(WAIT).await;

    // A constraint an operator added by mistake: calls of this model fail.
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE llm_calls ADD CONSTRAINT no_fixable_model CHECK (model <> 'fixable-model')",
        )
        .await
        .unwrap();
    let mut otlp = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    otlp.export(poison_request(0x5a))
        .await
        .expect("acknowledged");
    let (good, _) = stream(&collector, 21, 2).await;
    wait_for("the good spans", WAIT, || async {
        (db.count("SELECT count(*) FROM spans").await == good).then_some(())
    })
    .await;
    wait_for("the dead letter", WAIT, || async {
        (sink.metric("observatory_consumer_dlq_messages_total").await == 1.0).then_some(())
    })
    .await;
    let poison_spans = "SELECT count(*) FROM spans WHERE name = 'chat fixable-model'";
    assert_eq!(db.count(poison_spans).await, 0);

    // `dlq list` shows it with its reason.
    let list_env = {
        let mut e = env.clone();
        e.push(("DLQ_GROUP_ID", dlq_group.clone()));
        e
    };
    let listed = consumer(&["dlq", "list"], &list_env).await;
    assert!(listed.ok);
    let letters = listed.letters();
    assert_eq!(letters.len(), 1, "{}", listed.stdout);
    assert!(letters[0].contains("sink=timescale"), "{}", letters[0]);
    assert!(letters[0].contains("status=pending"), "{}", letters[0]);
    assert!(
        letters[0].contains("violates check constraint \"no_fixable_model\""),
        "{}",
        letters[0]
    );
    assert!(
        letters[0].contains(&format!("source={topic}/")),
        "{}",
        letters[0]
    );

    // Sent back before the cause is fixed: it fails again and is kept.
    let again = ["dlq", "replay", "--sink", "timescale"];
    let failed = consumer(&again, &list_env).await;
    assert!(!failed.ok, "a letter that fails again is reported");
    assert_eq!(failed.summary("messages"), 1);
    assert_eq!(failed.summary("dead_letters"), 1);
    assert_eq!(db.count(poison_spans).await, 0);
    let (brokers, dlq) = (kafka_brokers(), format!("{topic}.dlq"));
    let records =
        tokio::task::spawn_blocking(move || read_topic(&brokers, &dlq, WAIT, |r| r.len() >= 2))
            .await
            .unwrap();
    assert_eq!(records.len(), 2);
    let (old, new) = (&records[0].headers, &records[1].headers);
    for key in [
        "dlq-source-topic",
        "dlq-source-partition",
        "dlq-source-offset",
    ] {
        assert_eq!(old[key], new[key], "the letter keeps its origin ({key})");
    }
    assert!(new["dlq-reason"].contains("no_fixable_model"), "{new:?}");

    // The cause fixed, the letter is written, once.
    client
        .batch_execute("ALTER TABLE llm_calls DROP CONSTRAINT no_fixable_model")
        .await
        .unwrap();
    let fixed = consumer(&again, &list_env).await;
    assert!(fixed.ok, "{}", fixed.stdout);
    assert_eq!(
        fixed.summary("messages"),
        1,
        "only the pending letter is read"
    );
    assert_eq!(fixed.summary("dead_letters"), 0);
    assert_eq!(db.count(poison_spans).await, 1);
    let model_calls = "SELECT count(*) FROM llm_calls WHERE model = 'fixable-model'";
    let model_rollup = "SELECT sum(calls)::bigint FROM llm_rollup_1m WHERE model = 'fixable-model'";
    assert_eq!(db.count(model_calls).await, 1);
    assert_eq!(db.count(model_rollup).await, 1);
    assert_eq!(
        db.count(
            "SELECT sum(input_tokens)::bigint FROM llm_rollup_1m WHERE model = 'fixable-model'"
        )
        .await,
        123
    );
    assert_eq!(db.count("SELECT count(*) FROM spans").await, good + 1);

    // Nothing is pending now; replaying everything again changes nothing.
    let list_again = consumer(&["dlq", "list", "--sink", "timescale"], &list_env).await;
    assert_eq!(list_again.letters().len(), 2);
    assert!(
        list_again
            .letters()
            .iter()
            .all(|l| l.contains("status=sent-back")),
        "{}",
        list_again.stdout
    );
    let none = consumer(&again, &list_env).await;
    assert!(none.ok);
    assert_eq!(none.summary("messages"), 0);
    let all_again = consumer(
        &[
            "dlq",
            "replay",
            "--sink",
            "timescale",
            "--group",
            &unique("dlq"),
        ],
        &list_env,
    )
    .await;
    assert!(all_again.ok, "{}", all_again.stdout);
    assert_eq!(all_again.summary("messages"), 2);
    assert_eq!(db.count(model_calls).await, 1);
    assert_eq!(db.count(model_rollup).await, 1);
    assert_eq!(db.count(poison_spans).await, 1);
}

/// A call span of `replay-llm` at `start_ns`, a million tokens each way.
fn priced_span(trace: u8, start_ns: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        name: "chat replay-llm".into(),
        kind: 3,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + 2_000_000_000,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "replay-llm"),
            kv_int("gen_ai.usage.input_tokens", 1_000_000),
            kv_int("gen_ai.usage.output_tokens", 1_000_000),
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_prices_each_call_at_the_price_of_its_day() {
    const DAY_NS: u64 = 86_400 * 1_000_000_000;
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    // The price went up five days ago: 1 $/M in, 2 $/M out before; 10 and 20 since.
    let changed = humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(5 * 86_400))
        .to_string()[..10]
        .to_owned();
    let prices = std::env::temp_dir().join(format!("{}.json", unique("prices")));
    std::fs::write(
        &prices,
        format!(
            r#"{{"models":[
                {{"model":"replay-llm","effective_from":"2020-01-01","input":1.0,"output":2.0}},
                {{"model":"replay-llm","effective_from":"{changed}","input":10.0,"output":20.0}}]}}"#
        ),
    )
    .unwrap();
    let mut env = sink_env(&topic, &db.url);
    env.push(("PRICING_FILE", prices.display().to_string()));

    let now = now_ns();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "pricing-test")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![priced_span(1, now - 10 * DAY_NS), priced_span(2, now)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut otlp = TraceServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();
    otlp.export(request).await.expect("acknowledged");
    topic_records(&topic, 2).await;

    let all = ["replay", "--sink", "timescale", "--from", "earliest"];
    let ran = consumer(&all, &env).await;
    assert!(ran.ok, "{}", ran.stdout);
    assert_eq!(ran.summary("spans"), 2);
    let cost = |trace: u8| {
        let db = &db;
        async move {
            db.client()
                .await
                .query_one(
                    "SELECT computed_cost_usd FROM llm_calls WHERE trace_id = $1",
                    &[&vec![trace; 16]],
                )
                .await
                .unwrap()
                .get::<_, f64>(0)
        }
    };
    assert!(
        (cost(1).await - 3.0).abs() < 1e-9,
        "the old call at the old price"
    );
    assert!(
        (cost(2).await - 30.0).abs() < 1e-9,
        "today's call at today's price"
    );
    let total = "SELECT (sum(cost_usd) * 1000)::bigint FROM llm_rollup_1m";
    assert_eq!(db.count(total).await, 33_000);
    let before = snapshot(&db).await;
    let again = consumer(&all, &env).await;
    assert!(again.ok);
    assert_eq!(snapshot(&db).await, before);
    let _ = std::fs::remove_file(prices);
}

/// The blocks of the default tenant: (meta.json path, traces in it).
async fn tempo_blocks(store: &BlockStore) -> Vec<(String, u64)> {
    use observatory_schemas::tempo::meta::{tenant_folder, BlockMeta};
    let mut out = Vec::new();
    let folder = tenant_folder(observatory_schemas::tenant::DEFAULT_TENANT);
    for name in store.list(folder).await.unwrap() {
        if name.ends_with("/meta.json") {
            let meta: BlockMeta = serde_json::from_slice(&store.get(&name).await.unwrap()).unwrap();
            out.push((name, meta.total_objects as u64));
        }
    }
    out.sort();
    out
}

/// Every object of the store, with its bytes.
async fn objects(store: &BlockStore) -> BTreeMap<String, bytes::Bytes> {
    let mut out = BTreeMap::new();
    for name in store.list("").await.unwrap() {
        let data = store.get(&name).await.unwrap();
        out.insert(name, data);
    }
    out
}

/// The trace ids of each complete block of the default tenant, by block
/// folder.
async fn block_traces(store: &BlockStore) -> BTreeMap<String, BTreeSet<[u8; 16]>> {
    let mut out = BTreeMap::new();
    for (meta, _) in tempo_blocks(store).await {
        let folder = meta.trim_end_matches("/meta.json").to_owned();
        let data = store.get(&format!("{folder}/data.parquet")).await.unwrap();
        let ids = DataFile::open(data).unwrap().trace_ids().unwrap();
        out.insert(folder, ids.into_iter().collect());
    }
    out
}

/// The running Tempo sink writes blocks; a replay of the whole topic then
/// writes nothing; after one block is lost, a replay writes exactly its
/// traces again, in new blocks, and a further replay writes nothing.
async fn tempo_replay_writes_only_what_is_missing(bucket: Bucket) {
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let mut env = sink_env(&topic, "postgres://unused@127.0.0.1:1/none");
    env.extend(bucket.env.iter().cloned());
    let store = &bucket.store;

    // The running sink, cutting at least once per burst.
    let mut live_env = env.clone();
    live_env.push(("KAFKA_GROUP_ID", unique("tempo")));
    live_env.push(("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()));
    let mut live = Service::consumer("tempo", &live_env);
    live.wait_ready(WAIT).await;
    let spans_written = "observatory_consumer_block_spans_written_total{sink=\"tempo\"}";
    let mut spans = 0;
    let mut traces = BTreeSet::new();
    for seed in [41, 42] {
        let (s, t) = stream(&collector, seed, 3).await;
        spans += s;
        traces.extend(t);
        wait_for("the running sink to write every span", WAIT, || async {
            (live.metric(spans_written).await == spans as f64).then_some(())
        })
        .await;
    }
    live.terminate();
    let records = topic_records(&topic, spans).await;
    let stored = block_traces(store).await;
    assert!(stored.len() >= 2, "several cuts: {stored:?}");
    let ids: Vec<&[u8; 16]> = stored.values().flatten().collect();
    assert_eq!(ids.len(), traces.len(), "each trace in one block");

    // Everything is stored: a replay of the whole topic writes nothing.
    let before = objects(store).await;
    let all = ["replay", "--sink", "tempo", "--from", "earliest"];
    let again = consumer(&all, &env).await;
    assert!(again.ok, "{}", again.stdout);
    assert_eq!(again.summary("messages"), records.len() as i64);
    assert_eq!(again.summary("already_stored"), records.len() as i64);
    assert!(objects(store).await == before, "the store is unchanged");

    // One block is lost: the replay writes its traces, and only those.
    let (lost, lost_traces) = stored.iter().next().unwrap();
    let lost_objects: Vec<&String> = before
        .keys()
        .filter(|k| k.starts_with(&format!("{lost}/")))
        .collect();
    let lost_messages: i64 = lost_objects
        .iter()
        .filter(|k| k.contains("/observatory-source/"))
        .map(|k| {
            let body: serde_json::Value = serde_json::from_slice(&before[*k]).unwrap();
            body["messages"].as_i64().unwrap()
        })
        .sum();
    assert!(lost_messages > 0);
    for name in &lost_objects {
        store.delete(name).await.unwrap();
    }
    let refill = consumer(&all, &env).await;
    assert!(refill.ok, "{}", refill.stdout);
    assert_eq!(
        refill.summary("already_stored"),
        records.len() as i64 - lost_messages
    );
    let after = objects(store).await;
    for (name, data) in &before {
        if !name.starts_with(&format!("{lost}/")) {
            assert!(after.get(name) == Some(data), "{name} is unchanged");
        }
    }
    let now = block_traces(store).await;
    let new: BTreeSet<[u8; 16]> = now
        .iter()
        .filter(|(folder, _)| !stored.contains_key(*folder))
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    assert_eq!(&new, lost_traces, "exactly the lost block's traces");
    let ids: Vec<&[u8; 16]> = now.values().flatten().collect();
    assert_eq!(ids.len(), traces.len(), "each trace in one block");

    // The replay's own blocks count as stored too.
    let third = consumer(&all, &env).await;
    assert!(third.ok, "{}", third.stdout);
    assert_eq!(third.summary("already_stored"), records.len() as i64);
    assert!(objects(store).await == after, "the store is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tempo_replay_writes_only_what_is_missing_in_a_local_folder() {
    tempo_replay_writes_only_what_is_missing(local_bucket()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tempo_replay_writes_only_what_is_missing_in_s3() {
    tempo_replay_writes_only_what_is_missing(s3_bucket(&s3_endpoint())).await;
}

/// A dead letter of the Tempo sink that it can write now goes back into a
/// block once: sent back twice (a fresh DLQ group), it lands in the same
/// block, not a copy. A letter that still cannot be decoded fails again and
/// is kept; the other sink's letters are read past, not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_dead_letters_go_back_into_one_block() {
    use prost::Message;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let bucket = local_bucket();
    let store = &bucket.store;
    let topic = unique("spans");
    let dlq = format!("{topic}.dlq");
    let _collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let mut env = sink_env(&topic, "postgres://unused@127.0.0.1:1/none");
    env.extend(bucket.env.iter().cloned());
    env.push(("DLQ_GROUP_ID", unique("dlq")));
    let mut live_env = env.clone();
    live_env.push(("KAFKA_GROUP_ID", unique("tempo")));
    live_env.push(("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()));
    let mut live = Service::consumer("tempo", &live_env);
    live.wait_ready(WAIT).await;

    // The live sink gives up on a message with broken framing.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .key("framing")
                .payload(&b"\x0a\xff\xff\xff\x0fnot protobuf"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("the poison is produced");
    wait_for("the dead letter", WAIT, || async {
        (live.metric("observatory_consumer_dlq_messages_total").await == 1.0).then_some(())
    })
    .await;
    live.terminate();
    // Two more letters, as the sinks write them: one of the Tempo sink that
    // it can write now, one of the PostgreSQL sink.
    for (trace, sink, offset) in [(0x6b_u8, "tempo", "1000"), (0x6c, "timescale", "1001")] {
        let headers = [
            ("dlq-sink", sink),
            ("dlq-reason", "object storage: timed out"),
            ("dlq-source-topic", topic.as_str()),
            ("dlq-source-partition", "0"),
            ("dlq-source-offset", offset),
            ("span-count", "1"),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        let key = trace_key(&[trace; 16]);
        producer
            .send(
                FutureRecord::to(&dlq)
                    .key(&key[..])
                    .payload(&poison_request(trace).encode_to_vec())
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .expect("the letter is produced");
    }
    let in_blocks = |stored: &BTreeMap<String, BTreeSet<[u8; 16]>>, trace: u8| {
        stored
            .values()
            .filter(|ids| ids.contains(&[trace; 16]))
            .count()
    };
    assert_eq!(in_blocks(&block_traces(store).await, 0x6b), 0);

    // Sent back: the writable letter lands in a block; the broken one fails
    // again (a new letter keeps it); the PostgreSQL sink's is read past.
    let replay = ["dlq", "replay", "--sink", "tempo"];
    let first = consumer(&replay, &env).await;
    assert!(!first.ok, "a letter that fails again is reported");
    assert_eq!(first.summary("messages"), 3, "{}", first.stdout);
    assert_eq!(first.summary("dead_letters"), 1, "{}", first.stdout);
    let stored = block_traces(store).await;
    assert_eq!(in_blocks(&stored, 0x6b), 1, "{stored:?}");
    assert_eq!(in_blocks(&stored, 0x6c), 0, "not this sink's letter");
    let names: BTreeSet<String> = objects(store).await.into_keys().collect();
    let (brokers, dlq_topic) = (kafka_brokers(), dlq.clone());
    let letters = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &dlq_topic, WAIT, |r| r.len() >= 4)
    })
    .await
    .unwrap();
    assert_eq!(letters.len(), 4, "the broken letter is kept, once more");
    assert_eq!(letters[3].headers["dlq-sink"], "tempo");
    assert_eq!(letters[3].key.as_deref(), Some("framing"));

    // Sent back again by a fresh group: the same block, not a copy.
    let fresh = consumer(
        &[
            "dlq",
            "replay",
            "--sink",
            "tempo",
            "--group",
            &unique("dlq"),
        ],
        &env,
    )
    .await;
    assert_eq!(fresh.summary("messages"), 4, "{}", fresh.stdout);
    assert_eq!(fresh.summary("dead_letters"), 2, "{}", fresh.stdout);
    let again = block_traces(store).await;
    assert_eq!(in_blocks(&again, 0x6b), 1, "{again:?}");
    let names_again: BTreeSet<String> = objects(store).await.into_keys().collect();
    assert_eq!(names_again, names, "no new object");
}
