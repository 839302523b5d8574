//! `observatory-consumer`: independent consumer groups, one per sink, that
//! write LLM Observatory's stores from the Kafka topics.
//!
//! Every sink shares one acknowledgement flow, [`source`]: an offset is
//! committed only after the sink durably wrote its batch, and a message that
//! can never be written goes to the dead-letter topic, whose acknowledgement
//! alone lets its offset move on. Sinks write idempotently, so a crash, a
//! rebalance or a replay stores nothing twice.
//!
//! Where to start reading: [`source`], then a sink: [`timescale`] (with
//! [`scores`], [`otel_metrics`] and [`logs`] beside it) or [`tempo`];
//! replays and dead letters: [`replay`].

pub mod admin;
pub mod compact;
pub mod config;
pub mod logs;
pub mod metrics;
pub mod ops;
pub mod otel_metrics;
pub mod redact;
pub mod replay;
pub mod scores;
pub mod source;
pub mod tempo;
pub mod timescale;
