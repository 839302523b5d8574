//! Where blocks go: one object-store abstraction over every backend of
//! `OBJECT_STORE_URL`, and the one rule for writing a block into it.
//!
//! The store is opened by `observatory_plumbing::store` (every backend of
//! `OBJECT_STORE_URL`, credentials from each cloud's environment), with a
//! pipeline stage's retries; a plain path is the default, under `DATA_DIR`.
//!
//! Writing a block: first [`BlockStore::claim`] its id (a create-only write
//! of the claim object: `If-None-Match: *` on S3, a hard link on a local
//! folder, the same on GCS and Azure), so no two writers ever share a block
//! folder; then [`BlockStore::put_block`] writes the objects in Tempo's
//! order with `meta.json` last, so a reader that lists the bucket never sees
//! half a block, and only if the writer still owns the partition just
//! before `meta.json`. A block is never rewritten: an id whose claim exists
//! belongs to its first writer, complete or not.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use observatory_plumbing::store::StoreOptions;
use observatory_schemas::tempo::meta::{Source, CLAIM, META, META_COMPACTED};
use observatory_schemas::tempo::write::Block;
use std::sync::Arc;

pub use observatory_plumbing::store::StoreError;

/// Whether a claim got its block id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id is this writer's.
    Won,
    /// Another writer (or an earlier attempt) has it.
    Taken,
}

/// What a block folder holds.
#[derive(Debug, Clone, Default)]
pub struct BlockState {
    /// Readers see the block (it has its meta).
    pub complete: bool,
    /// Its source records.
    pub sources: Vec<Source>,
}

/// Object storage for blocks.
#[derive(Clone)]
pub struct BlockStore {
    store: Arc<dyn ObjectStore>,
    /// Where, for logs.
    pub description: String,
}

impl BlockStore {
    /// Opens the store `url` names, configured from the environment.
    pub fn open(url: &str, s3_virtual_hosted_style: bool) -> Result<BlockStore, StoreError> {
        BlockStore::open_with(url, s3_virtual_hosted_style, &[])
    }

    /// Opens the store `url` names, configured from the environment and then
    /// `options` (the `object_store` keys of its backend, e.g.
    /// `aws_endpoint`): tests and tools point at a store without touching
    /// the process environment.
    pub fn open_with(
        url: &str,
        s3_virtual_hosted_style: bool,
        options: &[(&str, &str)],
    ) -> Result<BlockStore, StoreError> {
        let store = observatory_plumbing::store::open(
            url,
            StoreOptions::WRITER
                .virtual_hosted_style(s3_virtual_hosted_style)
                .keys(options),
        )?;
        let description = if url.contains("://") && !url.starts_with("file://") {
            url.to_owned()
        } else {
            format!(
                "local folder {}",
                url.strip_prefix("file://").unwrap_or(url)
            )
        };
        Ok(BlockStore { store, description })
    }

    /// Takes the block id `id` of `tenant_folder` for this writer: creates
    /// its claim object, which succeeds for one writer only. An id whose
    /// folder already holds a `meta.json` (a block written before claims
    /// existed) is taken too.
    pub async fn claim(
        &self,
        tenant_folder: &str,
        id: uuid::Uuid,
        writer: &str,
    ) -> Result<Claim, object_store::Error> {
        let folder = format!("{tenant_folder}/{id}");
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let body = PutPayload::from(format!("{writer}\n").into_bytes());
        match self
            .store
            .put_opts(&Path::from(format!("{folder}/{CLAIM}")), body, options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(Claim::Taken),
            Err(e) => return Err(e),
        }
        match self
            .store
            .head(&Path::from(format!("{folder}/{META}")))
            .await
        {
            Ok(_) => Ok(Claim::Taken),
            Err(object_store::Error::NotFound { .. }) => Ok(Claim::Won),
            Err(e) => Err(e),
        }
    }

    /// What the folder of block `id` holds: whether the block is complete
    /// (a `meta.json`, or Tempo's `meta.compacted.json`) and its source
    /// records.
    pub async fn block_state(
        &self,
        tenant_folder: &str,
        id: uuid::Uuid,
    ) -> Result<BlockState, object_store::Error> {
        let folder = format!("{tenant_folder}/{id}/");
        let mut state = BlockState::default();
        for path in self.list(&folder).await? {
            let Some(name) = path.strip_prefix(&folder) else {
                continue;
            };
            if name == META || name == META_COMPACTED {
                state.complete = true;
            } else if let Some(source) = Source::parse(name) {
                state.sources.push(source);
            }
        }
        Ok(state)
    }

    /// Writes every object of `block` under `<tenant folder>/<block id>/`
    /// (an id this writer claimed), `meta.json` last and only if
    /// `still_owned()` says so just before it; returns the bytes written,
    /// or `None` when the block was left incomplete for that reason.
    pub async fn put_block(
        &self,
        block: &Block,
        still_owned: impl Fn() -> bool,
    ) -> Result<Option<u64>, object_store::Error> {
        let folder = format!("{}/{}", block.meta.tenant_id, block.meta.block_id);
        let mut bytes = 0;
        for (name, data) in &block.objects {
            if name == META && !still_owned() {
                return Ok(None);
            }
            let path = Path::from(format!("{folder}/{name}"));
            self.store
                .put(&path, PutPayload::from_bytes(data.clone()))
                .await?;
            bytes += data.len() as u64;
        }
        Ok(Some(bytes))
    }

    /// The object store itself (the compactor's lifecycle steps).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Reads one object.
    pub async fn get(&self, path: &str) -> Result<Bytes, object_store::Error> {
        self.store.get(&Path::from(path)).await?.bytes().await
    }

    /// Deletes one object (tools and tests; the sink never deletes a block).
    pub async fn delete(&self, path: &str) -> Result<(), object_store::Error> {
        self.store.delete(&Path::from(path)).await
    }

    /// Lists the object names under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, object_store::Error> {
        use futures::TryStreamExt;
        let prefix = Path::from(prefix);
        self.store
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_prefixes() {
        assert!(matches!(
            BlockStore::open("ftp://x", false),
            Err(StoreError::Scheme(_))
        ));
    }
}
