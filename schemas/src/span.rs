//! The normalized span: one row of the `spans` table, from OTLP.
//!
//! [`flatten`] walks an `ExportTraceServiceRequest` (one Kafka message) and
//! yields one [`SpanRow`] per span, with its resource's service name and its
//! attributes, resource, events and links rendered as JSON objects
//! (`{"key": value}`), which is how PostgreSQL stores and queries them.
//! Pure code: no I/O.

use crate::ids::{self, IdError};
use crate::kafka::push_hex;
use crate::otlp::common::{any_value::Value, AnyValue, KeyValue};
use crate::otlp::trace::{ResourceSpans, Span};
use crate::otlp::trace_service::ExportTraceServiceRequest;

/// One span, ready to store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanRow {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id; `None` for a root.
    pub parent_span_id: Option<[u8; 8]>,
    /// `service.name` of the resource, or `unknown_service`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// OTLP span kind, 0 to 5.
    pub kind: i16,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// End, ns since the epoch (never before the start).
    pub end_unix_nano: u64,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i16,
    /// Status message.
    pub status_message: String,
    /// Instrumentation scope name.
    pub scope_name: String,
    /// Span attributes as a JSON object.
    pub attributes: String,
    /// Resource attributes as a JSON object.
    pub resource: String,
    /// Events as a JSON array of `{"time_unix_nano", "name", "attributes"}`.
    pub events: String,
    /// Links as a JSON array of `{"trace_id", "span_id", "attributes"}`.
    pub links: String,
}

impl SpanRow {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano - self.start_unix_nano
    }
}

/// The service name of spans whose resource names none, as OpenTelemetry SDKs default it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Finds an attribute by key.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// A string attribute.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Calls `f` with each span of the request, its resource and its scope name.
/// Fails on the first span with an invalid id.
pub fn flatten(
    request: &ExportTraceServiceRequest,
) -> Result<Vec<(SpanRow, &Span, &ResourceSpans)>, IdError> {
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let resource_attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = string_attribute(resource_attrs, "service.name").unwrap_or(UNKNOWN_SERVICE);
        let mut resource_json = String::new();
        attributes_json(resource_attrs, &mut resource_json);
        for ss in &rs.scope_spans {
            let scope_name = ss.scope.as_ref().map_or("", |s| s.name.as_str());
            for span in &ss.spans {
                out.push((row(span, service, scope_name, &resource_json)?, span, rs));
            }
        }
    }
    Ok(out)
}

fn row(
    span: &Span,
    service: &str,
    scope_name: &str,
    resource_json: &str,
) -> Result<SpanRow, IdError> {
    let mut attributes = String::new();
    attributes_json(&span.attributes, &mut attributes);
    let mut events = String::from("[");
    for (i, e) in span.events.iter().enumerate() {
        if i > 0 {
            events.push(',');
        }
        events.push_str(&format!(
            "{{\"time_unix_nano\":{},\"name\":",
            e.time_unix_nano
        ));
        json_string(&e.name, &mut events);
        events.push_str(",\"attributes\":");
        attributes_json(&e.attributes, &mut events);
        events.push('}');
    }
    events.push(']');
    let mut links = String::from("[");
    for (i, l) in span.links.iter().enumerate() {
        if i > 0 {
            links.push(',');
        }
        links.push_str("{\"trace_id\":\"");
        push_hex(&mut links, &l.trace_id);
        links.push_str("\",\"span_id\":\"");
        push_hex(&mut links, &l.span_id);
        links.push_str("\",\"attributes\":");
        attributes_json(&l.attributes, &mut links);
        links.push('}');
    }
    links.push(']');
    let status = span.status.as_ref();
    Ok(SpanRow {
        trace_id: ids::trace_id(&span.trace_id)?,
        span_id: ids::span_id(&span.span_id)?,
        parent_span_id: ids::parent_span_id(&span.parent_span_id)?,
        service: service.to_owned(),
        name: span.name.clone(),
        kind: span.kind as i16,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano.max(span.start_time_unix_nano),
        status_code: status.map_or(0, |s| s.code as i16),
        status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
        scope_name: scope_name.to_owned(),
        attributes,
        resource: resource_json.to_owned(),
        events,
        links,
    })
}

/// Writes attributes as a JSON object. A repeated key keeps its last value,
/// as JSON readers do.
pub fn attributes_json(attributes: &[KeyValue], out: &mut String) {
    out.push('{');
    for (i, kv) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&kv.key, out);
        out.push(':');
        any_value_json(kv.value.as_ref(), out);
    }
    out.push('}');
}

/// Writes an OTLP value as JSON: strings, numbers, booleans, arrays and
/// objects as themselves, bytes as lowercase hex, non-finite doubles as strings.
pub fn any_value_json(value: Option<&AnyValue>, out: &mut String) {
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => json_string(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) if d.is_finite() => out.push_str(&d.to_string()),
        Some(Value::DoubleValue(d)) => json_string(&d.to_string(), out),
        Some(Value::BytesValue(b)) => {
            out.push('"');
            push_hex(out, b);
            out.push('"');
        }
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                any_value_json(Some(v), out);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => attributes_json(&kv.values, out),
        // Newer OTLP value kinds (string table references) are not used on our wire.
        #[allow(unreachable_patterns)]
        Some(_) => out.push_str("null"),
    }
}

/// Writes `s` as a JSON string literal. NUL characters, which PostgreSQL's
/// `jsonb` refuses, are written as U+FFFD.
pub fn json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs of bytes that need no escape are copied whole; every byte that
    // does is ASCII, so `i` is always a character boundary.
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0 => "\u{fffd}",
            0x01..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::common::ArrayValue;
    use crate::testing::{kv, kv_str, TraceGenerator};

    #[test]
    fn strings_are_escaped_as_json_reads_them_back() {
        for text in [
            "",
            "plain",
            "é 日本 🦀 \"q\" back\\slash",
            "\u{1}\u{1f}\n\r\t\u{7f}end",
            "\u{1}",
            "ends with a quote\"",
        ] {
            let mut out = String::new();
            json_string(text, &mut out);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, text, "{out}");
        }
        let mut out = String::from("x");
        json_string("a\0b", &mut out);
        assert_eq!(out, "x\"a\u{fffd}b\"");
    }

    #[test]
    fn attributes_become_a_json_object() {
        let attrs = vec![
            kv_str("s", "a \"quoted\"\nline\0"),
            kv("i", Value::IntValue(-3)),
            kv("d", Value::DoubleValue(0.5)),
            kv("b", Value::BoolValue(true)),
            kv("bytes", Value::BytesValue(vec![0xab, 0x01])),
            kv(
                "arr",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::IntValue(1)),
                    }],
                }),
            ),
        ];
        let mut out = String::new();
        attributes_json(&attrs, &mut out);
        assert_eq!(
            out,
            r#"{"s":"a \"quoted\"\nline�","i":-3,"d":0.5,"b":true,"bytes":"ab01","arr":[1]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["i"], -3);
    }

    #[test]
    fn every_span_of_a_request_becomes_a_row() {
        let request = TraceGenerator::new(3).request(50);
        let rows = flatten(&request).unwrap();
        assert_eq!(rows.len(), 50);
        for (row, span, _) in &rows {
            assert_eq!(row.name, span.name);
            assert!(row.end_unix_nano >= row.start_unix_nano);
            assert_ne!(row.service, UNKNOWN_SERVICE);
        }
    }
}
