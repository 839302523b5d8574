//! Writing a block: traces in, the bytes of every object of the block out
//! (`data.parquet`, `bloom-N`, `index`, `meta.json`), in Tempo's order.
//!
//! The caller hands in traces in ascending trace id order, each with all of
//! its spans (one row per trace: Tempo's lookup returns the first match
//! only); the writer checks the order. Row groups are cut at
//! `row_group_bytes` of buffered column data, which also bounds the memory
//! the writer holds besides the parquet bytes themselves.
//!
//! `data.parquet` goes to any [`std::io::Write`]: into memory
//! ([`BlockWriter::new`], [`BlockWriter::finish`]: the sink's small blocks)
//! or streamed out as it is written ([`BlockWriter::to_writer`],
//! [`BlockWriter::finish_streamed`]: the compactor's large ones, whose
//! memory stays bounded by the row group size, not the block size).

use super::bloom::{self, Bloom};
use super::columns::{Column, Columns, RowCursor, Values};
use super::meta::{bloom_name, BlockMeta, DATA, INDEX, META};
use super::rows::CopiedRow;
use super::schema::{leaf, message_type, RESOURCE_WELL_KNOWN};
use super::trace::{generic_attributes, TraceRow};
use crate::otlp::common::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use crate::otlp::resource::Resource;
use crate::otlp::trace::Span;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as Physical};
use parquet::data_type::{BoolType, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{SchemaDescriptor, Type as SchemaType};
use std::io::Write;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Tempo's default `parquet_row_group_size_bytes` is 100 MB of its own
/// estimate; ours counts buffered column bytes, so a smaller figure gives
/// row groups of a similar size on disk.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 64 << 20;

/// Most bytes of a data page (parquet-go's `DefaultPageBufferSize`).
pub const PAGE_BYTES: usize = 256 << 10;

/// Why a block could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Traces must come in ascending id order, each once.
    #[error("traces out of order: {0} after {1}")]
    OutOfOrder(String, String),
    /// No trace in the block.
    #[error("a block needs at least one trace")]
    Empty,
    /// The parquet encoder failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The objects of a finished block, in the order they must be written.
#[derive(Debug)]
pub struct Block {
    /// The block's meta (also the last object).
    pub meta: BlockMeta,
    /// (name inside the block folder, bytes), `meta.json` last.
    pub objects: Vec<(String, Bytes)>,
}

/// The schema, parsed once.
pub fn schema() -> Arc<SchemaType> {
    static SCHEMA: OnceLock<Arc<SchemaType>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(
                parquet::schema::parser::parse_message_type(&message_type())
                    .expect("the vParquet4 schema parses"),
            )
        })
        .clone()
}

fn properties(descriptor: &SchemaDescriptor, page_bytes: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page)
        // parquet-go's defaults, as Tempo writes: 256 KiB pages (a lookup
        // reads one page per column, so the page size is the cost of a
        // lookup in a large block) and 16-byte column-index bounds (a
        // TraceID is 16 bytes: never truncated).
        .set_data_page_size_limit(page_bytes)
        // A lookup reads a column's dictionary too: past this size a
        // column chunk falls back to plain pages instead (1 MiB by default).
        .set_dictionary_page_size_limit(page_bytes)
        .set_column_index_truncate_length(Some(16))
        // Column-chunk statistics too: whole prompt texts as min/max made
        // the footer of a 1 GiB block 5.7 MB, read by every lookup.
        .set_statistics_truncate_length(Some(16))
        .set_dictionary_enabled(false)
        .set_created_by(format!("llm-observatory {}", env!("CARGO_PKG_VERSION")));
    for column in descriptor.columns() {
        let path = column.path().clone();
        let name = path.string();
        let last = path.parts().last().map(String::as_str).unwrap_or("");
        let raw_id = matches!(last, "TraceID" | "SpanID" | "ParentSpanID");
        let delta = matches!(
            last,
            "StartTimeUnixNano"
                | "EndTimeUnixNano"
                | "DurationNano"
                | "TimeSinceStartNano"
                | "NestedSetLeft"
                | "NestedSetRight"
                | "ParentID"
                | "Kind"
                | "StatusCode"
                | "DroppedAttributesCount"
                | "DroppedEventsCount"
                | "DroppedLinksCount"
                | "SpanCount"
                | "ErrorCount"
        );
        if raw_id {
            b = b
                .set_column_encoding(path.clone(), Encoding::PLAIN)
                .set_column_compression(path, Compression::UNCOMPRESSED);
        } else if delta {
            b = b
                .set_column_encoding(path.clone(), Encoding::DELTA_BINARY_PACKED)
                .set_column_compression(path, Compression::UNCOMPRESSED);
        } else if column.physical_type() == Physical::BYTE_ARRAY
            && !name.ends_with("ValueUnsupported")
            && !matches!(last, "TraceIDText" | "TraceState")
        {
            b = b.set_column_dictionary_enabled(path, true);
        }
    }
    b.build()
}

