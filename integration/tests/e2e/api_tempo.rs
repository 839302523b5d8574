//! End-to-end tests of the Tempo side of the query API: traces of two
//! tenants loaded through the collector into PostgreSQL (timescale sink)
//! and into Tempo blocks in the stack's S3 server (tempo sink); then
//! `observatory-api` as a process answering `GET /api/v1/traces/{id}` from
//! PostgreSQL and, once the rows are deleted (retention), from the blocks;
//! and Grafana Tempo's HTTP API in Tempo's shapes, JSON and protobuf, with
//! search, tags, tenant isolation, auth and hostile input.

use observatory_consumer::tempo::store::BlockStore;
use observatory_integration::api::service_request;
use observatory_integration::api::{escape, export, token, Pipeline, SECRET};
use observatory_integration::bucket::{s3_endpoint, s3_env};
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, now_ns, unique, wait_for};
use observatory_schemas::otlp::trace::{ResourceSpans, Span, Status};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::testing::{kv_int, kv_str};
use prost::Message;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// `tempopb.Trace`, decoded independently of the API's own types.
#[derive(Clone, PartialEq, Message)]
struct TempoTrace {
    #[prost(message, repeated, tag = "1")]
    batches: Vec<ResourceSpans>,
}

/// `tempopb.TraceByIDResponse`.
#[derive(Clone, PartialEq, Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TempoTrace>,
    #[prost(int32, tag = "3")]
    status: i32,
    #[prost(string, tag = "4")]
    message: String,
}

/// A 2-second agent run with a model call that has tokens, an event and an error status.
fn agent_trace(id: u8, service: &str, end: u64) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: vec![id; 16],
        span_id: vec![1; 8],
        name: "agent run".into(),
        kind: 2,
        start_time_unix_nano: end - 2_000_000_000,
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
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.input_tokens", 1000),
            kv_int("gen_ai.usage.output_tokens", 100),
        ],
        events: vec![observatory_schemas::otlp::trace::span::Event {
            time_unix_nano: end - 1_000_000_000,
            name: "gen_ai.choice".into(),
            attributes: vec![kv_int("index", 0)],
            dropped_attributes_count: 0,
        }],
        status: Some(Status {
            code: 2,
            message: "rate limited".into(),
        }),
        ..root.clone()
    };
    service_request(service, vec![root, call])
}

/// A 100 ms single-span trace.
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
            ..Default::default()
        }],
    )
}

