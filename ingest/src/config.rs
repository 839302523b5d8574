//! Configuration: one clap [`Args`] with an environment variable on every
//! flag, turned by [`Args::into_config`] into a checked [`Config`].
//!
//! A bad value stops start-up with a message that names the setting. Secrets
//! (the ingest API keys) are never printed: [`Config`]'s `Debug` hides them.

use clap::Parser;
use observatory_schemas::environment::Environment;
use observatory_schemas::kafka;
use observatory_schemas::settings::parse_pairs;
use observatory_schemas::tenant;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// `observatory-collector`: OTLP over gRPC and HTTP into Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "observatory-collector", version, about)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Topic that receives traces.
    #[arg(long, env = "KAFKA_TRACES_TOPIC", default_value = kafka::TRACES_TOPIC)]
    pub kafka_traces_topic: String,

    /// Topic that receives metrics.
    #[arg(long, env = "KAFKA_METRICS_TOPIC", default_value = kafka::METRICS_TOPIC)]
    pub kafka_metrics_topic: String,

    /// Topic that receives logs.
    #[arg(long, env = "KAFKA_LOGS_TOPIC", default_value = kafka::LOGS_TOPIC)]
    pub kafka_logs_topic: String,

    /// Partitions of each topic the collector creates (existing topics are left as they are).
    #[arg(long, env = "KAFKA_TRACES_PARTITIONS", default_value_t = 16)]
    pub kafka_traces_partitions: i32,

    /// Replication factor of each topic the collector creates.
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub kafka_replication_factor: i32,

    /// Largest Kafka message the collector produces, in bytes (value, key and headers); larger traces are split.
    #[arg(long, env = "KAFKA_MESSAGE_MAX_BYTES", default_value_t = 1_000_000)]
    pub kafka_message_max_bytes: usize,

    /// Compression of produced batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "lz4")]
    pub kafka_compression: String,

    /// How long the producer waits to fill a batch (librdkafka linger.ms).
    #[arg(long, env = "KAFKA_LINGER", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub kafka_linger: Duration,

    /// How long librdkafka keeps retrying a message before it reports it failed (message.timeout.ms).
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub kafka_message_timeout: Duration,

    /// Extra librdkafka producer settings, comma-separated key=value (for TLS and SASL, say).
    #[arg(
        long,
        env = "KAFKA_PRODUCER_CONFIG",
        default_value = "",
        hide_env_values = true
    )]
    pub kafka_producer_config: String,

    /// Address of the OTLP/gRPC receiver.
    #[arg(long, env = "COLLECTOR_GRPC_ADDR", default_value = "0.0.0.0:4317")]
    pub grpc_addr: SocketAddr,

    /// Address of the OTLP/HTTP receiver.
    #[arg(long, env = "COLLECTOR_HTTP_ADDR", default_value = "0.0.0.0:4318")]
    pub http_addr: SocketAddr,

    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "COLLECTOR_ADMIN_ADDR", default_value = "0.0.0.0:8888")]
    pub admin_addr: SocketAddr,

    /// Bytes of decoded requests held until Kafka acknowledges them; past it requests get UNAVAILABLE / 503.
    #[arg(long, env = "COLLECTOR_MAX_INFLIGHT_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Largest request body, after decompression, in bytes; larger ones get 413 / INVALID_ARGUMENT.
    #[arg(long, env = "COLLECTOR_MAX_REQUEST_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Requests handled at once per transport; more are refused with UNAVAILABLE / 503 at once.
    #[arg(long, env = "COLLECTOR_MAX_CONCURRENT_REQUESTS", default_value_t = 64)]
    pub max_concurrent_requests: usize,

    /// How long a request waits for Kafka's acknowledgement before it is answered UNAVAILABLE / 503.
    #[arg(long, env = "COLLECTOR_PRODUCE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub produce_timeout: Duration,

    /// Most messages the producer puts in one batch to a partition (librdkafka batch.num.messages).
    #[arg(long, env = "COLLECTOR_BATCH_SIZE", default_value_t = 10_000)]
    pub batch_size: usize,

    /// Worker threads that decode, split and produce requests (0: one per CPU core).
    #[arg(long, env = "COLLECTOR_NUM_WORKERS", default_value_t = 0)]
    pub num_workers: usize,

    /// Ingest API keys, comma-separated key=tenant; when set, a request needs a valid key.
    #[arg(
        long,
        env = "INGEST_API_KEYS",
        default_value = "",
        hide_env_values = true
    )]
    pub ingest_api_keys: String,

    /// Accept requests without API keys (any client names its tenant) even with ENVIRONMENT=production.
    #[arg(long, env = "INGEST_ALLOW_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set)]
    pub ingest_allow_anonymous: bool,

    /// Spans (data points, log records) per second each tenant may send to this replica; 0: no quota.
    #[arg(long, env = "INGEST_TENANT_SPANS_PER_SECOND", default_value_t = 0.0)]
    pub ingest_tenant_spans_per_second: f64,

    /// Per-tenant quotas that replace the default, comma-separated tenant=per-second.
    #[arg(long, env = "INGEST_TENANT_QUOTAS", default_value = "")]
    pub ingest_tenant_quotas: String,

    /// Seconds of its quota a tenant may send at once (the burst).
    #[arg(long, env = "INGEST_QUOTA_BURST_SECONDS", default_value_t = 2.0)]
    pub ingest_quota_burst_seconds: f64,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Seconds the `Retry-After` header asks a refused client to wait.
    #[arg(long, env = "COLLECTOR_RETRY_AFTER_SECONDS", default_value_t = 1)]
    pub retry_after_seconds: u32,

    /// Longest a request body may take to arrive (gRPC and HTTP); a slower one is cut off with UNAVAILABLE / 503.
    #[arg(long, env = "COLLECTOR_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// development or production: production warns about settings that can lose acknowledged data.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: Environment,
}

