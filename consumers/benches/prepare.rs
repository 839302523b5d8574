//! The sink's CPU hot path per message: decode a Kafka message (one trace,
//! as the collector writes it), apply the content policy, map GenAI
//! attributes, price the calls and render the JSON columns.
//!
//! `cargo bench -p observatory-consumer --bench prepare`
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use observatory_consumer::redact::Policy;
use observatory_consumer::source::InMessage;
use observatory_consumer::timescale::rows::Preparer;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::pricing::PriceBook;
use observatory_schemas::testing::{spans_of, TraceGenerator};
use prost::Message;

fn bench(c: &mut Criterion) {
    let preparer = Preparer {
        policy: Policy::new(false, 16 * 1024, vec![], vec![]),
        prices: PriceBook::builtin(),
        max_age: std::time::Duration::from_secs(86_400 * 36_500),
        max_future: std::time::Duration::from_secs(86_400 * 36_500),
        default_environment: String::new(),
    };
    let request = TraceGenerator::new(1).with_max_spans(20).request(512);
    let spans = spans_of(&request).count() as u64;
    let message = InMessage {
        topic: "otlp_spans".into(),
        partition: 0,
        offset: 0,
        key: None,
        payload: request.encode_to_vec().into(),
        headers: vec![("tenant".into(), b"default".to_vec())],
    };
    let mut group = c.benchmark_group("prepare");
    group.throughput(Throughput::Elements(spans));
    group.bench_function("512_spans_one_message", |b| {
        b.iter(|| preparer.prepare(&message).unwrap())
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(&message.payload[..]).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
