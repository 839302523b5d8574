//! End-to-end tests of the query API: data loaded through the pipeline
//! (collector, broker, PostgreSQL sink) for two tenants, `observatory-api`
//! as a process, real HTTP.

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::now_ns;
use observatory_integration::process::Service;
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_int, kv_str};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// A two-span trace: a root and a model call with tokens.
fn trace(id: u8) -> ExportTraceServiceRequest {
    let end = now_ns();
    let root = Span {
        trace_id: vec![id; 16],
        span_id: vec![1; 8],
        name: "agent run".into(),
        kind: 1,
        start_time_unix_nano: end - 2_000_000_000,
        end_time_unix_nano: end,
        ..Default::default()
    };
    let call = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: end - 1_500_000_000,
        end_time_unix_nano: end - 500_000_000,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_int("gen_ai.usage.input_tokens", 1000),
            kv_int("gen_ai.usage.output_tokens", 100),
        ],
        ..root.clone()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(observatory_schemas::otlp::resource::Resource {
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

async fn get(api: &Service, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{}{path}", api.admin));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_by_id_the_auth_matrix_and_tenant_isolation() {
    let pipeline = Pipeline::start("key-acme=acme,key-beta=beta", &[], WAIT).await;
    let (db, collector) = (&pipeline.db, &pipeline.collector);
    export(collector, "key-acme", trace(0xa1)).await;
    export(collector, "key-beta", trace(0xb2)).await;
    pipeline.wait_for_spans(4, WAIT).await;

    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
        ("JWT_LEEWAY", "0s".into()),
    ]);
    api.wait_ready(WAIT).await;
    let acme = "a1".repeat(16);
    let beta = "b2".repeat(16);
    let path = |id: &str| format!("/api/v1/traces/{id}");

    // The auth matrix.
    let viewer = token("acme", "viewer", "1h");
    let (status, body) = get(&api, &path(&acme), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["parameter"], "Authorization");
    let forged = {
        let mut t = viewer.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    assert_eq!(get(&api, &path(&acme), Some(&forged)).await.0, 401);
    assert_eq!(get(&api, &path(&acme), Some("not-a-jwt")).await.0, 401);
    let expired = token("acme", "viewer", "1s");
    tokio::time::sleep(Duration::from_secs(2)).await; // JWT_LEEWAY is 0 here
    assert_eq!(get(&api, &path(&acme), Some(&expired)).await.0, 401);

    // The right role reads its tenant's trace as a tree with its LLM call.
    let (status, body) = get(&api, &path(&acme), Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["span_count"], 2);
    let root = &body["roots"][0];
    assert_eq!(root["name"], "agent run");
    let call = &root["children"][0];
    assert_eq!(call["llm"]["model"], "gpt-4o");
    assert_eq!(call["llm"]["input_tokens"], 1000);
    assert!(call["llm"]["cost_usd"].as_f64().unwrap() > 0.0);

    // Tenant isolation: acme's token never sees beta's trace, and the
    // answer is the same as for a trace that does not exist.
    let (status, body) = get(&api, &path(&beta), Some(&viewer)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        get(&api, &path(&"cd".repeat(16)), Some(&viewer)).await.0,
        404
    );
    let beta_admin = token("beta", "admin", "1h");
    assert_eq!(get(&api, &path(&beta), Some(&beta_admin)).await.0, 200);
    assert_eq!(get(&api, &path(&acme), Some(&beta_admin)).await.0, 404);

    // Hostile ids get a 400 that names the parameter.
    for bad in ["zz", "1'%20OR%20'1'='1", &"f".repeat(40)] {
        let (status, body) = get(&api, &path(bad), Some(&viewer)).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["parameter"], "trace_id");
    }
    assert_eq!(
        get(&api, "/healthz", None).await.0,
        200,
        "health needs no token"
    );
}
