//! `observatory-plumbing`: the I/O plumbing that the collector, the
//! consumers and the API share, and that `observatory-schemas` may not hold
//! because it does I/O.
//!
//! - [`store`]: opening the object store `OBJECT_STORE_URL` names (S3, GCS,
//!   Azure Blob or a local folder), the same way in every binary.
//! - [`settings`]: the error a setting that cannot work is reported with,
//!   and list parsing.
//! - [`logging`]: `LOG_FORMAT` (`text` or `json`) and `RUST_LOG`.
//! - [`shutdown`]: SIGTERM and SIGINT.
//! - [`admin`]: the admin server (`/metrics`, `/healthz`, `/readyz`).
//!
//! What it guarantees: it knows no component (no Kafka, no blocks, no
//! tables); every binary gets the same behaviour and the same error texts
//! for the same setting.

pub mod admin;
pub mod logging;
pub mod settings;
pub mod shutdown;
pub mod store;
