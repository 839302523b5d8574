//! The parquet side of a block search, without I/O: what a data file's
//! footer says about each row group (column-chunk statistics, which chunks
//! are wholly dictionary-encoded and where their dictionary pages are),
//! the byte ranges of the column chunks a search needs, and those chunks
//! decoded from the bytes the caller fetched, with each value placed in its
//! trace, resource, scope, span and attribute ([`Chunk::walk`]).
//!
//! What it guarantees: a statistics or dictionary check answers "may hold"
//! whenever it cannot tell (no statistics, a chunk that fell back from its
//! dictionary, a type it does not know), so a row group is only ever
//! skipped when it cannot hold a match; decoding reads only the byte
//! ranges handed in (a read of bytes not fetched is an error naming them,
//! never a silent short answer). The same idea as `tempo::ranged`'s sparse
//! reader, for whole column chunks. Pure code: bytes in, values out.

use bytes::Bytes;
use observatory_schemas::tempo::ranged::Sparse;
use parquet::basic::{Encoding, Type as Physical};
use parquet::column::page::{Page, PageReader};
use parquet::column::reader::{get_column_reader, ColumnReader};
use parquet::data_type::ByteArray;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::file::statistics::Statistics;
use std::ops::Range;
use std::sync::Arc;

pub use observatory_schemas::tempo::read::ReadError;
pub use observatory_schemas::tempo::schema::leaf;

/// Deepest nesting of lists in the schema (an event attribute's values:
/// resource spans, scope spans, spans, events, attributes, values).
pub const MAX_LISTS: usize = 6;

/// The byte range of the footer, read from the file's last bytes (`tail`,
/// starting at `start` of a file of `len` bytes, holding at least its last 8).
pub fn footer_range(len: u64, start: u64, tail: &[u8]) -> Result<Range<u64>, ReadError> {
    if len < 12 || start + (tail.len() as u64) < len || start + 8 > len {
        return Err(ReadError::Shape("not a parquet file: too short"));
    }
    let end = &tail[tail.len() - 8..];
    if &end[4..] != b"PAR1" {
        return Err(ReadError::Shape("not a parquet file: no PAR1 at the end"));
    }
    let size = u64::from(u32::from_le_bytes(end[..4].try_into().expect("4 bytes")));
    if size + 12 > len {
        return Err(ReadError::Shape("footer longer than the file"));
    }
    Ok(len - 8 - size..len - 8)
}

/// Decodes a footer (as `tempo::ranged` does, so lookups and searches share
/// kept footers).
pub fn decode_footer(bytes: &[u8]) -> Result<Arc<ParquetMetaData>, ReadError> {
    Ok(Arc::new(ParquetMetaDataReader::decode_metadata(bytes)?))
}

/// The byte range of a column chunk (its dictionary page included).
pub fn chunk_range(rg: &RowGroupMetaData, leaf: usize) -> Range<u64> {
    let (start, len) = rg.column(leaf).byte_range();
    start..start + len
}

/// Whether the chunk's statistics leave room for the byte string `value`
/// (unsigned byte order, as parquet orders strings); true when unknown.
/// Truncated bounds still bound (a truncated minimum is a prefix, a
/// truncated maximum is rounded up).
pub fn may_hold_bytes(rg: &RowGroupMetaData, leaf: usize, value: &[u8]) -> bool {
    let Some(stats) = rg.column(leaf).statistics() else {
        return true;
    };
    if no_values(rg, leaf, stats) {
        return false;
    }
    if !matches!(stats, Statistics::ByteArray(_)) {
        return true;
    }
    let below = stats.min_bytes_opt().is_some_and(|min| min > value);
    let above = stats.max_bytes_opt().is_some_and(|max| max < value);
    !(below || above)
}

/// Every entry of the chunk is null (an empty list or an absent optional).
fn no_values(rg: &RowGroupMetaData, leaf: usize, stats: &Statistics) -> bool {
    let column = rg.column(leaf);
    stats
        .null_count_opt()
        .is_some_and(|nulls| column.num_values() > 0 && nulls >= column.num_values() as u64)
}

/// Whether the chunk holds no value at all (statistics say every entry is
/// null); false when unknown.
pub fn is_empty(rg: &RowGroupMetaData, leaf: usize) -> bool {
    rg.column(leaf)
        .statistics()
        .is_some_and(|s| no_values(rg, leaf, s))
}

/// The smallest and largest value of an integer chunk (int32 or int64);
/// `None` when unknown.
pub fn int_bounds(rg: &RowGroupMetaData, leaf: usize) -> Option<(i64, i64)> {
    match rg.column(leaf).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        Statistics::Int32(s) => Some((i64::from(*s.min_opt()?), i64::from(*s.max_opt()?))),
        _ => None,
    }
}

