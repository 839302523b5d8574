//! A tenant's block list: what a lookup or a search may read.
//!
//! What it guarantees:
//! - Only blocks that exist are listed: a block exists once its
//!   `meta.json` does (the sink writes it last, so a half-written block is
//!   never read), and a `meta.json` we cannot read (another format, broken
//!   JSON) leaves its block out with a warning.
//! - The bucket is not listed per request: a tenant's list is kept for
//!   `BLOCKS_LIST_REFRESH`, and on a refresh only new blocks' metas are
//!   read. Kept lists are bounded ([`super::MAX_CACHED_BLOCKS`] blocks in
//!   all, least recently used tenants dropped first).
//! - Where Tempo's tenant index (`<tenant>/index.json.gz`, written by
//!   Tempo's compactor or ours) exists and was built less than
//!   `BLOCKS_TENANT_INDEX_MAX_AGE` ago, its live metas are the list: one
//!   read instead of a listing and a read per new block. A missing,
//!   unreadable or stale index falls back to listing. Blocks the index
//!   names whose objects are gone by the time they are read (compacted,
//!   retention) are skipped by the readers, never an error
//!   (the list is then made again on the next request).

use super::{Blocks, BlocksError, MAX_CACHED_BLOCKS};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use observatory_schemas::civil::parse_rfc3339_nanos as parse_rfc3339;
use observatory_schemas::tempo::meta::{BlockMeta, META};
use observatory_schemas::tempo::tenant_index::{TenantIndex, INDEX_JSON};
use observatory_schemas::tempo::ENCODING;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Metas fetched at once when a listing finds new blocks.
const META_CONCURRENCY: usize = 16;

/// What a lookup or a search needs of a block's `meta.json`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BlockInfo {
    /// The block id (its folder).
    pub(super) id: String,
    /// Earliest span start, ns (`i64::MIN` when unknown).
    pub(super) start_ns: i64,
    /// Latest span end, ns (`i64::MAX` when unknown).
    pub(super) end_ns: i64,
    /// Bloom shards.
    pub(super) shards: u64,
    /// `data.parquet`'s size, 0 when the meta does not say.
    pub(super) size: u64,
    /// Its footer's length, 0 when the meta does not say.
    pub(super) footer_size: u64,
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
    #[serde(default)]
    size: u64,
    #[serde(default)]
    footer_size: u64,
}

fn info(
    id: &str,
    format: &str,
    start: &str,
    end: &str,
    shards: u64,
    size: u64,
    footer_size: u64,
) -> Option<BlockInfo> {
    if format != ENCODING {
        return None;
    }
    Some(BlockInfo {
        id: id.to_owned(),
        // A time we cannot read never rules a block out.
        start_ns: parse_rfc3339(start).unwrap_or(i64::MIN),
        end_ns: parse_rfc3339(end).unwrap_or(i64::MAX),
        // Tempo reads 0 as the legacy 10 shards.
        shards: if shards == 0 { 10 } else { shards },
        size,
        // A footer length that cannot fit the file is not used.
        footer_size: if footer_size + 12 <= size {
            footer_size
        } else {
            0
        },
    })
}

pub(super) fn block_info(id: &str, meta: &[u8]) -> Option<BlockInfo> {
    let meta: MetaJson = serde_json::from_slice(meta).ok()?;
    info(
        id,
        &meta.format,
        &meta.start_time,
        &meta.end_time,
        meta.bloom_shards,
        meta.size,
        meta.footer_size,
    )
}

/// A live block of a tenant index.
fn indexed_info(meta: &BlockMeta) -> Option<BlockInfo> {
    info(
        &meta.block_id.to_string(),
        &meta.format,
        &meta.start_time,
        &meta.end_time,
        u64::from(meta.bloom_shards),
        meta.size,
        u64::from(meta.footer_size),
    )
}

