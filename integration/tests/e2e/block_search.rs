//! End-to-end test of search over the Tempo blocks: traffic through the
//! real pipeline (collector → broker → PostgreSQL sink and Tempo sink into
//! the stack's S3 server), so both stores hold the same window; then the
//! same searches of `GET /api/v1/traces` and Tempo's `/api/search` with
//! `store=postgres` and `store=blocks` find the same traces. Blocks written
//! with old timestamps (past `RETENTION_TRACES_DAYS=1` of the API) hold
//! traces only the blocks have: a search over their window finds them, a
//! window reaching into PostgreSQL's merges both, a tiny
//! `BLOCKS_SEARCH_MAX_BYTES` gives a partial answer that says so, and a
//! condition the blocks cannot answer is a 400 naming it (window wholly in
//! the blocks) or leaves the blocks' part unsearched (window straddling).

use observatory_integration::api::service_request;
use observatory_integration::api::{escape, export, token, Pipeline, SECRET};
use observatory_integration::bucket::{s3_bucket, s3_endpoint};
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for};
use observatory_schemas::otlp::trace::{ResourceSpans, Span, Status};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::meta::block_id;
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockWriter, DEFAULT_ROW_GROUP_BYTES};
use observatory_schemas::testing::{kv_int, kv_str, TraceGenerator};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const SECOND: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SECOND;

/// A 2-second agent run whose model call failed.
fn agent_trace(id: u8, service: &str, end: u64) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: vec![id; 16],
        span_id: vec![1; 8],
        name: "agent run".into(),
        kind: 2,
        start_time_unix_nano: end - 2 * SECOND,
        end_time_unix_nano: end,
        attributes: vec![kv_str("user.id", "u-1")],
        ..Default::default()
    };
    let call = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: end - 1_500_000_123,
        end_time_unix_nano: end - 500_000_000,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.input_tokens", 1000),
            kv_str("http.method", "POST"),
        ],
        status: Some(Status {
            code: 2,
            message: "rate limited".into(),
        }),
        ..root.clone()
    };
    service_request(service, vec![root, call])
}

/// A 100 ms health check.
fn health_trace(id: u8, end: u64) -> ExportTraceServiceRequest {
    service_request(
        "other-svc",
        vec![Span {
            trace_id: vec![id; 16],
            span_id: vec![9; 8],
            name: "health".into(),
            kind: 1,
            start_time_unix_nano: end - 100_000_000,
            end_time_unix_nano: end,
            status: Some(Status {
                code: 1,
                message: String::new(),
            }),
            ..Default::default()
        }],
    )
}

/// A job of an archived service, for blocks past the retention.
fn archived(id: u8, start: u64, failed: bool) -> (Vec<u8>, Vec<ResourceSpans>) {
    let span = Span {
        trace_id: vec![id; 16],
        span_id: vec![id; 8],
        name: "nightly job".into(),
        kind: 1,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 3 * SECOND,
        attributes: vec![kv_str("job.kind", "batch")],
        status: failed.then(|| Status {
            code: 2,
            message: "disk full".into(),
        }),
        ..Default::default()
    };
    (
        vec![id; 16],
        service_request("archive-bot", vec![span]).resource_spans,
    )
}

struct Api<'a> {
    service: &'a Service,
    token: &'a str,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.service.admin))
            .header("authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// `GET /api/v1/traces` with `params`: the page.
    async fn traces(&self, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect();
        let (status, body) = self
            .get(&format!("/api/v1/traces?{}", query.join("&")))
            .await;
        assert_eq!(status, 200, "{params:?}: {body}");
        body
    }

    /// `GET /api/search` with `params`: the answer.
    async fn tempo(&self, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect();
        let (status, body) = self.get(&format!("/api/search?{}", query.join("&"))).await;
        assert_eq!(status, 200, "{params:?}: {body}");
        body
    }
}