pub use observatory_plumbing::logging::LogFormat;
use observatory_plumbing::settings::invalid;
pub use observatory_plumbing::settings::ConfigError;

/// The collector's checked configuration.
#[derive(Clone)]
pub struct Config {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// OTLP/gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    pub http_addr: SocketAddr,
    /// Admin listen address.
    pub admin_addr: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Worker threads (at least 1).
    pub num_workers: usize,
    /// API key → tenant; empty means no authentication.
    pub api_keys: HashMap<String, String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Where it runs.
    pub environment: Environment,
    /// Per-tenant ingest quotas.
    pub quotas: crate::quota::QuotaConfig,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("kafka", &self.kafka)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .field("limits", &self.limits)
            .field("num_workers", &self.num_workers)
            .field("api_keys", &format_args!("<{} keys>", self.api_keys.len()))
            .field("log_format", &self.log_format)
            .field("environment", &self.environment)
            .field("quotas", &self.quotas)
            .finish()
    }
}

/// What the producer needs.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topics by signal: traces, metrics, logs.
    pub topics: [String; 3],
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication of created topics.
    pub replication_factor: i32,
    /// Largest message, in bytes.
    pub message_max_bytes: usize,
    /// compression.type.
    pub compression: String,
    /// linger.ms.
    pub linger: Duration,
    /// message.timeout.ms.
    pub message_timeout: Duration,
    /// batch.num.messages.
    pub batch_size: usize,
    /// Extra librdkafka settings.
    pub extra: Vec<(String, String)>,
}

/// librdkafka settings whose values are secrets: never printed.
const SECRET_SETTING_WORDS: [&str; 6] = [
    "password",
    "secret",
    "jaas",
    "token",
    "ssl.key",
    "credentials",
];

/// `KAFKA_PRODUCER_CONFIG` for logs: secret values (SASL passwords, key
/// material, OAuth secrets) replaced by `<redacted>`.
struct Redacted<'a>(&'a [(String, String)]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let secret = SECRET_SETTING_WORDS.iter().any(|w| k.contains(w));
                (k, if secret { "<redacted>" } else { v.as_str() })
            }))
            .finish()
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("compression", &self.compression)
            .field("linger", &self.linger)
            .field("message_timeout", &self.message_timeout)
            .field("batch_size", &self.batch_size)
            .field("extra", &Redacted(&self.extra))
            .finish()
    }
}

impl KafkaConfig {
    /// The topic of a signal.
    pub fn topic(&self, signal: kafka::Signal) -> &str {
        match signal {
            kafka::Signal::Traces => &self.topics[0],
            kafka::Signal::Metrics => &self.topics[1],
            kafka::Signal::Logs => &self.topics[2],
        }
    }
}

/// Bounds on what one request and all requests together may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// In-flight budget, bytes.
    pub max_inflight_bytes: usize,
    /// Largest decompressed request, bytes.
    pub max_request_bytes: usize,
    /// Concurrent requests per transport.
    pub max_concurrent_requests: usize,
    /// Wait for Kafka's acknowledgement at most this long.
    pub produce_timeout: Duration,
    /// `Retry-After` seconds.
    pub retry_after_seconds: u32,
    /// Longest a body may take to arrive.
    pub body_timeout: Duration,
}

