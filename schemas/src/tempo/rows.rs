//! Reading every trace of a `data.parquet` that is not in memory, one row
//! group at a time: the compactor's input side. No I/O here: the caller
//! fetches the byte ranges named ([`footer_range`], [`row_group_range`])
//! and hands them in.
//!
//! What it guarantees:
//! - The footer is one range read (its length is the meta's `footerSize`),
//!   then each row group is one contiguous range read: all of its column
//!   chunks, nothing of the others.
//! - [`RowGroupTraces`] decodes rows lazily from the row group's bytes, so
//!   the memory an input holds is its footer, one row group's compressed
//!   bytes and one row being decoded, whatever the block's size.
//! - Traces come in file order, which is ascending trace id order in a
//!   valid block; [`RowGroupTraces`] and [`RowGroupColumns`] check it and
//!   refuse a file whose ids do not ascend (merging such a file would write
//!   an unsorted block).
//! - [`RowGroupColumns`] reads the same row group column by column, a
//!   batch of rows at a time, so a trace found in one input is copied into
//!   the output as its levels and values ([`RowGroupColumns::copy_row`],
//!   then [`super::write::BlockWriter::push_copied`]) without being
//!   assembled, converted to OTLP and shredded again; the trace is the
//!   same, value for value (tested). Rows copied aside can also be read
//!   back as traces ([`super::write::rows_file`]) to be merged. Only a file of exactly
//!   our schema is read this way; another is refused
//!   ([`ReadError::Shape`]) and read as records.

use super::columns::{Columns, Slice};
use super::meta::BlockMeta;
use super::ranged::{Footer, Sparse};
use super::read::{trace_from_row, ReadError, Trace};
use super::schema::leaf;
use super::write::schema;
use bytes::Bytes;
use parquet::column::reader::{get_column_reader, ColumnReader};
use parquet::data_type::ByteArray;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::SchemaDescriptor;
use std::ops::Range;
use std::sync::Arc;

/// The byte range of the footer (metadata, its length and the magic) of
/// the block's `data.parquet`.
pub fn footer_range(meta: &BlockMeta) -> Range<u64> {
    let footer = u64::from(meta.footer_size) + 8;
    meta.size.saturating_sub(footer)..meta.size
}

/// Decodes the footer fetched from [`footer_range`].
pub fn decode_footer(bytes: &[u8]) -> Result<Footer, ReadError> {
    if bytes.len() < 8 || &bytes[bytes.len() - 4..] != b"PAR1" {
        return Err(ReadError::Shape("footer does not end in PAR1"));
    }
    let metadata = ParquetMetaDataReader::decode_metadata(&bytes[..bytes.len() - 8])?;
    Ok(Arc::new(metadata))
}

/// The byte range holding every column chunk of row group `group`.
pub fn row_group_range(footer: &Footer, group: usize) -> Range<u64> {
    let row_group = footer.row_group(group);
    let mut start = u64::MAX;
    let mut end = 0u64;
    for c in row_group.columns() {
        let (s, len) = c.byte_range();
        start = start.min(s);
        end = end.max(s + len);
    }
    if start > end {
        return 0..0;
    }
    start..end
}

/// A reader of the file holding only row group `group`, from its footer
/// bytes (fetched at `footer_start`) and the row group's (at `start`).
fn row_group_file(
    file_len: u64,
    footer_start: u64,
    footer: Bytes,
    group: usize,
    start: u64,
    bytes: Bytes,
) -> Result<SerializedFileReader<Sparse>, ReadError> {
    let mut sparse = Sparse::with_len(file_len);
    sparse.insert(footer_start, footer);
    sparse.insert(start, bytes);
    let options = ReadOptionsBuilder::new()
        .with_predicate(Box::new(move |_, i| i == group))
        .build();
    Ok(SerializedFileReader::new_with_options(sparse, options)?)
}

/// The traces of one row group, decoded as they are asked for.
pub struct RowGroupTraces {
    rows: RowIter<'static>,
    last: Option<[u8; 16]>,
}

impl RowGroupTraces {
    /// The traces of row group `group` of a file of `file_len` bytes, from
    /// its footer bytes (fetched at `footer_start`) and the bytes of
    /// [`row_group_range`] (fetched at `start`).
    pub fn new(
        file_len: u64,
        footer_start: u64,
        footer: Bytes,
        group: usize,
        start: u64,
        bytes: Bytes,
    ) -> Result<RowGroupTraces, ReadError> {
        let file = row_group_file(file_len, footer_start, footer, group, start, bytes)?;
        let reader: Box<dyn FileReader> = Box::new(file);
        Ok(RowGroupTraces {
            rows: RowIter::from_file_into(reader),
            last: None,
        })
    }
}

