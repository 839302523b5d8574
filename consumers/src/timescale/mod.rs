//! The PostgreSQL/TimescaleDB sink: `observatory-consumer timescale`.
//!
//! Reads `otlp_spans` in its own consumer group (`observatory-timescale`)
//! and writes `spans`, `llm_calls`, the per-minute and hourly rollups, the
//! trace, session and user summaries, and the scores of evaluation events;
//! beside it, a second loop reads the `scores` topic in its own group
//! (`observatory-timescale-scores`, [`crate::scores`]).
//! Delivery: offsets are committed only after the PostgreSQL transaction of
//! their batch committed (see [`crate::source`]); writes are idempotent on
//! (tenant, trace id, span id), and rollups are fed only by rows actually
//! inserted, so a crash, a re-delivery or a replay writes nothing twice.
//!
//! Files: [`rows`] turns a message into rows (GenAI mapping, pricing,
//! content policy), [`writer`] COPYs them in one transaction (through
//! [`copy`], which hands the connection large chunks), [`rollups`]
//! sums the calls it inserted, [`summaries`] merges what it inserted into
//! one row per trace (`trace_summaries`, what the trace list reads),
//! [`activity`] into one per session and per end user,
//! [`partitions`]
//! and [`migrate`] keep the schema; [`crate::redact`] is the content
//! policy.

pub mod activity;
pub mod copy;
pub mod migrate;
pub mod partitions;
pub mod rollups;
pub mod rows;
pub mod summaries;
pub mod writer;

/// The hasher of the sink's per-batch maps and sets: fast, and keyed at
/// random per process, since the keys (trace ids, names) are the clients'
/// choice and must not be able to collide on purpose.
pub type FastHash = ahash::RandomState;

