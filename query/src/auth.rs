//! Who may ask what: JWTs checked on every `/api` request, before anything
//! else runs.
//!
//! Tokens are checked against a set of keys, any of which may sign: HS256
//! secrets (`JWT_SECRET`, the one tokens are minted with, and
//! `JWT_PREVIOUS_SECRETS`), a PEM public key (`JWT_PUBLIC_KEY_FILE`, RS256 or
//! ES256) and the keys of a JWKS file (`JWT_JWKS_FILE`, re-read when it
//! changes, and at once when a token names a key id it does not hold yet).
//! A token that names a key (`kid`) is checked with that key only; one that
//! names none, with every key of its algorithm. So a key is rolled without
//! downtime: add the new key, let issuers switch, remove the old one once
//! its tokens have expired (docs/deployment.md, "Security").
//!
//! Claims `sub`, `tenant`, `role` (`viewer` or `admin`) and `exp` are
//! required; `nbf` is checked when present; `iss` and `aud` are required
//! and pinned when `JWT_ISSUER` / `JWT_AUDIENCE` are set. The scheme of
//! `Authorization` is case-insensitive (RFC 9110: `Bearer`, `bearer`,
//! `BEARER`). A missing, malformed, badly signed, expired or not-yet-valid
//! token is a 401; a role that may not is a 403. The tenant of the token
//! scopes every query: no request parameter can name another.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and writes scores (annotations, evaluations).
    Editor,
    /// Reads, writes scores and changes settings (budgets, score configs).
    Admin,
}

impl Role {
    /// Its name in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
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

impl AuthError {
    /// A bounded label for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}

/// One key tokens may be signed with.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// Where it came from (JWKS keys are replaced when the file changes).
    from_jwks: bool,
}

/// A JWKS file and what it held when last read.
struct JwksFile {
    path: PathBuf,
    /// Its modification time and length when last read.
    seen: Mutex<(Option<SystemTime>, u64)>,
    /// When it was last read because of an unknown key id.
    forced: Mutex<Option<Instant>>,
}

/// The key id of an HS256 secret: the first 8 bytes of its SHA-256, hex.
/// Minted tokens carry it, so they are checked with their own secret.
pub fn secret_kid(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    let mut out = String::from("hs-");
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The keys tokens are checked (and, with a secret, minted) with.
#[derive(Clone)]
pub struct Keys {
    keys: Arc<RwLock<Vec<VerifyKey>>>,
    leeway: Duration,
    issuer: Option<String>,
    audience: Option<String>,
    /// The secret tokens are minted with, and its key id.
    encoding: Option<(String, EncodingKey)>,
    jwks: Option<Arc<JwksFile>>,
}

/// How often, at most, an unknown key id makes the JWKS file be read again.
const JWKS_FORCED_REREAD: Duration = Duration::from_secs(1);

impl Keys {
    fn empty() -> Keys {
        Keys {
            keys: Arc::new(RwLock::new(Vec::new())),
            leeway: Duration::from_secs(30),
            issuer: None,
            audience: None,
            encoding: None,
            jwks: None,
        }
    }

    /// No key yet: add them with the `with_*` methods.
    pub fn empty_for_config() -> Keys {
        Keys::empty()
    }

    /// HS256 with a shared secret (checks and mints).
    pub fn hs256(secret: &[u8]) -> Keys {
        Keys::empty().with_secret(secret)
    }

    /// Adds an HS256 secret. The first one added is the one tokens are
    /// minted with; the others are only checked (previous secrets).
    pub fn with_secret(mut self, secret: &[u8]) -> Keys {
        let kid = secret_kid(secret);
        if self.encoding.is_none() {
            self.encoding = Some((kid.clone(), EncodingKey::from_secret(secret)));
        }
        self.keys
            .write()
            .expect("no poisoned lock")
            .push(VerifyKey {
                kid: Some(kid),
                algorithm: Algorithm::HS256,
                decoding: DecodingKey::from_secret(secret),
                from_jwks: false,
            });
        self
    }

    /// RS256 or ES256 with a PEM public key (checks only).
    pub fn public_key(algorithm: Algorithm, pem: &[u8]) -> Result<Keys, AuthError> {
        Keys::empty().with_public_key(algorithm, pem)
    }

    /// Adds a PEM public key (RS256 or ES256; tokens naming no key id).
    pub fn with_public_key(self, algorithm: Algorithm, pem: &[u8]) -> Result<Keys, AuthError> {
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
        self.keys
            .write()
            .expect("no poisoned lock")
            .push(VerifyKey {
                kid: None,
                algorithm,
                decoding,
                from_jwks: false,
            });
        Ok(self)
    }

    /// Adds the keys of a JWKS file, read now and again whenever it
    /// changes ([`Keys::reload_jwks`]).
    pub fn with_jwks_file(mut self, path: PathBuf) -> Result<Keys, String> {
        self.jwks = Some(Arc::new(JwksFile {
            path,
            seen: Mutex::new((None, 0)),
            forced: Mutex::new(None),
        }));
        self.reload_jwks(true)?;
        Ok(self)
    }

    /// Pins `iss`: tokens must carry this issuer.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Keys {
        self.issuer = issuer;
        self
    }

    /// Pins `aud`: tokens must name this audience.
    pub fn with_audience(mut self, audience: Option<String>) -> Keys {
        self.audience = audience;
        self
    }

    /// Sets the clock skew allowed on `exp` and `nbf` (default 30 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Keys {
        self.leeway = leeway;
        self
    }

