//! Configuration of `observatory-consumer`: one clap subcommand per sink or
//! tool, flags shared through flattened groups, an environment variable on
//! every flag, checked into plain structs whose errors name the setting.

use clap::{Args, Parser, Subcommand};
use observatory_schemas::kafka;
use observatory_schemas::postgres_tls::{self, MakeRustlsConnect, SslMode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `observatory-consumer`: the consumer groups that write the stores.
#[derive(Debug, Parser)]
#[command(name = "observatory-consumer", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume traces into PostgreSQL/TimescaleDB (spans, LLM calls, rollups).
    Timescale(Box<TimescaleArgs>),
    /// Consume traces into Grafana Tempo vParquet4 blocks in object storage.
    Tempo(Box<TempoArgs>),
    /// Compact the Tempo blocks, apply their retention, write the tenant index.
    Compact(Box<CompactArgs>),
    /// Apply the PostgreSQL migrations and exit.
    Migrate(DbArgs),
    /// Read a range of the topic again through a sink (backfill), then exit.
    Replay(Box<ReplayArgs>),
    /// Show the dead letters, or send them back through a sink.
    Dlq(Box<DlqArgs>),
    /// Show or move a consumer group's committed offsets (like kafka-consumer-groups).
    Offsets(crate::ops::args::OffsetsArgs),
    /// Print a consumer group's lag per partition (committed offset vs log end).
    Lag(crate::ops::args::LagArgs),
}

/// A sink a replay writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkName {
    /// `observatory-consumer timescale`: spans.
    Timescale,
    /// `observatory-consumer tempo`.
    Tempo,
    /// The metrics loop of `observatory-consumer timescale` (`otlp_metrics`).
    Metrics,
    /// The logs loop of `observatory-consumer timescale` (`otlp_logs`).
    Logs,
}

impl SinkName {
    /// Its name in dead letters and default group names.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkName::Timescale => "timescale",
            SinkName::Tempo => "tempo",
            SinkName::Metrics => "metrics",
            SinkName::Logs => "logs",
        }
    }

    /// The subcommand whose settings configure it.
    pub fn subcommand(self) -> &'static str {
        match self {
            SinkName::Tempo => "tempo",
            _ => "timescale",
        }
    }

    /// The topic it reads by default (`KAFKA_METRICS_TOPIC` and
    /// `KAFKA_LOGS_TOPIC` when set); `None` for the traces topic of
    /// `KAFKA_TRACES_TOPIC`.
    pub fn own_topic(self) -> Option<String> {
        let (env, default) = match self {
            SinkName::Metrics => ("KAFKA_METRICS_TOPIC", kafka::METRICS_TOPIC),
            SinkName::Logs => ("KAFKA_LOGS_TOPIC", kafka::LOGS_TOPIC),
            _ => return None,
        };
        Some(std::env::var(env).unwrap_or_else(|_| default.to_owned()))
    }
}

/// `observatory-consumer replay`. The sink is configured exactly as
/// `observatory-consumer <sink>` is: by its environment variables, and by
/// its flags given after `--`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The sink written through: timescale (spans), metrics, logs or tempo.
    #[arg(long, env = "REPLAY_SINK", value_enum)]
    pub sink: SinkName,
    /// First message: an RFC 3339 time (Kafka message timestamp) or an offset.
    #[arg(long, env = "REPLAY_FROM")]
    pub from: String,
    /// End, exclusive: an RFC 3339 time or an offset (default: the end offsets at start).
    #[arg(long, env = "REPLAY_TO")]
    pub to: Option<String>,
    /// Partitions read, comma-separated (default: all).
    #[arg(long, env = "REPLAY_PARTITIONS", default_value = "")]
    pub partitions: String,
    /// Consumer group the replay commits its progress in (default: observatory-<sink>-replay).
    #[arg(long, env = "REPLAY_GROUP_ID")]
    pub group: Option<String>,
    /// How often progress is printed.
    #[arg(long, env = "REPLAY_PROGRESS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
    /// The sink's own flags (as for `observatory-consumer <sink>`).
    #[arg(last = true)]
    pub sink_args: Vec<String>,
}

/// `observatory-consumer dlq`.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// `dlq list` or `dlq replay`.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqAction {
    /// Print the dead letters with their reasons.
    List(DlqListArgs),
    /// Send the dead letters of a sink back through it; those that fail
    /// again go back to the dead-letter topic with their new reason.
    Replay(DlqReplayArgs),
}

