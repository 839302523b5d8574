//! Reads of block objects, every byte counted in
//! `observatory_api_blocks_read_bytes_total`: whole small objects, the
//! tail of a data file, byte ranges of it (merged when close, fetched
//! concurrently), and data-file footers, decoded once and kept.
//!
//! What it guarantees: no read here fetches a whole data file; a footer
//! is fetched at most once per block while it stays in the bounded cache
//! (`BLOCKS_FOOTER_CACHE_BYTES`); a suffix range refused by the backend
//! falls back to a HEAD and a bounded range.

use super::list::BlockInfo;
use super::scan;
use super::{Blocks, BlocksError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use observatory_schemas::tempo::ranged::{footer_bytes, Footer, Lookup, TAIL};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Range requests of one step in flight at once.
const RANGE_CONCURRENCY: usize = 8;

/// Sorts `ranges` and merges those closer than `gap` bytes.
pub(super) fn merge_ranges(mut ranges: Vec<Range<u64>>, gap: u64) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end + gap => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// The bytes one search may read ([`Budget::reserve`] before each read).
#[derive(Debug)]
pub(super) struct Budget {
    max: u64,
    used: AtomicU64,
    refused: AtomicBool,
}

impl Budget {
    /// A budget of `max` bytes.
    pub(super) fn new(max: u64) -> Budget {
        Budget {
            max,
            used: AtomicU64::new(0),
            refused: AtomicBool::new(false),
        }
    }

    /// Takes `n` bytes, unless that would pass the budget: then nothing is
    /// taken, and the budget remembers it refused.
    pub(super) fn reserve(&self, n: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok();
        if !taken {
            self.refused.store(true, Ordering::Release);
        }
        taken
    }

    /// Gives back what a read reserved and did not use.
    pub(super) fn refund(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes taken.
    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Whether a read was refused: the search stopped short.
    pub(super) fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }
}

impl Blocks {
    /// A whole object.
    pub(super) async fn get(&self, path: &Path) -> Result<Bytes, object_store::Error> {
        let bytes = self.inner.store.get(path).await?.bytes().await?;
        self.inner.read_bytes.inc_by(bytes.len() as u64);
        Ok(bytes)
    }

    /// The last [`TAIL`] bytes of `path`: (the file's size, where they
    /// start, the bytes). Where a suffix range fails (Azure has none; some
    /// S3 servers refuse one longer than the object), a HEAD and a bounded
    /// range instead: once per block, as its footer is kept.
    pub(super) async fn tail(&self, path: &Path) -> Result<(u64, u64, Bytes), object_store::Error> {
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

    /// The bytes of `ranges` of `path`: ranges closer than `gap` merged
    /// into one request, requests run concurrently.
    pub(super) async fn get_ranges(
        &self,
        path: &Path,
        ranges: Vec<Range<u64>>,
        gap: u64,
    ) -> Result<Vec<(u64, Bytes)>, object_store::Error> {
        let store = &self.inner.store;
        let parts: Vec<(u64, Bytes)> =
            futures::stream::iter(merge_ranges(ranges, gap).into_iter().map(|r| async move {
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

    /// The kept footer of a block's data file, with the file's size.
    pub(super) fn kept_footer(&self, folder: &str, block: &str) -> Option<(u64, Footer)> {
        self.inner
            .footers
            .lock()
            .expect("footer cache lock")
            .get(&(folder.to_owned(), block.to_owned()))
    }

    /// Keeps a block's decoded footer.
    pub(super) fn keep_footer(&self, folder: &str, block: &str, len: u64, footer: &Footer) {
        let size = footer_bytes(footer);
        self.inner
            .footers
            .lock()
            .expect("footer cache lock")
            .insert(
                (folder.to_owned(), block.to_owned()),
                (len, footer.clone()),
                size,
            );
    }

    /// A block's footer: kept, else read and kept: exactly its bytes when
    /// the meta gives the file's and the footer's sizes (one read), else
    /// the file's tail, and the rest of the footer when it is longer. Each
    /// read is first reserved in `budget`; a refused one answers `None`.
    pub(super) async fn footer(
        &self,
        folder: &str,
        info: &BlockInfo,
        budget: &Budget,
    ) -> Result<Option<(u64, Footer)>, BlocksError> {
        let block = info.id.as_str();
        if let Some(kept) = self.kept_footer(folder, block) {
            return Ok(Some(kept));
        }
        let path = Path::from(format!(
            "{folder}/{block}/{}",
            observatory_schemas::tempo::meta::DATA
        ));
        let read = |source| BlocksError::Read {
            block: block.to_owned(),
            source,
        };
        if info.size > 0 && info.footer_size > 0 {
            // The footer and the 8 bytes after it (its length, `PAR1`).
            let range = info.size - 8 - info.footer_size..info.size;
            if !budget.reserve(range.end - range.start) {
                return Ok(None);
            }
            let mut parts = self.get_ranges(&path, vec![range.clone()], 0).await?;
            let bytes = parts.pop().map(|(_, b)| b).unwrap_or_default();
            let exact = scan::footer_range(info.size, range.start, &bytes)
                .ok()
                .filter(|r| r.start == range.start)
                .map(|_| bytes.slice(..bytes.len().saturating_sub(8)));
            if let Some(footer) = exact {
                let footer = tokio::task::spawn_blocking(move || scan::decode_footer(&footer))
                    .await?
                    .map_err(read)?;
                self.keep_footer(folder, block, info.size, &footer);
                return Ok(Some((info.size, footer)));
            }
            // The meta's sizes are not the file's: read it as any other.
        }
        if !budget.reserve(TAIL) {
            return Ok(None);
        }
        let (len, start, tail) = self.tail(&path).await?;
        budget.refund(TAIL.saturating_sub(tail.len() as u64));
        let range = scan::footer_range(len, start, &tail).map_err(read)?;
        let bytes = if range.start >= start {
            tail.slice((range.start - start) as usize..(range.end - start) as usize)
        } else {
            if !budget.reserve(range.end - range.start) {
                return Ok(None);
            }
            let mut parts = self.get_ranges(&path, vec![range], 0).await?;
            parts.pop().map(|(_, b)| b).unwrap_or_default()
        };
        let footer = tokio::task::spawn_blocking(move || scan::decode_footer(&bytes))
            .await?
            .map_err(read)?;
        self.keep_footer(folder, block, len, &footer);
        Ok(Some((len, footer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_it() {
        let b = Budget::new(100);
        assert!(b.reserve(60));
        assert!(!b.reserve(50));
        assert!(b.refused());
        b.refund(20);
        assert!(b.reserve(50));
        assert_eq!(b.used(), 90);
    }

    #[test]
    fn close_ranges_merge() {
        assert_eq!(
            merge_ranges(vec![30..40, 0..10, 12..20, 100..110], 2),
            vec![0..20, 30..40, 100..110]
        );
        assert_eq!(merge_ranges(vec![0..10, 5..8], 0), vec![0..10]);
    }
}
