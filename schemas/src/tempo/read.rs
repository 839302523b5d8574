//! Reading a block back: find one trace by id in `data.parquet` and turn its
//! row into OTLP again, the well-known columns becoming attributes again.
//!
//! Used by the query API for traces older than the PostgreSQL retention and
//! by the tests. Lookup follows Tempo (tempo-blocks.md §5): the bloom filter
//! first (the caller's job, with [`super::bloom`]), then the row groups whose
//! TraceID min/max statistics hold the id, then a scan of that column, then
//! that one row, every column skipping the rows before it (whole pages by
//! their headers' row counts) rather than assembling them.

use super::schema::RESOURCE_WELL_KNOWN;
use crate::otlp::common::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use crate::otlp::resource::Resource;
use crate::otlp::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use bytes::Bytes;
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::column::reader::{get_column_reader, ColumnReader};
use parquet::data_type::ByteArray;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::record::reader::{RowIter, TreeBuilder};
use parquet::record::{Field, Row};
use parquet::schema::types::Type as SchemaType;

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a parquet file, or a broken one.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A row that does not have the vParquet4 shape.
    #[error("unexpected row shape: {0}")]
    Shape(&'static str),
}

/// A trace read back: its id and its spans as OTLP.
pub type Trace = ([u8; 16], Vec<ResourceSpans>);

/// An opened `data.parquet`.
pub struct DataFile {
    reader: SerializedFileReader<Bytes>,
}

impl DataFile {
    /// Opens the file's bytes.
    pub fn open(data: Bytes) -> Result<DataFile, ReadError> {
        Ok(DataFile {
            reader: SerializedFileReader::new(data)?,
        })
    }

    /// Rows (traces) in the file.
    pub fn traces(&self) -> i64 {
        self.reader.metadata().file_metadata().num_rows()
    }

    /// Row groups.
    pub fn row_groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    /// Every trace id in file order.
    pub fn trace_ids(&self) -> Result<Vec<[u8; 16]>, ReadError> {
        let mut out = Vec::new();
        for g in 0..self.row_groups() {
            out.extend(self.row_group_ids(g)?.iter().map(id16));
        }
        Ok(out)
    }

    fn row_group_ids(&self, group: usize) -> Result<Vec<ByteArray>, ReadError> {
        trace_ids(&*self.reader.get_row_group(group)?)
    }

    /// Every trace in file order, with its id: one pass over the rows (where
    /// [`DataFile::find`] of each id would decode a row group's rows up to
    /// that id, every time).
    pub fn all(&self) -> Result<Vec<Trace>, ReadError> {
        let mut out = Vec::new();
        for group in 0..self.row_groups() {
            let ids = self.row_group_ids(group)?;
            let row_group = self.reader.get_row_group(group)?;
            for (id, row) in ids.iter().zip(row_group.get_row_iter(None)?) {
                out.push((id16(id), trace_from_row(&row?)?));
            }
        }
        Ok(out)
    }

    /// The trace with this id, as OTLP resource spans; `None` when the file
    /// does not hold it.
    pub fn find(&self, trace_id: &[u8; 16]) -> Result<Option<Vec<ResourceSpans>>, ReadError> {
        for group in 0..self.row_groups() {
            if !may_hold(self.reader.metadata().row_group(group), trace_id) {
                continue;
            }
            let ids = self.row_group_ids(group)?;
            let Ok(row) = ids.binary_search_by(|id| id.data().cmp(&trace_id[..])) else {
                continue;
            };
            // Every column skips to the row first: whole pages by their
            // headers' row counts (data page v2), without decoding them.
            let skipping = SkippingRowGroup {
                inner: self.reader.get_row_group(group)?,
                skip: row,
                pages: None,
            };
            let schema = self.reader.metadata().file_metadata().schema_descr_ptr();
            return read_row(schema, &skipping).map(Some);
        }
        Ok(None)
    }
}

/// Whether a row group's TraceID statistics leave room for `trace_id`.
pub(super) fn may_hold(row_group: &RowGroupMetaData, trace_id: &[u8; 16]) -> bool {
    let (min, max) = match row_group.column(0).statistics() {
        Some(s) => (s.min_bytes_opt(), s.max_bytes_opt()),
        None => (None, None),
    };
    !(min.is_some_and(|m| m > &trace_id[..]) || max.is_some_and(|m| m < &trace_id[..]))
}

