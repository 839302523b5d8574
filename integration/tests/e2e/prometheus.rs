//! End to end: Prometheus' HTTP API under `/api/prom` (what Grafana's
//! Prometheus data source calls), `observatory-api` as a process over a
//! migrated database seeded with known metric series and points in SQL, as
//! the PostgreSQL sink stores them, for two tenants.
//!
//! Checked against hand-computed values: a counter's rate (cumulative and
//! delta), `sum by` a label (dotted OpenTelemetry spelling too),
//! `histogram_quantile` over explicit and exponential histograms, scalar
//! arithmetic (`1+1`, what "Save & test" sends, by POST with a form body);
//! label names and values, series; a construct outside the subset, a bad
//! step and a bad time are 400s naming what was wrong; the other tenant's
//! token (and an `X-Scope-OrgID` naming another tenant) sees nothing.

use observatory_integration::api::{escape, token, SECRET};
use observatory_integration::postgres::TestDb;
use observatory_integration::process::Service;
use observatory_integration::workspace_bin;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(90);
const MIN: i64 = 60;

/// The series: id, tenant, name, kind, temporality, monotonic, unit,
/// service, resource id, attributes, bounds.
const SERIES: &str = r#"
INSERT INTO resources (tenant, id, attributes) VALUES
  ('acme', 1, '{"service.name": "chat", "service.namespace": "shop", "service.instance.id": "pod-1"}'),
  ('acme', 2, '{"service.name": "batch"}'),
  ('beta', 3, '{"service.name": "beta-svc"}');
INSERT INTO metric_series (series_id, tenant, name, kind, temporality, monotonic, unit, description,
                           service, scope_name, resource_id, attributes, bounds, first_seen, last_seen)
SELECT id, tenant, name, kind, temporality, monotonic, unit, '', service, 'test', resource_id,
       attributes::jsonb, bounds, now(), now()
  FROM (VALUES
  (1, 'acme', 'gen_ai.client.requests', 2::int2, 2::int2, true, '{request}', 'chat', 1::int8, '{"gen_ai.system": "openai"}', NULL::float8[]),
  (2, 'acme', 'gen_ai.client.requests', 2, 2, true, '{request}', 'chat', 1, '{"gen_ai.system": "anthropic"}', NULL),
  (3, 'acme', 'gen_ai.client.requests', 2, 2, true, '{request}', 'batch', 2, '{"gen_ai.system": "openai"}', NULL),
  (4, 'acme', 'gen_ai.client.cost', 2, 1, true, 'USD', 'chat', 1, '{}', NULL),
  (5, 'acme', 'gen_ai.client.operation.duration', 3, 2, false, 's', 'chat', 1, '{}', '{1, 2, 4}'),
  (6, 'acme', 'gen_ai.client.operation.duration', 3, 2, false, 's', 'batch', 2, '{}', '{1, 2, 4}'),
  (7, 'acme', 'gen_ai.client.token.usage', 4, 2, false, '{token}', 'chat', 1, '{"gen_ai.token.type": "input"}', NULL),
  (8, 'acme', 'queue.depth', 1, 0, false, '', 'batch', 2, '{"queue": "jobs"}', NULL),
  (9, 'beta', 'beta.only', 2, 2, true, '', 'beta-svc', 3, '{"beta.label": "b"}', NULL)
  ) AS s(id, tenant, name, kind, temporality, monotonic, unit, service, resource_id, attributes, bounds);
"#;

/// One point a minute from `$1` for 31 minutes: counters rising 60, 120
/// and 30 a minute; a delta counter of 5 a minute; explicit histograms
/// adding [1, 2, 1, 0] a minute (bounds 1, 2, 4); an exponential one
/// adding 2 in (8, 16] and 2 in (16, 32] a minute (scale 0, offset 3); a
/// gauge; beta's counter.
const POINTS: &str = r#"
INSERT INTO metric_points (series_id, time, start_time, value)
SELECT s.id, $1::timestamptz + i * interval '1 minute', $1::timestamptz - interval '1 hour', s.base + s.per * i
  FROM generate_series(0, 30) i,
       (VALUES (1, 1000.0::float8, 60.0::float8), (2, 1000, 120), (3, 5000, 30), (8, 7, 0), (9, 1, 60)) AS s(id, base, per);
INSERT INTO metric_points (series_id, time, start_time, value)
SELECT 4, $1::timestamptz + i * interval '1 minute', $1::timestamptz + (i - 1) * interval '1 minute', 5
  FROM generate_series(0, 30) i;