fn trace_id(row: &Row) -> Result<[u8; 16], ReadError> {
    match row.get_column_iter().next() {
        Some((_, Field::Bytes(b))) if b.len() == 16 => {
            Ok(b.data().try_into().expect("16 bytes checked"))
        }
        _ => Err(ReadError::Shape("TraceID is not 16 bytes")),
    }
}

impl Iterator for RowGroupTraces {
    type Item = Result<Trace, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e.into())),
        };
        Some((|| {
            let id = trace_id(&row)?;
            if self.last.is_some_and(|last| last >= id) {
                return Err(ReadError::Shape("trace ids do not ascend"));
            }
            self.last = Some(id);
            Ok((id, trace_from_row(&row)?))
        })())
    }
}

/// Rows decoded per leaf column at a time.
const BATCH: usize = 256;

/// The values of a batch of one leaf column.
enum Decoded {
    Bytes(Vec<ByteArray>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
}

/// One leaf column of a row group, decoded a batch of whole rows at a time.
struct Leaf {
    reader: ColumnReader,
    /// The column has definition or repetition levels.
    levels: bool,
    max_def: i16,
    def: Vec<i16>,
    rep: Vec<i16>,
    values: Decoded,
    /// Entries (levels, or values when the column has none) in the batch.
    entries: usize,
    /// The next row's first entry and first value in the batch.
    entry: usize,
    value: usize,
}

impl Leaf {
    /// Decodes the next batch once this one is used up; false at the end
    /// of the column.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.entry < self.entries {
            return Ok(true);
        }
        self.def.clear();
        self.rep.clear();
        self.entry = 0;
        self.value = 0;
        let (def, rep) = if self.levels {
            (Some(&mut self.def), Some(&mut self.rep))
        } else {
            (None, None)
        };
        let (rows, values, levels) = match (&mut self.reader, &mut self.values) {
            (ColumnReader::ByteArrayColumnReader(r), Decoded::Bytes(v)) => {
                v.clear();
                r.read_records(BATCH, def, rep, v)?
            }
            (ColumnReader::Int32ColumnReader(r), Decoded::I32(v)) => {
                v.clear();
                r.read_records(BATCH, def, rep, v)?
            }
            (ColumnReader::Int64ColumnReader(r), Decoded::I64(v)) => {
                v.clear();
                r.read_records(BATCH, def, rep, v)?
            }
            (ColumnReader::DoubleColumnReader(r), Decoded::F64(v)) => {
                v.clear();
                r.read_records(BATCH, def, rep, v)?
            }
            (ColumnReader::BoolColumnReader(r), Decoded::Bool(v)) => {
                v.clear();
                r.read_records(BATCH, def, rep, v)?
            }
            _ => return Err(ReadError::Shape("a column of another physical type")),
        };
        self.entries = if self.levels { levels } else { values };
        Ok(rows > 0)
    }

    /// The entries and values of the next row: (entry range, value range).
    fn row(&self) -> (Range<usize>, Range<usize>) {
        if !self.levels {
            return (self.entry..self.entry + 1, self.value..self.value + 1);
        }
        let end = self.rep[self.entry + 1..self.entries]
            .iter()
            .position(|&r| r == 0)
            .map_or(self.entries, |i| self.entry + 1 + i);
        let defined = self.def[self.entry..end]
            .iter()
            .filter(|&&d| d == self.max_def)
            .count();
        (self.entry..end, self.value..self.value + defined)
    }

    fn slice(&self, values: Range<usize>) -> Slice<'_> {
        match &self.values {
            Decoded::Bytes(v) => Slice::Bytes(&v[values]),
            Decoded::I32(v) => Slice::I32(&v[values]),
            Decoded::I64(v) => Slice::I64(&v[values]),
            Decoded::F64(v) => Slice::F64(&v[values]),
            Decoded::Bool(v) => Slice::Bool(&v[values]),
        }
    }
}

/// What [`RowGroupColumns::head`] tells of the next row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowHead {
    /// Its trace id.
    pub id: [u8; 16],
    /// The trace's `StartTimeUnixNano`.
    pub start: u64,
    /// The trace's `EndTimeUnixNano`.
    pub end: u64,
}