struct Answer {
    status: u16,
    content_type: String,
    body: bytes::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn get(api: &Service, path: &str, token: Option<&str>, accept: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{}{path}", api.admin));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if let Some(a) = accept {
        request = request.header("accept", a);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Answer {
        status,
        content_type,
        body: response.bytes().await.unwrap(),
    }
}

/// `/api/search?...` with the query string escaped.
fn search_path(params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect();
    format!("/api/search?{}", query.join("&"))
}

fn found_ids(answer: &Answer) -> Vec<String> {
    let body = answer.json();
    assert_eq!(answer.status, 200, "{body}");
    body["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("no traces in {body}"))
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect()
}

fn spans_of(batches: &[ResourceSpans]) -> Vec<&Span> {
    batches
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_api_postgres_then_blocks_search_tags_isolation() {
    // The pipeline: collector → broker → PostgreSQL sink and Tempo sink (S3).
    let pipeline = Pipeline::start("key-acme=acme,key-beta=beta", &[], WAIT).await;
    let (db, collector, topic) = (&pipeline.db, &pipeline.collector, &pipeline.topic);
    let bucket_url = format!(
        "s3://{}/{}",
        std::env::var("S3_BUCKET").unwrap_or_else(|_| "observatory".into()),
        unique("api")
    );
    let mut tempo_env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_GROUP_ID", unique("group")),
        ("TEMPO_BLOCK_MAX_AGE", "1s".into()),
        ("KAFKA_MAX_POLL_INTERVAL", "20s".into()),
        ("OBJECT_STORE_URL", bucket_url.clone()),
    ];
    tempo_env.extend(s3_env(&s3_endpoint()));
    let tempo_sink = Service::consumer("tempo", &tempo_env);
    tempo_sink.wait_ready(WAIT).await;

    let end = now_ns() - 5_000_000_000;
    export(collector, "key-acme", agent_trace(0xa1, "support-bot", end)).await;
    export(collector, "key-acme", health_trace(0xa2, end)).await;
    export(collector, "key-beta", agent_trace(0xb2, "beta-bot", end)).await;
    pipeline.wait_for_spans(5, WAIT).await;
    wait_for("every span in a block", WAIT, || async {
        let written = tempo_sink
            .metric("observatory_consumer_block_spans_written_total{sink=\"tempo\"}")
            .await;
        (written >= 5.0).then_some(())
    })
    .await;

    let mut api_env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("OBJECT_STORE_URL", bucket_url.clone()),
        ("BLOCKS_LIST_REFRESH", "1s".into()),
    ];
    api_env.extend(s3_env(&s3_endpoint()));
    let api = Service::api(&api_env);
    api.wait_ready(WAIT).await;
    let acme = token("acme", "viewer", "1h");
    let beta = token("beta", "viewer", "1h");
    let a1 = "a1".repeat(16);
    let a2 = "a2".repeat(16);
    let b2 = "b2".repeat(16);

    // ---- auth: every Tempo route needs a token, echo included ----
    for path in [
        "/api/echo".to_owned(),
        "/api/status/buildinfo".to_owned(),
        format!("/api/traces/{a1}"),
        format!("/api/v2/traces/{a1}"),
        "/api/search".to_owned(),
        "/api/search/tags".to_owned(),
        "/api/v2/search/tags".to_owned(),
        "/api/search/tag/service.name/values".to_owned(),
        "/api/v2/search/tag/resource.service.name/values".to_owned(),
    ] {
        let answer = get(&api, &path, None, None).await;
        assert_eq!(answer.status, 401, "{path} without a token");
        assert_eq!(answer.json()["parameter"], "Authorization", "{path}");
        assert_eq!(
            get(&api, &path, Some("not-a-jwt"), None).await.status,
            401,
            "{path}"
        );
    }
    let echo = get(&api, "/api/echo", Some(&acme), None).await;
    assert_eq!((echo.status, &echo.body[..]), (200, &b"echo"[..]));

    // ---- trace by id from PostgreSQL ----
    let from_pg = get(&api, &format!("/api/v1/traces/{a1}"), Some(&acme), None).await;
    assert_eq!(from_pg.status, 200);
    let from_pg = from_pg.json();
    assert_eq!(from_pg["span_count"], 2);
    assert_eq!(from_pg["roots"][0]["children"][0]["llm"]["model"], "gpt-4o");

    // Tempo v1 JSON: jsonpb, ids in base64, enums by name, u64 as strings.
    let v1 = get(&api, &format!("/api/traces/{a1}"), Some(&acme), None).await;
    assert_eq!(v1.status, 200);
    assert!(v1.content_type.starts_with("application/json"));
    let v1 = v1.json();
    let spans = &v1["batches"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 2, "{v1}");
    assert_eq!(spans[0]["traceId"], "oaGhoaGhoaGhoaGhoaGhoQ==");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_SERVER");
    assert!(spans[0]["startTimeUnixNano"].is_string());
    assert_eq!(spans[1]["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(
        v1["batches"][0]["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "service.name")
            .unwrap()["value"]["stringValue"],
        "support-bot"
    );
    // Tempo v1 protobuf (what Grafana asks for) decodes as tempopb.Trace.
    let pb = get(
        &api,
        &format!("/api/traces/{a1}"),
        Some(&acme),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!(pb.status, 200);
    assert_eq!(pb.content_type, "application/protobuf");
    let trace = TempoTrace::decode(&pb.body[..]).unwrap();
    let spans = spans_of(&trace.batches);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].trace_id, vec![0xa1; 16]);
    assert_eq!(spans[1].parent_span_id, vec![1; 8]);
    assert_eq!(spans[1].events[0].name, "gen_ai.choice");
    // v2, JSON and protobuf.
    let v2 = get(&api, &format!("/api/v2/traces/{a1}"), Some(&acme), None).await;
    assert_eq!(v2.status, 200);
    assert_eq!(
        v2.json()["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let pb = get(
        &api,
        &format!("/api/v2/traces/{a1}?start=1&end=4000000000"),
        Some(&acme),
        Some("application/protobuf"),
    )
    .await;
    let response = TraceByIdResponse::decode(&pb.body[..]).unwrap();
    assert_eq!(response.status, 0, "{}", response.message);
    assert_eq!(spans_of(&response.trace.unwrap().batches).len(), 2);

    // ---- tenant isolation on trace by id ----
    assert_eq!(
        get(&api, &format!("/api/traces/{b2}"), Some(&acme), None)
            .await
            .status,
        404
    );
    let v2_other = get(
        &api,
        &format!("/api/v2/traces/{b2}"),
        Some(&acme),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!(v2_other.status, 200, "v2 answers an empty trace, as Tempo");
    assert!(TraceByIdResponse::decode(&v2_other.body[..])
        .unwrap()
        .trace
        .unwrap()
        .batches
        .is_empty());
    assert_eq!(
        get(&api, &format!("/api/traces/{b2}"), Some(&beta), None)
            .await
            .status,
        200
    );

    // ---- search ----
    let start = ((end / 1_000_000_000) - 600).to_string();
    let stop = ((end / 1_000_000_000) + 600).to_string();
    let range = [("start", start.as_str()), ("end", stop.as_str())];
    let search = |q: &str| {
        let mut params = vec![("q", q)];
        params.extend(range);
        search_path(&params)
    };
    let answer = get(
        &api,
        &search(r#"{resource.service.name="support-bot"}"#),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(found_ids(&answer), [a1.as_str()]);
    let hit = &answer.json()["traces"][0];
    assert_eq!(hit["rootServiceName"], "support-bot");
    assert_eq!(hit["rootTraceName"], "agent run");
    assert_eq!(hit["durationMs"], 2000);
    assert!(hit["startTimeUnixNano"].is_string());
    assert_eq!(hit["spanSets"][0]["matched"], 2);
    assert_eq!(
        hit["spanSets"][0]["spans"][0]["attributes"][0]["value"]["stringValue"],
        "support-bot"
    );
    for (q, expected) in [
        (r#"{}"#, vec![a1.clone(), a2.clone()]),
        (r#"{name="health"}"#, vec![a2.clone()]),
        (r#"{duration>1s}"#, vec![a1.clone()]),
        (r#"{duration<200ms && kind=internal}"#, vec![a2.clone()]),
        (
            r#"{span.gen_ai.request.model=~"gpt-4.*"}"#,
            vec![a1.clone()],
        ),
        (r#"{span.gen_ai.usage.input_tokens>500}"#, vec![a1.clone()]),
        (r#"{status=error && name!="agent run"}"#, vec![a1.clone()]),
        (
            r#"{.deployment.environment="prod" && resource.service.name!="support-bot"}"#,
            vec![a2.clone()],
        ),
        (r#"{traceDuration>1s}"#, vec![a1.clone()]),
        // Several values of a trace-level field, as Grafana's builder writes them.
        (
            r#"{(rootServiceName="support-bot" || rootServiceName="other-svc")}"#,
            vec![a1.clone(), a2.clone()],
        ),
        (
            r#"{(rootServiceName="nope" || rootServiceName="other-svc") && name="health"}"#,
            vec![a2.clone()],
        ),
        (
            r#"{(rootServiceName="support-bot" || rootServiceName="nope") && name="health"}"#,
            vec![],
        ),
        // Grafana's id intrinsics (hex, any case).
        (r#"{span:id="0202020202020202"}"#, vec![a1.clone()]),
        (r#"{span:parentID="0101010101010101"}"#, vec![a1.clone()]),
        (
            r#"{trace:id="A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2"}"#,
            vec![a2.clone()],
        ),
        (r#"{trace:id="b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"}"#, vec![]),
        (r#"{name="x' OR '1'='1"}"#, vec![]),
        (r#"{resource.service.name="beta-bot"}"#, vec![]),
    ] {
        let mut ids = found_ids(&get(&api, &search(q), Some(&acme), None).await);
        ids.sort();
        assert_eq!(ids, expected, "{q}");
    }
    let mut params = vec![("minDuration", "1s")];
    params.extend(range);
    assert_eq!(
        found_ids(&get(&api, &search_path(&params), Some(&acme), None).await),
        [a1.as_str()]
    );
    let mut params = vec![("tags", "service.name=other")];
    params.extend(range);
    assert_eq!(
        found_ids(&get(&api, &search_path(&params), Some(&acme), None).await),
        [a2.as_str()]
    );
    assert_eq!(
        found_ids(
            &get(
                &api,
                &search(r#"{resource.service.name="beta-bot"}"#),
                Some(&beta),
                None
            )
            .await
        ),
        [b2.as_str()]
    );

    // ---- tags ----
    let tags = get(&api, "/api/v2/search/tags", Some(&acme), None)
        .await
        .json();
    let scope = |name: &str| -> Vec<String> {
        tags["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(scope("span").contains(&"gen_ai.request.model".to_owned()));
    assert!(scope("resource").contains(&"service.name".to_owned()));
    assert!(scope("intrinsic").contains(&"duration".to_owned()));
    let v1_tags = get(&api, "/api/search/tags", Some(&acme), None)
        .await
        .json();
    assert!(v1_tags["tagNames"]
        .as_array()
        .unwrap()
        .contains(&Value::from("deployment.environment")));
    let values = get(
        &api,
        "/api/v2/search/tag/resource.service.name/values",
        Some(&acme),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        serde_json::json!([
            {"type": "string", "value": "other-svc"},
            {"type": "string", "value": "support-bot"}
        ]),
        "only acme's services"
    );
    let values = get(
        &api,
        "/api/v2/search/tag/span.gen_ai.usage.input_tokens/values",
        Some(&acme),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        serde_json::json!([{"type": "int", "value": "1000"}])
    );
    let values = get(
        &api,
        &format!(
            "/api/v2/search/tag/name/values?q={}",
            escape(r#"{resource.service.name="other-svc"}"#)
        ),
        Some(&acme),
        None,
    )
    .await
    .json();
    assert_eq!(
        values["tagValues"],
        serde_json::json!([{"type": "string", "value": "health"}]),
        "narrowed by q"
    );
    let values = get(
        &api,
        "/api/search/tag/service.name/values",
        Some(&beta),
        None,
    )
    .await
    .json();
    assert_eq!(values["tagValues"], serde_json::json!(["beta-bot"]));

    // ---- hostile input: a 400 naming the parameter, and the service keeps serving ----
    for (path, parameter) in [
        ("/api/traces/zz".to_owned(), "trace_id"),
        (format!("/api/v2/traces/{}", "f".repeat(40)), "trace_id"),
        (format!("/api/traces/{a1}?start=x"), "start"),
        (format!("/api/traces/{a1}?start=10&end=5"), "start"),
        (format!("/api/traces/{a1}?mode=everything"), "mode"),
        (search("{name="), "q"),
        (search("{ name = \"a\" } | count() > 1"), "q"),
        (search("{span.x=~\"(\"}"), "q"),
        (search_path(&[("limit", "abc")]), "limit"),
        (search_path(&[("limit", "0")]), "limit"),
        (search_path(&[("start", "-1")]), "start"),
        (search_path(&[("start", "100"), ("end", "50")]), "start"),
        (search_path(&[("start", "1"), ("end", "4000000000")]), "end"),
        (search_path(&[("minDuration", "5xs")]), "minDuration"),
        (
            search_path(&[("minDuration", "2s"), ("maxDuration", "1s")]),
            "maxDuration",
        ),
        (search_path(&[("q", "{}"), ("tags", "a=b")]), "tags"),
        (search_path(&[("tags", "a=\"unterminated")]), "tags"),
        ("/api/v2/search/tags?scope=nope".to_owned(), "scope"),
        ("/api/v2/search/tag/bogus/values".to_owned(), "tag"),
        ("/api/v2/search/tag/%ZZ/values".to_owned(), "tag"),
    ] {
        let answer = get(&api, &path, Some(&acme), None).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.json());
        assert_eq!(answer.json()["parameter"], parameter, "{path}");
    }
    assert_eq!(get(&api, "/api/echo", Some(&acme), None).await.status, 200);

    // ---- retention: the rows go, the blocks answer ----
    let client = db.client().await;
    for table in ["spans", "llm_calls"] {
        for id in [[0xa1u8; 16], [0xb2; 16]] {
            client
                .execute(
                    &format!("DELETE FROM {table} WHERE trace_id = $1"),
                    &[&&id[..]],
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM spans WHERE trace_id IN ('\\xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1', '\\xb2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2')")
            .await,
        0
    );
    let from_blocks = get(&api, &format!("/api/v1/traces/{a1}"), Some(&acme), None).await;
    assert_eq!(from_blocks.status, 200, "{}", from_blocks.json());
    assert_eq!(
        from_blocks.json(),
        from_pg,
        "the same tree and LLM details from the blocks"
    );
    let pb = get(
        &api,
        &format!("/api/traces/{a1}"),
        Some(&acme),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!(pb.status, 200);
    let spans_from_blocks = TempoTrace::decode(&pb.body[..]).unwrap();
    let spans = spans_of(&spans_from_blocks.batches);
    assert_eq!(spans.len(), 2);
    assert!(spans
        .iter()
        .any(|s| s.name == "chat gpt-4o" && s.status.as_ref().map(|st| st.code) == Some(2)));
    // What Grafana's Tempo data source reads without checking (it
    // dereferences each span's status and each batch's scope, and drops the
    // spans of a resource without attributes) is there, as Tempo writes it,
    // also for spans sent without a status.
    assert!(spans.iter().all(|s| s.status.is_some()), "{spans:?}");
    for batch in &spans_from_blocks.batches {
        assert!(batch
            .resource
            .as_ref()
            .is_some_and(|r| !r.attributes.is_empty()));
        assert!(batch.scope_spans.iter().all(|ss| ss.scope.is_some()));
    }
    let v2 = get(&api, &format!("/api/v2/traces/{a1}"), Some(&acme), None).await;
    assert_eq!(
        v2.json()["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // A range that rules out every block finds nothing (Tempo prunes blocks by it).
    let pruned = get(
        &api,
        &format!("/api/v2/traces/{a1}?start=1&end=2"),
        Some(&acme),
        Some("application/protobuf"),
    )
    .await;
    assert!(TraceByIdResponse::decode(&pruned.body[..])
        .unwrap()
        .trace
        .unwrap()
        .batches
        .is_empty());

    // Tenant isolation on the blocks: each tenant reads its own folder.
    for path in [format!("/api/v1/traces/{b2}"), format!("/api/traces/{b2}")] {
        assert_eq!(
            get(&api, &path, Some(&acme), None).await.status,
            404,
            "{path}"
        );
        assert_eq!(
            get(&api, &path, Some(&beta), None).await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        get(&api, &format!("/api/v1/traces/{a1}"), Some(&beta), None)
            .await
            .status,
        404
    );
    let direct: Vec<(String, String)> = s3_env(&s3_endpoint())
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    let options: Vec<(&str, &str)> = direct
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bucket = BlockStore::open_with(&bucket_url, false, &options).unwrap();
    for (folder, mine, other) in [
        ("acme", [0xa1u8; 16], [0xb2u8; 16]),
        ("beta", [0xb2; 16], [0xa1; 16]),
    ] {
        let names = bucket.list(folder).await.unwrap();
        let datas: Vec<&String> = names
            .iter()
            .filter(|n| n.ends_with("/data.parquet"))
            .collect();
        assert!(!datas.is_empty(), "{folder} has blocks");
        let mut has_mine = false;
        for name in datas {
            let file = DataFile::open(bucket.get(name).await.unwrap()).unwrap();
            has_mine |= file.find(&mine).unwrap().is_some();
            assert!(
                file.find(&other).unwrap().is_none(),
                "{name} holds another tenant's trace"
            );
        }
        assert!(has_mine, "{folder}'s trace is in its folder");
    }
}
