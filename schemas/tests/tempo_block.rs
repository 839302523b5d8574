//! A block written by `tempo::write` and read back by `tempo::read`: every
//! trace found by id, span for span equal to what went in; the schema equal
//! to Tempo's (the spec's tree in `vparquet4_schema.txt`); `meta.json`, the
//! bloom filters and the row-group index consistent with the parquet file.

use observatory_schemas::otlp::common::{
    any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use observatory_schemas::otlp::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::{block_id, BlockMeta, SINGLE_TENANT};
use observatory_schemas::tempo::ranged::{Lookup, Step};
use observatory_schemas::tempo::read::DataFile;
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{schema, BlockWriter};
use observatory_schemas::testing::{
    kv, kv_bool, kv_f64, kv_int, kv_str, kv_str_array, spans_by_trace, TraceGenerator,
};
use parquet::file::reader::FileReader;
use parquet::schema::types::Type;
use std::collections::BTreeMap;

/// Traces as the collector publishes them: one message per trace.
fn traces() -> BTreeMap<[u8; 16], Vec<ResourceSpans>> {
    let mut out: BTreeMap<[u8; 16], Vec<ResourceSpans>> = BTreeMap::new();
    let mut generator = TraceGenerator::new(11).with_content_bytes(64);
    for _ in 0..8 {
        for (id, batches) in spans_by_trace(generator.request(400)) {
            let id: [u8; 16] = id.try_into().unwrap();
            out.entry(id).or_default().extend(batches);
        }
    }
    let (id, every_type) = trace_with_every_value_type();
    out.insert(id, every_type);
    out
}

fn trace_with_every_value_type() -> ([u8; 16], Vec<ResourceSpans>) {
    let id = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0x47, 0x4b, 0xe8, 0xb4, 0x34, 0x49, 0xfb,
    ];
    let attributes = vec![
        kv_str("s", "text"),
        kv_int("i", -42),
        kv_f64("d", 2.5),
        kv_bool("b", true),
        kv_str_array("sa", &["x", "y"]),
        kv(
            "ia",
            Value::ArrayValue(ArrayValue {
                values: vec![int(1), int(2), int(3)],
            }),
        ),
        kv("empty", Value::ArrayValue(ArrayValue { values: vec![] })),
        kv("bytes", Value::BytesValue(vec![1, 2, 255])),
        kv(
            "mixed",
            Value::ArrayValue(ArrayValue {
                values: vec![int(1), str("a")],
            }),
        ),
        kv(
            "kv",
            Value::KvlistValue(KeyValueList {
                values: vec![kv_int("inner", 7)],
            }),
        ),
        kv_str("http.method", "POST"),
        kv_str("http.url", "https://api.example.com/v1/chat"),
        kv_int("http.status_code", 200),
    ];
    let root = Span {
        trace_id: id.to_vec(),
        span_id: vec![1; 8],
        parent_span_id: vec![],
        name: "root".into(),
        kind: 2,
        trace_state: "a=b".into(),
        start_time_unix_nano: 1_780_000_000_000_000_000,
        end_time_unix_nano: 1_780_000_000_500_000_000,
        attributes,
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: 1_780_000_000_100_000_000,
            name: "gen_ai.content.prompt".into(),
            attributes: vec![kv_str("gen_ai.prompt", "hello"), kv_int("n", 1)],
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 2,
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "c=d".into(),
            attributes: vec![kv_bool("follows", true)],
            dropped_attributes_count: 4,
            flags: 0,
        }],
        dropped_links_count: 5,
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        flags: 0,
    };
    let child = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "child".into(),
        attributes: vec![],
        events: vec![],
        links: vec![],
        status: None,
        start_time_unix_nano: 1_780_000_000_200_000_000,
        end_time_unix_nano: 1_780_000_000_900_000_000,
        ..root.clone()
    };
    let resource = observatory_schemas::otlp::resource::Resource {
        attributes: vec![
            kv_str("service.name", "gateway"),
            kv_str("k8s.namespace.name", "llm"),
            kv_str("cluster", "eu-1"),
            kv_int("replica", 3),
        ],
        dropped_attributes_count: 1,
        ..Default::default()
    };
    let scope = observatory_schemas::otlp::common::InstrumentationScope {
        name: "openllmetry".into(),
        version: "0.1".into(),
        attributes: vec![kv_str("scope.attr", "v")],
        dropped_attributes_count: 0,
    };
    let rs = |spans: Vec<Span>| ResourceSpans {
        resource: Some(resource.clone()),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope.clone()),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    // Two messages for one trace: the block must merge them into one row.
    (id, vec![rs(vec![child]), rs(vec![root])])
}

fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(i)),
    }
}

fn str(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

fn sorted(mut a: Vec<KeyValue>) -> Vec<KeyValue> {
    a.sort_by(|x, y| x.key.cmp(&y.key));
    a
}

/// A span with what it ran under: resource attributes and dropped count,
/// scope name/version and attributes.
type Placed = (Vec<KeyValue>, u32, String, Vec<KeyValue>, Span);

/// Spans by id, attributes in key order (the block keeps some attributes in
/// columns of their own and gives them back last).
fn normalized(rs: &[ResourceSpans]) -> BTreeMap<Vec<u8>, Placed> {
    let mut out = BTreeMap::new();
    for r in rs {
        let resource = r.resource.clone().unwrap_or_default();
        for ss in &r.scope_spans {
            let scope = ss.scope.clone().unwrap_or_default();
            for s in &ss.spans {
                let mut s = s.clone();
                s.attributes = sorted(s.attributes);
                for e in &mut s.events {
                    e.attributes = sorted(std::mem::take(&mut e.attributes));
                }
                for l in &mut s.links {
                    l.attributes = sorted(std::mem::take(&mut l.attributes));
                }
                out.insert(
                    s.span_id.clone(),
                    (
                        sorted(resource.attributes.clone()),
                        resource.dropped_attributes_count,
                        format!("{}/{}", scope.name, scope.version),
                        sorted(scope.attributes.clone()),
                        s,
                    ),
                );
            }
        }
    }
    out
}

fn write_block(
    traces: &BTreeMap<[u8; 16], Vec<ResourceSpans>>,
    row_group_bytes: usize,
) -> observatory_schemas::tempo::write::Block {
    let mut writer = BlockWriter::new(traces.len() as u64, row_group_bytes).unwrap();
    for (id, batches) in traces {
        let batches: Vec<&[ResourceSpans]> = batches.iter().map(std::slice::from_ref).collect();
        let row = TraceRow::merge(*id, &batches).unwrap();
        writer.push(&row).unwrap();
    }
    writer
        .finish(block_id(SINGLE_TENANT, 0, 0, 1), SINGLE_TENANT)
        .unwrap()
}

#[test]
fn every_trace_reads_back_span_for_span() {
    let traces = traces();
    assert!(traces.len() > 200);
    // Small row groups, so that lookups cross row-group boundaries.
    let block = write_block(&traces, 256 << 10);
    let data = DataFile::open(block.objects[0].1.clone()).unwrap();
    assert!(data.row_groups() > 1, "{} row groups", data.row_groups());
    assert_eq!(data.traces(), traces.len() as i64);
    for (id, sent) in &traces {
        let read = data
            .find(id)
            .unwrap()
            .unwrap_or_else(|| panic!("trace {id:02x?} not found"));
        assert_eq!(normalized(&read), normalized(sent), "trace {id:02x?}");
    }
    assert!(data.find(&[0xee; 16]).unwrap().is_none());
    // One pass over every row reads the same traces, in id order.
    let all = data.all().unwrap();
    assert_eq!(all.len(), traces.len());
    for ((id, read), (sent_id, sent)) in all.iter().zip(&traces) {
        assert_eq!(id, sent_id);
        assert_eq!(normalized(read), normalized(sent), "trace {id:02x?}");
    }
}

/// A lookup skips the rows before its own, whole pages at a time: what it
/// reads deep in a row group of many pages is the row read in order.
#[test]
fn a_trace_deep_in_a_row_group_of_many_pages_is_found_whole() {
    // A 4 KiB attribute on every span: that column spans many pages.
    let mut traces = traces();
    for (n, rs) in traces.values_mut().flatten().enumerate() {
        for span in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
            span.attributes
                .push(kv_str("payload", format!("{n:08}{}", "x".repeat(4096))));
        }
    }
    let block = write_block(&traces, 64 << 20);
    let bytes = block.objects[0].1.clone();
    let data = DataFile::open(bytes.clone()).unwrap();
    assert_eq!(data.row_groups(), 1);
    let file = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
    let biggest = (0..file.metadata().row_group(0).num_columns())
        .map(|c| file.metadata().row_group(0).column(c).uncompressed_size())
        .max()
        .unwrap();
    assert!(
        biggest > 3 << 20,
        "a column of several 1 MiB pages: {biggest} B"
    );
    let all = data.all().unwrap();
    for (id, trace) in all.iter().step_by(53).chain(all.last()) {
        assert_eq!(data.find(id).unwrap().as_ref(), Some(trace), "{id:02x?}");
    }
}

