//! Tempo blocks as the sink leaves them over a long time, written straight
//! into a bucket: one block a minute, each with its deterministic id, its
//! claim and its source record, `meta.json` last (the sink's
//! [`BlockStore::put_block`]). A day of them takes seconds, where the sink
//! would take a day; the compaction tests and benchmark start from here.
//!
//! Like real traffic, some traces are cut across two consecutive blocks
//! (their spans arrived in two cuts) and some spans are in two blocks (a
//! message delivered twice), so a compactor must combine traces and drop
//! duplicate spans. Neither happens across an hour boundary.

use crate::blocks::{placed, Sent};
use futures::StreamExt;
use observatory_consumer::tempo::store::{BlockStore, Claim};
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::tempo::meta::{block_id, BlockMeta, Source};
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{Block, BlockWriter, DEFAULT_ROW_GROUP_BYTES};
use observatory_schemas::testing::{spans_by_trace, TraceGenerator};
use std::collections::BTreeMap;

/// The topic named in the source records.
pub const TOPIC: &str = "otlp_spans";
/// Offsets each block's source record claims.
pub const OFFSETS_PER_BLOCK: i64 = 100;
const MINUTE_NS: u64 = 60_000_000_000;

/// What was written.
pub struct Written {
    /// Every span, once, as a reader must find it (empty with
    /// [`Keep::Counts`]).
    pub sent: Sent,
    /// Distinct spans written.
    pub spans: usize,
    /// Every trace id, with its earliest start and latest end (ns).
    pub traces: BTreeMap<[u8; 16], (u64, u64)>,
    /// The blocks' metas.
    pub blocks: Vec<BlockMeta>,
    /// The blocks' source records.
    pub sources: Vec<Source>,
    /// Spans written, duplicates included.
    pub spans_written: usize,
}

/// Writes `minutes` one-minute blocks of about `spans_per_block` spans for
/// `tenant`, the first ending in the minute starting at `first_minute_ns`.
pub async fn write(
    store: &BlockStore,
    tenant: &str,
    first_minute_ns: u64,
    minutes: usize,
    spans_per_block: usize,
    seed: u64,
) -> Written {
    let keep = Keep::Spans;
    write_keeping(
        store,
        tenant,
        first_minute_ns,
        minutes,
        spans_per_block,
        seed,
        keep,
    )
    .await
}

/// What [`write_keeping`] keeps of what it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every span (`Written::sent`), to check readers span for span.
    Spans,
    /// Counts only (`Written::sent` stays empty): for runs of millions of
    /// spans, which the spans themselves would not fit beside.
    Counts,
}

/// Blocks are uploaded 16 at a time as they are made, never all held.
const UPLOADS_AT_ONCE: usize = 16;

/// As [`write`], keeping what `keep` says.
pub async fn write_keeping(
    store: &BlockStore,
    tenant: &str,
    first_minute_ns: u64,
    minutes: usize,
    spans_per_block: usize,
    seed: u64,
    keep: Keep,
) -> Written {
    let keep_spans = keep == Keep::Spans;
    let mut written = Written {
        spans: 0,
        sent: Sent::new(),
        traces: BTreeMap::new(),
        blocks: Vec::new(),
        sources: Vec::new(),
        spans_written: 0,
    };
    let mut gen = TraceGenerator::new(seed).with_max_spans(8);
    let mut carry: BTreeMap<[u8; 16], Vec<ResourceSpans>> = BTreeMap::new();
    let mut blocks: Vec<Block> = Vec::with_capacity(UPLOADS_AT_ONCE);
    for m in 0..minutes {
        gen = gen.with_now_ns(first_minute_ns + m as u64 * MINUTE_NS + 40_000_000_000);
        let traces = spans_by_trace(gen.request(spans_per_block));
        let mut content = std::mem::take(&mut carry);
        for (k, (id, mut rs)) in traces.into_iter().enumerate() {
            let id: [u8; 16] = id[..].try_into().expect("16-byte trace ids");
            if keep_spans {
                placed(&rs, &mut written.sent);
            } else {
                written.spans += rs
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum::<usize>();
            }
            for s in rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                let e = written.traces.entry(id).or_insert((u64::MAX, 0));
                e.0 = e.0.min(s.start_time_unix_nano);
                e.1 = e.1.max(s.end_time_unix_nano);
            }
            // Never across the hour: a trace stays in one compaction window
            // (of an hour or a divisor of a day), so compacted, every span
            // is in one block.
            let next_minute = first_minute_ns / MINUTE_NS + m as u64 + 1;
            let last_minute = m + 1 == minutes || next_minute.is_multiple_of(60);
            if k % 7 == 0 && !last_minute {
                // Delivered twice: the first span again in the next cut.
                carry.entry(id).or_default().push(rs[0].clone());
            }
            if k % 5 == 0 && !last_minute && rs.len() > 1 {
                // Cut in two: the later spans in the next block.
                let later = rs.split_off(rs.len() / 2);
                carry.entry(id).or_default().extend(later);
            }
            content.entry(id).or_default().extend(rs);
        }
        let mut w = BlockWriter::new(content.len() as u64, DEFAULT_ROW_GROUP_BYTES).unwrap();
        for (id, rs) in &content {
            written.spans_written += rs.len();
            w.push(&TraceRow::merge(*id, &[rs]).unwrap()).unwrap();
        }
        // Offsets as if one message a minute-slot: unique per minute.
        let first = (first_minute_ns / MINUTE_NS + m as u64) as i64 * OFFSETS_PER_BLOCK;
        let id = block_id(tenant, 0, first as u64, 1);
        let mut block = w.finish(id, tenant).unwrap();
        let source = Source {
            topic: TOPIC.into(),
            partition: 0,
            first,
            last: first + OFFSETS_PER_BLOCK - 1,
        };
        let at = block.objects.len() - 1;
        block
            .objects
            .insert(at, (source.object_name(), bytes::Bytes::new()));
        written.sources.push(source);
        written.blocks.push(block.meta.clone());
        blocks.push(block);
        if blocks.len() == UPLOADS_AT_ONCE || m + 1 == minutes {
            upload(store, tenant, std::mem::take(&mut blocks)).await;
        }
    }
    if keep_spans {
        written.spans = written.sent.len();
    }
    written
}

async fn upload(store: &BlockStore, tenant: &str, blocks: Vec<Block>) {
    futures::stream::iter(blocks)
        .map(|block| async move {
            let claim = store
                .claim(tenant, block.meta.block_id, "minute_blocks")
                .await
                .unwrap();
            assert_eq!(claim, Claim::Won, "block {} exists", block.meta.block_id);
            store.put_block(&block, || true).await.unwrap();
        })
        .buffer_unordered(UPLOADS_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
}
