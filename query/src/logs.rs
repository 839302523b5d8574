//! Log records: `GET /api/v1/logs` (search by time, severity, service,
//! trace, event name, attribute and text of the body) and the records of
//! one trace, which `GET /api/v1/traces/{id}` puts on their spans.
//!
//! What it guarantees: every read is the token's tenant's and bounded: the
//! window is at most 31 days, a page at most 1 000 records, newest first
//! with a keyset cursor (time, record id) that stays right while records
//! arrive; a trace shows at most [`TRACE_MAX_RECORDS`]. GenAI content
//! events among a span's records feed its LLM call's messages
//! ([`as_event`]), so a call shows the same messages whether its content
//! came as span attributes, span events or log records.

use crate::filters::{format_time, parse_in, Params, Range};
use crate::keyset;
use crate::problem::Problem;
use crate::sql::Sql;
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);
const DEFAULT_RANGE: Duration = Duration::from_secs(3_600);

/// Most records shown with one trace.
pub const TRACE_MAX_RECORDS: i64 = 1_000;

/// One record as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// Time, RFC 3339.
    pub time: String,
    /// Observed time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_time: Option<String>,
    /// Trace id, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Span id, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Severity number (1-24; 0 unspecified).
    pub severity_number: i16,
    /// Severity text.
    pub severity_text: String,
    /// Service.
    pub service: String,
    /// Event name ("" for a plain record).
    pub event_name: String,
    /// Instrumentation scope.
    pub scope_name: String,
    /// Body (any JSON value; null when absent or not captured).
    pub body: Value,
    /// Attributes.
    pub attributes: Value,
}

/// A page of records.
#[derive(Debug, Serialize)]
pub struct LogPage {
    /// Newest first.
    pub records: Vec<LogView>,
    /// The next page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Severity names, as OpenTelemetry ranges them (the lowest number of each).
const SEVERITIES: [(&str, i16); 6] = [
    ("trace", 1),
    ("debug", 5),
    ("info", 9),
    ("warn", 13),
    ("error", 17),
    ("fatal", 21),
];

/// `GET /api/v1/logs` parameters, checked.
#[derive(Debug)]
pub struct ListQuery {
    range: Range,
    min_severity: Option<i16>,
    service: Option<String>,
    trace_id: Option<Vec<u8>>,
    event_name: Option<String>,
    attrs: Vec<(String, String)>,
    text: Option<String>,
    limit: i64,
    after: Option<(SystemTime, i64)>,
}

fn parse_hex(text: &str, bytes: usize) -> Result<Vec<u8>, String> {
    if text.len() != bytes * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{} lowercase hex characters", bytes * 2));
    }
    (0..bytes)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl ListQuery {
    /// Reads and checks the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<ListQuery, Problem> {
        let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
        let min_severity = p.parsed("severity", |t| {
            let lower = t.to_ascii_lowercase();
            SEVERITIES
                .iter()
                .find(|(name, _)| *name == lower)
                .map(|(_, n)| *n)
                .map_or_else(|| parse_in(t, 1..=24).map(|n| n as i16), Ok)
                .map_err(|_| "trace, debug, info, warn, error, fatal or 1 to 24".to_owned())
        })?;
        let text_param = |p: &mut Params, name: &str| -> Result<Option<String>, Problem> {
            p.parsed(name, |t| {
                if t.is_empty() || t.len() > 256 {
                    Err("1 to 256 bytes".to_owned())
                } else {
                    Ok(t.to_owned())
                }
            })
        };
        let service = text_param(p, "service")?;
        let event_name = text_param(p, "event_name")?;
        let text = text_param(p, "q")?;
        let trace_id = p.parsed("trace_id", |t| parse_hex(t, 16))?;
        let mut attrs = Vec::new();
        for a in p.all("attr") {
            let Some((k, v)) = a.split_once('=') else {
                return Err(Problem::bad_parameter("attr", "key=value"));
            };
            if k.is_empty() || k.len() > 256 || v.len() > 1024 {
                return Err(Problem::bad_parameter(
                    "attr",
                    "a key of 1 to 256 bytes and a value of at most 1024",
                ));
            }
            attrs.push((k.to_owned(), v.to_owned()));
        }
        if attrs.len() > 16 {
            return Err(Problem::bad_parameter(
                "attr",
                "at most 16 attribute filters",
            ));
        }
        let limit = p.parsed("limit", |t| parse_in(t, 1..=1000))?.unwrap_or(100);
        let after = p.parsed("cursor", |t| {
            let parts = keyset::decode(t, 2)?;
            let us: i64 = parts[0].parse().map_err(|_| "not a cursor".to_owned())?;
            let id: i64 = parts[1].parse().map_err(|_| "not a cursor".to_owned())?;
            Ok((UNIX_EPOCH + Duration::from_micros(us.max(0) as u64), id))
        })?;
        p.finish()?;
        Ok(ListQuery {
            range,
            min_severity,
            service,
            trace_id,
            event_name,
            attrs,
            text,
            limit,
            after,
        })
    }
}

const COLUMNS: &str =
    "time, observed_time, trace_id, span_id, severity_number, severity_text, service, \
    event_name, scope_name, body::text, attributes::text, record_id";

fn hex(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 2);
    observatory_schemas::kafka::push_hex(&mut out, b);
    out
}

fn json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn view(r: &tokio_postgres::Row) -> LogView {
    LogView {
        time: format_time(r.get(0)),
        observed_time: r.get::<_, Option<SystemTime>>(1).map(format_time),
        trace_id: r.get::<_, Option<Vec<u8>>>(2).as_deref().map(hex),
        span_id: r.get::<_, Option<Vec<u8>>>(3).as_deref().map(hex),
        severity_number: r.get(4),
        severity_text: r.get(5),
        service: r.get(6),
        event_name: r.get(7),
        scope_name: r.get(8),
        body: json(r.get(9)),
        attributes: json(r.get(10)),
    }
}

