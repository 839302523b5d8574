//! A concurrency gate in front of each receiver.
//!
//! At most `COLLECTOR_MAX_CONCURRENT_REQUESTS` requests per transport are
//! being read, decoded or produced at once; one more is answered at once with
//! a retryable refusal (gRPC `UNAVAILABLE`, HTTP 503 with `Retry-After`),
//! before its body is read. With the request size cap this bounds the memory
//! requests can take, and with the in-flight budget it keeps a slow Kafka
//! from piling requests up.

use futures::future::BoxFuture;
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Builds the refusal answered when the gate is full.
pub type Refusal<B> = Arc<dyn Fn() -> Response<B> + Send + Sync>;

/// The layer.
pub struct GateLayer<B> {
    permits: Arc<Semaphore>,
    refusal: Refusal<B>,
}

impl<B> Clone for GateLayer<B> {
    fn clone(&self) -> Self {
        GateLayer {
            permits: self.permits.clone(),
            refusal: self.refusal.clone(),
        }
    }
}

impl<B> GateLayer<B> {
    /// A gate of `limit` requests answering `refusal` past it.
    pub fn new(limit: usize, refusal: Refusal<B>) -> Self {
        GateLayer {
            permits: Arc::new(Semaphore::new(limit)),
            refusal,
        }
    }
}

impl<S, B> Layer<S> for GateLayer<B> {
    type Service = Gate<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            permits: self.permits.clone(),
            refusal: self.refusal.clone(),
        }
    }
}

/// The service.
pub struct Gate<S, B> {
    inner: S,
    permits: Arc<Semaphore>,
    refusal: Refusal<B>,
}

impl<S: Clone, B> Clone for Gate<S, B> {
    fn clone(&self) -> Self {
        Gate {
            inner: self.inner.clone(),
            permits: self.permits.clone(),
            refusal: self.refusal.clone(),
        }
    }
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for Gate<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                let response = (self.refusal)();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