/// A row copied aside by [`RowGroupColumns::copy_row`], as
/// [`super::write::BlockWriter::push_copied`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedRow {
    /// Its head.
    pub head: RowHead,
    /// What it added to the [`Columns`]' buffered bytes: how the writer
    /// knows, before copying a run of rows, which row fills its row group.
    pub bytes: usize,
}

/// The rows of one row group of a block of our schema, column by column.
pub struct RowGroupColumns {
    leaves: Vec<Leaf>,
    last: Option<[u8; 16]>,
}

/// Whether `descriptor` is our schema, leaf for leaf (path, type, levels).
fn is_our_schema(descriptor: &SchemaDescriptor) -> bool {
    let ours = SchemaDescriptor::new(schema());
    descriptor.num_columns() == ours.num_columns()
        && descriptor
            .columns()
            .iter()
            .zip(ours.columns())
            .all(|(a, b)| {
                a.path() == b.path()
                    && a.physical_type() == b.physical_type()
                    && a.max_def_level() == b.max_def_level()
                    && a.max_rep_level() == b.max_rep_level()
            })
}

impl RowGroupColumns {
    /// The rows of row group `group`, from the same byte ranges as
    /// [`RowGroupTraces::new`]. A file of another schema is refused.
    pub fn new(
        file_len: u64,
        footer_start: u64,
        footer: Bytes,
        group: usize,
        start: u64,
        bytes: Bytes,
    ) -> Result<RowGroupColumns, ReadError> {
        let file = row_group_file(file_len, footer_start, footer, group, start, bytes)?;
        let descriptor = file.metadata().file_metadata().schema_descr_ptr();
        if !is_our_schema(&descriptor) {
            return Err(ReadError::Shape("another schema than ours"));
        }
        let row_group = file.get_row_group(0)?;
        let mut leaves = Vec::with_capacity(descriptor.num_columns());
        for (i, column) in descriptor.columns().iter().enumerate() {
            let reader = get_column_reader(column.clone(), row_group.get_column_page_reader(i)?);
            let values = match &reader {
                ColumnReader::ByteArrayColumnReader(_) => Decoded::Bytes(Vec::new()),
                ColumnReader::Int32ColumnReader(_) => Decoded::I32(Vec::new()),
                ColumnReader::Int64ColumnReader(_) => Decoded::I64(Vec::new()),
                ColumnReader::DoubleColumnReader(_) => Decoded::F64(Vec::new()),
                ColumnReader::BoolColumnReader(_) => Decoded::Bool(Vec::new()),
                _ => return Err(ReadError::Shape("a column of another physical type")),
            };
            leaves.push(Leaf {
                reader,
                levels: column.max_def_level() > 0 || column.max_rep_level() > 0,
                max_def: column.max_def_level(),
                def: Vec::new(),
                rep: Vec::new(),
                values,
                entries: 0,
                entry: 0,
                value: 0,
            });
        }
        Ok(RowGroupColumns { leaves, last: None })
    }

    /// The next row's trace id and times; `None` at the end of the row group.
    pub fn head(&mut self) -> Result<Option<RowHead>, ReadError> {
        let mut head = RowHead {
            id: [0; 16],
            start: 0,
            end: 0,
        };
        for i in [leaf::TRACE_ID, leaf::START, leaf::END] {
            let leaf = &mut self.leaves[i];
            if !leaf.fill()? {
                return Ok(None);
            }
            match (&leaf.values, i) {
                (Decoded::Bytes(v), leaf::TRACE_ID) => {
                    head.id = v[leaf.value]
                        .data()
                        .try_into()
                        .map_err(|_| ReadError::Shape("TraceID is not 16 bytes"))?;
                }
                (Decoded::I64(v), leaf::START) => head.start = v[leaf.value] as u64,
                (Decoded::I64(v), _) => head.end = v[leaf.value] as u64,
                _ => return Err(ReadError::Shape("a column of another physical type")),
            }
        }
        if self.last.is_some_and(|last| last >= head.id) {
            return Err(ReadError::Shape("trace ids do not ascend"));
        }
        Ok(Some(head))
    }