/// The byte range of the chunk's dictionary page, when it has one and every
/// data page is dictionary-encoded (a chunk whose dictionary overflowed
/// falls back to plain pages: its dictionary does not hold every value).
pub fn dictionary_range(rg: &RowGroupMetaData, leaf: usize) -> Option<Range<u64>> {
    let column = rg.column(leaf);
    let start = column.dictionary_page_offset()?;
    let only_dictionary = column.page_encoding_stats_mask().is_some_and(|mask| {
        mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY)
    });
    let end = column.data_page_offset();
    (only_dictionary && start >= 0 && end > start).then_some(start as u64..end as u64)
}

/// The values of a byte-array chunk's dictionary page, from its bytes (the
/// range [`dictionary_range`] gave, starting at `start`).
pub fn dictionary(
    rg: &RowGroupMetaData,
    leaf: usize,
    start: u64,
    bytes: Bytes,
    file_len: u64,
) -> Result<Vec<Bytes>, ReadError> {
    let column = rg.column(leaf);
    if column.column_type() != Physical::BYTE_ARRAY {
        return Err(ReadError::Shape(
            "a dictionary of something else than strings",
        ));
    }
    let mut file = Sparse::with_len(file_len);
    file.insert(start, bytes);
    let mut pages =
        SerializedPageReader::new(Arc::new(file), column, rg.num_rows() as usize, None)?;
    let Some(Page::DictionaryPage {
        buf, num_values, ..
    }) = pages.get_next_page()?
    else {
        return Err(ReadError::Shape("no dictionary page where the footer says"));
    };
    // PLAIN byte arrays: a little-endian u32 length, then the bytes.
    let mut out = Vec::with_capacity(num_values as usize);
    let mut at = 0usize;
    for _ in 0..num_values {
        let len = buf
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(ReadError::Shape("dictionary page cut short"))?;
        let value = buf
            .get(at + 4..at + 4 + len)
            .ok_or(ReadError::Shape("dictionary page cut short"))?;
        out.push(buf.slice_ref(value));
        at += 4 + len;
    }
    Ok(out)
}

/// The values of one column chunk.
#[derive(Debug)]
pub enum Values {
    /// Byte arrays.
    Bytes(Vec<ByteArray>),
    /// int32.
    I32(Vec<i32>),
    /// int64.
    I64(Vec<i64>),
    /// double.
    F64(Vec<f64>),
    /// boolean.
    Bool(Vec<bool>),
}

/// One decoded column chunk: its levels and its defined values.
#[derive(Debug)]
pub struct Chunk {
    /// The leaf column.
    pub leaf: usize,
    /// Definition levels (empty for a required top-level column).
    pub def: Vec<i16>,
    /// Repetition levels (empty for a non-repeated column).
    pub rep: Vec<i16>,
    /// The column's highest definition level: an entry at it has a value.
    pub max_def: i16,
    /// The defined values, in entry order.
    pub values: Values,
}

/// Where one entry of a column sits.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// `ids[0]`: the row (trace) in the row group; `ids[j]`, 1 ≤ j ≤
    /// `depth`: the element of the j-th list, numbered over the whole row
    /// group (so ids of one list agree between the columns under it).
    pub ids: [u32; MAX_LISTS + 1],
    /// How many lists are entered (elements exist at levels 1..=depth).
    pub depth: usize,
    /// The index of the entry's value in [`Chunk::values`], when it has one.
    pub value: Option<usize>,
}

impl Chunk {
    /// Calls `f` for every entry of a column nested in `lists` lists (every
    /// list of the schema is a required group around a repeated one, so an
    /// entry's definition level counts the lists entered, plus one for an
    /// optional leaf's value, and its repetition level names the list that
    /// starts a new element).
    pub fn walk(&self, lists: usize, mut f: impl FnMut(&Place)) {
        let lists = lists.min(MAX_LISTS);
        if self.def.is_empty() && self.rep.is_empty() {
            // A required top-level column: one value per row.
            let n = self.len();
            for row in 0..n {
                let mut ids = [0u32; MAX_LISTS + 1];
                ids[0] = row as u32;
                f(&Place {
                    ids,
                    depth: 0,
                    value: Some(row),
                });
            }
            return;
        }
        let mut count = [0u32; MAX_LISTS + 1];
        let mut place = Place {
            ids: [0; MAX_LISTS + 1],
            depth: 0,
            value: None,
        };
        let mut next_value = 0usize;
        let mut first = true;
        let entries = self.def.len().max(self.rep.len());
        for i in 0..entries {
            let d = self.def.get(i).copied().unwrap_or(self.max_def);
            let r = self.rep.get(i).copied().unwrap_or(0) as usize;
            if r == 0 {
                if !first {
                    count[0] += 1;
                }
                first = false;
                place.ids[0] = count[0];
            }
            let depth = (d.max(0) as usize).min(lists);
            let new = r.max(1)..depth + 1;
            if !new.is_empty() {
                place.ids[new.clone()].copy_from_slice(&count[new.clone()]);
                count[new].iter_mut().for_each(|c| *c += 1);
            }
            place.depth = depth;
            place.value = (d == self.max_def).then(|| {
                next_value += 1;
                next_value - 1
            });
            f(&place);
        }
    }

