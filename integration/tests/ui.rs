//! The web UI in a real browser (headless Chromium through chromedriver),
//! against the real pipeline: traces sent through the collector for two
//! tenants, stored by the PostgreSQL sink, served by `observatory-api`.
//!
//! Each page loads without console errors and shows what the API answers
//! (trace ids, models, tokens, cost); filters narrow the list; the waterfall
//! selects a span and names it in the URL; hostile text in attributes and
//! messages renders as text; a viewer of one tenant never sees another's
//! traces; a refused or expired token leads back to sign-in with a reason.
//! Screenshots of each page go to `UI_SCREENSHOTS_DIR` (default: the test's
//! temporary folder; `docs/ui/` holds the ones the README shows).

use observatory_integration::api::{export, token, Pipeline, SECRET};
use observatory_integration::now_ns;
use observatory_integration::process::Service;
use observatory_integration::webdriver::Browser;
use observatory_schemas::otlp::resource::Resource;
use observatory_schemas::otlp::trace::{status, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::testing::{kv_int, kv_str};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const PAGE: Duration = Duration::from_secs(20);

/// Scripts, images with handlers and `javascript:` links, as a hostile
/// client would send them in attributes and captured messages.
const HOSTILE: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"><a href=\"javascript:window.__pwned=3\">x</a>";

struct Call<'a> {
    service: &'a str,
    model: &'a str,
    input: i64,
    output: i64,
}

/// An agent trace: a root, a retrieval in another service, a model call
/// with captured messages, a tool call and a second model call.
fn agent_trace(id: u8, root_name: &str, call: Call, error: bool) -> ExportTraceServiceRequest {
    let end = now_ns() - 1_000_000_000;
    let ms = |n: u64| n * 1_000_000;
    let span = |sid: u8, parent: Option<u8>, name: &str, from: u64, to: u64| Span {
        trace_id: vec![id; 16],
        span_id: vec![sid; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: if parent.is_none() { 2 } else { 1 },
        start_time_unix_nano: end - ms(2400) + ms(from),
        end_time_unix_nano: end - ms(2400) + ms(to),
        ..Default::default()
    };
    let llm = |mut s: Span, input: i64, output: i64, messages: bool| {
        s.kind = 3;
        s.attributes = vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", call.model),
            kv_int("gen_ai.usage.input_tokens", input),
            kv_int("gen_ai.usage.output_tokens", output),
            kv_str("gen_ai.conversation.id", "conv-42"),
            kv_str("user.id", "user-7"),
        ];
        if messages {
            let input = json!([
                {"role": "system", "parts": [{"type": "text", "content": "You are a helpful travel agent."}]},
                {"role": "user", "parts": [{"type": "text", "content": format!("What is the weather in Paris? {HOSTILE}")}]}
            ]);
            let output = json!([{"role": "assistant", "finish_reason": "tool_call", "parts": [
                {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
            ]}]);
            s.attributes
                .push(kv_str("gen_ai.input.messages", input.to_string()));
            s.attributes
                .push(kv_str("gen_ai.output.messages", output.to_string()));
            s.attributes
                .push(kv_str("app.link", "javascript:window.__pwned=4"));
            s.attributes.push(kv_str("app.note", HOSTILE));
        }
        s
    };
    let mut tool = span(4, Some(1), "tool get_weather", 1300, 1700);
    if error {
        tool.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "weather service timed out".into(),
        });
    }
    let spans = vec![
        span(1, None, root_name, 0, 2400),
        span(2, Some(1), "retrieve documents", 50, 400),
        llm(
            span(3, Some(1), &format!("chat {}", call.model), 420, 1250),
            call.input,
            call.output,
            true,
        ),
        tool,
        llm(
            span(5, Some(1), &format!("chat {}", call.model), 1750, 2350),
            call.input / 2,
            call.output / 2,
            false,
        ),
    ];
    let (retrieval, rest): (Vec<Span>, Vec<Span>) =
        spans.into_iter().partition(|s| s.span_id[0] == 2);
    let resource = |service: &str| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", service),
                kv_str("deployment.environment.name", "production"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: rest,
                    ..Default::default()
                }],
                ..resource(call.service)
            },
            ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: retrieval,
                    ..Default::default()
                }],
                ..resource("vector-store")
            },
        ],
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var("UI_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui"));
    std::fs::create_dir_all(&dir).expect("a screenshots folder");
    dir
}

