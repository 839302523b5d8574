//! A small W3C WebDriver client for the UI tests: Debian's `chromedriver`
//! driving headless `chromium` (both installed by `integration/stack.sh
//! browser`). Only what the tests use: navigate, find, read text, click,
//! type, run a script, read the browser console, take a screenshot.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    /// `/session/<id>` once the session exists.
    session: String,
    http: reqwest::Client,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

fn bin(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts chromedriver (`CHROMEDRIVER`, default `/usr/bin/chromedriver`)
    /// and a headless Chromium (`CHROMIUM_BIN`, default `/usr/bin/chromium`)
    /// with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Result<Browser> {
        let addr: SocketAddr = crate::free_addr();
        let driver_bin = bin("CHROMEDRIVER", "/usr/bin/chromedriver");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("start {driver_bin} (integration/stack.sh browser installs it)")
            })?;
        let http = reqwest::Client::new();
        let root = format!("http://{addr}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{root}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not answer on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": bin("CHROMIUM_BIN", "/usr/bin/chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            http,
        };
        let answer = browser.call("POST", "/session", Some(caps)).await?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {answer}"))?;
        browser.session = format!("/session/{id}");
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("http://{}{}{path}", self.addr, self.session);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).with_context(|| text.clone())?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", value["value"]);
        }
        Ok(value.get("value").cloned().unwrap_or(value))
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// Every element matching the CSS selector, now.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let found = self
            .call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first element matching `css`, waiting up to `timeout` for it.
    pub async fn wait(&self, css: &str, timeout: Duration) -> Result<Element> {
        let started = Instant::now();
        loop {
            if let Some(e) = self.find_all(css).await?.into_iter().next() {
                return Ok(e);
            }
            if started.elapsed() > timeout {
                let text = self.text_of("body").await.unwrap_or_default();
                let console = self.console().await.unwrap_or_default();
                bail!(
                    "no {css} after {timeout:?}; the page says: {text}; its console: {console:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's text (of `css`) contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String> {
        let started = Instant::now();
        loop {
            let text = self.text_of(css).await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            if started.elapsed() > timeout {
                let body = self.text_of("body").await.unwrap_or_default();
                let console = self.console().await.unwrap_or_default();
                bail!("{css} never said {needle:?} within {timeout:?}; it says: {text}; the page says: {body}; its console: {console:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> Result<String> {
        let e = self
            .find_all(css)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no {css}"))?;
        self.text(&e).await
    }

    /// The visible text of `e`.
    pub async fn text(&self, e: &Element) -> Result<String> {
        let v = self
            .call("GET", &format!("/element/{}/text", e.0), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks `e`.
    pub async fn click(&self, e: &Element) -> Result<()> {
        self.call("POST", &format!("/element/{}/click", e.0), None)
            .await
            .map(drop)
    }

    /// Clicks the first element matching `css`, waiting up to `timeout` for it.
    pub async fn click_on(&self, css: &str, timeout: Duration) -> Result<()> {
        let e = self.wait(css, timeout).await?;
        self.click(&e).await
    }

    /// Types `text` into the first element matching `css` (after clearing
    /// it), waiting up to `timeout` for it.
    pub async fn fill(&self, css: &str, text: &str, timeout: Duration) -> Result<()> {
        let e = self.wait(css, timeout).await?;
        self.type_into(&e, text).await
    }

    /// Types `text` into `e` (after clearing it).
    pub async fn type_into(&self, e: &Element, text: &str) -> Result<()> {
        self.call("POST", &format!("/element/{}/clear", e.0), None)
            .await?;
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and answers its return value.
    pub async fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The browser console's entries since the last call (level, message).
    pub async fn console(&self) -> Result<Vec<(String, String)>> {
        let v = self
            .call("POST", "/se/log", Some(json!({ "type": "browser" })))
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.call("GET", "/screenshot", None).await?;
        use base64::Engine;
        let b64 = v.as_str().ok_or_else(|| anyhow!("no screenshot"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes the browser; then the driver goes.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            if let Ok(mut tcp) = std::net::TcpStream::connect(self.addr) {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    tcp,
                    "DELETE {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session, self.addr
                );
                let _ = tcp.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
