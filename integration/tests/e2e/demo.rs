//! The README's first command as a new user runs it: `integration/demo.sh`
//! (on the debug build, a short load), then every `curl` line it prints,
//! against the demo's own data. Each must answer 200, and the trace lists
//! must list traces: a line that times out on the demo's data is a bug.

use observatory_integration::workspace_bin;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// Stops what the demo started, even when the test fails.
struct StopDemo;

impl Drop for StopDemo {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("integration/demo.sh")
            .arg("stop")
            .current_dir(root())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_line_the_demo_prints_answers_200_on_its_data() {
    let bin_dir = workspace_bin("observatory-api")
        .parent()
        .expect("a folder")
        .to_owned();
    let _stop = StopDemo;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("integration/demo.sh")
            .arg("6")
            .env("DEMO_BIN_DIR", bin_dir)
            .env("DEMO_SETTLE_SECONDS", "3")
            // Fewer distinct requests than a real demo: a debug loadgen
            // builds them slowly, and the curl lines need no variety.
            .env("DEMO_DISTINCT", "64")
            .current_dir(root())
            .output()
            .expect("bash runs the demo")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout
        .lines()
        .find_map(|l| l.split_once("TOKEN=").map(|(_, t)| t.trim().to_owned()))
        .expect("the demo prints a token");
    let urls: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("curl -H "))
        .map(|l| {
            l.rsplit('\'')
                .nth(1)
                .expect("the URL is the quoted argument")
        })
        .collect();
    assert!(urls.len() >= 7, "the demo prints its curl lines: {stdout}");
    let http = reqwest::Client::new();
    for url in urls {
        assert!(!url.contains("..."), "a placeholder in {url}");
        let started = std::time::Instant::now();
        let response = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{url}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if url.contains("/api/v1/traces?sort=cost") || url.contains("/api/v1/traces?sort=duration")
        {
            let traces = json["traces"].as_array().expect("traces");
            assert_eq!(traces.len(), 5, "{url}: {body}");
            assert!(traces[0]["span_count"].as_i64() > Some(0), "{body}");
        }
        if url.contains("/api/v1/metrics/names") {
            let names = json["metrics"].as_array().expect("metrics");
            assert!(names.len() >= 5, "{url}: {body}");
        }
        if url.contains("/api/v1/logs?") {
            assert_eq!(json["records"].as_array().map(Vec::len), Some(5), "{body}");
        }
        if url.contains("source=metrics") {
            assert!(json["total"]["calls"].as_i64() > Some(0), "{url}: {body}");
            assert_eq!(json["signal"]["used"], "metrics", "{body}");
        }
        if url.contains("/api/search?") {
            assert!(
                !json["traces"].as_array().expect("traces").is_empty(),
                "{body}"
            );
        }
        println!("{url}: 200 in {:?}", started.elapsed());
    }

    // The scoring line: its body with a trace of the demo, as the editor.
    let post = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("curl -X POST "))
        .expect("the demo prints how to score a trace");
    let editor = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("EDITOR_TOKEN="))
        .expect("the demo prints an editor token");
    let body = post.split('\'').nth(1).expect("the body is quoted");
    let url = post.rsplit(' ').next().expect("the URL ends the line");
    let traces = http
        .get("http://127.0.0.1:8080/api/v1/traces?limit=1")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let traces: serde_json::Value = serde_json::from_slice(&traces).unwrap();
    let id = traces["traces"][0]["trace_id"].as_str().expect("a trace");
    let response = http
        .post(url)
        .bearer_auth(editor)
        .body(body.replace("<id>", id))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 202, "{post}: {}", response.text().await.unwrap());
}
