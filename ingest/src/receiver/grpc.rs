//! OTLP/gRPC on :4317: the trace, metrics and logs `Export` services.
//!
//! The services are written against tonic's server machinery with our own
//! codec rather than the generated servers, for two reasons: the codec sees
//! the decoded request's wire length (the in-flight budget needs it), and
//! every client mistake gets a client-error status. tonic itself answers a
//! malformed message with `INTERNAL` and an oversized one with
//! `OUT_OF_RANGE`, which OTLP exporters would retry forever; here both are
//! `INVALID_ARGUMENT`.
//!
//! gzip and zstd requests are accepted, at most `COLLECTOR_MAX_REQUEST_BYTES`
//! decompressed, behind the concurrency [`gate`](super::gate). Credentials
//! are checked from the headers before the body is read; the body must
//! arrive within `COLLECTOR_BODY_TIMEOUT` (a client that sends a byte a
//! second gives its slot back then, with `UNAVAILABLE`); and the memory it
//! takes decoded is reserved before it is decoded ([`Pipeline::reserve`]).

use super::gate::GateLayer;
use super::signal::{Logs, Metrics, OtlpSignal, Traces};
use super::{Credentials, Pipeline};
use crate::budget::Reservation;
use crate::config::Limits;
use crate::metrics::Transport;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

/// A decoded request with its size on the wire (after decompression) and
/// the memory reserved for it.
pub struct Decoded<T> {
    message: T,
    wire_len: usize,
    reservation: Reservation,
}

/// Prost codec that reserves a request's decoded size before decoding it
/// and reports bad protobuf as `INVALID_ARGUMENT`.
pub struct OtlpCodec<K> {
    pipeline: Arc<Pipeline>,
    _signal: PhantomData<K>,
}

impl<K> OtlpCodec<K> {
    fn new(pipeline: Arc<Pipeline>) -> Self {
        OtlpCodec {
            pipeline,
            _signal: PhantomData,
        }
    }
}

impl<K: OtlpSignal> Codec for OtlpCodec<K> {
    type Encode = K::Response;
    type Decode = Decoded<K::Request>;
    type Encoder = OtlpCodec<K>;
    type Decoder = OtlpCodec<K>;
    fn encoder(&mut self) -> Self::Encoder {
        OtlpCodec::new(self.pipeline.clone())
    }
    fn decoder(&mut self) -> Self::Decoder {
        OtlpCodec::new(self.pipeline.clone())
    }
}

impl<K: OtlpSignal> Encoder for OtlpCodec<K> {
    type Item = K::Response;
    type Error = Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<K: OtlpSignal> Decoder for OtlpCodec<K> {
    type Item = Decoded<K::Request>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use bytes::Buf;
        let wire_len = src.remaining();
        let body = src.copy_to_bytes(wire_len);
        let reservation = self
            .pipeline
            .reserve(K::SIGNAL, false, &body)
            .inspect_err(|e| self.pipeline.refuse(K::SIGNAL, Transport::Grpc, e))?;
        let message = <K::Request as prost::Message>::decode(body)
            .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))?;
        Ok(Some(Decoded {
            message,
            wire_len,
            reservation,
        }))
    }
}

/// One unary call, of a caller whose credentials named `tenant`.
struct Export_<K> {
    pipeline: Arc<Pipeline>,
    tenant: String,
    _signal: PhantomData<K>,
}

