//! Where a test's Tempo blocks go: a fresh local folder or a fresh prefix in
//! the stack's S3-compatible server (`s3s-fs`, `integration/stack.sh`), with
//! the environment a sink needs to write there and a [`BlockStore`] for the
//! test to read back what it wrote.

use crate::unique;
use observatory_consumer::tempo::store::BlockStore;

/// Blocks' destination in a test, and how the test reads them back.
pub struct Bucket {
    /// `OBJECT_STORE_URL` and the backend's settings, for the sink.
    pub env: Vec<(&'static str, String)>,
    /// The same store, opened by the test.
    pub store: BlockStore,
}

/// A fresh folder under the temporary directory.
pub fn local_bucket() -> Bucket {
    let dir = std::env::temp_dir().join(unique("blocks"));
    let url = dir.display().to_string();
    Bucket {
        env: vec![("OBJECT_STORE_URL", url.clone())],
        store: BlockStore::open(&url, false).unwrap(),
    }
}

/// A fresh prefix in the stack's S3-compatible server: the sink reaches it
/// through `endpoint` (the server, or a proxy in front of it), the test
/// reads it directly.
pub fn s3_bucket(endpoint: &str) -> Bucket {
    let url = format!("s3://{}/{}", s3_bucket_name(), unique("t"));
    let direct = s3_env(&s3_endpoint());
    let options: Vec<(String, String)> = direct
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let options: Vec<(&str, &str)> = options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut env = s3_env(endpoint);
    env.push(("OBJECT_STORE_URL", url.clone()));
    Bucket {
        store: BlockStore::open_with(&url, false, &options).unwrap(),
        env,
    }
}

/// The stack's bucket: `S3_BUCKET`, else `observatory`.
pub fn s3_bucket_name() -> String {
    std::env::var("S3_BUCKET").unwrap_or_else(|_| "observatory".into())
}

/// The S3 settings of a process that reaches the stack's server at
/// `endpoint`.
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "us-east-1".into()),
        (
            "AWS_ACCESS_KEY_ID",
            std::env::var("S3_ACCESS_KEY").unwrap_or_else(|_| "observatory".into()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            std::env::var("S3_SECRET_KEY").unwrap_or_else(|_| "observatory-secret".into()),
        ),
    ]
}

/// The stack's S3 endpoint: `S3_ENDPOINT`, else http://127.0.0.1:9000.
pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}
