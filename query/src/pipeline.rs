//! `GET /api/v1/pipeline` (admin): the pipeline's health, read from the
//! services' own `/metrics` (the collector's and each sink's), so that the
//! UI's pipeline page and a script see the same numbers Prometheus scrapes.
//!
//! What it guarantees: only the endpoints an operator configured
//! (`PIPELINE_METRICS`, `name=http://host:port/metrics,...`) are read, each
//! within [`SCRAPE_TIMEOUT`] and at most [`MAX_BODY`] bytes, all at once; a
//! service that does not answer is reported `up: false` with the reason,
//! never an error of the whole answer. Only a fixed list of families is
//! passed on (ingest, refusals, Kafka readiness, rows written, lag per
//! partition, the oldest unwritten message, dead letters), so the answer is
//! small and its labels bounded whatever else a service exports.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for one service's metrics.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest metrics page read.
pub const MAX_BODY: usize = 8 << 20;

/// The families passed on (without OpenMetrics' `_total` suffix of counters).
const FAMILIES: &[&str] = &[
    "observatory_collector_requests",
    "observatory_collector_refused_requests",
    "observatory_collector_received_items",
    "observatory_collector_accepted_items",
    "observatory_collector_refused_items",
    "observatory_collector_inflight_bytes",
    "observatory_collector_kafka_ready",
    "observatory_collector_kafka_errors",
    "observatory_consumer_messages",
    "observatory_consumer_rows_written",
    "observatory_consumer_rows_duplicate",
    "observatory_consumer_dlq_messages",
    "observatory_consumer_lag_messages",
    "observatory_consumer_oldest_unwritten_age_seconds",
    "observatory_consumer_blocks_written",
];

/// One service to read: a name and a plain-HTTP metrics address.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What the pages call it (`collector`, `timescale`, `tempo`, ...).
    pub name: String,
    /// `host:port`.
    pub authority: String,
    /// The path, `/metrics` by default.
    pub path: String,
}

/// Parses `PIPELINE_METRICS`: `name=http://host:port[/path],...`.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    observatory_schemas::settings::parse_pairs(text)?
        .into_iter()
        .map(|(name, url)| {
            let rest = url.strip_prefix("http://").ok_or_else(|| {
                format!("{name}={url}: a metrics address is http://host:port/path")
            })?;
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/metrics"),
            };
            if authority.is_empty() || !authority.contains(':') {
                return Err(format!(
                    "{name}={url}: name the port (http://host:port/metrics)"
                ));
            }
            Ok(Target {
                name,
                authority: authority.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// One sample of a passed-on family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The family, as exported (`..._total` for counters).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// One service's state.
#[derive(Debug, Serialize)]
pub struct Service {
    /// Its configured name.
    pub name: String,
    /// It answered with its metrics.
    pub up: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The passed-on samples.
    pub samples: Vec<Sample>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// When it was read, RFC 3339 (rates are differences between answers).
    pub time: String,
    /// Every configured service, in configuration order.
    pub services: Vec<Service>,
}

/// Reads every target at once.
pub async fn read(targets: &[Target]) -> Answer {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let services = futures::future::join_all(targets.iter().map(|t| async move {
        match tokio::time::timeout(SCRAPE_TIMEOUT, scrape(t)).await {
            Ok(Ok(text)) => Service {
                name: t.name.clone(),
                up: true,
                error: None,
                samples: samples(&text),
            },
            Ok(Err(e)) => down(t, e),
            Err(_) => down(t, format!("no answer within {SCRAPE_TIMEOUT:?}")),
        }
    }))
    .await;
    Answer {
        time: observatory_schemas::civil::rfc3339_nanos(now),
        services,
    }
}

fn down(t: &Target, error: String) -> Service {
    Service {
        name: t.name.clone(),
        up: false,
        error: Some(error),
        samples: Vec::new(),
    }
}

/// One plain HTTP/1.0 GET (the services' admin ports speak HTTP/1 and close
/// the connection after an HTTP/1.0 answer).
async fn scrape(t: &Target) -> Result<String, String> {
    let mut tcp = tokio::net::TcpStream::connect(&t.authority)
        .await
        .map_err(|e| format!("connect to {}: {e}", t.authority))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
        t.path, t.authority
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write to {}: {e}", t.authority))?;
    let mut body = Vec::new();
    (&mut tcp)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| format!("read from {}: {e}", t.authority))?;
    if body.len() > MAX_BODY {
        return Err(format!(
            "{} answered more than {MAX_BODY} bytes",
            t.authority
        ));
    }
    let text = String::from_utf8_lossy(&body);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{} did not answer HTTP", t.authority))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{}{} answered {status}", t.authority, t.path));
    }
    Ok(rest.to_owned())
}

/// The samples of the passed-on families in a Prometheus or OpenMetrics text page.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(sample)
        .filter(|s| {
            let family = s.name.strip_suffix("_total").unwrap_or(&s.name);
            FAMILIES.contains(&family)
        })
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    value.is_finite().then(|| Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""` into pairs.
fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_an_http_address_with_a_port() {
        let t = parse_targets("collector=http://c:8888/metrics, timescale=http://s:8889").unwrap();
        assert_eq!(t[0].authority, "c:8888");
        assert_eq!(t[1].path, "/metrics");
        assert!(parse_targets("c=https://c:8888/metrics").is_err());
        assert!(parse_targets("c=http://c/metrics").is_err());
        assert!(parse_targets("").unwrap().is_empty());
    }

    #[test]
    fn only_the_pipeline_families_are_passed_on_with_their_labels() {
        let text = "# HELP x\n\
            # TYPE observatory_collector_accepted_items counter\n\
            observatory_collector_accepted_items_total{signal=\"traces\",transport=\"grpc\"} 1200\n\
            observatory_collector_accepted_items_created{signal=\"traces\",transport=\"grpc\"} 1.7e9\n\
            observatory_consumer_lag_messages{group=\"g\",topic=\"t \\\"q\\\"\",partition=\"3\"} 42\n\
            observatory_consumer_oldest_unwritten_age_seconds{group=\"g\"} 0.5\n\
            observatory_collector_kafka_ready 1\n\
            process_cpu_seconds_total 3\n\
            observatory_consumer_batch_duration_seconds_bucket{le=\"+Inf\"} 3\n\
            # EOF\n";
        let s = samples(text);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "observatory_collector_accepted_items_total",
                "observatory_consumer_lag_messages",
                "observatory_consumer_oldest_unwritten_age_seconds",
                "observatory_collector_kafka_ready"
            ]
        );
        assert_eq!(s[0].value, 1200.0);
        assert_eq!(s[1].labels["topic"], "t \"q\"");
        assert_eq!(s[1].labels["partition"], "3");
        assert!(samples("observatory_collector_kafka_ready{broken 1\n").is_empty());
    }

    #[tokio::test]
    async fn a_service_that_does_not_answer_is_down_with_its_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let answer = read(&parse_targets(&format!("gone=http://{addr}/metrics")).unwrap()).await;
        assert!(!answer.services[0].up);
        assert!(answer.services[0]
            .error
            .as_deref()
            .unwrap()
            .contains("connect"));
    }
}
