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
use crate::redact::Policy;
use crate::source::{self, InMessage, Sink, WriteError};
use bytes::Bytes;
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::meta::{block_id, tenant_folder};
use observatory_schemas::tempo::skim::skim;
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockError, BlockWriter};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use store::BlockStore;
use thiserror::Error;
use tracing::info;

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "tempo";

/// The parquet-to-OTLP-protobuf size ratio assumed before the first block
/// has measured it (a conservative guess: parquet is usually far smaller).
const INITIAL_RATIO: f64 = 0.25;

/// The `seq` of the ids of blocks written from the dead-letter topic: their
/// partition and offsets are the dead-letter topic's, so the ids must differ
/// from those of blocks cut from the traces topic.
pub const REDELIVERY_BLOCK_SEQ: u64 = 1 << 32;

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

/// One message of a cut: where it came from, which traces it holds, and
/// its bytes (shared with the source's copy, decoded only when its block
/// is built, so a cut holds the compact protobuf and not the decoded spans).
#[derive(Debug)]
pub struct TraceMessage {
    tenant: String,
    partition: i32,
    offset: i64,
    spans: u64,
    payload: Bytes,
    /// The trace ids its spans belong to (one, from our collector).
    trace_ids: Vec<[u8; 16]>,
}

impl TraceMessage {
    /// The trace ids of its spans.
    pub fn trace_ids(&self) -> &[[u8; 16]] {
        &self.trace_ids
    }

    /// Its OTLP protobuf.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// Reads what a message holds without decoding its spans (the framing and
/// the trace ids are checked), or says why it can never be written.
pub fn decode(message: &InMessage) -> Result<TraceMessage, String> {
    if let Some(signal) = message.header(headers::OTLP_SIGNAL) {
        if signal != "traces" {
            return Err(format!("a {signal} message on a traces topic"));
        }
    }
    let skimmed = skim(&message.payload).map_err(|e| e.to_string())?;
    Ok(TraceMessage {
        tenant: message.tenant().to_owned(),
        partition: message.partition,
        offset: message.offset,
        spans: skimmed.spans,
        payload: message.payload.clone(),
        trace_ids: skimmed.trace_ids,
    })
}

/// The sink: blocks from batches, into one object store.
pub struct TempoSink {
    store: BlockStore,
    policy: Policy,
    row_group_bytes: usize,
    block_max_bytes: usize,
    write_timeout: std::time::Duration,
    /// The `seq` of the block ids it writes: 1, or [`REDELIVERY_BLOCK_SEQ`]
    /// for dead letters sent back (`dlq replay`), whose offsets are the
    /// dead-letter topic's and must not name a block of the traces topic.
    block_seq: u64,
    /// Parquet bytes per OTLP protobuf byte of the last block of 1 MiB or
    /// more of OTLP, for the size estimate of the next cut.
    ratio: f64,
    metrics: Arc<Metrics>,
}

impl TempoSink {
    /// A sink writing to `store`.
    pub fn new(
        store: BlockStore,
        policy: Policy,
        block_max_bytes: usize,
        row_group_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> TempoSink {
        TempoSink {
            store,
            policy,
            write_timeout: crate::source::WRITE_TIMEOUT,
            block_seq: 1,
            row_group_bytes,
            block_max_bytes,
            ratio: INITIAL_RATIO,
            metrics,
        }
    }
}

impl Sink for TempoSink {
    type Item = TraceMessage;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<TraceMessage, String> {
        decode(message)
    }

    /// One block per (tenant, partition), built and uploaded one at a time.
    /// A message that frames well but does not decode is left out and
    /// returned for the DLQ.
    async fn write(&mut self, items: &[&TraceMessage]) -> Result<source::Rejected, WriteError> {
        let mut groups: BTreeMap<(&str, i32), Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups
                .entry((item.tenant.as_str(), item.partition))
                .or_default()
                .push(i);
        }
        let mut rejected = Vec::new();
        for ((tenant, partition), members) in groups {
            let mut traces: BTreeMap<[u8; 16], Vec<usize>> = BTreeMap::new();
            for &i in &members {
                for id in &items[i].trace_ids {
                    traces.entry(*id).or_default().push(i);
                }
            }
            let first_offset = members.iter().map(|&i| items[i].offset).min().unwrap_or(0);
            let folder = tenant_folder(tenant);
            let id = block_id(
                folder,
                partition as u64,
                first_offset as u64,
                self.block_seq,
            );
            let block = build_block(
                &self.policy,
                items,
                &traces,
                id,
                folder,
                self.row_group_bytes,
                &mut rejected,
            )
            .map_err(|e| WriteError::Permanent(format!("block {id}: {e}")))?;
            let Some(block) = block else { continue };
            let started = Instant::now();
            let bytes = self
                .store
                .put_block(&block)
                .await
                .map_err(|e| WriteError::Transient(format!("object store: {e}")))?;
            let spans: u64 = members.iter().map(|&i| items[i].spans).sum();
            let payload: usize = members.iter().map(|&i| items[i].payload.len()).sum();
            self.count_block(&block, bytes, spans, started);
            info!(block = %id, tenant = folder, partition, first_offset, traces = block.meta.total_objects, spans, bytes, "block written");
            if payload > 1 << 20 {
                self.ratio = (block.meta.size as f64 / payload as f64).clamp(0.05, 1.0);
            }
        }
        Ok(rejected)
    }

