//! Reading a test's Tempo blocks back span for span: what the sink must
//! have stored of what a test sent, and the check that every span sent is
//! in exactly one complete block, as sent.

use observatory_consumer::redact::Policy;
use observatory_consumer::tempo::store::BlockStore;
use observatory_schemas::otlp::common::KeyValue;
use observatory_schemas::otlp::trace::{ResourceSpans, Span};
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::BlockMeta;
use observatory_schemas::tempo::read::DataFile;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long [`assert_all_found`] waits.
const WAIT: Duration = Duration::from_secs(90);

/// A span as comparable data: resource and scope it ran under, attributes
/// in key order (the block keeps some attributes in columns of their own).
pub type Placed = (Vec<KeyValue>, String, Vec<KeyValue>, Span);

/// Spans by (trace id, span id), as they must be found in the blocks.
pub type Sent = BTreeMap<(Vec<u8>, Vec<u8>), Vec<Placed>>;

/// `a` in key order.
pub fn sorted(mut a: Vec<KeyValue>) -> Vec<KeyValue> {
    a.sort_by(|x, y| x.key.cmp(&y.key));
    a
}

/// What the sink must store of a span: the span after the default content
/// policy (`CAPTURE_CONTENT=false`: prompt and completion text removed).
pub fn stored(span: &Span) -> Span {
    static POLICY: std::sync::LazyLock<Policy> =
        std::sync::LazyLock::new(|| Policy::new(false, 16 * 1024, vec![], vec![]));
    let mut span = span.clone();
    POLICY.apply_to_span(&mut span);
    span
}

/// Adds the spans of `rs` to `out`, as the sink must store them.
pub fn placed(rs: &[ResourceSpans], out: &mut Sent) {
    for r in rs {
        let resource = sorted(r.resource.clone().unwrap_or_default().attributes);
        for ss in &r.scope_spans {
            let scope = ss.scope.clone().unwrap_or_default();
            for s in &ss.spans {
                let mut s = stored(s);
                s.attributes = sorted(s.attributes);
                for e in &mut s.events {
                    e.attributes = sorted(std::mem::take(&mut e.attributes));
                }
                for l in &mut s.links {
                    l.attributes = sorted(std::mem::take(&mut l.attributes));
                }
                out.entry((s.trace_id.clone(), s.span_id.clone()))
                    .or_default()
                    .push((
                        resource.clone(),
                        format!("{}/{}", scope.name, scope.version),
                        sorted(scope.attributes.clone()),
                        s,
                    ));
            }
        }
    }
}

/// Every complete block of `tenant` (those with a meta.json).
pub async fn blocks(
    store: &BlockStore,
    tenant: &str,
) -> Vec<(BlockMeta, bytes::Bytes, Vec<Bloom>)> {
    let mut out = Vec::new();
    let mut names = store.list(tenant).await.unwrap();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with("/meta.json")) {
        let folder = name.trim_end_matches("/meta.json");
        let meta: BlockMeta = serde_json::from_slice(&store.get(name).await.unwrap()).unwrap();
        let data = store.get(&format!("{folder}/data.parquet")).await.unwrap();
        assert_eq!(meta.size, data.len() as u64, "meta.json size of {folder}");
        let mut blooms = Vec::new();
        for i in 0..meta.bloom_shards {
            let bytes = store.get(&format!("{folder}/bloom-{i}")).await.unwrap();
            blooms.push(Bloom::from_bytes(&bytes).unwrap());
        }
        out.push((meta, data, blooms));
    }
    out
}

/// Every span found in the complete blocks of `tenant` (each block read in
/// one pass; the bloom filter must say maybe for every trace a block holds,
/// as Tempo looks traces up by it): span key -> the copies found.
pub async fn find_all(store: &BlockStore, tenant: &str) -> Sent {
    let blocks = blocks(store, tenant).await;
    let mut found: Sent = BTreeMap::new();
    for (meta, data, blooms) in &blocks {
        let file = DataFile::open(data.clone()).unwrap();
        assert_eq!(file.traces(), meta.total_objects);
        for (id, rs) in file.all().unwrap() {
            let shard = shard_of(&id, blooms.len() as u64) as usize;
            assert!(
                blooms[shard].may_contain(&id),
                "bloom says no for a trace block {} holds",
                meta.block_id
            );
            placed(&rs, &mut found);
        }
    }
    found
}