    /// Values in the chunk.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::Bytes(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as bytes (byte-array chunks).
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.values {
            Values::Bytes(v) => v.get(i).map(ByteArray::data),
            _ => None,
        }
    }

    /// Value `i` as an integer (int32 and int64 chunks).
    pub fn int(&self, i: usize) -> Option<i64> {
        match &self.values {
            Values::I64(v) => v.get(i).copied(),
            Values::I32(v) => v.get(i).map(|x| i64::from(*x)),
            _ => None,
        }
    }

    /// Value `i` as a double.
    pub fn double(&self, i: usize) -> Option<f64> {
        match &self.values {
            Values::F64(v) => v.get(i).copied(),
            _ => None,
        }
    }

    /// Value `i` as a boolean.
    pub fn bool(&self, i: usize) -> Option<bool> {
        match &self.values {
            Values::Bool(v) => v.get(i).copied(),
            _ => None,
        }
    }
}

/// Decodes the column chunks `leaves` of row group `rg` from `parts`
/// (fetched byte ranges of the file, each chunk inside one part).
pub fn read_chunks(
    rg: &RowGroupMetaData,
    file_len: u64,
    parts: Vec<(u64, Bytes)>,
    leaves: &[usize],
) -> Result<Vec<Chunk>, ReadError> {
    let mut file = Sparse::with_len(file_len);
    for (start, bytes) in parts {
        file.insert(start, bytes);
    }
    let file = Arc::new(file);
    let rows = rg.num_rows() as usize;
    leaves
        .iter()
        .map(|&leaf| {
            let column = rg.column(leaf);
            let descr = column.column_descr_ptr();
            let max_def = descr.max_def_level();
            let pages = SerializedPageReader::new(file.clone(), column, rows, None)?;
            let (mut def, mut rep) = (Vec::new(), Vec::new());
            let values = match get_column_reader(descr, Box::new(pages)) {
                ColumnReader::ByteArrayColumnReader(mut r) => {
                    let mut v = Vec::new();
                    r.read_records(usize::MAX, Some(&mut def), Some(&mut rep), &mut v)?;
                    Values::Bytes(v)
                }
                ColumnReader::Int32ColumnReader(mut r) => {
                    let mut v = Vec::new();
                    r.read_records(usize::MAX, Some(&mut def), Some(&mut rep), &mut v)?;
                    Values::I32(v)
                }
                ColumnReader::Int64ColumnReader(mut r) => {
                    let mut v = Vec::new();
                    r.read_records(usize::MAX, Some(&mut def), Some(&mut rep), &mut v)?;
                    Values::I64(v)
                }
                ColumnReader::DoubleColumnReader(mut r) => {
                    let mut v = Vec::new();
                    r.read_records(usize::MAX, Some(&mut def), Some(&mut rep), &mut v)?;
                    Values::F64(v)
                }
                ColumnReader::BoolColumnReader(mut r) => {
                    let mut v = Vec::new();
                    r.read_records(usize::MAX, Some(&mut def), Some(&mut rep), &mut v)?;
                    Values::Bool(v)
                }
                _ => return Err(ReadError::Shape("a column type vParquet4 does not use")),
            };
            Ok(Chunk {
                leaf,
                def,
                rep,
                max_def,
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(def: Vec<i16>, rep: Vec<i16>, max_def: i16, values: Vec<i64>) -> Chunk {
        Chunk {
            leaf: 0,
            def,
            rep,
            max_def,
            values: Values::I64(values),
        }
    }

    #[test]
    fn entries_are_placed_in_their_rows_and_lists() {
        // Two rows: [[a, b], []] and [[c]] of a list of lists (max def 2).
        let c = chunk(vec![2, 2, 1, 2], vec![0, 2, 1, 0], 2, vec![10, 11, 12]);
        let mut seen = Vec::new();
        c.walk(2, |p| {
            seen.push((p.ids[0], p.ids[1], p.ids[2], p.depth, p.value))
        });
        assert_eq!(
            seen,
            vec![
                (0, 0, 0, 2, Some(0)),
                (0, 0, 1, 2, Some(1)),
                (0, 1, 1, 1, None),
                (1, 2, 2, 2, Some(2)),
            ]
        );
        // A required top-level column: one value a row.
        let top = chunk(vec![], vec![], 0, vec![5, 6]);
        let mut rows = Vec::new();
        top.walk(0, |p| rows.push((p.ids[0], p.value)));
        assert_eq!(rows, vec![(0, Some(0)), (1, Some(1))]);
    }

    #[test]
    fn footers_are_found_from_the_tail() {
        let mut tail = vec![0u8; 20];
        tail[12..16].copy_from_slice(&8u32.to_le_bytes());
        tail[16..].copy_from_slice(b"PAR1");
        assert_eq!(footer_range(100, 80, &tail).unwrap(), 84..92);
        tail[16] = b'X';
        assert!(footer_range(100, 80, &tail).is_err());
    }
}
