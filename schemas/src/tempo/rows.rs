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
//!   valid block; [`RowGroupTraces`] checks it and refuses a file whose ids
//!   do not ascend (merging such a file would write an unsorted block).

use super::meta::BlockMeta;
use super::ranged::{Footer, Sparse};
use super::read::{trace_from_row, ReadError, Trace};
use bytes::Bytes;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
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
        let mut sparse = Sparse::with_len(file_len);
        sparse.insert(footer_start, footer);
        sparse.insert(start, bytes);
        let options = ReadOptionsBuilder::new()
            .with_predicate(Box::new(move |_, i| i == group))
            .build();
        let reader: Box<dyn FileReader> =
            Box::new(SerializedFileReader::new_with_options(sparse, options)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::resource::Resource;
    use crate::otlp::trace::{ResourceSpans, ScopeSpans, Span};
    use crate::tempo::read::DataFile;
    use crate::tempo::trace::TraceRow;
    use crate::tempo::write::BlockWriter;
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