/// librdkafka settings the delivery guarantee rests on: acknowledgement by
/// all in-sync replicas, the idempotent producer, and murmur2 partitioning.
const PROTECTED_PRODUCER_SETTINGS: [&str; 5] = [
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "partitioner",
    "message.max.bytes",
];

/// The smallest message limit that leaves room for a span with a useful payload.
const MIN_MESSAGE_MAX_BYTES: usize = 16 * 1024;

impl Args {
    /// Checks every setting and builds the configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.kafka_brokers.trim().is_empty() {
            return Err(invalid("KAFKA_BROKERS", "must name at least one broker"));
        }
        for (setting, topic) in [
            ("KAFKA_TRACES_TOPIC", &self.kafka_traces_topic),
            ("KAFKA_METRICS_TOPIC", &self.kafka_metrics_topic),
            ("KAFKA_LOGS_TOPIC", &self.kafka_logs_topic),
        ] {
            validate_topic(topic).map_err(|reason| invalid(setting, reason))?;
        }
        if !(1..=10_000).contains(&self.kafka_traces_partitions) {
            return Err(invalid(
                "KAFKA_TRACES_PARTITIONS",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=32).contains(&self.kafka_replication_factor) {
            return Err(invalid(
                "KAFKA_REPLICATION_FACTOR",
                "must be between 1 and 32",
            ));
        }
        if !(MIN_MESSAGE_MAX_BYTES..=1_000_000_000).contains(&self.kafka_message_max_bytes) {
            return Err(invalid(
                "KAFKA_MESSAGE_MAX_BYTES",
                format!("must be between {MIN_MESSAGE_MAX_BYTES} and 1000000000"),
            ));
        }
        if !matches!(
            self.kafka_compression.as_str(),
            "none" | "gzip" | "snappy" | "lz4" | "zstd"
        ) {
            return Err(invalid(
                "KAFKA_COMPRESSION",
                "must be none, gzip, snappy, lz4 or zstd",
            ));
        }
        let extra = parse_pairs(&self.kafka_producer_config)
            .map_err(|reason| invalid("KAFKA_PRODUCER_CONFIG", reason))?;
        if let Some((key, _)) = extra
            .iter()
            .find(|(k, _)| PROTECTED_PRODUCER_SETTINGS.contains(&k.as_str()))
        {
            return Err(invalid(
                "KAFKA_PRODUCER_CONFIG",
                format!(
                    "{key} is fixed by the collector's delivery guarantee and cannot be overridden"
                ),
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid(
                "COLLECTOR_MAX_REQUEST_BYTES",
                "must be at least 1024",
            ));
        }
        if self.max_inflight_bytes < self.max_request_bytes {
            return Err(invalid(
                "COLLECTOR_MAX_INFLIGHT_BYTES",
                "must be at least COLLECTOR_MAX_REQUEST_BYTES, or no large request could ever pass",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(invalid(
                "COLLECTOR_MAX_CONCURRENT_REQUESTS",
                "must be at least 1",
            ));
        }
        if self.body_timeout.is_zero() {
            return Err(invalid("COLLECTOR_BODY_TIMEOUT", "must be more than zero"));
        }
        if self.produce_timeout.is_zero() {
            return Err(invalid(
                "COLLECTOR_PRODUCE_TIMEOUT",
                "must be more than zero",
            ));
        }
        if !(1..=1_000_000).contains(&self.batch_size) {
            return Err(invalid(
                "COLLECTOR_BATCH_SIZE",
                "must be between 1 and 1000000",
            ));
        }
        let log_format = LogFormat::parse(&self.log_format)?;
        let mut api_keys = HashMap::new();
        for (key, tenant_name) in parse_pairs(&self.ingest_api_keys)
            .map_err(|reason| invalid("INGEST_API_KEYS", reason))?
        {
            tenant::validate(&tenant_name)
                .map_err(|e| invalid("INGEST_API_KEYS", format!("tenant {tenant_name:?}: {e}")))?;
            api_keys.insert(key, tenant_name);
        }
        if api_keys.is_empty() && self.environment.is_production() && !self.ingest_allow_anonymous {
            return Err(invalid(
                "INGEST_API_KEYS",
                "must be set with ENVIRONMENT=production (without keys any client can write as any tenant); \
                 set INGEST_ALLOW_ANONYMOUS=true to accept that on purpose",
            ));
        }
        let rate = |setting: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(invalid(setting, "must be a number of 0 or more"))
            }
        };
        let mut per_tenant = HashMap::new();
        for (tenant_name, value) in parse_pairs(&self.ingest_tenant_quotas)
            .map_err(|reason| invalid("INGEST_TENANT_QUOTAS", reason))?
        {
            tenant::validate(&tenant_name).map_err(|e| {
                invalid(
                    "INGEST_TENANT_QUOTAS",
                    format!("tenant {tenant_name:?}: {e}"),
                )
            })?;
            let v: f64 = value.parse().map_err(|_| {
                invalid(
                    "INGEST_TENANT_QUOTAS",
                    format!("{tenant_name}={value}: not a number"),
                )
            })?;
            per_tenant.insert(tenant_name, rate("INGEST_TENANT_QUOTAS", v)?);
        }
        let quotas = crate::quota::QuotaConfig {
            default_per_second: rate(
                "INGEST_TENANT_SPANS_PER_SECOND",
                self.ingest_tenant_spans_per_second,
            )?,
            per_tenant,
            burst_seconds: rate(
                "INGEST_QUOTA_BURST_SECONDS",
                self.ingest_quota_burst_seconds,
            )?,
        };
        let num_workers = match self.num_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Config {
            kafka: KafkaConfig {
                brokers: self.kafka_brokers,
                topics: [
                    self.kafka_traces_topic,
                    self.kafka_metrics_topic,
                    self.kafka_logs_topic,
                ],
                partitions: self.kafka_traces_partitions,
                replication_factor: self.kafka_replication_factor,
                message_max_bytes: self.kafka_message_max_bytes,
                compression: self.kafka_compression,
                linger: self.kafka_linger,
                message_timeout: self.kafka_message_timeout,
                batch_size: self.batch_size,
                extra,
            },
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            admin_addr: self.admin_addr,
            limits: Limits {
                max_inflight_bytes: self.max_inflight_bytes,
                max_request_bytes: self.max_request_bytes,
                max_concurrent_requests: self.max_concurrent_requests,
                produce_timeout: self.produce_timeout,
                retry_after_seconds: self.retry_after_seconds,
                body_timeout: self.body_timeout,
            },
            num_workers,
            api_keys,
            log_format,
            environment: self.environment,
            quotas,
        })
    }
}

