//! Configuration of `observatory-api`: clap subcommands, an environment
//! variable on every flag, checked into the keys and settings the server
//! uses, with errors that name the setting.

use crate::auth::{AuthError, Keys, Role};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `observatory-api`: the query API.
#[derive(Debug, Parser)]
#[command(name = "observatory-api", version, about)]
pub struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings (for `serve`, the default).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Mint a token for an operator (HS256 with JWT_SECRET).
    Token(TokenArgs),
}

/// JWT settings.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret tokens are checked and minted with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Earlier HS256 secrets still accepted while their tokens expire, comma-separated.
    #[arg(long, env = "JWT_PREVIOUS_SECRETS", hide_env_values = true)]
    pub jwt_previous_secrets: Option<String>,
    /// PEM public key for RS256 or ES256 tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Algorithm of JWT_PUBLIC_KEY_FILE: RS256 or ES256.
    #[arg(long, env = "JWT_ALGORITHM", default_value = "RS256")]
    pub jwt_algorithm: String,
    /// A JWKS file of verification keys chosen by `kid`, read again when it changes.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Tokens must carry this issuer (`iss`).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Tokens must name this audience (`aud`).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on a token's expiry and not-before.
    #[arg(long, env = "JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
}

/// `observatory-api serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8080")]
    pub api_addr: SocketAddr,
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
    pub db_ssl_mode: observatory_schemas::postgres_tls::SslMode,
    /// PEM file of the CA certificates that verify-ca and verify-full trust (default: Mozilla's roots).
    #[arg(long, env = "DB_SSL_ROOT_CERT")]
    pub db_ssl_root_cert: Option<std::path::PathBuf>,
    /// Most PostgreSQL connections held.
    #[arg(long, env = "DB_POOL_MAX_SIZE", default_value_t = 16)]
    pub db_pool_max_size: usize,
    /// PostgreSQL connections opened at start and kept open (idle minimum).
    #[arg(long, env = "DB_POOL_MIN_SIZE", default_value_t = 0)]
    pub db_pool_min_size: usize,
    /// The longest one PostgreSQL statement may run (a hostile regular
    /// expression or a huge range is cancelled, not left to hold a connection).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,
    /// How long a trace search whose conditions need the spans (span name,
    /// attributes, full text) may scan before it answers with what it found
    /// (`partial`, and a cursor to go on).
    #[arg(long, env = "SEARCH_TIME_BUDGET", default_value = "400ms", value_parser = humantime::parse_duration)]
    pub search_time_budget: Duration,
    /// The services' metrics the pipeline page reads (`GET /api/v1/pipeline`,
    /// admin): `name=http://host:port/metrics,...`, e.g.
    /// `collector=http://collector:8888/metrics,timescale=http://sink:8889/metrics`.
    #[arg(long, env = "PIPELINE_METRICS", default_value = "", value_parser = parse_pipeline_metrics)]
    pub pipeline_metrics: PipelineTargets,
    /// Tenants whose admins may read the pipeline's health (comma-separated).
    /// It is the whole pipeline's, every tenant's traffic together, so in a
    /// shared deployment name only the operators' tenant.
    #[arg(
        long,
        env = "PIPELINE_TENANTS",
        default_value = "default",
        value_delimiter = ','
    )]
    pub pipeline_tenants: Vec<String>,
    /// The topic score writes are published to ("" turns score writes off: POST and DELETE answer 503).
    #[arg(long, env = "KAFKA_SCORES_TOPIC", default_value = "scores")]
    pub kafka_scores_topic: String,
    /// Partitions of the scores topic when the API creates it (keep it equal to KAFKA_TRACES_PARTITIONS).
    #[arg(long, env = "KAFKA_SCORES_PARTITIONS", default_value_t = 16)]
    pub kafka_scores_partitions: i32,
    /// Most spans one trace answer holds; a larger trace is cut (the answer says `truncated`).
    #[arg(long, env = "TRACE_MAX_SPANS", default_value_t = 10_000)]
    pub trace_max_spans: usize,
    /// Days of traces PostgreSQL keeps (the PostgreSQL sink's setting):
    /// trace searches read the Tempo blocks for what is older.
    #[arg(long, env = "RETENTION_TRACES_DAYS", default_value_t = 30)]
    pub retention_traces_days: u32,
    /// JWT.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Redis: cache and rate limit.
    #[command(flatten)]
    pub cache: crate::cache::CacheArgs,
    /// Object storage: the Tempo blocks.
    #[command(flatten)]
    pub blocks: crate::blocks::BlocksArgs,
    /// Audit log.
    #[command(flatten)]
    pub audit: AuditArgs,
}

