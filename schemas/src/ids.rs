//! Validation of OTLP trace and span ids.
//!
//! OTLP says a trace id is 16 bytes and a span id 8 bytes, and that an id of
//! any other length or of all zeroes is invalid. A parent span id is either
//! empty (a root span) or a valid span id; eight zero bytes also mean "no
//! parent", and [`parent_span_id`] maps them to empty because Grafana Tempo
//! would otherwise take such a root for a child.

use thiserror::Error;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The id has the wrong number of bytes.
    #[error("{field} must be {expected} bytes, got {actual}")]
    WrongLength {
        /// `trace_id`, `span_id` or `parent_span_id`.
        field: &'static str,
        /// The length OTLP requires.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The id is all zeroes.
    #[error("{field} must not be all zeroes")]
    AllZero {
        /// `trace_id` or `span_id`.
        field: &'static str,
    },
}

/// A valid trace id from its wire bytes.
///
/// ```
/// use observatory_schemas::ids::{trace_id, IdError};
/// assert!(trace_id(&[1; 16]).is_ok());
/// assert_eq!(trace_id(&[0; 16]), Err(IdError::AllZero { field: "trace_id" }));
/// ```
pub fn trace_id(bytes: &[u8]) -> Result<[u8; 16], IdError> {
    let id: [u8; 16] = bytes.try_into().map_err(|_| IdError::WrongLength {
        field: "trace_id",
        expected: 16,
        actual: bytes.len(),
    })?;
    if id == [0; 16] {
        return Err(IdError::AllZero { field: "trace_id" });
    }
    Ok(id)
}

/// A valid span id from its wire bytes.
pub fn span_id(bytes: &[u8]) -> Result<[u8; 8], IdError> {
    let id: [u8; 8] = bytes.try_into().map_err(|_| IdError::WrongLength {
        field: "span_id",
        expected: 8,
        actual: bytes.len(),
    })?;
    if id == [0; 8] {
        return Err(IdError::AllZero { field: "span_id" });
    }
    Ok(id)
}

/// A parent span id: `None` for a root span (empty or all zeroes), else a span id.
///
/// ```
/// use observatory_schemas::ids::parent_span_id;
/// assert_eq!(parent_span_id(&[]), Ok(None));
/// assert_eq!(parent_span_id(&[0; 8]), Ok(None));
/// assert_eq!(parent_span_id(&[7; 8]), Ok(Some([7; 8])));
/// assert!(parent_span_id(&[7; 4]).is_err());
/// ```
pub fn parent_span_id(bytes: &[u8]) -> Result<Option<[u8; 8]>, IdError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id: [u8; 8] = bytes.try_into().map_err(|_| IdError::WrongLength {
        field: "parent_span_id",
        expected: 8,
        actual: bytes.len(),
    })?;
    Ok((id != [0; 8]).then_some(id))
}
