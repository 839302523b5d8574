//! `observatory-consumer replay --sink timescale|metrics|logs|tempo --from X
//! [--to Y] [--partitions 0,3]`: reads a range of the sink's topic again
//! (traces; `otlp_metrics` for metrics, `otlp_logs` for logs) through the
//! sink, to backfill its store, and stops by itself at the end.
//!
//! The range is resolved once, at start (`--to` defaults to the end offsets
//! then), and read with partitions assigned by hand in the replay's own
//! group (`observatory-<sink>-replay`), which never joins or disturbs the
//! sink's running group; offsets are committed there after each durable
//! batch, as a record of how far it got. Progress per partition is printed
//! every `--progress-interval`, the summary at the end.

use super::range::{self, parse_partitions, Position, RangeError};
use super::{drive, finish, lookup_client, ReplayError, SinkSettings};
use crate::config::{KafkaConfig, ReplayArgs, SinkName};
use crate::metrics::Metrics;
use crate::source::{Batching, Sink};
use crate::{tempo, timescale};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::info;

/// The range flags, checked.
struct Wanted {
    from: Position,
    to: Option<Position>,
    partitions: Vec<i32>,
}

fn wanted(args: &ReplayArgs) -> Result<Wanted, RangeError> {
    let invalid = |flag, reason| RangeError::Invalid { flag, reason };
    Ok(Wanted {
        from: Position::parse(&args.from).map_err(|r| invalid("REPLAY_FROM", r))?,
        to: args
            .to
            .as_deref()
            .map(Position::parse)
            .transpose()
            .map_err(|r| invalid("REPLAY_TO", r))?,
        partitions: parse_partitions(&args.partitions)
            .map_err(|r| invalid("REPLAY_PARTITIONS", r))?,
    })
}

/// Runs the replay to its end; prints progress and the summary.
pub async fn run(args: ReplayArgs, stop: Arc<AtomicBool>) -> Result<(), ReplayError> {
    let wanted = wanted(&args)?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("observatory-{}-replay", args.sink.as_str()));
    let metrics = Arc::new(Metrics::new());
    match SinkSettings::parse(args.sink, &args.sink_args)? {
        SinkSettings::Timescale(settings) => {
            let health = crate::admin::Health::default();
            let Some(built) = timescale::build(&settings, metrics.clone(), &health, &stop).await?
            else {
                return Err(ReplayError::Interrupted);
            };
            let native = built.flavor == timescale::migrate::Flavor::Postgres;
            let batching = timescale::SIGNAL_BATCHING;
            match args.sink {
                SinkName::Metrics => {
                    let kafka = timescale::signal_kafka(&settings, &built.kafka, args.sink);
                    let sink = timescale::metrics_sink(&settings, native, metrics.clone())?;
                    go(sink, kafka, batching, &args, &wanted, group, metrics, stop).await
                }
                SinkName::Logs => {
                    let kafka = timescale::signal_kafka(&settings, &built.kafka, args.sink);
                    let sink = timescale::logs_sink(&settings, native, metrics.clone())?;
                    go(sink, kafka, batching, &args, &wanted, group, metrics, stop).await
                }
                _ => {
                    go(
                        built.sink,
                        built.kafka,
                        built.batching,
                        &args,
                        &wanted,
                        group,
                        metrics,
                        stop,
                    )
                    .await
                }
            }
        }
        SinkSettings::Tempo(settings) => {
            let (sink, kafka, batching) = tempo::build(&settings, metrics.clone())?;
            let stored = sink.stored().await.map_err(ReplayError::Listing)?;
            println!(
                "stored blocks={} (the messages they hold are skipped)",
                stored.blocks()
            );
            let sink = sink.for_replay(stored);
            go(sink, kafka, batching, &args, &wanted, group, metrics, stop).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn go<S: Sink>(
    sink: S,
    mut kafka: KafkaConfig,
    batching: Batching,
    args: &ReplayArgs,
    wanted: &Wanted,
    group: String,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<(), ReplayError> {
    kafka.group_id = group;
    let client = lookup_client(&kafka, &kafka.group_id)?;
    let all = range::partitions_of(&client, &kafka.topic)?;
    let partitions = range::select(&all, &wanted.partitions, &kafka.topic)?;
    let ranges: BTreeMap<i32, (i64, i64)> =
        range::resolve(&client, &kafka.topic, &partitions, wanted.from, wanted.to)?;
    drop(client);
    let total: i64 = ranges.values().map(|(first, end)| end - first).sum();
    info!(topic = %kafka.topic, group = %kafka.group_id, ?ranges, "replaying");
    println!(
        "replay sink={} topic={} group={} from={} to={} partitions={} offsets={total}",
        S::NAME,
        kafka.topic,
        kafka.group_id,
        args.from,
        args.to.as_deref().unwrap_or("end"),
        ranges.len(),
    );
    for (p, (first, end)) in &ranges {
        println!("plan partition={p} from={first} to={end}");
    }
    let outcome = drive(
        sink,
        kafka,
        batching,
        &ranges,
        metrics,
        stop,
        args.progress_interval,
    )
    .await?;
    finish("replay finished", &outcome)
}
