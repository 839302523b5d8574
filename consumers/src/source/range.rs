//! Bounded reads, for replays: partitions assigned by hand (no group
//! membership, no rebalances), each read from its first offset up to its
//! end offset (exclusive). [`super::run_range`] returns once every partition
//! reached its end and the last batch is written and committed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// The partitions of a bounded read and how far each got.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// Per partition: what to read and what was read (shared with whoever
    /// reports progress).
    pub partitions: Arc<Mutex<BTreeMap<i32, RangeProgress>>>,
}

/// One partition of a [`Range`].
#[derive(Debug, Clone, Default)]
pub struct RangeProgress {
    /// First offset read.
    pub first: i64,
    /// Offset at which reading stops (exclusive).
    pub end: i64,
    /// Next offset to read.
    pub next: i64,
    /// Messages read (each written or dead-lettered before the run returns).
    pub messages: u64,
    /// Spans in them (the `span-count` header).
    pub spans: u64,
}

impl RangeProgress {
    /// Nothing left to read.
    pub fn done(&self) -> bool {
        self.next >= self.end
    }
}

impl Range {
    /// Is offset `offset` of `partition` at or past the end of its range?
    /// Then the partition is done (offsets up to its end that hold no
    /// message, after compaction or transaction markers, have been passed).
    pub(super) fn past_end(&self, partition: i32, offset: i64) -> bool {
        let mut partitions = self.partitions.lock().expect("no poisoned lock");
        match partitions.get_mut(&partition) {
            Some(r) if offset < r.end => false,
            Some(r) => {
                r.next = r.next.max(r.end);
                true
            }
            None => true,
        }
    }

    /// Records a message read.
    pub(super) fn read(&self, partition: i32, offset: i64, spans: u64) {
        let mut partitions = self.partitions.lock().expect("no poisoned lock");
        if let Some(r) = partitions.get_mut(&partition) {
            r.next = offset + 1;
            r.messages += 1;
            r.spans += spans;
        }
    }

    /// Says so when `partition` reached the end of its log before the end of
    /// its range. It is not marked done: a broker that serves nothing to a
    /// fetch starting inside a record batch (tansu 0.6) says "end of log"
    /// there too, and taking its word would skip messages silently.
    pub(super) fn reached_eof(&self, partition: i32) {
        if let Some(r) = self
            .partitions
            .lock()
            .expect("no poisoned lock")
            .get(&partition)
            .filter(|r| !r.done())
        {
            warn!(
                partition,
                next = r.next,
                end = r.end,
                "the broker reports the end of the log before the end of the range; waiting for the rest"
            );
        }
    }

    /// Has every partition been read to its end?
    pub(super) fn done(&self) -> bool {
        self.partitions
            .lock()
            .expect("no poisoned lock")
            .values()
            .all(RangeProgress::done)
    }

    /// The (partition, next offset) of every partition not done yet.
    pub(super) fn unfinished(&self) -> Vec<(i32, i64)> {
        self.partitions
            .lock()
            .expect("no poisoned lock")
            .iter()
            .filter(|(_, r)| !r.done())
            .map(|(p, r)| (*p, r.next))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_at_its_end() {
        let range = Range::default();
        range.partitions.lock().unwrap().insert(
            0,
            RangeProgress {
                first: 5,
                end: 8,
                next: 5,
                ..RangeProgress::default()
            },
        );
        assert!(!range.past_end(0, 7));
        range.read(0, 7, 3);
        assert!(range.done());
        assert_eq!(range.partitions.lock().unwrap()[&0].spans, 3);
        assert!(range.past_end(1, 0), "a partition outside the range");
        assert!(range.unfinished().is_empty());
    }
}
