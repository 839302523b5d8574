//! Finding one trace in a `data.parquet` that is not in memory: which byte
//! ranges a lookup needs, step by step, so the caller fetches only those
//! from object storage. No I/O here: [`Lookup::step`] says which ranges to
//! fetch, the caller fetches them and hands them back with [`Lookup::add`],
//! until the lookup answers.
//!
//! What it guarantees:
//! - The answer is [`super::read::DataFile::find`]'s over the whole file
//!   (the tests compare the two on every trace of a block).
//! - A lookup reads the file's last [`TAIL`] bytes (the whole footer when
//!   it is larger); for each row group whose TraceID statistics leave room
//!   for the id, that row group's offset index and TraceID column; then, for
//!   the row found, each column's dictionary page and the one data page
//!   that holds the row (parquet pages start at row boundaries wherever there
//!   is an offset index). Nothing else of the file is read, so the bytes of
//!   a lookup grow with the trace and the footer, not with the block.
//! - A file without an offset index (another writer's) is read whole, as
//!   before.
//! - Every step asks only for bytes not yet held; a step that would ask for
//!   the same missing bytes twice is an error, never a loop.

use super::read::{may_hold, read_row, trace_ids, ReadError, SkippingRowGroup};
use crate::otlp::trace::ResourceSpans;
use bytes::{Buf, Bytes, BytesMut};
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

/// Bytes read from the end of the file first: the footer of a block of a
/// few hundred megabytes fits, a larger one costs one more read.
pub const TAIL: u64 = 64 << 10;

/// A data file's decoded footer, which a caller may keep for the next
/// lookup in the same file ([`Lookup::metadata`], [`Lookup::with_metadata`]).
pub type Footer = Arc<ParquetMetaData>;

/// The memory a kept [`Footer`] holds.
pub fn footer_bytes(footer: &Footer) -> usize {
    footer.memory_size()
}

/// What the caller does next.
#[derive(Debug)]
pub enum Step {
    /// Fetch these byte ranges of the file and [`Lookup::add`] them.
    Fetch(Vec<Range<u64>>),
    /// The trace, or `None` when the file does not hold it.
    Done(Option<Vec<ResourceSpans>>),
}

/// The parts of a file fetched so far, as a parquet [`ChunkReader`]: a read
/// of bytes not held is an error naming them.
#[derive(Debug, Clone, Default)]
pub struct Sparse {
    len: u64,
    /// Start offset to bytes; parts do not overlap.
    parts: BTreeMap<u64, Bytes>,
}

impl Sparse {
    /// Nothing fetched yet of a file of `len` bytes.
    pub fn with_len(len: u64) -> Sparse {
        Sparse {
            len,
            parts: BTreeMap::new(),
        }
    }

    /// Adds bytes fetched at `start`, joined with the parts they touch.
    pub fn insert(&mut self, start: u64, bytes: Bytes) {
        let end = start + bytes.len() as u64;
        if self.holds(&(start..end)) {
            return;
        }
        // Merge with every part it touches, so a range always lies in one part.
        let mut from = start;
        let mut to = end;
        let touching: Vec<u64> = self
            .parts
            .range(..=end)
            .filter(|(s, b)| **s + b.len() as u64 >= start)
            .map(|(s, _)| *s)
            .collect();
        for s in &touching {
            let b = &self.parts[s];
            from = from.min(*s);
            to = to.max(*s + b.len() as u64);
        }
        if touching.is_empty() {
            self.parts.insert(start, bytes);
            return;
        }
        let mut merged = BytesMut::zeroed((to - from) as usize);
        for s in touching {
            let b = self.parts.remove(&s).expect("listed above");
            let at = (s - from) as usize;
            merged[at..at + b.len()].copy_from_slice(&b);
        }
        let at = (start - from) as usize;
        merged[at..at + bytes.len()].copy_from_slice(&bytes);
        self.parts.insert(from, merged.freeze());
    }

    /// The part holding `start`, and where `start` is in it.
    fn part(&self, start: u64) -> Option<(&Bytes, usize)> {
        let (s, b) = self.parts.range(..=start).next_back()?;
        let at = (start - s) as usize;
        (at < b.len() || (at == 0 && b.is_empty())).then_some((b, at))
    }

    fn holds(&self, range: &Range<u64>) -> bool {
        range.is_empty()
            || self
                .part(range.start)
                .is_some_and(|(b, at)| (b.len() - at) as u64 >= range.end - range.start)
    }

