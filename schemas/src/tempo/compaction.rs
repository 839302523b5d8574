//! The contract of a compaction in the bucket: its deterministic ids and
//! the records its output blocks carry. No I/O.
//!
//! A compaction job merges input blocks of one tenant into output blocks.
//! Its id is a UUIDv5 over the tenant and the sorted input ids, and output
//! `i` (from 1) of attempt `a` (from 1) is a UUIDv5 over the job id, `i`
//! and `a`: a rerun of the same job after a crash finds the blocks it wrote
//! instead of writing second copies.
//!
//! Every output block carries, before its `meta.json`:
//! - one `observatory-compacted-from/<input id>` object per input block: the
//!   job's inputs, hence its id, so a compactor that restarts between
//!   writing the outputs and marking the inputs compacted finds the job
//!   and finishes it;
//! - one [`Record`] object, `observatory-compaction/<i>-<last trace id>-<final|more>`:
//!   its place in the job's output, the last trace id it holds (outputs are
//!   cut by size along the trace id order, so a resumed job goes on after
//!   it), and whether it is the job's last output.
//!
//! Everything is in the object names, so one listing tells it all, and the
//! names are short: some S3-compatible servers limit a key's length.
//!
//! Tempo ignores these objects (it reads `meta.json`, the blooms, the
//! `index` and the data) and deletes them with the block.

use uuid::Uuid;

/// Namespace of compaction job and output ids.
const COMPACTION_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b4e_8d3a_4c5f_9e7b_1a2d_3c4e_5f60);

/// Folder of a block's compaction record.
pub const RECORD_FOLDER: &str = "observatory-compaction";
/// Folder of a block's input records.
pub const FROM_FOLDER: &str = "observatory-compacted-from";

/// The id of the job merging `inputs` (in any order) of `tenant_folder`.
///
/// ```
/// use observatory_schemas::tempo::compaction::job_id;
/// use uuid::Uuid;
/// let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
/// assert_eq!(job_id("t", &[a, b]), job_id("t", &[b, a]));
/// assert_ne!(job_id("t", &[a, b]), job_id("t", &[a]));
/// ```
pub fn job_id(tenant_folder: &str, inputs: &[Uuid]) -> Uuid {
    let mut sorted = inputs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut name = Vec::with_capacity(tenant_folder.len() + 1 + 16 * sorted.len());
    name.extend_from_slice(tenant_folder.as_bytes());
    name.push(0);
    for id in sorted {
        name.extend_from_slice(id.as_bytes());
    }
    Uuid::new_v5(&COMPACTION_NAMESPACE, &name)
}

/// The id of output `index` (from 1), attempt `attempt` (from 1), of `job`.
pub fn output_id(job: Uuid, index: u32, attempt: u32) -> Uuid {
    let mut name = job.as_bytes().to_vec();
    name.extend_from_slice(&index.to_le_bytes());
    name.extend_from_slice(&attempt.to_le_bytes());
    Uuid::new_v5(&COMPACTION_NAMESPACE, &name)
}

/// An output block's compaction record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the job's output, from 1.
    pub index: u32,
    /// The last (largest) trace id it holds.
    pub last_id: [u8; 16],
    /// The job wrote no output after it.
    pub last_output: bool,
}

impl Record {
    /// The record's object name inside the block folder.
    ///
    /// ```
    /// use observatory_schemas::tempo::compaction::Record;
    /// let r = Record { index: 2, last_id: [0xab; 16], last_output: true };
    /// assert_eq!(Record::parse(&r.object_name()), Some(r));
    /// assert_eq!(Record::parse("data.parquet"), None);
    /// ```
    pub fn object_name(&self) -> String {
        let mut hex = String::with_capacity(32);
        crate::kafka::push_hex(&mut hex, &self.last_id);
        let tail = if self.last_output { "final" } else { "more" };
        format!("{RECORD_FOLDER}/{}-{hex}-{tail}", self.index)
    }

    /// Reads a record's object name (relative to the block folder).
    pub fn parse(name: &str) -> Option<Record> {
        let rest = name.strip_prefix(RECORD_FOLDER)?.strip_prefix('/')?;
        let mut parts = rest.split('-');
        let (index, hex, tail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || hex.len() != 32 {
            return None;
        }
        let mut last_id = [0u8; 16];
        for (i, byte) in last_id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Record {
            index: index.parse().ok().filter(|i| *i > 0)?,
            last_id,
            last_output: match tail {
                "final" => true,
                "more" => false,
                _ => return None,
            },
        })
    }
}

/// The object name recording that a block was compacted from `input`.
pub fn from_name(input: Uuid) -> String {
    format!("{FROM_FOLDER}/{input}")
}

/// Reads an input record's object name.
///
/// ```
/// use observatory_schemas::tempo::compaction::{from_name, parse_from};
/// let id = uuid::Uuid::from_u128(9);
/// assert_eq!(parse_from(&from_name(id)), Some(id));
/// assert_eq!(parse_from("meta.json"), None);
/// ```
pub fn parse_from(name: &str) -> Option<Uuid> {
    let id = name.strip_prefix(FROM_FOLDER)?.strip_prefix('/')?;
    Uuid::parse_str(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_ids_differ_by_index_and_attempt() {
        let job = job_id("t", &[Uuid::from_u128(1)]);
        assert_eq!(output_id(job, 1, 1), output_id(job, 1, 1));
        assert_ne!(output_id(job, 1, 1), output_id(job, 2, 1));
        assert_ne!(output_id(job, 1, 1), output_id(job, 1, 2));
        assert_ne!(
            job_id("t", &[Uuid::from_u128(1)]),
            job_id("u", &[Uuid::from_u128(1)])
        );
    }

    #[test]
    fn malformed_records_are_not_records() {
        for bad in [
            "observatory-compaction/1-00-final",
            "observatory-compaction/0-abababababababababababababababab-final",
            "observatory-compaction/1-abababababababababababababababab-done",
            "observatory-compaction/x/1-abababababababababababababababab-final",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad}");
        }
    }
}
