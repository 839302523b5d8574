//! Reading traces back from the Tempo blocks in object storage, for traces
//! that retention removed from PostgreSQL (or that PostgreSQL never got).
//!
//! What it guarantees:
//! - A lookup reads only the token's tenant folder (`default` is Tempo's
//!   `single-tenant`), in the bucket the Tempo sink writes
//!   (`OBJECT_STORE_URL`, opened exactly as the sink opens it).
//! - It does not list the bucket per request: each tenant's block list
//!   (from `meta.json`, which the sink writes last, so a half-written block
//!   is never read) is kept for `BLOCKS_LIST_REFRESH`, and a block's meta is
//!   fetched once. Cached lists are bounded ([`MAX_CACHED_BLOCKS`] blocks in
//!   all, least recently used tenants dropped first), so are the cached
//!   bloom shards (`BLOCKS_BLOOM_CACHE_BYTES`).
//! - A block is skipped when its time range or its bloom shard rules the
//!   trace out (Tempo's own lookup, tempo-blocks.md §5); of the others'
//!   data files only the byte ranges that can hold the trace are read (the
//!   footer, a row group's offset index and TraceID column, then one page
//!   per column: `tempo::ranged`), never the whole file; the trace's spans
//!   are merged from every block holding it (a trace can be cut into
//!   several blocks), newest block first, duplicate span ids dropped.
//! - Lookups cannot be used to load object storage: a trace id no block
//!   holds is remembered as missing for `BLOCKS_NOT_FOUND_TTL` (a repeated
//!   lookup of an unknown id costs nothing), and a tenant has at most
//!   `BLOCKS_TENANT_CONCURRENCY` lookups in flight (one more is refused at
//!   once, [`BlocksError::Busy`], answered 429).
//! - [`to_trace`] gives the shape of `GET /api/v1/traces/{id}` from
//!   PostgreSQL: the same span rows (`observatory_schemas::span`), the same
//!   LLM call extraction and prices as the PostgreSQL sink, start times at
//!   PostgreSQL's microsecond precision.
//!
//! Start reading at [`Blocks::find`].

use bytes::Bytes;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};
use observatory_schemas::civil::{days_from_civil, rfc3339_nanos};
use observatory_schemas::genai::llm_call;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::otlp::trace_service::ExportTraceServiceRequest;
use observatory_schemas::pricing::{cost_usd, PriceBook, Usage};
use observatory_schemas::span::flatten;
use observatory_schemas::tempo::bloom::{shard_of, Bloom, BloomError};
use observatory_schemas::tempo::meta::{bloom_name, tenant_folder, DATA, META};
use observatory_schemas::tempo::ranged::{footer_bytes, Footer, Lookup, Step, TAIL};
use observatory_schemas::tempo::read::ReadError;
use observatory_schemas::tempo::ENCODING;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Most block metas kept in memory over all tenants (about 100 bytes each).
pub const MAX_CACHED_BLOCKS: usize = 200_000;
/// Blocks whose bloom shard and data file are read at once in one lookup.
const CONCURRENCY: usize = 8;
/// Metas fetched at once when a listing finds new blocks.
const META_CONCURRENCY: usize = 16;
/// Byte ranges of one data file closer than this are read in one request.
const RANGE_GAP: u64 = 64 << 10;
/// Range requests of one lookup step in flight at once.
const RANGE_CONCURRENCY: usize = 8;

/// Object-storage settings (the Tempo sink's), and the lookup's caches.
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
    /// Trace lookups in object storage one tenant may have in flight; one more gets 429.
    #[arg(long, env = "BLOCKS_TENANT_CONCURRENCY", default_value_t = 4)]
    pub blocks_tenant_concurrency: usize,
}

/// Why blocks could not be opened or read.
#[derive(Debug, Error)]
pub enum BlocksError {
    /// Unknown scheme.
    #[error("OBJECT_STORE_URL {0:?}: use s3://, gs://, az://, file:// or a local path")]
    Scheme(String),
    /// The backend refused its configuration.
    #[error("OBJECT_STORE_URL {url:?}: {source}")]
    Backend {
        /// The URL.
        url: String,
        /// Why.
        source: object_store::Error,
    },
    /// The local folder cannot be created.
    #[error("cannot create {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
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
    #[error("your tenant has {0} trace lookups in object storage in flight (BLOCKS_TENANT_CONCURRENCY); retry")]
    Busy(usize),
}

/// The retries of the backends stay short: a lookup is a user waiting.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A dead endpoint fails fast; a data file has a minute. Set as config keys
/// (not a whole `ClientOptions`, which would drop what the builder read from
/// the environment, such as `AWS_ALLOW_HTTP`).
const CLIENT_TIMEOUTS: [(ClientConfigKey, &str); 2] = [
    (ClientConfigKey::ConnectTimeout, "5s"),
    (ClientConfigKey::Timeout, "60s"),
];