/// A lookup through [`Lookup`], fetching from `file` what it asks for:
/// (the answer, bytes fetched, fetches).
fn ranged_find(file: &bytes::Bytes, id: &[u8; 16]) -> (Option<Vec<ResourceSpans>>, u64, usize) {
    let mut lookup = Lookup::new(*id, file.len() as u64);
    let mut fetches = 0;
    loop {
        match lookup.step().unwrap() {
            Step::Fetch(ranges) => {
                fetches += 1;
                assert!(fetches < 10, "a lookup of {id:02x?} keeps fetching");
                for r in ranges {
                    lookup.add(r.start, file.slice(r.start as usize..r.end as usize));
                }
            }
            Step::Done(found) => return (found, lookup.fetched(), fetches),
        }
    }
}

/// A lookup that fetches byte ranges answers as the whole file does, for
/// every trace, across row groups and deep in columns of many pages, and
/// reads a small part of the file.
#[test]
fn a_lookup_by_byte_ranges_answers_as_the_whole_file_and_reads_little_of_it() {
    let traces = traces();
    let block = write_block(&traces, 256 << 10);
    let bytes = block.objects[0].1.clone();
    let data = DataFile::open(bytes.clone()).unwrap();
    for id in traces.keys() {
        let (found, _, fetches) = ranged_find(&bytes, id);
        assert_eq!(found, data.find(id).unwrap(), "{id:02x?}");
        assert!(found.is_some());
        assert!(fetches <= 4, "{fetches} fetches");
    }
    let (missing, _, _) = ranged_find(&bytes, &[0xee; 16]);
    assert!(missing.is_none());

    // One row group of columns of many 1 MiB pages (4 KiB of text that
    // does not compress on every span): one page per column is read.
    let mut traces = traces;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for rs in traces.values_mut().flatten() {
        for span in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
            let text: String = (0..256)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("{:016x}", state)
                })
                .collect();
            span.attributes.push(kv_str("payload", text));
        }
    }
    let block = write_block(&traces, 64 << 20);
    let bytes = block.objects[0].1.clone();
    let data = DataFile::open(bytes.clone()).unwrap();
    let mut most = 0;
    for (id, trace) in data.all().unwrap().iter().step_by(7) {
        let (found, fetched, _) = ranged_find(&bytes, id);
        assert_eq!(found.as_ref(), Some(trace), "{id:02x?}");
        most = most.max(fetched);
    }
    assert!(
        most * 4 < bytes.len() as u64,
        "a lookup read {most} of {} bytes",
        bytes.len()
    );
}

#[test]
fn rows_are_sorted_and_unique_and_the_index_names_each_row_groups_last_id() {
    let traces = traces();
    let block = write_block(&traces, 256 << 10);
    let data = DataFile::open(block.objects[0].1.clone()).unwrap();
    let ids = data.trace_ids().unwrap();
    assert_eq!(ids, traces.keys().copied().collect::<Vec<_>>());
    let index: serde_json::Value = serde_json::from_slice(&object(&block, "index")).unwrap();
    assert_eq!(
        index["rowGroups"].as_array().unwrap().len(),
        data.row_groups()
    );
}

fn object(block: &observatory_schemas::tempo::write::Block, name: &str) -> bytes::Bytes {
    block
        .objects
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.clone())
        .unwrap()
}

