//! Operating the sinks' consumer groups: `observatory-consumer offsets
//! show|reset` and `observatory-consumer lag`.
//!
//! These are one-shot tools, run by an operator next to the sinks, that talk
//! to the broker only. Reading (`show`, `lag`) is always safe. Moving offsets
//! (`reset`) is refused while the group has a live member, prints its plan
//! first, and changes nothing with `--dry-run`. A sink reset backwards
//! rewrites from there without duplicates, because every sink writes
//! idempotently (see [`crate::source`]).
//!
//! Where to start reading: [`offsets`], then [`group`] for the broker
//! requests.

pub mod args;
pub mod group;
pub mod lag;
pub mod offsets;

use thiserror::Error;

/// Why an operation on a group failed.
#[derive(Debug, Error)]
pub enum OpsError {
    /// A setting with a value that cannot work.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// The environment variable of the setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The broker refused or did not answer.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic does not exist (or has no partitions).
    #[error("topic {0} not found")]
    UnknownTopic(String),
    /// Offsets may only move while no consumer of the group runs.
    #[error(
        "group {group} has {members} live member(s): stop its consumers first (offsets of a running group are not moved)"
    )]
    GroupActive {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },
    /// The broker could not say whether the group has live members.
    #[error("cannot tell whether group {group} has live members, so its offsets are not moved: {reason}")]
    CannotDescribe {
        /// The group.
        group: String,
        /// The broker's error.
        reason: String,
    },
    /// `--shift-by` on a partition the group never committed.
    #[error("partition {0} has no committed offset to shift from (use --to-earliest, --to-latest or --to-datetime)")]
    NothingToShift(i32),
    /// The broker's answer left something out.
    #[error("incomplete answer: {0}")]
    Incomplete(&'static str),
    /// The broker's answer made no sense.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}
