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
//! - block ids are UUIDv5 of (tenant, partition, first offset, seq), as
//!   Tempo's own Kafka block builder makes them, and each is taken by a
//!   create-only claim before anything is written under it
//!   ([`store::BlockStore::claim`]): one id, one writer, ever. After a
//!   crash, a failed commit or a rebalance, the batch is read again from
//!   the committed offset, which is the first offset of the same blocks: a
//!   complete block there holds those messages (its source record says up
//!   to which offset), so they are skipped, not written a second time; an
//!   incomplete one is left alone and the next seq is taken;
//! - every block carries a source record (its partition and offsets,
//!   [`observatory_schemas::tempo::meta::Source`]), written before
//!   `meta.json`; a replay ([`TempoSink::for_replay`]) skips the messages
//!   that complete blocks already hold ([`coverage`]), so it writes only
//!   what is missing and never replaces a block;
//! - a partition revoked during an upload gets no `meta.json` (checked just
//!   before it): its next owner writes it.
//!
//! Object storage down or slow: the write fails as transient and the source
//! retries it with backoff, committing nothing meanwhile.

pub mod coverage;
pub mod store;

use crate::admin::Health;
use crate::config::TempoArgs;
use crate::metrics::{Metrics, SinkLabels};
use crate::redact::Policy;
use crate::source::{self, Assignment, InMessage, Sink, WriteError};
use bytes::Bytes;
use coverage::Coverage;
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::meta::{block_id, tenant_folder, Source};
use observatory_schemas::tempo::skim::skim;
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockError, BlockWriter};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use store::{BlockStore, Claim};
use thiserror::Error;
use tracing::{info, warn};

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "tempo";

/// The parquet-to-OTLP-protobuf size ratio assumed before the first block
/// has measured it (a conservative guess: parquet is usually far smaller).
const INITIAL_RATIO: f64 = 0.25;

/// The `seq` of the ids of blocks written from the dead-letter topic: their
/// partition and offsets are the dead-letter topic's, so the ids must differ
/// from those of blocks cut from the traces topic.
pub const REDELIVERY_BLOCK_SEQ: u64 = 1 << 32;

/// The `seq` of the ids of blocks a replay writes: it writes only messages
/// no complete block holds, but a block written before source records
/// existed has none, and a replay block under its id would replace it.
pub const REPLAY_BLOCK_SEQ: u64 = 2;

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
    /// The consumer loop stopped with an error.
    #[error(transparent)]
    Run(#[from] source::RunError),
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
        tenant: message.tenant()?.to_owned(),
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
    /// The `seq` of the block ids it writes: 1, [`REPLAY_BLOCK_SEQ`], or
    /// [`REDELIVERY_BLOCK_SEQ`] for dead letters sent back (`dlq replay`),
    /// whose offsets are the dead-letter topic's and must not name a block
    /// of the traces topic.
    block_seq: u64,
    /// The topic it reads, named in the blocks' source records.
    topic: String,
    /// For a replay: what the store held when it started; those messages
    /// are skipped.
    stored: Option<Coverage>,
    /// Parquet bytes per OTLP protobuf byte of the last block of 1 MiB or
    /// more of OTLP, for the size estimate of the next cut.
    ratio: f64,
    metrics: Arc<Metrics>,
    /// Who writes, in the claims it makes (host, process, start time).
    writer: String,
    /// Block ids this sink claimed and has not completed yet, with the
    /// fingerprint of the offsets they were claimed for.
    own_claims: HashMap<uuid::Uuid, u64>,
}

impl TempoSink {
    /// A sink writing to `store`.
    pub fn new(
        store: BlockStore,
        topic: &str,
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
            topic: topic.to_owned(),
            stored: None,
            row_group_bytes,
            block_max_bytes,
            ratio: INITIAL_RATIO,
            metrics,
            writer: writer_identity(),
            own_claims: HashMap::new(),
        }
    }
}

