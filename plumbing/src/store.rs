//! Opening the object store `OBJECT_STORE_URL` names, the same way in every
//! binary: `s3://bucket[/prefix]` (AWS or any S3-compatible endpoint:
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`; path-style requests unless
//! `S3_VIRTUAL_HOSTED_STYLE`), `gs://bucket[/prefix]`,
//! `az://container[/prefix]`, and `file:///path` or a plain path (a local
//! folder, created if missing).
//!
//! What it guarantees: credentials and endpoints come from each cloud's
//! standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), read by the
//! `object_store` builders, then from the caller's explicit keys (tests and
//! tools point at a store without touching the process environment); a
//! dead endpoint fails fast (5 s connect timeout); retries are short, and
//! shorter for readers, who are users waiting ([`Patience`]); an unknown
//! scheme is refused, naming the setting. Knows nothing of what is stored.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
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

/// How long the backend's own retries may go on before an error is handed
/// back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A pipeline stage with its own retry loop (a sink, the compactor):
    /// 3 retries within 20 s, then the stage backs off and reports not ready.
    Writer,
    /// A user waiting for an answer: 2 retries within 10 s.
    Reader,
}

impl Patience {
    fn retry(self) -> RetryConfig {
        let (max_retries, secs) = match self {
            Patience::Writer => (3, 20),
            Patience::Reader => (2, 10),
        };
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries,
            retry_timeout: Duration::from_secs(secs),
        }
    }
}

/// How to open a store besides its URL.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions<'a> {
    /// S3: virtual-hosted-style requests (`S3_VIRTUAL_HOSTED_STYLE`).
    pub virtual_hosted_style: bool,
    /// The backend's retries.
    pub patience: Patience,
    /// The backend's `object_store` configuration keys (e.g.
    /// `aws_endpoint`), applied after the environment.
    pub keys: &'a [(&'a str, &'a str)],
}

impl StoreOptions<'static> {
    /// A pipeline stage's store, configured from the environment only.
    pub const WRITER: StoreOptions<'static> = StoreOptions {
        virtual_hosted_style: false,
        patience: Patience::Writer,
        keys: &[],
    };

    /// A reader's store, configured from the environment only.
    pub const READER: StoreOptions<'static> = StoreOptions {
        virtual_hosted_style: false,
        patience: Patience::Reader,
        keys: &[],
    };
}

impl<'a> StoreOptions<'a> {
    /// The same, with `S3_VIRTUAL_HOSTED_STYLE`.
    pub fn virtual_hosted_style(self, on: bool) -> StoreOptions<'a> {
        StoreOptions {
            virtual_hosted_style: on,
            ..self
        }
    }

    /// The same, with explicit backend keys.
    pub fn keys<'b>(self, keys: &'b [(&'b str, &'b str)]) -> StoreOptions<'b>
    where
        'a: 'b,
    {
        StoreOptions { keys, ..self }
    }
}

/// A dead endpoint fails fast; a large object has a minute. Set as config
/// keys (not a whole `ClientOptions`, which would drop what the builder
/// read from the environment, such as `AWS_ALLOW_HTTP`).
const CLIENT_TIMEOUTS: [(ClientConfigKey, &str); 2] = [
    (ClientConfigKey::ConnectTimeout, "5s"),
    (ClientConfigKey::Timeout, "60s"),
];

/// Splits `scheme://bucket/prefix` into (`scheme://bucket`, `prefix`).
pub fn split_bucket(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (
            &url[..after_scheme + i],
            url[after_scheme + i + 1..].trim_matches('/'),
        ),
        None => (url, ""),
    }
}

/// Opens the store `url` names.
pub fn open(url: &str, options: StoreOptions<'_>) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let backend = |source| StoreError::Backend {
        url: url.to_owned(),
        source,
    };
    let (bucket, prefix) = split_bucket(url);
    let retry = options.patience.retry();
    let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") || url.starts_with("s3a://") {
        let mut b = AmazonS3Builder::from_env()
            .with_url(bucket)
            .with_virtual_hosted_style_request(options.virtual_hosted_style)
            .with_retry(retry);
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(AmazonS3ConfigKey::Client(k), v);
        }
        for (k, v) in options.keys {
            b = b.with_config(k.parse().map_err(backend)?, *v);
        }
        Arc::new(b.build().map_err(backend)?)
    } else if url.starts_with("gs://") {
        let mut b = GoogleCloudStorageBuilder::from_env()
            .with_url(bucket)
            .with_retry(retry);
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(GoogleConfigKey::Client(k), v);
        }
        for (k, v) in options.keys {
            b = b.with_config(k.parse().map_err(backend)?, *v);
        }
        Arc::new(b.build().map_err(backend)?)
    } else if url.starts_with("az://") || url.starts_with("azure://") {
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_url(bucket)
            .with_retry(retry);
        for (k, v) in CLIENT_TIMEOUTS {
            b = b.with_config(AzureConfigKey::Client(k), v);
        }
        for (k, v) in options.keys {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_schemes() {
        assert_eq!(split_bucket("s3://b/p/q/"), ("s3://b", "p/q"));
        assert_eq!(split_bucket("s3://b"), ("s3://b", ""));
        assert_eq!(split_bucket("gs://b/x"), ("gs://b", "x"));
        assert!(matches!(
            open("ftp://x", StoreOptions::READER),
            Err(StoreError::Scheme(_))
        ));
        let bad_key = [("no_such_key", "1")];
        assert!(matches!(
            open("s3://b", StoreOptions::WRITER.keys(&bad_key)),
            Err(StoreError::Backend { .. })
        ));
    }

    #[test]
    fn local_folders_are_created() {
        let dir = std::env::temp_dir().join(format!("plumbing-store-{}", std::process::id()));
        let url = format!("file://{}/a/b", dir.display());
        open(&url, StoreOptions::WRITER).unwrap();
        assert!(dir.join("a/b").is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
