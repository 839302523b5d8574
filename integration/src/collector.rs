//! Running `observatory-collector` as a real process for a test.

use crate::{free_addr, workspace_bin};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A collector process on free loopback ports; killed on drop.
pub struct Collector {
    child: Option<Child>,
    /// OTLP/gRPC address.
    pub grpc: SocketAddr,
    /// OTLP/HTTP address.
    pub http: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
}

impl Collector {
    /// Starts a collector with `env` (on top of free ports and `RUST_LOG=warn`).
    pub fn spawn(env: &[(&str, String)]) -> Collector {
        let (grpc, http, admin) = (free_addr(), free_addr(), free_addr());
        let mut command = Command::new(workspace_bin("observatory-collector"));
        command
            .env("COLLECTOR_GRPC_ADDR", grpc.to_string())
            .env("COLLECTOR_HTTP_ADDR", http.to_string())
            .env("COLLECTOR_ADMIN_ADDR", admin.to_string())
            .env(
                "RUST_LOG",
                std::env::var("COLLECTOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start observatory-collector");
        Collector {
            child: Some(child),
            grpc,
            http,
            admin,
        }
    }

    /// A ready collector publishing traces to `topic` (4 partitions, created
    /// by it) on `brokers`; metrics and logs go to topics of their own.
    pub async fn for_topic(brokers: &str, topic: &str, timeout: Duration) -> Collector {
        let collector = Collector::spawn(&[
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("KAFKA_TRACES_TOPIC", topic.to_owned()),
            ("KAFKA_METRICS_TOPIC", crate::unique("metrics")),
            ("KAFKA_LOGS_TOPIC", crate::unique("logs")),
            ("KAFKA_TRACES_PARTITIONS", "4".into()),
        ]);
        collector.wait_ready(timeout).await;
        collector
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// GETs an admin path; `None` when the server does not answer.
    pub async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        crate::admin_get(self.admin, path).await
    }

    /// Waits until `/readyz` says ready.
    pub async fn wait_ready(&self, timeout: Duration) {
        crate::wait_ready(self.admin, timeout).await
    }

    /// The value of a metric line that starts with `prefix` (name and labels), summed over matches.
    pub async fn metric(&self, prefix: &str) -> f64 {
        crate::metric(self.admin, prefix).await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait for the collector")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