/// Lowercase hex with leading zeros trimmed, as Tempo's `TraceIDText`.
pub fn trace_id_text(id: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * id.len());
    crate::kafka::push_hex(&mut hex, id);
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A `Write` that counts the bytes through it and keeps the last eight
/// (the parquet footer length and magic), so a streamed file's `size` and
/// `footerSize` are known without reading it back.
pub struct Counting<W: Write> {
    inner: W,
    written: u64,
    tail: [u8; 8],
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let wrote = &buf[..n];
        if wrote.len() >= 8 {
            self.tail.copy_from_slice(&wrote[wrote.len() - 8..]);
        } else {
            self.tail.rotate_left(wrote.len());
            self.tail[8 - wrote.len()..].copy_from_slice(wrote);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A streamed block once its `data.parquet` is complete: the writer it
/// went to, and the other objects, `meta.json` last.
pub struct Streamed<W> {
    /// Where `data.parquet` went (flushed, not closed: the caller finishes
    /// its upload).
    pub data: W,
    /// The block's meta (also the last object).
    pub meta: BlockMeta,
    /// The objects after `data.parquet`: blooms, `index`, `meta.json`.
    pub objects: Vec<(String, Bytes)>,
    /// The last trace id of the block.
    pub last_id: [u8; 16],
}

/// Builds one block.
pub struct BlockWriter<W: Write + Send = Vec<u8>> {
    descriptor: Arc<SchemaDescriptor>,
    file: SerializedFileWriter<Counting<W>>,
    columns: Columns,
    row_group_bytes: usize,
    rows_in_group: usize,
    row_group_last_ids: Vec<[u8; 16]>,
    blooms: Vec<Bloom>,
    last_id: Option<[u8; 16]>,
    traces: i64,
    start: u64,
    end: u64,
}

impl BlockWriter {
    /// A writer for a block of `traces` traces (it sizes the bloom filters),
    /// held in memory.
    pub fn new(traces: u64, row_group_bytes: usize) -> Result<BlockWriter, BlockError> {
        BlockWriter::to_writer(Vec::new(), traces, row_group_bytes)
    }

    /// Writes the footer and returns every object of the block.
    pub fn finish(self, block_id: Uuid, tenant_folder: &str) -> Result<Block, BlockError> {
        let streamed = self.finish_streamed(block_id, tenant_folder)?;
        let mut objects = vec![(DATA.to_owned(), Bytes::from(streamed.data))];
        objects.extend(streamed.objects);
        Ok(Block {
            meta: streamed.meta,
            objects,
        })
    }
}

impl<W: Write + Send> BlockWriter<W> {
    /// A writer for a block of at most `traces` traces (it sizes the bloom
    /// filters) whose `data.parquet` goes to `out` as it is written.
    pub fn to_writer(
        out: W,
        traces: u64,
        row_group_bytes: usize,
    ) -> Result<BlockWriter<W>, BlockError> {
        BlockWriter::to_writer_paged(out, traces, row_group_bytes, PAGE_BYTES)
    }

    /// The same, with data and dictionary pages of at most `page_bytes`
    /// (a trace-by-id lookup reads about one data page and one dictionary
    /// page per column, so smaller pages make lookups in large blocks
    /// cheaper, at some cost in size).
    pub fn to_writer_paged(
        out: W,
        traces: u64,
        row_group_bytes: usize,
        page_bytes: usize,
    ) -> Result<BlockWriter<W>, BlockError> {
        let schema = schema();
        let descriptor = Arc::new(SchemaDescriptor::new(schema.clone()));
        let out = Counting {
            inner: out,
            written: 0,
            tail: [0; 8],
        };
        let properties = properties(&descriptor, page_bytes.max(1024));
        let file = SerializedFileWriter::new(out, schema, Arc::new(properties))?;
        let (shards, k) = bloom::parameters(traces);
        Ok(BlockWriter {
            columns: schema_columns(),
            descriptor,
            file,
            row_group_bytes: row_group_bytes.max(1),
            rows_in_group: 0,
            row_group_last_ids: Vec::new(),
            blooms: (0..shards).map(|_| Bloom::shard(k)).collect(),
            last_id: None,
            traces: 0,
            start: u64::MAX,
            end: 0,
        })
    }

    /// Adds one trace; ids must ascend.
    pub fn push(&mut self, trace: &TraceRow<'_>) -> Result<(), BlockError> {
        self.admit(trace.trace_id, trace.start, trace.end)?;
        shred_trace(&mut self.columns, trace);
        self.row_added()
    }

    /// Checks that `id` comes after the last trace, and counts the trace
    /// in the blooms, the trace count and the block's time range.
    fn admit(&mut self, id: [u8; 16], start: u64, end: u64) -> Result<(), BlockError> {
        if let Some(last) = self.last_id {
            if id <= last {
                return Err(BlockError::OutOfOrder(
                    trace_id_text(&id),
                    trace_id_text(&last),
                ));
            }
        }
        self.last_id = Some(id);
        let shards = self.blooms.len() as u64;
        self.blooms[bloom::shard_of(&id, shards) as usize].add(&id);
        self.traces += 1;
        self.start = self.start.min(start);
        self.end = self.end.max(end);
        Ok(())
    }

    /// Ends the row just shredded; writes the row group once it is full.
    fn row_added(&mut self) -> Result<(), BlockError> {
        self.rows_in_group += 1;
        if self.columns.buffered_bytes() >= self.row_group_bytes {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Traces pushed so far.
    pub fn traces(&self) -> i64 {
        self.traces
    }

    /// Bytes of `data.parquet` written so far (finished row groups).
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Adds the traces whose rows of `from` start at `cursor`, as another
    /// block held them (copied there by
    /// [`super::rows::RowGroupColumns::copy_row`]), column by column,
    /// without decoding them: compaction of traces found in one input each.
    /// Ids must ascend. Stops after the row that fills the row group (the
    /// group is then written): returns how many of `rows` it added, at
    /// least one unless `rows` is empty.
    pub fn push_copied(
        &mut self,
        rows: &[CopiedRow],
        from: &Columns,
        cursor: &mut RowCursor,
    ) -> Result<usize, BlockError> {
        let mut bytes = self.columns.buffered_bytes();
        let mut n = 0;
        for row in rows {
            self.admit(row.head.id, row.head.start, row.head.end)?;
            n += 1;
            bytes += row.bytes;
            if bytes >= self.row_group_bytes {
                break;
            }
        }
        self.columns.copy_rows_from(from, cursor, n);
        self.rows_in_group += n;
        if self.columns.buffered_bytes() >= self.row_group_bytes {
            self.flush_row_group()?;
        }
        Ok(n)
    }

    fn flush_row_group(&mut self) -> Result<(), BlockError> {
        if self.rows_in_group == 0 {
            return Ok(());
        }
        write_row_group(&mut self.file, &self.descriptor, &mut self.columns)?;
        self.row_group_last_ids
            .push(self.last_id.expect("a row group holds a trace"));
        self.rows_in_group = 0;
        Ok(())
    }

    /// Writes the footer; returns the writer `data.parquet` went to and the
    /// block's other objects.
    pub fn finish_streamed(
        mut self,
        block_id: Uuid,
        tenant_folder: &str,
    ) -> Result<Streamed<W>, BlockError> {
        if self.traces == 0 {
            return Err(BlockError::Empty);
        }
        self.flush_row_group()?;
        let out = self.file.into_inner()?;
        let footer_size = u32::from_le_bytes(out.tail[..4].try_into().expect("4 bytes"));
        let meta = BlockMeta::new(
            block_id,
            tenant_folder,
            self.start as i64,
            self.end as i64,
            self.traces,
            out.written,
            self.row_group_last_ids.len() as u32,
            self.blooms.len() as u32,
            footer_size,
        );
        let mut objects = Vec::with_capacity(self.blooms.len() + 2);
        for (i, b) in self.blooms.iter().enumerate() {
            objects.push((bloom_name(i as u64), Bytes::from(b.to_bytes())));
        }
        objects.push((
            INDEX.to_owned(),
            Bytes::from(row_group_index(&self.row_group_last_ids)),
        ));
        objects.push((META.to_owned(), Bytes::from(meta.to_json())));
        Ok(Streamed {
            data: out.inner,
            meta,
            objects,
            last_id: self.last_id.expect("a block holds a trace"),
        })
    }
}

/// Writes `columns` as the file's next row group and empties them, keeping
/// their buffers for the next one.
fn write_row_group<W: Write + Send>(
    file: &mut SerializedFileWriter<W>,
    descriptor: &SchemaDescriptor,
    columns: &mut Columns,
) -> Result<(), parquet::errors::ParquetError> {
    let mut group = file.next_row_group()?;
    for (i, Column { def, rep, values }) in columns.columns.iter_mut().enumerate() {
        let descriptor = descriptor.column(i);
        let levels = descriptor.max_def_level() > 0 || descriptor.max_rep_level() > 0;
        let (def, rep) = if levels {
            (Some(&def[..]), Some(&rep[..]))
        } else {
            (None, None)
        };
        let mut column = group.next_column()?.expect("one writer per leaf");
        match values {
            Values::Bytes { data, ends } => {
                let shared = Bytes::from(std::mem::take(data));
                let values = Values::byte_arrays(&shared, ends);
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, def, rep)?;
                drop(values);
                column.close()?;
                *data = reclaim(shared);
                continue;
            }
            Values::I32(v) => column.typed::<Int32Type>().write_batch(v, def, rep)?,
            Values::I64(v) => column.typed::<Int64Type>().write_batch(v, def, rep)?,
            Values::F64(v) => column.typed::<DoubleType>().write_batch(v, def, rep)?,
            Values::Bool(v) => column.typed::<BoolType>().write_batch(v, def, rep)?,
        };
        column.close()?;
    }
    group.close()?;
    columns.clear();
    Ok(())
}

/// A row group's byte-array buffer back as an empty vector with its
/// capacity, once the column writer has let go of it (the statistics it
/// keeps are copies); a new vector if something still holds it.
fn reclaim(shared: Bytes) -> Vec<u8> {
    match shared.try_into_mut() {
        Ok(unique) => {
            let mut data = Vec::from(unique);
            data.clear();
            data
        }
        Err(_) => Vec::new(),
    }
}

/// A `data.parquet` of the rows in `columns` and nothing else (no blooms,
/// no index, no compression): how rows copied column by column are read
/// back as traces ([`super::read::DataFile`]). `columns` is left empty.
pub fn rows_file(columns: &mut Columns) -> Result<Bytes, parquet::errors::ParquetError> {
    let schema = schema();
    let descriptor = SchemaDescriptor::new(schema.clone());
    let properties = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut file = SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties))?;
    write_row_group(&mut file, &descriptor, columns)?;
    Ok(Bytes::from(file.into_inner()?))
}

/// Empty columns for rows of the schema.
pub fn schema_columns() -> Columns {
    let leaves: Vec<(Physical, i16)> = SchemaDescriptor::new(schema())
        .columns()
        .iter()
        .map(|c| (c.physical_type(), c.max_def_level()))
        .collect();
    Columns::new(&leaves)
}

/// The `index` object: the last trace id of each row group, base64.
fn row_group_index(last_ids: &[[u8; 16]]) -> Vec<u8> {
    let ids: Vec<String> = last_ids.iter().map(|id| base64(id)).collect();
    serde_json::to_vec(&serde_json::json!({ "rowGroups": ids })).expect("serializes")
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- shredding: one trace into the columns ----

const SPAN_LEAVES: std::ops::Range<usize> = leaf::SPAN_ID..leaf::COUNT;
const SS_LEAVES: std::ops::Range<usize> = leaf::SCOPE_NAME..leaf::COUNT;
const EVENT_LEAVES: std::ops::Range<usize> = leaf::EVENT_TIME..leaf::SPAN_DROPPED_EVENTS;
const LINK_LEAVES: std::ops::Range<usize> = leaf::LINK_TRACE_ID..leaf::SPAN_DROPPED_LINKS;

/// Span attributes Tempo keeps in columns: (key, is an int).
const SPAN_IN_COLUMNS: [(&str, bool); 3] = [
    ("http.method", false),
    ("http.url", false),
    ("http.status_code", true),
];

fn resource_in_columns() -> &'static [(&'static str, bool)] {
    static KEYS: OnceLock<Vec<(&'static str, bool)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::iter::once(("service.name", false))
            .chain(RESOURCE_WELL_KNOWN.iter().map(|k| (*k, false)))
            .collect()
    })
}

