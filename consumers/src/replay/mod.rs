//! Replays and dead letters: `observatory-consumer replay` and
//! `observatory-consumer dlq list|replay`.
//!
//! A replay reads a bounded range of the traces topic (or of the dead-letter
//! topic) through **the very same flow and sink** as the running consumer
//! group: the sink is built by `timescale::build` / `tempo::build` from the
//! same settings (its environment, and its flags after `--`), and the
//! messages go through [`crate::source::run_range`], which batches, writes,
//! dead-letters and commits exactly as [`crate::source::run`] does, but on
//! partitions assigned by hand and with an end: it returns once every
//! partition reached its end offset and the last batch is durable.
//!
//! Guarantees: sinks write idempotently, so replaying data that is already
//! stored changes nothing (PostgreSQL rows dedupe on (tenant, trace id, span
//! id) and rollups only count the rows a batch inserted); prices are looked
//! up by each span's start time (`rows.rs`), so a replay of last month is
//! priced with last month's prices. A message that fails for good goes to
//! the dead-letter topic, as in the consumer group; a dead letter sent back
//! that fails again goes back there with its new reason, so nothing is lost.
//!
//! Files: [`range`] parses and resolves `--from/--to/--partitions`,
//! [`replay`] runs `replay`, [`dlq`] runs `dlq list` and `dlq replay`,
//! [`progress`] formats what they print.

pub mod dlq;
pub mod progress;
pub mod range;
// The module of the `replay` command inside the folder of replays.
#[allow(clippy::module_inception)]
pub mod replay;

use crate::admin::Health;
use crate::config::{Cli, Command, ConfigError, KafkaConfig, SinkName, TempoArgs, TimescaleArgs};
use crate::metrics::{Metrics, SinkLabels};
use crate::source::{self, Batching, Range, RangeProgress, Sink};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a replay or a DLQ command failed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sink's flags (after `--`) do not parse.
    #[error("the {sink} flags after --: {reason}")]
    SinkArgs {
        /// The sink.
        sink: &'static str,
        /// Clap's message.
        reason: String,
    },
    /// The PostgreSQL sink could not start.
    #[error("timescale sink: {0}")]
    Timescale(#[from] crate::timescale::StartError),
    /// The Tempo sink could not start.
    #[error("tempo sink: {0}")]
    Tempo(#[from] crate::tempo::StartError),
    /// The range cannot be read.
    #[error(transparent)]
    Range(#[from] range::RangeError),
    /// A Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The read stopped with an error.
    #[error(transparent)]
    Run(#[from] source::RunError),
    /// The object store could not be listed (what its blocks hold).
    #[error("cannot list the object store: {0}")]
    Listing(object_store::Error),
    /// SIGTERM or SIGINT came before the end (what was read is written and
    /// committed).
    #[error("interrupted before the end of the range")]
    Interrupted,
    /// Some messages could not be written and are in the dead-letter topic.
    #[error("{0} message(s) could not be written and are in the dead-letter topic (see `observatory-consumer dlq list`)")]
    DeadLetters(u64),
}

/// A sink's settings, parsed exactly as `observatory-consumer <sink>` parses
/// them: its environment, then `flags`.
#[derive(Debug)]
pub enum SinkSettings {
    /// The PostgreSQL sink.
    Timescale(Box<TimescaleArgs>),
    /// The Tempo sink.
    Tempo(Box<TempoArgs>),
}

impl SinkSettings {
    /// Parses the settings of `sink`.
    pub fn parse(sink: SinkName, flags: &[String]) -> Result<SinkSettings, ReplayError> {
        let argv = ["observatory-consumer", sink.subcommand()]
            .into_iter()
            .map(str::to_owned)
            .chain(flags.iter().cloned());
        let cli = Cli::try_parse_from(argv).map_err(|e| ReplayError::SinkArgs {
            sink: sink.as_str(),
            reason: e.to_string(),
        })?;
        match cli.command {
            Command::Timescale(a) => Ok(SinkSettings::Timescale(a)),
            Command::Tempo(a) => Ok(SinkSettings::Tempo(a)),
            _ => unreachable!("parsed as a sink subcommand"),
        }
    }
}

/// A Kafka client for lookups (metadata, watermarks, offsets by time,
/// committed offsets of `group`), with the sink's connection settings.
pub fn lookup_client(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer, ReplayError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reads to the end of a log say so (`range::watermarks`, `dlq list`).
        .set("enable.partition.eof", "true");
    for (k, v) in &kafka.extra {
        config.set(k, v);
    }
    Ok(config.create()?)
}

/// What a bounded run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per partition, at the end.
    pub partitions: BTreeMap<i32, RangeProgress>,
    /// Messages sent to the dead-letter topic during the run.
    pub dead_letters: u64,
    /// Messages skipped because the store already held them (Tempo).
    pub already_stored: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Every partition reached its end.
    pub complete: bool,
}

/// Runs `sink` over `ranges` (partition -> `[first, end)`) of `kafka.topic`
/// through [`source::run_range`], printing progress every `interval`, and
/// returns once the range is read, written and committed (or `stop`).
pub async fn drive<S: Sink>(
    sink: S,
    kafka: KafkaConfig,
    batching: Batching,
    ranges: &BTreeMap<i32, (i64, i64)>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> Result<Outcome, ReplayError> {
    let range = Range::default();
    {
        let mut partitions = range.partitions.lock().expect("no poisoned lock");
        for (p, (first, end)) in ranges {
            partitions.insert(
                *p,
                RangeProgress {
                    first: *first,
                    end: *end,
                    next: *first,
                    ..RangeProgress::default()
                },
            );
        }
    }
    let shared = source::Shared {
        metrics: metrics.clone(),
        health: Health::default(),
        runtime: tokio::runtime::Handle::current(),
        stop: stop.clone(),
    };
    let started = Instant::now();
    let thread_range = range.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{}-replay", S::NAME))
        .spawn(move || source::run_range(sink, kafka, batching, shared, Some(thread_range)))
        .expect("spawning the replay thread");
    let mut join = tokio::task::spawn_blocking(move || thread.join());
    let result = loop {
        tokio::select! {
            joined = &mut join => break joined,
            _ = tokio::time::sleep(interval) => {
                let snapshot = range.partitions.lock().expect("no poisoned lock").clone();
                for line in progress::progress_lines(&snapshot, started.elapsed()) {
                    println!("{line}");
                }
            }
        }
    };
    match result {
        Ok(Ok(r)) => r?,
        _ => panic!("the replay thread panicked"),
    }
    let partitions = range.partitions.lock().expect("no poisoned lock").clone();
    let complete = partitions.values().all(RangeProgress::done);
    let dead_letters = metrics
        .dlq_messages
        .get_or_create(&SinkLabels { sink: S::NAME })
        .get();
    let already_stored = metrics
        .already_stored
        .get_or_create(&SinkLabels { sink: S::NAME })
        .get();
    if !complete && !stop.load(Ordering::Relaxed) {
        // run_range only returns early on stop.
        tracing::warn!("the replay ended before its range did");
    }
    Ok(Outcome {
        partitions,
        dead_letters,
        already_stored,
        elapsed: started.elapsed(),
        complete,
    })
}

/// Prints the summary of `outcome` and turns it into the command's result.
pub fn finish(title: &str, outcome: &Outcome) -> Result<(), ReplayError> {
    for line in progress::summary_lines(title, outcome) {
        println!("{line}");
    }
    if !outcome.complete {
        return Err(ReplayError::Interrupted);
    }
    if outcome.dead_letters > 0 {
        return Err(ReplayError::DeadLetters(outcome.dead_letters));
    }
    Ok(())
}