/// A row group's trace ids (column 0), in row order.
pub(super) fn trace_ids(row_group: &dyn RowGroupReader) -> Result<Vec<ByteArray>, ReadError> {
    let mut values = Vec::new();
    if let ColumnReader::ByteArrayColumnReader(mut c) = row_group.get_column_reader(0)? {
        c.read_records(usize::MAX, None, None, &mut values)?;
    } else {
        return Err(ReadError::Shape("TraceID is not a byte array"));
    }
    Ok(values)
}

/// The row a [`SkippingRowGroup`] starts at, as OTLP.
pub(super) fn read_row(
    schema: parquet::schema::types::SchemaDescPtr,
    row_group: &SkippingRowGroup<'_>,
) -> Result<Vec<ResourceSpans>, ReadError> {
    // Small batches: one row is wanted, not the 1 024 after it.
    let row = TreeBuilder::new()
        .with_batch_size(16)
        .as_iter(schema, row_group)?
        .next()
        .ok_or(ReadError::Shape("row missing"))??;
    trace_from_row(&row)
}

/// A row group whose column readers start `skip` records in, so the record
/// reader assembles the row wanted without materialising the rows before it.
pub(super) struct SkippingRowGroup<'a> {
    pub(super) inner: Box<dyn RowGroupReader + 'a>,
    pub(super) skip: usize,
    /// Per column, the data pages the readers may read (those up to and
    /// including the row's page, by the offset index): a column ends after
    /// them, so a reader never touches bytes past the row. `None`: all.
    pub(super) pages: Option<Vec<usize>>,
}

impl RowGroupReader for SkippingRowGroup<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.inner.metadata()
    }

    fn num_columns(&self) -> usize {
        self.inner.num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> parquet::errors::Result<Box<dyn PageReader>> {
        self.inner.get_column_page_reader(i)
    }

    fn get_column_reader(&self, i: usize) -> parquet::errors::Result<ColumnReader> {
        let mut reader = match &self.pages {
            None => self.inner.get_column_reader(i)?,
            Some(pages) => get_column_reader(
                self.metadata().column(i).column_descr_ptr(),
                Box::new(FirstPages {
                    inner: self.inner.get_column_page_reader(i)?,
                    data_pages_left: pages[i],
                }),
            ),
        };
        let skipped = match &mut reader {
            ColumnReader::BoolColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::Int32ColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::Int64ColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::Int96ColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::FloatColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::DoubleColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::ByteArrayColumnReader(r) => r.skip_records(self.skip)?,
            ColumnReader::FixedLenByteArrayColumnReader(r) => r.skip_records(self.skip)?,
        };
        if skipped != self.skip {
            return Err(parquet::errors::ParquetError::General(format!(
                "column {i} holds {skipped} rows before the one wanted, not {}",
                self.skip
            )));
        }
        Ok(reader)
    }

    fn get_column_bloom_filter(&self, i: usize) -> Option<&Sbbf> {
        self.inner.get_column_bloom_filter(i)
    }

    fn get_row_iter(&self, projection: Option<SchemaType>) -> parquet::errors::Result<RowIter<'_>> {
        RowIter::from_row_group(projection, self)
    }
}

/// The first `data_pages_left` data pages of a column chunk (and its
/// dictionary), then the end of the column: a record reader looking ahead
/// for the next row's values stops here instead of reading the next page.
/// Pages start at row boundaries wherever there is an offset index
/// (parquet's rule), so the row's values all come before the end.
struct FirstPages {
    inner: Box<dyn PageReader>,
    data_pages_left: usize,
}

impl FirstPages {
    fn next_is_data(&mut self) -> parquet::errors::Result<bool> {
        Ok(self.inner.peek_next_page()?.is_some_and(|m| !m.is_dict))
    }
}

