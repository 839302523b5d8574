//! The collector's audit events: every request refused for its credentials
//! (no API key, an unknown one), as the query API writes its own: one JSON
//! line on stdout with `"log":"audit"`, so the same log shipper routes both.
//! The key itself is never written; the tenant header is, cut to 64
//! characters (it is the client's claim, not a verified tenant).

use serde::Serialize;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One refused request.
#[derive(Debug, Serialize)]
pub struct Refusal<'a> {
    /// Always `audit`.
    pub log: &'static str,
    /// Always `collector`.
    pub component: &'static str,
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// `grpc`, `http_protobuf` or `http_json`.
    pub transport: &'static str,
    /// `traces`, `metrics` or `logs`.
    pub signal: &'static str,
    /// The client's address, when known.
    pub client: Option<String>,
    /// The `X-Scope-OrgID` the client sent, if any.
    pub tenant_header: Option<String>,
    /// HTTP status (401) or gRPC code name.
    pub status: u16,
    /// Why: `unauthenticated`.
    pub refusal: &'a str,
}

/// Writes a refusal to stdout as one JSON line.
pub fn refused(
    transport: &'static str,
    signal: &'static str,
    client: Option<SocketAddr>,
    tenant_header: Option<&str>,
    reason: &str,
) {
    let event = Refusal {
        log: "audit",
        component: "collector",
        time_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        transport,
        signal,
        client: client.map(|a| a.ip().to_string()),
        tenant_header: tenant_header.map(|t| t.chars().take(64).collect()),
        status: 401,
        refusal: reason,
    };
    if let Ok(line) = serde_json::to_string(&event) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}
