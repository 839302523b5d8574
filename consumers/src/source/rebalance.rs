//! The group callbacks: what this member owns, and flushing before it lets
//! partitions go.
//!
//! On revocation between writes, the pending batch is flushed (within
//! `REBALANCE_FLUSH_BUDGET`, never longer: a callback that blocks for
//! minutes stalls the whole group) and committed before the partitions go;
//! if the store stays down, the revoked partitions' messages are let go
//! uncommitted and their next owner writes them again. On revocation
//! during a write (the callback then runs inside a keep-alive poll, see
//! `ack.rs`), the partitions are marked as no longer owned in the
//! [`Assignment`]: the sink leaves them out before its commit point and
//! nothing of them is committed here.

use super::ack::Batcher;
use super::Sink;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::info;

/// How long a flush inside a rebalance may take before the revoked
/// partitions are let go uncommitted (their next owner writes the data
/// again).
const REBALANCE_FLUSH_BUDGET: Duration = Duration::from_secs(15);

/// The partitions this member owns now: kept by the rebalance callbacks,
/// read by the flush (which commits only what is owned) and by a sink
/// before its commit point.
#[derive(Debug, Clone, Default)]
pub struct Assignment(Arc<Mutex<Owned>>);

#[derive(Debug, Default)]
enum Owned {
    /// Assigned by hand (a replay): everything, for good.
    Everything,
    /// What the group assigned.
    #[default]
    Nothing,
    Partitions(BTreeSet<(String, i32)>),
}

impl Assignment {
    /// Owns every partition, for good (replays, tests and tools).
    pub fn everything() -> Assignment {
        Assignment(Arc::new(Mutex::new(Owned::Everything)))
    }

    /// Whether this member owns `partition` of `topic` now.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        match &*self.0.lock().expect("no poisoned lock") {
            Owned::Everything => true,
            Owned::Nothing => false,
            Owned::Partitions(set) => set.iter().any(|(t, p)| *p == partition && t == topic),
        }
    }

    fn add(&self, partitions: &[(String, i32)]) {
        let mut owned = self.0.lock().expect("no poisoned lock");
        match &mut *owned {
            Owned::Everything => {}
            Owned::Nothing => *owned = Owned::Partitions(partitions.iter().cloned().collect()),
            Owned::Partitions(set) => set.extend(partitions.iter().cloned()),
        }
    }

    fn remove(&self, partitions: &[(String, i32)]) {
        if let Owned::Partitions(set) = &mut *self.0.lock().expect("no poisoned lock") {
            for p in partitions {
                set.remove(p);
            }
        }
    }
}

/// librdkafka context of a sink's consumer.
pub struct SourceContext<S: Sink> {
    pub(super) batcher: Arc<Mutex<Option<Batcher<S>>>>,
    pub(super) assignment: Assignment,
}

impl<S: Sink> ClientContext for SourceContext<S> {}

fn partitions(list: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl<S: Sink> ConsumerContext for SourceContext<S> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                info!(partitions = list.count(), "partitions assigned");
                self.assignment.add(&partitions(list));
            }
            Rebalance::Revoke(list) => {
                let revoked = partitions(list);
                info!(
                    partitions = revoked.len(),
                    "partitions revoked: flushing before letting go"
                );
                // The callback runs inside poll() on the loop's own thread.
                // Between writes the loop does not hold the lock: flush now.
                // During a write it does (this is a keep-alive poll): the
                // assignment below tells the write and its commit.
                if let Ok(mut guard) = self.batcher.try_lock() {
                    if let Some(batcher) = guard.as_mut() {
                        batcher.revoke(consumer, &revoked, Instant::now() + REBALANCE_FLUSH_BUDGET);
                    }
                }
                self.assignment.remove(&revoked);
            }
            Rebalance::Error(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_what_was_assigned_and_not_revoked() {
        let a = Assignment::default();
        assert!(!a.owns("t", 0));
        a.add(&[("t".into(), 0), ("t".into(), 1)]);
        assert!(a.owns("t", 0) && a.owns("t", 1));
        assert!(!a.owns("u", 0));
        a.remove(&[("t".into(), 0)]);
        assert!(!a.owns("t", 0) && a.owns("t", 1));
        let all = Assignment::everything();
        all.remove(&[("t".into(), 0)]);
        assert!(all.owns("t", 0));
    }
}
