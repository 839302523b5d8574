//! Trace by id in a 1 GiB Tempo block: the bytes one lookup reads from
//! object storage and its latency, through the API's own reader
//! (`Blocks::find`: bloom shard, then the data file's footer, a row group's
//! offset index and TraceID column, one page per column), against reading
//! the whole data file as the reader did before.
//!
//! ```text
//! cargo bench -p observatory-api --bench block_lookup
//! ```
//!
//! `BENCH_OBJECT_STORE_URL` (default `file:///tmp/observatory-bench-blocks`)
//! is where the block is written once and kept for later runs; for the
//! stack's S3 server: `s3://observatory/bench` with `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP=true` and the keys. `BENCH_BLOCK_BYTES` (default 1 GiB)
//! is the data file's least size.
#![allow(missing_docs)]

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use observatory_api::blocks::{Blocks, BlocksArgs};
use observatory_plumbing::store::StoreOptions;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::{block_id, bloom_name, tenant_folder, DATA, META};
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{BlockWriter, DEFAULT_ROW_GROUP_BYTES};
use observatory_schemas::testing::{spans_by_trace, TraceGenerator};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANT: &str = "default";

/// The id of the `i`th trace of a block of `target` bytes: ascending,
/// spread over the whole id space (about 1 KiB per trace).
fn trace_id(i: u64, target: usize) -> [u8; 16] {
    let step = u128::MAX / (target as u128 / 900 + 1);
    ((u128::from(i) + 1) * step).to_be_bytes()
}

/// Process CPU time (user + system), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Writes a block of at least `target` bytes of `data.parquet`; the
/// number of traces in it.
async fn write_block(store: &Arc<dyn ObjectStore>, folder: &str, id: &str, target: usize) -> u64 {
    let started = Instant::now();
    let mut generator = TraceGenerator::new(42).with_content_bytes(1024);
    let mut writer = BlockWriter::new((target / 1_000) as u64, DEFAULT_ROW_GROUP_BYTES).unwrap();
    let mut next = 0u64;
    let mut spans = 0usize;
    while writer.bytes_written() < target {
        spans += 512;
        for (_, mut batches) in spans_by_trace(generator.request(512)) {
            let new_id = trace_id(next, target);
            next += 1;
            for rs in &mut batches {
                for s in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
                    s.trace_id = new_id.to_vec();
                }
            }
            let slices: Vec<&[ResourceSpans]> = batches.iter().map(std::slice::from_ref).collect();
            writer
                .push(&TraceRow::merge(new_id, &slices).unwrap())
                .unwrap();
        }
    }
    let block = writer.finish(id.parse().unwrap(), folder).expect("block");
    eprintln!(
        "wrote {next} traces, {spans} spans in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (name, bytes) in block.objects {
        let path = Path::from(format!("{folder}/{id}/{name}"));
        let upload = store.put_multipart(&path).await.unwrap();
        let mut write = WriteMultipart::new_with_chunk_size(upload, 32 << 20);
        write.write(&bytes);
        write.finish().await.unwrap();
    }
    next
}

#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    bytes: Vec<u64>,
}

impl Figures {
    fn line(&mut self, what: &str) {
        self.latencies.sort();
        self.bytes.sort();
        let n = self.latencies.len();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{what:<44} n={n:<3} p50 {:>8.2} ms  max {:>8.2} ms  bytes p50 {:>9}  max {:>9}",
            ms(self.latencies[n / 2]),
            ms(self.latencies[n - 1]),
            self.bytes[n / 2],
            self.bytes[n - 1]
        );
    }
}

async fn lookup(blocks: &Blocks, id: &[u8; 16], figures: &mut Figures) -> bool {
    let before = blocks.read_bytes();
    let started = Instant::now();
    let found = blocks.find(TENANT, id).await.expect("lookup").is_some();
    figures.latencies.push(started.elapsed());
    figures.bytes.push(blocks.read_bytes() - before);
    found
}

