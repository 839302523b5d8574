//! `observatory-api`: LLM Observatory's query API (warp).
//!
//! What it guarantees: every `/api` request is authenticated by a JWT
//! ([`auth`]) and scoped to the token's tenant; every value from a request
//! reaches PostgreSQL as a bound parameter, never as SQL text; every error
//! is an RFC 9457 problem document naming what was wrong ([`problem`]).
//!
//! Start reading at [`routes`]: health, the trace API ([`traces`],
//! [`search`], over [`summaries`] and [`span_filter`], which Tempo's search
//! shares), LLM analytics ([`analytics`], [`budgets`]), Grafana Tempo's
//! API ([`tempo_api`]) over PostgreSQL and the Tempo blocks ([`blocks`]),
//! scores, sessions and end users ([`scores`], [`sessions`], [`users`]),
//! and the web UI's assets ([`ui`]), which read only this public API.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod blocks;
pub mod budgets;
pub mod cache;
pub mod config;
pub mod filters;
pub mod genai_metrics;
pub mod keyset;
pub mod logs;
pub mod metric_queries;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod pool;
pub mod problem;
pub mod promql;
pub mod routes;
pub mod scores;
pub mod search;
pub mod server;
pub mod sessions;
pub mod span_filter;
pub mod sql;
pub mod summaries;
pub mod tempo_api;
pub mod topics;
pub mod traces;
pub mod ui;
pub mod users;
pub mod v1;
