//! The audit log: one event per API request that reads tenant data or
//! changes anything, and per refused request (401, 403, 429).
//!
//! An event says who (the token's subject, tenant and role, once verified;
//! nothing of an unverified token), from where (client address), what (the
//! method, the route template, never the raw path, and the parameters that
//! select data: the query's and the template's), and how it ended (status,
//! why it was refused, bytes answered, latency), with a request id that is
//! also sent back in `X-Request-Id`. A budget change records the budget
//! before and after. No event carries a token, a key or a secret: the
//! `Authorization` header is never read here, and query parameters whose
//! names say they hold one are left out.
//!
//! Events are JSON lines on stdout with `"log":"audit"` (so a log shipper
//! can route them), written by a thread of their own so that a request
//! never waits for stdout, and, with `AUDIT_KAFKA_TOPIC`, produced to Kafka
//! (`acks=all`, keyed by tenant). When stdout or Kafka cannot keep up,
//! events are dropped and counted (`observatory_api_audit_events_dropped_total`),
//! never queued without bound.

use crate::auth::{AuthError, Claims};
use crate::metrics::Metrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the stdout writer lets events gather before it writes them:
/// an event reaches stdout at most this late.
const WRITE_EVERY: Duration = Duration::from_millis(20);

/// Events waiting for the stdout writer; past it they are dropped.
const STDOUT_QUEUE: usize = 65_536;
/// Longest parameter value kept in an event.
const MAX_PARAM_CHARS: usize = 256;
/// Query parameter names that may hold a secret: never logged.
const SECRET_WORDS: [&str; 6] = ["token", "key", "secret", "password", "auth", "signature"];

/// The Kafka side of the audit log (`AUDIT_KAFKA_TOPIC`).
#[derive(Debug, Clone)]
pub struct AuditKafka {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Extra librdkafka settings (TLS, SASL).
    pub extra: Vec<(String, String)>,
}

/// Where events go.
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    stdout: SyncSender<String>,
    kafka: Option<(
        rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
        String,
    )>,
    metrics: Arc<Metrics>,
}

/// What the handlers learn about a request for its event, shared through
/// the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct AuditHandle(Arc<Mutex<Facts>>);

#[derive(Debug, Default)]
struct Facts {
    claims: Option<Claims>,
    refusal: Option<&'static str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

impl AuditHandle {
    /// The verified token of the request.
    pub fn verified(&self, claims: &Claims) {
        self.0.lock().expect("no poisoned lock").claims = Some(claims.clone());
    }

    /// Why the request was refused before its handler ran.
    pub fn refused(&self, reason: &'static str) {
        self.0.lock().expect("no poisoned lock").refusal = Some(reason);
    }

    /// A refusal of authentication or authorization.
    pub fn refused_auth(&self, error: &AuthError) {
        self.refused(error.reason());
    }

    /// A change: the state before and after it.
    pub fn changed(&self, before: serde_json::Value, after: serde_json::Value) {
        let mut facts = self.0.lock().expect("no poisoned lock");
        facts.before = Some(before);
        facts.after = Some(after);
    }
}

/// One event.
#[derive(Debug, Serialize)]
pub struct Event {
    /// Always `audit`, for routing.
    pub log: &'static str,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The request's id (`X-Request-Id`).
    pub request_id: String,
    /// The token's subject, once verified.
    pub subject: Option<String>,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its role.
    pub role: Option<&'static str>,
    /// The client's address.
    pub client: Option<String>,
    /// HTTP method.
    pub method: String,
    /// The route template, e.g. `/api/v1/traces/{trace_id}`.
    pub route: String,
    /// The parameters that select data.
    pub params: BTreeMap<String, String>,
    /// The answer's status.
    pub status: u16,
    /// Why it was refused: missing, invalid, forbidden, rate_limited.
    pub refusal: Option<&'static str>,
    /// Bytes of the answer, when known.
    pub result_bytes: Option<u64>,
    /// Time to the answer's head, ms.
    pub latency_ms: f64,
    /// What a change replaced.
    pub before: Option<serde_json::Value>,
    /// What a change set.
    pub after: Option<serde_json::Value>,
}

/// What the server knows of a request when it answers.
pub struct Request<'a> {
    /// Its id.
    pub request_id: &'a str,
    /// Client address.
    pub client: Option<SocketAddr>,
    /// Method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// Status answered.
    pub status: u16,
    /// Bytes answered, when known.
    pub result_bytes: Option<u64>,
    /// Time to the answer.
    pub latency: Duration,
}

fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

fn cut(value: &str) -> String {
    value.chars().take(MAX_PARAM_CHARS).collect()
}

impl Auditor {
    /// An auditor writing to stdout and, with `kafka` (brokers, topic,
    /// extra librdkafka settings), to Kafka.
    pub fn new(
        kafka: Option<&AuditKafka>,
        metrics: Arc<Metrics>,
    ) -> Result<Auditor, rdkafka::error::KafkaError> {
        Auditor::with_switch(true, kafka, metrics)
    }

    /// [`Auditor::new`], or one that writes nothing when `enabled` is
    /// false (`AUDIT_LOG=false`).
    pub fn with_switch(
        enabled: bool,
        kafka: Option<&AuditKafka>,
        metrics: Arc<Metrics>,
    ) -> Result<Auditor, rdkafka::error::KafkaError> {
        let (stdout, lines) = sync_channel::<String>(STDOUT_QUEUE);
        std::thread::Builder::new()
            .name("audit-stdout".into())
            .spawn(move || {
                use std::io::Write;
                let mut out = std::io::BufWriter::new(std::io::stdout());
                while let Ok(line) = lines.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Let events gather: one wake-up and one write per
                    // batch, not per request (that cost a third of the
                    // cached-request throughput).
                    std::thread::sleep(WRITE_EVERY);
                    while let Ok(line) = lines.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawning the audit writer");
        let kafka = match kafka.filter(|_| enabled) {
            None => None,
            Some(kafka) => {
                let mut config = rdkafka::ClientConfig::new();
                config
                    .set("bootstrap.servers", &kafka.brokers)
                    .set("client.id", "observatory-api-audit")
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    .set("linger.ms", "20")
                    .set("queue.buffering.max.messages", "100000");
                for (k, v) in &kafka.extra {
                    config.set(k, v);
                }
                Some((config.create()?, kafka.topic.clone()))
            }
        };
        Ok(Auditor {
            inner: Arc::new(Inner {
                enabled,
                stdout,
                kafka,
                metrics,
            }),
        })
    }

    /// Whether a request to `path` is audited: every `/api/` route but the
    /// public ones that read no tenant data (none when the log is off).
    pub fn audits(&self, path: &str) -> bool {
        self.inner.enabled && Auditor::audited_route(path)
    }

    /// Whether `path` is a route the audit log covers.
    pub fn audited_route(path: &str) -> bool {
        path.starts_with("/api/")
            && !matches!(
                path,
                "/api/v1/openapi.json" | "/api/echo" | "/api/status/buildinfo"
            )
    }

    /// The route template `path` matches (the metrics' route table), and
    /// the path parameters it names.
    fn template(path: &str) -> (&'static str, BTreeMap<String, String>) {
        let route = crate::metrics::route(path);
        let mut params = BTreeMap::new();
        if route != "other" {
            for (r, s) in route.split('/').zip(path.split('/')) {
                if let Some(name) = r.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                    let value = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
                    params.insert(name.to_owned(), cut(&value));
                }
            }
        }
        (route, params)
    }

    /// Builds the event of a finished request.
    pub fn event(&self, request: &Request<'_>, handle: &AuditHandle) -> Event {
        let (route, mut params) = Auditor::template(request.path);
        if let Some(query) = request.query {
            for (k, v) in url_pairs(query) {
                if !secret_name(&k) {
                    params.insert(cut(&k), cut(&v));
                }
            }
        }
        let facts = std::mem::take(&mut *handle.0.lock().expect("no poisoned lock"));
        let refusal = facts.refusal.or(match request.status {
            401 => Some("invalid"),
            403 => Some("forbidden"),
            429 => Some("rate_limited"),
            _ => None,
        });
        Event {
            log: "audit",
            time: rfc3339_millis(SystemTime::now()),
            request_id: request.request_id.to_owned(),
            subject: facts.claims.as_ref().map(|c| c.sub.clone()),
            tenant: facts.claims.as_ref().map(|c| c.tenant.clone()),
            role: facts.claims.as_ref().map(|c| c.role.as_str()),
            client: request.client.map(|a| a.ip().to_string()),
            method: request.method.to_owned(),
            route: route.to_owned(),
            params,
            status: request.status,
            refusal,
            result_bytes: request.result_bytes,
            latency_ms: request.latency.as_secs_f64() * 1000.0,
            before: facts.before,
            after: facts.after,
        }
    }

    /// Writes an event out: stdout, and Kafka when configured.
    pub fn emit(&self, event: &Event) {
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        line.push('\n');
        if let Some((producer, topic)) = &self.inner.kafka {
            let key = event.tenant.as_deref().unwrap_or("");
            let record = rdkafka::producer::BaseRecord::to(topic)
                .key(key)
                .payload(line.trim_end());
            if producer.send(record).is_err() {
                self.dropped("kafka");
            }
        }
        match self.inner.stdout.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped("stdout"),
        }
        self.inner.metrics.audit_events.inc();
    }