/// Waits until every sent span is in a complete block (the sink's counters
/// also count blocks rewritten after a failed cut, so they can run ahead of
/// the store), then checks that each is there exactly once, as sent.
pub async fn assert_all_found(store: &BlockStore, tenant: &str, sent: &Sent) {
    let deadline = std::time::Instant::now() + WAIT;
    let found = loop {
        let found = find_all(store, tenant).await;
        let missing: Vec<&(Vec<u8>, Vec<u8>)> = sent
            .keys()
            .filter(|key| !found.contains_key(*key))
            .collect();
        if missing.is_empty() {
            break found;
        }
        if std::time::Instant::now() > deadline {
            let mut partitions: BTreeMap<u32, usize> = BTreeMap::new();
            for (trace, _) in &missing {
                let id: [u8; 16] = trace[..].try_into().unwrap_or([0; 16]);
                let key = observatory_schemas::kafka::trace_key(&id);
                *partitions
                    .entry(observatory_schemas::kafka::partition_for_key(
                        key.as_bytes(),
                        4,
                    ))
                    .or_default() += 1;
            }
            panic!(
                "after {WAIT:?}, {} of {} spans sent are in no complete block; \
                 missing by partition (of 4): {partitions:?}; e.g. {:02x?}",
                missing.len(),
                sent.len(),
                missing[0]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (key, spans) in &found {
        assert_eq!(
            spans.len(),
            1,
            "span {key:02x?} is in {} blocks",
            spans.len()
        );
    }
    assert_eq!(found.len(), sent.len(), "only the spans sent are stored");
    for (key, expected) in sent {
        assert_eq!(found.get(key), Some(expected), "span {key:02x?}");
    }
}

/// One span's place in its trace's tree, as a block stores it.
#[derive(Debug, Clone)]
pub struct Nested {
    /// Trace id.
    pub trace: Vec<u8>,
    /// Span id.
    pub span: Vec<u8>,
    /// Parent span id (empty for a root).
    pub parent: Vec<u8>,
    /// `ParentID`: the parent's `NestedSetLeft`, -1 for a root.
    pub parent_left: i32,
    /// `NestedSetLeft`.
    pub left: i32,
    /// `NestedSetRight`.
    pub right: i32,
}

/// The nested-set columns of every span of a `data.parquet`, read with the
/// parquet crate's own record reader (not our block reader).
pub fn nested_sets(data: &bytes::Bytes) -> Vec<Nested> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, Row};
    let projection = parquet::schema::parser::parse_message_type(
        "message Trace {
          required binary TraceID;
          required group rs (LIST) { repeated group list { required group element {
            required group ss (LIST) { repeated group list { required group element {
              required group Spans (LIST) { repeated group list { required group element {
                required binary SpanID;
                required binary ParentSpanID;
                required int32 ParentID (INTEGER(32,true));
                required int32 NestedSetLeft (INTEGER(32,true));
                required int32 NestedSetRight (INTEGER(32,true));
              } } }
            } } }
          } } }
        }",
    )
    .expect("the projection parses");
    let reader = SerializedFileReader::new(data.clone()).expect("a parquet file");
    fn field<'a>(row: &'a Row, name: &str) -> &'a Field {
        row.get_column_iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("column {name}"))
    }
    fn groups(field: &Field) -> Vec<&Row> {
        match field {
            Field::ListInternal(list) => list
                .elements()
                .iter()
                .map(|e| match e {
                    Field::Group(row) => row,
                    other => panic!("a group, not {other:?}"),
                })
                .collect(),
            other => panic!("a list, not {other:?}"),
        }
    }
    fn bytes(field: &Field) -> Vec<u8> {
        match field {
            Field::Bytes(b) => b.data().to_vec(),
            other => panic!("bytes, not {other:?}"),
        }
    }
    fn int(field: &Field) -> i32 {
        match field {
            Field::Int(i) => *i,
            other => panic!("an int, not {other:?}"),
        }
    }
    let mut out = Vec::new();
    for row in reader
        .get_row_iter(Some(projection))
        .expect("rows")
        .map(|r| r.expect("a row"))
    {
        let trace = bytes(field(&row, "TraceID"));
        for rs in groups(field(&row, "rs")) {
            for ss in groups(field(rs, "ss")) {
                for span in groups(field(ss, "Spans")) {
                    out.push(Nested {
                        trace: trace.clone(),
                        span: bytes(field(span, "SpanID")),
                        parent: bytes(field(span, "ParentSpanID")),
                        parent_left: int(field(span, "ParentID")),
                        left: int(field(span, "NestedSetLeft")),
                        right: int(field(span, "NestedSetRight")),
                    });
                }
            }
        }
    }
    out
}

/// Checks the nested-set numbers of every trace in `data` whose spans all
/// hang under a root: each span once, numbered (left > 0, right > left),
/// its `ParentID` its parent's left, and its interval inside its parent's.
pub fn assert_nested_sets_hold(data: &bytes::Bytes) {
    let mut by_trace: BTreeMap<Vec<u8>, Vec<Nested>> = BTreeMap::new();
    for n in nested_sets(data) {
        by_trace.entry(n.trace.clone()).or_default().push(n);
    }
    for (trace, spans) in by_trace {
        let by_id: BTreeMap<&[u8], &Nested> = spans.iter().map(|n| (&n.span[..], n)).collect();
        assert_eq!(
            by_id.len(),
            spans.len(),
            "trace {trace:02x?} holds a span twice"
        );
        for n in &spans {
            assert!(
                n.left > 0 && n.right > n.left,
                "trace {trace:02x?} span {:02x?}: left {} right {}",
                n.span,
                n.left,
                n.right
            );
            if n.parent.is_empty() {
                assert_eq!(n.parent_left, -1, "a root's ParentID");
            } else {
                let parent = by_id[&n.parent[..]];
                assert_eq!(n.parent_left, parent.left, "ParentID of {:02x?}", n.span);
                assert!(parent.left < n.left && n.right < parent.right);
            }
        }
    }
}