fn shred_trace(c: &mut Columns, t: &TraceRow<'_>) {
    c.bytes(leaf::TRACE_ID, 0, 0, &t.trace_id);
    c.bytes(
        leaf::TRACE_ID_TEXT,
        0,
        0,
        trace_id_text(&t.trace_id).as_bytes(),
    );
    c.i64(leaf::START, 0, 0, t.start as i64);
    c.i64(leaf::END, 0, 0, t.end as i64);
    c.i64(leaf::DURATION, 0, 0, t.end.saturating_sub(t.start) as i64);
    c.bytes(leaf::ROOT_SERVICE, 0, 0, t.root_service.as_bytes());
    c.bytes(leaf::ROOT_SPAN, 0, 0, t.root_span.as_bytes());
    if t.service_stats.is_empty() {
        c.nulls(leaf::STATS_KEY..leaf::RES_ATTRS, 0, 0);
    }
    for (i, (service, (spans, errors))) in t.service_stats.iter().enumerate() {
        let r = if i == 0 { 0 } else { 1 };
        c.bytes(leaf::STATS_KEY, r, 1, service.as_bytes());
        c.i32(leaf::STATS_SPANS, r, 1, *spans);
        c.i32(leaf::STATS_ERRORS, r, 1, *errors);
    }
    let mut nested = t.nested.iter();
    for (i, group) in t.resources.iter().enumerate() {
        let r = if i == 0 { 0 } else { 1 };
        resource(c, group.resource, group.service, r, 1);
        for (j, scope) in group.scopes.iter().enumerate() {
            let r = if j == 0 { r } else { 2 };
            self::scope(c, scope.scope, r, 2);
            if scope.spans.is_empty() {
                c.nulls(SPAN_LEAVES, r, 2);
            }
            for (k, s) in scope.spans.iter().enumerate() {
                let r = if k == 0 { r } else { 3 };
                let n = nested.next().copied().unwrap_or_default();
                span(c, s, n, r, 3);
            }
        }
        if group.scopes.is_empty() {
            c.nulls(SS_LEAVES, r, 1);
        }
    }
}