fn ids(page: &Value) -> BTreeSet<String> {
    page["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("no traces in {page}"))
        .iter()
        .map(|t| {
            t["trace_id"]
                .as_str()
                .or_else(|| t["traceID"].as_str())
                .unwrap()
                .trim_start_matches('0')
                .to_owned()
        })
        .collect()
}

fn hex(id: u8) -> String {
    format!("{id:02x}").repeat(16)
}

fn rfc3339(ns: u64) -> String {
    observatory_schemas::civil::rfc3339_nanos(ns as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_answer_searches_as_postgresql_does_and_past_its_retention() {
    // ---- the pipeline: both sinks hold the same traffic ----
    let pipeline = Pipeline::start("key-acme=acme", &[], WAIT).await;
    let bucket = s3_bucket(&s3_endpoint());
    let mut tempo_env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", pipeline.topic.clone()),
        ("KAFKA_GROUP_ID", unique("group")),
        ("TEMPO_BLOCK_MAX_AGE", "1s".into()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".into()),
    ];
    tempo_env.extend(bucket.env.iter().cloned());
    let tempo_sink = Service::consumer("tempo", &tempo_env);
    tempo_sink.wait_ready(WAIT).await;

    let end = now_ns() - 5 * SECOND;
    let mut spans = 0i64;
    let mut send = Vec::new();
    send.push(agent_trace(0xa1, "support-bot", end));
    send.push(health_trace(0xa2, end));
    send.push(agent_trace(0xa3, "search-api", end - 30 * SECOND));
    let mut generator = TraceGenerator::new(19).with_now_ns(end - 60 * SECOND);
    for _ in 0..4 {
        send.push(generator.request(60));
    }
    for r in send {
        spans += r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len() as i64)
            .sum::<i64>();
        export(&pipeline.collector, "key-acme", r).await;
    }
    pipeline.wait_for_spans(spans, WAIT).await;
    wait_for("every span in a block", WAIT, || async {
        let written = tempo_sink
            .metric("observatory_consumer_block_spans_written_total{sink=\"tempo\"}")
            .await;
        (written >= spans as f64).then_some(())
    })
    .await;

    // ---- blocks of 3 days ago: past the API's retention of 1 day ----
    let old = now_ns() - 3 * DAY;
    let mut traces = vec![
        archived(0xc1, old, false),
        archived(0xc2, old + 60 * SECOND, true),
    ];
    traces.sort_by(|a, b| a.0.cmp(&b.0));
    let mut writer = BlockWriter::new(traces.len() as u64, DEFAULT_ROW_GROUP_BYTES).unwrap();
    for (id, rs) in &traces {
        let id: [u8; 16] = id.clone().try_into().unwrap();
        writer
            .push(&TraceRow::merge(id, &[&rs[..]]).unwrap())
            .unwrap();
    }
    let block = writer.finish(block_id("acme", 999, 0, 1), "acme").unwrap();
    bucket.store.put_block(&block, || true).await.unwrap();

    let mut api_env = vec![
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("BLOCKS_LIST_REFRESH", "1s".into()),
        ("RETENTION_TRACES_DAYS", "1".into()),
        ("KAFKA_SCORES_TOPIC", pipeline.scores_topic.clone()),
    ];
    api_env.extend(bucket.env.iter().cloned());
    let service = Service::api(&api_env);
    service.wait_ready(WAIT).await;
    let acme = token("acme", "viewer", "1h");
    let api = Api {
        service: &service,
        token: &acme,
    };

    // ---- the same searches give the same traces from either store ----
    let from = rfc3339(end - 600 * SECOND);
    let to = rfc3339(end + 60 * SECOND);
    let window = [
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("limit", "1000"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, bool)> = vec![
        (vec![], true),
        (vec![("service", "support-bot")], true),
        (vec![("name", "health")], true),
        (vec![("name", "invoke_agent support_agent")], true),
        (vec![("status", "error")], true),
        (vec![("status", "ok")], true),
        (vec![("min_duration", "1s")], true),
        (vec![("max_duration", "150ms")], true),
        (vec![("attr", "gen_ai.request.model:eq:gpt-4o")], true),
        (vec![("attr", "gen_ai.usage.input_tokens:gt:500")], true),
        (vec![("attr", "http.method:eq:POST")], true),
        (
            vec![("attr", "resource.deployment.environment:eq:prod")],
            true,
        ),
        (
            vec![("attr", "gen_ai.tool.name:in:search_docs,get_weather")],
            true,
        ),
        (
            vec![("attr", "gen_ai.request.model:starts_with:claude")],
            true,
        ),
        (
            vec![("attr", "gen_ai.request.model:regex:^gpt-4o(-mini)?$")],
            true,
        ),
        (vec![("attr", "error.type:ne:none")], true),
        (
            vec![
                ("service", "support-bot"),
                ("status", "error"),
                ("attr", "gen_ai.request.model:eq:gpt-4o"),
            ],
            true,
        ),
        (vec![("name", "no such span")], false),
        (vec![("sort", "duration"), ("min_duration", "500ms")], true),
    ];
    for (case, nonempty) in &cases {
        let mut pg: Vec<(&str, &str)> = window.to_vec();
        pg.extend(case.iter().copied());
        let mut blocks = pg.clone();
        pg.push(("store", "postgres"));
        blocks.push(("store", "blocks"));
        let (a, b) = (api.traces(&pg).await, api.traces(&blocks).await);
        assert_eq!(ids(&a), ids(&b), "{case:?}");
        assert_eq!(a["stores"], serde_json::json!(["postgres"]), "{case:?}");
        assert_eq!(b["stores"], serde_json::json!(["blocks"]), "{case:?}");
        assert_eq!(b["partial"], false, "{case:?}: {b}");
        assert_eq!(ids(&a).is_empty(), !nonempty, "{case:?}: {a}");
        // The same order too.
        let order = |p: &Value| -> Vec<String> {
            p["traces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["trace_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(order(&a), order(&b), "{case:?}");
    }
    // What the blocks know of a trace is what PostgreSQL says of it.
    let mut first = Vec::new();
    for store in ["postgres", "blocks"] {
        let mut params = window.to_vec();
        params.extend([("service", "support-bot"), ("store", store)]);
        first.push(api.traces(&params).await["traces"][0].clone());
    }
    let (a, b) = (&first[0], &first[1]);
    for field in [
        "trace_id",
        "root_service",
        "root_name",
        "root_received",
        "start_time",
        "duration_ms",
        "span_count",
        "error",
        "services",
    ] {
        assert_eq!(a[field], b[field], "{field}: {a} / {b}");
    }
    assert_eq!(b["llm_calls"], 0);
    assert_eq!(b["user_id"], Value::Null);

    // Tempo's search, TraceQL.
    let start = ((end / SECOND) - 600).to_string();
    let stop = ((end / SECOND) + 60).to_string();
    for q in [
        r#"{}"#,
        r#"{resource.service.name="support-bot"}"#,
        r#"{name="health"}"#,
        r#"{duration>1s}"#,
        r#"{status=error && kind=client}"#,
        r#"{span.gen_ai.request.model=~"gpt-4.*"}"#,
        r#"{span.gen_ai.usage.input_tokens>500}"#,
        r#"{.deployment.environment="prod" && resource.service.name!="support-bot"}"#,
        r#"{traceDuration>1s}"#,
        r#"{(rootServiceName="support-bot" || rootServiceName="other-svc")}"#,
        r#"{span:parentID="0101010101010101"}"#,
        r#"{name="x' OR '1'='1"}"#,
    ] {
        let params = |store| {
            vec![
                ("q", q),
                ("start", start.as_str()),
                ("end", stop.as_str()),
                ("limit", "1000"),
                ("store", store),
            ]
        };
        let a = api.tempo(&params("postgres")).await;
        let b = api.tempo(&params("blocks")).await;
        assert_eq!(ids(&a), ids(&b), "{q}");
        assert_eq!(
            b["metrics"]["completedJobs"], b["metrics"]["totalJobs"],
            "{q}: {b}"
        );
        // The span sets too: the same matched spans and counts.
        let sets = |answer: &Value| -> BTreeSet<(String, u64, String)> {
            answer["traces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let set = &t["spanSets"][0];
                    let first = set["spans"][0]["spanID"].as_str().unwrap_or("").to_owned();
                    (
                        t["traceID"].as_str().unwrap().to_owned(),
                        set["matched"].as_u64().unwrap_or(0),
                        first,
                    )
                })
                .collect()
        };
        assert_eq!(sets(&a), sets(&b), "{q}");
    }

    // ---- past the retention: only the blocks hold these traces ----
    let c1 = hex(0xc1);
    let c2 = hex(0xc2);
    let old_from = rfc3339(old - DAY);
    let old_to = rfc3339(old + DAY);
    let old_window = [("from", old_from.as_str()), ("to", old_to.as_str())];
    let page = api.traces(&old_window).await;
    assert_eq!(ids(&page), [c1.clone(), c2.clone()].into_iter().collect());
    assert_eq!(page["stores"], serde_json::json!(["blocks"]));
    assert_eq!(page["blocks"]["searched"], true);
    assert!(page["blocks"]["bytes_read"].as_u64().unwrap() > 0);
    assert_eq!(page["traces"][0]["trace_id"], c2, "newest first");
    assert_eq!(page["traces"][0]["error"], true);
    assert_eq!(page["traces"][0]["root_service"], "archive-bot");
    let mut errors = old_window.to_vec();
    errors.push(("status", "error"));
    assert_eq!(
        ids(&api.traces(&errors).await),
        [c2.clone()].into_iter().collect()
    );
    let mut job = old_window.to_vec();
    job.push(("attr", "job.kind:eq:batch"));
    assert_eq!(ids(&api.traces(&job).await).len(), 2);
    let mut postgres_only = old_window.to_vec();
    postgres_only.push(("store", "postgres"));
    assert!(ids(&api.traces(&postgres_only).await).is_empty());

    // A window reaching into PostgreSQL's: both, merged, newest first.
    let both = [
        ("from", old_from.as_str()),
        ("to", to.as_str()),
        ("limit", "1000"),
    ];
    let page = api.traces(&both).await;
    assert_eq!(page["stores"], serde_json::json!(["postgres", "blocks"]));
    let found = ids(&page);
    for id in [hex(0xa1), hex(0xa2), c1.clone(), c2.clone()] {
        assert!(found.contains(&id), "{id} in {page}");
    }
    let order: Vec<&str> = page["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["start_time"].as_str().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{order:?}");
    assert_eq!(
        page["traces"].as_array().unwrap().last().unwrap()["trace_id"],
        c1
    );
    // Paged: every trace once over the pages.
    let mut paged = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut params: Vec<(&str, &str)> = vec![
            ("from", old_from.as_str()),
            ("to", to.as_str()),
            ("limit", "7"),
        ];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let page = api.traces(&params).await;
        for id in ids(&page) {
            assert!(paged.insert(id), "a trace on two pages");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, found);

    // Tempo's search past the retention.
    let old_start = ((old - DAY) / SECOND).to_string();
    let old_end = ((old + DAY) / SECOND).to_string();
    let answer = api
        .tempo(&[
            (
                "q",
                r#"{resource.service.name="archive-bot" && status=error}"#,
            ),
            ("start", &old_start),
            ("end", &old_end),
        ])
        .await;
    assert_eq!(ids(&answer), ["c2".repeat(16)].into_iter().collect());
    assert_eq!(answer["traces"][0]["rootServiceName"], "archive-bot");
    assert_eq!(answer["traces"][0]["durationMs"], 3000);
    assert_eq!(answer["metrics"]["totalBlocks"].as_u64(), Some(1));
    assert!(answer["metrics"]["inspectedBytes"].as_str().is_some());

    // ---- conditions the blocks cannot answer ----
    let (status, body) = api
        .get(&format!(
            "/api/v1/traces?from={}&to={}&model=gpt-4o",
            escape(&old_from),
            escape(&old_to)
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["parameter"], "model");
    let (status, body) = api
        .get(&format!(
            "/api/v1/traces?from={}&to={}&q=refund&store=blocks",
            escape(&from),
            escape(&to)
        ))
        .await;
    assert_eq!((status, &body["parameter"]), (400, &Value::from("q")));
    let mut straddling = both.to_vec();
    straddling.push(("model", "gpt-4o"));
    let page = api.traces(&straddling).await;
    assert_eq!(page["stores"], serde_json::json!(["postgres"]));
    assert_eq!(page["blocks"]["searched"], false);
    assert_eq!(page["blocks"]["not_searched_because"], "model");
    assert!(ids(&page).contains(&hex(0xa1)));

    // The bytes are counted.
    assert!(
        service
            .metric("observatory_api_blocks_read_bytes_total")
            .await
            > 0.0
    );

    // ---- a byte budget too small for one footer: partial, and it says so ----
    let mut tiny_env = api_env.clone();
    tiny_env.push(("BLOCKS_SEARCH_MAX_BYTES", "100".into()));
    let tiny_service = Service::api(&tiny_env);
    tiny_service.wait_ready(WAIT).await;
    let tiny = Api {
        service: &tiny_service,
        token: &acme,
    };
    // Parameters no other request used: the cache (shared Redis) has no answer.
    let page = tiny
        .traces(&[
            ("from", old_from.as_str()),
            ("to", old_to.as_str()),
            ("limit", "33"),
        ])
        .await;
    assert_eq!(page["partial"], true, "{page}");
    assert!(page["blocks"]["blocks_unsearched"].as_u64().unwrap() >= 1);
    assert!(page["blocks"]["bytes_read"].as_u64().unwrap() <= 100);
    let answer = tiny
        .tempo(&[
            ("q", "{}"),
            ("start", &old_start),
            ("end", &old_end),
            ("limit", "33"),
            ("store", "blocks"),
        ])
        .await;
    let m = &answer["metrics"];
    assert!(
        m["completedJobs"].as_u64().unwrap() < m["totalJobs"].as_u64().unwrap(),
        "{answer}"
    );
}
