//! Binary `COPY ... FROM STDIN`, sent to the server in large chunks.
//!
//! tokio-postgres' `BinaryCopyInWriter` hands its connection task 4 KiB at
//! a time and waits until the task has taken each piece: with span rows of
//! one or two KiB that is a task switch and a socket write every few rows,
//! a good part of the sink's CPU per span. [`CopyRows`] encodes rows the
//! same way (PostgreSQL's binary COPY format: a header; per row the field
//! count, then each field's length, -1 for NULL, and bytes; a -1 trailer)
//! into one buffer and sends it [`CHUNK`] bytes at a time.
//!
//! What it guarantees: nothing is committed by this file (the rows become
//! visible with the caller's transaction), and a value that does not encode
//! as its column's type fails the whole COPY with [`CopyError::Encode`]
//! naming the column, before the server has the row.

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use std::error::Error;
use std::pin::Pin;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CopyInSink, Transaction};

/// Bytes handed to the connection at a time.
pub const CHUNK: usize = 1 << 20;

/// Why a COPY failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The server or the connection.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// A value that does not encode as its column's type (a bug: the
    /// batch fails for good rather than storing something else).
    #[error("column {column} of a COPY row does not encode as {ty}: {message}")]
    Encode {
        /// The column's position.
        column: usize,
        /// Its type.
        ty: Type,
        /// What the encoder said.
        message: String,
    },
}

/// One COPY in progress.
pub struct CopyRows<'t> {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    types: &'t [Type],
    buf: BytesMut,
}

impl<'t> CopyRows<'t> {
    /// Starts `statement` (a `COPY ... FROM STDIN (FORMAT binary)`) whose
    /// columns have `types`.
    pub async fn start(
        tx: &Transaction<'_>,
        statement: &str,
        types: &'t [Type],
    ) -> Result<CopyRows<'t>, CopyError> {
        let sink = Box::pin(tx.copy_in(statement).await?);
        let mut buf = BytesMut::with_capacity(CHUNK + CHUNK / 4);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        Ok(CopyRows { sink, types, buf })
    }

    /// Adds one row; `values` are in the order of the types.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), CopyError> {
        assert_eq!(values.len(), self.types.len(), "one value per column");
        encode_row(&mut self.buf, self.types, values)?;
        if self.buf.len() >= CHUNK {
            self.sink.send(self.buf.split().freeze()).await?;
        }
        Ok(())
    }

    /// Ends the COPY; returns the rows the server took.
    pub async fn finish(mut self) -> Result<u64, CopyError> {
        self.buf.put_i16(-1);
        self.sink.send(self.buf.split().freeze()).await?;
        Ok(self.sink.as_mut().finish().await?)
    }
}

/// JSON text already rendered, sent as `jsonb` without parsing it again.
#[derive(Debug)]
pub struct Jsonb<'a>(pub &'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1); // jsonb binary format version
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// Rows encoded once in the binary COPY format, for [`copy_once`]: the
/// same bytes go to the table or, when some rows are stored already, to a
/// staging table.
pub struct Encoded {
    types: &'static [Type],
    buf: BytesMut,
    rows: usize,
}

impl Encoded {
    /// No rows yet, of columns of `types`.
    pub fn new(types: &'static [Type]) -> Encoded {
        Encoded {
            types,
            buf: BytesMut::new(),
            rows: 0,
        }
    }

    /// Adds one row; `values` are in the order of the types.
    pub fn push(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), CopyError> {
        assert_eq!(values.len(), self.types.len(), "one value per column");
        encode_row(&mut self.buf, self.types, values)?;
        self.rows += 1;
        Ok(())
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    async fn send(
        &self,
        tx: &Transaction<'_>,
        table: &str,
        columns: &str,
    ) -> Result<u64, CopyError> {
        let statement = format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)");
        let mut sink = Box::pin(tx.copy_in(statement.as_str()).await?);
        let mut head = BytesMut::with_capacity(19);
        head.put_slice(b"PGCOPY\n\xff\r\n\0");
        head.put_i32(0);
        head.put_i32(0);
        sink.send(head.freeze()).await?;
        let body = Bytes::copy_from_slice(&self.buf);
        let mut at = 0;
        while at < body.len() {
            let end = (at + CHUNK).min(body.len());
            sink.send(body.slice(at..end)).await?;
            at = end;
        }
        sink.send(Bytes::from_static(&[0xff, 0xff])).await?;
        Ok(sink.as_mut().finish().await?)
    }
}

/// COPYs `rows` into `table`, each row at most once, and returns how many
/// were new. With `*direct` set (the common case: data never seen) the COPY
/// goes straight into the table inside a savepoint; a row already stored
/// fails it on the primary key, the savepoint is rolled back, and
/// `*direct` is cleared. Without it, the rows go through a temporary
/// staging table and `INSERT ... ON CONFLICT DO NOTHING`; `*direct` is set
/// again when none of them was stored. Nothing is committed here.
pub async fn copy_once(
    tx: &mut Transaction<'_>,
    table: &str,
    columns: &str,
    rows: &Encoded,
    direct: &mut bool,
) -> Result<u64, CopyError> {
    if rows.is_empty() {
        return Ok(0);
    }
    if *direct {
        let savepoint = tx.savepoint("copy_once").await?;
        match rows.send(&savepoint, table, columns).await {
            Ok(n) => {
                savepoint.commit().await?;
                return Ok(n);
            }
            Err(CopyError::Db(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                savepoint.rollback().await?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
    }
    let stage = format!("stage_{table}");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS"
    ))
    .await?;
    rows.send(tx, &stage, columns).await?;
    let inserted = tx
        .execute(
            &format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} ON CONFLICT DO NOTHING"),
            &[],
        )
        .await?;
    *direct = inserted == rows.len() as u64;
    Ok(inserted)
}

/// Appends one row in the binary COPY format.
fn encode_row(
    buf: &mut BytesMut,
    types: &[Type],
    values: &[&(dyn ToSql + Sync)],
) -> Result<(), CopyError> {
    buf.put_i16(types.len() as i16);
    for (column, (value, ty)) in values.iter().zip(types).enumerate() {
        let at = buf.len();
        buf.put_i32(0);
        let encoded = value.to_sql_checked(ty, buf);
        let len = match encoded {
            Ok(IsNull::Yes) => -1,
            Ok(IsNull::No) => i32::try_from(buf.len() - at - 4).map_err(|_| CopyError::Encode {
                column,
                ty: ty.clone(),
                message: "a value of 2 GiB or more".into(),
            })?,
            Err(e) => {
                return Err(CopyError::Encode {
                    column,
                    ty: ty.clone(),
                    message: e.to_string(),
                })
            }
        };
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_encoded_as_postgres_binary_copy() {
        let mut buf = BytesMut::new();
        let types = [Type::INT8, Type::TEXT, Type::TEXT];
        let none: Option<&str> = None;
        encode_row(&mut buf, &types, &[&7i64, &"ab", &none]).unwrap();
        let mut want = vec![0, 3];
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend([0, 0, 0, 2, b'a', b'b']);
        want.extend([0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&buf[..], &want[..]);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_column() {
        let mut buf = BytesMut::new();
        let e = encode_row(&mut buf, &[Type::INT8, Type::INT2], &[&1i64, &"x"]).unwrap_err();
        assert!(matches!(e, CopyError::Encode { column: 1, .. }), "{e}");
    }
}