fn resource(c: &mut Columns, resource: Option<&Resource>, service: &str, r: i16, d: i16) {
    let empty = Vec::new();
    let attributes = resource.map_or(&empty, |r| &r.attributes);
    attrs(
        c,
        leaf::RES_ATTRS,
        generic_attributes(attributes, resource_in_columns()),
        r,
        d,
    );
    c.i32(
        leaf::RES_DROPPED,
        r,
        d,
        resource.map_or(0, |r| r.dropped_attributes_count) as i32,
    );
    c.bytes(leaf::RES_SERVICE, r, d, service.as_bytes());
    for (i, key) in RESOURCE_WELL_KNOWN.iter().enumerate() {
        match crate::span::string_attribute(attributes, key) {
            Some(v) => c.bytes(leaf::RES_WELL_KNOWN + i, r, d + 1, v.as_bytes()),
            None => c.nulls(leaf::RES_WELL_KNOWN + i..leaf::RES_WELL_KNOWN + i + 1, r, d),
        }
    }
    c.nulls(
        leaf::RES_DEDICATED..leaf::RES_DEDICATED + leaf::DEDICATED,
        r,
        d,
    );
}

fn scope(c: &mut Columns, scope: Option<&InstrumentationScope>, r: i16, d: i16) {
    let (name, version, attributes, dropped) = match scope {
        Some(s) => (
            &s.name[..],
            &s.version[..],
            &s.attributes[..],
            s.dropped_attributes_count,
        ),
        None => ("", "", &[][..], 0),
    };
    c.bytes(leaf::SCOPE_NAME, r, d, name.as_bytes());
    c.bytes(leaf::SCOPE_VERSION, r, d, version.as_bytes());
    attrs(c, leaf::SCOPE_ATTRS, attributes.iter(), r, d);
    c.i32(leaf::SCOPE_DROPPED, r, d, dropped as i32);
}