    fn slice(&self, range: &Range<u64>) -> Option<Bytes> {
        let (b, at) = self.part(range.start)?;
        let len = (range.end - range.start) as usize;
        (b.len() - at >= len).then(|| b.slice(at..at + len))
    }
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (b, at) = self
            .part(start)
            .ok_or_else(|| not_fetched(start..start + 1))?;
        Ok(b.slice(at..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let range = start..start + length as u64;
        self.slice(&range).ok_or_else(|| not_fetched(range))
    }
}

fn not_fetched(range: Range<u64>) -> ParquetError {
    ParquetError::General(format!("bytes {range:?} of the file were not fetched"))
}

/// A row group being looked at: its metadata with its offset index loaded.
struct Group {
    /// The row group's index in `metadata`.
    index: usize,
    metadata: Arc<ParquetMetaData>,
    /// The row holding the id, once found.
    row: usize,
}

/// One trace id looked up in one file of `len` bytes.
pub struct Lookup {
    id: [u8; 16],
    file: Sparse,
    metadata: Option<Arc<ParquetMetaData>>,
    /// Row groups whose statistics leave room for the id, not yet looked at.
    candidates: VecDeque<usize>,
    group: Option<Group>,
    /// The last ranges asked for, to refuse asking twice.
    asked: Vec<Range<u64>>,
    fetched: u64,
}

impl Lookup {
    /// A lookup of `id` in a file of `len` bytes.
    pub fn new(id: [u8; 16], len: u64) -> Lookup {
        Lookup {
            id,
            file: Sparse {
                len,
                parts: BTreeMap::new(),
            },
            metadata: None,
            candidates: VecDeque::new(),
            group: None,
            asked: Vec::new(),
            fetched: 0,
        }
    }

    /// A lookup in a file whose footer was decoded before (by an earlier
    /// lookup, [`Lookup::metadata`]): it starts at the row groups.
    pub fn with_metadata(id: [u8; 16], len: u64, metadata: Footer) -> Lookup {
        let mut lookup = Lookup::new(id, len);
        lookup.candidates = candidates(&metadata, &id);
        lookup.metadata = Some(metadata);
        lookup
    }

    /// The file's decoded footer, once read: a block never changes, so a
    /// caller may keep it for the next lookup in the same file.
    pub fn metadata(&self) -> Option<&Footer> {
        self.metadata.as_ref()
    }

    /// The first read: the file's last [`TAIL`] bytes.
    pub fn tail(len: u64) -> Range<u64> {
        len.saturating_sub(TAIL)..len
    }

    /// Hands back the bytes of `range` of the file.
    pub fn add(&mut self, start: u64, bytes: Bytes) {
        self.fetched += bytes.len() as u64;
        self.file.insert(start, bytes);
    }

    /// The file's size.
    pub fn file_len(&self) -> u64 {
        self.file.len
    }

    /// Bytes handed back so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// Asks for the ranges of `wanted` not held yet; `None` when all are.
    fn ask(&mut self, wanted: Vec<Range<u64>>) -> Result<Option<Step>, ReadError> {
        let mut missing: Vec<Range<u64>> =
            wanted.into_iter().filter(|r| !self.file.holds(r)).collect();
        if missing.is_empty() {
            return Ok(None);
        }
        missing.sort_by_key(|r| r.start);
        if missing == self.asked {
            return Err(ReadError::Shape("a lookup asked twice for the same bytes"));
        }
        self.asked = missing.clone();
        Ok(Some(Step::Fetch(missing)))
    }

    /// What to do next: fetch more, or the answer.
    pub fn step(&mut self) -> Result<Step, ReadError> {
        let len = self.file.len;
        if len < 12 {
            return Err(ReadError::Shape("not a parquet file: too short"));
        }
        let Some(metadata) = self.metadata.clone() else {
            if let Some(step) = self.ask(vec![Lookup::tail(len)])? {
                return Ok(step);
            }
            let footer = self
                .file
                .slice(&(len - 8..len))
                .ok_or(ReadError::Shape("footer missing"))?;
            if &footer[4..] != b"PAR1" {
                return Err(ReadError::Shape("not a parquet file: no PAR1 at the end"));
            }
            let size = u64::from(u32::from_le_bytes(footer[..4].try_into().expect("4 bytes")));
            if size + 12 > len {
                return Err(ReadError::Shape("footer longer than the file"));
            }
            let range = len - 8 - size..len - 8;
            if let Some(step) = self.ask(vec![range.clone()])? {
                return Ok(step);
            }
            let bytes = self.file.slice(&range).expect("held");
            let metadata = ParquetMetaDataReader::decode_metadata(&bytes)?;
            self.candidates = candidates(&metadata, &self.id);
            self.metadata = Some(Arc::new(metadata));
            return self.step();
        };
        if let Some(group) = self.group.take() {
            let wanted = row_pages(&group)?;
            if let Some(step) = self.ask(wanted.iter().flat_map(|(_, r)| r.clone()).collect())? {
                self.group = Some(group);
                return Ok(step);
            }
            let pages = wanted.into_iter().map(|(pages, _)| pages).collect();
            let reader = SkippingRowGroup {
                inner: Box::new(row_group_reader(&self.file, &group.metadata, group.index)?),
                skip: group.row,
                pages: Some(pages),
            };
            let schema = group.metadata.file_metadata().schema_descr_ptr();
            return Ok(Step::Done(Some(read_row(schema, &reader)?)));
        }
        let Some(&index) = self.candidates.front() else {
            return Ok(Step::Done(None));
        };
        let row_group = metadata.row_group(index);
        let mut index_range: Option<Range<u64>> = None;
        for column in row_group.columns() {
            let (Some(offset), Some(length)) =
                (column.offset_index_offset(), column.offset_index_length())
            else {
                // No offset index: this writer's pages cannot be found alone.
                return self.whole_file();
            };
            let r = offset as u64..offset as u64 + length as u64;
            index_range = Some(match index_range {
                None => r,
                Some(a) => a.start.min(r.start)..a.end.max(r.end),
            });
        }
        let (start, length) = row_group.column(0).byte_range();
        let ids = start..start + length;
        let wanted: Vec<Range<u64>> = index_range.into_iter().chain([ids]).collect();
        if let Some(step) = self.ask(wanted)? {
            return Ok(step);
        }
        self.candidates.pop_front();
        // The row group alone (row group 0 of its own metadata), with its
        // offset index: copying the whole footer's metadata per lookup
        // would cost more than the lookup in a block of many row groups.
        let alone = ParquetMetaDataBuilder::new(metadata.file_metadata().clone())
            .add_row_group(row_group.clone())
            .build();
        let mut reader = ParquetMetaDataReader::new_with_metadata(alone)
            .with_offset_index_policy(PageIndexPolicy::Required)
            .with_column_index_policy(PageIndexPolicy::Skip);
        reader.read_page_indexes(&self.file)?;
        let with_index = Arc::new(reader.finish()?);
        let ids = trace_ids(&row_group_reader(&self.file, &with_index, 0)?)?;
        if let Ok(row) = ids.binary_search_by(|id| id.data().cmp(&self.id[..])) {
            self.group = Some(Group {
                index: 0,
                metadata: with_index,
                row,
            });
        }
        self.step()
    }