/// `observatory-consumer dlq list`.
#[derive(Debug, Clone, Args)]
pub struct DlqListArgs {
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Only the dead letters of this sink.
    #[arg(long, env = "DLQ_SINK", value_enum)]
    pub sink: Option<SinkName>,
    /// The DLQ group whose progress marks letters as sent back (default:
    /// observatory-<sink>-dlq of each letter's sink).
    #[arg(long, env = "DLQ_GROUP_ID")]
    pub group: Option<String>,
}

/// `observatory-consumer dlq replay`. The sink is configured as for
/// `observatory-consumer <sink>` (environment, and flags after `--`).
#[derive(Debug, Clone, Args)]
pub struct DlqReplayArgs {
    /// The sink whose dead letters are sent back through it.
    #[arg(long, env = "DLQ_SINK", value_enum)]
    pub sink: SinkName,
    /// Consumer group that remembers which dead letters were sent back
    /// (default: observatory-<sink>-dlq).
    #[arg(long, env = "DLQ_GROUP_ID")]
    pub group: Option<String>,
    /// How often progress is printed.
    #[arg(long, env = "REPLAY_PROGRESS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
    /// The sink's own flags (as for `observatory-consumer <sink>`).
    #[arg(last = true)]
    pub sink_args: Vec<String>,
}

/// Kafka settings of a sink.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic to read.
    #[arg(long, env = "KAFKA_TRACES_TOPIC", default_value = kafka::TRACES_TOPIC)]
    pub kafka_traces_topic: String,
    /// Consumer group (default: observatory-<sink>).
    #[arg(long, env = "KAFKA_GROUP_ID")]
    pub kafka_group_id: Option<String>,
    /// Where a new group starts: earliest or latest.
    #[arg(long, env = "KAFKA_AUTO_OFFSET_RESET", default_value = "earliest")]
    pub kafka_auto_offset_reset: String,
    /// Dead-letter topic (default: <topic>.dlq).
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,
    /// Partitions of the dead-letter topic when the consumer creates it.
    #[arg(long, env = "KAFKA_DLQ_PARTITIONS", default_value_t = 1)]
    pub kafka_dlq_partitions: i32,
    /// Replication factor of the dead-letter topic when the consumer creates it.
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub kafka_replication_factor: i32,
    /// Longest pause between polls before the group evicts this member.
    #[arg(long, env = "KAFKA_MAX_POLL_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub kafka_max_poll_interval: Duration,
    /// The collector's KAFKA_MESSAGE_MAX_BYTES: the dead-letter topic and producer take any record the topic can hold.
    #[arg(long, env = "KAFKA_MESSAGE_MAX_BYTES", default_value_t = 1_000_000)]
    pub kafka_message_max_bytes: usize,
    /// How long a dead letter may go unacknowledged before the sink stops with an error naming its message.
    #[arg(long, env = "KAFKA_DLQ_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub kafka_dlq_timeout: Duration,
    /// Extra librdkafka consumer settings, comma-separated key=value (TLS, SASL).
    #[arg(
        long,
        env = "KAFKA_CONSUMER_CONFIG",
        default_value = "",
        hide_env_values = true
    )]
    pub kafka_consumer_config: String,
}

/// PostgreSQL settings.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    pub database_url: String,
    /// PostgreSQL password, used instead of the one in DATABASE_URL (so that a secret holds only the password and it needs no URL escaping).
    #[arg(long, env = "DB_PASSWORD", hide_env_values = true)]
    pub db_password: Option<String>,
    /// TLS to PostgreSQL: disable, prefer, require, verify-ca or verify-full (libpq's meanings).
    #[arg(long, env = "DB_SSL_MODE", default_value = "prefer")]
    pub db_ssl_mode: SslMode,
    /// PEM file of the CA certificates that verify-ca and verify-full trust (default: Mozilla's roots).
    #[arg(long, env = "DB_SSL_ROOT_CERT")]
    pub db_ssl_root_cert: Option<PathBuf>,
}

/// How to reach PostgreSQL: the parsed URL and the TLS connector of
/// `DB_SSL_MODE`.
#[derive(Clone)]
pub struct Db {
    /// The connection settings, TLS mode included.
    pub config: tokio_postgres::Config,
    /// The TLS connector.
    pub tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Db {
    /// The settings without the password (`tokio_postgres::Config` hides it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("config", &self.config).finish()
    }
}

