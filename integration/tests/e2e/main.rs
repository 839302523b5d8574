//! The end-to-end tests, one module per area, linked into one test binary.
//!
//! Each file here used to be its own test binary; every one of them linked
//! the whole workspace with its dependencies, which cost CI a minute of
//! linking and gigabytes of disk per file. Linked once, they share that cost.
//! cargo-nextest still runs each test in its own process, so a test sees no
//! other test's state; filter an area with its module path, for example
//! `cargo nextest run -E 'test(/^rebalance::/)'`.

mod api;
mod api_analytics;
mod api_every_endpoint;
mod api_tempo;
mod bad_input;
mod block_search;
mod collector;
mod collector_limits;
mod compaction;
mod dead_letters;
mod delivery;
mod demo;
mod deployment;
mod idle;
mod metrics_logs;
mod monitoring;
mod offsets;
mod postgres_tls;
mod prometheus;
mod rebalance;
mod replay;
mod scores;
mod security;
mod tempo;
mod timescale;
mod ui;