/// A canonical lowercase UUID, as Tempo names block folders.
pub(super) fn is_block_id(name: &str) -> bool {
    name.len() == 36
        && name.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// A tenant's kept list.
pub(super) struct Listing {
    at: Instant,
    used: u64,
    blocks: Arc<Vec<BlockInfo>>,
}

/// Newest first (by end), then by id: the order every reader takes.
fn sorted(mut blocks: Vec<BlockInfo>) -> Vec<BlockInfo> {
    blocks.sort_by(|a, b| b.end_ns.cmp(&a.end_ns).then(a.id.cmp(&b.id)));
    blocks
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Blocks {
    /// Drops a tenant's kept list, so the next reader lists again.
    pub(super) fn forget(&self, folder: &str) {
        self.inner
            .listings
            .lock()
            .expect("listing lock")
            .1
            .remove(folder);
    }

    /// The tenant's blocks, newest first: kept while fresh, else from a
    /// fresh tenant index, else listed again (only new blocks' metas read).
    pub(super) async fn blocks(&self, folder: &str) -> Result<Arc<Vec<BlockInfo>>, BlocksError> {
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
        let blocks = match self.indexed(folder).await {
            Some(blocks) => blocks,
            None => self.listed(folder, known).await?,
        };
        Ok(self.keep(folder, sorted(blocks)))
    }

    /// The live blocks of the tenant index, when it exists and is fresh.
    async fn indexed(&self, folder: &str) -> Option<Vec<BlockInfo>> {
        let max_age = self.inner.index_max_age;
        if max_age.is_zero() {
            return None;
        }
        let path = Path::from(format!("{folder}/{INDEX_JSON}"));
        let bytes = match self.get(&path).await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "tenant index unreadable; listing the bucket");
                return None;
            }
        };
        let index = match TenantIndex::from_json_gz(&bytes) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "tenant index undecodable; listing the bucket");
                return None;
            }
        };
        let created = index.created_unix_nanos();
        let age = now_ns().saturating_sub(created);
        if created == 0 || age < 0 || age as u128 > max_age.as_nanos() {
            tracing::debug!(created_at = %index.created_at, "tenant index stale; listing the bucket");
            return None;
        }
        Some(index.meta.iter().filter_map(indexed_info).collect())
    }

    /// Lists the tenant folder; metas of blocks in `known` are not read again.
    async fn listed(
        &self,
        folder: &str,
        known: HashMap<String, BlockInfo>,
    ) -> Result<Vec<BlockInfo>, BlocksError> {
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
        let fetched: Vec<Option<BlockInfo>> = futures::stream::iter(ids.into_iter().map(|id| {
            let known = known.get(&id).cloned();
            let path = Path::from(format!("{folder}/{id}/{META}"));
            async move {
                if let Some(b) = known {
                    return Ok(Some(b));
                }
                match self.get(&path).await {
                    Ok(bytes) => {
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
        Ok(fetched.into_iter().flatten().collect())
    }

    /// Keeps a tenant's list, dropping the least recently used tenants'
    /// lists past the memory bound.
    fn keep(&self, folder: &str, blocks: Vec<BlockInfo>) -> Arc<Vec<BlockInfo>> {
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
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{block, put, resource_spans, span};
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt};
    use observatory_schemas::civil::rfc3339_nanos;
    use std::time::Duration;

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
        let meta = br#"{"format":"vParquet4","blockID":"b27b0e53-66a0-4505-afd6-434ae3cd4a10","startTime":"1970-01-01T00:00:01Z","endTime":"1970-01-01T00:00:02Z","bloomShards":0,"size":90,"footerSize":20}"#;
        let info = block_info("b", meta).unwrap();
        assert_eq!(
            (
                info.start_ns,
                info.end_ns,
                info.shards,
                info.size,
                info.footer_size
            ),
            (1_000_000_000, 2_000_000_000, 10, 90, 20)
        );
        assert!(block_info("b", br#"{"format":"vParquet5"}"#).is_none());
        assert!(block_info("b", b"not json").is_none());
        assert!(is_block_id("b27b0e53-66a0-4505-afd6-434ae3cd4a10"));
        assert!(!is_block_id("index.json.gz"));
        assert!(!is_block_id("B27B0E53-66A0-4505-AFD6-434AE3CD4A10"));
    }

    /// A fresh tenant index is the list (no listing: a block only the
    /// index names is read, one it does not name is not); a stale one, or
    /// none, falls back to listing the bucket.
    #[tokio::test]
    async fn a_fresh_tenant_index_replaces_the_listing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let tenant = "acme";
        let indexed = block(
            tenant,
            0,
            vec![(
                [1; 16],
                resource_spans(vec![span(1, 1, None, 1_000, vec![])]),
            )],
            None,
        );
        let listed = block(
            tenant,
            10,
            vec![(
                [2; 16],
                resource_spans(vec![span(2, 1, None, 1_000, vec![])]),
            )],
            None,
        );
        // The indexed block has no meta.json: a listing cannot see it.
        put(&store, &indexed, false).await;
        put(&store, &listed, true).await;
        let write_index = |created_ns: i64| {
            let store = store.clone();
            let meta = indexed.meta.clone();
            async move {
                let index = TenantIndex::new(created_ns, vec![meta], vec![]);
                store
                    .put(
                        &Path::from(format!("{tenant}/{INDEX_JSON}")),
                        index.to_json_gz().into(),
                    )
                    .await
                    .unwrap();
            }
        };
        write_index(now_ns()).await;
        let fresh = Blocks::with_store(store.clone(), Duration::ZERO, 1 << 20);
        assert!(fresh.find(tenant, &[1; 16]).await.unwrap().is_some());
        assert!(
            fresh.find(tenant, &[2; 16]).await.unwrap().is_none(),
            "not in the index: not read"
        );
        // Stale: listed again.
        write_index(now_ns() - 3_600_000_000_000).await;
        let stale = Blocks::with_store(store.clone(), Duration::ZERO, 1 << 20);
        assert!(stale.find(tenant, &[2; 16]).await.unwrap().is_some());
        assert!(stale.find(tenant, &[1; 16]).await.unwrap().is_none());
        // Unreadable: listed again.
        store
            .put(
                &Path::from(format!("{tenant}/{INDEX_JSON}")),
                b"not gzip".to_vec().into(),
            )
            .await
            .unwrap();
        let broken = Blocks::with_store(store.clone(), Duration::ZERO, 1 << 20);
        assert!(broken.find(tenant, &[2; 16]).await.unwrap().is_some());
    }

    /// A block the index names whose objects were deleted since is
    /// skipped, not an error.
    #[tokio::test]
    async fn an_indexed_block_deleted_since_is_skipped() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let tenant = "acme";
        let gone = block(
            tenant,
            0,
            vec![(
                [1; 16],
                resource_spans(vec![span(1, 1, None, 1_000, vec![])]),
            )],
            None,
        );
        let kept = block(
            tenant,
            10,
            vec![(
                [1; 16],
                resource_spans(vec![span(1, 2, None, 2_000, vec![])]),
            )],
            None,
        );
        put(&store, &kept, true).await;
        let index = TenantIndex::new(now_ns(), vec![gone.meta.clone(), kept.meta.clone()], vec![]);
        store
            .put(
                &Path::from(format!("{tenant}/{INDEX_JSON}")),
                index.to_json_gz().into(),
            )
            .await
            .unwrap();
        let blocks = Blocks::with_store(store.clone(), Duration::from_secs(60), 1 << 20);
        let found = blocks.find(tenant, &[1; 16]).await.unwrap().unwrap();
        assert_eq!(found[0].scope_spans[0].spans.len(), 1);
    }
}
