//! Reading traces back from the Tempo blocks in object storage, for traces
//! that retention removed from PostgreSQL (or that PostgreSQL never got):
//! trace by id ([`Blocks::find`]) and search ([`Blocks::search`]).
//!
//! What it guarantees, in one place (each module says how):
//! - Only the token's tenant folder is read (`default` is Tempo's
//!   `single-tenant`), in the bucket the Tempo sink writes
//!   (`OBJECT_STORE_URL`, opened by `observatory_plumbing::store` as the
//!   sink opens it, with a reader's short retries).
//! - The bucket is not listed per request: a tenant's block list comes from
//!   Tempo's tenant index when it is fresh, else from a listing, and is
//!   kept for `BLOCKS_LIST_REFRESH`, bounded in memory ([`list`]).
//! - A half-written block is never read (`meta.json` comes last); a block
//!   deleted since it was listed is skipped, never an error.
//! - No reader downloads a whole data file: a lookup reads the bloom
//!   shard, the footer and a few pages ([`lookup`]); a search reads the
//!   footer, then per row group only what its statistics and dictionaries
//!   cannot rule out, and of that only the column chunks its conditions
//!   need, within a byte budget per query (`BLOCKS_SEARCH_MAX_BYTES`), and
//!   says when the budget cut it short ([`search`]). Every byte read is
//!   counted ([`Blocks::counting_reads`]).
//! - Object storage cannot be loaded through the API: unknown trace ids are
//!   remembered for `BLOCKS_NOT_FOUND_TTL`, and a tenant has at most
//!   `BLOCKS_TENANT_CONCURRENCY` lookups and searches in flight (one more
//!   is refused at once: [`BlocksError::Busy`], answered 429).
//! - Traces from blocks have the PostgreSQL answers' shapes ([`shape`],
//!   and the summaries of [`search`]).
//!
//! Start reading at [`Blocks::find`] and [`Blocks::search`].

mod eval;
mod fetch;
#[cfg(test)]
mod fixtures;
pub mod list;
pub mod lookup;
mod lru;
pub mod scan;
pub mod search;
pub mod shape;

pub use search::{BlockHit, BlockSearch, BlockSearchResult, MatchedSpan, TraceFilter, Whose};
pub use shape::{cap_spans, prices, to_trace};

use clap::Args;
use lru::SizedLru;
use object_store::ObjectStore;
use observatory_plumbing::store::StoreOptions;
use observatory_schemas::pricing::PriceBook;
use observatory_schemas::tempo::bloom::{Bloom, BloomError};
use observatory_schemas::tempo::ranged::Footer;
use observatory_schemas::tempo::read::ReadError;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Most block metas kept in memory over all tenants (about 100 bytes each).
pub const MAX_CACHED_BLOCKS: usize = 200_000;