/// Splits `scheme://bucket/prefix` into (`scheme://bucket`, `prefix`).
fn split_bucket(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (
            &url[..after_scheme + i],
            url[after_scheme + i + 1..].trim_matches('/'),
        ),
        None => (url, ""),
    }
}

/// Opens the store `url` names, as the Tempo sink does; credentials and
/// endpoints from each cloud's standard environment (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`).
pub fn open_store(url: &str, virtual_hosted: bool) -> Result<Arc<dyn ObjectStore>, BlocksError> {
    let backend = |source| BlocksError::Backend {
        url: url.to_owned(),
        source,
    };
    let (bucket, prefix) = split_bucket(url);
    let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") || url.starts_with("s3a://") {
        let mut b = AmazonS3Builder::from_env()
            .with_url(bucket)
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_retry(retry());
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(AmazonS3ConfigKey::Client(k), v);
        }
        Arc::new(b.build().map_err(backend)?)
    } else if url.starts_with("gs://") {
        let mut b = GoogleCloudStorageBuilder::from_env()
            .with_url(bucket)
            .with_retry(retry());
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(GoogleConfigKey::Client(k), v);
        }
        Arc::new(b.build().map_err(backend)?)
    } else if url.starts_with("az://") || url.starts_with("azure://") {
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_url(bucket)
            .with_retry(retry());
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(AzureConfigKey::Client(k), v);
        }
        Arc::new(b.build().map_err(backend)?)
    } else if url.contains("://") && !url.starts_with("file://") {
        return Err(BlocksError::Scheme(url.to_owned()));
    } else {
        let folder = url.strip_prefix("file://").unwrap_or(url);
        std::fs::create_dir_all(folder).map_err(|source| BlocksError::Folder {
            path: folder.to_owned(),
            source,
        })?;
        return Ok(Arc::new(
            LocalFileSystem::new_with_prefix(folder).map_err(backend)?,
        ));
    };
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

/// Whether a lookup started from a kept footer.
fn known_footer(lookup: &Lookup) -> bool {
    lookup.metadata().is_some()
}

/// The prices of [`to_trace`] and of the analytics read from metrics: the
/// built-in table plus `PRICING_FILE`, as the PostgreSQL sink prices spans.
static PRICES: OnceLock<PriceBook> = OnceLock::new();

/// The API's price table (set when [`Blocks::open`] runs at start-up).
pub fn prices() -> &'static PriceBook {
    PRICES.get_or_init(PriceBook::builtin)
}

/// What a lookup needs of a block's `meta.json`.
#[derive(Debug, Clone, PartialEq)]
struct BlockInfo {
    id: String,
    start_ns: i64,
    end_ns: i64,
    shards: u64,
}

/// `meta.json`, leniently (Go's decoder: missing keys are zero).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaJson {
    #[serde(default)]
    format: String,
    #[serde(default)]
    start_time: String,
    #[serde(default)]
    end_time: String,
    #[serde(default)]
    bloom_shards: u64,
}

/// RFC 3339 (`2022-07-04T11:11:09.5Z`, or with an offset) in ns since the
/// epoch; `None` when malformed.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn block_info(id: &str, meta: &[u8]) -> Option<BlockInfo> {
    let meta: MetaJson = serde_json::from_slice(meta).ok()?;
    if meta.format != ENCODING {
        return None;
    }
    Some(BlockInfo {
        id: id.to_owned(),
        // A time we cannot read never rules a block out.
        start_ns: parse_rfc3339(&meta.start_time).unwrap_or(i64::MIN),
        end_ns: parse_rfc3339(&meta.end_time).unwrap_or(i64::MAX),
        // Tempo reads 0 as the legacy 10 shards.
        shards: if meta.bloom_shards == 0 {
            10
        } else {
            meta.bloom_shards
        },
    })
}