    /// Appends the next row to `into` as it is and moves past it (`None`:
    /// only moves past it). Returns the row's spans.
    pub fn copy_row(&mut self, mut into: Option<&mut Columns>) -> Result<u64, ReadError> {
        let id = self.head()?.ok_or(ReadError::Shape("row missing"))?.id;
        let mut spans = 0;
        for (i, leaf) in self.leaves.iter_mut().enumerate() {
            if !leaf.fill()? {
                return Err(ReadError::Shape("a column ends before the others"));
            }
            let (entries, values) = leaf.row();
            if i == leaf::SPAN_ID {
                spans = values.len() as u64;
            }
            if let Some(into) = into.as_deref_mut() {
                let slice = leaf.slice(values.clone());
                if leaf.levels {
                    into.copy(
                        i,
                        &leaf.rep[entries.clone()],
                        &leaf.def[entries.clone()],
                        slice,
                    );
                } else {
                    into.copy(i, &[0], &[0], slice);
                }
            }
            leaf.entry = entries.end;
            leaf.value = values.end;
        }
        self.last = Some(id);
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::resource::Resource;
    use crate::otlp::trace::{ResourceSpans, ScopeSpans, Span};
    use crate::tempo::columns::RowCursor;
    use crate::tempo::read::DataFile;
    use crate::tempo::trace::TraceRow;
    use crate::tempo::write::{rows_file, schema_columns, BlockWriter};
    use crate::testing::kv_str;

    fn trace(n: u32) -> ([u8; 16], Vec<ResourceSpans>) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
        id[15] = 1;
        let spans = (0..1 + n % 5)
            .map(|i| Span {
                trace_id: id.to_vec(),
                span_id: vec![1, 2, 3, 4, 5, 6, (n % 251) as u8, i as u8 + 1],
                name: format!("span {i} of {n}"),
                start_time_unix_nano: 1_000 + u64::from(n),
                end_time_unix_nano: 2_000 + u64::from(n + i),
                attributes: vec![kv_str("gen_ai.request.model", format!("model-{}", n % 3))],
                ..Default::default()
            })
            .collect();
        let resource = Resource {
            attributes: vec![kv_str("service.name", "svc")],
            ..Default::default()
        };
        let rs = ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        (id, vec![rs])
    }

    #[test]
    fn every_row_group_read_from_its_own_range_gives_the_whole_file() {
        let mut traces: Vec<([u8; 16], Vec<ResourceSpans>)> = (0..400).map(trace).collect();
        traces.sort_by_key(|t| t.0);
        // Small row groups: many of them.
        let mut w = BlockWriter::new(traces.len() as u64, 8 << 10).unwrap();
        for (id, b) in &traces {
            w.push(&TraceRow::merge(*id, &[b]).unwrap()).unwrap();
        }
        let block = w.finish(uuid::Uuid::nil(), "t").unwrap();
        let data = block.objects[0].1.clone();
        let expected = DataFile::open(data.clone()).unwrap().all().unwrap();
        let range = footer_range(&block.meta);
        let footer_bytes = data.slice(range.start as usize..range.end as usize);
        let footer = decode_footer(&footer_bytes).unwrap();
        assert!(footer.num_row_groups() > 3, "{}", footer.num_row_groups());
        let mut got = Vec::new();
        for g in 0..footer.num_row_groups() {
            let r = row_group_range(&footer, g);
            let rows = RowGroupTraces::new(
                data.len() as u64,
                range.start,
                footer_bytes.clone(),
                g,
                r.start,
                data.slice(r.start as usize..r.end as usize),
            )
            .unwrap();
            for t in rows {
                got.push(t.unwrap());
            }
        }
        assert_eq!(got.len(), 400);
        assert!(got == expected);
    }

    /// A block of `n` of [`trace`]'s traces in small row groups, with its
    /// data file's bytes, footer range and decoded footer.
    fn block(n: u32) -> (crate::tempo::write::Block, Bytes, Range<u64>, Footer) {
        let mut traces: Vec<([u8; 16], Vec<ResourceSpans>)> = (0..n).map(trace).collect();
        traces.sort_by_key(|t| t.0);
        let mut w = BlockWriter::new(traces.len() as u64, 8 << 10).unwrap();
        for (id, b) in &traces {
            w.push(&TraceRow::merge(*id, &[b]).unwrap()).unwrap();
        }
        let block = w.finish(uuid::Uuid::nil(), "t").unwrap();
        let data = block.objects[0].1.clone();
        let range = footer_range(&block.meta);
        let footer = decode_footer(&data[range.start as usize..]).unwrap();
        (block, data, range, footer)
    }

