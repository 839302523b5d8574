//! Each partition's next offset, and what to do about a gap.
//!
//! Our topics are neither compacted nor transactional, so a partition's
//! offsets come one after the other: a message whose offset is past the
//! next one expected means records were skipped on the way. That happens
//! when a fetch restarts from the middle of a record batch (after a pause
//! or a rebalance, librdkafka fetches again from the last message it
//! returned) and the broker answers with the next batch instead of the one
//! holding the offset (tansu 0.6 does; Apache Kafka returns the whole batch
//! and the client skips what it had). Taking the message would commit past
//! the skipped ones: they would never be written.
//!
//! So the message is not taken and the partition is read again from
//! further back, twice as far each time (the gap's offset minus 1, 2, 4,
//! ...), until a fetch starts at a batch boundary and the missing offset
//! comes; what was already taken is passed over. Messages fetched before a
//! seek can still arrive after it: they continue the old sequence upwards,
//! while the new fetch starts lower again, which is how the two are told
//! apart. A gap that stays when the read goes back to offset 0 is real (a
//! compacted or transactional topic somebody pointed us at) and is
//! accepted, with a warning.

use super::InMessage;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use std::collections::HashMap;
use std::time::Duration;
use tracing::warn;

/// How long a seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Position {
    /// The next offset expected.
    next: i64,
    /// Reading again from `next - back` to reach `next`, when set.
    back: Option<i64>,
    /// While reading again: the highest offset seen since (what continues
    /// above it was fetched before the seek).
    last_seen: i64,
}

/// What [`Positions::check`] says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Take it.
    Take,
    /// Taken before (reading again from further back): pass over it.
    Pass,
    /// Past a gap: the partition is read again from further back; every
    /// message of it fetched before now is stale.
    Rewound,
}

/// The next offset of every partition read so far.
#[derive(Debug, Default)]
pub(super) struct Positions {
    partitions: HashMap<(String, i32), Position>,
}

impl Positions {
    /// Whether `message` is taken. A message past a gap starts (or
    /// continues) reading the partition again from further back, and one
    /// before the gap while reading again was taken already.
    pub(super) fn check<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &InMessage,
    ) -> Verdict {
        let key = (message.topic.clone(), message.partition);
        let Some(position) = self.partitions.get_mut(&key) else {
            self.partitions.insert(
                key,
                Position {
                    next: message.offset + 1,
                    back: None,
                    last_seen: message.offset,
                },
            );
            return Verdict::Take;
        };
        let offset = message.offset;
        match position.back {
            Some(_) if offset < position.next => return Verdict::Pass,
            Some(_) if offset > position.last_seen => {
                // Fetched before the seek: the old sequence going on.
                position.last_seen = offset;
                return Verdict::Pass;
            }
            Some(back) if offset > position.next => {
                position.last_seen = offset;
                if position.next - back <= 0 {
                    warn!(
                        partition = message.partition,
                        expected = position.next,
                        got = offset,
                        "offsets missing from the log itself; going on"
                    );
                } else {
                    let back = back * 2;
                    position.back = Some(back);
                    seek(consumer, message, (position.next - back).max(0));
                    return Verdict::Rewound;
                }
            }
            None if offset > position.next => {
                warn!(
                    partition = message.partition,
                    expected = position.next,
                    got = offset,
                    "records were skipped: reading the partition again from the gap"
                );
                position.back = Some(1);
                position.last_seen = offset;
                seek(consumer, message, (position.next - 1).max(0));
                return Verdict::Rewound;
            }
            _ => {}
        }
        position.next = offset + 1;
        position.back = None;
        Verdict::Take
    }

    /// Keeps the partitions `keep` says yes to.
    pub(super) fn retain(&mut self, keep: impl Fn(&str, i32) -> bool) {
        self.partitions
            .retain(|(topic, partition), _| keep(topic, *partition));
    }
}

fn seek<C: ConsumerContext>(consumer: &BaseConsumer<C>, message: &InMessage, offset: i64) {
    if let Err(e) = consumer.seek(
        &message.topic,
        message.partition,
        Offset::Offset(offset),
        SEEK_TIMEOUT,
    ) {
        warn!(error = %e, partition = message.partition, offset, "seek failed; the gap is looked at again on the next message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;

    fn message(offset: i64) -> InMessage {
        InMessage {
            topic: "t".into(),
            partition: 0,
            offset,
            key: None,
            payload: bytes::Bytes::new(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_gap_is_read_again_from_further_back_until_it_fills() {
        // A consumer that is never connected: seeks on it fail, which the
        // positions only log (the verdicts are what is tested here).
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "g")
            .create()
            .unwrap();
        let mut p = Positions::default();
        let check = |p: &mut Positions, o| p.check(&consumer, &message(o));
        assert_eq!(check(&mut p, 30), Verdict::Take);
        assert_eq!(check(&mut p, 31), Verdict::Take);
        // 32 and 33 skipped by the broker.
        assert_eq!(check(&mut p, 34), Verdict::Rewound);
        // Fetched before the seek: passed over, not another step back.
        assert_eq!(check(&mut p, 35), Verdict::Pass);
        assert_eq!(check(&mut p, 36), Verdict::Pass);
        // The new fetch lands past the gap again: twice as far back.
        assert_eq!(check(&mut p, 34), Verdict::Rewound);
        // Now from a batch boundary: what was taken is passed over.
        assert_eq!(check(&mut p, 30), Verdict::Pass);
        assert_eq!(check(&mut p, 31), Verdict::Pass);
        assert_eq!(check(&mut p, 32), Verdict::Take);
        assert_eq!(check(&mut p, 33), Verdict::Take);
        assert_eq!(check(&mut p, 34), Verdict::Take);
    }

    #[test]
    fn a_gap_that_stays_back_to_offset_zero_is_accepted() {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "g")
            .create()
            .unwrap();
        let mut p = Positions::default();
        let check = |p: &mut Positions, o| p.check(&consumer, &message(o));
        assert_eq!(check(&mut p, 0), Verdict::Take);
        assert_eq!(check(&mut p, 1), Verdict::Take);
        assert_eq!(check(&mut p, 5), Verdict::Rewound); // back to 1
        assert_eq!(check(&mut p, 0), Verdict::Pass);
        assert_eq!(check(&mut p, 1), Verdict::Pass);
        assert_eq!(check(&mut p, 5), Verdict::Rewound); // back to 0
        assert_eq!(check(&mut p, 0), Verdict::Pass);
        assert_eq!(check(&mut p, 1), Verdict::Pass);
        assert_eq!(
            check(&mut p, 5),
            Verdict::Take,
            "offsets 2 to 4 are not in the log"
        );
        assert_eq!(check(&mut p, 6), Verdict::Take);
    }
}