/// What is stored of message content and sensitive attributes (every sink).
#[derive(Debug, Clone, Args)]
pub struct ContentArgs {
    /// Store prompt and completion text (redacted and capped); off by default.
    #[arg(long, env = "CAPTURE_CONTENT", default_value_t = false)]
    pub capture_content: bool,
    /// Longest prompt or completion text stored, bytes.
    #[arg(long, env = "CONTENT_MAX_BYTES", default_value_t = 16 * 1024)]
    pub content_max_bytes: usize,
    /// Attribute keys dropped before anything is stored, comma-separated.
    #[arg(long, env = "DROP_ATTRIBUTES", default_value = "")]
    pub drop_attributes: String,
    /// Attribute keys whose values are stored as HMAC-SHA-256 hashes keyed by SECRET_KEY, comma-separated.
    #[arg(long, env = "HASH_ATTRIBUTES", default_value = "")]
    pub hash_attributes: String,
    /// The key of HASH_ATTRIBUTES' HMAC (required with it in production); keep it secret and stable.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// development or production: production refuses hashing without SECRET_KEY.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: observatory_schemas::environment::Environment,
}

impl ContentArgs {
    /// The policy these settings describe.
    pub fn policy(&self) -> crate::redact::Policy {
        crate::redact::Policy::new(
            self.capture_content,
            self.content_max_bytes,
            parse_list(&self.drop_attributes),
            parse_list(&self.hash_attributes),
        )
        .with_hash_key(self.secret_key.as_deref().map(str::as_bytes))
    }

    /// Refuses settings that are unsafe in production: hashing without a key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let keyed = self.secret_key.as_deref().is_some_and(|k| !k.is_empty());
        if !parse_list(&self.hash_attributes).is_empty() && !keyed {
            if self.environment.is_production() {
                return Err(invalid(
                    "SECRET_KEY",
                    "must be set with HASH_ATTRIBUTES in production (a plain hash of an e-mail or a user id is reversed by a dictionary)",
                ));
            }
            tracing::warn!("HASH_ATTRIBUTES without SECRET_KEY: values are plain SHA-256, which a dictionary reverses");
        }
        if keyed && self.secret_key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(invalid("SECRET_KEY", "must be at least 16 bytes"));
        }
        Ok(())
    }
}

/// `observatory-consumer timescale`.
#[derive(Debug, Clone, Args)]
pub struct TimescaleArgs {
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// PostgreSQL.
    #[command(flatten)]
    pub db: DbArgs,
    /// Spans per COPY batch (one transaction).
    #[arg(long, env = "COPY_BATCH_SIZE", default_value_t = 10_000)]
    pub copy_batch_size: usize,
    /// Longest wait before a partial batch is written.
    #[arg(long, env = "COPY_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub copy_flush_interval: Duration,
    /// Connections a batch is written over at once (one transaction each).
    #[arg(long, env = "DB_WRITE_CONNECTIONS", default_value_t = 2)]
    pub db_write_connections: usize,
    /// Most PostgreSQL connections the sink holds: its write connections, one for partition maintenance and one for each of the scores, metrics and logs loops it runs (unset: DB_WRITE_CONNECTIONS + those).
    #[arg(long, env = "DB_POOL_MAX_SIZE")]
    pub db_pool_max_size: Option<usize>,
    /// Write connections opened at start and kept open (the others open on first use).
    #[arg(long, env = "DB_POOL_MIN_SIZE", default_value_t = 0)]
    pub db_pool_min_size: usize,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "CONSUMER_ADMIN_ADDR", default_value = "0.0.0.0:8889")]
    pub admin_addr: SocketAddr,
    /// Days of spans and LLM calls kept.
    #[arg(long, env = "RETENTION_TRACES_DAYS", default_value_t = 30)]
    pub retention_traces_days: u32,
    /// Days of rollups kept.
    #[arg(long, env = "RETENTION_METRICS_DAYS", default_value_t = 400)]
    pub retention_metrics_days: u32,
    /// Spans that started longer ago are not stored (counted as expired; default and most: RETENTION_TRACES_DAYS).
    #[arg(long, env = "ACCEPT_SPANS_MAX_AGE", value_parser = humantime::parse_duration)]
    pub accept_spans_max_age: Option<Duration>,
    /// A message with a span starting further ahead of now goes to the dead-letter topic (a client's clock is wrong).
    #[arg(long, env = "ACCEPT_SPANS_MAX_FUTURE", default_value = "1d", value_parser = humantime::parse_duration)]
    pub accept_spans_max_future: Duration,
    /// Content policy.
    #[command(flatten)]
    pub content: ContentArgs,
    /// A JSON price file that adds to or overrides the built-in model prices.
    #[arg(long, env = "PRICING_FILE")]
    pub pricing_file: Option<PathBuf>,
    /// Apply the migrations at start-up.
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// The scores topic, read beside the spans in consumer group observatory-scores ("" to not read it here).
    #[arg(long, env = "KAFKA_SCORES_TOPIC", default_value = kafka::SCORES_TOPIC)]
    pub kafka_scores_topic: String,
    /// The signals this process consumes, comma-separated: traces (with the scores topic), metrics, logs; each in its own consumer group (KAFKA_GROUP_ID, KAFKA_GROUP_ID-metrics, KAFKA_GROUP_ID-logs), so each can run in its own deployment.
    #[arg(long, env = "SIGNALS", default_value = "traces,metrics,logs")]
    pub signals: String,
    /// The metrics topic.
    #[arg(long, env = "KAFKA_METRICS_TOPIC", default_value = kafka::METRICS_TOPIC)]
    pub kafka_metrics_topic: String,
    /// The logs topic.
    #[arg(long, env = "KAFKA_LOGS_TOPIC", default_value = kafka::LOGS_TOPIC)]
    pub kafka_logs_topic: String,
    /// Most series one metric may have per tenant; points of further new series are not stored (counted as cardinality_limit).
    #[arg(long, env = "METRICS_MAX_SERIES", default_value_t = 10_000)]
    pub metrics_max_series: u32,
    /// Longest body of a log record stored, bytes of JSON (longer ones are cut and counted as body_truncated; GenAI content bodies follow CONTENT_MAX_BYTES).
    #[arg(long, env = "LOG_BODY_MAX_BYTES", default_value_t = 64 * 1024)]
    pub log_body_max_bytes: usize,
}