/// One page of records, newest first.
pub async fn list(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &ListQuery,
) -> Result<LogPage, tokio_postgres::Error> {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let (from, to) = (sql.bind(q.range.from), sql.bind(q.range.to));
    sql.push(&format!(
        "SELECT {COLUMNS} FROM logs WHERE tenant = {t} AND time >= {from} AND time < {to}"
    ));
    if let Some(n) = q.min_severity {
        let n = sql.bind(n);
        sql.push(&format!(" AND severity_number >= {n}"));
    }
    if let Some(s) = &q.service {
        let s = sql.bind(s.clone());
        sql.push(&format!(" AND service = {s}"));
    }
    if let Some(id) = &q.trace_id {
        let id = sql.bind(id.clone());
        sql.push(&format!(" AND trace_id = {id}"));
    }
    if let Some(e) = &q.event_name {
        let e = sql.bind(e.clone());
        sql.push(&format!(" AND event_name = {e}"));
    }
    for (k, v) in &q.attrs {
        let (k, v) = (sql.bind(k.clone()), sql.bind(v.clone()));
        sql.push(&format!(" AND attributes ->> {k} = {v}"));
    }
    if let Some(text) = &q.text {
        // A plain substring, case-insensitive: LIKE's wildcards escaped.
        let pattern = format!(
            "%{}%",
            text.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let p = sql.bind(pattern);
        sql.push(&format!(" AND body::text ILIKE {p}"));
    }
    if let Some((time, id)) = q.after {
        let (time, id) = (sql.bind(time), sql.bind(id));
        sql.push(&format!(" AND (time, record_id) < ({time}, {id})"));
    }
    let limit = sql.bind(q.limit + 1);
    sql.push(&format!(
        " ORDER BY time DESC, record_id DESC LIMIT {limit}"
    ));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    let more = rows.len() as i64 > q.limit;
    let rows = &rows[..rows.len().min(q.limit as usize)];
    let next_cursor = more.then(|| {
        let last = rows.last().expect("more than limit rows");
        keyset::encode(&[
            micros(last.get(0)).to_string(),
            last.get::<_, i64>(11).to_string(),
        ])
    });
    Ok(LogPage {
        records: rows.iter().map(view).collect(),
        next_cursor,
    })
}

/// The records of one trace, oldest first (at most [`TRACE_MAX_RECORDS`]).
pub async fn of_trace(
    client: &tokio_postgres::Client,
    tenant: &str,
    id: &[u8; 16],
) -> Result<Vec<LogView>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM logs WHERE tenant = $1 AND trace_id = $2
                  ORDER BY time, record_id LIMIT {TRACE_MAX_RECORDS}"
            ),
            &[&tenant, &&id[..]],
        )
        .await?;
    Ok(rows.iter().map(view).collect())
}

/// A GenAI content record as the span event it stands for, `{name,
/// attributes}`, for [`observatory_schemas::messages::chat`]: the body's
/// fields join the attributes (the legacy events carry the message in the
/// body: `{"content": ...}`, `{"message": {...}}`), a body that is not an
/// object becomes `content`. `None` for other records.
pub fn as_event(record: &LogView) -> Option<Value> {
    let name = record.event_name.as_str();
    if !name.starts_with("gen_ai.") || name == "gen_ai.evaluation.result" {
        return None;
    }
    let mut attributes = record.attributes.as_object().cloned().unwrap_or_default();
    match &record.body {
        Value::Object(body) => {
            for (k, v) in body {
                attributes.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Value::Null => {}
        other => {
            attributes
                .entry("content".to_owned())
                .or_insert_with(|| other.clone());
        }
    }
    Some(serde_json::json!({ "name": name, "attributes": attributes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::messages::chat;
    use serde_json::json;

    fn record(name: &str, attributes: Value, body: Value) -> LogView {
        LogView {
            time: String::new(),
            observed_time: None,
            trace_id: None,
            span_id: None,
            severity_number: 9,
            severity_text: String::new(),
            service: String::new(),
            event_name: name.into(),
            scope_name: String::new(),
            body,
            attributes,
        }
    }

    #[test]
    fn content_records_read_as_the_same_messages_as_span_attributes() {
        let input = r#"[{"role":"user","parts":[{"type":"text","content":"What is 2+2?"}]}]"#;
        let output = r#"[{"role":"assistant","parts":[{"type":"text","content":"4"}],"finish_reason":"stop"}]"#;
        let from_attributes = chat(
            &json!({"gen_ai.input.messages": input, "gen_ai.output.messages": output}),
            &json!([]),
        );
        let details = record(
            "gen_ai.client.inference.operation.details",
            json!({"gen_ai.input.messages": input, "gen_ai.output.messages": output}),
            Value::Null,
        );
        let legacy = [
            record(
                "gen_ai.user.message",
                json!({}),
                json!({"content": "What is 2+2?"}),
            ),
            record(
                "gen_ai.choice",
                json!({}),
                json!({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "4"}}),
            ),
        ];
        let events = |records: &[LogView]| -> Value {
            Value::Array(records.iter().filter_map(as_event).collect())
        };
        assert_eq!(chat(&json!({}), &events(&[details])), from_attributes);
        assert_eq!(chat(&json!({}), &events(&legacy)), from_attributes);
        assert!(as_event(&record("gen_ai.evaluation.result", json!({}), Value::Null)).is_none());
        assert!(as_event(&record("", json!({}), json!("hello"))).is_none());
    }
}