/// This process, as its claims name it.
fn writer_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{{\"writer\":\"{host}\",\"pid\":{},\"started_ns\":{started}}}",
        std::process::id()
    )
}

impl Sink for TempoSink {
    type Item = TraceMessage;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<TraceMessage, String> {
        decode(message)
    }

    /// One block per (tenant, partition), built and uploaded one at a time.
    /// A message that frames well but does not decode is left out and
    /// returned for the DLQ. A replay leaves out what the store holds; any
    /// write leaves out what a complete block at its block id holds
    /// ([`TempoSink::claim_block`]).
    async fn write(
        &mut self,
        items: &[&TraceMessage],
        owned: &Assignment,
    ) -> Result<source::Rejected, WriteError> {
        let mut groups: BTreeMap<(&str, i32), Vec<usize>> = BTreeMap::new();
        let mut already_stored = 0;
        for (i, item) in items.iter().enumerate() {
            let stored = self.stored.as_ref().is_some_and(|c| {
                c.covers(tenant_folder(&item.tenant), item.partition, item.offset)
            });
            if stored {
                already_stored += 1;
                continue;
            }
            groups
                .entry((item.tenant.as_str(), item.partition))
                .or_default()
                .push(i);
        }
        let mut rejected = Vec::new();
        for ((tenant, partition), mut members) in groups {
            if !owned.owns(&self.topic, partition) {
                // Lost in a rebalance during this cut: its next owner writes it.
                continue;
            }
            let folder = tenant_folder(tenant);
            members.sort_by_key(|&i| items[i].offset);
            let (id, skipped) = self
                .claim_block(folder, partition, items, &mut members)
                .await?;
            already_stored += skipped;
            let Some(id) = id else { continue };
            let mut traces: BTreeMap<[u8; 16], Vec<usize>> = BTreeMap::new();
            for &i in &members {
                for trace in &items[i].trace_ids {
                    traces.entry(*trace).or_default().push(i);
                }
            }
            let first_offset = items[members[0]].offset;
            let last_offset = items[*members.last().expect("not empty")].offset;
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
            let Some(mut block) = block else { continue };
            let source = Source {
                topic: self.topic.clone(),
                partition,
                first: first_offset,
                last: last_offset,
            };
            // Before `meta.json`, the last object: a complete block always
            // has its record.
            let at = block.objects.len().saturating_sub(1);
            block.objects.insert(
                at,
                (source.object_name(), source_record(&source, members.len())),
            );
            let started = Instant::now();
            let topic = self.topic.clone();
            let written = self
                .store
                .put_block(&block, || owned.owns(&topic, partition))
                .await
                .map_err(|e| WriteError::Transient(format!("object store: {e}")))?;
            self.own_claims.remove(&id);
            let Some(bytes) = written else {
                warn!(block = %id, tenant = folder, partition, "the partition was revoked during the write: the block is left incomplete for its next owner to write");
                continue;
            };
            let spans: u64 = members.iter().map(|&i| items[i].spans).sum();
            let payload: usize = members.iter().map(|&i| items[i].payload.len()).sum();
            self.count_block(&block, bytes, spans, started);
            info!(block = %id, tenant = folder, partition, first_offset, traces = block.meta.total_objects, spans, bytes, "block written");
            if payload > 1 << 20 {
                self.ratio = (block.meta.size as f64 / payload as f64).clamp(0.05, 1.0);
            }
        }
        // Counted once the write succeeded: a failed one is retried whole.
        if already_stored > 0 {
            self.metrics
                .already_stored
                .get_or_create(&SinkLabels { sink: NAME })
                .inc_by(already_stored);
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
    /// Takes a block id for `members` (the offsets of one tenant in one
    /// partition, ascending) and returns it, with how many messages were
    /// dropped from `members` because a complete block already holds them.
    ///
    /// The id is that of the first member's offset with the first free
    /// sequence number. When its claim exists:
    /// - a complete block whose source record covers the first member holds
    ///   every member up to the record's last offset (the cut of an earlier
    ///   owner whose commit did not happen, or of this writer before a
    ///   crash): those members are dropped, and the rest starts over;
    /// - otherwise (an incomplete block: an attempt that crashed, or
    ///   another writer still uploading) the next sequence number is tried.
    ///
    /// A claim this sink made for exactly these members in an earlier,
    /// failed attempt is its own to use again.
    async fn claim_block(
        &mut self,
        folder: &str,
        partition: i32,
        items: &[&TraceMessage],
        members: &mut Vec<usize>,
    ) -> Result<(Option<uuid::Uuid>, u64), WriteError> {
        let transient =
            |e: object_store::Error| WriteError::Transient(format!("object store: {e}"));
        let mut seq = self.block_seq;
        let mut skipped = 0;
        loop {
            let Some(&first) = members.first() else {
                return Ok((None, skipped));
            };
            let first = items[first].offset;
            let id = block_id(folder, partition as u64, first as u64, seq);
            let fingerprint = fingerprint(members.iter().map(|&i| items[i].offset));
            if self.own_claims.get(&id) == Some(&fingerprint) {
                return Ok((Some(id), skipped));
            }
            match self
                .store
                .claim(folder, id, &self.writer)
                .await
                .map_err(transient)?
            {
                Claim::Won => {
                    self.own_claims.insert(id, fingerprint);
                    return Ok((Some(id), skipped));
                }
                Claim::Taken => {
                    let state = self
                        .store
                        .block_state(folder, id)
                        .await
                        .map_err(transient)?;
                    let held = state.sources.iter().find(|s| {
                        s.topic == self.topic
                            && s.partition == partition
                            && (s.first..=s.last).contains(&first)
                    });
                    match held.filter(|_| state.complete) {
                        Some(source) => {
                            let before = members.len();
                            members.retain(|&i| items[i].offset > source.last);
                            skipped += (before - members.len()) as u64;
                            info!(block = %id, tenant = folder, partition, first = source.first, last = source.last, "a complete block holds these offsets already; skipping them");
                            seq = self.block_seq;
                        }
                        None => seq += 1,
                    }
                }
            }
        }
    }

    /// Names its blocks for dead letters sent back from `dlq_topic` (see
    /// `block_seq`).
    pub fn for_redelivery(mut self, dlq_topic: &str) -> TempoSink {
        self.block_seq = REDELIVERY_BLOCK_SEQ;
        self.topic = dlq_topic.to_owned();
        self
    }

    /// For a replay: skips the messages `stored` covers and names its blocks
    /// apart from the running sink's (see [`REPLAY_BLOCK_SEQ`]).
    pub fn for_replay(mut self, stored: Coverage) -> TempoSink {
        self.block_seq = REPLAY_BLOCK_SEQ;
        self.stored = Some(stored);
        self
    }

    /// Lists what the store holds of the topic it reads (for
    /// [`TempoSink::for_replay`]).
    pub async fn stored(&self) -> Result<Coverage, object_store::Error> {
        Coverage::load(&self.store, &self.topic).await
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

/// A fingerprint of a set of offsets, to recognise a retry of the same cut.
fn fingerprint(offsets: impl Iterator<Item = i64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for o in offsets {
        o.hash(&mut h);
    }
    h.finish()
}

/// The body of a block's source record, for people reading the bucket (the
/// object's name already says everything [`coverage`] needs).
fn source_record(source: &Source, messages: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"topic\":{:?},\"partition\":{},\"first_offset\":{},\"last_offset\":{},\"messages\":{messages}}}\n",
        source.topic, source.partition, source.first, source.last
    ))
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
    args.content.check()?;
    let kafka = args.kafka.clone().into_config(NAME)?;
    let url = args.store_url();
    let store = BlockStore::open(&url, args.s3_virtual_hosted_style)?;
    info!(store = %store.description, "blocks go to object storage");
    let sink = TempoSink::new(
        store,
        &kafka.topic,
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
    Ok(source::run_on_thread(sink, kafka, batching, shared).await?)
}
