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

    fn physical(&self) -> Physical {
        match self {
            Values::Bytes { .. } => Physical::BYTE_ARRAY,
            Values::I32(_) => Physical::INT32,
            Values::I64(_) => Physical::INT64,
            Values::F64(_) => Physical::DOUBLE,
            Values::Bool(_) => Physical::BOOLEAN,
        }
    }

    /// The byte arrays as parquet values, sharing one buffer.
    pub fn byte_arrays(data: Vec<u8>, ends: &[usize]) -> Vec<ByteArray> {
        let data = Bytes::from(data);
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
    bytes: usize,
}

impl Columns {
    /// Empty columns of the given physical types.
    pub fn new(types: &[Physical]) -> Columns {
        Columns {
            columns: types
                .iter()
                .map(|t| Column {
                    def: Vec::new(),
                    rep: Vec::new(),
                    values: Values::new(*t),
                })
                .collect(),
            bytes: 0,
        }
    }

    /// Bytes buffered, roughly.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the columns, leaving empty ones.
    pub fn take(&mut self) -> Vec<Column> {
        self.bytes = 0;
        self.columns
            .iter_mut()
            .map(|c| {
                let empty = Values::new(c.values.physical());
                Column {
                    def: std::mem::take(&mut c.def),
                    rep: std::mem::take(&mut c.rep),
                    values: std::mem::replace(&mut c.values, empty),
                }
            })
            .collect()
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

    /// An entry without a value (an absent optional or an empty list) in
    /// every leaf of `leaves`.
    pub fn nulls(&mut self, leaves: Range<usize>, r: i16, d: i16) {
        for leaf in leaves {
            self.levels(leaf, r, d);
        }
    }
}
