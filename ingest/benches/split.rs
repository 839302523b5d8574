//! The collector's hot path per request: decode an OTLP request and split it
//! into one Kafka message per trace, at the sizes the load generator sends.
//!
//! `cargo bench -p observatory-collector --bench split`
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use observatory_collector::receiver::decode::{decode, Format};
use observatory_collector::receiver::Export;
use observatory_collector::split::split_traces;
use observatory_schemas::kafka::Signal;
use observatory_schemas::testing::TraceGenerator;
use prost::Message;

const BUDGET: usize = 1_000_000 - 512;

fn bench(c: &mut Criterion) {
    for (spans, content) in [(512usize, 0usize), (512, 2000), (64, 0)] {
        let request = TraceGenerator::new(1)
            .with_content_bytes(content)
            .request(spans);
        let protobuf = request.encode_to_vec();
        let json = serde_json::to_vec(&request).unwrap();
        let mut group = c.benchmark_group(format!("{spans}_spans_{content}_content_bytes"));
        group.throughput(Throughput::Elements(spans as u64));

        group.bench_function("decode_protobuf", |b| {
            b.iter(|| decode(Signal::Traces, Format::Protobuf, &protobuf).unwrap())
        });
        group.bench_function("split", |b| {
            b.iter_batched(
                || request.clone(),
                |r| split_traces(r, BUDGET, protobuf.len()).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("decode_and_split_protobuf", |b| {
            b.iter(|| {
                let Export::Traces(r) =
                    decode(Signal::Traces, Format::Protobuf, &protobuf).unwrap()
                else {
                    unreachable!()
                };
                split_traces(r, BUDGET, protobuf.len()).unwrap()
            })
        });
        group.bench_function("estimate_decoded_size_protobuf", |b| {
            b.iter(|| {
                observatory_schemas::decoded_size::estimate(
                    observatory_schemas::decoded_size::Request::Traces,
                    &protobuf,
                )
            })
        });
        group.bench_function("estimate_decoded_size_json", |b| {
            b.iter(|| observatory_schemas::decoded_size::estimate_json(&json))
        });
        group.bench_function("decode_and_split_json", |b| {
            b.iter(|| {
                let Export::Traces(r) = decode(Signal::Traces, Format::Json, &json).unwrap() else {
                    unreachable!()
                };
                split_traces(r, BUDGET, protobuf.len()).unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
