//! `observatory-api`: LLM Observatory's query API (warp).
//!
//! What it guarantees: every `/api` request is authenticated by a JWT
//! ([`auth`]) and scoped to the token's tenant; every value from a request
//! reaches PostgreSQL as a bound parameter, never as SQL text; every error
//! is an RFC 9457 problem document naming what was wrong ([`problem`]).
//!
//! Start reading at [`routes`]. Here so far: health, readiness and
//! `GET /api/v1/traces/{trace_id}` from PostgreSQL ([`traces`]); the search,
//! analytics, Tempo-compatible endpoints and the Redis cache are to come.

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod blocks;
pub mod budgets;
pub mod cache;
pub mod config;
pub mod filters;
pub mod metrics;
pub mod openapi;
pub mod pool;
pub mod problem;
pub mod routes;
pub mod search;
pub mod server;
pub mod sql;
pub mod tempo_api;
pub mod traces;
pub mod v1;
