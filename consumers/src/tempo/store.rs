//! Where blocks go: one object-store abstraction over every backend of
//! `OBJECT_STORE_URL`, and the one rule for writing a block into it.
//!
//! Backends: `s3://bucket[/prefix]` (AWS or any S3-compatible endpoint:
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, path-style requests unless
//! `S3_VIRTUAL_HOSTED_STYLE`), `gs://bucket[/prefix]`, `az://container[/prefix]`
//! and `file:///path` or a plain path (the default, under `DATA_DIR`).
//! Credentials come from each cloud's standard environment (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), read by the `object_store` builders.
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
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use observatory_schemas::tempo::meta::{Source, CLAIM, META, META_COMPACTED};
use observatory_schemas::tempo::write::Block;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// An `OBJECT_STORE_URL` that cannot be used.
#[derive(Debug, Error)]
pub enum StoreError {
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
}

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

/// The backends' own retries are short: a failed put comes back within
/// seconds as a transient error, and the sink's retry loop (which stops
/// polling, reports not-ready and backs off up to 10 s) takes over.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// A dead endpoint fails fast; a block upload has a minute. Set as config
/// keys (not a whole `ClientOptions`, which would drop what the builder
/// read from the environment, such as `AWS_ALLOW_HTTP`).
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
        let backend = |source| StoreError::Backend {
            url: url.to_owned(),
            source,
        };
        let (bucket, prefix) = split_bucket(url);
        let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") || url.starts_with("s3a://") {
            let mut b = AmazonS3Builder::from_env()
                .with_url(bucket)
                .with_virtual_hosted_style_request(s3_virtual_hosted_style)
                .with_retry(retry());
            for (k, v) in CLIENT_TIMEOUTS {
                b = b.with_config(AmazonS3ConfigKey::Client(k), v);
            }
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(backend)?, *v);
            }
            Arc::new(b.build().map_err(backend)?)
        } else if url.starts_with("gs://") {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(bucket)
                .with_retry(retry());
            for (k, v) in CLIENT_TIMEOUTS {
                b = b.with_config(GoogleConfigKey::Client(k), v);
            }
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(backend)?, *v);
            }
            Arc::new(b.build().map_err(backend)?)
        } else if url.starts_with("az://") || url.starts_with("azure://") {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(bucket)
                .with_retry(retry());
            for (k, v) in CLIENT_TIMEOUTS {
                b = b.with_config(AzureConfigKey::Client(k), v);
            }
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(backend)?, *v);
            }
            Arc::new(b.build().map_err(backend)?)
        } else if url.contains("://") && !url.starts_with("file://") {
            return Err(StoreError::Scheme(url.to_owned()));
        } else {
            let folder = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.to_owned(),
                source,
            })?;
            let local = LocalFileSystem::new_with_prefix(folder).map_err(backend)?;
            return Ok(BlockStore {
                store: Arc::new(local),
                description: format!("local folder {folder}"),
            });
        };
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(BlockStore {
            store,
            description: url.to_owned(),
        })
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
        assert_eq!(split_bucket("s3://b/p/q/"), ("s3://b", "p/q"));
        assert_eq!(split_bucket("gs://b"), ("gs://b", ""));
        assert!(matches!(
            BlockStore::open("ftp://x", false),
            Err(StoreError::Scheme(_))
        ));
    }
}