/// The signals one sink process consumes (`SIGNALS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// Spans (and the scores topic).
    pub traces: bool,
    /// Metric points.
    pub metrics: bool,
    /// Log records.
    pub logs: bool,
}

impl Signals {
    /// Parses `traces,metrics,logs` (any non-empty subset).
    pub fn parse(text: &str) -> Result<Signals, ConfigError> {
        let mut out = Signals {
            traces: false,
            metrics: false,
            logs: false,
        };
        for name in parse_list(text) {
            match name.as_str() {
                "traces" => out.traces = true,
                "metrics" => out.metrics = true,
                "logs" => out.logs = true,
                other => {
                    return Err(invalid(
                        "SIGNALS",
                        format!("unknown signal {other:?} (traces, metrics, logs)"),
                    ))
                }
            }
        }
        if !(out.traces || out.metrics || out.logs) {
            return Err(invalid(
                "SIGNALS",
                "names no signal (traces, metrics, logs)",
            ));
        }
        Ok(out)
    }
}

impl TimescaleArgs {
    /// Whether this process runs the scores loop too.
    pub fn reads_scores(&self) -> bool {
        !self.kafka_scores_topic.is_empty() && self.signals().is_ok_and(|s| s.traces)
    }

    /// The signals consumed.
    pub fn signals(&self) -> Result<Signals, ConfigError> {
        Signals::parse(&self.signals)
    }