use crate::admin::Health;
use crate::config::{Db, TimescaleArgs};
use crate::metrics::{Metrics, SinkLabels, TableLabels};
use crate::source::{self, Assignment, InMessage, Sink, WriteError};
use migrate::Flavor;
use observatory_schemas::pricing::PriceBook;
use partitions::Partitions;
use rows::{Prepared, Preparer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tracing::{info, warn};
use writer::Writer;

/// The sink's name in metrics and dead letters.
pub const NAME: &str = "timescale";

/// Payload bytes at which a batch is written whatever its span count: a
/// bound on memory when messages carry large prompts.
const BATCH_BYTES: usize = 64 << 20;

/// Why the sink could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The price file could not be read or parsed.
    #[error("PRICING_FILE {path}: {reason}")]
    Pricing {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The consumer loop stopped with an error.
    #[error(transparent)]
    Run(#[from] source::RunError),
    /// The admin port could not be bound.
    #[error("cannot listen on the admin address: {0}")]
    Admin(std::io::Error),
}

/// The sink: rows from messages, written over a few connections at once.
pub struct TimescaleSink {
    preparer: Preparer,
    writers: Vec<Writer>,
    metrics: Arc<Metrics>,
}

impl Sink for TimescaleSink {
    type Item = Prepared;
    const NAME: &'static str = NAME;

    fn decode(&self, message: &InMessage) -> Result<Prepared, String> {
        self.preparer.prepare(message).map_err(|e| {
            if let rows::Unstorable::Future { spans, .. } = &e {
                self.metrics
                    .future_spans
                    .get_or_create(&SinkLabels { sink: NAME })
                    .inc_by(*spans);
            }
            e.to_string()
        })
    }

    /// The batch's rows, each key once ([`writer::Rows::dedup`]), are split
    /// over the connections, each part one transaction, all at once:
    /// PostgreSQL parses and indexes on several cores. A failure of any
    /// fails the batch, which is then written again whole; the parts that
    /// had committed are deduplicated, so partial success is harmless.
    async fn write(
        &mut self,
        items: &[&Prepared],
        _owned: &Assignment,
    ) -> Result<source::Rejected, WriteError> {
        let rows = writer::Rows::dedup(items);
        let parts = rows.split(self.writers.len());
        let results = futures::future::join_all(
            self.writers
                .iter_mut()
                .zip(&parts)
                .map(|(writer, part)| writer.write(part)),
        )
        .await;
        let mut written = writer::Written::default();
        let mut failure = None;
        for result in results {
            match result {
                Ok(w) => {
                    written.spans += w.spans;
                    written.spans_inserted += w.spans_inserted;
                    written.calls += w.calls;
                    written.calls_inserted += w.calls_inserted;
                    written.scores += w.scores;
                }
                // A permanent failure wins: it is what the source narrows down.
                Err(e @ WriteError::Permanent(_)) => failure = Some(e),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let count = |table, n: u64| {
            self.metrics
                .rows_written
                .get_or_create(&TableLabels { sink: NAME, table })
                .inc_by(n);
        };
        count("spans", written.spans_inserted);
        count("llm_calls", written.calls_inserted);
        count("scores", written.scores);
        let dup = |table, n: u64| {
            self.metrics
                .rows_duplicate
                .get_or_create(&TableLabels { sink: NAME, table })
                .inc_by(n);
        };
        // Repeated inside the batch, or already stored.
        dup(
            "spans",
            rows.repeated_spans + written.spans - written.spans_inserted,
        );
        dup(
            "llm_calls",
            rows.repeated_calls + written.calls - written.calls_inserted,
        );
        let expired: u64 = items.iter().map(|p| p.expired).sum();
        self.metrics
            .expired_spans
            .get_or_create(&SinkLabels { sink: NAME })
            .inc_by(expired);
        let invalid: u64 = items.iter().map(|p| p.invalid_scores).sum();
        self.metrics
            .invalid_evaluations
            .get_or_create(&SinkLabels { sink: NAME })
            .inc_by(invalid);
        let unpriced: u64 = items.iter().map(|p| p.unpriced).sum();
        self.metrics
            .unpriced_llm_calls
            .get_or_create(&SinkLabels { sink: NAME })
            .inc_by(unpriced);
        Ok(Vec::new())
    }
}

/// Connects and migrates, retrying until PostgreSQL answers or `stop` is set.
async fn prepare_database(
    args: &TimescaleArgs,
    db: &Db,
    health: &Health,
    stop: &AtomicBool,
) -> Option<Flavor> {
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let attempt = async {
            let mut writer = Writer::new(db.clone(), true);
            let client = writer.client().await.map_err(|e| e.to_string())?;
            let flavor = if args.migrate_on_start {
                migrate::migrate(client).await.map_err(|e| e.to_string())?
            } else {
                Flavor::Postgres
            };
            match flavor {
                Flavor::Postgres => {
                    let today = Partitions::today();
                    let days = (today - 1..=today + 2).collect();
                    writer
                        .ensure_partitions(&days)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Flavor::TimescaleDb => {
                    let client = writer.client().await.map_err(|e| e.to_string())?;
                    migrate::set_retention_policies(
                        client,
                        args.retention_traces_days,
                        args.retention_metrics_days,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
            Ok::<_, String>(flavor)
        };
        match attempt.await {
            Ok(flavor) => {
                health.store_ok.store(true, Ordering::Relaxed);
                info!(?flavor, "database ready");
                return Some(flavor);
            }
            Err(error) => {
                warn!(%error, "postgres is not ready; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    None
}

/// Days after today that hold partitions: those made ahead (2), and those
/// a span up to `ACCEPT_SPANS_MAX_FUTURE` ahead needs. Partitions past it
/// hold nothing an accepted span could be in (only what an older version
/// stored of hostile timestamps) and are dropped.
fn days_ahead(args: &TimescaleArgs) -> u32 {
    let future_days = args.accept_spans_max_future.as_secs().div_ceil(86_400);
    2 + u32::try_from(future_days).unwrap_or(u32::MAX - 2)
}

/// Hourly: create tomorrow's partitions and drop expired ones (plain
/// PostgreSQL; TimescaleDB's policies do that), delete the summaries of
/// traces that started before the traces' retention, and the metric series
/// not seen within the metrics' retention (both).
async fn maintain(args: TimescaleArgs, db: Db, flavor: Flavor, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mut writer = Writer::new(db.clone(), true);
        let today = Partitions::today();
        let result = async {
            if flavor == Flavor::Postgres {
                writer
                    .ensure_partitions(&(today..=today + 2).collect())
                    .await?;
                let client = writer.client().await?;
                Partitions::drop_expired(
                    client,
                    args.retention_traces_days,
                    args.retention_metrics_days,
                    days_ahead(&args),
                )
                .await?;
            }
            let client = writer.client().await?;
            Partitions::expire_summaries(client, args.retention_traces_days).await?;
            Partitions::expire_series(client, args.retention_metrics_days).await
        }
        .await;
        if let Err(error) = result {
            warn!(%error, "partition maintenance failed; retrying next hour");
        }
        for _ in 0..3600 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What a run of the sink needs, built from its settings: the same for the
/// consumer group and for a replay (`crate::replay`).
pub struct Built {
    /// The sink.
    pub sink: TimescaleSink,
    /// Checked Kafka settings.
    pub kafka: crate::config::KafkaConfig,
    /// How it batches.
    pub batching: source::Batching,
    /// The database's flavor.
    pub flavor: Flavor,
}

/// Checks the settings, loads the prices, connects and migrates (retrying
/// until PostgreSQL answers; `None` when `stop` came first) and builds the
/// sink.
pub async fn build(
    args: &TimescaleArgs,
    metrics: Arc<Metrics>,
    health: &Health,
    stop: &AtomicBool,
) -> Result<Option<Built>, StartError> {
    let db = args.db.check()?;
    let kafka = args.kafka.clone().into_config(NAME)?;
    if args.copy_batch_size == 0 {
        return Err(crate::config::ConfigError {
            setting: "COPY_BATCH_SIZE",
            reason: "must be at least 1".into(),
        }
        .into());
    }
    let mut prices = PriceBook::builtin();
    if let Some(path) = &args.pricing_file {
        let fail = |reason: String| StartError::Pricing {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        prices.add_json(&text).map_err(|e| fail(e.to_string()))?;
    }
    args.content.check()?;
    let policy = args.content.policy();
    let Some(flavor) = prepare_database(args, &db, health, stop).await else {
        return Ok(None);
    };
    let sink = TimescaleSink {
        preparer: Preparer {
            policy,
            prices,
            max_age: args.max_span_age(),
            max_future: args.accept_spans_max_future,
            default_environment: args.content.environment.as_str().to_owned(),
        },
        writers: {
            let mut writers: Vec<Writer> = (0..args.write_connections()?)
                .map(|_| Writer::new(db.clone(), flavor == Flavor::Postgres))
                .collect();
            // DB_POOL_MIN_SIZE: connections open from the start.
            for writer in writers.iter_mut().take(args.db_pool_min_size) {
                if let Err(error) = writer.client().await {
                    warn!(%error, "cannot open a write connection yet; it opens on first use");
                }
            }
            writers
        },
        metrics,
    };
    let batching = source::Batching {
        batch_size: args.copy_batch_size,
        batch_bytes: BATCH_BYTES,
        flush_interval: args.copy_flush_interval,
    };
    Ok(Some(Built {
        sink,
        kafka,
        batching,
        flavor,
    }))
}

/// Runs the sink until `stop` is set (SIGTERM): then drains, writes, commits.
pub async fn run(args: TimescaleArgs, stop: Arc<AtomicBool>) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    crate::admin::serve(args.admin_addr, metrics.clone(), health.clone())
        .await
        .map_err(StartError::Admin)?;
    let Some(built) = build(&args, metrics.clone(), &health, &stop).await? else {
        return Ok(());
    };
    let db = args.db.check()?;
    tokio::spawn(maintain(args.clone(), db, built.flavor, stop.clone()));
    let shared = || source::Shared {
        metrics: metrics.clone(),
        health: health.clone(),
        runtime: tokio::runtime::Handle::current(),
        stop: stop.clone(),
    };
    let signals = args.signals()?;
    let native = built.flavor == Flavor::Postgres;
    let side = |topic: &str, name: &str| side_kafka(&built.kafka, topic, name);
    let scores = if args.reads_scores() {
        let kafka = side(&args.kafka_scores_topic, crate::scores::NAME);
        crate::scores::ensure_topic(&kafka, &built.kafka.topic).await;
        let sink = crate::scores::ScoresSink::new(args.db.check()?, metrics.clone());
        Some((sink, kafka))
    } else {
        None
    };
    let points = if signals.metrics {
        let kafka = side(&args.kafka_metrics_topic, crate::otel_metrics::NAME);
        crate::scores::ensure_topic(&kafka, &built.kafka.topic).await;
        Some((metrics_sink(&args, native, metrics.clone())?, kafka))
    } else {
        None
    };
    let logs = if signals.logs {
        let kafka = side(&args.kafka_logs_topic, crate::logs::NAME);
        crate::scores::ensure_topic(&kafka, &built.kafka.topic).await;
        Some((logs_sink(&args, native, metrics.clone())?, kafka))
    } else {
        None
    };
    let spans = signals.traces.then_some((built.sink, built.kafka));
    let (spans, scores, points, logs) = tokio::join!(
        run_loop(spans, built.batching, shared(), &stop),
        run_loop(scores, SCORE_BATCHING, shared(), &stop),
        run_loop(points, SIGNAL_BATCHING, shared(), &stop),
        run_loop(logs, SIGNAL_BATCHING, shared(), &stop),
    );
    spans.and(scores).and(points).and(logs)
}

/// The Kafka settings of a loop beside the spans': its own topic, group
/// (`<group>-<name>`), offsets and dead letters.
pub fn side_kafka(
    spans: &crate::config::KafkaConfig,
    topic: &str,
    name: &str,
) -> crate::config::KafkaConfig {
    let mut kafka = spans.clone();
    kafka.topic = topic.to_owned();
    kafka.group_id = format!("{}-{name}", spans.group_id);
    kafka.dlq_topic = observatory_schemas::kafka::dlq_topic(&kafka.topic);
    kafka
}

/// The Kafka settings of the metrics or logs sink for a replay.
pub fn signal_kafka(
    args: &TimescaleArgs,
    spans: &crate::config::KafkaConfig,
    sink: crate::config::SinkName,
) -> crate::config::KafkaConfig {
    let topic = match sink {
        crate::config::SinkName::Metrics => args.kafka_metrics_topic.clone(),
        crate::config::SinkName::Logs => args.kafka_logs_topic.clone(),
        _ => spans.topic.clone(),
    };
    side_kafka(spans, &topic, sink.as_str())
}

/// Runs one consumer loop, when there is one, to its end; one loop down
/// stops the others (the process exits and is restarted whole).
async fn run_loop<S: Sink>(
    sink: Option<(S, crate::config::KafkaConfig)>,
    batching: source::Batching,
    shared: source::Shared,
    stop: &AtomicBool,
) -> Result<(), StartError> {
    let Some((sink, kafka)) = sink else {
        return Ok(());
    };
    let result = source::run_on_thread(sink, kafka, batching, shared).await;
    stop.store(true, Ordering::Relaxed);
    Ok(result?)
}

/// The metrics sink of these settings (`replay --signal metrics` too).
pub fn metrics_sink(
    args: &TimescaleArgs,
    native_partitions: bool,
    metrics: Arc<Metrics>,
) -> Result<crate::otel_metrics::MetricsSink, StartError> {
    let preparer = crate::otel_metrics::rows::Preparer {
        max_age: Duration::from_secs(86_400 * u64::from(args.retention_metrics_days)),
        max_future: args.accept_spans_max_future,
    };
    Ok(crate::otel_metrics::MetricsSink::new(
        args.db.check()?,
        native_partitions,
        preparer,
        args.metrics_max_series,
        metrics,
    ))
}

/// The logs sink of these settings (`replay --signal logs` too).
pub fn logs_sink(
    args: &TimescaleArgs,
    native_partitions: bool,
    metrics: Arc<Metrics>,
) -> Result<crate::logs::LogsSink, StartError> {
    let preparer = crate::logs::rows::Preparer {
        policy: args.content.policy(),
        body_max_bytes: args.log_body_max_bytes.max(64),
        max_age: args.retention(),
        max_future: args.accept_spans_max_future,
    };
    Ok(crate::logs::LogsSink::new(
        args.db.check()?,
        native_partitions,
        preparer,
        metrics,
    ))
}

/// How the metrics and logs loops batch: points and records are small;
/// larger transactions cost less per row.
pub const SIGNAL_BATCHING: source::Batching = source::Batching {
    batch_size: 20_000,
    batch_bytes: 32 << 20,
    flush_interval: Duration::from_millis(500),
};

/// How the scores loop batches: scores are small, and an API client waits
/// for nothing here (it was answered once the broker had the score).
const SCORE_BATCHING: source::Batching = source::Batching {
    batch_size: 5_000,
    batch_bytes: 16 << 20,
    flush_interval: Duration::from_millis(200),
};
