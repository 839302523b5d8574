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
use postgres_types::{IsNull, ToSql, Type};
use std::pin::Pin;
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