    /// Write connections: `DB_WRITE_CONNECTIONS`, within `DB_POOL_MAX_SIZE`
    /// less the maintenance connection.
    /// The scores loop, when it runs, holds one more.
    pub fn write_connections(&self) -> Result<usize, ConfigError> {
        let wanted = self.db_write_connections.max(1);
        let signals = self.signals()?;
        let others = 1
            + usize::from(self.reads_scores())
            + usize::from(signals.metrics)
            + usize::from(signals.logs);
        match self.db_pool_max_size {
            None => Ok(wanted),
            Some(max) if max > others => Ok(wanted.min(max - others)),
            Some(_) => Err(invalid(
                "DB_POOL_MAX_SIZE",
                format!(
                    "must be at least {} (a write connection, the maintenance one{})",
                    others + 1,
                    if others > 1 {
                        " and one per scores, metrics or logs loop"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }

    /// How long spans are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(86_400 * u64::from(self.retention_traces_days))
    }

    /// The oldest a span may be to be stored: `ACCEPT_SPANS_MAX_AGE`, never
    /// more than the retention (retention would drop it within the hour, and
    /// storing it again later would count its call in the longer-kept
    /// rollups twice).
    pub fn max_span_age(&self) -> Duration {
        self.accept_spans_max_age
            .map_or(self.retention(), |age| age.min(self.retention()))
    }
}

/// `observatory-consumer tempo`.
#[derive(Debug, Clone, Args)]
pub struct TempoArgs {
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Where blocks go: s3://bucket[/prefix], gs://bucket[/prefix],
    /// az://container[/prefix], file:///path or a path (default: <DATA_DIR>/blocks).
    #[arg(long, env = "OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// The data folder (holds the local block folder by default).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// S3: virtual-hosted-style requests instead of path-style ones.
    #[arg(long, env = "S3_VIRTUAL_HOSTED_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_virtual_hosted_style: bool,
    /// A block is cut when its parquet would pass this size (estimated).
    #[arg(long, env = "TEMPO_BLOCK_MAX_BYTES", default_value_t = 100 << 20)]
    pub tempo_block_max_bytes: usize,
    /// ... or when its oldest message has waited this long.
    #[arg(long, env = "TEMPO_BLOCK_MAX_AGE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub tempo_block_max_age: Duration,
    /// Memory bound: blocks are cut when the OTLP held reaches this many
    /// bytes, even before TEMPO_BLOCK_MAX_BYTES.
    #[arg(long, env = "TEMPO_MAX_BUFFER_BYTES", default_value_t = 256 << 20)]
    pub tempo_max_buffer_bytes: usize,
    /// Longest a cut (building and uploading its blocks) may take before it
    /// is abandoned and retried.
    #[arg(long, env = "TEMPO_WRITE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub tempo_write_timeout: Duration,
    /// Parquet row groups are cut at this many bytes of column data.
    #[arg(long, env = "TEMPO_ROW_GROUP_BYTES", default_value_t = observatory_schemas::tempo::write::DEFAULT_ROW_GROUP_BYTES)]
    pub tempo_row_group_bytes: usize,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "CONSUMER_ADMIN_ADDR", default_value = "0.0.0.0:8890")]
    pub admin_addr: SocketAddr,
    /// Content policy (the same as the PostgreSQL sink's).
    #[command(flatten)]
    pub content: ContentArgs,
}

impl TempoArgs {
    /// The object store URL, the default filled in.
    pub fn store_url(&self) -> String {
        store_url(self.object_store_url.as_deref(), &self.data_dir)
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tempo_block_max_bytes < 1 << 20 {
            return Err(invalid("TEMPO_BLOCK_MAX_BYTES", "must be at least 1 MiB"));
        }
        if self.tempo_max_buffer_bytes < 1 << 20 {
            return Err(invalid("TEMPO_MAX_BUFFER_BYTES", "must be at least 1 MiB"));
        }
        if self.tempo_block_max_age.is_zero() {
            return Err(invalid("TEMPO_BLOCK_MAX_AGE", "must be positive"));
        }
        Ok(())
    }
}

/// `OBJECT_STORE_URL`, or the block folder under `DATA_DIR` when it is unset
/// or blank.
fn store_url(url: Option<&str>, data_dir: &std::path::Path) -> String {
    url.filter(|u| !u.trim().is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| data_dir.join("blocks").display().to_string())
}

/// The compactor's default row group size (`TEMPO_ROW_GROUP_BYTES`).
pub const COMPACTED_ROW_GROUP_BYTES: usize = 16 << 20;

/// `observatory-consumer compact`.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// The bucket the Tempo sink writes: s3://bucket[/prefix], gs://...,
    /// az://..., file:///path or a path (default: <DATA_DIR>/blocks).
    #[arg(long, env = "OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// The data folder (holds the local block folder by default).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// S3: virtual-hosted-style requests instead of path-style ones.
    #[arg(long, env = "S3_VIRTUAL_HOSTED_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_virtual_hosted_style: bool,
    /// Output blocks are cut at this size of `data.parquet`.
    #[arg(long, env = "TEMPO_COMPACTED_BLOCK_BYTES", default_value_t = 1 << 30)]
    pub tempo_compacted_block_bytes: u64,
    /// Parquet row groups of output blocks are cut at this many bytes of
    /// column data (bounds the compactor's memory). Smaller than the sink's
    /// 64 MiB: a trace lookup reads about a row group's worth of pages, and
    /// 16 MiB keeps it under 2 MB (BENCHMARKS.md).
    #[arg(long, env = "TEMPO_ROW_GROUP_BYTES", default_value_t = COMPACTED_ROW_GROUP_BYTES)]
    pub tempo_row_group_bytes: usize,
    /// Most bytes of a data or dictionary page of output blocks: a trace
    /// lookup reads about one of each per column of the row group holding
    /// the trace.
    #[arg(long, env = "TEMPO_COMPACTED_PAGE_BYTES", default_value_t = observatory_schemas::tempo::write::PAGE_BYTES)]
    pub tempo_compacted_page_bytes: usize,
    /// Blocks are compacted with the blocks whose newest span ends in the
    /// same window of this length (Tempo's `compaction_window`).
    #[arg(long, env = "TEMPO_COMPACTION_WINDOW", default_value = "1h", value_parser = humantime::parse_duration)]
    pub tempo_compaction_window: Duration,
    /// Most blocks merged by one job.
    #[arg(long, env = "TEMPO_COMPACTION_MAX_INPUTS", default_value_t = 32)]
    pub tempo_compaction_max_inputs: usize,
    /// Blocks of one level merged at once in a window still being written
    /// (a window that has ended merges any two).
    #[arg(long, env = "TEMPO_COMPACTION_MIN_INPUTS", default_value_t = 4)]
    pub tempo_compaction_min_inputs: usize,
    /// Blocks marked compacted (or expired) are deleted this long after.
    #[arg(long, env = "TEMPO_COMPACTED_BLOCK_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub tempo_compacted_block_retention: Duration,
    /// A folder left without `meta.json` (a writer that died) is deleted
    /// when its newest object is this old.
    #[arg(long, env = "TEMPO_INCOMPLETE_BLOCK_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub tempo_incomplete_block_retention: Duration,
    /// An output block claimed by another compactor and still incomplete
    /// after this long is taken to be abandoned.
    #[arg(long, env = "TEMPO_COMPACTION_CLAIM_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    pub tempo_compaction_claim_timeout: Duration,
    /// Time between compaction cycles.
    #[arg(long, env = "TEMPO_COMPACTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub tempo_compaction_interval: Duration,
    /// Days of traces kept in blocks: a block whose newest span ended
    /// longer ago is deleted.
    #[arg(long, env = "RETENTION_TRACES_DAYS", default_value_t = 30)]
    pub retention_traces_days: u32,
    /// Per-tenant overrides of RETENTION_TRACES_DAYS: `tenant=days,...`.
    #[arg(long, env = "RETENTION_TRACES_TENANT_DAYS", default_value = "")]
    pub retention_traces_tenant_days: String,
    /// How many compactors share the bucket (a StatefulSet's replicas).
    #[arg(long, env = "COMPACTOR_REPLICAS", default_value_t = 1)]
    pub compactor_replicas: u32,
    /// This compactor's index among them (default: the number ending the
    /// host name, as a StatefulSet names its pods; else 0).
    #[arg(long, env = "COMPACTOR_REPLICA")]
    pub compactor_replica: Option<u32>,
    /// Run cycles until there is nothing left to do, then exit.
    #[arg(long, env = "COMPACTOR_ONCE", default_value_t = false, action = clap::ArgAction::Set)]
    pub once: bool,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "CONSUMER_ADMIN_ADDR", default_value = "0.0.0.0:8891")]
    pub admin_addr: SocketAddr,
}