async fn shot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png)
        .expect("write the screenshot");
}

/// Fails on any console error or warning the page logged since the last check.
async fn no_console_errors(browser: &Browser, page: &str) {
    let entries = browser.console().await.expect("the console");
    let bad: Vec<_> = entries
        .iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(bad.is_empty(), "{page} logged: {bad:?}");
}

async fn api_get(api: &Service, path: &str, token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", api.admin))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(r.status(), 200, "{path}");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// The UI's own cost format (format.js `cost`).
fn ui_cost(usd: f64) -> String {
    if usd == 0.0 {
        "$0".into()
    } else if usd.abs() < 0.01 {
        format!("${usd:.5}")
    } else {
        format!("${usd:.2}")
    }
}

async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/#/signin")).await.unwrap();
    submit_token(browser, token).await;
    browser.wait("table.traces, p.empty", PAGE).await.unwrap();
}

/// Pastes `token` into the sign-in form on the page and submits it.
async fn submit_token(browser: &Browser, token: &str) {
    browser.fill("#token", token, PAGE).await.unwrap();
    browser
        .click_on("form.signin button[type=submit]", PAGE)
        .await
        .unwrap();
}

/// `t` with its signature changed (a character in the middle, so that the
/// bytes change, not only base64's padding bits).
fn forged(t: &str) -> String {
    let (body, sig) = t.rsplit_once('.').expect("a JWT");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
    format!("{body}.{}", sig.into_iter().collect::<String>())
}