    /// The file has no offset index: read all of it, as before.
    fn whole_file(&mut self) -> Result<Step, ReadError> {
        let all = 0..self.file.len;
        if let Some(step) = self.ask(vec![all.clone()])? {
            return Ok(step);
        }
        let file = super::read::DataFile::open(self.file.slice(&all).expect("held"))?;
        Ok(Step::Done(file.find(&self.id)?))
    }
}

/// The row groups whose TraceID statistics leave room for `id`.
fn candidates(metadata: &ParquetMetaData, id: &[u8; 16]) -> VecDeque<usize> {
    (0..metadata.num_row_groups())
        .filter(|g| may_hold(metadata.row_group(*g), id))
        .collect()
}

fn row_group_reader<'a>(
    file: &Sparse,
    metadata: &'a ParquetMetaData,
    index: usize,
) -> Result<SerializedRowGroupReader<'a, Sparse>, ReadError> {
    Ok(SerializedRowGroupReader::new(
        Arc::new(file.clone()),
        metadata.row_group(index),
        metadata.page_index_for_row_group(index),
        Arc::new(ReaderProperties::builder().build()),
    )?)
}

/// Of one column: how many data pages to read (up to the row's), and the
/// byte ranges they need (the dictionary page, the row's data page).
type ColumnPages = (usize, Vec<Range<u64>>);

/// [`ColumnPages`] of every column, for the group's row.
fn row_pages(group: &Group) -> Result<Vec<ColumnPages>, ReadError> {
    let row_group = group.metadata.row_group(group.index);
    let page_index = group.metadata.page_index_for_row_group(group.index);
    let mut out = Vec::with_capacity(row_group.num_columns());
    for (i, column) in row_group.columns().iter().enumerate() {
        let pages = page_index
            .page_locations(i)
            .filter(|p| !p.is_empty())
            .ok_or(ReadError::Shape("a column without an offset index"))?;
        // The last page starting at or before the row.
        let page = pages
            .partition_point(|p| p.first_row_index as usize <= group.row)
            .checked_sub(1)
            .ok_or(ReadError::Shape("no page holds the row"))?;
        let (start, _) = column.byte_range();
        let first = pages[0].offset as u64;
        let mut ranges = Vec::with_capacity(2);
        if first > start {
            ranges.push(start..first);
        }
        let p = &pages[page];
        ranges.push(p.offset as u64..p.offset as u64 + p.compressed_page_size as u64);
        out.push((page + 1, ranges));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_merges_touching_parts() {
        let mut s = Sparse {
            len: 100,
            parts: BTreeMap::new(),
        };
        s.insert(10, Bytes::from_static(b"abcd"));
        s.insert(20, Bytes::from_static(b"wxyz"));
        assert!(s.holds(&(10..14)));
        assert!(!s.holds(&(10..15)));
        assert!(!s.holds(&(14..20)));
        s.insert(12, Bytes::from_static(b"cdefghijwx"));
        assert_eq!(s.parts.len(), 1);
        assert_eq!(&s.slice(&(10..24)).unwrap()[..], b"abcdefghijwxyz");
        assert!(s.get_bytes(9, 2).is_err());
        assert!(s.get_bytes(23, 2).is_err());
    }

    #[test]
    fn refuses_a_file_that_is_not_parquet() {
        let mut lookup = Lookup::new([1; 16], 100);
        let Step::Fetch(ranges) = lookup.step().unwrap() else {
            panic!("expected a fetch")
        };
        assert_eq!(ranges, vec![0..100]);
        lookup.add(0, Bytes::from(vec![0u8; 100]));
        assert!(matches!(lookup.step(), Err(ReadError::Shape(_))));
    }
}