impl Iterator for FirstPages {
    type Item = parquet::errors::Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for FirstPages {
    fn get_next_page(&mut self) -> parquet::errors::Result<Option<Page>> {
        if self.data_pages_left == 0 {
            return Ok(None);
        }
        let page = self.inner.get_next_page()?;
        if page.as_ref().is_some_and(|p| !p.is_dictionary_page()) {
            self.data_pages_left -= 1;
        }
        Ok(page)
    }

    fn peek_next_page(&mut self) -> parquet::errors::Result<Option<PageMetadata>> {
        if self.data_pages_left == 0 {
            return Ok(None);
        }
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> parquet::errors::Result<()> {
        if self.data_pages_left == 0 {
            return Ok(());
        }
        if self.next_is_data()? {
            self.data_pages_left -= 1;
        }
        self.inner.skip_next_page()
    }

    fn supports_deferred_dictionary(&self) -> bool {
        self.inner.supports_deferred_dictionary()
    }

    fn take_deferred_dictionary(&mut self) -> parquet::errors::Result<Option<Page>> {
        self.inner.take_deferred_dictionary()
    }

    fn at_record_boundary(&mut self) -> parquet::errors::Result<bool> {
        if self.data_pages_left == 0 {
            return Ok(true);
        }
        self.inner.at_record_boundary()
    }
}

pub(super) fn id16(id: &ByteArray) -> [u8; 16] {
    let mut out = [0u8; 16];
    let data = id.data();
    let n = data.len().min(16);
    out[16 - n..].copy_from_slice(&data[data.len() - n..]);
    out
}

// ---- row to OTLP ----

fn field(row: &Row, i: usize) -> Result<&Field, ReadError> {
    row.get_column_iter()
        .nth(i)
        .map(|(_, f)| f)
        .ok_or(ReadError::Shape("missing field"))
}

fn group(row: &Row, i: usize) -> Result<&Row, ReadError> {
    match field(row, i)? {
        Field::Group(g) => Ok(g),
        _ => Err(ReadError::Shape("expected a group")),
    }
}

/// The elements of a LIST field (an empty list reads as null).
fn list(row: &Row, i: usize) -> Result<&[Field], ReadError> {
    match field(row, i)? {
        Field::ListInternal(l) => Ok(l.elements()),
        Field::Null => Ok(&[]),
        _ => Err(ReadError::Shape("expected a list")),
    }
}

fn groups(row: &Row, i: usize) -> Result<Vec<&Row>, ReadError> {
    list(row, i)?
        .iter()
        .map(|f| match f {
            Field::Group(g) => Ok(g),
            _ => Err(ReadError::Shape("expected list of groups")),
        })
        .collect()
}

fn string(row: &Row, i: usize) -> Result<Option<String>, ReadError> {
    match field(row, i)? {
        Field::Str(s) => Ok(Some(s.clone())),
        Field::Bytes(b) => Ok(Some(String::from_utf8_lossy(b.data()).into_owned())),
        Field::Null => Ok(None),
        _ => Err(ReadError::Shape("expected a string")),
    }
}

fn bytes(row: &Row, i: usize) -> Result<Vec<u8>, ReadError> {
    match field(row, i)? {
        Field::Bytes(b) => Ok(b.data().to_vec()),
        Field::Str(s) => Ok(s.as_bytes().to_vec()),
        _ => Err(ReadError::Shape("expected bytes")),
    }
}

fn int(row: &Row, i: usize) -> Result<Option<i64>, ReadError> {
    Ok(match field(row, i)? {
        Field::Int(v) => Some(i64::from(*v)),
        Field::UInt(v) => Some(i64::from(*v)),
        Field::Long(v) => Some(*v),
        Field::ULong(v) => Some(*v as i64),
        Field::Null => None,
        _ => return Err(ReadError::Shape("expected an integer")),
    })
}

fn req_int(row: &Row, i: usize) -> Result<i64, ReadError> {
    int(row, i)?.ok_or(ReadError::Shape("null in a required integer"))
}

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn attributes(row: &Row, i: usize) -> Result<Vec<KeyValue>, ReadError> {
    groups(row, i)?.into_iter().map(attribute).collect()
}

fn attribute(a: &Row) -> Result<KeyValue, ReadError> {
    let key = string(a, 0)?.unwrap_or_default();
    let is_array = matches!(field(a, 1)?, Field::Bool(true));
    let mut values: Vec<AnyValue> = Vec::new();
    for (i, f) in (2..6)
        .flat_map(|i| list(a, i).map(|l| l.iter().map(move |f| (i, f))))
        .flatten()
    {
        let v = match (i, f) {
            (2, Field::Str(s)) => Value::StringValue(s.clone()),
            (3, Field::Long(n)) => Value::IntValue(*n),
            (4, Field::Double(x)) => Value::DoubleValue(*x),
            (5, Field::Bool(b)) => Value::BoolValue(*b),
            _ => return Err(ReadError::Shape("attribute value of an unexpected type")),
        };
        values.push(AnyValue { value: Some(v) });
    }
    let value = if is_array {
        Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values })),
        })
    } else if let Some(v) = values.pop() {
        Some(v)
    } else {
        string(a, 6)?.and_then(|json| serde_json::from_str(&json).ok())
    };
    Ok(KeyValue {
        key,
        value,
        ..Default::default()
    })
}

