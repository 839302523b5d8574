//! Record shredding: the levels and values of each leaf column of the rows
//! written so far, held until the row group is written.
//!
//! Every optional or repeated node of the vParquet4 schema is either a list
//! (its `repeated group list`) or an optional leaf, so at any group the
//! definition level equals the number of lists entered, and a list entered
//! at definition level `d` has repetition level `d + 1`. The writer passes
//! `(r, d)` down: `r` is the repetition level of the next value written in
//! each column (the list that begins a new element), `d` the definition
//! level of the group being written.

use bytes::Bytes;
use parquet::basic::Type as Physical;
use parquet::data_type::ByteArray;
use std::ops::Range;

/// The values of one row of a leaf column, decoded from another block:
/// what [`Columns::copy`] appends.
#[derive(Debug, Clone, Copy)]
pub enum Slice<'a> {
    /// Byte arrays.
    Bytes(&'a [ByteArray]),
    /// int32.
    I32(&'a [i32]),
    /// int64.
    I64(&'a [i64]),
    /// double.
    F64(&'a [f64]),
    /// boolean.
    Bool(&'a [bool]),
}

/// The values of one leaf column.
#[derive(Debug)]
pub enum Values {
    /// Byte arrays, concatenated, with their end offsets.
    Bytes {
        /// The bytes.
        data: Vec<u8>,
        /// End of each value in `data`.
        ends: Vec<usize>,
    },
    /// int32.
    I32(Vec<i32>),
    /// int64.
    I64(Vec<i64>),
    /// double.
    F64(Vec<f64>),
    /// boolean.
    Bool(Vec<bool>),
}

impl Values {
    fn new(physical: Physical) -> Values {
        match physical {
            Physical::BYTE_ARRAY => Values::Bytes {
                data: Vec::new(),
                ends: Vec::new(),
            },
            Physical::INT32 => Values::I32(Vec::new()),
            Physical::INT64 => Values::I64(Vec::new()),
            Physical::DOUBLE => Values::F64(Vec::new()),
            Physical::BOOLEAN => Values::Bool(Vec::new()),
            other => unreachable!("vParquet4 has no {other} column"),
        }
    }

    /// The byte arrays as parquet values, sharing `data`.
    pub fn byte_arrays(data: &Bytes, ends: &[usize]) -> Vec<ByteArray> {
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let v = ByteArray::from(data.slice(start..end));
                start = end;
                v
            })
            .collect()
    }
}

/// One leaf column.
#[derive(Debug)]
pub struct Column {
    /// Definition levels, one per entry.
    pub def: Vec<i16>,
    /// Repetition levels, one per entry.
    pub rep: Vec<i16>,
    /// Values of the entries that are defined.
    pub values: Values,
}

/// Every leaf column of the current row group.
#[derive(Debug)]
pub struct Columns {
    /// By leaf index.
    pub columns: Vec<Column>,
    /// The maximum definition level of each leaf (a defined value's).
    max_def: Vec<i16>,
    bytes: usize,
}

/// Where the next row of a [`Columns`] starts in each leaf (entry, value),
/// for reading its rows back in order ([`Columns::copy_rows_from`]).
#[derive(Debug, Clone, Default)]
pub struct RowCursor {
    at: Vec<(usize, usize)>,
}

impl Columns {
    /// Empty columns of the given (physical type, maximum definition level).
    pub fn new(leaves: &[(Physical, i16)]) -> Columns {
        Columns {
            columns: leaves
                .iter()
                .map(|(t, _)| Column {
                    def: Vec::new(),
                    rep: Vec::new(),
                    values: Values::new(*t),
                })
                .collect(),
            max_def: leaves.iter().map(|(_, d)| *d).collect(),
            bytes: 0,
        }
    }

    /// Bytes buffered, roughly.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Empties the columns, keeping their memory for the next rows.
    pub fn clear(&mut self) {
        self.bytes = 0;
        for c in &mut self.columns {
            c.def.clear();
            c.rep.clear();
            match &mut c.values {
                Values::Bytes { data, ends } => {
                    data.clear();
                    ends.clear();
                }
                Values::I32(v) => v.clear(),
                Values::I64(v) => v.clear(),
                Values::F64(v) => v.clear(),
                Values::Bool(v) => v.clear(),
            }
        }
    }

    /// Appends the next `rows` rows of `from` at `cursor` as they are,
    /// and moves the cursor past them. Every row starts with repetition
    /// level 0 in every leaf (each leaf holds at least one entry per row),
    /// so consecutive rows are one range of each leaf, copied in one go.
    pub fn copy_rows_from(&mut self, from: &Columns, cursor: &mut RowCursor, rows: usize) {
        if rows == 0 {
            return;
        }
        if cursor.at.is_empty() {
            cursor.at = vec![(0, 0); from.columns.len()];
        }
        for (leaf, c) in from.columns.iter().enumerate() {
            let (entry, value) = cursor.at[leaf];
            let end = rows_end(&c.rep, entry, rows);
            let max_def = from.max_def[leaf];
            let defined = c.def[entry..end].iter().filter(|&&d| d == max_def).count();
            let values = value..value + defined;
            let rep = &c.rep[entry..end];
            let def = &c.def[entry..end];
            match &c.values {
                Values::Bytes { data, ends } => {
                    let start = if value == 0 { 0 } else { ends[value - 1] };
                    let stop = if defined == 0 {
                        start
                    } else {
                        ends[values.end - 1]
                    };
                    let to = &mut self.columns[leaf];
                    to.rep.extend_from_slice(rep);
                    to.def.extend_from_slice(def);
                    match &mut to.values {
                        Values::Bytes {
                            data: to_data,
                            ends: to_ends,
                        } => {
                            let base = to_data.len() as isize - start as isize;
                            to_data.extend_from_slice(&data[start..stop]);
                            to_ends.extend(
                                ends[values.clone()]
                                    .iter()
                                    .map(|&e| (e as isize + base) as usize),
                            );
                        }
                        _ => panic!("leaf {leaf} is not a byte array"),
                    }
                    self.bytes += 4 * rep.len() + (stop - start) + 8 * defined;
                }
                Values::I32(v) => self.copy(leaf, rep, def, Slice::I32(&v[values])),
                Values::I64(v) => self.copy(leaf, rep, def, Slice::I64(&v[values])),
                Values::F64(v) => self.copy(leaf, rep, def, Slice::F64(&v[values])),
                Values::Bool(v) => self.copy(leaf, rep, def, Slice::Bool(&v[values])),
            }
            cursor.at[leaf] = (end, value + defined);
        }
    }

    fn levels(&mut self, leaf: usize, r: i16, d: i16) -> &mut Values {
        let c = &mut self.columns[leaf];
        c.rep.push(r);
        c.def.push(d);
        self.bytes += 4;
        &mut c.values
    }

    /// A defined byte array.
    pub fn bytes(&mut self, leaf: usize, r: i16, d: i16, v: &[u8]) {
        self.bytes += v.len() + 8;
        match self.levels(leaf, r, d) {
            Values::Bytes { data, ends } => {
                data.extend_from_slice(v);
                ends.push(data.len());
            }
            _ => panic!("leaf {leaf} is not a byte array"),
        }
    }

    /// A defined int64.
    pub fn i64(&mut self, leaf: usize, r: i16, d: i16, v: i64) {
        self.bytes += 8;
        match self.levels(leaf, r, d) {
            Values::I64(values) => values.push(v),
            _ => panic!("leaf {leaf} is not an int64"),
        }
    }

    /// A defined int32.
    pub fn i32(&mut self, leaf: usize, r: i16, d: i16, v: i32) {
        self.bytes += 4;
        match self.levels(leaf, r, d) {
            Values::I32(values) => values.push(v),
            _ => panic!("leaf {leaf} is not an int32"),
        }
    }

    /// A defined double.
    pub fn f64(&mut self, leaf: usize, r: i16, d: i16, v: f64) {
        self.bytes += 8;
        match self.levels(leaf, r, d) {
            Values::F64(values) => values.push(v),
            _ => panic!("leaf {leaf} is not a double"),
        }
    }

    /// A defined boolean.
    pub fn bool(&mut self, leaf: usize, r: i16, d: i16, v: bool) {
        self.bytes += 1;
        match self.levels(leaf, r, d) {
            Values::Bool(values) => values.push(v),
            _ => panic!("leaf {leaf} is not a boolean"),
        }
    }

    /// One row of leaf `leaf` as another block holds it: its levels (one
    /// entry each) and its defined values, appended as they are.
    pub fn copy(&mut self, leaf: usize, rep: &[i16], def: &[i16], values: Slice<'_>) {
        let c = &mut self.columns[leaf];
        c.rep.extend_from_slice(rep);
        c.def.extend_from_slice(def);
        self.bytes += 4 * rep.len();
        self.bytes += match (&mut c.values, values) {
            (Values::Bytes { data, ends }, Slice::Bytes(v)) => {
                let before = data.len();
                for b in v {
                    data.extend_from_slice(b.data());
                    ends.push(data.len());
                }
                data.len() - before + 8 * v.len()
            }
            (Values::I32(to), Slice::I32(v)) => {
                to.extend_from_slice(v);
                4 * v.len()
            }
            (Values::I64(to), Slice::I64(v)) => {
                to.extend_from_slice(v);
                8 * v.len()
            }
            (Values::F64(to), Slice::F64(v)) => {
                to.extend_from_slice(v);
                8 * v.len()
            }
            (Values::Bool(to), Slice::Bool(v)) => {
                to.extend_from_slice(v);
                v.len()
            }
            _ => panic!("leaf {leaf}: values of another physical type"),
        };
    }

    /// An entry without a value (an absent optional or an empty list) in
    /// every leaf of `leaves`.
    pub fn nulls(&mut self, leaves: Range<usize>, r: i16, d: i16) {
        for leaf in leaves {
            self.levels(leaf, r, d);
        }
    }
}

/// The entry after the `rows` rows that start at `entry` (a row starts at
/// each repetition level 0).
fn rows_end(rep: &[i16], entry: usize, rows: usize) -> usize {
    let mut left = rows;
    for (i, &r) in rep[entry + 1..].iter().enumerate() {
        if r == 0 {
            left -= 1;
            if left == 0 {
                return entry + 1 + i;
            }
        }
    }
    rep.len()
}