    fn columns(data: &Bytes, range: &Range<u64>, footer: &Footer, g: usize) -> RowGroupColumns {
        let r = row_group_range(footer, g);
        RowGroupColumns::new(
            data.len() as u64,
            range.start,
            data.slice(range.start as usize..),
            g,
            r.start,
            data.slice(r.start as usize..r.end as usize),
        )
        .unwrap()
    }

    #[test]
    fn rows_copied_column_by_column_are_the_same_traces_and_read_back_as_records_do() {
        let (block, data, range, footer) = block(600);
        assert!(footer.num_row_groups() > 3);
        let expected = DataFile::open(data.clone()).unwrap().all().unwrap();
        // Every row copied aside, then into a new block with row groups of
        // another size.
        let mut copy = BlockWriter::new(600, 20 << 10).unwrap();
        let mut staged = schema_columns();
        let mut copied_rows = Vec::new();
        let mut spans = 0;
        for g in 0..footer.num_row_groups() {
            let mut rows = columns(&data, &range, &footer, g);
            while let Some(head) = rows.head().unwrap() {
                let before = staged.buffered_bytes();
                spans += rows.copy_row(Some(&mut staged)).unwrap();
                let bytes = staged.buffered_bytes() - before;
                copied_rows.push(CopiedRow { head, bytes });
            }
        }
        // Pushed in runs of every length, each cut where a row group fills.
        let mut cursor = RowCursor::default();
        let mut at = 0;
        let mut run = 1;
        while at < copied_rows.len() {
            let end = (at + run).min(copied_rows.len());
            let mut from = at;
            while from < end {
                let n = copy
                    .push_copied(&copied_rows[from..end], &staged, &mut cursor)
                    .unwrap();
                assert!(n >= 1);
                from += n;
            }
            at = end;
            run = run % 7 + 1;
        }
        let copied = copy.finish(uuid::Uuid::nil(), "t").unwrap();
        let got = DataFile::open(copied.objects[0].1.clone())
            .unwrap()
            .all()
            .unwrap();
        assert!(got == expected);
        let want: usize = expected
            .iter()
            .flat_map(|(_, b)| b)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        assert_eq!(spans as usize, want);
        assert_eq!(copied.meta.start_time, block.meta.start_time);
        assert_eq!(copied.meta.end_time, block.meta.end_time);
        assert_eq!(copied.meta.total_objects, block.meta.total_objects);
        // Every third row set aside and read back as traces; the others skipped.
        let mut aside = schema_columns();
        for g in 0..footer.num_row_groups() {
            let mut rows = columns(&data, &range, &footer, g);
            let mut k = 0;
            while rows.head().unwrap().is_some() {
                rows.copy_row((k % 3 == 0).then_some(&mut aside)).unwrap();
                k += 1;
            }
        }
        let mixed = DataFile::open(rows_file(&mut aside).unwrap())
            .unwrap()
            .all()
            .unwrap();
        let every_third: Vec<_> = {
            let mut out = Vec::new();
            for g in 0..footer.num_row_groups() {
                let r = row_group_range(&footer, g);
                let traces = RowGroupTraces::new(
                    data.len() as u64,
                    range.start,
                    data.slice(range.start as usize..),
                    g,
                    r.start,
                    data.slice(r.start as usize..r.end as usize),
                )
                .unwrap();
                out.extend(traces.step_by(3).map(Result::unwrap));
            }
            out
        };
        assert!(mixed == every_third);
    }

    #[test]
    fn a_streamed_block_has_the_same_bytes_and_meta_as_one_in_memory() {
        let mut traces: Vec<([u8; 16], Vec<ResourceSpans>)> = (0..50).map(trace).collect();
        traces.sort_by_key(|t| t.0);
        let mut memory = BlockWriter::new(50, 4 << 10).unwrap();
        let mut streamed =
            BlockWriter::to_writer(std::io::Cursor::new(Vec::new()), 50, 4 << 10).unwrap();
        for (id, b) in &traces {
            memory.push(&TraceRow::merge(*id, &[b]).unwrap()).unwrap();
            streamed.push(&TraceRow::merge(*id, &[b]).unwrap()).unwrap();
        }
        let block = memory.finish(uuid::Uuid::nil(), "t").unwrap();
        let s = streamed.finish_streamed(uuid::Uuid::nil(), "t").unwrap();
        assert_eq!(s.data.into_inner(), block.objects[0].1.to_vec());
        assert_eq!(s.meta, block.meta);
        assert_eq!(s.objects[..], block.objects[1..]);
        assert_eq!(s.last_id, traces.last().unwrap().0);
    }
}