#[test]
fn meta_json_agrees_with_the_objects() {
    let traces = traces();
    let block = write_block(&traces, 256 << 10);
    let names: Vec<&str> = block.objects.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["data.parquet", "bloom-0", "index", "meta.json"],
        "Tempo's write order, meta.json last"
    );
    let meta: BlockMeta = serde_json::from_slice(&object(&block, "meta.json")).unwrap();
    assert_eq!(meta, block.meta);
    let data = object(&block, "data.parquet");
    assert_eq!(meta.format, "vParquet4");
    assert_eq!(meta.size, data.len() as u64);
    let n = data.len();
    assert_eq!(&data[n - 4..], b"PAR1");
    assert_eq!(
        meta.footer_size,
        u32::from_le_bytes(data[n - 8..n - 4].try_into().unwrap())
    );
    assert_eq!(meta.total_objects, traces.len() as i64);
    assert_eq!(
        meta.total_records as usize,
        DataFile::open(data).unwrap().row_groups()
    );
    assert_eq!(meta.bloom_shards, 1);
    assert_eq!(meta.replication_factor, 1);
    let starts = traces
        .values()
        .flat_map(|t| t.iter())
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    let first = starts
        .clone()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap();
    assert_eq!(
        meta.start_time,
        observatory_schemas::civil::rfc3339_nanos(first as i64)
    );
    let last = starts.map(|s| s.end_time_unix_nano).max().unwrap();
    assert_eq!(
        meta.end_time,
        observatory_schemas::civil::rfc3339_nanos(last as i64)
    );
}

#[test]
fn bloom_says_maybe_for_every_trace_and_no_for_most_others() {
    let traces = traces();
    let block = write_block(&traces, 64 << 20);
    let bloom = Bloom::from_bytes(&object(&block, "bloom-0")).unwrap();
    assert!(traces
        .keys()
        .all(|id| shard_of(id, 1) == 0 && bloom.may_contain(id)));
    let others = (0..10_000u64)
        .filter(|i| bloom.may_contain(&[i.to_be_bytes(), [0x5a; 8]].concat()))
        .count();
    assert!(others < 100, "{others} of 10 000 unknown ids said maybe");
}

/// One line per node: path, repetition, physical type, logical type.
fn describe(node: &Type, path: &str, out: &mut Vec<String>) {
    let info = node.get_basic_info();
    let path = if path.is_empty() {
        info.name().to_owned()
    } else {
        format!("{path}.{}", info.name())
    };
    let repetition = if info.has_repetition() {
        format!("{:?}", info.repetition())
    } else {
        "ROOT".into()
    };
    let physical = if node.is_primitive() {
        format!("{:?}", node.get_physical_type())
    } else {
        "group".into()
    };
    out.push(format!(
        "{path} {repetition} {physical} {:?}",
        info.logical_type_ref()
    ));
    if node.is_group() {
        for child in node.get_fields() {
            describe(child, &path, out);
        }
    }
}

#[test]
fn schema_is_tempos_vparquet4_column_by_column() {
    let spec: String = include_str!("vparquet4_schema.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let spec = parquet::schema::parser::parse_message_type(&spec).unwrap();
    let mut expected = Vec::new();
    describe(&spec, "", &mut expected);

    let block = write_block(&traces(), 64 << 20);
    let reader =
        parquet::file::reader::SerializedFileReader::new(object(&block, "data.parquet")).unwrap();
    let mut written = Vec::new();
    describe(reader.metadata().file_metadata().schema(), "", &mut written);
    assert_eq!(written.len(), expected.len());
    for (w, e) in written.iter().zip(&expected) {
        assert_eq!(w, e);
    }
    let leaves = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .num_columns();
    assert_eq!(leaves, 103);
    assert_eq!(schema().get_fields().len(), 9);

    // The page index: an offset index for every column chunk, a column
    // index for the trace ids (lookups prune with it) and every column with
    // values (parquet-rs leaves it out for a nested column whose pages hold
    // only nulls). The trace id column has no dictionary.
    for group in reader.metadata().row_groups() {
        for column in group.columns() {
            assert!(
                column.offset_index_offset().is_some(),
                "{} has no offset index",
                column.column_path()
            );
        }
        for i in [0, 1, 2, 5, 7, 47, 52] {
            let column = group.column(i);
            assert!(
                column.column_index_offset().is_some(),
                "{} has no column index",
                column.column_path()
            );
        }
        assert!(
            group.column(0).dictionary_page_offset().is_none(),
            "TraceID has a dictionary"
        );
    }
}
