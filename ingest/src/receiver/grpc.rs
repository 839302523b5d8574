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
//! decompressed, behind the concurrency [`gate`](super::gate).

use super::gate::GateLayer;
use super::signal::{Logs, Metrics, OtlpSignal, Traces};
use super::{Credentials, Pipeline};
use crate::metrics::Transport;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::metadata::MetadataMap;
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

/// A decoded request with its size on the wire (after decompression).
pub struct Decoded<T> {
    message: T,
    wire_len: usize,
}

/// Prost codec that reports bad protobuf as `INVALID_ARGUMENT`.
pub struct OtlpCodec<K>(PhantomData<K>);

impl<K: OtlpSignal> Codec for OtlpCodec<K> {
    type Encode = K::Response;
    type Decode = Decoded<K::Request>;
    type Encoder = OtlpCodec<K>;
    type Decoder = OtlpCodec<K>;
    fn encoder(&mut self) -> Self::Encoder {
        OtlpCodec(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        OtlpCodec(PhantomData)
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
        let message = <K::Request as prost::Message>::decode(src)
            .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))?;
        Ok(Some(Decoded { message, wire_len }))
    }
}

fn credentials(metadata: &MetadataMap) -> Credentials<'_> {
    Credentials::from_headers(|name| metadata.get(name).and_then(|v| v.to_str().ok()))
}

/// One unary call.
struct Export_<K>(Arc<Pipeline>, PhantomData<K>);

impl<K: OtlpSignal> UnaryService<Decoded<K::Request>> for Export_<K> {
    type Response = K::Response;
    type Future = futures::future::BoxFuture<'static, Result<tonic::Response<K::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<Decoded<K::Request>>) -> Self::Future {
        let pipeline = self.0.clone();
        Box::pin(async move {
            let (metadata, _, decoded) = request.into_parts();
            let tenant = pipeline
                .tenant(credentials(&metadata))
                .inspect_err(|error| {
                    pipeline.refuse(K::SIGNAL, Transport::Grpc, error);
                })?;
            let outcome = pipeline
                .export(
                    Transport::Grpc,
                    tenant,
                    K::wrap(decoded.message),
                    decoded.wire_len,
                )
                .await?;
            Ok(tonic::Response::new(K::respond(outcome)))
        })
    }
}

/// An OTLP export service of one signal.
pub struct OtlpService<K> {
    pipeline: Arc<Pipeline>,
    max_request_bytes: usize,
    _signal: PhantomData<K>,
}

impl<K> Clone for OtlpService<K> {
    fn clone(&self) -> Self {
        OtlpService {
            pipeline: self.pipeline.clone(),
            max_request_bytes: self.max_request_bytes,
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
        Box::pin(async move {
            if request.uri().path() != format!("/{}/Export", K::NAME) {
                return Ok(
                    Status::unimplemented(format!("{} has only Export", K::NAME)).into_http(),
                );
            }
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<K>(PhantomData))
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            let response = grpc
                .unary(Export_::<K>(pipeline, PhantomData), request)
                .await;
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
    max_request_bytes: usize,
    max_concurrent_requests: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    fn service<K: OtlpSignal>(
        pipeline: &Arc<Pipeline>,
        max_request_bytes: usize,
    ) -> OtlpService<K> {
        OtlpService {
            pipeline: pipeline.clone(),
            max_request_bytes,
            _signal: PhantomData,
        }
    }
    let gate = GateLayer::new(
        max_concurrent_requests,
        Arc::new(|| {
            Status::unavailable("the collector is at its limit of concurrent requests (COLLECTOR_MAX_CONCURRENT_REQUESTS); retry later")
                .into_http()
        }),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(gate)
        .add_service(service::<Traces>(&pipeline, max_request_bytes))
        .add_service(service::<Metrics>(&pipeline, max_request_bytes))
        .add_service(service::<Logs>(&pipeline, max_request_bytes))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
