//! The HTTP server: the warp routes behind hyper, with one layer around
//! every request. It gives the request an id (`X-Request-Id`: the client's
//! when it sends a sane one, else a new one; sent back in the answer),
//! hands the routes an [`AuditHandle`] through the request's extensions
//! (the token check and the handlers record what they learn in it), and
//! once the answer is ready writes the request's audit event
//! ([`crate::audit`]). On shutdown it stops accepting and lets the
//! connections in flight finish, as warp's own server does.

use crate::audit::{AuditHandle, Auditor, Request};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tower::Service;
use warp::http::HeaderValue;
use warp::Filter;

/// Longest `X-Request-Id` kept from a client.
const MAX_REQUEST_ID: usize = 64;

/// A new request id: this process's start and a counter, hex.
fn new_request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 40
    });
    format!("{start:016x}{:08x}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The request's id: the client's `X-Request-Id` when it is at most 64
/// characters of `[A-Za-z0-9._-]`, else a new one.
fn request_id(headers: &warp::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// Serves `routes` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve<F, R>(
    listener: tokio::net::TcpListener,
    routes: F,
    auditor: Auditor,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let filtered = warp::service(routes.clone());
        let auditor = auditor.clone();
        let service = hyper::service::service_fn(
            move |mut req: warp::http::Request<hyper::body::Incoming>| {
                let mut filtered = filtered.clone();
                let auditor = auditor.clone();
                async move {
                    let started = Instant::now();
                    let id = request_id(req.headers());
                    let handle = AuditHandle::default();
                    req.extensions_mut().insert(handle.clone());
                    let path = req.uri().path().to_owned();
                    let audited = auditor.audits(&path);
                    let query = req.uri().query().map(str::to_owned);
                    let method = req.method().to_string();
                    let mut response = match filtered.call(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    if let Ok(value) = HeaderValue::from_str(&id) {
                        response.headers_mut().insert("x-request-id", value);
                    }
                    if audited {
                        let bytes = http_body::Body::size_hint(response.body()).exact();
                        let event = auditor.event(
                            &Request {
                                request_id: &id,
                                client: Some(remote),
                                method: &method,
                                path: &path,
                                query: query.as_deref(),
                                status: response.status().as_u16(),
                                result_bytes: bytes,
                                latency: started.elapsed(),
                            },
                            &handle,
                        );
                        auditor.emit(&event);
                    }
                    Ok::<_, Infallible>(response)
                }
            },
        );
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_others_replaced() {
        let mut h = warp::http::HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        assert_eq!(request_id(&h).len(), 24);
        assert_ne!(new_request_id(), new_request_id());
    }
}