async fn pwned(browser: &Browser) -> Value {
    browser
        .script(
            "return window.__pwned === undefined ? null : window.__pwned;",
            json!([]),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_real_browser_shows_what_the_api_answers_and_nothing_else() {
    // Content capture on: the chat view shows captured messages.
    let pipeline = Pipeline::start(
        "key-a=acme,key-b=beta",
        &[("CAPTURE_CONTENT", "true".into())],
        WAIT,
    )
    .await;
    let collector = &pipeline.collector;
    let traces = [
        (
            0xa1,
            "plan a trip",
            Call {
                service: "travel-agent",
                model: "gpt-4o",
                input: 1200,
                output: 300,
            },
            true,
        ),
        (
            0xa2,
            "answer billing question",
            Call {
                service: "billing-bot",
                model: "gpt-4o-mini",
                input: 800,
                output: 120,
            },
            false,
        ),
        (
            0xa3,
            "summarize ticket",
            Call {
                service: "support-bot",
                model: "gpt-4o",
                input: 4000,
                output: 500,
            },
            false,
        ),
    ];
    for (id, name, call, error) in traces {
        export(collector, "key-a", agent_trace(id, name, call, error)).await;
    }
    let secret = Call {
        service: "beta-service",
        model: "gpt-4o",
        input: 10,
        output: 1,
    };
    export(
        collector,
        "key-b",
        agent_trace(0xb1, "beta secret plan", secret, false),
    )
    .await;
    pipeline.wait_for_spans(20, WAIT).await;

    let gone = observatory_integration::free_addr();
    let api = Service::api(&[
        ("DATABASE_URL", pipeline.db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
        ("JWT_LEEWAY", "0s".into()),
        (
            "PIPELINE_METRICS",
            format!(
                "collector=http://{}/metrics,timescale=http://{}/metrics,tempo=http://{gone}/metrics",
                collector.admin, pipeline.sink.admin
            ),
        ),
        ("PIPELINE_TENANTS", "acme".into()),
    ]);
    api.wait_ready(WAIT).await;
    let base = format!("http://{}", api.admin);
    let acme = token("acme", "viewer", "1h");
    let beta = token("beta", "viewer", "1h");
    let browser = Browser::start(1440, 900).await.expect("headless Chromium");

    // Sign-in, then the trace list: one row per trace of acme, none of beta.
    browser.goto(&format!("{base}/")).await.unwrap();
    browser.wait("form.signin", PAGE).await.unwrap();
    shot(&browser, "signin").await;
    sign_in(&browser, &base, &acme).await;
    let list = browser
        .wait_text("table.traces", "plan a trip", PAGE)
        .await
        .unwrap();
    assert!(
        list.contains("answer billing question") && list.contains("summarize ticket"),
        "{list}"
    );
    assert!(
        !list.contains("beta secret"),
        "another tenant's trace: {list}"
    );
    let header = browser.text_of("#who").await.unwrap();
    assert!(
        header.contains("acme") && header.contains("viewer"),
        "{header}"
    );
    // Each row's tokens and cost are the API's.
    let page = api_get(&api, "/api/v1/traces?limit=50", &acme).await;
    let rows = browser.find_all("table.traces tbody tr").await.unwrap();
    assert_eq!(rows.len(), page["traces"].as_array().unwrap().len());
    for t in page["traces"].as_array().unwrap() {
        let id = t["trace_id"].as_str().unwrap();
        let text = browser
            .text_of(&format!("tr[data-trace-id='{id}']"))
            .await
            .unwrap();
        let tokens = t["tokens"].as_i64().unwrap();
        let tokens = if tokens >= 1000 {
            format!("{},{:03}", tokens / 1000, tokens % 1000)
        } else {
            tokens.to_string()
        };
        assert!(
            text.contains(&tokens),
            "{id}: tokens {tokens} not in {text}"
        );
        let cost = ui_cost(t["cost_usd"].as_f64().unwrap());
        assert!(text.contains(&cost), "{id}: cost {cost} not in {text}");
        assert_eq!(
            text.contains("error"),
            t["error"].as_bool().unwrap(),
            "{text}"
        );
    }
    no_console_errors(&browser, "the trace list").await;
    shot(&browser, "traces").await;

    // A filter narrows the list, through the form.
    browser
        .fill("input[name=service]", "billing-bot", PAGE)
        .await
        .unwrap();
    browser
        .click_on("form.filters button[type=submit]", PAGE)
        .await
        .unwrap();
    browser
        .wait_text("table.traces", "answer billing question", PAGE)
        .await
        .unwrap();
    let rows = browser.find_all("table.traces tbody tr").await.unwrap();
    assert_eq!(rows.len(), 1, "the service filter narrows the list");
    // Sorting by cost puts the costliest first.
    browser
        .goto(&format!("{base}/#/traces?sort=cost&order=desc"))
        .await
        .unwrap();
    browser
        .wait_text("table.traces", "summarize ticket", PAGE)
        .await
        .unwrap();
    let first = browser.text_of("table.traces tbody tr").await.unwrap();
    assert!(
        first.contains("summarize ticket"),
        "costliest first: {first}"
    );

    // One trace: the waterfall, a span selected by click, named in the URL.
    let trace_id = "a1".repeat(16);
    browser
        .goto(&format!("{base}/#/trace/{trace_id}"))
        .await
        .unwrap();
    browser.wait(".waterfall .span-row", PAGE).await.unwrap();
    let head = browser.text_of(".trace-head").await.unwrap();
    assert!(
        head.contains(&trace_id) && head.contains("plan a trip"),
        "{head}"
    );
    let rows = browser.find_all(".waterfall .span-row").await.unwrap();
    assert_eq!(rows.len(), 5, "every span of the trace");
    let llm_row = browser
        .wait(
            &format!(".span-row[data-span-id='{}']", "03".repeat(8)),
            PAGE,
        )
        .await
        .unwrap();
    browser.click(&llm_row).await.unwrap();
    let detail = browser
        .wait_text(".detail", "Model call", PAGE)
        .await
        .unwrap();
    let api_trace = api_get(&api, &format!("/api/v1/traces/{trace_id}"), &acme).await;
    let call = &api_trace["roots"][0]["children"][1]["llm"];
    assert_eq!(call["model"], "gpt-4o");
    assert!(
        detail.contains("gpt-4o") && detail.contains("1,200") && detail.contains("300"),
        "{detail}"
    );
    assert!(
        detail.contains(&ui_cost(call["cost_usd"].as_f64().unwrap())),
        "{detail}"
    );
    assert!(
        detail.contains("get_weather") && detail.contains("You are a helpful travel agent."),
        "the chat: {detail}"
    );
    // Hostile text shows as text and runs nothing.
    assert!(
        detail.contains("<script>window.__pwned=1</script>"),
        "{detail}"
    );
    assert!(detail.contains("javascript:window.__pwned=4"), "{detail}");
    assert_eq!(pwned(&browser).await, Value::Null, "a payload ran");
    let injected = browser
        .script(
            "return document.querySelectorAll('.detail img, .detail script, .detail a[href^=javascript]').length;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "markup from span data reached the page");
    let url = browser
        .script("return location.hash;", json!([]))
        .await
        .unwrap();
    assert!(
        url.as_str()
            .unwrap()
            .contains(&format!("span={}", "03".repeat(8))),
        "{url}"
    );
    // Keyboard: down selects the next span (the tool call, in error).
    browser.click_on(".waterfall", PAGE).await.unwrap();
    browser
        .script(
            "document.querySelector('.waterfall').dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowDown', bubbles: true}));",
            json!([]),
        )
        .await
        .unwrap();
    let detail = browser
        .wait_text(".detail", "tool get_weather", PAGE)
        .await
        .unwrap();
    assert!(detail.contains("weather service timed out"), "{detail}");
    no_console_errors(&browser, "the trace").await;
    // A deep link opens the same span.
    browser
        .goto(&format!(
            "{base}/#/trace/{trace_id}?span={}",
            "03".repeat(8)
        ))
        .await
        .unwrap();
    browser
        .wait_text(".detail", "Model call", PAGE)
        .await
        .unwrap();
    shot(&browser, "trace").await;

    // The dashboard: its totals are the costs API's.
    browser
        .goto(&format!("{base}/#/dashboard?range=1h"))
        .await
        .unwrap();
    let tiles = browser.wait_text(".tiles", "Cost", PAGE).await.unwrap();
    browser.wait("svg.chart", PAGE).await.unwrap();
    let to = observatory_schemas::civil::rfc3339_nanos((now_ns() + 60_000_000_000) as i64);
    let from = observatory_schemas::civil::rfc3339_nanos((now_ns() - 3_600_000_000_000) as i64);
    let costs = api_get(
        &api,
        &format!("/api/v1/llm/costs?from={from}&to={to}&group_by=model"),
        &acme,
    )
    .await;
    let total = costs["total"]["cost_usd"].as_f64().unwrap();
    assert!(tiles.contains(&ui_cost(total)), "{tiles} vs {total}");
    assert!(
        tiles.contains(&costs["total"]["calls"].to_string()),
        "{tiles}"
    );
    let top = browser.text_of("table.top").await.unwrap();
    assert!(
        top.contains("gpt-4o") && top.contains("gpt-4o-mini"),
        "{top}"
    );
    no_console_errors(&browser, "the dashboard").await;
    shot(&browser, "dashboard").await;

    // Pipeline health is for admins: no link for a viewer, and the API refuses.
    let health_link = browser.find_all("#nav a[data-page=health]").await.unwrap();
    let shown = browser
        .script(
            "return !document.querySelector('#nav a[data-page=health]').hidden;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        (health_link.len(), shown),
        (1, json!(false)),
        "a viewer sees no pipeline link"
    );
    browser.goto(&format!("{base}/#/health")).await.unwrap();
    browser
        .wait_text(".health", "did not load", PAGE)
        .await
        .unwrap();
    // The browser logs the refused call itself, and nothing else.
    let logged = browser.console().await.unwrap();
    assert!(
        logged
            .iter()
            .all(|(_, m)| m.contains("/api/v1/pipeline") && m.contains("403")),
        "{logged:?}"
    );
    // An admin sees each service, the collector's accepted spans, the sink's
    // lag per partition, and the service that does not answer as down.
    browser.click_on("#who button", PAGE).await.unwrap();
    sign_in(&browser, &base, &token("acme", "admin", "1h")).await;
    browser.goto(&format!("{base}/#/health")).await.unwrap();
    let health = browser.wait_text(".health", "Lag", PAGE).await.unwrap();
    assert!(
        health.contains("collector ✓ up") && health.contains("timescale ✓ up"),
        "{health}"
    );
    assert!(
        health.contains("tempo ✕ down") && health.contains("connect"),
        "{health}"
    );
    assert!(health.contains("Kafka\n✓ ready"), "{health}");
    assert!(
        health.contains(&pipeline.topic),
        "the lag names the topic: {health}"
    );
    // The second read gives rates.
    browser
        .wait_text(".health", "/s", Duration::from_secs(15))
        .await
        .unwrap();
    no_console_errors(&browser, "the pipeline page").await;
    shot(&browser, "pipeline").await;
    // It is every tenant's traffic together: an admin of another tenant than
    // PIPELINE_TENANTS names is refused.
    let other = reqwest::Client::new()
        .get(format!("{base}/api/v1/pipeline"))
        .bearer_auth(token("beta", "admin", "1h"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);

    // Tenant B sees its own trace only, and A's trace is not found.
    browser.click_on("#who button", PAGE).await.unwrap();
    browser
        .wait_text("form.signin", "You signed out", PAGE)
        .await
        .unwrap();
    sign_in(&browser, &base, &beta).await;
    let list = browser
        .wait_text("table.traces", "beta secret plan", PAGE)
        .await
        .unwrap();
    assert!(
        !list.contains("plan a trip") && !list.contains("billing"),
        "{list}"
    );
    browser
        .goto(&format!("{base}/#/trace/{trace_id}"))
        .await
        .unwrap();
    browser
        .wait_text("main", "No trace with this id for your tenant", PAGE)
        .await
        .unwrap();

    // A token the API refuses (another key) signs out with the API's reason;
    // an expired one is refused at sign-in.
    browser
        .script(
            "sessionStorage.setItem('observatory.token', arguments[0]); location.hash = '#/traces?x=' + Date.now();",
            json!([forged(&beta)]),
        )
        .await
        .unwrap();
    let refused = browser
        .wait_text("form.signin", "Signed out", PAGE)
        .await
        .unwrap();
    assert!(refused.contains("Paste a new token"), "{refused}");
    let expired = token("acme", "viewer", "1s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    submit_token(&browser, &expired).await;
    browser
        .wait_text("form.signin", "expired", PAGE)
        .await
        .unwrap();
    // The token never appears in the address bar.
    let url = browser
        .script("return location.href;", json!([]))
        .await
        .unwrap();
    assert!(!url.as_str().unwrap().contains(&expired[..20]), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_keeps_the_token_out_of_the_address_bar_and_the_history() {
    let db = observatory_integration::postgres::TestDb::create().await;
    let migrated = std::process::Command::new(observatory_integration::workspace_bin(
        "observatory-consumer",
    ))
    .arg("migrate")
    .env("DATABASE_URL", &db.url)
    .status()
    .expect("run observatory-consumer migrate");
    assert!(migrated.success());
    let api = Service::api(&[
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", SECRET.into()),
    ]);
    api.wait_ready(WAIT).await;
    let t = token("acme", "admin", "1h");
    let browser = Browser::start(1200, 800).await.expect("headless Chromium");
    browser
        .goto(&format!("http://{}/#token={t}", api.admin))
        .await
        .unwrap();
    browser.wait("table.traces, p.empty", PAGE).await.unwrap();
    let (href, length) = {
        let v = browser
            .script("return [location.href, history.length];", json!([]))
            .await
            .unwrap();
        (v[0].as_str().unwrap().to_owned(), v[1].clone())
    };
    assert!(
        !href.contains(&t[..20]),
        "the token stayed in the URL: {href}"
    );
    assert!(href.ends_with("#/traces"), "{href}");
    // The browser's start page and this page: the link's entry was replaced.
    assert_eq!(length, json!(2), "the link is not in the history");
    let empty = browser.text_of("main").await.unwrap();
    assert!(empty.contains("No trace matches"), "{empty}");
    no_console_errors(&browser, "an empty tenant's list").await;
}