/// Object-storage settings (the Tempo sink's), and the readers' caches and
/// limits.
#[derive(Debug, Clone, Args)]
pub struct BlocksArgs {
    /// Where the Tempo sink writes blocks (s3://bucket[/prefix], gs://...,
    /// az://..., file:///path or a path); unset: PostgreSQL only.
    #[arg(long, env = "OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// S3: virtual-hosted-style requests instead of path-style ones.
    #[arg(long, env = "S3_VIRTUAL_HOSTED_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_virtual_hosted_style: bool,
    /// How long a tenant's block list is reused before the bucket is listed again.
    #[arg(long, env = "BLOCKS_LIST_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub blocks_list_refresh: Duration,
    /// A tenant index (`<tenant>/index.json.gz`) younger than this is the
    /// block list (one read, no listing); an older one is ignored. 0s: never read it.
    #[arg(long, env = "BLOCKS_TENANT_INDEX_MAX_AGE", default_value = "15m", value_parser = humantime::parse_duration)]
    pub blocks_tenant_index_max_age: Duration,
    /// Memory for cached bloom filter shards (about 100 KiB each).
    #[arg(long, env = "BLOCKS_BLOOM_CACHE_BYTES", default_value_t = 64 << 20)]
    pub blocks_bloom_cache_bytes: usize,
    /// Memory for decoded data-file footers (a few MiB for a 1 GiB block
    /// of many row groups), so a block's footer is read once.
    #[arg(long, env = "BLOCKS_FOOTER_CACHE_BYTES", default_value_t = 256 << 20)]
    pub blocks_footer_cache_bytes: usize,
    /// Model prices added to the built-in table, as the PostgreSQL sink's
    /// PRICING_FILE (costs of traces read from blocks).
    #[arg(long = "blocks-pricing-file", env = "PRICING_FILE")]
    pub blocks_pricing_file: Option<PathBuf>,
    /// How long a trace id no block holds is answered "not found" without looking again.
    #[arg(long, env = "BLOCKS_NOT_FOUND_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub blocks_not_found_ttl: Duration,
    /// Trace lookups and searches in object storage one tenant may have in flight; one more gets 429.
    #[arg(long, env = "BLOCKS_TENANT_CONCURRENCY", default_value_t = 4)]
    pub blocks_tenant_concurrency: usize,
    /// Bytes one search may read from object storage; a search that would
    /// read more stops there and says its answer is partial.
    #[arg(long, env = "BLOCKS_SEARCH_MAX_BYTES", default_value_t = 256 << 20)]
    pub blocks_search_max_bytes: u64,
    /// Blocks one search reads at once.
    #[arg(long, env = "BLOCKS_SEARCH_CONCURRENCY", default_value_t = 32)]
    pub blocks_search_concurrency: usize,
}

