//! Reading the trace ids and the span count of an OTLP
//! `ExportTraceServiceRequest` straight off the protobuf wire, without
//! decoding (or allocating) the spans.
//!
//! The Tempo sink holds a cut's messages as the bytes Kafka gave it and
//! decodes them one block at a time; at poll time it only needs to know
//! which traces a message holds and that its framing is sound. A message
//! whose framing is broken is refused here (and dead-lettered); one that
//! frames well but does not decode (a string that is not UTF-8, say) is
//! refused when its block is built.

use crate::ids;

/// Why a payload is not an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkimError {
    /// Broken protobuf framing.
    #[error("undecodable OTLP protobuf: {0}")]
    Framing(&'static str),
    /// A span with an invalid trace id.
    #[error("invalid span: {0}")]
    Id(#[from] ids::IdError),
}

/// What a skim finds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skimmed {
    /// Distinct trace ids, in order of appearance.
    pub trace_ids: Vec<[u8; 16]>,
    /// Spans.
    pub spans: u64,
}

/// One field: (number, wire type, value: the bytes of a LEN field, or
/// empty for a scalar).
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, SkimError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(SkimError::Framing("truncated varint"))?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SkimError::Framing("varint too long"))
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, &'a [u8]), SkimError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut step = || {
            let key = varint(&mut self.buf)?;
            let (number, wire) = (key >> 3, key & 7);
            if number == 0 {
                return Err(SkimError::Framing("field number 0"));
            }
            let skip = |buf: &mut &'a [u8], n: usize| {
                if buf.len() < n {
                    return Err(SkimError::Framing("truncated field"));
                }
                let (v, rest) = buf.split_at(n);
                *buf = rest;
                Ok(v)
            };
            match wire {
                0 => varint(&mut self.buf).map(|_| (number, &[][..])),
                1 => skip(&mut self.buf, 8).map(|_| (number, &[][..])),
                5 => skip(&mut self.buf, 4).map(|_| (number, &[][..])),
                2 => {
                    let len = varint(&mut self.buf)?;
                    let len = usize::try_from(len).map_err(|_| SkimError::Framing("length"))?;
                    skip(&mut self.buf, len).map(|v| (number, v))
                }
                _ => Err(SkimError::Framing("unknown wire type")),
            }
        };
        let result = step();
        if result.is_err() {
            self.buf = &[];
        }
        Some(result)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

/// Skims a request: `resource_spans` (1) > `scope_spans` (2) > `spans` (2)
/// > `trace_id` (1).
pub fn skim(payload: &[u8]) -> Result<Skimmed, SkimError> {
    let mut out = Skimmed::default();
    for field in fields(payload) {
        let (number, resource_spans) = field?;
        if number != 1 {
            continue;
        }
        for field in fields(resource_spans) {
            let (number, scope_spans) = field?;
            if number != 2 {
                continue;
            }
            for field in fields(scope_spans) {
                let (number, span) = field?;
                if number != 2 {
                    continue;
                }
                let mut trace_id: &[u8] = &[];
                for field in fields(span) {
                    let (number, value) = field?;
                    if number == 1 {
                        trace_id = value;
                    }
                }
                let id = ids::trace_id(trace_id)?;
                if !out.trace_ids.contains(&id) {
                    out.trace_ids.push(id);
                }
                out.spans += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::trace_service::ExportTraceServiceRequest;
    use crate::testing::TraceGenerator;
    use prost::Message;

    #[test]
    fn finds_what_a_full_decode_finds() {
        let request = TraceGenerator::new(3).request(300);
        let bytes = request.encode_to_vec();
        let skimmed = skim(&bytes).unwrap();
        let mut ids: Vec<[u8; 16]> = Vec::new();
        for s in crate::testing::spans_of(&request) {
            let id: [u8; 16] = s.trace_id.clone().try_into().unwrap();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        assert_eq!(skimmed.trace_ids, ids);
        assert_eq!(skimmed.spans, 300);
    }

    #[test]
    fn refuses_broken_framing_and_bad_ids() {
        assert!(matches!(
            skim(b"\x0a\xff\xff\xff\x0fnot protobuf"),
            Err(SkimError::Framing(_))
        ));
        assert!(matches!(
            skim(&[0x0a, 0x05, 0x12]),
            Err(SkimError::Framing(_))
        ));
        assert_eq!(skim(&[]), Ok(Skimmed::default()));
        let mut request = TraceGenerator::new(4).request(3);
        request.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
        assert!(matches!(
            skim(&request.encode_to_vec()),
            Err(SkimError::Id(_))
        ));
        let empty = ExportTraceServiceRequest::default().encode_to_vec();
        assert_eq!(skim(&empty).unwrap().spans, 0);
    }
}
