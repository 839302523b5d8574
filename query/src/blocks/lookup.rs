//! Trace by id in the blocks: Tempo's own lookup (tempo-blocks.md §5).
//!
//! What it guarantees:
//! - A lookup reads only the token's tenant folder (`default` is Tempo's
//!   `single-tenant`); a tenant that cannot be a folder name is refused.
//! - A block is skipped when its time range or its bloom shard rules the
//!   trace out; of the others' data files only the byte ranges that can
//!   hold the trace are read (the footer, kept decoded; a row group's
//!   offset index and TraceID column; then one page per column:
//!   `tempo::ranged`), never the whole file. The trace's spans are merged
//!   from every block holding it (a trace can be cut into several blocks),
//!   newest block first, duplicate span ids dropped.
//! - Lookups cannot be used to load object storage: a trace id no block
//!   holds is remembered as missing for `BLOCKS_NOT_FOUND_TTL`, and a
//!   tenant has at most `BLOCKS_TENANT_CONCURRENCY` lookups and searches
//!   in flight (one more is refused at once, [`BlocksError::Busy`]).
//! - A block deleted since the list was made (retention, compaction) is
//!   skipped, and the tenant's list is read again on the next request.

use super::list::BlockInfo;
use super::shape::merge;
use super::{Blocks, BlocksError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::tempo::bloom::{shard_of, Bloom};
use observatory_schemas::tempo::meta::{bloom_name, tenant_folder, DATA};
use observatory_schemas::tempo::ranged::{Lookup, Step};
use std::sync::Arc;
use std::time::Instant;

/// Blocks whose bloom shard and data file are read at once in one lookup.
const CONCURRENCY: usize = 8;
/// Byte ranges of one data file closer than this are read in one request.
const RANGE_GAP: u64 = 64 << 10;
/// Most remembered missing trace ids (a lookup each).
const MAX_NOT_FOUND: usize = 100_000;

impl Blocks {
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

    /// A permit for one lookup or search of `folder`'s blocks, or `Busy`.
    pub(super) fn lookup_permit(
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
        let known = self.kept_footer(folder, &block.id);
        let mut footer_kept = known.is_some();
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
                    self.keep_footer(folder, &block.id, lookup.file_len(), footer);
                    footer_kept = true;
                }
            }
            match step.map_err(|source| BlocksError::Read {
                block: block_id,
                source,
            })? {
                Step::Done(found) => return Ok(found),
                Step::Fetch(ranges) => match self.get_ranges(&path, ranges, RANGE_GAP).await {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{block, put, resource_spans, span};
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;
    use std::time::Duration;

    #[tokio::test]
    async fn finds_a_trace_split_over_blocks_and_caches_the_listing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let blocks = Blocks::with_store(store.clone(), Duration::from_secs(3600), 1 << 20);
        let tenant = "acme";
        let t1 = resource_spans(vec![span(1, 1, None, 1_000, vec![])]);
        let t1_more = resource_spans(vec![
            span(1, 2, Some(1), 2_000, vec![]),
            span(1, 1, None, 1_000, vec![]),
        ]);
        let t2 = resource_spans(vec![span(2, 9, None, 1_000, vec![])]);
        for b in [
            block(tenant, 0, vec![([1; 16], t1), ([2; 16], t2.clone())], None),
            block(tenant, 10, vec![([1; 16], t1_more), ([2; 16], t2)], None),
        ] {
            put(&store, &b, true).await;
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
        let t3 = resource_spans(vec![span(3, 1, None, 1_000, vec![])]);
        put(&store, &block(tenant, 0, vec![([3; 16], t3)], None), true).await;
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