fn span(c: &mut Columns, s: &Span, n: super::trace::NestedSet, r: i16, d: i16) {
    c.bytes(leaf::SPAN_ID, r, d, &s.span_id);
    c.bytes(leaf::SPAN_PARENT_SPAN_ID, r, d, &s.parent_span_id);
    c.i32(leaf::SPAN_PARENT_ID, r, d, n.parent);
    c.i32(leaf::SPAN_LEFT, r, d, n.left);
    c.i32(leaf::SPAN_RIGHT, r, d, n.right);
    c.bytes(leaf::SPAN_NAME, r, d, s.name.as_bytes());
    c.i64(leaf::SPAN_KIND, r, d, i64::from(s.kind));
    c.bytes(leaf::SPAN_TRACE_STATE, r, d, s.trace_state.as_bytes());
    c.i64(leaf::SPAN_START, r, d, s.start_time_unix_nano as i64);
    let duration = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano);
    c.i64(leaf::SPAN_DURATION, r, d, duration as i64);
    let (code, message) = s
        .status
        .as_ref()
        .map_or((0, ""), |st| (st.code, &st.message[..]));
    c.i64(leaf::SPAN_STATUS_CODE, r, d, i64::from(code));
    c.bytes(leaf::SPAN_STATUS_MESSAGE, r, d, message.as_bytes());
    attrs(
        c,
        leaf::SPAN_ATTRS,
        generic_attributes(&s.attributes, &SPAN_IN_COLUMNS),
        r,
        d,
    );
    c.i32(leaf::SPAN_DROPPED, r, d, s.dropped_attributes_count as i32);

    if s.events.is_empty() {
        c.nulls(EVENT_LEAVES, r, d);
    }
    for (i, e) in s.events.iter().enumerate() {
        let (r, d) = (if i == 0 { r } else { d + 1 }, d + 1);
        let since = e.time_unix_nano.saturating_sub(s.start_time_unix_nano);
        c.i64(leaf::EVENT_TIME, r, d, since as i64);
        c.bytes(leaf::EVENT_NAME, r, d, e.name.as_bytes());
        attrs(c, leaf::EVENT_ATTRS, e.attributes.iter(), r, d);
        c.i32(leaf::EVENT_DROPPED, r, d, e.dropped_attributes_count as i32);
    }
    c.i32(
        leaf::SPAN_DROPPED_EVENTS,
        r,
        d,
        s.dropped_events_count as i32,
    );

    if s.links.is_empty() {
        c.nulls(LINK_LEAVES, r, d);
    }
    for (i, l) in s.links.iter().enumerate() {
        let (r, d) = (if i == 0 { r } else { d + 1 }, d + 1);
        c.bytes(leaf::LINK_TRACE_ID, r, d, &l.trace_id);
        c.bytes(leaf::LINK_SPAN_ID, r, d, &l.span_id);
        c.bytes(leaf::LINK_TRACE_STATE, r, d, l.trace_state.as_bytes());
        attrs(c, leaf::LINK_ATTRS, l.attributes.iter(), r, d);
        c.i32(leaf::LINK_DROPPED, r, d, l.dropped_attributes_count as i32);
    }
    c.i32(leaf::SPAN_DROPPED_LINKS, r, d, s.dropped_links_count as i32);

    let attribute =
        |key: &str| crate::span::attribute(&s.attributes, key).and_then(|v| v.value.as_ref());
    match attribute("http.method") {
        Some(Value::StringValue(v)) => c.bytes(leaf::SPAN_HTTP_METHOD, r, d + 1, v.as_bytes()),
        _ => c.nulls(leaf::SPAN_HTTP_METHOD..leaf::SPAN_HTTP_METHOD + 1, r, d),
    }
    match attribute("http.url") {
        Some(Value::StringValue(v)) => c.bytes(leaf::SPAN_HTTP_URL, r, d + 1, v.as_bytes()),
        _ => c.nulls(leaf::SPAN_HTTP_URL..leaf::SPAN_HTTP_URL + 1, r, d),
    }
    match attribute("http.status_code") {
        Some(Value::IntValue(v)) => c.i64(leaf::SPAN_HTTP_STATUS, r, d + 1, *v),
        _ => c.nulls(leaf::SPAN_HTTP_STATUS..leaf::SPAN_HTTP_STATUS + 1, r, d),
    }
    c.nulls(
        leaf::SPAN_DEDICATED..leaf::SPAN_DEDICATED + leaf::DEDICATED,
        r,
        d,
    );
}