/// Why blocks could not be opened or read.
#[derive(Debug, Error)]
pub enum BlocksError {
    /// `OBJECT_STORE_URL` cannot be opened.
    #[error(transparent)]
    Open(#[from] observatory_plumbing::store::StoreError),
    /// The price file cannot be used.
    #[error("PRICING_FILE {path}: {reason}")]
    Prices {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tenant cannot name a folder.
    #[error("tenant: {0}")]
    Tenant(#[from] observatory_schemas::tenant::TenantError),
    /// Object storage failed.
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    /// A bloom shard is not a filter.
    #[error("block {block}: {source}")]
    Bloom {
        /// The block.
        block: String,
        /// Why.
        source: BloomError,
    },
    /// A data file could not be read.
    #[error("block {block}: {source}")]
    Read {
        /// The block.
        block: String,
        /// Why.
        source: ReadError,
    },
    /// The reading task died.
    #[error("block reader task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The tenant has `BLOCKS_TENANT_CONCURRENCY` lookups in flight already.
    #[error("your tenant has {0} trace lookups or searches in object storage in flight (BLOCKS_TENANT_CONCURRENCY); retry")]
    Busy(usize),
}

/// (tenant folder, block id, shard).
type BloomKey = (String, String, u64);

/// (tenant folder, block id).
type FooterKey = (String, String);

struct Inner {
    store: Arc<dyn ObjectStore>,
    refresh: Duration,
    /// A tenant index younger than this is the block list.
    index_max_age: Duration,
    /// (use tick, kept lists by tenant folder).
    listings: Mutex<(u64, HashMap<String, list::Listing>)>,
    blooms: Mutex<SizedLru<BloomKey, Arc<Bloom>>>,
    /// Decoded data-file footers, with the file's size.
    footers: Mutex<SizedLru<FooterKey, (u64, Footer)>>,
    /// (tenant folder, trace id) no block held, and when that was found.
    not_found: Mutex<HashMap<(String, [u8; 16]), Instant>>,
    not_found_ttl: Duration,
    /// Lookups and searches in flight per tenant folder.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    tenant_concurrency: usize,
    /// Bytes one search may read.
    search_max_bytes: u64,
    /// Blocks one search reads at once.
    search_concurrency: usize,
    /// Bytes read from object storage by lookups and searches.
    read_bytes: prometheus_client::metrics::counter::Counter,
}

/// The blocks of every tenant (cheap to clone).
#[derive(Clone)]
pub struct Blocks {
    inner: Arc<Inner>,
}

impl Blocks {
    /// Opens `OBJECT_STORE_URL`; `None` when it is unset.
    pub fn open(args: &BlocksArgs) -> anyhow::Result<Option<Blocks>> {
        let mut prices = PriceBook::builtin();
        if let Some(path) = &args.blocks_pricing_file {
            let invalid = |reason: String| BlocksError::Prices {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
            prices.add_json(&text).map_err(|e| invalid(e.to_string()))?;
        }
        let _ = shape::PRICES.set(prices);
        let Some(url) = args
            .object_store_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        let store = observatory_plumbing::store::open(
            url,
            StoreOptions::READER.virtual_hosted_style(args.s3_virtual_hosted_style),
        )
        .map_err(BlocksError::Open)?;
        tracing::info!(url, "reading Tempo blocks");
        Ok(Some(
            Blocks::with_store(
                store,
                args.blocks_list_refresh,
                args.blocks_bloom_cache_bytes,
            )
            .with_limits(args.blocks_not_found_ttl, args.blocks_tenant_concurrency)
            .with_footer_cache(args.blocks_footer_cache_bytes)
            .with_search_budget(args.blocks_search_max_bytes, args.blocks_search_concurrency)
            .with_tenant_index_max_age(args.blocks_tenant_index_max_age),
        ))
    }

    /// Blocks in `store`, lists kept for `refresh`, `bloom_budget` bytes of
    /// bloom shards kept; the other settings at their defaults.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        refresh: Duration,
        bloom_budget: usize,
    ) -> Blocks {
        Blocks {
            inner: Arc::new(Inner {
                store,
                refresh,
                index_max_age: Duration::from_secs(15 * 60),
                listings: Mutex::new((0, HashMap::new())),
                blooms: Mutex::new(SizedLru::new(bloom_budget)),
                footers: Mutex::new(SizedLru::new(64 << 20)),
                not_found: Mutex::new(HashMap::new()),
                not_found_ttl: Duration::from_secs(30),
                lookups: Mutex::new(HashMap::new()),
                tenant_concurrency: 4,
                search_max_bytes: 256 << 20,
                search_concurrency: 32,
                read_bytes: Default::default(),
            }),
        }
    }

    /// Changes settings of blocks not shared yet.
    fn with(self, change: impl FnOnce(&mut Inner)) -> Blocks {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| unreachable!("set before the blocks are shared"));
        change(&mut inner);
        Blocks {
            inner: Arc::new(inner),
        }
    }

    /// Sets the memory for decoded footers.
    pub fn with_footer_cache(self, budget: usize) -> Blocks {
        self.with(|inner| inner.footers = Mutex::new(SizedLru::new(budget)))
    }

    /// Sets the bytes one search may read (`BLOCKS_SEARCH_MAX_BYTES`) and
    /// the blocks it reads at once (`BLOCKS_SEARCH_CONCURRENCY`).
    pub fn with_search_budget(self, bytes: u64, concurrency: usize) -> Blocks {
        self.with(|inner| {
            inner.search_max_bytes = bytes;
            inner.search_concurrency = concurrency.max(1);
        })
    }

    /// Sets the age past which a tenant index is not used (0: never used).
    pub fn with_tenant_index_max_age(self, age: Duration) -> Blocks {
        self.with(|inner| inner.index_max_age = age)
    }

    /// Counts the bytes lookups and searches read into `counter` (a metric).
    pub fn counting_reads(self, counter: prometheus_client::metrics::counter::Counter) -> Blocks {
        self.with(|inner| inner.read_bytes = counter)
    }

    /// Bytes read from object storage by lookups and searches so far.
    pub fn read_bytes(&self) -> u64 {
        self.inner.read_bytes.get()
    }

    /// Sets the negative cache's lifetime and the lookups in flight per tenant.
    pub fn with_limits(self, not_found_ttl: Duration, tenant_concurrency: usize) -> Blocks {
        self.with(|inner| {
            inner.not_found_ttl = not_found_ttl;
            inner.tenant_concurrency = tenant_concurrency.max(1);
        })
    }
}