    fn dropped(&self, sink: &'static str) {
        self.inner
            .metrics
            .audit_dropped
            .get_or_create(&crate::metrics::AuditSinkLabels { sink })
            .inc();
    }
}

/// Creates the audit topic when it is missing (1 partition, the broker's
/// default replication), retrying in the background until it exists: the
/// producer meanwhile keeps events queued (and counts what it drops).
pub fn ensure_topic(kafka: &AuditKafka) {
    crate::topics::ensure(&kafka.brokers, &kafka.topic, 1, &kafka.extra);
}

/// `k=v&k=v`, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// `2026-12-04T01:02:03.456Z`.
fn rfc3339_millis(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Whole seconds from the shared formatter, then exactly three digits
    // of milliseconds (120 ms is ".120", never ".12").
    let whole = observatory_schemas::civil::rfc3339_nanos(ms / 1000 * 1_000_000_000);
    let base = whole.strip_suffix('Z').unwrap_or(&whole);
    let base = base.split('.').next().unwrap_or(base);
    format!("{base}.{:03}Z", ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_route_template_and_never_a_secret() {
        let auditor = Auditor::new(None, Arc::new(Metrics::default())).unwrap();
        let handle = AuditHandle::default();
        handle.verified(&Claims {
            sub: "ann".into(),
            tenant: "acme".into(),
            role: crate::auth::Role::Viewer,
            exp: 0,
        });
        let event = auditor.event(
            &Request {
                request_id: "r1",
                client: Some("10.0.0.7:5555".parse().unwrap()),
                method: "GET",
                path: "/api/v1/traces/0af7651916cd43dd8448eb211c80319c",
                query: Some("mode=full&api_key=sk-123&token=abc"),
                status: 200,
                result_bytes: Some(42),
                latency: Duration::from_millis(3),
            },
            &handle,
        );
        assert_eq!(event.route, "/api/v1/traces/{trace_id}");
        assert_eq!(event.params["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(event.params["mode"], "full");
        assert!(!event.params.contains_key("api_key") && !event.params.contains_key("token"));
        assert_eq!(
            (
                event.subject.as_deref(),
                event.tenant.as_deref(),
                event.role
            ),
            (Some("ann"), Some("acme"), Some("viewer"))
        );
        assert_eq!(event.client.as_deref(), Some("10.0.0.7"));
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.starts_with(r#"{"log":"audit""#), "{line}");
        assert!(!line.contains("sk-123"));
        assert!(auditor.audits("/api/search"));
        assert!(!auditor.audits("/api/v1/openapi.json"));
        assert!(!auditor.audits("/metrics"));
        let off = Auditor::with_switch(false, None, Arc::new(Metrics::default())).unwrap();
        assert!(!off.audits("/api/search"));
    }
}
