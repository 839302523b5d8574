//! Turning an OTLP/HTTP body into an export request: media type, content
//! encoding with a cap on the decompressed size, protobuf or OTLP/JSON.
//!
//! Every failure is a specific [`IngestError`]: a wrong media type is 415, an
//! oversized body or a decompression bomb 413, a truncated or corrupt
//! compressed body, bad protobuf or bad JSON 400, each with a message that
//! says what was wrong.
//!
//! OTLP/JSON: ids are hex, 64-bit integers strings or numbers, and enums
//! numbers **or names** (`"kind": "SPAN_KIND_SERVER"`). The fast path parses
//! straight into the protobuf types; only a body that fails it is parsed
//! again as a JSON tree in which enum names are replaced by their numbers.

use super::Export;
use crate::error::IngestError;
use observatory_schemas::kafka::Signal;
use observatory_schemas::otlp::logs::SeverityNumber;
use observatory_schemas::otlp::metrics::AggregationTemporality;
use observatory_schemas::otlp::trace::{span::SpanKind, status::StatusCode};
use prost::Message;
use serde::de::DeserializeOwned;
use std::io::Read;

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Format {
    /// Media type of answers in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }

    /// The format named by a `Content-Type` header.
    pub fn from_content_type(value: Option<&str>) -> Result<Format, IngestError> {
        let value = value.unwrap_or("");
        let media = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(IngestError::UnsupportedContentType(value.to_owned())),
        }
    }
}

/// A content encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip.
    Gzip,
    /// zlib ("deflate" in HTTP).
    Deflate,
    /// zstd.
    Zstd,
}

impl Encoding {
    /// The encoding named by a `Content-Encoding` header.
    pub fn from_header(value: Option<&str>) -> Result<Encoding, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") | Some("none") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some("deflate") => Ok(Encoding::Deflate),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(_) => Err(IngestError::UnsupportedEncoding(
                value.unwrap_or("").to_owned(),
            )),
        }
    }
}

/// Decompresses `body`, refusing output beyond `limit` bytes.
pub fn decompress(
    encoding: Encoding,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    fn read_capped(
        mut reader: impl Read,
        encoding: &'static str,
        limit: usize,
    ) -> Result<bytes::Bytes, IngestError> {
        let mut out = Vec::new();
        (&mut reader)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| IngestError::BadCompression {
                encoding,
                detail: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(IngestError::TooLarge {
                limit,
                after: " after decompression (COLLECTOR_MAX_REQUEST_BYTES)",
            });
        }
        Ok(out.into())
    }
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(&body[..]), "gzip", limit),
        Encoding::Deflate => {
            read_capped(flate2::read::ZlibDecoder::new(&body[..]), "deflate", limit)
        }
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(|e| {
                IngestError::BadCompression {
                    encoding: "zstd",
                    detail: e.to_string(),
                }
            })?;
            read_capped(decoder, "zstd", limit)
        }
    }
}

/// Decodes a body of `signal` in `format`.
pub fn decode(signal: Signal, format: Format, body: &[u8]) -> Result<Export, IngestError> {
    decode_with(signal, format, body, &mut |_| Ok(()))
}

/// [`decode`], calling `grow(bytes)` before an OTLP/JSON body is parsed a
/// second time as a JSON tree (enum names): the memory that takes on top
/// of the first parse's estimate, which the caller reserves (or refuses).
pub fn decode_with(
    signal: Signal,
    format: Format,
    body: &[u8],
    grow: &mut dyn FnMut(usize) -> Result<(), IngestError>,
) -> Result<Export, IngestError> {
    Ok(match (signal, format) {
        (Signal::Traces, Format::Protobuf) => Export::Traces(Message::decode(body)?),
        (Signal::Metrics, Format::Protobuf) => Export::Metrics(Message::decode(body)?),
        (Signal::Logs, Format::Protobuf) => Export::Logs(Message::decode(body)?),
        (Signal::Traces, Format::Json) => Export::Traces(from_json(body, grow)?),
        (Signal::Metrics, Format::Json) => Export::Metrics(from_json(body, grow)?),
        (Signal::Logs, Format::Json) => Export::Logs(from_json(body, grow)?),
    })
}

fn from_json<T: DeserializeOwned>(
    body: &[u8],
    grow: &mut dyn FnMut(usize) -> Result<(), IngestError>,
) -> Result<T, IngestError> {
    match serde_json::from_slice::<T>(body) {
        Ok(value) => Ok(value),
        Err(first) => {
            grow(observatory_schemas::decoded_size::estimate_json_tree(body))?;
            // The slow path: enum names. Report the first error if it fails too.
            let mut tree: serde_json::Value = serde_json::from_slice(body)
                .map_err(|_| IngestError::MalformedJson(first.to_string()))?;
            if !normalize_enum_names(&mut tree) {
                return Err(IngestError::MalformedJson(first.to_string()));
            }
            serde_json::from_value(tree).map_err(|e| IngestError::MalformedJson(e.to_string()))
        }
    }
}

/// Replaces OTLP enum names by their numbers, in place; true when any was replaced.
fn normalize_enum_names(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if let Value::String(name) = v {
                    let number = match key.as_str() {
                        "kind" => SpanKind::from_str_name(name).map(|e| e as i32),
                        "code" => StatusCode::from_str_name(name).map(|e| e as i32),
                        "aggregationTemporality" => {
                            AggregationTemporality::from_str_name(name).map(|e| e as i32)
                        }
                        "severityNumber" => SeverityNumber::from_str_name(name).map(|e| e as i32),
                        _ => None,
                    };
                    if let Some(n) = number {
                        *v = Value::from(n);
                        changed = true;
                    }
                } else {
                    changed |= normalize_enum_names(v);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= normalize_enum_names(item);
            }
        }
        _ => {}
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_types() {
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        let err = Format::from_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(err.code().http_status(), 415);
        assert!(err.to_string().contains("text/plain"));
        assert!(Format::from_content_type(None).is_err());
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 100_000);
        let err = decompress(Encoding::Gzip, bomb.into(), 1 << 20).unwrap_err();
        assert_eq!(err.code().http_status(), 413);
        assert!(err.to_string().contains("after decompression"), "{err}");
    }

    #[test]
    fn truncated_gzip_is_a_bad_request() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello hello hello hello").unwrap();
        let mut body = gz.finish().unwrap();
        body.truncate(body.len() / 2);
        let err = decompress(Encoding::Gzip, body.into(), 1 << 20).unwrap_err();
        assert_eq!(err.code().http_status(), 400);
        assert!(err.to_string().starts_with("invalid gzip body"), "{err}");
    }

    #[test]
    fn json_with_enum_names_and_string_integers() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "name":"chat","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,"status":{"code":"STATUS_CODE_ERROR"},
            "attributes":[{"key":"n","value":{"intValue":"42"}}],"unknownField":1}]}]}]}"#;
        let Export::Traces(request) = decode(Signal::Traces, Format::Json, body).unwrap() else {
            panic!("traces expected")
        };
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.trace_id[0], 0x5b);
    }

    #[test]
    fn bad_json_says_where() {
        let err = decode(Signal::Traces, Format::Json, br#"{"resourceSpans": [}"#).unwrap_err();
        assert_eq!(err.code().http_status(), 400);
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn bad_protobuf_is_a_bad_request() {
        let err = decode(Signal::Traces, Format::Protobuf, &[0x0a, 0xff, 0xff, 0x01]).unwrap_err();
        assert_eq!(err.code().http_status(), 400);
        assert!(err.to_string().starts_with("malformed protobuf"), "{err}");
    }
}