fn blocks_of(url: &str) -> Blocks {
    Blocks::open(&BlocksArgs {
        object_store_url: Some(url.to_owned()),
        s3_virtual_hosted_style: false,
        blocks_list_refresh: Duration::from_secs(3600),
        blocks_bloom_cache_bytes: 64 << 20,
        blocks_footer_cache_bytes: 256 << 20,
        blocks_pricing_file: None,
        blocks_not_found_ttl: Duration::from_secs(30),
        blocks_tenant_concurrency: 4,
        blocks_tenant_index_max_age: Duration::from_secs(15 * 60),
        blocks_search_max_bytes: 256 << 20,
        blocks_search_concurrency: 32,
    })
    .unwrap()
    .unwrap()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("BENCH_OBJECT_STORE_URL")
        .unwrap_or_else(|_| "file:///tmp/observatory-bench-blocks".into());
    let target: usize = std::env::var("BENCH_BLOCK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let store = observatory_plumbing::store::open(&url, StoreOptions::READER).unwrap();
    let folder = tenant_folder(TENANT);
    let id = block_id(folder, target as u64, 0, 1).to_string();
    let meta_path = Path::from(format!("{folder}/{id}/{META}"));
    let traces = match store.get(&meta_path).await {
        Ok(meta) => {
            let meta: serde_json::Value =
                serde_json::from_slice(&meta.bytes().await.unwrap()).unwrap();
            meta["totalObjects"].as_u64().expect("totalObjects")
        }
        Err(_) => write_block(&store, folder, &id, target).await,
    };
    let data_path = Path::from(format!("{folder}/{id}/{DATA}"));
    let size = store.head(&data_path).await.unwrap().size;
    println!(
        "block {id}: data.parquet {} MiB, {traces} traces, at {url}",
        size >> 20
    );

    let blocks = blocks_of(&url);
    // The first lookup lists the tenant, reads meta.json and a bloom shard.
    let mut first = Figures::default();
    assert!(lookup(&blocks, &trace_id(traces / 2, target), &mut first).await);
    first.line("first lookup (list, meta, bloom, data)");

    let cpu_before = cpu();
    let mut present = Figures::default();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let picks: Vec<u64> = [0, traces - 1]
        .into_iter()
        .chain((0..60).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % traces
        }))
        .collect();
    for i in &picks {
        assert!(
            lookup(&blocks, &trace_id(*i, target), &mut present).await,
            "trace {i}"
        );
    }
    let cpu_present = cpu() - cpu_before;
    present.line("trace present (bloom cached)");
    println!(
        "  CPU {:.2} ms per lookup",
        cpu_present.as_secs_f64() * 1e3 / picks.len() as f64
    );

    // Absent ids: most are ruled out by the bloom shard; find some that
    // the bloom lets through (its false positives), the worst case.
    let mut shards: BTreeMap<u64, Bloom> = BTreeMap::new();
    let meta: serde_json::Value =
        serde_json::from_slice(&store.get(&meta_path).await.unwrap().bytes().await.unwrap())
            .unwrap();
    let shard_count = meta["bloomShards"].as_u64().unwrap();
    let mut bloom_negative = Figures::default();
    let mut bloom_positive = Figures::default();
    let mut tried = 0u64;
    while bloom_positive.latencies.len() < 10 && tried < 5_000_000 {
        tried += 1;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut absent = [0u8; 16];
        absent[..8].copy_from_slice(&state.to_be_bytes());
        absent[8..].copy_from_slice(&tried.to_be_bytes());
        let shard = shard_of(&absent, shard_count);
        if let std::collections::btree_map::Entry::Vacant(slot) = shards.entry(shard) {
            let path = Path::from(format!("{folder}/{id}/{}", bloom_name(shard)));
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            slot.insert(Bloom::from_bytes(&bytes).unwrap());
        }
        if shards[&shard].may_contain(&absent) {
            assert!(!lookup(&blocks, &absent, &mut bloom_positive).await);
        } else if bloom_negative.latencies.len() < 20 {
            assert!(!lookup(&blocks, &absent, &mut bloom_negative).await);
        }
    }
    bloom_negative.line("trace absent, bloom says no");
    if !bloom_positive.latencies.is_empty() {
        bloom_positive.line("trace absent, bloom false positive");
    }

    // Before: the whole data file read and searched.
    let started = Instant::now();
    let cpu_before = cpu();
    let data: Bytes = store.get(&data_path).await.unwrap().bytes().await.unwrap();
    let found = tokio::task::spawn_blocking(move || {
        DataFile::open(data)
            .unwrap()
            .find(&trace_id(traces / 3, target))
            .unwrap()
            .is_some()
    })
    .await
    .unwrap();
    assert!(found);
    println!(
        "{:<44} n=1   {:>8.2} ms  bytes {size}  CPU {:.2} s",
        "whole data file (before)",
        started.elapsed().as_secs_f64() * 1e3,
        (cpu() - cpu_before).as_secs_f64()
    );
}
