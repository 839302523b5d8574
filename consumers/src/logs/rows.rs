//! Turning one `otlp_logs` message into `logs` rows, and its evaluation
//! events into scores.
//!
//! Pure: no I/O. The content policy is applied here, before anything is
//! stored, exactly as to spans: attributes are dropped, hashed or redacted
//! by the same rules ([`Policy::apply_to_attributes`]); the body of a GenAI
//! event record (a prompt, a completion) is content: dropped unless
//! `CAPTURE_CONTENT`, redacted and capped at `CONTENT_MAX_BYTES` if so. The
//! body of any other record is kept, cut at `LOG_BODY_MAX_BYTES` (counted
//! as `body_truncated`).
//!
//! A record's id hashes the record as sent with its resource and scope, so
//! the same record delivered twice has the same key.

use crate::redact::Policy;
use crate::scores::store::ScoreWrite;
use crate::source::InMessage;
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::common::{any_value, AnyValue, KeyValue};
use observatory_schemas::otlp::logs::LogRecord;
use observatory_schemas::otlp::logs_service::ExportLogsServiceRequest;
use observatory_schemas::otlp::trace::span::Event;
use observatory_schemas::resource_key::{fnv1a, stored_resource_id, FNV_OFFSET};
use observatory_schemas::scores::{from_evaluation_event, ScoreMessage};
use observatory_schemas::span::{
    any_value_json, attributes_json, string_attribute, UNKNOWN_SERVICE,
};
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One `logs` row.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// Tenant.
    pub tenant: String,
    /// Time, ns.
    pub time: i64,
    /// Id (hash of the record as sent).
    pub record_id: i64,
    /// Observed time, ns.
    pub observed_time: Option<i64>,
    /// Trace id.
    pub trace_id: Option<[u8; 16]>,
    /// Span id.
    pub span_id: Option<[u8; 8]>,
    /// Severity number (0 unspecified).
    pub severity_number: i16,
    /// Severity text.
    pub severity_text: String,
    /// `service.name` of the resource.
    pub service: String,
    /// Event name ("" for a plain log record).
    pub event_name: String,
    /// Instrumentation scope.
    pub scope_name: String,
    /// Body, JSON; `None` when absent or dropped by the content policy.
    pub body: Option<String>,
    /// Attributes, JSON.
    pub attributes: String,
    /// Resource id (`resources`).
    pub resource_id: i64,
    /// Resource attributes, JSON.
    pub resource: String,
    /// OTLP flags.
    pub flags: i32,
}

/// The rows of one message.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Records.
    pub rows: Vec<LogRow>,
    /// Scores of `gen_ai.evaluation.result` records.
    pub scores: Vec<ScoreWrite>,
    /// Evaluation records that are not a valid score.
    pub invalid_scores: u64,
    /// Records left out: (reason, count).
    pub dropped: Vec<(&'static str, u64)>,
    /// Bodies cut at `LOG_BODY_MAX_BYTES`.
    pub truncated: u64,
}

impl Prepared {
    fn drop(&mut self, why: &'static str) {
        match self.dropped.iter_mut().find(|(d, _)| *d == why) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((why, 1)),
        }
    }
}

/// GenAI events whose body is a prompt or a completion.
pub fn is_content_event(name: &str) -> bool {
    name.starts_with("gen_ai.") && name != observatory_schemas::scores::EVALUATION_EVENT
}

/// A record's id: FNV-1a 64 over tenant, resource, scope and the record's
/// protobuf encoding, each followed by a 0 byte; stable across versions.
pub fn record_id(tenant: &str, resource: &str, scope: &str, record: &LogRecord) -> i64 {
    let mut h = FNV_OFFSET;
    for part in [tenant.as_bytes(), resource.as_bytes(), scope.as_bytes()] {
        h = fnv1a(h, part);
        h = fnv1a(h, &[0]);
    }
    h = fnv1a(h, &record.encode_to_vec());
    h as i64
}

/// Makes rows from messages.
pub struct Preparer {
    /// The content policy.
    pub policy: Policy,
    /// Longest body of a plain record, bytes of JSON.
    pub body_max_bytes: usize,
    /// Records older than this are not stored (the traces retention).
    pub max_age: Duration,
    /// Records further ahead are not stored.
    pub max_future: Duration,
}