    /// How many keys tokens are checked against now.
    pub fn len(&self) -> usize {
        self.keys.read().expect("no poisoned lock").len()
    }

    /// No key at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the JWKS file again if it changed since it was last read (or
    /// always, with `force`), and replaces its keys. Returns whether it
    /// read it; an unreadable or invalid file keeps the keys it had (and is
    /// an error, which start-up reports and the refresher logs).
    pub fn reload_jwks(&self, force: bool) -> Result<bool, String> {
        let Some(file) = &self.jwks else {
            return Ok(false);
        };
        let path = file.path.display();
        // Held to the end: one reload at a time (the refresher and a forced
        // reload for an unknown kid), so an older read never replaces a
        // newer one.
        let mut seen = file.seen.lock().expect("no poisoned lock");
        let meta = std::fs::metadata(&file.path).map_err(|e| format!("{path}: {e}"))?;
        let stamp = (meta.modified().ok(), meta.len());
        if !force && *seen == stamp {
            return Ok(false);
        }
        let text = std::fs::read(&file.path).map_err(|e| format!("{path}: {e}"))?;
        let set: JwkSet =
            serde_json::from_slice(&text).map_err(|e| format!("{path}: not a JWKS: {e}"))?;
        let mut fresh = Vec::new();
        for jwk in &set.keys {
            let Some(algorithm) = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok())
            else {
                return Err(format!(
                    "{path}: key {:?} has no supported \"alg\"",
                    jwk.common.key_id
                ));
            };
            let decoding = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("{path}: key {:?}: {e}", jwk.common.key_id))?;
            fresh.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                decoding,
                from_jwks: true,
            });
        }
        let mut keys = self.keys.write().expect("no poisoned lock");
        keys.retain(|k| !k.from_jwks);
        keys.extend(fresh);
        *seen = stamp;
        Ok(true)
    }

    /// Re-reads the JWKS file (when set) every `every`, for as long as the
    /// process runs.
    pub fn spawn_jwks_refresher(&self, every: Duration) {
        if self.jwks.is_none() {
            return;
        }
        let keys = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match keys.reload_jwks(false) {
                    Ok(true) => tracing::info!(keys = keys.len(), "JWT_JWKS_FILE read again"),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "JWT_JWKS_FILE unreadable; keeping its keys")
                    }
                }
            }
        });
    }

    /// The token of an `Authorization` header value: the scheme `Bearer` in
    /// any case, then the token, blanks around it ignored.
    pub fn bearer(authorization: Option<&str>) -> Option<&str> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        (!token.is_empty()).then_some(token)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The keys a token with `header` may be signed with.
    fn candidates(&self, header: &Header) -> Vec<VerifyKey> {
        let keys = self.keys.read().expect("no poisoned lock");
        keys.iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                // A key id the token names but the key has none of: the
                // lone PEM key can still have signed it.
                (Some(_), None) => true,
                (None, _) => true,
            })
            .cloned()
            .collect()
    }

    /// Checks `Authorization` (the header's value) and that the role may act
    /// as `need`.
    pub fn authorize(&self, authorization: Option<&str>, need: Role) -> Result<Claims, AuthError> {
        let token = Keys::bearer(authorization).ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut candidates = self.candidates(&header);
        let named_unknown = header.kid.is_some()
            && !candidates
                .iter()
                .any(|k| k.kid.is_some() && k.kid == header.kid);
        if named_unknown && self.jwks.is_some() && self.may_force_reload() {
            // A key added to the JWKS file since it was last read.
            let _ = self.reload_jwks(true);
            candidates = self.candidates(&header);
        }
        if candidates.is_empty() {
            return Err(AuthError::Invalid(format!(
                "no key for this token (alg {:?}, kid {:?})",
                header.alg, header.kid
            )));
        }
        let validation = self.validation(header.alg);
        let mut last = None;
        let mut claims = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let claims = claims.ok_or_else(|| {
            AuthError::Invalid(last.map_or_else(|| "no key".into(), |e| e.to_string()))
        })?;
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

    fn may_force_reload(&self) -> bool {
        let Some(file) = &self.jwks else {
            return false;
        };
        let mut forced = file.forced.lock().expect("no poisoned lock");
        if forced.is_some_and(|at| at.elapsed() < JWKS_FORCED_REREAD) {
            return false;
        }
        *forced = Some(Instant::now());
        true
    }

    /// Mints a token (HS256 with the first secret), naming its key id and,
    /// when pinned, the issuer and audience.
    pub fn mint(
        &self,
        sub: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let (kid, key) = self
            .encoding
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("minting needs JWT_SECRET".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut claims = serde_json::json!({
            "sub": sub,
            "tenant": tenant,
            "role": role,
            "exp": (now + ttl).as_secs(),
            "iat": now.as_secs(),
        });
        if let Some(issuer) = &self.issuer {
            claims["iss"] = issuer.clone().into();
        }
        if let Some(audience) = &self.audience {
            claims["aud"] = audience.clone().into();
        }
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| AuthError::Invalid(e.to_string()))
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
    fn the_scheme_is_case_insensitive_and_blanks_are_ignored() {
        let keys = Keys::hs256(b"secret");
        let token = keys
            .mint("ann", "acme", Role::Viewer, Duration::from_secs(3600))
            .unwrap();
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER {token}"),
            format!("  Bearer   {token}  "),
            format!("Bearer\t{token}"),
        ] {
            assert!(
                keys.authorize(Some(&header), Role::Viewer).is_ok(),
                "{header:?}"
            );
        }
        assert_eq!(Keys::bearer(Some("Bearertoken")), None);
        assert_eq!(Keys::bearer(Some("Basic abc")), None);
        assert_eq!(Keys::bearer(Some("Bearer ")), None);
    }

    fn encode(claims: serde_json::Value, secret: &[u8], kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(Into::into);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut c = serde_json::json!({"sub": "ann", "tenant": "acme", "role": "viewer", "exp": now + 3600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn issuer_audience_and_not_before_are_checked() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let keys = Keys::hs256(b"secret")
            .with_issuer(Some("https://idp.example".into()))
            .with_audience(Some("observatory".into()));
        let ok = encode(
            claims(serde_json::json!({"iss": "https://idp.example", "aud": "observatory"})),
            b"secret",
            None,
        );
        assert!(keys.authorize(Some(&bearer(&ok)), Role::Viewer).is_ok());
        for bad in [
            serde_json::json!({"iss": "https://evil.example", "aud": "observatory"}),
            serde_json::json!({"iss": "https://idp.example", "aud": "other"}),
            serde_json::json!({"aud": "observatory"}),
            serde_json::json!({"iss": "https://idp.example"}),
            serde_json::json!({"iss": "https://idp.example", "aud": "observatory", "nbf": now + 3600}),
        ] {
            let token = encode(claims(bad.clone()), b"secret", None);
            assert!(
                matches!(
                    keys.authorize(Some(&bearer(&token)), Role::Viewer),
                    Err(AuthError::Invalid(_))
                ),
                "{bad}"
            );
        }
        // Without pins, iss and aud are not required; nbf is still checked.
        let plain = Keys::hs256(b"secret");
        let with_aud = encode(
            claims(serde_json::json!({"aud": "anything"})),
            b"secret",
            None,
        );
        assert!(plain
            .authorize(Some(&bearer(&with_aud)), Role::Viewer)
            .is_ok());
        let early = encode(
            claims(serde_json::json!({"nbf": now + 3600})),
            b"secret",
            None,
        );
        assert!(plain
            .authorize(Some(&bearer(&early)), Role::Viewer)
            .is_err());
        // Minted tokens carry the pins.
        let minted = keys
            .mint("x", "acme", Role::Viewer, Duration::from_secs(60))
            .unwrap();
        assert!(keys.authorize(Some(&bearer(&minted)), Role::Viewer).is_ok());
    }

    #[test]
    fn several_secrets_are_accepted_and_the_key_id_picks_one() {
        let keys = Keys::hs256(b"new secret").with_secret(b"old secret");
        let old = Keys::hs256(b"old secret")
            .mint("ann", "acme", Role::Viewer, Duration::from_secs(60))
            .unwrap();
        assert!(keys.authorize(Some(&bearer(&old)), Role::Viewer).is_ok());
        let no_kid = encode(claims(serde_json::json!({})), b"old secret", None);
        assert!(keys.authorize(Some(&bearer(&no_kid)), Role::Viewer).is_ok());
        // A token naming the new key but signed with the old one is refused.
        let lying = encode(
            claims(serde_json::json!({})),
            b"old secret",
            Some(&secret_kid(b"new secret")),
        );
        assert!(keys.authorize(Some(&bearer(&lying)), Role::Viewer).is_err());
        let retired = Keys::hs256(b"new secret");
        assert!(retired
            .authorize(Some(&bearer(&old)), Role::Viewer)
            .is_err());
    }

    #[test]
    fn a_jwks_file_is_read_again_when_it_changes() {
        use base64_engine::encode_url;
        let dir = std::env::temp_dir().join(format!("jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let jwk = |kid: &str, secret: &[u8]| serde_json::json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": encode_url(secret)});
        std::fs::write(
            &path,
            serde_json::json!({"keys": [jwk("one", b"first key")]}).to_string(),
        )
        .unwrap();
        let keys = Keys::empty().with_jwks_file(path.clone()).unwrap();
        let first = encode(claims(serde_json::json!({})), b"first key", Some("one"));
        assert!(keys.authorize(Some(&bearer(&first)), Role::Viewer).is_ok());
        // Rotation: the second key is added; a token naming it is accepted
        // at once (an unknown key id reads the file again).
        std::fs::write(
            &path,
            serde_json::json!({"keys": [jwk("one", b"first key"), jwk("two", b"second key")]})
                .to_string(),
        )
        .unwrap();
        let second = encode(claims(serde_json::json!({})), b"second key", Some("two"));
        assert!(keys.authorize(Some(&bearer(&second)), Role::Viewer).is_ok());
        // The first key is retired.
        std::fs::write(
            &path,
            serde_json::json!({"keys": [jwk("two", b"second key")]}).to_string(),
        )
        .unwrap();
        assert!(keys.reload_jwks(true).unwrap());
        assert!(keys.authorize(Some(&bearer(&first)), Role::Viewer).is_err());
        assert!(keys.authorize(Some(&bearer(&second)), Role::Viewer).is_ok());
        // A broken file keeps the keys it had.
        std::fs::write(&path, "not json").unwrap();
        assert!(keys.reload_jwks(true).is_err());
        assert!(keys.authorize(Some(&bearer(&second)), Role::Viewer).is_ok());
    }

    /// Base64url without padding, for the tests' JWKs.
    mod base64_engine {
        pub fn encode_url(bytes: &[u8]) -> String {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
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
