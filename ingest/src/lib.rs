//! `observatory-collector`: OTLP over gRPC and HTTP into Kafka, with nothing
//! acknowledged that Kafka does not have.
//!
//! The guarantee: a client is told "success" only after the broker
//! acknowledged every message of its request (`acks=all`, idempotent
//! producer). When Kafka is slow or down, or the in-flight budget is spent,
//! the answer is a retryable `UNAVAILABLE` / 503, and memory stays bounded.
//! Bad input gets a specific `INVALID_ARGUMENT` / 4xx and disturbs no one else.
//!
//! Where to start reading:
//! - [`receiver`]: the gRPC and HTTP front ends and the [`receiver::Pipeline`]
//!   they share;
//! - [`split`]: one Kafka message per trace, under the size limit (the hot path);
//! - [`producer`]: produce and wait for the acknowledgement;
//! - [`budget`], [`receiver::gate`]: what bounds memory;
//! - [`topics`]: topic creation and readiness; [`admin`]: `/metrics`, `/readyz`;
//! - [`config`]: every setting; `main.rs` only wires.

pub mod admin;
pub mod audit;
pub mod budget;
pub mod config;
pub mod error;
pub mod metrics;
pub mod producer;
pub mod quota;
pub mod receiver;
pub mod split;
pub mod topics;

use crate::budget::Budget;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::producer::Producer;
use crate::receiver::Pipeline;
use crate::topics::Readiness;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long shutdown waits for librdkafka to deliver what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the collector could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Kafka client could not be created (a bad librdkafka setting, say).
    #[error("cannot create the kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The Kafka producer failed for good (a fatal idempotence error).
    #[error("the kafka producer failed fatally, restart the collector: {0}")]
    FatalKafka(String),
    /// A server failed.
    #[error("the {server} server failed: {detail}")]
    Server {
        /// grpc, http or admin.
        server: &'static str,
        /// The error.
        detail: String,
    },
}

/// A collector with its listeners bound, ready to [`run`](Bound::run).
pub struct Bound {
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    admin: TcpListener,
}

/// Binds the three listeners.
pub async fn bind(config: Config) -> Result<Bound, RunError> {
    async fn listen(addr: SocketAddr) -> Result<TcpListener, RunError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })
    }
    Ok(Bound {
        grpc: listen(config.grpc_addr).await?,
        http: listen(config.http_addr).await?,
        admin: listen(config.admin_addr).await?,
        config,
    })
}

impl Bound {
    /// The bound addresses: gRPC, HTTP, admin.
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr, SocketAddr) {
        let addr = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
        (addr(&self.grpc), addr(&self.http), addr(&self.admin))
    }

    /// Serves until `shutdown` becomes true; then stops accepting, lets
    /// in-flight requests finish (each waits for its acknowledgement),
    /// flushes the producer and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
        let Bound {
            config,
            grpc,
            http,
            admin,
        } = self;
        let metrics = Arc::new(Metrics::new());
        let producer = Producer::new(
            config.kafka.clone(),
            config.limits.produce_timeout,
            metrics.clone(),
        )?;
        let budget = Budget::new(
            config.limits.max_inflight_bytes,
            metrics.inflight_bytes.clone(),
        );
        let pipeline = Arc::new(
            Pipeline::new(
                producer.clone(),
                budget,
                metrics.clone(),
                config.api_keys.clone(),
            )
            .with_quotas(quota::Quotas::new(config.quotas.clone())),
        );
        let readiness = Readiness::default();
        let draining = Arc::new(AtomicBool::new(false));

        // Fires on SIGTERM or on a fatal producer error: stop taking requests.
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut topics_task = tokio::spawn(topics::maintain(
            producer.clone(),
            readiness.clone(),
            metrics.clone(),
            config.environment,
            drain_rx.clone(),
        ));
        let stop = || {
            let mut drain = drain_rx.clone();
            async move {
                let _ = drain.wait_for(|stop| *stop).await;
            }
        };
        let limits = &config.limits;
        let grpc_task = tokio::spawn(receiver::grpc::serve(
            grpc,
            pipeline.clone(),
            limits.clone(),
            stop(),
        ));
        let http_router = receiver::http::router(pipeline.clone(), limits);
        let http_task = tokio::spawn(receiver::http::serve(http, http_router, stop()));
        let admin_router = admin::router(metrics.clone(), readiness, draining.clone());
        let admin_task = tokio::spawn(async move { axum::serve(admin, admin_router).await });
        info!(
            grpc = %config.grpc_addr,
            http = %config.http_addr,
            admin = %config.admin_addr,
            brokers = %config.kafka.brokers,
            "observatory-collector started"
        );

        let fatal = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => None,
            result = &mut topics_task => match result {
                Ok(Err(fatal)) => Some(fatal),
                _ => None,
            },
        };
        if let Some(fatal) = &fatal {
            tracing::error!(%fatal, "the kafka producer failed fatally; shutting down");
        }
        info!("shutting down: no new requests; finishing in-flight ones");
        draining.store(true, Ordering::Relaxed);
        let _ = drain_tx.send(true);
        let grpc_result = grpc_task.await;
        let http_result = http_task.await;
        topics_task.abort();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            warn!("the producer did not flush within {FLUSH_TIMEOUT:?}");
        }
        admin_task.abort();
        match grpc_result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(server_error("grpc", e)),
            Err(e) => return Err(server_error("grpc", e)),
        }
        match http_result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(server_error("http", e)),
            Err(e) => return Err(server_error("http", e)),
        }
        if let Some(fatal) = fatal {
            return Err(RunError::FatalKafka(fatal));
        }
        info!("observatory-collector stopped");
        Ok(())
    }
}

fn server_error(server: &'static str, e: impl std::fmt::Display) -> RunError {
    RunError::Server {
        server,
        detail: e.to_string(),
    }
}
