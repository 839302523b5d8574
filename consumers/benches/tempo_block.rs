//! The Tempo sink's CPU hot path: skim the Kafka messages of a cut at poll
//! time (one trace each, as the collector writes them), then decode them
//! and encode them into a vParquet4 block (parquet, blooms, index, meta),
//! on one thread. And the read side: one trace found by id in such a block.
//!
//! `cargo bench -p observatory-consumer --bench tempo_block`
//!
//! With mimalloc, as the binary. Also prints the bytes stored per span (parquet plus blooms) against the
//! OTLP protobuf the spans came as.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use observatory_consumer::redact::Policy;
use observatory_consumer::source::InMessage;
use observatory_consumer::tempo::{build_block, decode, TraceMessage};
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::tempo::meta::{block_id, SINGLE_TENANT};
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::tempo::write::DEFAULT_ROW_GROUP_BYTES;
use observatory_schemas::testing::{spans_by_trace, TraceGenerator};
use prost::Message;
use std::collections::BTreeMap;

/// The allocator of the `observatory-consumer` binary: block building
/// allocates per decoded span, and glibc malloc took a third of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `spans` spans as per-trace messages, as the collector splits requests.
fn messages(spans: usize, content_bytes: usize) -> Vec<InMessage> {
    let mut generator = TraceGenerator::new(5).with_content_bytes(content_bytes);
    let mut by_trace: BTreeMap<Vec<u8>, Vec<ResourceSpans>> = BTreeMap::new();
    let mut made = 0;
    while made < spans {
        let n = 512.min(spans - made);
        made += n;
        for (id, batches) in spans_by_trace(generator.request(n)) {
            by_trace.entry(id).or_default().extend(batches);
        }
    }
    by_trace
        .into_values()
        .enumerate()
        .map(|(i, resource_spans)| InMessage {
            topic: "otlp_spans".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: ExportTraceServiceRequest { resource_spans }
                .encode_to_vec()
                .into(),
            headers: vec![("tenant".into(), b"default".to_vec())],
        })
        .collect()
}

fn encode(messages: &[InMessage]) -> observatory_schemas::tempo::write::Block {
    let skimmed: Vec<TraceMessage> = messages.iter().map(|m| decode(m).unwrap()).collect();
    let items: Vec<&TraceMessage> = skimmed.iter().collect();
    let mut traces: BTreeMap<[u8; 16], Vec<usize>> = BTreeMap::new();
    for (i, m) in items.iter().enumerate() {
        for id in m.trace_ids() {
            traces.entry(*id).or_default().push(i);
        }
    }
    let id = block_id(SINGLE_TENANT, 0, 0, 1);
    let mut rejected = Vec::new();
    // The default content policy (prompt and completion text left out).
    let policy = Policy::new(false, 16 * 1024, vec![], vec![]);
    build_block(
        &policy,
        &items,
        &traces,
        id,
        SINGLE_TENANT,
        DEFAULT_ROW_GROUP_BYTES,
        &mut rejected,
    )
    .unwrap()
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let spans = 50_000;
    let mut group = c.benchmark_group("tempo_block");
    group.sample_size(10);
    for (name, content) in [("no_content", 0), ("2kb_content", 2048)] {
        group.throughput(Throughput::Elements(spans as u64));
        let messages = messages(spans, content);
        let otlp: usize = messages.iter().map(|m| m.payload.len()).sum();
        let block = encode(&messages);
        let stored: usize = block
            .objects
            .iter()
            .filter(|(n, _)| n == "data.parquet" || n.starts_with("bloom-"))
            .map(|(_, b)| b.len())
            .sum();
        let parquet = block.meta.size as usize;
        eprintln!(
            "{name}: {spans} spans, {} traces; OTLP protobuf {:.0} B/span; data.parquet {:.0} B/span ({:.0}% of OTLP); with blooms {:.0} B/span",
            block.meta.total_objects,
            otlp as f64 / spans as f64,
            parquet as f64 / spans as f64,
            100.0 * parquet as f64 / otlp as f64,
            stored as f64 / spans as f64,
        );
        group.bench_function(format!("decode_and_encode_{name}"), |b| {
            b.iter(|| encode(&messages))
        });
        if content == 0 {
            // Trace by id from a block, as the query API's fallback reads it:
            // the first and the last trace of the file (the reader decodes
            // a row group's rows up to the one it wants).
            let data = block.objects[0].1.clone();
            let ids = DataFile::open(data.clone()).unwrap().trace_ids().unwrap();
            eprintln!(
                "{name}: {} row groups, {} traces",
                DataFile::open(data.clone()).unwrap().row_groups(),
                ids.len()
            );
            group.throughput(Throughput::Elements(1));
            for (which, id) in [("first", ids[0]), ("last", ids[ids.len() - 1])] {
                group.bench_function(format!("find_{which}_trace_{name}"), |b| {
                    b.iter(|| {
                        DataFile::open(data.clone())
                            .unwrap()
                            .find(&id)
                            .unwrap()
                            .unwrap()
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
