//! Security, end to end against the real broker, PostgreSQL, Redis and
//! object store: the rate limit follows the verified identity, tenant
//! names map one to one onto storage folders, JWT keys rotate without
//! downtime and their claims are pinned, ingest without keys is refused in
//! production and tenants have quotas, hashed attributes are keyed, the
//! pool sizes and default environment of the deployment guide are read,
//! and a scripted session leaves exactly the expected audit events.

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::bucket::local_bucket;
use observatory_integration::collector::Collector;
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::{free_addr, kafka_brokers, now_ns, unique, wait_for, workspace_bin};
use observatory_schemas::otlp::trace::{ResourceSpans, ScopeSpans, Span};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_int, kv_str};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

fn now_s() -> u64 {
    now_ns() / 1_000_000_000
}

/// A two-span trace with one model call; `extra` goes on the call.
fn trace(
    id: u8,
    extra: Vec<observatory_schemas::otlp::common::KeyValue>,
) -> ExportTraceServiceRequest {
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
    let mut attributes = vec![
        kv_str("gen_ai.operation.name", "chat"),
        kv_str("gen_ai.provider.name", "openai"),
        kv_str("gen_ai.request.model", "gpt-4o"),
        kv_int("gen_ai.usage.input_tokens", 1000),
        kv_int("gen_ai.usage.output_tokens", 100),
    ];
    attributes.extend(extra);
    let call = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        kind: 3,
        start_time_unix_nano: end - 1_500_000_000,
        end_time_unix_nano: end - 500_000_000,
        attributes,
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

/// An API on `db`, with `extra` settings.
fn api(db: &TestDb, extra: &[(&str, String)]) -> Service {
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        (
            "REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k, v.clone()));
    }
    Service::api(&env)
}

/// A GET with headers: status, headers, body.
async fn get(
    api: &Service,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new().get(format!("http://{}{path}", api.admin));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_follows_the_verified_identity_not_the_header_spelling() {
    let p = Pipeline::start("key=acme", &[], WAIT).await;
    let api = api(
        &p.db,
        &[
            ("RATE_LIMIT_PER_SECOND", "1".into()),
            ("RATE_LIMIT_BURST", "5".into()),
        ],
    );
    api.wait_ready(WAIT).await;
    let tenant = unique("rl");
    let token = token(&tenant, "viewer", "1h");
    let spellings = [
        format!("BEARER {token}"),
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("Bearer   {token}  "),
        format!("bEaReR {token}"),
    ];
    let started = Instant::now();
    let mut passed = 0;
    let mut limited = 0;
    for i in 0..30 {
        let auth = &spellings[i % spellings.len()];
        let (status, headers, body) = get(&api, "/api/v1/models", &[("authorization", auth)]).await;
        match status {
            200 => passed += 1,
            429 => {
                limited += 1;
                assert!(headers.contains_key("retry-after"), "{body}");
            }
            other => panic!("{auth:?}: {other} {body}"),
        }
        if i == 0 {
            assert_eq!(
                status, 200,
                "the scheme is case-insensitive: BEARER is accepted"
            );
        }
    }
    // The burst, plus what one per second refills meanwhile.
    let allowed = 5 + started.elapsed().as_secs() as i32 + 1;
    assert!(
        passed <= allowed,
        "{passed} of 30 passed, at most {allowed} may"
    );
    assert!(limited >= 30 - allowed);
    let metrics = get(&api, "/metrics", &[]).await.2;
    assert!(
        metrics.contains(&format!(
            "observatory_api_rate_limited_requests_total{{tenant=\"{tenant}\"}}"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_single_tenant_is_reserved_so_no_token_reads_the_default_folder() {
    // The default tenant's trace, in PostgreSQL and in the blocks.
    let bucket = local_bucket();
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let mut env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_GROUP_ID", unique("group")),
        ("TEMPO_BLOCK_MAX_AGE", "1s".to_owned()),
    ];
    env.extend(bucket.env.iter().cloned());
    let tempo = Service::consumer("tempo", &env);
    tempo.wait_ready(WAIT).await;
    let mut client = observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient::connect(
        format!("http://{}", collector.grpc),
    )
    .await
    .unwrap();
    client.export(trace(0x51, vec![])).await.unwrap();
    wait_for("the block", WAIT, || async {
        (tempo
            .metric("observatory_consumer_blocks_written_total")
            .await
            > 0.0)
            .then_some(())
    })
    .await;
    // The migrated, empty database: the API looks in the blocks.
    let migrated = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());
    let object_store = bucket
        .env
        .iter()
        .find(|(k, _)| *k == "OBJECT_STORE_URL")
        .unwrap()
        .1
        .clone();
    let api = api(&db, &[("OBJECT_STORE_URL", object_store)]);
    api.wait_ready(WAIT).await;
    let path = format!("/api/v1/traces/{}", "51".repeat(16));
    let default = token("default", "viewer", "1h");
    let (status, _, body) = get(
        &api,
        &path,
        &[("authorization", &format!("Bearer {default}"))],
    )
    .await;
    assert_eq!(
        status, 200,
        "the default tenant reads its trace from the blocks: {body}"
    );
    let squatter = token("single-tenant", "viewer", "1h");
    let (status, _, body) = get(
        &api,
        &path,
        &[("authorization", &format!("Bearer {squatter}"))],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("tenant"), "{body}");
    // The collector refuses the name as a tenant header.
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", collector.http))
        .header("content-type", "application/json")
        .header("x-scope-orgid", "single-tenant")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("reserved"));
}

/// `n` spans of trace `id` (one root, the rest its children), each with
/// `words` × 16 characters of text that does not compress.
fn payload_trace(id: [u8; 16], n: usize, words: usize, seed: &mut u64) -> ResourceSpans {
    let end = now_ns();
    let spans = (0..n)
        .map(|i| {
            let text: String = (0..words)
                .map(|_| {
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    format!("{:016x}", *seed)
                })
                .collect();
            Span {
                trace_id: id.to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                parent_span_id: if i == 0 {
                    vec![]
                } else {
                    1u64.to_be_bytes().to_vec()
                },
                name: format!("step {i}"),
                kind: 1,
                start_time_unix_nano: end - 1_000_000_000 + i as u64,
                end_time_unix_nano: end,
                attributes: vec![kv_str("app.payload", text)],
                ..Default::default()
            }
        })
        .collect();
    ResourceSpans {
        resource: Some(observatory_schemas::otlp::resource::Resource {
            attributes: vec![kv_str("service.name", "support-bot")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Trace by id from the blocks in the real S3 server: only byte ranges of
/// the data file are read (a fraction of it, counted in
/// `observatory_api_blocks_read_bytes_total`), the answer is capped at
/// `TRACE_MAX_SPANS` and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_from_the_blocks_reads_byte_ranges_and_is_capped() {
    let bucket =
        observatory_integration::bucket::s3_bucket(&observatory_integration::bucket::s3_endpoint());
    let db = TestDb::create().await;
    let topic = unique("spans");
    let collector = Collector::for_topic(&kafka_brokers(), &topic, WAIT).await;
    let mut env = vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", topic.clone()),
        ("KAFKA_GROUP_ID", unique("group")),
        ("TEMPO_BLOCK_MAX_AGE", "2s".to_owned()),
    ];
    env.extend(bucket.env.iter().cloned());
    let tempo = Service::consumer("tempo", &env);
    tempo.wait_ready(WAIT).await;
    let mut client = observatory_schemas::otlp::trace_service::trace_service_client::TraceServiceClient::connect(
        format!("http://{}", collector.grpc),
    )
    .await
    .unwrap();
    // A 300-span trace among 900 others that carry about 18 MB of text.
    let big = [0x77; 16];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    client
        .export(ExportTraceServiceRequest {
            resource_spans: vec![payload_trace(big, 300, 1, &mut seed)],
        })
        .await
        .unwrap();
    for batch in 0..30u8 {
        let resource_spans = (0..30u8)
            .map(|i| {
                let mut id = [batch; 16];
                id[15] = i;
                id[0] = 0x10 + batch;
                payload_trace(id, 5, 256, &mut seed)
            })
            .collect();
        client
            .export(ExportTraceServiceRequest { resource_spans })
            .await
            .unwrap();
    }
    let migrated = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());
    let mut settings = bucket.env.clone();
    settings.push(("TRACE_MAX_SPANS", "100".into()));
    settings.push(("BLOCKS_LIST_REFRESH", "1s".into()));
    settings.push(("BLOCKS_NOT_FOUND_TTL", "0s".into()));
    let api = api(&db, &settings);
    api.wait_ready(WAIT).await;
    let path = format!("/api/v1/traces/{}", "77".repeat(16));
    let bearer = format!("Bearer {}", token("default", "viewer", "1h"));
    let body = wait_for("the big trace in the blocks", WAIT, || async {
        let (status, _, body) = get(&api, &path, &[("authorization", &bearer)]).await;
        (status == 200).then_some(body)
    })
    .await;
    let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trace["truncated"], true, "300 spans, TRACE_MAX_SPANS=100");
    assert_eq!(trace["span_count"], 100);

    // The block that holds it, and what a lookup reads of it once the
    // footer and the bloom shard are known.
    let mut size = 0;
    for name in bucket.store.list("").await.unwrap() {
        if name.ends_with("/data.parquet") {
            let data = bucket.store.get(&name).await.unwrap();
            let file = observatory_schemas::tempo::read::DataFile::open(data.clone()).unwrap();
            if file.find(&big).unwrap().is_some() {
                size = data.len();
            }
        }
    }
    assert!(size > 1 << 20, "a block of {size} bytes holds the trace");
    let before = api.metric("observatory_api_blocks_read_bytes_total").await;
    let (status, _, _) = get(&api, &path, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    let read = api.metric("observatory_api_blocks_read_bytes_total").await - before;
    assert!(read > 0.0, "the lookup read the block");
    assert!(
        read * 3.0 < size as f64,
        "a lookup read {read} bytes of a {size}-byte data file"
    );
}

/// Base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 JWT signed with `secret`, naming key `kid`.
fn hs256(claims: serde_json::Value, secret: &[u8], kid: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let signing = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mac = observatory_consumer::redact::hmac_sha256(secret, signing.as_bytes());
    format!("{signing}.{}", b64url(&mac))
}

fn jwks(keys: &[(&str, &[u8])]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, secret)| serde_json::json!({"kty": "oct", "alg": "HS256", "kid": kid, "k": b64url(secret)}))
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_keys_rotate_without_downtime_and_issuer_audience_and_not_before_are_checked() {
    let db = TestDb::create().await;
    let migrated = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());
    let dir = std::env::temp_dir().join(unique("jwks"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.json");
    let (old, new): (&[u8], &[u8]) = (
        b"the old signing key, 32 bytes..",
        b"the new signing key, 32 bytes..",
    );
    std::fs::write(&file, jwks(&[("2026-11", old)])).unwrap();
    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        ("JWT_JWKS_FILE", file.display().to_string()),
        ("JWT_ISSUER", "https://idp.example".into()),
        ("JWT_AUDIENCE", "llm-observatory".into()),
    ]);
    api.wait_ready(WAIT).await;
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({
            "sub": "ann", "tenant": unique("jwt"), "role": "viewer", "exp": now_s() + 600,
            "iss": "https://idp.example", "aud": "llm-observatory"
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let status = |token: String| {
        let api = &api;
        async move {
            get(
                api,
                "/api/v1/models",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .0
        }
    };
    let before = hs256(claims(serde_json::json!({})), old, "2026-11");
    assert_eq!(status(before.clone()).await, 200);
    for bad in [
        serde_json::json!({"iss": "https://evil.example"}),
        serde_json::json!({"aud": "someone-else"}),
        serde_json::json!({"nbf": now_s() + 3600}),
    ] {
        assert_eq!(
            status(hs256(claims(bad.clone()), old, "2026-11")).await,
            401,
            "{bad}"
        );
    }
    // Step 1 of a rotation: publish the new key next to the old one. A
    // token of the new key is accepted at once.
    std::fs::write(&file, jwks(&[("2026-11", old), ("2026-12", new)])).unwrap();
    let after = hs256(claims(serde_json::json!({})), new, "2026-12");
    assert_eq!(status(after.clone()).await, 200);
    assert_eq!(status(before.clone()).await, 200, "old tokens still work");
    // Step 3: retire the old key; its tokens stop working within the refresh.
    std::fs::write(&file, jwks(&[("2026-12", new)])).unwrap();
    wait_for("the old key retired", Duration::from_secs(30), || {
        let before = before.clone();
        let status = &status;
        async move { (status(before).await == 401).then_some(()) }
    })
    .await;
    assert_eq!(status(after).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_in_production_needs_keys_and_tenants_over_their_quota_get_429() {
    let out = std::process::Command::new(workspace_bin("observatory-collector"))
        .env("ENVIRONMENT", "production")
        .env("COLLECTOR_GRPC_ADDR", free_addr().to_string())
        .env("COLLECTOR_HTTP_ADDR", free_addr().to_string())
        .env("COLLECTOR_ADMIN_ADDR", free_addr().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INGEST_API_KEYS") && stderr.contains("INGEST_ALLOW_ANONYMOUS"),
        "{stderr}"
    );

    let collector = Collector::spawn(&[
        ("KAFKA_BROKERS", kafka_brokers()),
        ("KAFKA_TRACES_TOPIC", unique("spans")),
        ("KAFKA_METRICS_TOPIC", unique("metrics")),
        ("KAFKA_LOGS_TOPIC", unique("logs")),
        ("ENVIRONMENT", "production".into()),
        ("INGEST_API_KEYS", "k-small=small,k-big=big".into()),
        // 100 spans at once, then 10 a second.
        ("INGEST_TENANT_SPANS_PER_SECOND", "10".into()),
        ("INGEST_TENANT_QUOTAS", "big=100000".into()),
        ("INGEST_QUOTA_BURST_SECONDS", "10".into()),
    ]);
    collector.wait_ready(WAIT).await;
    let spans = |n: usize| {
        let mut request = trace(0x61, vec![]);
        let template = request.resource_spans[0].scope_spans[0].spans[0].clone();
        request.resource_spans[0].scope_spans[0].spans = (0..n)
            .map(|i| Span {
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                ..template.clone()
            })
            .collect();
        prost::Message::encode_to_vec(&request)
    };
    let post = |key: &'static str, body: Vec<u8>| {
        let url = format!("http://{}/v1/traces", collector.http);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("x-api-key", key)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post("k-small", spans(80)).await.status().as_u16(), 200);
    let over = post("k-small", spans(80)).await;
    assert_eq!(over.status().as_u16(), 429);
    let retry: u32 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Another tenant is not held back.
    for _ in 0..3 {
        assert_eq!(post("k-big", spans(80)).await.status().as_u16(), 200);
    }
    assert_eq!(
        collector
            .metric("observatory_collector_refused_requests_total{signal=\"traces\",transport=\"http_protobuf\",reason=\"over_quota\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_attributes_are_keyed_by_secret_key_and_production_needs_it() {
    let key = "a long and random hashing key";
    let p = Pipeline::start(
        "key=acme",
        &[
            ("HASH_ATTRIBUTES", "user.id".into()),
            ("SECRET_KEY", key.into()),
            ("ENVIRONMENT", "production".into()),
        ],
        WAIT,
    )
    .await;
    export(
        &p.collector,
        "key",
        trace(0x71, vec![kv_str("user.id", "jane@example.com")]),
    )
    .await;
    p.wait_for_spans(2, WAIT).await;
    let stored: String =
        p.db.client()
            .await
            .query_one(
                "SELECT attributes->>'user.id' FROM spans WHERE attributes ? 'user.id'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    let mac = observatory_consumer::redact::hmac_sha256(key.as_bytes(), b"jane@example.com");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(stored, format!("hmac-sha256:{hex}"));
    // The call's environment: the resource names none, so ENVIRONMENT's.
    assert_eq!(
        p.db.count("SELECT count(*) FROM llm_calls WHERE environment = 'production'")
            .await,
        1
    );
    // Production without the key refuses to start, naming the setting.
    let out = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("timescale")
        .env("DATABASE_URL", &p.db.url)
        .env("HASH_ATTRIBUTES", "user.id")
        .env("ENVIRONMENT", "production")
        .env_remove("SECRET_KEY")
        .env("CONSUMER_ADMIN_ADDR", free_addr().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_db_pool_min_size_connections_open() {
    let db = TestDb::create().await;
    let migrated = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let _api = api(
        &db,
        &[
            ("DB_POOL_MIN_SIZE", "3".into()),
            ("DB_POOL_MAX_SIZE", "5".into()),
        ],
    );
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()");
    wait_for("three connections open", WAIT, || async {
        (db.count(&sql).await >= 3).then_some(())
    })
    .await;
}

/// The audit events among `lines`, by request id.
fn audit_events(lines: &[String]) -> BTreeMap<String, serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["log"] == "audit")
        .map(|v| (v["request_id"].as_str().unwrap_or_default().to_owned(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_session_leaves_exactly_the_expected_audit_events() {
    let p = Pipeline::start("key=acme", &[], WAIT).await;
    let audit_topic = unique("audit");
    let api = Service::api_capturing(&[
        ("DATABASE_URL", p.db.url.clone()),
        ("JWT_SECRET", SECRET.to_owned()),
        (
            "REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        ("RATE_LIMIT_PER_SECOND", "1".into()),
        ("RATE_LIMIT_BURST", "6".into()),
        ("AUDIT_KAFKA_TOPIC", audit_topic.clone()),
        ("KAFKA_BROKERS", kafka_brokers()),
    ]);
    api.wait_ready(WAIT).await;
    let tenant = unique("aud");
    let mint = |role: &str, sub: &str| {
        let out = std::process::Command::new(workspace_bin("observatory-api"))
            .args(["token", "--tenant", &tenant, "--role", role, "--sub", sub])
            .env("JWT_SECRET", SECRET)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let viewer = mint("viewer", "ann");
    let admin = mint("admin", "bob");
    // Another subject of the same tenant, for the rate limit.
    let flood_sub = "flood";
    let flood = mint("viewer", flood_sub);
    let bearer = |t: &str| format!("Bearer {t}");
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method,
                path: &str,
                id: &str,
                auth: Option<String>,
                extra: Option<(&'static str, String)>,
                body: Option<&'static str>| {
        let mut r = client
            .request(method, format!("http://{}{path}", api.admin))
            .header("x-request-id", id);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    use reqwest::Method;
    let trace_path = format!("/api/v1/traces/{}", "ab".repeat(16));
    let script: Vec<(&str, u16)> = vec![
        (
            "s1",
            send(
                Method::GET,
                "/api/v1/traces?limit=5&service=support-bot",
                "s1",
                Some(bearer(&viewer)),
                None,
                None,
            )
            .await,
        ),
        (
            "s2",
            send(Method::GET, &trace_path, "s2", None, None, None).await,
        ),
        (
            "s3",
            send(
                Method::GET,
                &trace_path,
                "s3",
                Some("Bearer not.a.token".into()),
                None,
                None,
            )
            .await,
        ),
        (
            "s4",
            send(
                Method::PUT,
                "/api/v1/budgets/tenant",
                "s4",
                Some(bearer(&viewer)),
                None,
                Some(r#"{"monthly_usd": 5}"#),
            )
            .await,
        ),
        (
            "s5",
            send(
                Method::PUT,
                "/api/v1/budgets/tenant",
                "s5",
                Some(bearer(&admin)),
                None,
                Some(r#"{"monthly_usd": 100}"#),
            )
            .await,
        ),
        (
            "s6",
            send(
                Method::PUT,
                "/api/v1/budgets/tenant",
                "s6",
                Some(bearer(&admin)),
                None,
                Some(r#"{"monthly_usd": 250}"#),
            )
            .await,
        ),
        (
            "s7",
            send(
                Method::DELETE,
                "/api/v1/budgets/tenant",
                "s7",
                Some(bearer(&admin)),
                None,
                None,
            )
            .await,
        ),
        (
            "s8",
            send(
                Method::GET,
                "/api/v1/models",
                "s8",
                Some(bearer(&viewer)),
                Some(("x-scope-orgid", "someone-else".into())),
                None,
            )
            .await,
        ),
        (
            "s9",
            send(Method::GET, "/healthz", "s9", None, None, None).await,
        ),
        (
            "s10",
            send(Method::GET, "/api/v1/openapi.json", "s10", None, None, None).await,
        ),
    ];
    let expected_status = [200, 401, 401, 403, 200, 200, 204, 403, 200, 200];
    for ((id, status), want) in script.iter().zip(expected_status) {
        assert_eq!(*status, want, "{id}");
    }
    // The flooding subject: a 429 once its burst of 6 is spent.
    let mut limited = Vec::new();
    for i in 0..12 {
        let id = format!("f{i}");
        let status = send(
            Method::GET,
            "/api/v1/models",
            &id,
            Some(bearer(&flood)),
            None,
            None,
        )
        .await;
        if status == 429 {
            limited.push(id);
        }
    }
    assert!(!limited.is_empty(), "the flood was limited");

    let events = wait_for("the audit events", WAIT, || async {
        let events = audit_events(&api.stdout_lines());
        (events.contains_key("s8") && events.contains_key(limited.last().unwrap()))
            .then_some(events)
    })
    .await;
    let session: Vec<&str> = events
        .keys()
        .filter(|k| k.starts_with('s'))
        .map(String::as_str)
        .collect();
    assert_eq!(
        session,
        ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"],
        "every API call audited once, health and the public document not"
    );
    let e = |id: &str| &events[id];
    assert_eq!(e("s1")["route"], "/api/v1/traces");
    assert_eq!(e("s1")["status"], 200);
    assert_eq!(e("s1")["subject"], "ann");
    assert_eq!(e("s1")["tenant"], tenant.as_str());
    assert_eq!(e("s1")["role"], "viewer");
    assert_eq!(e("s1")["params"]["limit"], "5");
    assert_eq!(e("s1")["params"]["service"], "support-bot");
    assert!(e("s1")["client"].as_str().unwrap().starts_with("127."));
    assert!(e("s1")["result_bytes"].as_u64().unwrap() > 0);
    assert_eq!(e("s2")["route"], "/api/v1/traces/{trace_id}");
    assert_eq!(e("s2")["params"]["trace_id"], "ab".repeat(16));
    assert_eq!(e("s2")["refusal"], "missing");
    assert!(e("s2")["subject"].is_null() && e("s2")["tenant"].is_null());
    assert_eq!(e("s3")["refusal"], "invalid");
    assert_eq!(e("s4")["refusal"], "forbidden");
    assert_eq!(
        e("s4")["subject"],
        serde_json::Value::Null,
        "not verified for this role"
    );
    assert_eq!(e("s5")["before"]["monthly_usd"], serde_json::Value::Null);
    assert_eq!(e("s5")["after"]["monthly_usd"], 100.0);
    assert_eq!(e("s6")["before"]["monthly_usd"], 100.0);
    assert_eq!(e("s6")["after"]["monthly_usd"], 250.0);
    assert_eq!(e("s7")["before"]["monthly_usd"], 250.0);
    assert_eq!(e("s7")["after"]["monthly_usd"], serde_json::Value::Null);
    assert_eq!(e("s7")["role"], "admin");
    assert_eq!(e("s7")["subject"], "bob");
    assert_eq!(e("s8")["refusal"], "cross_tenant");
    assert_eq!(e("s8")["status"], 403);
    for id in &limited {
        assert_eq!(events[id.as_str()]["refusal"], "rate_limited");
        assert_eq!(events[id.as_str()]["status"], 429);
        assert_eq!(events[id.as_str()]["subject"], flood_sub);
    }
    // No event carries a token.
    for line in api.stdout_lines() {
        for t in [&viewer, &admin, &flood] {
            assert!(
                !line.contains(t.as_str()),
                "a token in the audit log: {line}"
            );
        }
    }
    // The same events in Kafka.
    let brokers = kafka_brokers();
    let records = tokio::task::spawn_blocking(move || {
        observatory_integration::kafka::read_topic(&brokers, &audit_topic, WAIT, |r| {
            r.iter()
                .any(|r| String::from_utf8_lossy(&r.payload).contains("\"s8\""))
        })
    })
    .await
    .unwrap();
    let in_kafka: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    let from_kafka = audit_events(&in_kafka);
    for id in ["s1", "s2", "s5", "s8"] {
        assert_eq!(from_kafka[id]["status"], events[id]["status"], "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_audits_requests_refused_for_their_key() {
    let http = free_addr();
    let mut child = std::process::Command::new(workspace_bin("observatory-collector"))
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("KAFKA_TRACES_TOPIC", unique("spans"))
        .env("KAFKA_METRICS_TOPIC", unique("metrics"))
        .env("KAFKA_LOGS_TOPIC", unique("logs"))
        .env("INGEST_API_KEYS", "the-right-key=acme")
        .env("COLLECTOR_GRPC_ADDR", free_addr().to_string())
        .env("COLLECTOR_ADMIN_ADDR", free_addr().to_string())
        .env("COLLECTOR_HTTP_ADDR", http.to_string())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let status = wait_for("the collector answering", WAIT, || async {
        reqwest::Client::new()
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/json")
            .header("x-api-key", "a-wrong-key")
            .header("x-scope-orgid", "acme")
            .body("{}")
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await;
    assert_eq!(status, 401);
    let line = wait_for("the audit line", WAIT, || async {
        lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("\"log\":\"audit\""))
            .cloned()
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["component"], "collector");
    assert_eq!(event["refusal"], "unauthenticated");
    assert_eq!(event["transport"], "http_json");
    assert_eq!(event["tenant_header"], "acme");
    assert!(event["client"].as_str().unwrap().starts_with("127."));
    assert!(!line.contains("a-wrong-key"), "the key is never written");
}
