//! `observatory-schemas`: the contracts every LLM Observatory component shares.
//!
//! This crate does no I/O. It owns the names and rules that cross a process
//! boundary, so that the collector, the consumers and the query API cannot
//! disagree about them:
//!
//! - [`kafka`]: topic, header and key names, the message key of a trace, and
//!   the murmur2 partitioner Java clients use, so every Kafka tool routes a
//!   trace to the same partition we do;
//! - [`ids`]: validation of OTLP trace and span ids;
//! - [`tenant`]: what a tenant name may look like;
//! - [`error_code`]: the one map from our error codes to gRPC and HTTP status;
//! - [`otlp`]: re-exports of the OTLP protobuf types we put on the wire;
//! - [`span`], [`genai`], [`pricing`], [`histogram`]: the normalized span,
//!   the GenAI mapping of every dialect into one LLM call, dated model prices,
//!   and the rollups' latency buckets;
//! - [`scores`]: scores and evaluations, the `scores` topic's messages and
//!   their checks;
//! - [`migrations`]: the SQL of the PostgreSQL store;
//! - [`tempo`]: Grafana Tempo's vParquet4 block format (parquet, bloom
//!   filters, `meta.json`), written and read in memory;
//! - [`civil`]: UTC calendar arithmetic;
//! - `postgres_tls` (feature `postgres-tls`): what `DB_SSL_MODE` means,
//!   as one rustls connector for every component that connects to
//!   PostgreSQL;
//! - `testing` (feature `testing`): builders of realistic GenAI traces for
//!   tests, benches and the load generator.
//!
//! Start reading at [`kafka`].

pub mod civil;
pub mod decoded_size;
pub mod environment;
pub mod error_code;
pub mod genai;
pub mod histogram;
pub mod ids;
pub mod kafka;
pub mod messages;
pub mod migrations;
pub mod murmur2;
pub mod otlp;
#[cfg(feature = "postgres-tls")]
pub mod postgres_tls;
pub mod pricing;
pub mod resource_key;
pub mod scores;
pub mod settings;
pub mod span;
pub mod tempo;
pub mod tenant;

#[cfg(feature = "testing")]
pub mod testing;