impl ServeArgs {
    /// `RETENTION_TRACES_DAYS` as a duration (1 to 36 500 days).
    pub fn traces_retention(&self) -> Result<Duration, ConfigError> {
        if !(1..=36_500).contains(&self.retention_traces_days) {
            return Err(invalid("RETENTION_TRACES_DAYS", "1 to 36500 days"));
        }
        Ok(Duration::from_secs(
            u64::from(self.retention_traces_days) * 86_400,
        ))
    }
}

/// Where audit events go besides stdout.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Write the audit log (one JSON line per API request on stdout); false turns it off, Kafka too.
    #[arg(long, env = "AUDIT_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_log: bool,
    /// Kafka topic audit events are also produced to (acks=all); unset: stdout only.
    #[arg(long, env = "AUDIT_KAFKA_TOPIC")]
    pub audit_kafka_topic: Option<String>,
    /// Kafka bootstrap servers (the scores topic, and AUDIT_KAFKA_TOPIC).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Extra librdkafka producer settings of the scores and audit producers, comma-separated key=value (TLS, SASL).
    #[arg(
        long,
        env = "KAFKA_PRODUCER_CONFIG",
        default_value = "",
        hide_env_values = true
    )]
    pub kafka_producer_config: String,
}

impl AuditArgs {
    /// The extra producer settings, refusing those the acknowledgement
    /// relies on.
    pub fn producer_settings(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let extra = observatory_schemas::settings::parse_pairs(&self.kafka_producer_config)
            .map_err(|reason| invalid("KAFKA_PRODUCER_CONFIG", reason))?;
        if let Some((k, _)) = extra
            .iter()
            .find(|(k, _)| matches!(k.as_str(), "acks" | "enable.idempotence"))
        {
            return Err(invalid(
                "KAFKA_PRODUCER_CONFIG",
                format!("{k} is fixed (acks=all, idempotent)"),
            ));
        }
        Ok(extra)
    }

    /// The Kafka settings of the audit producer, when a topic is set.
    pub fn kafka(&self) -> Result<Option<crate::audit::AuditKafka>, ConfigError> {
        let Some(topic) = self
            .audit_kafka_topic
            .clone()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(None);
        };
        let extra = observatory_schemas::settings::parse_pairs(&self.kafka_producer_config)
            .map_err(|reason| invalid("KAFKA_PRODUCER_CONFIG", reason))?;
        if let Some((k, _)) = extra
            .iter()
            .find(|(k, _)| matches!(k.as_str(), "acks" | "enable.idempotence"))
        {
            return Err(invalid(
                "KAFKA_PRODUCER_CONFIG",
                format!("{k} is fixed for the audit log (acks=all, idempotent)"),
            ));
        }
        Ok(Some(crate::audit::AuditKafka {
            brokers: self.kafka_brokers.clone(),
            topic,
            extra,
        }))
    }
}

/// `observatory-api token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The tenant the token reads.
    #[arg(long)]
    pub tenant: String,
    /// viewer, editor or admin.
    #[arg(long, default_value = "viewer")]
    pub role: String,
    /// Lifetime, e.g. 1h or 30d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The subject (who the token is for).
    #[arg(long, default_value = "operator")]
    pub sub: String,
}

use observatory_plumbing::settings::invalid;
pub use observatory_plumbing::settings::ConfigError;

