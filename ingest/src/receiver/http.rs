//! OTLP/HTTP on :4318: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`.
//!
//! Bodies are `application/x-protobuf` or `application/json`, optionally
//! gzip, deflate or zstd encoded. The answer comes in the request's format,
//! as the OTLP/HTTP specification says: an `Export*ServiceResponse` on
//! success (with `partialSuccess` when items were left out), a
//! `google.rpc.Status` on failure, with 503 and `Retry-After` when the client
//! should retry. Checks run cheapest first: credentials, media type and
//! encoding before the body is read; the body is read with a size cap and
//! decompressed with the same cap.

use super::decode::{self, Encoding, Format};
use super::gate::GateLayer;
use super::signal::{Logs, Metrics, OtlpSignal, Traces};
use super::{Credentials, Outcome, Pipeline};
use crate::error::IngestError;
use crate::metrics::Transport;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use observatory_schemas::kafka::Signal;
use prost::Message;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    /// gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone)]
struct HttpState {
    pipeline: Arc<Pipeline>,
    max_request_bytes: usize,
    body_timeout: Duration,
    retry_after: HeaderValue,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The router of the three OTLP/HTTP paths.
pub fn router(pipeline: Arc<Pipeline>, limits: &crate::config::Limits) -> Router {
    let max_concurrent = limits.max_concurrent_requests;
    let retry_after = HeaderValue::from(limits.retry_after_seconds);
    let state = HttpState {
        pipeline,
        max_request_bytes: limits.max_request_bytes,
        body_timeout: limits.body_timeout,
        retry_after: retry_after.clone(),
    };
    let gate = GateLayer::new(
        max_concurrent,
        Arc::new(move || {
            let error = RpcStatus {
                code: observatory_schemas::error_code::grpc::UNAVAILABLE,
                message: "the collector is at its limit of concurrent requests (COLLECTOR_MAX_CONCURRENT_REQUESTS); retry later".into(),
            };
            let mut response =
                (StatusCode::SERVICE_UNAVAILABLE, error.encode_to_vec()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.clone());
            response
        }),
    );
    Router::new()
        .route("/v1/traces", post(handle::<Traces>))
        .route("/v1/metrics", post(handle::<Metrics>))
        .route("/v1/logs", post(handle::<Logs>))
        .layer(gate)
        .with_state(state)
}

async fn handle<K: OtlpSignal>(
    State(state): State<HttpState>,
    request: axum::extract::Request,
) -> Response {
    // The client's address when the server was started with it (`serve`).
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    // Until the media type is known, errors are answered in protobuf.
    let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE.as_str()));
    let answer_format = *format.as_ref().unwrap_or(&Format::Protobuf);
    let transport = match answer_format {
        Format::Protobuf => Transport::HttpProtobuf,
        Format::Json => Transport::HttpJson,
    };
    match receive(&state, K::SIGNAL, format, &headers, body, transport, client).await {
        Ok(outcome) => success::<K>(answer_format, outcome),
        Err(error) => failure(&state, answer_format, error),
    }
}

async fn receive(
    state: &HttpState,
    signal: Signal,
    format: Result<Format, IngestError>,
    headers: &HeaderMap,
    body: Body,
    transport: Transport,
    client: Option<std::net::SocketAddr>,
) -> Result<Outcome, IngestError> {
    let pipeline = &state.pipeline;
    let refuse = |error: IngestError| {
        pipeline.refuse(signal, transport, &error);
        error
    };
    let tenant = pipeline.authenticate(
        Credentials::from_headers(|name| header_str(headers, name)),
        signal,
        transport,
        client,
    )?;
    let format = format.map_err(refuse)?;
    let encoding = Encoding::from_header(header_str(headers, header::CONTENT_ENCODING.as_str()))
        .map_err(refuse)?;
    let limit = state.max_request_bytes;
    let declared =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    let raw = read_body(body, limit, declared, state.body_timeout)
        .await
        .map_err(refuse)?;
    let plain = decode::decompress(encoding, raw, limit).map_err(refuse)?;
    let mut reservation = pipeline
        .reserve(signal, format == Format::Json, &plain)
        .map_err(refuse)?;
    let export = decode::decode_with(signal, format, &plain, &mut |more| {
        pipeline.grow(&mut reservation, more)
    })
    .map_err(refuse)?;
    let wire_len = plain.len();
    drop(plain);
    pipeline
        .export(transport, tenant, export, wire_len, reservation)
        .await
}

/// How much of an oversized body is read and thrown away before answering
/// 413, as a multiple of the limit. Reading it lets the client finish
/// sending and read the answer instead of failing with a broken pipe; past
/// this the connection is simply closed.
const DRAIN_FACTOR: usize = 4;
/// Reads a body of at most `limit` bytes. A larger one is answered 413 after
/// draining it (up to [`DRAIN_FACTOR`] times the limit, keeping nothing).
async fn read_body(
    body: Body,
    limit: usize,
    declared: Option<usize>,
    timeout: Duration,
) -> Result<Bytes, IngestError> {
    let too_large = IngestError::TooLarge {
        limit,
        after: " (COLLECTOR_MAX_REQUEST_BYTES)",
    };
    let drain_cap = limit.saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|length| length > drain_cap) {
        return Err(too_large);
    }
    let read = async {
        let mut body = body;
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| IngestError::Body(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > drain_cap {
                break;
            }
            if total <= limit {
                buf.extend_from_slice(&data);
            }
        }
        Ok(if total > limit {
            None
        } else {
            Some(buf.freeze())
        })
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(too_large),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(IngestError::Body(format!(
            "it did not arrive within {timeout:?} (COLLECTOR_BODY_TIMEOUT)"
        ))),
    }
}

fn encode_response<M: Message + serde::Serialize>(format: Format, message: &M) -> Vec<u8> {
    match format {
        Format::Protobuf => message.encode_to_vec(),
        Format::Json => {
            // OTLP/JSON leaves out unset fields: `{}`, not `{"partialSuccess":null}`.
            let mut value = serde_json::to_value(message).expect("OTLP responses serialize");
            if let serde_json::Value::Object(map) = &mut value {
                map.retain(|_, v| !v.is_null());
            }
            serde_json::to_vec(&value).expect("a JSON value serializes")
        }
    }
}

fn with_content_type(format: Format, status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

fn success<K: OtlpSignal>(format: Format, outcome: Outcome) -> Response {
    with_content_type(
        format,
        StatusCode::OK,
        encode_response(format, &K::respond(outcome)),
    )
}

fn failure(state: &HttpState, format: Format, error: IngestError) -> Response {
    let code = error.code();
    let status = RpcStatus {
        code: code.grpc_code(),
        message: error.to_string(),
    };
    let http_status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = with_content_type(format, http_status, encode_response(format, &status));
    if code.is_retryable() {
        let retry_after = error
            .retry_after()
            .map_or_else(|| state.retry_after.clone(), HeaderValue::from);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after);
    }
    response
}

/// Serves OTLP/HTTP on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
