//! A consumer group as the broker sees it: its live members, and per
//! partition of a topic the committed offset next to the log start and end;
//! and the one write, committing new offsets for the whole group.
//!
//! Nothing here joins the group: the client only asks (DescribeGroups,
//! OffsetFetch, ListOffsets, Metadata) and, for a reset, commits as a
//! member-less client (generation -1). Apache Kafka accepts that commit only
//! while the group is empty; the caller also checks that the group has no
//! live member first, because not every broker enforces it (tansu 0.6 takes
//! such a commit even from outside a running group).

use crate::ops::args::GroupArgs;
use crate::ops::OpsError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One partition of the topic, seen from the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next message it reads), if any.
    pub committed: Option<i64>,
    /// The first offset still in the log.
    pub log_start: i64,
    /// One past the last offset written (the high watermark).
    pub log_end: i64,
}

impl PartitionOffsets {
    /// Messages between the committed offset and the log end (none when
    /// nothing is committed: where the group starts then is its consumers'
    /// `auto.offset.reset`).
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.log_end - c).max(0))
    }
}

/// A client that inspects one group.
pub struct GroupClient {
    consumer: BaseConsumer,
    reader: BaseConsumer,
    group: String,
    timeout: Duration,
}

impl GroupClient {
    /// Creates the clients (no request is sent yet).
    pub fn new(args: &GroupArgs) -> Result<GroupClient, OpsError> {
        let extra = args.extra()?;
        let base = |group: &str| {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &args.kafka_brokers)
                .set("client.id", "observatory-consumer-offsets")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false");
            config.set("group.id", group);
            for (k, v) in &extra {
                config.set(k, v);
            }
            config
        };
        Ok(GroupClient {
            consumer: base(&args.group).create()?,
            // Reads single messages by offset (assign, never subscribe or
            // commit: it joins no group). librdkafka wants a group id for
            // assign; this one is never seen by the broker.
            reader: base(&format!(
                "observatory-offsets-reader-{}",
                std::process::id()
            ))
            .create()?,
            group: args.group.clone(),
            timeout: args.timeout,
        })
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's live members (their member ids) and its state, from
    /// DescribeGroups. A group the broker does not know has none.
    pub fn members(&self) -> Result<(Vec<String>, String), OpsError> {
        let list = self
            .consumer
            .fetch_group_list(Some(self.group.as_str()), self.timeout)?;
        Ok(list
            .groups()
            .iter()
            .find(|g| g.name() == self.group)
            .map(|g| {
                (
                    g.members().iter().map(|m| m.id().to_owned()).collect(),
                    g.state().to_owned(),
                )
            })
            .unwrap_or_else(|| (Vec::new(), "Dead".to_owned())))
    }

    /// The membership line `show` and `lag` print: "N live member(s), state
    /// S", or why the broker could not tell (reading offsets does not need it).
    pub fn describe(&self) -> String {
        match self.members() {
            Ok((members, state)) => format!("{} live member(s), state {state}", members.len()),
            Err(e) => format!("live members unknown (DescribeGroups failed: {e})"),
        }
    }

    /// The partitions of `topic`, in order.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, OpsError> {
        let metadata = self.consumer.fetch_metadata(Some(topic), self.timeout)?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| OpsError::UnknownTopic(topic.to_owned()))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(OpsError::UnknownTopic(topic.to_owned()));
        }
        let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Committed offset, log start and log end of every partition of `topic`.
    pub fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, OpsError> {
        let partitions = self.partitions(topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(topic, *p);
        }
        let committed = self.consumer.committed_offsets(tpl, self.timeout)?;
        let mut rows = Vec::with_capacity(partitions.len());
        for p in partitions {
            let elem = committed
                .find_partition(topic, p)
                .ok_or(OpsError::Incomplete("OffsetFetch left out a partition"))?;
            elem.error()?;
            let committed = match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            let (log_start, log_end) = self.consumer.fetch_watermarks(topic, p, self.timeout)?;
            rows.push(PartitionOffsets {
                partition: p,
                committed,
                log_start,
                log_end,
            });
        }
        Ok(rows)
    }

    /// The offset of the first message of `partition` whose timestamp is at
    /// or after `at`; the log end when there is none (Kafka's ListOffsets
    /// semantics).
    ///
    /// The newest message's timestamp is read first: when it is older than
    /// `at`, the answer is the log end without asking the broker. (Kafka
    /// answers -1 then, but tansu 0.6 answers 0, which would rewind the
    /// group to the start of the log.)
    pub fn offset_at(
        &self,
        topic: &str,
        p: &PartitionOffsets,
        at: SystemTime,
    ) -> Result<i64, OpsError> {
        let at_ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if p.log_end <= p.log_start {
            return Ok(p.log_end);
        }
        match self.timestamp_of(topic, p.partition, p.log_end - 1)? {
            Some(newest) if newest < at_ms => return Ok(p.log_end),
            _ => {}
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p.partition, Offset::Offset(at_ms))?;
        let found = self.consumer.offsets_for_times(tpl, self.timeout)?;
        let elem = found
            .find_partition(topic, p.partition)
            .ok_or(OpsError::Incomplete("ListOffsets left out a partition"))?;
        elem.error()?;
        match elem.offset() {
            Offset::Offset(o) if o >= 0 => Ok(o.clamp(p.log_start, p.log_end)),
            Offset::End | Offset::Offset(_) => Ok(p.log_end),
            other => Err(OpsError::Unexpected(format!(
                "ListOffsets answered {other:?} for partition {}",
                p.partition
            ))),
        }
    }

    /// The Kafka timestamp of the message at `offset` (None when it has none).
    fn timestamp_of(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<i64>, OpsError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        self.reader.assign(&tpl)?;
        let deadline = Instant::now() + self.timeout;
        let result = loop {
            if Instant::now() >= deadline {
                break Err(OpsError::Incomplete(
                    "no message could be read at the end of a partition",
                ));
            }
            match self.reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.partition() == partition && m.offset() >= offset => {
                    break Ok(m.timestamp().to_millis());
                }
                Some(Err(e)) => break Err(e.into()),
                _ => {}
            }
        };
        self.reader.unassign()?;
        result
    }

    /// Commits `offsets` (partition, next offset to read) for the group and
    /// reads them back.
    pub fn commit(&self, topic: &str, offsets: &[(i32, i64)]) -> Result<(), OpsError> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync)?;
        let stored = self.offsets(topic)?;
        for (p, o) in offsets {
            let got = stored
                .iter()
                .find(|s| s.partition == *p)
                .and_then(|s| s.committed);
            if got != Some(*o) {
                return Err(OpsError::Unexpected(format!(
                    "partition {p}: committed {o} but the broker now has {got:?}"
                )));
            }
        }
        Ok(())
    }
}