impl JwtArgs {
    /// The keys tokens are checked with: every secret, the public key and
    /// the JWKS file given (at least one of them).
    pub fn keys(&self) -> Result<Keys, ConfigError> {
        let mut keys = Keys::empty_for_config();
        let mut any = false;
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 16 {
                return Err(invalid("JWT_SECRET", "must be at least 16 bytes"));
            }
            keys = keys.with_secret(secret.as_bytes());
            any = true;
        }
        for previous in self
            .jwt_previous_secrets
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if previous.len() < 16 {
                return Err(invalid(
                    "JWT_PREVIOUS_SECRETS",
                    "each secret must be at least 16 bytes",
                ));
            }
            if self.jwt_secret.is_none() {
                return Err(invalid(
                    "JWT_PREVIOUS_SECRETS",
                    "needs JWT_SECRET, the secret tokens are minted with now",
                ));
            }
            keys = keys.with_secret(previous.as_bytes());
        }
        if let Some(path) = &self.jwt_public_key_file {
            let algorithm = match self.jwt_algorithm.as_str() {
                "RS256" => jsonwebtoken::Algorithm::RS256,
                "ES256" => jsonwebtoken::Algorithm::ES256,
                _ => return Err(invalid("JWT_ALGORITHM", "RS256 or ES256")),
            };
            let pem = std::fs::read(path)
                .map_err(|e| invalid("JWT_PUBLIC_KEY_FILE", format!("{}: {e}", path.display())))?;
            keys = keys
                .with_public_key(algorithm, &pem)
                .map_err(|e: AuthError| invalid("JWT_PUBLIC_KEY_FILE", e.to_string()))?;
            any = true;
        }
        if let Some(path) = &self.jwt_jwks_file {
            keys = keys
                .with_jwks_file(path.clone())
                .map_err(|e| invalid("JWT_JWKS_FILE", e))?;
            any = true;
        }
        if !any {
            return Err(invalid(
                "JWT_SECRET",
                "set JWT_SECRET (HS256), JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE",
            ));
        }
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        Ok(keys
            .with_issuer(nonempty(&self.jwt_issuer))
            .with_audience(nonempty(&self.jwt_audience))
            .with_leeway(self.jwt_leeway))
    }
}

impl TokenArgs {
    /// The role asked for.
    pub fn role(&self) -> Result<Role, ConfigError> {
        match self.role.as_str() {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            _ => Err(invalid("--role", "viewer, editor or admin")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked() {
        let args = |secret: Option<&str>| JwtArgs {
            jwt_secret: secret.map(Into::into),
            jwt_previous_secrets: None,
            jwt_public_key_file: None,
            jwt_algorithm: "RS256".into(),
            jwt_jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
        };
        assert_eq!(args(None).keys().err().unwrap().setting, "JWT_SECRET");
        assert_eq!(
            args(Some("short")).keys().err().unwrap().setting,
            "JWT_SECRET"
        );
        assert!(args(Some("a secret of enough length")).keys().is_ok());
    }

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["observatory-api"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.api_addr.port(), 8080);
        assert_eq!(
            cli.serve.traces_retention().unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(cli.serve.blocks.blocks_search_max_bytes, 256 << 20);
        assert_eq!(
            cli.serve.blocks.blocks_tenant_index_max_age,
            Duration::from_secs(900)
        );
        let bad = Cli::try_parse_from(["observatory-api", "--retention-traces-days", "0"]).unwrap();
        assert_eq!(
            bad.serve.traces_retention().unwrap_err().setting,
            "RETENTION_TRACES_DAYS"
        );
        let cli = Cli::try_parse_from([
            "observatory-api",
            "token",
            "--tenant",
            "acme",
            "--role",
            "admin",
            "--ttl",
            "2h",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Token(t)) => {
                assert_eq!(t.role().unwrap(), Role::Admin);
                assert_eq!(t.ttl, Duration::from_secs(7200));
            }
            _ => panic!("token"),
        }
    }
}

/// The parsed `PIPELINE_METRICS`.
#[derive(Debug, Clone, Default)]
pub struct PipelineTargets(pub Vec<crate::pipeline::Target>);

fn parse_pipeline_metrics(text: &str) -> Result<PipelineTargets, String> {
    crate::pipeline::parse_targets(text).map(PipelineTargets)
}