pub(super) fn trace_from_row(row: &Row) -> Result<Vec<ResourceSpans>, ReadError> {
    let mut out = Vec::new();
    for rs in groups(row, 8)? {
        let r = group(rs, 0)?;
        let mut resource_attributes = Vec::new();
        if let Some(service) = string(r, 2)? {
            resource_attributes.push(string_kv("service.name", service));
        }
        for (i, key) in RESOURCE_WELL_KNOWN.iter().enumerate() {
            if let Some(v) = string(r, 3 + i)? {
                resource_attributes.push(string_kv(key, v));
            }
        }
        resource_attributes.extend(attributes(r, 0)?);
        let resource = Resource {
            attributes: resource_attributes,
            dropped_attributes_count: req_int(r, 1)? as u32,
            ..Default::default()
        };
        let mut scope_spans = Vec::new();
        for ss in groups(rs, 1)? {
            let s = group(ss, 0)?;
            let scope = InstrumentationScope {
                name: string(s, 0)?.unwrap_or_default(),
                version: string(s, 1)?.unwrap_or_default(),
                attributes: attributes(s, 2)?,
                dropped_attributes_count: req_int(s, 3)? as u32,
            };
            let spans = groups(ss, 1)?
                .into_iter()
                .map(|sp| span_from_row(row, sp))
                .collect::<Result<_, _>>()?;
            scope_spans.push(ScopeSpans {
                scope: Some(scope),
                spans,
                schema_url: String::new(),
            });
        }
        out.push(ResourceSpans {
            resource: Some(resource),
            scope_spans,
            schema_url: String::new(),
        });
    }
    Ok(out)
}

fn span_from_row(trace: &Row, s: &Row) -> Result<Span, ReadError> {
    let start = req_int(s, 8)? as u64;
    let mut span_attributes = attributes(s, 12)?;
    if let Some(v) = string(s, 18)? {
        span_attributes.push(string_kv("http.method", v));
    }
    if let Some(v) = string(s, 19)? {
        span_attributes.push(string_kv("http.url", v));
    }
    if let Some(v) = int(s, 20)? {
        span_attributes.push(KeyValue {
            key: "http.status_code".into(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(v)),
            }),
            ..Default::default()
        });
    }
    let events = groups(s, 14)?
        .into_iter()
        .map(|e| {
            Ok(span::Event {
                time_unix_nano: start + req_int(e, 0)? as u64,
                name: string(e, 1)?.unwrap_or_default(),
                attributes: attributes(e, 2)?,
                dropped_attributes_count: req_int(e, 3)? as u32,
            })
        })
        .collect::<Result<_, ReadError>>()?;
    let links = groups(s, 16)?
        .into_iter()
        .map(|l| {
            Ok(span::Link {
                trace_id: bytes(l, 0)?,
                span_id: bytes(l, 1)?,
                trace_state: string(l, 2)?.unwrap_or_default(),
                attributes: attributes(l, 3)?,
                dropped_attributes_count: req_int(l, 4)? as u32,
                flags: 0,
            })
        })
        .collect::<Result<_, ReadError>>()?;
    let status_code = req_int(s, 10)? as i32;
    let status_message = string(s, 11)?.unwrap_or_default();
    Ok(Span {
        trace_id: bytes(trace, 0)?,
        span_id: bytes(s, 0)?,
        parent_span_id: bytes(s, 1)?,
        name: string(s, 5)?.unwrap_or_default(),
        kind: req_int(s, 6)? as i32,
        trace_state: string(s, 7)?.unwrap_or_default(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + req_int(s, 9)? as u64,
        attributes: span_attributes,
        dropped_attributes_count: req_int(s, 13)? as u32,
        events,
        dropped_events_count: req_int(s, 15)? as u32,
        links,
        dropped_links_count: req_int(s, 17)? as u32,
        status: (status_code != 0 || !status_message.is_empty()).then_some(Status {
            code: status_code,
            message: status_message,
        }),
        flags: 0,
    })
}
