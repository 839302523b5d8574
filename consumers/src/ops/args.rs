//! Flags of `observatory-consumer offsets` and `observatory-consumer lag`.
//!
//! The connection settings carry an environment variable each, the same
//! names the sinks read (`KAFKA_BROKERS`, `KAFKA_TRACES_TOPIC`,
//! `KAFKA_GROUP_ID`, `KAFKA_CONSUMER_CONFIG`), so the tool run next to a sink
//! talks about that sink's group. What to do (`--to-earliest`,
//! `--dry-run`, ...) is said on the command line only: an action that moves
//! offsets must never be inherited from the environment.

use crate::config::parse_pairs;
use crate::ops::OpsError;
use clap::{ArgGroup, Args, Subcommand};
use observatory_schemas::kafka;
use std::time::{Duration, SystemTime};

/// Where to reach the group.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// The consumer group (a sink's KAFKA_GROUP_ID, e.g. observatory-timescale).
    #[arg(long, env = "KAFKA_GROUP_ID")]
    pub group: String,
    /// The topic whose offsets are shown or moved.
    #[arg(long, env = "KAFKA_TRACES_TOPIC", default_value = kafka::TRACES_TOPIC)]
    pub topic: String,
    /// Extra librdkafka settings, comma-separated key=value (TLS, SASL).
    #[arg(
        long,
        env = "KAFKA_CONSUMER_CONFIG",
        default_value = "",
        hide_env_values = true
    )]
    pub kafka_consumer_config: String,
    /// How long each request to the broker may take.
    #[arg(long, env = "KAFKA_ADMIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl GroupArgs {
    /// The extra librdkafka settings, checked.
    pub fn extra(&self) -> Result<Vec<(String, String)>, OpsError> {
        let extra =
            parse_pairs(&self.kafka_consumer_config).map_err(|reason| OpsError::Config {
                setting: "KAFKA_CONSUMER_CONFIG",
                reason,
            })?;
        match extra.iter().find(|(k, _)| k == "group.id") {
            Some(_) => Err(OpsError::Config {
                setting: "KAFKA_CONSUMER_CONFIG",
                reason: "group.id is given by --group".into(),
            }),
            None => Ok(extra),
        }
    }
}

/// `observatory-consumer offsets`.
#[derive(Debug, Clone, Args)]
pub struct OffsetsArgs {
    /// show or reset.
    #[command(subcommand)]
    pub action: OffsetsAction,
}

/// What `offsets` does.
#[derive(Debug, Clone, Subcommand)]
pub enum OffsetsAction {
    /// Print, per partition, the committed offset, the log start and end, and the lag.
    Show(GroupArgs),
    /// Move the group's committed offsets (refused while the group has live members).
    Reset(ResetArgs),
}

/// `observatory-consumer offsets reset`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_datetime", "to_earliest", "to_latest", "shift_by"])))]
pub struct ResetArgs {
    /// The group and topic.
    #[command(flatten)]
    pub group: GroupArgs,
    /// To the first message at or after this UTC time (RFC 3339, e.g. 2026-11-27T16:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to_datetime: Option<SystemTime>,
    /// To the start of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the end of each partition (skip everything not yet read).
    #[arg(long)]
    pub to_latest: bool,
    /// By this many messages from the committed offset (negative: back).
    #[arg(long, allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where a reset moves each partition to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The first message at or after a time.
    Datetime(SystemTime),
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// The committed offset plus this.
    ShiftBy(i64),
}

impl ResetArgs {
    /// The target the flags name (clap makes exactly one present).
    pub fn target(&self) -> Target {
        match (
            self.to_datetime,
            self.to_earliest,
            self.to_latest,
            self.shift_by,
        ) {
            (Some(t), ..) => Target::Datetime(t),
            (_, true, ..) => Target::Earliest,
            (_, _, true, _) => Target::Latest,
            (.., Some(n)) => Target::ShiftBy(n),
            _ => unreachable!("clap requires one target"),
        }
    }
}

/// `observatory-consumer lag`.
#[derive(Debug, Clone, Args)]
pub struct LagArgs {
    /// The group and topic.
    #[command(flatten)]
    pub group: GroupArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;
    use std::time::UNIX_EPOCH;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut argv = vec!["observatory-consumer"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    fn reset(args: &[&str]) -> ResetArgs {
        let mut argv = vec!["offsets", "reset", "--group", "g"];
        argv.extend_from_slice(args);
        match parse(&argv).expect("flags parse") {
            Command::Offsets(OffsetsArgs {
                action: OffsetsAction::Reset(r),
            }) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_parse() {
        let Command::Lag(lag) = parse(&["lag", "--group", "g"]).unwrap() else {
            panic!("lag")
        };
        assert_eq!(lag.group.topic, "otlp_spans");
        assert_eq!(lag.group.timeout, Duration::from_secs(10));
        assert!(lag.group.extra().unwrap().is_empty());
        let Command::Offsets(OffsetsArgs {
            action: OffsetsAction::Show(show),
        }) = parse(&["offsets", "show", "--group", "g", "--topic", "t"]).unwrap()
        else {
            panic!("show")
        };
        assert_eq!((show.group.as_str(), show.topic.as_str()), ("g", "t"));
    }

    #[test]
    fn a_reset_names_exactly_one_target() {
        assert_eq!(reset(&["--to-earliest"]).target(), Target::Earliest);
        assert_eq!(reset(&["--to-latest"]).target(), Target::Latest);
        assert_eq!(reset(&["--shift-by", "-5"]).target(), Target::ShiftBy(-5));
        let at = reset(&["--to-datetime", "2026-11-27T16:00:00Z", "--dry-run"]);
        assert!(at.dry_run);
        let Target::Datetime(t) = at.target() else {
            panic!("a time")
        };
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_795_200
        );
        assert!(parse(&["offsets", "reset", "--group", "g"]).is_err());
        assert!(parse(&[
            "offsets",
            "reset",
            "--group",
            "g",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        assert!(parse(&[
            "offsets",
            "reset",
            "--group",
            "g",
            "--to-datetime",
            "yesterday"
        ])
        .is_err());
    }

    #[test]
    fn the_group_id_cannot_be_smuggled_in() {
        let mut r = reset(&["--to-earliest"]);
        r.group.kafka_consumer_config = "group.id=other".into();
        assert!(matches!(
            r.group.extra(),
            Err(OpsError::Config {
                setting: "KAFKA_CONSUMER_CONFIG",
                ..
            })
        ));
    }
}