/// A canonical lowercase UUID, as Tempo names block folders.
fn is_block_id(name: &str) -> bool {
    name.len() == 36
        && name.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

struct Listing {
    at: Instant,
    used: u64,
    blocks: Arc<Vec<BlockInfo>>,
}

/// Keeps the first `max` spans of `spans` (in their order); true when
/// some were cut.
pub fn cap_spans(spans: &mut Vec<ResourceSpans>, max: usize) -> bool {
    let mut left = max;
    let mut cut = false;
    for rs in spans.iter_mut() {
        for ss in rs.scope_spans.iter_mut() {
            if ss.spans.len() > left {
                ss.spans.truncate(left);
                cut = true;
            }
            left -= ss.spans.len();
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    spans.retain(|rs| !rs.scope_spans.is_empty());
    cut
}

/// (tenant folder, block id, shard).
type BloomKey = (String, String, u64);

/// (tenant folder, block id).
type FooterKey = (String, String);

/// A cache bounded in bytes, least recently used entries dropped first
/// (blocks never change, so nothing in it goes stale).
struct SizedLru<K, V> {
    budget: usize,
    bytes: usize,
    tick: u64,
    /// Key to (value, size in bytes, when last used).
    entries: HashMap<K, (V, usize, u64)>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> SizedLru<K, V> {
    fn new(budget: usize) -> Self {
        SizedLru {
            budget,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(key)?;
        entry.2 = tick;
        Some(entry.0.clone())
    }

    /// Keeps `value` unless it alone is over the budget.
    fn insert(&mut self, key: K, value: V, size: usize) {
        if size > self.budget {
            return;
        }
        self.tick += 1;
        if let Some((_, old, _)) = self.entries.insert(key, (value, size, self.tick)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, size, _)) = self.entries.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }
}

/// Most remembered missing trace ids (a lookup each).
const MAX_NOT_FOUND: usize = 100_000;

struct Inner {
    store: Arc<dyn ObjectStore>,
    refresh: Duration,
    listings: Mutex<(u64, HashMap<String, Listing>)>,
    blooms: Mutex<SizedLru<BloomKey, Arc<Bloom>>>,
    /// Decoded data-file footers, with the file's size.
    footers: Mutex<SizedLru<FooterKey, (u64, Footer)>>,
    /// (tenant folder, trace id) no block held, and when that was found.
    not_found: Mutex<HashMap<(String, [u8; 16]), Instant>>,
    not_found_ttl: Duration,
    /// Lookups in flight per tenant folder.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    tenant_concurrency: usize,
    /// Bytes read from object storage by lookups.
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
        let _ = PRICES.set(prices);
        let Some(url) = args
            .object_store_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        let store = open_store(url, args.s3_virtual_hosted_style)?;
        tracing::info!(url, "reading Tempo blocks");
        Ok(Some(
            Blocks::with_store(
                store,
                args.blocks_list_refresh,
                args.blocks_bloom_cache_bytes,
            )
            .with_limits(args.blocks_not_found_ttl, args.blocks_tenant_concurrency)
            .with_footer_cache(args.blocks_footer_cache_bytes),
        ))
    }

    fn with_store(store: Arc<dyn ObjectStore>, refresh: Duration, bloom_budget: usize) -> Blocks {
        Blocks {
            inner: Arc::new(Inner {
                store,
                refresh,
                listings: Mutex::new((0, HashMap::new())),
                blooms: Mutex::new(SizedLru::new(bloom_budget)),
                footers: Mutex::new(SizedLru::new(64 << 20)),
                not_found: Mutex::new(HashMap::new()),
                not_found_ttl: Duration::from_secs(30),
                lookups: Mutex::new(HashMap::new()),
                tenant_concurrency: 4,
                read_bytes: Default::default(),
            }),
        }
    }

    /// Sets the memory for decoded footers.
    fn with_footer_cache(self, budget: usize) -> Blocks {
        *self.inner.footers.lock().expect("footer cache lock") = SizedLru::new(budget);
        self
    }

    /// Counts the bytes lookups read into `counter` (a metric).
    pub fn counting_reads(self, counter: prometheus_client::metrics::counter::Counter) -> Blocks {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| unreachable!("set before the blocks are shared"));
        Blocks {
            inner: Arc::new(Inner {
                read_bytes: counter,
                ..inner
            }),
        }
    }

    /// Bytes read from object storage by lookups so far.
    pub fn read_bytes(&self) -> u64 {
        self.inner.read_bytes.get()
    }

    /// Sets the negative cache's lifetime and the lookups in flight per tenant.
    fn with_limits(self, not_found_ttl: Duration, tenant_concurrency: usize) -> Blocks {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| unreachable!("set before the blocks are shared"));
        Blocks {
            inner: Arc::new(Inner {
                not_found_ttl,
                tenant_concurrency: tenant_concurrency.max(1),
                ..inner
            }),
        }
    }

    /// Whether `id` of `folder` was found missing within the TTL.
    fn known_missing(&self, folder: &str, id: &[u8; 16]) -> bool {
        let mut missing = self.inner.not_found.lock().expect("not-found lock");
        let key = (folder.to_owned(), *id);
        match missing.get(&key) {
            Some(at) if at.elapsed() < self.inner.not_found_ttl => true,
            Some(_) => {
                missing.remove(&key);
                false
            }
            None => false,
        }
    }

    fn remember_missing(&self, folder: &str, id: &[u8; 16]) {
        if self.inner.not_found_ttl.is_zero() {
            return;
        }
        let mut missing = self.inner.not_found.lock().expect("not-found lock");
        if missing.len() >= MAX_NOT_FOUND {
            let ttl = self.inner.not_found_ttl;
            missing.retain(|_, at| at.elapsed() < ttl);
            if missing.len() >= MAX_NOT_FOUND {
                missing.clear();
            }
        }
        missing.insert((folder.to_owned(), *id), Instant::now());
    }

    /// A permit for one lookup of `folder`'s blocks, or `Busy`.
    fn lookup_permit(
        &self,
        folder: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, BlocksError> {
        let semaphore = self
            .inner
            .lookups
            .lock()
            .expect("lookups lock")
            .entry(folder.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.inner.tenant_concurrency)))
            .clone();
        semaphore
            .try_acquire_owned()
            .map_err(|_| BlocksError::Busy(self.inner.tenant_concurrency))
    }

    /// The trace `id` of `tenant`, merged from every block holding it.
    pub async fn find(
        &self,
        tenant: &str,
        id: &[u8; 16],
    ) -> Result<Option<Vec<ResourceSpans>>, BlocksError> {
        self.find_between(tenant, id, None).await
    }

    /// As [`Blocks::find`], reading only blocks that overlap `range`
    /// (ns since the epoch, as Tempo's `start`/`end` of trace by id).
    pub async fn find_between(
        &self,
        tenant: &str,
        id: &[u8; 16],
        range: Option<(i64, i64)>,
    ) -> Result<Option<Vec<ResourceSpans>>, BlocksError> {
        observatory_schemas::tenant::validate(tenant)?;
        let folder = tenant_folder(tenant).to_owned();
        if self.known_missing(&folder, id) {
            return Ok(None);
        }
        let _permit = self.lookup_permit(&folder)?;
        let blocks = self.blocks(&folder).await?;
        let candidates: Vec<BlockInfo> = blocks
            .iter()
            .filter(|b| range.is_none_or(|(start, end)| b.end_ns >= start && b.start_ns <= end))
            .cloned()
            .collect();
        let found: Vec<(BlockInfo, Option<Vec<ResourceSpans>>)> =
            futures::stream::iter(candidates.into_iter().map(|b| {
                let folder = folder.clone();
                async move {
                    let spans = self.find_in_block(&folder, &b, id).await?;
                    Ok::<_, BlocksError>((b, spans))
                }
            }))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut found: Vec<(BlockInfo, Vec<ResourceSpans>)> = found
            .into_iter()
            .filter_map(|(b, spans)| Some((b, spans?)))
            .collect();
        if found.is_empty() {
            if range.is_none() {
                self.remember_missing(&folder, id);
            }
            return Ok(None);
        }
        found.sort_by(|a, b| b.0.end_ns.cmp(&a.0.end_ns).then(a.0.id.cmp(&b.0.id)));
        Ok(Some(merge(found.into_iter().map(|(_, spans)| spans))))
    }

    async fn find_in_block(
        &self,
        folder: &str,
        block: &BlockInfo,
        id: &[u8; 16],
    ) -> Result<Option<Vec<ResourceSpans>>, BlocksError> {
        let shard = shard_of(id, block.shards);
        let bloom = match self.bloom(folder, block, shard).await {
            Ok(bloom) => bloom,
            // Deleted since the listing (retention, compaction): forget the list.
            Err(BlocksError::Store(object_store::Error::NotFound { .. })) => {
                self.forget(folder);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if !bloom.may_contain(id) {
            return Ok(None);
        }
        let path = Path::from(format!("{folder}/{}/{DATA}", block.id));
        let key = (folder.to_owned(), block.id.clone());
        let known = self
            .inner
            .footers
            .lock()
            .expect("footer cache lock")
            .get(&key);
        let mut lookup = match known {
            Some((len, footer)) => Lookup::with_metadata(*id, len, footer),
            // The file's tail first: the footer, and the file's size.
            None => match self.tail(&path).await {
                Ok((len, start, tail)) => {
                    let mut lookup = Lookup::new(*id, len);
                    lookup.add(start, tail);
                    lookup
                }
                Err(object_store::Error::NotFound { .. }) => {
                    self.forget(folder);
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            },
        };
        let mut footer_kept = known_footer(&lookup);
        loop {
            let block_id = block.id.clone();
            // Parquet decoding is CPU work: off the async workers.
            let (back, step) = tokio::task::spawn_blocking(move || {
                let step = lookup.step();
                (lookup, step)
            })
            .await?;
            lookup = back;
            if !footer_kept {
                if let Some(footer) = lookup.metadata() {
                    let size = footer_bytes(footer);
                    self.inner
                        .footers
                        .lock()
                        .expect("footer cache lock")
                        .insert(key.clone(), (lookup.file_len(), footer.clone()), size);
                    footer_kept = true;
                }
            }
            match step.map_err(|source| BlocksError::Read {
                block: block_id,
                source,
            })? {
                Step::Done(found) => return Ok(found),
                Step::Fetch(ranges) => match self.get_ranges(&path, ranges).await {
                    Ok(parts) => {
                        for (start, bytes) in parts {
                            lookup.add(start, bytes);
                        }
                    }
                    // Deleted since the listing (retention, compaction).
                    Err(object_store::Error::NotFound { .. }) => {
                        self.forget(folder);
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
    }

    async fn get(&self, path: &Path) -> Result<Bytes, object_store::Error> {
        let bytes = self.inner.store.get(path).await?.bytes().await?;
        self.inner.read_bytes.inc_by(bytes.len() as u64);
        Ok(bytes)
    }

    /// The last [`TAIL`] bytes of `path`: (the file's size, where they
    /// start, the bytes). Where a suffix range fails (Azure has none; some
    /// S3 servers refuse one longer than the object), a HEAD and a bounded
    /// range instead: once per block, as its footer is kept.
    async fn tail(&self, path: &Path) -> Result<(u64, u64, Bytes), object_store::Error> {
        let suffix = GetOptions {
            range: Some(GetRange::Suffix(TAIL)),
            ..Default::default()
        };
        let got = match self.inner.store.get_opts(path, suffix).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "suffix range refused; HEAD and a bounded range");
                let len = self.inner.store.head(path).await?.size;
                let bounded = GetOptions {
                    range: Some(GetRange::Bounded(Lookup::tail(len))),
                    ..Default::default()
                };
                self.inner.store.get_opts(path, bounded).await?
            }
        };
        let (len, start) = (got.meta.size, got.range.start);
        let bytes = got.bytes().await?;
        self.inner.read_bytes.inc_by(bytes.len() as u64);
        Ok((len, start, bytes))
    }

    /// The bytes of `ranges` of `path`: ranges closer than [`RANGE_GAP`]
    /// merged into one request, requests run concurrently.
    async fn get_ranges(
        &self,
        path: &Path,
        mut ranges: Vec<std::ops::Range<u64>>,
    ) -> Result<Vec<(u64, Bytes)>, object_store::Error> {
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<std::ops::Range<u64>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end + RANGE_GAP => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        let store = &self.inner.store;
        let parts: Vec<(u64, Bytes)> =
            futures::stream::iter(merged.into_iter().map(|r| async move {
                let start = r.start;
                store.get_range(path, r).await.map(|b| (start, b))
            }))
            .buffer_unordered(RANGE_CONCURRENCY)
            .try_collect()
            .await?;
        let read: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        self.inner.read_bytes.inc_by(read);
        Ok(parts)
    }

    async fn bloom(
        &self,
        folder: &str,
        block: &BlockInfo,
        shard: u64,
    ) -> Result<Arc<Bloom>, BlocksError> {
        let key = (folder.to_owned(), block.id.clone(), shard);
        if let Some(bloom) = self
            .inner
            .blooms
            .lock()
            .expect("bloom cache lock")
            .get(&key)
        {
            return Ok(bloom);
        }
        let path = Path::from(format!("{folder}/{}/{}", block.id, bloom_name(shard)));
        let bytes = self.get(&path).await?;
        let size = bytes.len();
        let bloom = Arc::new(
            Bloom::from_bytes(&bytes).map_err(|source| BlocksError::Bloom {
                block: block.id.clone(),
                source,
            })?,
        );
        self.inner
            .blooms
            .lock()
            .expect("bloom cache lock")
            .insert(key, bloom.clone(), size);
        Ok(bloom)
    }

    /// Drops a tenant's cached list, so the next lookup lists again.
    fn forget(&self, folder: &str) {
        self.inner
            .listings
            .lock()
            .expect("listing lock")
            .1
            .remove(folder);
    }

    /// The tenant's blocks: from the cache while fresh, else listed again
    /// (only new blocks' metas are read).
    async fn blocks(&self, folder: &str) -> Result<Arc<Vec<BlockInfo>>, BlocksError> {
        let known: HashMap<String, BlockInfo> = {
            let mut guard = self.inner.listings.lock().expect("listing lock");
            guard.0 += 1;
            let tick = guard.0;
            match guard.1.get_mut(folder) {
                Some(l) if l.at.elapsed() < self.inner.refresh => {
                    l.used = tick;
                    return Ok(l.blocks.clone());
                }
                Some(l) => l.blocks.iter().map(|b| (b.id.clone(), b.clone())).collect(),
                None => HashMap::new(),
            }
        };
        let listed = self
            .inner
            .store
            .list_with_delimiter(Some(&Path::from(folder)))
            .await?;
        let ids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|name| is_block_id(name))
            .collect();
        let store = self.inner.store.clone();
        let fetched: Vec<Option<BlockInfo>> = futures::stream::iter(ids.into_iter().map(|id| {
            let known = known.get(&id).cloned();
            let store = store.clone();
            let path = Path::from(format!("{folder}/{id}/{META}"));
            async move {
                if let Some(b) = known {
                    return Ok(Some(b));
                }
                match store.get(&path).await {
                    Ok(r) => {
                        let bytes = r.bytes().await?;
                        let info = block_info(&id, &bytes);
                        if info.is_none() {
                            tracing::warn!(block = %id, "skipping a block whose meta.json we cannot read");
                        }
                        Ok(info)
                    }
                    // Still being written (meta.json comes last) or compacted away.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }))
        .buffer_unordered(META_CONCURRENCY)
        .try_collect()
        .await?;
        let mut blocks: Vec<BlockInfo> = fetched.into_iter().flatten().collect();
        blocks.sort_by(|a, b| b.end_ns.cmp(&a.end_ns).then(a.id.cmp(&b.id)));
        let blocks = Arc::new(blocks);
        let mut guard = self.inner.listings.lock().expect("listing lock");
        guard.0 += 1;
        let tick = guard.0;
        guard.1.insert(
            folder.to_owned(),
            Listing {
                at: Instant::now(),
                used: tick,
                blocks: blocks.clone(),
            },
        );
        // Memory bound: drop the least recently used tenants' lists.
        while guard.1.values().map(|l| l.blocks.len()).sum::<usize>() > MAX_CACHED_BLOCKS
            && guard.1.len() > 1
        {
            let Some(oldest) = guard
                .1
                .iter()
                .filter(|(k, _)| k.as_str() != folder)
                .min_by_key(|(_, l)| l.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            guard.1.remove(&oldest);
        }
        Ok(blocks)
    }
}

/// Merges a trace's parts, newest block first; a span id seen in an
/// earlier part is dropped, and so are scopes and resources left empty.
fn merge(parts: impl Iterator<Item = Vec<ResourceSpans>>) -> Vec<ResourceSpans> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    for part in parts {
        for mut rs in part {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| seen.insert(s.span_id.clone()));
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
            if !rs.scope_spans.is_empty() {
                out.push(rs);
            }
        }
    }
    out
}

/// A trace read from blocks, in the shape of `GET /api/v1/traces/{id}`.
pub fn to_trace(id: &[u8; 16], resource_spans: Vec<ResourceSpans>) -> crate::traces::Trace {
    use crate::traces::{LlmCall, SpanNode, Trace};
    use observatory_schemas::ids;
    let prices = prices();
    // Spans with ids PostgreSQL would refuse are left out, as the sink does.
    let mut request = ExportTraceServiceRequest { resource_spans };
    for rs in &mut request.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| {
                ids::trace_id(&s.trace_id).is_ok()
                    && ids::span_id(&s.span_id).is_ok()
                    && ids::parent_span_id(&s.parent_span_id).is_ok()
            });
        }
    }
    let rows = flatten(&request).unwrap_or_default();
    let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    let hex = |bytes: &[u8]| {
        let mut out = String::with_capacity(2 * bytes.len());
        observatory_schemas::kafka::push_hex(&mut out, bytes);
        out
    };
    let mut cost = 0.0;
    let mut nodes = Vec::with_capacity(rows.len());
    for (row, span, _) in rows {
        // PostgreSQL keeps microseconds.
        let start_ns = (row.start_unix_nano - row.start_unix_nano % 1_000).min(i64::MAX as u64);
        let duration_ns = row.duration_ns().min(i64::MAX as u64) as i64;
        let llm = llm_call(span).map(|call| {
            let usage = Usage {
                input: call.input_tokens.unwrap_or(0),
                output: call.output_tokens.unwrap_or(0),
                cache_read: call.cache_read_tokens.unwrap_or(0),
                cache_write: call.cache_write_tokens.unwrap_or(0),
            };
            let computed = prices
                .lookup(&call.model, row.start_unix_nano)
                .map(|price| cost_usd(price, &usage));
            LlmCall {
                provider: call.provider,
                model: call.model,
                operation: call.operation,
                input_tokens: call.input_tokens,
                output_tokens: call.output_tokens,
                cache_read_tokens: call.cache_read_tokens,
                cache_write_tokens: call.cache_write_tokens,
                reasoning_tokens: call.reasoning_tokens,
                cost_usd: call.client_cost_usd.or(computed),
                time_to_first_token_ms: call.time_to_first_token_ms,
                finish_reasons: call.finish_reasons,
                messages: Default::default(),
            }
        });
        cost += llm.as_ref().and_then(|c| c.cost_usd).unwrap_or(0.0);
        nodes.push(crate::traces::with_messages(SpanNode {
            span_id: hex(&row.span_id),
            parent_span_id: row.parent_span_id.map(|p| hex(&p)),
            service: row.service,
            name: row.name,
            kind: row.kind,
            start_time: rfc3339_nanos(start_ns as i64),
            duration_ms: duration_ns as f64 / 1e6,
            status_code: row.status_code,
            status_message: row.status_message,
            attributes: json(&row.attributes),
            resource: json(&row.resource),
            events: json(&row.events),
            links: json(&row.links),
            llm,
            children: Vec::new(),
            scores: Vec::new(),
            logs: Vec::new(),
        }));
    }
    Trace {
        trace_id: hex(id),
        span_count: nodes.len(),
        cost_usd: cost,
        roots: crate::traces::tree(nodes),
        truncated: false,
        scores: Vec::new(),
        logs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use observatory_schemas::otlp::common::{any_value::Value as Any, AnyValue, KeyValue};
    use observatory_schemas::otlp::resource::Resource;
    use observatory_schemas::otlp::trace::{ScopeSpans, Span};
    use observatory_schemas::tempo::meta::block_id;
    use observatory_schemas::tempo::trace::TraceRow;
    use observatory_schemas::tempo::write::{BlockWriter, DEFAULT_ROW_GROUP_BYTES};

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn kv_str(key: &str, value: &str) -> KeyValue {
        kv(key, Any::StringValue(value.into()))
    }

    fn kv_int(key: &str, value: i64) -> KeyValue {
        kv(key, Any::IntValue(value))
    }

    fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        start: u64,
        attrs: Vec<observatory_schemas::otlp::common::KeyValue>,
    ) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("span {id}"),
            kind: 1,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn resource_spans(spans: Vec<Span>) -> Vec<ResourceSpans> {
        vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2022-07-04T11:11:09.5Z"),
            Some(1_656_933_069_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2022-07-04T13:11:09+02:00"),
            Some(1_656_933_069_000_000_000)
        );
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(parse_rfc3339(&rfc3339_nanos(ns)), Some(ns));
        for bad in [
            "",
            "2022-07-04",
            "2022-07-04T11:11:09",
            "2022-13-04T11:11:09Z",
            "2022-07-04T11:11:09.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn metas_and_block_ids() {
        let meta = br#"{"format":"vParquet4","blockID":"b27b0e53-66a0-4505-afd6-434ae3cd4a10","startTime":"1970-01-01T00:00:01Z","endTime":"1970-01-01T00:00:02Z","bloomShards":0}"#;
        let info = block_info("b", meta).unwrap();
        assert_eq!(
            (info.start_ns, info.end_ns, info.shards),
            (1_000_000_000, 2_000_000_000, 10)
        );
        assert!(block_info("b", br#"{"format":"vParquet5"}"#).is_none());
        assert!(block_info("b", b"not json").is_none());
        assert!(is_block_id("b27b0e53-66a0-4505-afd6-434ae3cd4a10"));
        assert!(!is_block_id("index.json.gz"));
        assert!(!is_block_id("B27B0E53-66A0-4505-AFD6-434AE3CD4A10"));
        assert_eq!(split_bucket("s3://b/p/q/"), ("s3://b", "p/q"));
        assert!(matches!(
            open_store("ftp://x", false),
            Err(BlocksError::Scheme(_))
        ));
    }

    #[test]
    fn merging_drops_duplicate_spans_newest_first() {
        let a = resource_spans(vec![
            span(1, 1, None, 10, vec![kv_str("v", "new")]),
            span(1, 2, Some(1), 20, vec![]),
        ]);
        let b = resource_spans(vec![
            span(1, 1, None, 10, vec![kv_str("v", "old")]),
            span(1, 3, Some(1), 30, vec![]),
        ]);
        let merged = merge([a, b].into_iter());
        let spans: Vec<&Span> = merged
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect();
        assert_eq!(spans.len(), 3);
        assert_eq!(
            spans[0].attributes[0].value.as_ref().unwrap().value,
            Some(observatory_schemas::otlp::common::any_value::Value::StringValue("new".into()))
        );
    }

    #[test]
    fn blocks_trace_has_the_postgresql_shape() {
        let id = [7u8; 16];
        let spans = resource_spans(vec![
            span(7, 1, None, 1_750_000_000_123_456_789, vec![]),
            span(
                7,
                2,
                Some(1),
                1_750_000_000_200_000_000,
                vec![
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.provider.name", "openai"),
                    kv_str("gen_ai.request.model", "gpt-4o"),
                    kv_int("gen_ai.usage.input_tokens", 1000),
                    kv_int("gen_ai.usage.output_tokens", 100),
                ],
            ),
        ]);
        let t = to_trace(&id, spans);
        assert_eq!(t.trace_id, "07".repeat(16));
        assert_eq!(t.span_count, 2);
        assert_eq!(t.roots.len(), 1);
        let root = &t.roots[0];
        assert_eq!(
            root.start_time, "2025-06-15T15:06:40.123456Z",
            "microseconds, as PostgreSQL keeps"
        );
        assert_eq!(root.service, "bot");
        assert_eq!(root.resource["service.name"], "bot");
        let call = root.children[0].llm.as_ref().unwrap();
        assert_eq!(call.model, "gpt-4o");
        assert_eq!(call.input_tokens, Some(1000));
        assert!(call.cost_usd.unwrap() > 0.0);
        assert_eq!(t.cost_usd, call.cost_usd.unwrap());
    }

    #[tokio::test]
    async fn finds_a_trace_split_over_blocks_and_caches_the_listing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let blocks = Blocks::with_store(store.clone(), Duration::from_secs(3600), 1 << 20);
        let tenant = "acme";
        let write = |traces: Vec<([u8; 16], Vec<ResourceSpans>)>, offset: u64| {
            let mut w = BlockWriter::new(traces.len() as u64, DEFAULT_ROW_GROUP_BYTES).unwrap();
            for (id, rs) in &traces {
                let batches = [&rs[..]];
                w.push(&TraceRow::merge(*id, &batches).unwrap()).unwrap();
            }
            w.finish(block_id(tenant, 0, offset, 1), tenant).unwrap()
        };
        let t1 = resource_spans(vec![span(1, 1, None, 1_000, vec![])]);
        let t1_more = resource_spans(vec![
            span(1, 2, Some(1), 2_000, vec![]),
            span(1, 1, None, 1_000, vec![]),
        ]);
        let t2 = resource_spans(vec![span(2, 9, None, 1_000, vec![])]);
        for block in [
            write(vec![([1; 16], t1), ([2; 16], t2.clone())], 0),
            write(vec![([1; 16], t1_more), ([2; 16], t2)], 10),
        ] {
            let folder = format!("{}/{}", block.meta.tenant_id, block.meta.block_id);
            for (name, data) in &block.objects {
                store
                    .put(&Path::from(format!("{folder}/{name}")), data.clone().into())
                    .await
                    .unwrap();
            }
        }
        let found = blocks.find(tenant, &[1; 16]).await.unwrap().unwrap();
        let count: usize = found
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        assert_eq!(count, 2, "both parts, the duplicate span once");
        assert!(blocks.find(tenant, &[3; 16]).await.unwrap().is_none());
        assert!(
            blocks.find("other", &[1; 16]).await.unwrap().is_none(),
            "another tenant's folder"
        );
        assert!(
            blocks.find("../acme", &[1; 16]).await.is_err(),
            "a tenant is never a path"
        );
        // Time pruning: a range before every block reads none.
        assert!(blocks
            .find_between(tenant, &[1; 16], Some((0, 10)))
            .await
            .unwrap()
            .is_none());
        // The listing is cached: a block deleted from the bucket is still
        // listed until the refresh, and its lookup forgets the list.
        assert_eq!(blocks.blocks(tenant).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn unknown_ids_are_remembered_and_a_tenant_has_bounded_lookups() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // Listed again on every lookup: only the negative cache can answer
        // without looking.
        let blocks = Blocks::with_store(store.clone(), Duration::ZERO, 1 << 20)
            .with_limits(Duration::from_secs(3600), 2);
        let tenant = "acme";
        assert!(blocks.find(tenant, &[3; 16]).await.unwrap().is_none());
        let mut w = BlockWriter::new(1, DEFAULT_ROW_GROUP_BYTES).unwrap();
        let t3 = resource_spans(vec![span(3, 1, None, 1_000, vec![])]);
        w.push(&TraceRow::merge([3; 16], &[&t3[..]]).unwrap())
            .unwrap();
        let block = w.finish(block_id(tenant, 0, 0, 1), tenant).unwrap();
        for (name, data) in &block.objects {
            let path = format!("{tenant}/{}/{name}", block.meta.block_id);
            store
                .put(&Path::from(path), data.clone().into())
                .await
                .unwrap();
        }
        assert!(
            blocks.find(tenant, &[3; 16]).await.unwrap().is_none(),
            "remembered as missing for BLOCKS_NOT_FOUND_TTL"
        );
        let fresh = Blocks::with_store(store.clone(), Duration::ZERO, 1 << 20);
        assert!(fresh.find(tenant, &[3; 16]).await.unwrap().is_some());
        // Two lookups in flight: a third is refused at once; another
        // tenant is not held up.
        let _first = blocks.lookup_permit(tenant).unwrap();
        let _second = blocks.lookup_permit(tenant).unwrap();
        assert!(matches!(
            blocks.find(tenant, &[4; 16]).await,
            Err(BlocksError::Busy(2))
        ));
        assert!(blocks.find("other", &[4; 16]).await.unwrap().is_none());
    }
}
