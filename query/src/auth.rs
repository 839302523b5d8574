//! Who may ask what: JWTs checked on every `/api` request, before anything
//! else runs.
//!
//! Tokens are HS256 with `JWT_SECRET`, or RS256 / ES256 with a public key
//! (`JWT_PUBLIC_KEY_FILE`); claims `sub`, `tenant`, `role` (`viewer` or
//! `admin`) and `exp` are all required. A missing, malformed, badly signed
//! or expired token is a 401; a role that may not is a 403. The tenant of
//! the token scopes every query: no request parameter can name another.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and changes settings (budgets).
    Admin,
}

/// The claims of our tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who.
    pub sub: String,
    /// Whose data.
    pub tenant: String,
    /// What they may do.
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a token we accept: malformed, badly signed, expired, or claims missing.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A valid token whose role may not do this.
    #[error("role {have:?} may not do this (needs {need:?})")]
    Forbidden {
        /// The token's role.
        have: Role,
        /// The role needed.
        need: Role,
    },
}

/// The keys tokens are checked (and, with a secret, minted) with.
#[derive(Clone)]
pub struct Keys {
    algorithm: Algorithm,
    leeway: Duration,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
}

impl Keys {
    /// HS256 with a shared secret (checks and mints).
    pub fn hs256(secret: &[u8]) -> Keys {
        Keys {
            algorithm: Algorithm::HS256,
            leeway: Duration::from_secs(30),
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
        }
    }

    /// RS256 or ES256 with a PEM public key (checks only).
    pub fn public_key(algorithm: Algorithm, pem: &[u8]) -> Result<Keys, AuthError> {
        let decoding = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            _ => {
                return Err(AuthError::Invalid(
                    "only RS256 and ES256 use a public key".into(),
                ))
            }
        }
        .map_err(|e| AuthError::Invalid(format!("public key: {e}")))?;
        Ok(Keys {
            algorithm,
            leeway: Duration::from_secs(30),
            decoding,
            encoding: None,
        })
    }

    /// Sets the clock skew allowed on `exp` (default 30 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Keys {
        self.leeway = leeway;
        self
    }

    /// Checks `Authorization` (the header's value) and that the role may act
    /// as `need`.
    pub fn authorize(&self, authorization: Option<&str>, need: Role) -> Result<Claims, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let mut validation = Validation::new(self.algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = self.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if observatory_schemas::tenant::validate(&claims.tenant).is_err() {
            return Err(AuthError::Invalid(
                "the tenant claim is not a valid tenant".into(),
            ));
        }
        if claims.role < need {
            return Err(AuthError::Forbidden {
                have: claims.role,
                need,
            });
        }
        Ok(claims)
    }

    /// Mints a token (HS256 only).
    pub fn mint(
        &self,
        sub: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("minting needs JWT_SECRET".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            sub: sub.to_owned(),
            tenant: tenant.to_owned(),
            role,
            exp: (now + ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn the_auth_matrix() {
        let keys = Keys::hs256(b"secret");
        let viewer = keys
            .mint("ann", "acme", Role::Viewer, Duration::from_secs(3600))
            .unwrap();
        let admin = keys
            .mint("bob", "acme", Role::Admin, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(keys.authorize(None, Role::Viewer), Err(AuthError::Missing));
        assert_eq!(
            keys.authorize(Some("Basic x"), Role::Viewer),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            keys.authorize(Some("Bearer not.a.jwt"), Role::Viewer),
            Err(AuthError::Invalid(_))
        ));
        let other = Keys::hs256(b"another secret");
        let forged = other
            .mint("eve", "acme", Role::Admin, Duration::from_secs(3600))
            .unwrap();
        assert!(matches!(
            keys.authorize(Some(&bearer(&forged)), Role::Viewer),
            Err(AuthError::Invalid(_))
        ));
        let expired = Claims {
            sub: "ann".into(),
            tenant: "acme".into(),
            role: Role::Admin,
            exp: 1_000_000,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(matches!(
            keys.authorize(Some(&bearer(&expired)), Role::Viewer),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            keys.authorize(Some(&bearer(&viewer)), Role::Viewer)
                .unwrap()
                .tenant,
            "acme"
        );
        assert_eq!(
            keys.authorize(Some(&bearer(&viewer)), Role::Admin),
            Err(AuthError::Forbidden {
                have: Role::Viewer,
                need: Role::Admin
            })
        );
        assert_eq!(
            keys.authorize(Some(&bearer(&admin)), Role::Admin)
                .unwrap()
                .role,
            Role::Admin
        );
    }

    #[test]
    fn claims_are_required() {
        #[derive(Serialize)]
        struct NoTenant {
            sub: String,
            role: Role,
            exp: u64,
        }
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoTenant {
                sub: "x".into(),
                role: Role::Admin,
                exp: u64::MAX / 2,
            },
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        let keys = Keys::hs256(b"s");
        assert!(matches!(
            keys.authorize(Some(&bearer(&token)), Role::Viewer),
            Err(AuthError::Invalid(_))
        ));
        let bad_tenant = keys
            .mint(
                "x",
                "no spaces allowed",
                Role::Admin,
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(matches!(
            keys.authorize(Some(&bearer(&bad_tenant)), Role::Viewer),
            Err(AuthError::Invalid(_))
        ));
    }
}