/// The kind of a homogeneous array, or `None` for one Tempo cannot store.
fn array_kind(values: &[AnyValue]) -> Option<usize> {
    let kind = |v: &AnyValue| match v.value.as_ref() {
        Some(Value::StringValue(_)) => Some(leaf::attr::VALUE),
        Some(Value::IntValue(_)) => Some(leaf::attr::INT),
        Some(Value::DoubleValue(_)) => Some(leaf::attr::DOUBLE),
        Some(Value::BoolValue(_)) => Some(leaf::attr::BOOL),
        _ => None,
    };
    let first = values.first().map_or(Some(leaf::attr::VALUE), kind)?;
    values
        .iter()
        .all(|v| kind(v) == Some(first))
        .then_some(first)
}

fn attrs<'a>(
    c: &mut Columns,
    base: usize,
    list: impl Iterator<Item = &'a KeyValue>,
    r: i16,
    d: i16,
) {
    use leaf::attr::*;
    let mut list = list.peekable();
    if list.peek().is_none() {
        c.nulls(base..base + LEAVES, r, d);
        return;
    }
    for (i, kv) in list.enumerate() {
        let (r, d) = (if i == 0 { r } else { d + 1 }, d + 1);
        c.bytes(base + KEY, r, d, kv.key.as_bytes());
        let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
        // Which list holds the value(s), and whether it is an array.
        let (values, is_array): (&[AnyValue], bool) = match value {
            Some(Value::ArrayValue(a)) if array_kind(&a.values).is_some() => (&a.values, true),
            Some(
                Value::StringValue(_)
                | Value::IntValue(_)
                | Value::DoubleValue(_)
                | Value::BoolValue(_),
            ) => (
                std::slice::from_ref(kv.value.as_ref().expect("matched above")),
                false,
            ),
            _ => (&[], false),
        };
        let supported = is_array || !values.is_empty();
        c.bool(base + IS_ARRAY, r, d, is_array);
        for list_leaf in [VALUE, INT, DOUBLE, BOOL] {
            let mut written = 0;
            for v in values {
                let rv = if written == 0 { r } else { d + 1 };
                match (list_leaf, v.value.as_ref()) {
                    (VALUE, Some(Value::StringValue(s))) => {
                        c.bytes(base + VALUE, rv, d + 1, s.as_bytes())
                    }
                    (INT, Some(Value::IntValue(n))) => c.i64(base + INT, rv, d + 1, *n),
                    (DOUBLE, Some(Value::DoubleValue(x))) => c.f64(base + DOUBLE, rv, d + 1, *x),
                    (BOOL, Some(Value::BoolValue(b))) => c.bool(base + BOOL, rv, d + 1, *b),
                    _ => continue,
                }
                written += 1;
            }
            if written == 0 {
                c.nulls(base + list_leaf..base + list_leaf + 1, r, d);
            }
        }
        if supported {
            c.nulls(base + UNSUPPORTED..base + UNSUPPORTED + 1, r, d);
        } else {
            let json = kv
                .value
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .unwrap_or_default();
            c.bytes(base + UNSUPPORTED, r, d + 1, json.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_text_trims_leading_zeros() {
        let mut id = [0u8; 16];
        id[9..].copy_from_slice(&[0x47, 0x4b, 0xe8, 0xb4, 0x34, 0x49, 0xfb]);
        assert_eq!(trace_id_text(&id), "474be8b43449fb");
        assert_eq!(trace_id_text(&[0; 16]), "0");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff; 16]), "/////////////////////w==");
    }

    #[test]
    fn column_paths_match_the_leaf_constants() {
        let d = SchemaDescriptor::new(schema());
        assert_eq!(d.num_columns(), leaf::COUNT);
        let path = |i: usize| d.column(i).path().string();
        assert_eq!(path(leaf::TRACE_ID), "TraceID");
        assert_eq!(
            path(leaf::STATS_ERRORS),
            "ServiceStats.key_value.value.ErrorCount"
        );
        assert_eq!(
            path(leaf::RES_ATTRS),
            "rs.list.element.Resource.Attrs.list.element.Key"
        );
        assert_eq!(
            path(leaf::RES_SERVICE),
            "rs.list.element.Resource.ServiceName"
        );
        assert_eq!(
            path(leaf::RES_WELL_KNOWN),
            "rs.list.element.Resource.Cluster"
        );
        assert_eq!(
            path(leaf::RES_DEDICATED),
            "rs.list.element.Resource.DedicatedAttributes.String01"
        );
        assert_eq!(
            path(leaf::SCOPE_NAME),
            "rs.list.element.ss.list.element.Scope.Name"
        );
        assert_eq!(
            path(leaf::SCOPE_DROPPED),
            "rs.list.element.ss.list.element.Scope.DroppedAttributesCount"
        );
        let span = "rs.list.element.ss.list.element.Spans.list.element";
        assert_eq!(path(leaf::SPAN_ID), format!("{span}.SpanID"));
        assert_eq!(
            path(leaf::SPAN_ATTRS + leaf::attr::UNSUPPORTED),
            format!("{span}.Attrs.list.element.ValueUnsupported")
        );
        assert_eq!(
            path(leaf::SPAN_DROPPED),
            format!("{span}.DroppedAttributesCount")
        );
        assert_eq!(
            path(leaf::EVENT_TIME),
            format!("{span}.Events.list.element.TimeSinceStartNano")
        );
        assert_eq!(
            path(leaf::EVENT_DROPPED),
            format!("{span}.Events.list.element.DroppedAttributesCount")
        );
        assert_eq!(
            path(leaf::SPAN_DROPPED_EVENTS),
            format!("{span}.DroppedEventsCount")
        );
        assert_eq!(
            path(leaf::LINK_TRACE_ID),
            format!("{span}.Links.list.element.TraceID")
        );
        assert_eq!(
            path(leaf::LINK_DROPPED),
            format!("{span}.Links.list.element.DroppedAttributesCount")
        );
        assert_eq!(
            path(leaf::SPAN_DROPPED_LINKS),
            format!("{span}.DroppedLinksCount")
        );
        assert_eq!(
            path(leaf::SPAN_HTTP_STATUS),
            format!("{span}.HttpStatusCode")
        );
        assert_eq!(
            path(leaf::SPAN_DEDICATED + 9),
            format!("{span}.DedicatedAttributes.String10")
        );
    }
}
