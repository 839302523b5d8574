//! Grafana Tempo's vParquet4 block format, in memory: no I/O here.
//!
//! The Tempo sink (`consumers/src/tempo`) writes blocks with
//! [`write::BlockWriter`] and puts the objects it returns into object
//! storage in the order given, `meta.json` last; the query API reads them
//! back with [`read::DataFile`] and [`bloom::Bloom`]. The format follows
//! `tempo-blocks.md` of the design folder, byte for byte where Tempo needs
//! it: the parquet schema ([`schema`]), one row per trace sorted by id
//! ([`trace`], [`columns`]), the bloom shards, and `meta.json` with
//! deterministic block ids ([`meta`]).

pub mod bloom;
pub mod columns;
pub mod compaction;
pub mod meta;
pub mod ranged;
pub mod read;
pub mod rows;
pub mod schema;
pub mod skim;
pub mod tenant_index;
pub mod trace;
pub mod write;

/// The `format` of our blocks' `meta.json`.
pub const ENCODING: &str = "vParquet4";