INSERT INTO metric_points (series_id, time, start_time, count, sum, buckets)
SELECT s.id, $1::timestamptz + i * interval '1 minute', $1::timestamptz - interval '1 hour',
       4 * i, 6.5 * i, ARRAY[i, 2 * i, i, 0]::int8[]
  FROM generate_series(0, 30) i, (VALUES (5), (6)) AS s(id);
INSERT INTO metric_points (series_id, time, start_time, count, sum, buckets, exp_scale, exp_offset, exp_zero_count)
SELECT 7, $1::timestamptz + i * interval '1 minute', $1::timestamptz - interval '1 hour',
       4 * i, 80.0 * i, ARRAY[2 * i, 2 * i]::int8[], 0, 3, 0
  FROM generate_series(0, 30) i;
"#;

struct Api {
    service: Service,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("http://{}{path}", self.service.admin))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}")),
        )
    }

    async fn post(&self, path: &str, token: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect();
        let response = self
            .http
            .post(format!("http://{}{path}", self.service.admin))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}")),
        )
    }

    /// A successful answer's `data`.
    async fn data(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.get(path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }
}

fn range(query: &str, start: i64, end: i64, step: &str) -> String {
    format!(
        "/api/prom/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
        escape(query)
    )
}

/// Each series' labels and values (as floats), sorted by labels.
fn matrix(data: &Value) -> Vec<(Value, Vec<(i64, f64)>)> {
    assert_eq!(data["resultType"], "matrix", "{data}");
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap() as i64,
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (s["metric"].clone(), values)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

/// Every value of the one series of `data` is `want`.
fn all_equal(data: &Value, want: f64, points: usize) {
    let m = matrix(data);
    assert_eq!(m.len(), 1, "{data}");
    assert_eq!(m[0].1.len(), points, "{data}");
    assert!(
        m[0].1.iter().all(|(_, v)| close(*v, want)),
        "{data}: want {want}"
    );
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_charts_the_stored_metrics_through_the_prometheus_api() {
    let db = TestDb::create().await;
    let migrated = std::process::Command::new(workspace_bin("observatory-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());
    // The sink makes daily partitions; one default partition holds the seed.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = (now - 3600) / 60 * 60;
    let t0_time = UNIX_EPOCH + Duration::from_secs(t0 as u64);
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE metric_points_test PARTITION OF metric_points DEFAULT;")
        .await
        .unwrap();
    client.batch_execute(SERIES).await.unwrap();
    for statement in POINTS.split(';').filter(|s| !s.trim().is_empty()) {
        client.execute(statement, &[&t0_time]).await.unwrap();
    }

    let api = Api {
        service: Service::api(&[
            ("DATABASE_URL", db.url.clone()),
            ("JWT_SECRET", SECRET.into()),
            (
                "REDIS_URL",
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            ("RATE_LIMIT_PER_SECOND", "100000".into()),
            ("RATE_LIMIT_BURST", "100000".into()),
        ]),
        http: reqwest::Client::new(),
    };
    api.service.wait_ready(WAIT).await;
    let acme = token("acme", "viewer", "1h");
    let beta = token("beta", "viewer", "1h");
    let (from, to) = (t0 + 10 * MIN, t0 + 20 * MIN);

    // --- Grafana's probes.
    let info = api.data("/api/prom/api/v1/status/buildinfo", &acme).await;
    assert_eq!(info["version"], "2.45.0");
    let (status, body) = api
        .post(
            "/api/prom/api/v1/query",
            &acme,
            &[("query", "1+1"), ("time", &to.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [to, "2"]}})
    );

    // --- A counter's rate: 60, 120 and 30 a minute are 1, 2 and 0.5 a second.
    let data = api
        .data(
            &range("rate(gen_ai_client_requests_total[5m])", from, to, "60"),
            &acme,
        )
        .await;
    let m = matrix(&data);
    let got: Vec<(Value, f64)> = m
        .iter()
        .map(|(labels, values)| {
            assert_eq!(values.len(), 11, "{data}");
            assert_eq!(values[0].0, from);
            assert!(values.iter().all(|(_, v)| close(*v, values[0].1)), "{data}");
            (labels.clone(), values[0].1)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                json!({"gen_ai_system": "anthropic", "instance": "pod-1", "job": "shop/chat", "service_name": "chat"}),
                2.0
            ),
            (
                json!({"gen_ai_system": "openai", "instance": "pod-1", "job": "shop/chat", "service_name": "chat"}),
                1.0
            ),
            (
                json!({"gen_ai_system": "openai", "job": "batch", "service_name": "batch"}),
                0.5
            ),
        ]
    );
    // Sum by a label, also spelled as the attribute and by POST (Grafana's default).
    for query in [
        "sum by (gen_ai_system) (rate(gen_ai_client_requests_total[5m]))",
        r#"sum(rate({"gen_ai.client.requests"}[5m])) by ("gen_ai.system")"#,
    ] {
        let (status, body) = api
            .post(
                "/api/prom/api/v1/query_range",
                &acme,
                &[
                    ("query", query),
                    ("start", &from.to_string()),
                    ("end", &to.to_string()),
                    ("step", "1m"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        let m = matrix(&body["data"]);
        let sums: Vec<(Value, f64)> = m.iter().map(|(l, v)| (l.clone(), v[5].1)).collect();
        assert_eq!(
            sums,
            vec![
                (json!({"gen_ai_system": "anthropic"}), 2.0),
                (json!({"gen_ai_system": "openai"}), 1.5)
            ],
            "{query}"
        );
    }
    // Arithmetic with a number, a matcher on the job.
    all_equal(
        &api.data(
            &range(
                r#"sum(rate(gen_ai_client_requests_total{job="batch"}[5m])) * 60"#,
                from,
                to,
                "300",
            ),
            &acme,
        )
        .await,
        30.0,
        3,
    );
    // A delta counter: 5 a minute, 25 in 5 minutes, exactly.
    all_equal(
        &api.data(
            &range(
                "increase(gen_ai_client_cost_USD_total[5m])",
                from,
                to,
                "120",
            ),
            &acme,
        )
        .await,
        25.0,
        6,
    );
    // An instant selector keeps the name; RFC 3339 times work.
    let at = observatory_schemas::civil::rfc3339_nanos(from * 1_000_000_000);
    let data = api
        .data(
            &format!(
                "/api/prom/api/v1/query?query={}&time={}",
                escape(r#"gen_ai_client_requests_total{gen_ai_system="anthropic"}"#),
                escape(&at)
            ),
            &acme,
        )
        .await;
    assert_eq!(data["resultType"], "vector");
    assert_eq!(
        data["result"],
        json!([{"metric": {"__name__": "gen_ai_client_requests_total", "gen_ai_system": "anthropic",
                           "instance": "pod-1", "job": "shop/chat", "service_name": "chat"},
                "value": [from, "2200"]}])
    );

    // --- Histograms. Explicit, bounds 1, 2, 4, adding [1, 2, 1, 0] a
    // minute: the median is in (1, 2], half way: 1.5; the 95th at rank
    // 3.8 of 4, in (2, 4], 0.8 of the way: 3.6.
    for (q, want) in [(0.5, 1.5), (0.95, 3.6)] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[5m])))"
        );
        all_equal(
            &api.data(&range(&query, from, to, "60"), &acme).await,
            want,
            11,
        );
    }
    // Per job (two series, the same shape), from the OpenTelemetry name.
    let query = r#"histogram_quantile(0.5, sum by (le, job) (rate({"gen_ai.client.operation.duration_bucket"}[5m])))"#;
    let m = matrix(&api.data(&range(query, from, to, "300"), &acme).await);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].0, json!({"job": "batch"}));
    assert!(m.iter().all(|(_, v)| v.iter().all(|(_, v)| close(*v, 1.5))));
    // Exponential, scale 0 (base 2), 2 in (8, 16] and 2 in (16, 32] a
    // minute: the median is 16, the 75th 24.
    for (q, want) in [(0.5, 16.0), (0.75, 24.0)] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (rate(gen_ai_client_token_usage_bucket[5m])))"
        );
        all_equal(
            &api.data(&range(&query, from, to, "60"), &acme).await,
            want,
            11,
        );
    }
    // _count and _sum are counters: 4 and 6.5 a minute per series.
    all_equal(
        &api.data(
            &range(
                "sum(rate(gen_ai_client_operation_duration_seconds_count[5m]))",
                from,
                to,
                "600",
            ),
            &acme,
        )
        .await,
        8.0 / 60.0,
        2,
    );

    // --- Labels, label values, series.
    let labels = strings(&api.data("/api/prom/api/v1/labels", &acme).await);
    for label in [
        "__name__",
        "gen_ai_system",
        "gen_ai_token_type",
        "instance",
        "job",
        "le",
        "queue",
        "service_name",
    ] {
        assert!(labels.contains(&label.to_owned()), "{label}: {labels:?}");
    }
    assert!(!labels.contains(&"beta_label".to_owned()), "{labels:?}");
    let names = strings(
        &api.data("/api/prom/api/v1/label/__name__/values", &acme)
            .await,
    );
    assert_eq!(
        names,
        vec![
            "gen_ai_client_cost_USD_total",
            "gen_ai_client_operation_duration_seconds_bucket",
            "gen_ai_client_operation_duration_seconds_count",
            "gen_ai_client_operation_duration_seconds_sum",
            "gen_ai_client_requests_total",
            "gen_ai_client_token_usage_bucket",
            "gen_ai_client_token_usage_count",
            "gen_ai_client_token_usage_sum",
            "queue_depth",
        ]
    );
    assert_eq!(
        strings(&api.data("/api/prom/api/v1/label/job/values", &acme).await),
        vec!["batch", "shop/chat"]
    );
    // An attribute key as the label: read as Prometheus spells it.
    assert_eq!(
        strings(
            &api.data("/api/prom/api/v1/label/gen_ai.system/values", &acme)
                .await
        ),
        vec!["anthropic", "openai"]
    );
    assert_eq!(
        strings(
            &api.data(
                &format!(
                    "/api/prom/api/v1/label/gen_ai_system/values?match[]={}",
                    escape(r#"gen_ai_client_requests_total{job="batch"}"#)
                ),
                &acme
            )
            .await
        ),
        vec!["openai"]
    );
    let series = api
        .data(
            &format!(
                "/api/prom/api/v1/series?match[]={}&start={from}&end={to}",
                escape(r#"gen_ai_client_operation_duration_seconds_bucket{job="batch"}"#)
            ),
            &acme,
        )
        .await;
    let les: Vec<String> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["le"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(les, vec!["+Inf", "1", "2", "4"], "{series}");
    let series = api
        .data(
            &format!(
                "/api/prom/api/v1/series?match[]=gen_ai_client_token_usage_bucket&start={from}&end={to}"
            ),
            &acme,
        )
        .await;
    let les: Vec<String> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["le"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(les, vec!["+Inf", "16", "32", "8"], "{series}");

    // --- Refusals: 400 in Prometheus' shape, naming what was wrong.
    for (query, construct) in [
        (
            "topk(3, gen_ai_client_requests_total)",
            "the aggregation \"topk\"",
        ),
        (
            "gen_ai_client_requests_total / queue_depth",
            "between two vectors",
        ),
        (
            "gen_ai_client_requests_total offset 5m",
            "the offset modifier",
        ),
        (
            "irate(gen_ai_client_requests_total[5m])",
            "the function \"irate\"",
        ),
    ] {
        let (status, body) = api.get(&range(query, from, to, "60"), &acme).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "bad_data");
        assert_eq!(body["parameter"], "query");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(construct), "{query}: {error}");
        assert!(error.contains("supported subset"), "{query}: {error}");
    }
    for (path, parameter) in [
        (range("queue_depth", from, to, "0"), "step"),
        (range("queue_depth", from, to, "fast"), "step"),
        (range("queue_depth", from, from + 20_000, "1"), "step"),
        (range("queue_depth", to, from, "60"), "start"),
        (
            format!(
                "/api/prom/api/v1/query_range?query=queue_depth&start=yesterday&end={to}&step=60"
            ),
            "start",
        ),
        (
            "/api/prom/api/v1/query?query=queue_depth&time=noon".to_owned(),
            "time",
        ),
        ("/api/prom/api/v1/series".to_owned(), "match[]"),
    ] {
        let (status, body) = api.get(&path, &acme).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("invalid parameter \"{parameter}\"")),
            "{body}"
        );
    }

    // --- The other tenant sees none of it (same requests: same cache keys).
    let data = api
        .data(
            &range("rate(gen_ai_client_requests_total[5m])", from, to, "60"),
            &beta,
        )
        .await;
    assert_eq!(data["result"], json!([]));
    let data = api
        .data(
            &range(r#"sum(rate({__name__=~".+"}[5m]))"#, from, to, "60"),
            &beta,
        )
        .await;
    all_equal(&data, 1.0, 11);
    let labels = strings(&api.data("/api/prom/api/v1/labels", &beta).await);
    assert_eq!(
        labels,
        vec!["__name__", "beta_label", "job", "service_name"]
    );
    assert_eq!(
        strings(
            &api.data("/api/prom/api/v1/label/__name__/values", &beta)
                .await
        ),
        vec!["beta_only_total"]
    );
    assert_eq!(
        strings(&api.data("/api/prom/api/v1/label/job/values", &beta).await),
        vec!["beta-svc"]
    );
    let series = api
        .data(
            "/api/prom/api/v1/series?match[]=gen_ai_client_requests_total",
            &beta,
        )
        .await;
    assert_eq!(series, json!([]));
    // Naming acme's tenant with beta's token is refused.
    let response = api
        .http
        .get(format!(
            "http://{}/api/prom/api/v1/labels",
            api.service.admin
        ))
        .header("authorization", format!("Bearer {beta}"))
        .header("x-scope-orgid", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // No token: 401.
    let response = api
        .http
        .get(format!(
            "http://{}{}",
            api.service.admin,
            range("queue_depth", from, to, "60")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}