impl<K: OtlpSignal> UnaryService<Decoded<K::Request>> for Export_<K> {
    type Response = K::Response;
    type Future = futures::future::BoxFuture<'static, Result<tonic::Response<K::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<Decoded<K::Request>>) -> Self::Future {
        let pipeline = self.pipeline.clone();
        let tenant = std::mem::take(&mut self.tenant);
        Box::pin(async move {
            let decoded = request.into_inner();
            let outcome = pipeline
                .export(
                    Transport::Grpc,
                    tenant,
                    K::wrap(decoded.message),
                    decoded.wire_len,
                    decoded.reservation,
                )
                .await?;
            Ok(tonic::Response::new(K::respond(outcome)))
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails once `timeout` has passed since the request
/// began (and records that it did): a slow client cannot hold its
/// concurrency slot for longer.
struct DeadlineBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    fired: Arc<AtomicBool>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, BoxError>>> {
        if let Poll::Ready(frame) = self.inner.as_mut().poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("the request body did not arrive in time".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// An OTLP export service of one signal.
pub struct OtlpService<K> {
    pipeline: Arc<Pipeline>,
    max_request_bytes: usize,
    body_timeout: Duration,
    _signal: PhantomData<K>,
}

impl<K> Clone for OtlpService<K> {
    fn clone(&self) -> Self {
        OtlpService {
            pipeline: self.pipeline.clone(),
            max_request_bytes: self.max_request_bytes,
            body_timeout: self.body_timeout,
            _signal: PhantomData,
        }
    }
}

impl<K: OtlpSignal> NamedService for OtlpService<K> {
    const NAME: &'static str = K::NAME;
}

impl<K, B> tower::Service<http::Request<B>> for OtlpService<K>
where
    K: OtlpSignal,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let pipeline = self.pipeline.clone();
        let max = self.max_request_bytes;
        let body_timeout = self.body_timeout;
        Box::pin(async move {
            if request.uri().path() != format!("/{}/Export", K::NAME) {
                return Ok(
                    Status::unimplemented(format!("{} has only Export", K::NAME)).into_http(),
                );
            }
            // Credentials first: an unauthenticated body is never read.
            let headers = request.headers();
            let credentials =
                Credentials::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()));
            let client = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr());
            let tenant =
                match pipeline.authenticate(credentials, K::SIGNAL, Transport::Grpc, client) {
                    Ok(tenant) => tenant,
                    Err(error) => return Ok(Status::from(error).into_http()),
                };
            let fired = Arc::new(AtomicBool::new(false));
            let (parts, body) = request.into_parts();
            let body = DeadlineBody {
                inner: Box::pin(body),
                deadline: Box::pin(tokio::time::sleep(body_timeout)),
                fired: fired.clone(),
            };
            let request = http::Request::from_parts(parts, body);
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<K>::new(pipeline.clone()))
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            let export = Export_::<K> {
                pipeline: pipeline.clone(),
                tenant,
                _signal: PhantomData,
            };
            let response = grpc.unary(export, request).await;
            if fired.load(Ordering::Relaxed) {
                let error = crate::error::IngestError::Body(format!(
                    "it did not arrive within {body_timeout:?} (COLLECTOR_BODY_TIMEOUT)"
                ));
                pipeline.refuse(K::SIGNAL, Transport::Grpc, &error);
                return Ok(Status::from(error).into_http());
            }
            Ok(client_errors_as_invalid_argument(response, max))
        })
    }
}

/// tonic answers framing problems of the request itself (too large, broken
/// compression) with `OUT_OF_RANGE` or `INTERNAL`; they are the client's
/// mistake and must not be retried, so they become `INVALID_ARGUMENT`.
fn client_errors_as_invalid_argument(
    response: http::Response<Body>,
    max: usize,
) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    match status.code() {
        tonic::Code::OutOfRange => Status::invalid_argument(format!(
            "request is larger than {max} bytes (COLLECTOR_MAX_REQUEST_BYTES)"
        ))
        .into_http(),
        tonic::Code::Internal | tonic::Code::ResourceExhausted
            if status.message().starts_with("Error decompressing") =>
        {
            Status::invalid_argument(status.message()).into_http()
        }
        _ => response,
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: Arc<Pipeline>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    fn service<K: OtlpSignal>(pipeline: &Arc<Pipeline>, limits: &Limits) -> OtlpService<K> {
        OtlpService {
            pipeline: pipeline.clone(),
            max_request_bytes: limits.max_request_bytes,
            body_timeout: limits.body_timeout,
            _signal: PhantomData,
        }
    }
    let gate = GateLayer::new(
        limits.max_concurrent_requests,
        Arc::new(|| {
            Status::unavailable("the collector is at its limit of concurrent requests (COLLECTOR_MAX_CONCURRENT_REQUESTS); retry later")
                .into_http()
        }),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(gate)
        .add_service(service::<Traces>(&pipeline, &limits))
        .add_service(service::<Metrics>(&pipeline, &limits))
        .add_service(service::<Logs>(&pipeline, &limits))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