    fn write_timeout(&self) -> std::time::Duration {
        self.write_timeout
    }

    fn batch_bytes_limit(&self) -> usize {
        (self.block_max_bytes as f64 / self.ratio) as usize
    }
}

impl TempoSink {
    /// Names its blocks for dead letters sent back from the dead-letter
    /// topic (see `block_seq`).
    pub fn for_redelivery(mut self) -> TempoSink {
        self.block_seq = REDELIVERY_BLOCK_SEQ;
        self
    }

    /// Sets how long one cut may take (build and upload).
    pub fn with_write_timeout(mut self, timeout: std::time::Duration) -> TempoSink {
        self.write_timeout = timeout;
        self
    }

    fn count_block(
        &self,
        block: &observatory_schemas::tempo::write::Block,
        bytes: u64,
        spans: u64,
        started: Instant,
    ) {
        let labels = SinkLabels { sink: NAME };
        let m = &self.metrics;
        m.upload_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        m.blocks.get_or_create(&labels).inc();
        m.block_bytes.get_or_create(&labels).inc_by(bytes);
        m.block_traces
            .get_or_create(&labels)
            .inc_by(block.meta.total_objects as u64);
        m.block_spans.get_or_create(&labels).inc_by(spans);
    }
}

/// Builds the block of `traces` (trace id -> indexes in `items` of the
/// messages holding it; a BTreeMap keeps the ids sorted, as the file must
/// be). Each trace's messages are decoded just before its row is written,
/// the content policy applied to their spans,
/// and dropped after, so memory holds one decoded trace at a time. A message
/// that does not decode is left out and added to `rejected`. `None` when no
/// trace is left.
pub fn build_block(
    policy: &Policy,
    items: &[&TraceMessage],
    traces: &BTreeMap<[u8; 16], Vec<usize>>,
    id: uuid::Uuid,
    folder: &str,
    row_group_bytes: usize,
    rejected: &mut source::Rejected,
) -> Result<Option<observatory_schemas::tempo::write::Block>, BlockError> {
    let mut writer = BlockWriter::new(traces.len() as u64, row_group_bytes)?;
    for (trace_id, members) in traces {
        let mut decoded = Vec::with_capacity(members.len());
        for &i in members {
            if rejected.iter().any(|(r, _)| *r == i) {
                continue;
            }
            match ExportTraceServiceRequest::decode(&items[i].payload[..]) {
                Ok(mut request) => {
                    policy.apply_to_request(&mut request);
                    decoded.push(request);
                }
                Err(e) => rejected.push((i, format!("undecodable OTLP protobuf: {e}"))),
            }
        }
        let batches: Vec<&[ResourceSpans]> =
            decoded.iter().map(|r| &r.resource_spans[..]).collect();
        if let Some(row) = TraceRow::merge(*trace_id, &batches) {
            writer.push(&row)?;
        }
    }
    if writer.traces() == 0 {
        return Ok(None);
    }
    writer.finish(id, folder).map(Some)
}

/// Checks the settings, opens the object store and builds the sink, its
/// Kafka settings and batching: the same for the consumer group and for a
/// replay (`crate::replay`).
pub fn build(
    args: &TempoArgs,
    metrics: Arc<Metrics>,
) -> Result<(TempoSink, crate::config::KafkaConfig, source::Batching), StartError> {
    args.check()?;
    let kafka = args.kafka.clone().into_config(NAME)?;
    let url = args.store_url();
    let store = BlockStore::open(&url, args.s3_virtual_hosted_style)?;
    info!(store = %store.description, "blocks go to object storage");
    let sink = TempoSink::new(
        store,
        args.content.policy(),
        args.tempo_block_max_bytes,
        args.tempo_row_group_bytes,
        metrics,
    )
    .with_write_timeout(args.tempo_write_timeout);
    let batching = source::Batching {
        batch_size: usize::MAX,
        batch_bytes: args.tempo_max_buffer_bytes,
        flush_interval: args.tempo_block_max_age,
    };
    Ok((sink, kafka, batching))
}

/// Runs the sink until `stop` is set (SIGTERM): then cuts, writes, commits.
pub async fn run(args: TempoArgs, stop: Arc<AtomicBool>) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let (sink, kafka, batching) = build(&args, metrics.clone())?;
    let health = Health::default();
    health.store_ok.store(true, Ordering::Relaxed);
    crate::admin::serve(args.admin_addr, metrics.clone(), health.clone())
        .await
        .map_err(StartError::Admin)?;
    let shared = source::Shared {
        metrics,
        health: health.clone(),
        runtime: tokio::runtime::Handle::current(),
        stop: stop.clone(),
    };
    source::run_on_thread(sink, kafka, batching, shared)
        .await
        .map_err(StartError::Kafka)
}