impl Preparer {
    /// The rows of one message, or why it can never be stored.
    pub fn prepare(&self, message: &InMessage) -> Result<Prepared, String> {
        if let Some(signal) = message.header(headers::OTLP_SIGNAL) {
            if signal != "logs" {
                return Err(format!("a {signal} message on a logs topic"));
            }
        }
        let tenant = message.tenant()?;
        let request = ExportLogsServiceRequest::decode(&message.payload[..])
            .map_err(|e| format!("undecodable OTLP logs protobuf: {e}"))?;
        let received = message
            .received_at_ms()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let oldest = now.saturating_sub(self.max_age.as_nanos() as i64);
        let latest = now.saturating_add(self.max_future.as_nanos() as i64);
        let mut out = Prepared::default();
        for rl in &request.resource_logs {
            let attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let service = string_attribute(attrs, "service.name").unwrap_or(UNKNOWN_SERVICE);
            let mut resource = String::new();
            attributes_json(attrs, &mut resource);
            let resource_id = stored_resource_id(&resource);
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().map_or("", |s| s.name.as_str());
                for record in &sl.log_records {
                    let id = record_id(tenant, &resource, scope, record);
                    let time = [
                        record.time_unix_nano,
                        record.observed_time_unix_nano,
                        received,
                    ]
                    .into_iter()
                    .find(|t| *t > 0)
                    .unwrap_or(0) as i64;
                    if time < oldest {
                        out.drop("expired");
                        continue;
                    }
                    if time > latest {
                        out.drop("future");
                        continue;
                    }
                    let event_name = if record.event_name.is_empty() {
                        string_attribute(&record.attributes, "event.name")
                            .unwrap_or("")
                            .to_owned()
                    } else {
                        record.event_name.clone()
                    };
                    let trace_id: Option<[u8; 16]> = record
                        .trace_id
                        .as_slice()
                        .try_into()
                        .ok()
                        .filter(|t: &[u8; 16]| t.iter().any(|b| *b != 0));
                    let span_id: Option<[u8; 8]> = record
                        .span_id
                        .as_slice()
                        .try_into()
                        .ok()
                        .filter(|s: &[u8; 8]| s.iter().any(|b| *b != 0));
                    if event_name == observatory_schemas::scores::EVALUATION_EVENT {
                        let event = Event {
                            name: event_name.clone(),
                            time_unix_nano: time as u64,
                            attributes: record.attributes.clone(),
                            ..Default::default()
                        };
                        match (trace_id, span_id) {
                            (Some(t), Some(s)) => {
                                match from_evaluation_event(tenant, &t, &s, &event) {
                                    Some(Ok(score)) => out
                                        .scores
                                        .push(ScoreWrite::of(ScoreMessage::Upsert { score })),
                                    Some(Err(_)) | None => out.invalid_scores += 1,
                                }
                            }
                            _ => out.invalid_scores += 1,
                        }
                    }
                    let mut attributes = record.attributes.clone();
                    self.policy.apply_to_attributes(&mut attributes);
                    let content = is_content_event(&event_name);
                    let body = self.body(record.body.as_ref(), content, &mut out.truncated);
                    let mut attributes_text = String::new();
                    attributes_json(&attributes, &mut attributes_text);
                    out.rows.push(LogRow {
                        tenant: tenant.to_owned(),
                        time,
                        record_id: id,
                        observed_time: (record.observed_time_unix_nano > 0)
                            .then_some(record.observed_time_unix_nano as i64),
                        trace_id,
                        span_id,
                        severity_number: i16::try_from(record.severity_number).unwrap_or(0),
                        severity_text: record.severity_text.clone(),
                        service: service.to_owned(),
                        event_name,
                        scope_name: scope.to_owned(),
                        body,
                        attributes: attributes_text,
                        resource_id,
                        resource: resource.clone(),
                        flags: record.flags as i32,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The stored body: content by the content policy, anything else cut.
    fn body(&self, body: Option<&AnyValue>, content: bool, truncated: &mut u64) -> Option<String> {
        let body = body.filter(|b| b.value.is_some())?;
        if content {
            if !self.policy.captures_content() {
                return None;
            }
            let mut body = body.clone();
            redact_value(&self.policy, &mut body);
            let mut out = String::new();
            any_value_json(Some(&body), &mut out);
            return Some(out);
        }
        let mut out = String::new();
        any_value_json(Some(body), &mut out);
        if out.len() > self.body_max_bytes {
            *truncated += 1;
            let text = match &body.value {
                Some(any_value::Value::StringValue(s)) => s.as_str(),
                _ => out.as_str(),
            };
            let mut cut = self.body_max_bytes.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut short = String::new();
            observatory_schemas::span::json_string(
                &format!("{}…[truncated]", &text[..cut]),
                &mut short,
            );
            return Some(short);
        }
        Some(out)
    }
}

/// Redacts every string inside a value (and caps it), in place.
fn redact_value(policy: &Policy, value: &mut AnyValue) {
    match value.value.as_mut() {
        Some(any_value::Value::StringValue(s)) => *s = policy.redact(s),
        Some(any_value::Value::ArrayValue(a)) => {
            for v in &mut a.values {
                redact_value(policy, v);
            }
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            for KeyValue { value, .. } in &mut kv.values {
                if let Some(v) = value {
                    redact_value(policy, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::otlp::logs::{ResourceLogs, ScopeLogs};
    use observatory_schemas::testing::kv_str;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn message(records: Vec<LogRecord>) -> InMessage {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(observatory_schemas::otlp::resource::Resource {
                    attributes: vec![kv_str("service.name", "svc")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        InMessage {
            topic: "otlp_logs".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: request.encode_to_vec().into(),
            headers: vec![],
        }
    }

    fn preparer(capture: bool) -> Preparer {
        Preparer {
            policy: Policy::new(capture, 64, vec!["secret".into()], vec![]),
            body_max_bytes: 100,
            max_age: Duration::from_secs(86_400),
            max_future: Duration::from_secs(86_400),
        }
    }

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    }

    #[test]
    fn records_keep_their_fields_and_the_same_record_has_the_same_id() {
        let t = now();
        let record = LogRecord {
            time_unix_nano: t,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: text("disk almost full"),
            attributes: vec![kv_str("secret", "x"), kv_str("a", "b")],
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let out = preparer(false)
            .prepare(&message(vec![record.clone(), record]))
            .unwrap();
        assert_eq!(out.rows.len(), 2);
        let r = &out.rows[0];
        assert_eq!(r.record_id, out.rows[1].record_id);
        assert_eq!(r.body.as_deref(), Some("\"disk almost full\""));
        assert_eq!(r.attributes, r#"{"a":"b"}"#, "DROP_ATTRIBUTES applies");
        assert_eq!((r.severity_number, r.service.as_str()), (13, "svc"));
        assert_eq!(r.trace_id, Some([1; 16]));
    }

    #[test]
    fn genai_bodies_follow_the_content_policy_and_long_bodies_are_cut() {
        let t = now();
        let event = LogRecord {
            time_unix_nano: t,
            event_name: "gen_ai.user.message".into(),
            body: text("mail jane@example.com"),
            ..Default::default()
        };
        let long = LogRecord {
            time_unix_nano: t,
            body: text(&"é".repeat(200)),
            ..Default::default()
        };
        let off = preparer(false)
            .prepare(&message(vec![event.clone(), long]))
            .unwrap();
        assert_eq!(off.rows[0].body, None, "content not captured");
        assert!(off.rows[1]
            .body
            .as_ref()
            .unwrap()
            .ends_with("…[truncated]\""));
        assert_eq!(off.truncated, 1);
        let on = preparer(true).prepare(&message(vec![event])).unwrap();
        assert_eq!(on.rows[0].body.as_deref(), Some("\"mail [EMAIL]\""));
    }

    #[test]
    fn evaluation_records_become_scores_of_their_span() {
        let t = now();
        let eval = LogRecord {
            time_unix_nano: t,
            event_name: "gen_ai.evaluation.result".into(),
            attributes: vec![
                kv_str("gen_ai.evaluation.name", "relevance"),
                kv_str("gen_ai.evaluation.score.label", "relevant"),
            ],
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let orphan = LogRecord {
            trace_id: vec![],
            ..eval.clone()
        };
        let out = preparer(false)
            .prepare(&message(vec![eval, orphan]))
            .unwrap();
        assert_eq!(out.scores.len(), 1);
        assert_eq!(out.invalid_scores, 1, "no trace to score");
        assert_eq!(out.rows.len(), 2, "both are stored as records");
    }

    #[test]
    fn records_without_times_take_the_receipt_and_old_ones_are_dropped() {
        let mut m = message(vec![
            LogRecord::default(),
            LogRecord {
                time_unix_nano: 1,
                ..Default::default()
            },
        ]);
        let ms = now() / 1_000_000;
        m.headers
            .push((headers::RECEIVED_AT_MS.into(), ms.to_string().into_bytes()));
        let out = preparer(false).prepare(&m).unwrap();
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.rows[0].time, (ms * 1_000_000) as i64);
        assert_eq!(out.dropped, vec![("expired", 1)]);
    }
}
