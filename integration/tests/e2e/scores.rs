//! End to end: scores, sessions and end users through the real pipeline
//! (collector, broker, the PostgreSQL sink and its scores loop,
//! `observatory-api`, real HTTP).
//!
//! - Scores written through the API and through OTLP evaluation events land
//!   once, through a SIGKILL of the sink and a replay with a fresh group;
//!   a score written again replaces it, a deletion removes it, configs and
//!   bad input are refused with a 400 naming the field and change nothing.
//! - A session of 20 traces, sent out of order and partly twice, reads back
//!   as one transcript in order; the users' totals equal their calls'.
//! - Every new endpoint keeps tenants apart both ways.

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::process::Service;
use observatory_integration::{now_ns, wait_for};
use observatory_schemas::otlp::common::KeyValue;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_f64, kv_int, kv_str};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const MS: u64 = 1_000_000;

/// One turn: a root and a model call of `session` by `user`, with the
/// prompt and the answer, and optionally an evaluation event on the call.
fn turn(
    trace: [u8; 16],
    at_ns: u64,
    session: &str,
    user: &str,
    n: usize,
    failed: bool,
    evaluation: Option<Vec<KeyValue>>,
) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: trace.to_vec(),
        span_id: vec![1; 8],
        name: "chat turn".into(),
        kind: 2,
        start_time_unix_nano: at_ns,
        end_time_unix_nano: at_ns + 900 * MS,
        ..Default::default()
    };
    let call = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: at_ns + 100 * MS,
        end_time_unix_nano: at_ns + (100 + 300 + n as u64) * MS,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.input_tokens", 100 + n as i64),
            kv_int("gen_ai.usage.output_tokens", 10 + n as i64),
            kv_str("session.id", session),
            kv_str("user.id", user),
            kv_str(
                "gen_ai.input.messages",
                json!([{"role": "user", "parts": [{"type": "text", "content": format!("question {n}")}]}])
                    .to_string(),
            ),
            kv_str(
                "gen_ai.output.messages",
                json!([{"role": "assistant", "parts": [{"type": "text", "content": format!("answer {n}")}]}])
                    .to_string(),
            ),
        ],
        events: evaluation
            .map(|attributes| {
                vec![span::Event {
                    time_unix_nano: at_ns + 500 * MS,
                    name: "gen_ai.evaluation.result".into(),
                    attributes,
                    dropped_attributes_count: 0,
                }]
            })
            .unwrap_or_default(),
        status: failed.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: "rate limited".into(),
        }),
        ..root.clone()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "support-bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![root, call],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn trace_id(tag: u8, n: usize) -> [u8; 16] {
    let mut id = [tag; 16];
    id[15] = n as u8;
    id
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

struct Api {
    service: Service,
    http: reqwest::Client,
}