/// Kafka's own rule for topic names.
fn validate_topic(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{topic:?} is not a Kafka topic name (1 to 249 of [a-zA-Z0-9._-])"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["observatory-collector"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv)
            .expect("flags parse")
            .into_config()
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.kafka.topics[0], "otlp_spans");
        assert_eq!(config.kafka.partitions, 16);
        assert_eq!(config.kafka.message_max_bytes, 1_000_000);
        assert_eq!(config.grpc_addr.port(), 4317);
        assert_eq!(config.http_addr.port(), 4318);
        assert_eq!(config.admin_addr.port(), 8888);
        assert!(config.api_keys.is_empty());
        assert!(config.num_workers >= 1);
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let err = parse(&["--kafka-traces-partitions", "0"]).unwrap_err();
        assert_eq!(err.setting, "KAFKA_TRACES_PARTITIONS");
        let err = parse(&["--kafka-compression", "brotli"]).unwrap_err();
        assert_eq!(err.setting, "KAFKA_COMPRESSION");
        let err = parse(&["--ingest-api-keys", "k1"]).unwrap_err();
        assert_eq!(err.setting, "INGEST_API_KEYS");
        let err = parse(&["--kafka-traces-topic", "no spaces"]).unwrap_err();
        assert_eq!(err.setting, "KAFKA_TRACES_TOPIC");
        let err = parse(&["--kafka-producer-config", "security.protocol=ssl,acks=1"]).unwrap_err();
        assert_eq!(err.setting, "KAFKA_PRODUCER_CONFIG");
        let config = KafkaConfig {
            brokers: "b:9092".into(),
            topics: ["t".into(), "m".into(), "l".into()],
            partitions: 1,
            replication_factor: 1,
            message_max_bytes: 1 << 20,
            compression: "zstd".into(),
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(30),
            batch_size: 10_000,
            extra: vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.password".into(), "hunter2".into()),
                ("ssl.key.pem".into(), "-----BEGIN".into()),
            ],
        };
        let logged = format!("{config:?}");
        assert!(logged.contains("SASL_SSL"), "{logged}");
        assert!(
            !logged.contains("hunter2") && !logged.contains("BEGIN"),
            "{logged}"
        );
        assert!(err.reason.contains("acks"));
        assert!(parse(&["--kafka-producer-config", "security.protocol=ssl"]).is_ok());
    }

    #[test]
    fn api_keys_map_to_tenants_and_are_not_printed() {
        let config = parse(&["--ingest-api-keys", "s3cr3t=team-a, other=team-b"]).unwrap();
        assert_eq!(config.api_keys["s3cr3t"], "team-a");
        assert_eq!(config.api_keys["other"], "team-b");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
