//! The web UI benchmark (BENCHMARKS.md): headless Chromium opens each page
//! as a fresh load and reads, from the page's own Performance timeline, when
//! it drew its data (`observatory:rendered:<page>`, milliseconds since the
//! navigation started: assets, API calls and drawing included).
//!
//! ```text
//! uibench --api http://127.0.0.1:18080 --token T --trace <id> [--loads 10]
//! ```
//! Pages: the trace list (last 24 hours), the trace `--trace` (the API
//! benchmark's 5 000-span trace), the dashboard of 24 hours. Prints p50 and
//! max per page and the size of the page and its assets.

use anyhow::{bail, Context, Result};
use clap::Parser;
use observatory_integration::webdriver::Browser;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The API's base URL.
    #[arg(long, env = "UIBENCH_API")]
    api: String,
    /// A viewer token of the benchmark's tenant.
    #[arg(long, env = "UIBENCH_TOKEN")]
    token: String,
    /// The trace to open.
    #[arg(long, env = "UIBENCH_TRACE")]
    trace: String,
    /// Fresh loads per page.
    #[arg(long, env = "UIBENCH_LOADS", default_value_t = 10)]
    loads: usize,
}

async fn load(browser: &Browser, url: &str, page: &str) -> Result<f64> {
    browser.goto("about:blank").await?;
    browser.goto(url).await?;
    let mark = format!("observatory:rendered:{page}");
    let started = Instant::now();
    loop {
        let v = browser
            .script(
                "const e = performance.getEntriesByName(arguments[0]); \
                 const err = document.querySelector('.notice.error'); \
                 return e.length ? e[0].startTime : (err ? 'error: ' + err.textContent : null);",
                json!([mark]),
            )
            .await?;
        if let Some(ms) = v.as_f64() {
            return Ok(ms);
        }
        if let Some(text) = v.as_str() {
            bail!("{page}: {text}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{page} did not render within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let browser = Browser::start(1440, 900)
        .await
        .context("headless Chromium")?;
    // The token goes into the tab's session storage once, as a sign-in link does.
    browser
        .goto(&format!("{}/#token={}", args.api, args.token))
        .await?;
    let pages = [
        ("traces", format!("{}/#/traces?range=24h", args.api)),
        ("trace", format!("{}/#/trace/{}", args.api, args.trace)),
        ("dashboard", format!("{}/#/dashboard?range=24h", args.api)),
    ];
    for (page, url) in &pages {
        let mut times = Vec::with_capacity(args.loads);
        for _ in 0..args.loads {
            times.push(load(&browser, url, page).await?);
        }
        times.sort_by(f64::total_cmp);
        let rows = browser
            .script(
                "return document.querySelectorAll('tr, .span-row, svg.chart').length;",
                json!([]),
            )
            .await?;
        println!(
            "{page}: first render p50 {:.0} ms, max {:.0} ms over {} fresh loads ({} rows or charts on screen)",
            times[times.len() / 2],
            times[times.len() - 1],
            times.len(),
            rows
        );
    }
    let bytes = browser
        .script(
            "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')) \
             .filter(e => !e.name.includes('/api/')).reduce((s, e) => s + e.encodedBodySize, 0);",
            json!([]),
        )
        .await?;
    println!("UI page and assets: {bytes} bytes (uncompressed; what a cold load transfers)");
    Ok(())
}
