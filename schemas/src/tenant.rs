//! Tenants: who sent the data.
//!
//! A tenant name travels in every Kafka message's `tenant` header and becomes
//! a folder name in object storage and a column in PostgreSQL, so it is kept
//! to a safe alphabet: ASCII letters, digits, `-`, `_` and `.`, 1 to 64
//! characters, not `.` or `..`. The folder of the tenant `default` is
//! Tempo's `single-tenant`, so that name is reserved: no tenant may be
//! called it, and the mapping from tenants to folders stays one to one
//! (a `single-tenant` token would otherwise read `default`'s blocks).

use thiserror::Error;

/// The tenant of a request that names none.
pub const DEFAULT_TENANT: &str = "default";

/// The request header (and gRPC metadata key) that names the tenant, as
/// Grafana Tempo, Loki and Mimir use it.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 64;

/// Names no tenant may have: `single-tenant` is the object-storage folder
/// of [`DEFAULT_TENANT`] (Grafana Tempo's name for data without tenants).
pub const RESERVED: &[&str] = &["single-tenant"];

/// Why a tenant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TenantError {
    /// Empty name.
    #[error("tenant must not be empty")]
    Empty,
    /// Too long.
    #[error("tenant is {0} characters long, the limit is {MAX_TENANT_LEN}")]
    TooLong(usize),
    /// A character outside the alphabet, or a name that is a path step.
    #[error("tenant may hold only ASCII letters, digits, '-', '_' and '.'")]
    BadCharacter,
    /// A name kept for the system.
    #[error("tenant {0:?} is reserved (it is the storage folder of the default tenant)")]
    Reserved(String),
}

/// Checks a tenant name.
///
/// ```
/// use observatory_schemas::tenant::validate;
/// assert!(validate("team-a.prod").is_ok());
/// assert!(validate("../etc").is_err());
/// assert!(validate("").is_err());
/// assert!(validate("single-tenant").is_err());
/// ```
pub fn validate(name: &str) -> Result<(), TenantError> {
    if name.is_empty() {
        return Err(TenantError::Empty);
    }
    if name.len() > MAX_TENANT_LEN {
        return Err(TenantError::TooLong(name.len()));
    }
    let alphabet_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !alphabet_ok || name == "." || name == ".." {
        return Err(TenantError::BadCharacter);
    }
    if RESERVED.contains(&name) {
        return Err(TenantError::Reserved(name.to_owned()));
    }
    Ok(())
}