impl CompactArgs {
    /// The object store URL, the default filled in.
    pub fn store_url(&self) -> String {
        store_url(self.object_store_url.as_deref(), &self.data_dir)
    }

    /// This replica's index.
    pub fn replica(&self) -> u32 {
        self.compactor_replica.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_default();
            host.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
    }

    /// The retention of each tenant named in RETENTION_TRACES_TENANT_DAYS.
    pub fn tenant_retention(&self) -> Result<Vec<(String, u32)>, ConfigError> {
        let mut out = Vec::new();
        for item in self.retention_traces_tenant_days.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let parsed = item
                .split_once('=')
                .and_then(|(t, d)| Some((t.trim(), d.trim().parse::<u32>().ok()?)))
                .filter(|(t, d)| !t.is_empty() && *d > 0);
            match parsed {
                Some((t, d)) => out.push((t.to_owned(), d)),
                None => {
                    return Err(invalid(
                        "RETENTION_TRACES_TENANT_DAYS",
                        format!("{item:?} is not tenant=days (days at least 1)"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tempo_compacted_block_bytes < 1 << 20 {
            return Err(invalid(
                "TEMPO_COMPACTED_BLOCK_BYTES",
                "must be at least 1 MiB",
            ));
        }
        if self.tempo_compaction_window.is_zero() {
            return Err(invalid("TEMPO_COMPACTION_WINDOW", "must be positive"));
        }
        if self.tempo_compaction_max_inputs < 2 {
            return Err(invalid("TEMPO_COMPACTION_MAX_INPUTS", "must be at least 2"));
        }
        if !(2..=self.tempo_compaction_max_inputs).contains(&self.tempo_compaction_min_inputs) {
            return Err(invalid(
                "TEMPO_COMPACTION_MIN_INPUTS",
                "must be at least 2 and at most TEMPO_COMPACTION_MAX_INPUTS",
            ));
        }
        if self.retention_traces_days == 0 {
            return Err(invalid("RETENTION_TRACES_DAYS", "must be at least 1"));
        }
        if self.compactor_replicas == 0 {
            return Err(invalid("COMPACTOR_REPLICAS", "must be at least 1"));
        }
        if self.replica() >= self.compactor_replicas {
            return Err(invalid(
                "COMPACTOR_REPLICA",
                format!(
                    "{} is not below COMPACTOR_REPLICAS ({})",
                    self.replica(),
                    self.compactor_replicas
                ),
            ));
        }
        self.tenant_retention()?;
        Ok(())
    }
}

/// Checked Kafka settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic read.
    pub topic: String,
    /// Group id.
    pub group_id: String,
    /// earliest or latest.
    pub auto_offset_reset: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Partitions of a created dead-letter topic.
    pub dlq_partitions: i32,
    /// Replication of a created dead-letter topic.
    pub replication_factor: i32,
    /// max.poll.interval.ms.
    pub max_poll_interval: Duration,
    /// The largest record of the topic read (`KAFKA_MESSAGE_MAX_BYTES` plus
    /// the batch overhead), which the dead-letter topic must take.
    pub message_max_bytes: usize,
    /// How long one dead letter may be retried.
    pub dlq_timeout: Duration,
    /// Extra librdkafka settings.
    pub extra: Vec<(String, String)>,
}

/// Settings the consumer's acknowledgement flow rests on.
const PROTECTED_CONSUMER_SETTINGS: [&str; 3] =
    ["enable.auto.commit", "enable.auto.offset.store", "group.id"];

impl KafkaArgs {
    /// Checks the settings; `sink` names the default group.
    pub fn into_config(self, sink: &str) -> Result<KafkaConfig, ConfigError> {
        if self.kafka_brokers.trim().is_empty() {
            return Err(invalid("KAFKA_BROKERS", "must name at least one broker"));
        }
        if !matches!(self.kafka_auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(invalid(
                "KAFKA_AUTO_OFFSET_RESET",
                "must be earliest or latest",
            ));
        }
        let extra = parse_pairs(&self.kafka_consumer_config)
            .map_err(|r| invalid("KAFKA_CONSUMER_CONFIG", r))?;
        if let Some((k, _)) = extra
            .iter()
            .find(|(k, _)| PROTECTED_CONSUMER_SETTINGS.contains(&k.as_str()))
        {
            return Err(invalid(
                "KAFKA_CONSUMER_CONFIG",
                format!("{k} is fixed by the consumer's acknowledgement flow"),
            ));
        }
        if self.kafka_message_max_bytes < 1024 {
            return Err(invalid("KAFKA_MESSAGE_MAX_BYTES", "must be at least 1024"));
        }
        if self.kafka_dlq_timeout.is_zero() {
            return Err(invalid("KAFKA_DLQ_TIMEOUT", "must be more than 0"));
        }
        let dlq_topic = self
            .kafka_dlq_topic
            .unwrap_or_else(|| kafka::dlq_topic(&self.kafka_traces_topic));
        Ok(KafkaConfig {
            brokers: self.kafka_brokers,
            topic: self.kafka_traces_topic,
            group_id: self
                .kafka_group_id
                .unwrap_or_else(|| format!("observatory-{sink}")),
            auto_offset_reset: self.kafka_auto_offset_reset,
            dlq_topic,
            dlq_partitions: self.kafka_dlq_partitions,
            replication_factor: self.kafka_replication_factor,
            max_poll_interval: self.kafka_max_poll_interval,
            message_max_bytes: self.kafka_message_max_bytes,
            dlq_timeout: self.kafka_dlq_timeout,
            extra,
        })
    }
}

impl DbArgs {
    /// Checks the settings and reads the root certificates.
    pub fn check(&self) -> Result<Db, ConfigError> {
        let mut config = self
            .database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| invalid("DATABASE_URL", e.to_string()))?;
        if let Some(password) = &self.db_password {
            config.password(password);
        }
        let pem = match &self.db_ssl_root_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| invalid("DB_SSL_ROOT_CERT", format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let tls = postgres_tls::configure(&mut config, self.db_ssl_mode, pem.as_deref())
            .map_err(|e| invalid("DB_SSL_MODE", e.to_string()))?;
        Ok(Db { config, tls })
    }
}

use observatory_plumbing::settings::invalid;
pub use observatory_plumbing::settings::{parse_list, ConfigError};
pub use observatory_schemas::settings::parse_pairs;

#[cfg(test)]
mod tests {
    use super::*;

    fn timescale(args: &[&str]) -> TimescaleArgs {
        let mut argv = vec!["observatory-consumer", "timescale"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Timescale(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let args = timescale(&[]);
        assert_eq!(args.copy_batch_size, 10_000);
        assert_eq!(args.copy_flush_interval, Duration::from_secs(1));
        assert_eq!(args.admin_addr.port(), 8889);
        assert!(!args.content.capture_content);
        args.db.check().unwrap();
        let kafka = args.kafka.into_config("timescale").unwrap();
        assert_eq!(kafka.group_id, "observatory-timescale");
        assert_eq!(kafka.topic, "otlp_spans");
        assert_eq!(kafka.dlq_topic, "otlp_spans.dlq");
        assert_eq!(kafka.auto_offset_reset, "earliest");
    }

    #[test]
    fn tempo_defaults() {
        let args = match Cli::try_parse_from(["observatory-consumer", "tempo"])
            .expect("flags parse")
            .command
        {
            Command::Tempo(a) => *a,
            _ => unreachable!(),
        };
        args.check().unwrap();
        assert_eq!(args.admin_addr.port(), 8890);
        assert_eq!(args.tempo_block_max_age, Duration::from_secs(60));
        assert_eq!(args.tempo_block_max_bytes, 100 << 20);
        assert_eq!(args.store_url(), "./data/blocks");
        let kafka = args.kafka.into_config("tempo").unwrap();
        assert_eq!(kafka.group_id, "observatory-tempo");
    }

    #[test]
    fn replay_and_dlq_parse() {
        let cli = Cli::try_parse_from([
            "observatory-consumer",
            "replay",
            "--sink",
            "timescale",
            "--from",
            "2026-01-01T00:00:00Z",
            "--partitions",
            "0,3",
            "--",
            "--copy-batch-size",
            "500",
        ])
        .expect("flags parse");
        let Command::Replay(args) = cli.command else {
            unreachable!()
        };
        assert_eq!(args.sink, SinkName::Timescale);
        assert_eq!(args.to, None);
        assert_eq!(args.progress_interval, Duration::from_secs(5));
        assert_eq!(args.sink_args, ["--copy-batch-size", "500"]);
        let cli = Cli::try_parse_from(["observatory-consumer", "dlq", "replay", "--sink", "tempo"])
            .expect("flags parse");
        let Command::Dlq(args) = cli.command else {
            unreachable!()
        };
        assert!(matches!(args.action, DlqAction::Replay(ref r) if r.sink == SinkName::Tempo));
        assert!(Cli::try_parse_from(["observatory-consumer", "dlq", "list"]).is_ok());
    }

    #[test]
    fn bad_values_name_their_setting() {
        let err = timescale(&["--kafka-auto-offset-reset", "middle"])
            .kafka
            .into_config("t")
            .unwrap_err();
        assert_eq!(err.setting, "KAFKA_AUTO_OFFSET_RESET");
        let err = timescale(&["--kafka-consumer-config", "enable.auto.commit=true"])
            .kafka
            .into_config("t")
            .unwrap_err();
        assert_eq!(err.setting, "KAFKA_CONSUMER_CONFIG");
        let err = timescale(&["--db-ssl-root-cert", "/no/such/ca.pem"])
            .db
            .check()
            .unwrap_err();
        assert_eq!(err.setting, "DB_SSL_ROOT_CERT");
        assert!(Cli::try_parse_from(["c", "timescale", "--db-ssl-mode", "allow"]).is_err());
        let err = timescale(&["--database-url", "not a url at all ::"])
            .db
            .check()
            .unwrap_err();
        assert_eq!(err.setting, "DATABASE_URL");
    }

    #[test]
    fn db_password_overrides_the_urls() {
        let url = ["--database-url", "postgres://app:old@db:5432/obs"];
        let db = timescale(&url).db.check().unwrap();
        assert_eq!(db.config.get_password(), Some(&b"old"[..]));
        let with = [&url[..], &["--db-password", "n:e@w/+"]].concat();
        let db = timescale(&with).db.check().unwrap();
        assert_eq!(db.config.get_password(), Some(&b"n:e@w/+"[..]));
        assert_eq!(db.config.get_user(), Some("app"));
    }
}
