//! The Tempo block sink: `observatory-consumer tempo`.
//!
//! Reads `otlp_spans` in its own consumer group (`observatory-tempo`) and
//! writes Grafana Tempo vParquet4 blocks (`observatory_schemas::tempo`) to
//! object storage ([`store`]). Delivery, through the shared flow of
//! [`crate::source`]:
//!
//! - a batch is cut when its estimated parquet reaches
//!   `TEMPO_BLOCK_MAX_BYTES`, when the OTLP it holds reaches
//!   `TEMPO_MAX_BUFFER_BYTES` (memory stays bounded: a loaded sink cuts
//!   earlier rather than grows), `TEMPO_BLOCK_MAX_AGE` after its first
//!   message, on partition revocation and on SIGTERM;
//! - a cut writes one block per (tenant, partition) of the batch, each
//!   holding one row per trace, all of that trace's spans merged;
//! - offsets are committed only after every block of the batch was written
//!   completely, `meta.json` last;
//! - block ids are UUIDv5 of (tenant, partition, first offset, 1), as Tempo's
//!   own Kafka block builder makes them: after a crash the batch is read
//!   again from the committed offset, which is the first offset of the same
//!   blocks, so they are rewritten under the same ids instead of copied.
//!
//! Object storage down or slow: the write fails as transient and the source
//! retries it with backoff, committing nothing meanwhile.

pub mod store;

use crate::admin::Health;
use crate::config::TempoArgs;
use crate::metrics::{Metrics, SinkLabels};
use crate::source::{self, InMessage, Sink, WriteError};
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::meta::{block_id, tenant_folder};
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockError, BlockWriter};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use store::BlockStore;
use thiserror::Error;
use tracing::{info, warn};

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "tempo";

/// The parquet-to-OTLP-protobuf size ratio assumed before the first block
/// has measured it (a conservative guess: parquet is usually far smaller).
const INITIAL_RATIO: f64 = 0.5;

/// Why the sink could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The object store URL cannot be used.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Kafka client creation failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The admin port could not be bound.
    #[error("cannot listen on the admin address: {0}")]
    Admin(std::io::Error),
}

/// One message's spans, decoded.
#[derive(Debug)]
pub struct TraceMessage {
    tenant: String,
    partition: i32,
    offset: i64,
    spans: u64,
    /// Bytes of OTLP protobuf it came as.
    payload_bytes: usize,
    resource_spans: Vec<ResourceSpans>,
    /// The trace ids its spans belong to (one, from our collector).
    trace_ids: Vec<[u8; 16]>,
}

impl TraceMessage {
    /// The trace ids of its spans.
    pub fn trace_ids(&self) -> &[[u8; 16]] {
        &self.trace_ids
    }

    /// Its spans.
    pub fn resource_spans(&self) -> &[ResourceSpans] {
        &self.resource_spans
    }
}

/// Decodes a message of `otlp_spans`, or says why it can never be written.
pub fn decode(message: &InMessage) -> Result<TraceMessage, String> {
    if let Some(signal) = message.header(headers::OTLP_SIGNAL) {
        if signal != "traces" {
            return Err(format!("a {signal} message on a traces topic"));
        }
    }
    let request = ExportTraceServiceRequest::decode(&message.payload[..])
        .map_err(|e| format!("undecodable OTLP protobuf: {e}"))?;
    let mut trace_ids: Vec<[u8; 16]> = Vec::with_capacity(1);
    let mut spans = 0;
    for span in request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
    {
        let id = observatory_schemas::ids::trace_id(&span.trace_id)
            .map_err(|e| format!("invalid span: {e}"))?;
        if !trace_ids.contains(&id) {
            trace_ids.push(id);
        }
        spans += 1;
    }
    Ok(TraceMessage {
        tenant: message.tenant().to_owned(),
        partition: message.partition,
        offset: message.offset,
        spans,
        payload_bytes: message.payload.len(),
        resource_spans: request.resource_spans,
        trace_ids,
    })
}

/// The sink: blocks from batches, into one object store.
pub struct TempoSink {
    store: BlockStore,
    row_group_bytes: usize,
    block_max_bytes: usize,
    /// Parquet bytes per OTLP protobuf byte of the last block of 1 MiB or
    /// more of OTLP, for the size estimate of the next cut.
    ratio: f64,
    metrics: Arc<Metrics>,
}

impl TempoSink {
    /// A sink writing to `store`.
    pub fn new(
        store: BlockStore,
        block_max_bytes: usize,
        row_group_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> TempoSink {
        TempoSink {
            store,
            row_group_bytes,
            block_max_bytes,
            ratio: INITIAL_RATIO,
            metrics,
        }
    }
}

/// The messages of one block: its tenant and partition, and its traces.
type BlockInput<'a> = BTreeMap<(&'a str, i32), Vec<&'a TraceMessage>>;

