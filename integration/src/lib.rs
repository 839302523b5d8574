//! Helpers for the end-to-end tests and the load generator.
//!
//! Tests run against the real services of the local stack
//! (`integration/stack.sh up`): endpoints come from the environment with
//! loopback defaults, every test gets its own topic names, and waiting is
//! done by polling with deadlines, never by fixed sleeps. Binaries under test
//! are started as real processes from the workspace's target folder, so a
//! test can SIGTERM or SIGKILL them.

pub mod api;
pub mod blocks;
pub mod broker;
pub mod bucket;
pub mod collector;
pub mod grafana;
pub mod grpc;
pub mod kafka;
pub mod minute_blocks;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod webdriver;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

/// The stack's Kafka bootstrap servers: `KAFKA_BROKERS`, else 127.0.0.1:9092.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test run uses: `prefix_<pid>_<time>_<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 1_000_000_000);
    format!(
        "{prefix}_{}_{millis}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where [`free_addr`] looks: below Linux's ephemeral range (32768 and up),
/// so that no outgoing connection takes the port between the pick and the
/// bind, or while a killed service is restarted on it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback address with a port free now, outside the ephemeral range.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // Test processes run in parallel: each starts at its own place.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = TEST_PORTS.start + ((start + n.wrapping_mul(13)) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener
                .local_addr()
                .expect("a bound listener has an address");
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

/// Path of a binary of this workspace, built by `cargo build` into the same
/// target folder as the running test (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("OBSERVATORY_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --bins), or set OBSERVATORY_BIN_DIR",
        path.display()
    );
    path
}

/// GETs `path` on an admin server; `None` when it does not answer.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits until the admin server's `/readyz` says ready.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) {
    wait_for("the service to be ready", timeout, || async {
        matches!(admin_get(addr, "/readyz").await, Some((200, _))).then_some(())
    })
    .await
}

/// The sum of the metric lines that start with `prefix` (name and labels);
/// 0 when the server does not answer.
pub async fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let Some((_, text)) = admin_get(addr, "/metrics").await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