impl Api {
    async fn start(pipeline: &Pipeline) -> Api {
        let service = Service::api(&[
            ("DATABASE_URL", pipeline.db.url.clone()),
            ("JWT_SECRET", SECRET.into()),
            ("KAFKA_BROKERS", observatory_integration::kafka_brokers()),
            ("KAFKA_SCORES_TOPIC", pipeline.scores_topic.clone()),
            ("KAFKA_SCORES_PARTITIONS", "2".into()),
        ]);
        service.wait_ready(WAIT).await;
        Api {
            service,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.service.admin))
            .header("authorization", format!("Bearer {token}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }
}

/// The stored, not deleted scores of the database, by id: (value, label, source).
async fn stored_scores(pipeline: &Pipeline) -> Vec<(String, Option<f64>, Option<String>, String)> {
    let client = pipeline.db.client().await;
    client
        .query(
            "SELECT id, value, label, source FROM scores WHERE NOT deleted ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_land_once_through_a_kill_and_a_replay_and_bad_ones_change_nothing() {
    let mut pipeline = Pipeline::start("key-acme=acme,key-beta=beta", &[], WAIT).await;
    let at = now_ns() - 60_000 * MS;
    let evaluation = vec![
        kv_str("gen_ai.evaluation.name", "relevance"),
        kv_f64("gen_ai.evaluation.score.value", 0.75),
        kv_str("gen_ai.evaluation.explanation", "on topic"),
    ];
    let acme_trace = trace_id(0xa1, 1);
    let beta_trace = trace_id(0xb2, 1);
    export(
        &pipeline.collector,
        "key-acme",
        turn(
            acme_trace,
            at,
            "acme-s",
            "acme-u",
            1,
            false,
            Some(evaluation),
        ),
    )
    .await;
    export(
        &pipeline.collector,
        "key-beta",
        turn(beta_trace, at, "beta-s", "beta-u", 1, false, None),
    )
    .await;
    pipeline.wait_for_spans(4, WAIT).await;
    let api = Api::start(&pipeline).await;
    let editor = token("acme", "editor", "1h");
    let viewer = token("acme", "viewer", "1h");
    let admin = token("acme", "admin", "1h");
    let beta = token("beta", "editor", "1h");
    let (acme_hex, beta_hex) = (hex(&acme_trace), hex(&beta_trace));

    // The OTLP evaluation event is a score on its span.
    wait_for("the evaluation event's score", WAIT, || async {
        (stored_scores(&pipeline).await.len() == 1).then_some(())
    })
    .await;
    let (_, trace) = api
        .get(&format!("/api/v1/traces/{acme_hex}"), &viewer)
        .await;
    let call = &trace["roots"][0]["children"][0];
    assert_eq!(call["scores"][0]["name"], "relevance", "{trace}");
    assert_eq!(call["scores"][0]["source"], "otlp");
    assert_eq!(call["scores"][0]["value"], 0.75);
    assert_eq!(call["scores"][0]["comment"], "on topic");

    // A config, then writes: one object and a batch.
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/score-configs/helpfulness",
            &admin,
            Some(json!({"data_type": "numeric", "min": 0, "max": 1, "description": "how helpful"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/score-configs/tone",
            &editor,
            Some(json!({"data_type": "categorical"})),
        )
        .await;
    assert_eq!(status, 403, "an editor does not change configs");
    api.call(
        reqwest::Method::PUT,
        "/api/v1/score-configs/tone",
        &admin,
        Some(json!({"data_type": "categorical", "categories": [{"label": "polite", "value": 1}, {"label": "rude", "value": 0}]})),
    )
    .await;
    let (status, body) = api
        .post(
            "/api/v1/scores",
            &editor,
            json!({"trace_id": acme_hex, "name": "helpfulness", "value": 0.9, "comment": "good"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let helpful_id = body["ids"][0].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            "/api/v1/scores",
            &editor,
            json!([
                {"id": "thumbs-1", "trace_id": acme_hex, "span_id": "0202020202020202", "name": "thumbs", "value": true},
                {"trace_id": acme_hex, "name": "tone", "value": "polite", "source": "annotation"},
                {"session_id": "acme-s", "name": "resolved", "value": false}
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["ids"][0], "thumbs-1");

    // Bad input: a specific 400 naming the field, and nothing published.
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"trace_id": acme_hex, "name": "q", "data_type": "stars", "value": 1}),
            "body",
        ),
        (
            json!({"trace_id": acme_hex, "name": "helpfulness", "value": 7}),
            "value",
        ),
        (
            json!({"trace_id": acme_hex, "name": "tone", "value": "sarcastic"}),
            "label",
        ),
        (
            json!({"trace_id": acme_hex, "name": "helpfulness", "value": "high"}),
            "data_type",
        ),
        (
            json!({"trace_id": acme_hex, "name": "q", "value": 1, "comment": "x".repeat(10 << 20)}),
            "comment",
        ),
        (
            json!({"trace_id": beta_hex, "name": "q", "value": 1}),
            "trace_id",
        ),
        (
            json!({"trace_id": acme_hex, "span_id": "0909090909090909", "name": "q", "value": 1}),
            "span_id",
        ),
        (
            json!({"session_id": "beta-s", "name": "q", "value": 1}),
            "session_id",
        ),
        (
            json!([{"trace_id": acme_hex, "name": "ok", "value": 1}, {"trace_id": "zz", "name": "q", "value": 1}]),
            "trace_id",
        ),
    ];
    for (body, field) in bad {
        let (status, problem) = api.post("/api/v1/scores", &editor, body).await;
        assert_eq!(
            (status, problem["parameter"].as_str()),
            (400, Some(field)),
            "{problem}"
        );
    }
    assert_eq!(
        api.post(
            "/api/v1/scores",
            &viewer,
            json!({"trace_id": acme_hex, "name": "q", "value": 1})
        )
        .await
        .0,
        403
    );

    // Five scores stored: the event's and the four written.
    wait_for("the written scores", WAIT, || async {
        (stored_scores(&pipeline).await.len() == 5).then_some(())
    })
    .await;
    let (_, trace) = api
        .get(&format!("/api/v1/traces/{acme_hex}"), &viewer)
        .await;
    let names = |scores: &Value| -> Vec<String> {
        let mut n: Vec<String> = scores
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&trace["scores"]), ["helpfulness", "tone"]);
    assert_eq!(
        names(&trace["roots"][0]["children"][0]["scores"]),
        ["relevance", "thumbs"]
    );
    let tone = trace["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tone")
        .unwrap();
    assert_eq!(
        (tone["label"].as_str(), tone["value"].as_f64()),
        (Some("polite"), Some(1.0)),
        "the config maps the label"
    );
    assert!(
        !tone["author"].as_str().unwrap_or_default().is_empty(),
        "the token's subject"
    );

    // The same score again (no id): replaced, not added.
    let (status, body) = api
        .post(
            "/api/v1/scores",
            &editor,
            json!({"trace_id": acme_hex, "name": "helpfulness", "value": 0.2}),
        )
        .await;
    assert_eq!(
        (status, body["ids"][0].as_str()),
        (202, Some(helpful_id.as_str()))
    );

    // The sink is killed; what the broker acknowledged meanwhile lands once.
    pipeline.sink.kill();
    let (status, _) = api
        .post(
            "/api/v1/scores",
            &editor,
            json!({"id": "late-1", "trace_id": acme_hex, "name": "late", "value": 3}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/scores/thumbs-1",
            &editor,
            None,
        )
        .await;
    assert_eq!(status, 202);
    // Let the killed member's session expire, then start it again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    pipeline.sink.start();
    pipeline.sink.wait_ready(WAIT).await;
    let expected = |scores: &[(String, Option<f64>, Option<String>, String)]| {
        scores.len() == 5
            && scores.iter().any(|s| s.0 == helpful_id && s.1 == Some(0.2))
            && scores.iter().any(|s| s.0 == "late-1")
            && !scores.iter().any(|s| s.0 == "thumbs-1")
    };
    wait_for("the writes made while the sink was down", WAIT, || async {
        expected(&stored_scores(&pipeline).await).then_some(())
    })
    .await;
    let before = stored_scores(&pipeline).await;
    let client = pipeline.db.client().await;
    let rows = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let all_rows = rows("SELECT count(*) FROM scores").await;

    // A replay with a fresh group reads both topics again: nothing changes.
    let replay = Service::consumer(
        "timescale",
        &[
            ("KAFKA_BROKERS", observatory_integration::kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", pipeline.topic.clone()),
            ("KAFKA_SCORES_TOPIC", pipeline.scores_topic.clone()),
            ("KAFKA_GROUP_ID", observatory_integration::unique("replay")),
            ("DATABASE_URL", pipeline.db.url.clone()),
            ("COPY_FLUSH_INTERVAL", "200ms".into()),
        ],
    );
    replay.wait_ready(WAIT).await;
    wait_for("the replay to read every score message", WAIT, || async {
        let seen = replay
            .metric("observatory_consumer_messages_total{sink=\"scores\"}")
            .await;
        (seen >= 7.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored_scores(&pipeline).await,
        before,
        "a replay changes no score"
    );
    assert_eq!(rows("SELECT count(*) FROM scores").await, all_rows);
    assert_eq!(
        rows("SELECT traces FROM session_summaries WHERE session_id = 'acme-s'").await,
        1
    );
    assert_eq!(
        rows("SELECT llm_calls FROM user_summaries WHERE user_id = 'acme-u'").await,
        1
    );

    // Reads: the list, filters, the summary; deleted scores never shown.
    let (status, page) = api.get("/api/v1/scores?limit=2", &viewer).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["scores"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = api
        .get(&format!("/api/v1/scores?limit=10&cursor={cursor}"), &viewer)
        .await;
    assert_eq!(rest["scores"].as_array().unwrap().len(), 3, "{rest}");
    assert!(rest["next_cursor"].is_null());
    let (_, otlp) = api.get("/api/v1/scores?source=otlp", &viewer).await;
    assert_eq!(otlp["scores"].as_array().unwrap().len(), 1);
    let (_, session) = api.get("/api/v1/scores?session_id=acme-s", &viewer).await;
    assert_eq!(
        session["scores"].as_array().unwrap().len(),
        5,
        "the session's own and its trace's: {session}"
    );
    let (_, summary) = api
        .get("/api/v1/scores/summary?group_by=model&bucket=1h", &viewer)
        .await;
    let tone = summary["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "tone")
        .unwrap();
    assert_eq!(tone["labels"]["polite"], 1, "{summary}");
    assert_eq!(tone["groups"][0]["group"], "gpt-4o");
    assert!(!tone["series"].as_array().unwrap().is_empty());

    // Isolation both ways: beta sees none of acme's scores and cannot delete them.
    let (_, theirs) = api.get("/api/v1/scores", &beta).await;
    assert_eq!(theirs["scores"].as_array().unwrap().len(), 0, "{theirs}");
    let (_, configs) = api.get("/api/v1/score-configs", &beta).await;
    assert_eq!(configs["configs"].as_array().unwrap().len(), 0);
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/scores/late-1",
            &beta,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, summary) = api.get("/api/v1/scores/summary", &beta).await;
    assert_eq!(summary["names"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_20_traces_is_one_transcript_in_order_and_users_add_up() {
    let pipeline = Pipeline::start(
        "key-acme=acme,key-beta=beta",
        &[("CAPTURE_CONTENT", "true".into())],
        WAIT,
    )
    .await;
    let base = now_ns() - 3_600_000 * MS;
    // Sent newest first, the first five twice (a client's retries).
    let mut order: Vec<usize> = (0..20).rev().collect();
    order.extend(0..5);
    for &n in &order {
        let user = if n % 2 == 0 { "u-even" } else { "u-odd" };
        let at = base + n as u64 * 60_000 * MS;
        export(
            &pipeline.collector,
            "key-acme",
            turn(
                trace_id(0xc3, n),
                at,
                "conversation-1",
                user,
                n,
                n == 7,
                None,
            ),
        )
        .await;
    }
    export(
        &pipeline.collector,
        "key-beta",
        turn(
            trace_id(0xd4, 0),
            base,
            "beta-conversation",
            "beta-user",
            0,
            false,
            None,
        ),
    )
    .await;
    pipeline.wait_for_spans(42, WAIT).await;
    let api = Api::start(&pipeline).await;
    let viewer = token("acme", "viewer", "1h");
    let beta = token("beta", "viewer", "1h");

    let (status, list) = api.get("/api/v1/sessions", &viewer).await;
    assert_eq!(status, 200, "{list}");
    let s = &list["sessions"][0];
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (
            s["session_id"].as_str(),
            s["traces"].as_i64(),
            s["llm_calls"].as_i64()
        ),
        (Some("conversation-1"), Some(20), Some(20))
    );
    assert_eq!(s["errors"], 1);
    assert_eq!(s["users"], json!(["u-even", "u-odd"]));
    let input: i64 = (0..20).map(|n| 100 + n).sum();
    assert_eq!(s["input_tokens"], input);

    let (status, t) = api.get("/api/v1/sessions/conversation-1", &viewer).await;
    assert_eq!(status, 200, "{t}");
    let turns = t["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 20);
    for (n, turn) in turns.iter().enumerate() {
        assert_eq!(
            turn["trace_id"],
            hex(&trace_id(0xc3, n)),
            "turn {n} in order"
        );
        let call = &turn["calls"][0];
        assert_eq!(call["input_tokens"], 100 + n as i64);
        assert!(call["cost_usd"].as_f64().unwrap() > 0.0);
        let text = call["messages"].to_string();
        assert!(
            text.contains(&format!("question {n}")) && text.contains(&format!("answer {n}")),
            "{text}"
        );
    }
    assert_eq!(turns[7]["has_error"], true);

    // Users: their totals are the sums of their calls, whatever the order and repeats.
    let (status, users) = api.get("/api/v1/users?sort=cost", &viewer).await;
    assert_eq!(status, 200, "{users}");
    let client = pipeline.db.client().await;
    for user in users["users"].as_array().unwrap() {
        let id = user["user_id"].as_str().unwrap();
        let row = client
            .query_one(
                "SELECT count(*), sum(input_tokens)::int8, sum(output_tokens)::int8, sum(cost_usd), count(*) FILTER (WHERE is_error)
                   FROM llm_calls WHERE tenant = 'acme' AND user_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(user["llm_calls"], row.get::<_, i64>(0), "{user}");
        assert_eq!(user["input_tokens"], row.get::<_, i64>(1));
        assert_eq!(user["output_tokens"], row.get::<_, i64>(2));
        assert!((user["cost_usd"].as_f64().unwrap() - row.get::<_, f64>(3)).abs() < 1e-9);
        assert_eq!(user["errors"], row.get::<_, i64>(4));
        assert_eq!(user["sessions"], 1);
        assert!(user["p95_latency_ms"].as_f64().unwrap() >= 300.0);
    }
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    let (status, detail) = api.get("/api/v1/users/u-odd", &viewer).await;
    assert_eq!(status, 200, "{detail}");
    let day_cost: f64 = detail["cost_by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(
        (day_cost - detail["cost_usd"].as_f64().unwrap()).abs() < 1e-9,
        "{detail}"
    );
    assert_eq!(detail["recent_sessions"][0]["session_id"], "conversation-1");

    // Isolation both ways, on every new read.
    for path in ["/api/v1/sessions/conversation-1", "/api/v1/users/u-odd"] {
        assert_eq!(api.get(path, &beta).await.0, 404, "{path} for beta");
    }
    for path in [
        "/api/v1/sessions/beta-conversation",
        "/api/v1/users/beta-user",
    ] {
        assert_eq!(api.get(path, &viewer).await.0, 404, "{path} for acme");
        assert_eq!(api.get(path, &beta).await.0, 200, "{path} for beta");
    }
    let (_, theirs) = api.get("/api/v1/sessions", &beta).await;
    assert_eq!(theirs["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["sessions"][0]["session_id"], "beta-conversation");
    let (_, theirs) = api.get("/api/v1/users", &beta).await;
    assert_eq!(theirs["users"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["users"][0]["user_id"], "beta-user");
}