impl Sink for TempoSink {
    type Item = TraceMessage;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<TraceMessage, String> {
        decode(message)
    }

    async fn write(&mut self, items: &[&TraceMessage]) -> Result<(), WriteError> {
        let mut blocks: BlockInput<'_> = BTreeMap::new();
        for item in items {
            blocks
                .entry((item.tenant.as_str(), item.partition))
                .or_default()
                .push(item);
        }
        let labels = SinkLabels { sink: NAME };
        for ((tenant, partition), messages) in blocks {
            let mut traces: BTreeMap<[u8; 16], Vec<&[ResourceSpans]>> = BTreeMap::new();
            for m in &messages {
                for id in &m.trace_ids {
                    traces.entry(*id).or_default().push(&m.resource_spans);
                }
            }
            let first_offset = messages.iter().map(|m| m.offset).min().unwrap_or(0);
            let folder = tenant_folder(tenant);
            let id = block_id(folder, partition as u64, first_offset as u64, 1);
            let block = build_block(&traces, id, folder, self.row_group_bytes)
                .map_err(|e| WriteError::Permanent(format!("block {id}: {e}")))?;
            let started = Instant::now();
            let bytes = self
                .store
                .put_block(&block)
                .await
                .map_err(|e| WriteError::Transient(format!("object store: {e}")))?;
            self.metrics
                .upload_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            let spans: u64 = messages.iter().map(|m| m.spans).sum();
            self.metrics.blocks.get_or_create(&labels).inc();
            self.metrics
                .block_bytes
                .get_or_create(&labels)
                .inc_by(bytes);
            self.metrics
                .block_traces
                .get_or_create(&labels)
                .inc_by(traces.len() as u64);
            self.metrics
                .block_spans
                .get_or_create(&labels)
                .inc_by(spans);
            info!(block = %id, tenant = folder, partition, first_offset, traces = traces.len(), spans, bytes, "block written");
            let payload: usize = messages.iter().map(|m| m.payload_bytes).sum();
            if payload > 1 << 20 {
                self.ratio = (block.meta.size as f64 / payload as f64).clamp(0.05, 1.0);
            }
        }
        Ok(())
    }

    fn batch_bytes_limit(&self) -> usize {
        (self.block_max_bytes as f64 / self.ratio) as usize
    }
}

/// Builds the block of `traces` (sorted by id, as a BTreeMap keeps them).
pub fn build_block(
    traces: &BTreeMap<[u8; 16], Vec<&[ResourceSpans]>>,
    id: uuid::Uuid,
    folder: &str,
    row_group_bytes: usize,
) -> Result<observatory_schemas::tempo::write::Block, BlockError> {
    let mut writer = BlockWriter::new(traces.len() as u64, row_group_bytes)?;
    for (trace_id, batches) in traces {
        if let Some(row) = TraceRow::merge(*trace_id, batches) {
            writer.push(&row)?;
        }
    }
    writer.finish(id, folder)
}

/// Runs the sink until `stop` is set (SIGTERM): then cuts, writes, commits.
pub async fn run(args: TempoArgs, stop: Arc<AtomicBool>) -> Result<(), StartError> {
    args.check()?;
    let kafka = args.kafka.clone().into_config(NAME)?;
    let url = args.store_url();
    let store = BlockStore::open(&url, args.s3_virtual_hosted_style)?;
    info!(store = %store.description, "blocks go to object storage");
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    health.store_ok.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(StartError::Admin)?;
    let admin = crate::admin::router(metrics.clone(), health.clone());
    tokio::spawn(async move { axum::serve(listener, admin).await });

    let sink = TempoSink::new(
        store,
        args.tempo_block_max_bytes,
        args.tempo_row_group_bytes,
        metrics.clone(),
    );
    let batching = source::Batching {
        batch_size: usize::MAX,
        batch_bytes: args.tempo_max_buffer_bytes,
        flush_interval: args.tempo_block_max_age,
    };
    let shared = source::Shared {
        metrics,
        health: health.clone(),
        runtime: tokio::runtime::Handle::current(),
        stop: stop.clone(),
    };
    let consumer = std::thread::Builder::new()
        .name("tempo-consumer".into())
        .spawn(move || source::run(sink, kafka, batching, shared))
        .expect("spawning the consumer thread");
    let result = tokio::task::spawn_blocking(move || consumer.join()).await;
    health.draining.store(true, Ordering::Relaxed);
    match result {
        Ok(Ok(r)) => r.map_err(StartError::Kafka),
        _ => {
            warn!("the consumer thread panicked");
            Ok(())
        }
    }
}
