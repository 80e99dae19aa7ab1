//! JSON Web Tokens: a bearer token signed by an identity provider, checked here and mapped
//! to an [`Identity`] through configured claims.
//!
//! What a token must pass, in order: a header naming one of the configured algorithms
//! (`none` is not an algorithm the parser knows); a key of that algorithm's own kind (an
//! HMAC secret never verifies an RS/ES token, a JWKS never supplies an HMAC secret); the
//! signature; `exp` (required) and `nbf` within the leeway; `iss` and `aud` equal to the
//! configured ones; and tenant claims that name tenants the config declares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use johi_core::{AuthMethod, Identity, RouteSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::jwks::{KeySet, Lookup, RemoteJwks};
use crate::key::KeyHash;
use crate::tenants::{intersect_models, TenantIndex, TenantVersion};

/// The algorithms Johi verifies, by their JOSE names.
pub const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("HS256", Algorithm::HS256),
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
];

/// Where the verification keys come from; exactly one source per config.
pub enum JwtKeys {
    /// A shared HMAC secret (HS256 only).
    Secret(Vec<u8>),
    /// A JWKS read from a file at load.
    Static(Arc<KeySet>),
    /// A JWKS fetched from the identity provider and refreshed.
    Remote(Arc<RemoteJwks>),
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeys::Secret(_) => f.write_str("Secret(…)"),
            JwtKeys::Static(set) => write!(f, "Static({set:?})"),
            JwtKeys::Remote(remote) => write!(f, "Remote({remote:?})"),
        }
    }
}

/// Which claims carry the tenant and user a token speaks for.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// Organisation (required in every token).
    pub organization: String,
    /// Team, if tokens carry one.
    pub team: Option<String>,
    /// Project, if tokens carry one.
    pub project: Option<String>,
    /// End user (often `sub`).
    pub user: Option<String>,
    /// A list of models the token further limits itself to.
    pub allowed_models: Option<String>,
}

/// Validated `auth.jwt` settings.
#[derive(Debug)]
pub struct JwtSettings {
    /// Required `iss`.
    pub issuer: String,
    /// Required member of `aud`.
    pub audience: String,
    /// Accepted `alg` values; each one fits `keys` (HS256 for a secret, RS256/ES256 for a
    /// JWKS), which config validation guarantees.
    pub algorithms: Vec<Algorithm>,
    /// Verification keys.
    pub keys: JwtKeys,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Claim mapping.
    pub claims: ClaimNames,
    /// The tenants a token may name.
    pub tenants: TenantIndex,
    /// How many verified tokens are remembered ([`DEFAULT_CACHE_SIZE`] by default); 0
    /// verifies every token every time.
    pub cache_size: usize,
}

/// Default `auth.jwt.cache_size`: a few megabytes at most, enough for every token of a
/// busy deployment's callers within their lifetimes.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Why a token was refused. Only logs and tests see it: the client gets one
/// [`johi_core::AuthFailure::Invalid`] for all, so a probe learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    /// Not a JWT, or a header that does not parse (`alg: none` among them).
    Malformed,
    /// An algorithm that is not configured, or that the keys cannot serve.
    Algorithm,
    /// A `kid` no held key has (after the rate-limited refetch), or no key fits.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` is missing or past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not include the configured audience.
    Audience,
    /// A tenant claim is missing, not a string, or names an undeclared tenant.
    Tenant,
    /// A claim has the wrong type (the user, the model list).
    Claim,
}

impl JwtRejection {
    /// A short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtRejection::Malformed => "malformed",
            JwtRejection::Algorithm => "algorithm",
            JwtRejection::UnknownKey => "unknown_key",
            JwtRejection::Signature => "signature",
            JwtRejection::Expired => "expired",
            JwtRejection::NotYetValid => "not_yet_valid",
            JwtRejection::Issuer => "issuer",
            JwtRejection::Audience => "audience",
            JwtRejection::Tenant => "tenant",
            JwtRejection::Claim => "claim",
        }
    }
}

/// Checks tokens against one config load's settings.
pub struct JwtVerifier {
    settings: JwtSettings,
    secret: Option<DecodingKey>,
    /// Tokens that passed every check; a reload builds a new verifier, and so a new cache.
    /// Behind a read-write lock: lookups (every request) share it, only a full check that
    /// passed writes.
    verified: RwLock<VerifiedTokens>,
    /// Full checks made (cache misses), for tests and diagnostics.
    full_checks: AtomicU64,
}

/// The verified tokens, by digest.
type VerifiedTokens = HashMap<KeyHash, Verified, foldhash::fast::RandomState>;

/// A token that passed every check, remembered by its SHA-256 digest so that the same
/// token presented again costs a digest and a lookup instead of a signature check (tens of
/// µs for RS256 or ES256) and a claims parse. The digest, not the token, is the key: a
/// lookup compares digests, so its timing says nothing about a stored token's bytes.
struct Verified {
    identity: Arc<Identity>,
    /// The token's `exp` plus the leeway, in seconds since the epoch: when it stops being
    /// served from here (and would be refused by a full check).
    valid_until: f64,
    /// For a fetched JWKS, the key set that verified the token: the entry holds only while
    /// that set is still the one in use, so a rotation that withdraws a key withdraws the
    /// tokens it signed at once. `None` for a secret or a JWKS file, which change only with
    /// a reload (and a new verifier).
    keys: Option<Arc<KeySet>>,
    /// The tenants the claims were mapped against (read before the check): the entry
    /// holds only while they are unchanged, so a team deleted or narrowed through the admin
    /// API applies to tokens already seen from the next request.
    tenants: TenantVersion,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether `token` has a JWT's shape: three base64url parts, the first two non-empty.
/// Johi's own keys (`sk-johi-…`) never do, so the two kinds of bearer token cannot be
/// mistaken for each other.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty() => {
            base64url_and_dots(token.as_bytes())
        }
        _ => false,
    }
}

/// Whether every byte is a dot or in the base64url alphabet (`A–Z a–z 0–9 - _`). Written
/// as branch-free range checks folded over the bytes, which the compiler turns into
/// vector code: a token is hundreds of bytes, checked on every request.
fn base64url_and_dots(bytes: &[u8]) -> bool {
    let outside = bytes.iter().fold(0u8, |outside, &b| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        let allowed = letter | digit | (b == b'-') | (b == b'_') | (b == b'.');
        outside | u8::from(!allowed)
    });
    outside == 0
}

impl JwtVerifier {
    /// A verifier over `settings`.
    pub fn new(settings: JwtSettings) -> Self {
        let secret = match &settings.keys {
            JwtKeys::Secret(secret) => Some(DecodingKey::from_secret(secret)),
            JwtKeys::Static(_) | JwtKeys::Remote(_) => None,
        };
        JwtVerifier {
            settings,
            secret,
            verified: RwLock::default(),
            full_checks: AtomicU64::new(0),
        }
    }

    /// The settings it checks against.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Fetches a remote JWKS and starts its refresh; nothing for other key sources.
    pub async fn start(&self) {
        if let JwtKeys::Remote(remote) = &self.settings.keys {
            remote.start().await;
        }
    }

    /// The identity `token` speaks for, as of `now`, or why it is refused. A token that
    /// passed before is answered from the cache of verified tokens while its `exp` holds,
    /// the tenants are unchanged and, for a fetched JWKS, the key set that verified it is
    /// still held.
    pub async fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<Identity>, JwtRejection> {
        if self.settings.cache_size == 0 {
            return self.verify_fully(token, now).await.map(|v| v.identity);
        }
        let digest = KeyHash::of(token);
        if let Some(identity) = self.cached(&digest, now) {
            return Ok(identity);
        }
        let verified = self.verify_fully(token, now).await?;
        let identity = verified.identity.clone();
        self.remember(digest, verified, now);
        Ok(identity)
    }

    /// How many verified tokens the cache holds (for tests and diagnostics).
    pub fn cached_tokens(&self) -> usize {
        self.read().len()
    }

    /// How many tokens were checked in full (not answered from the cache) so far.
    pub fn full_checks(&self) -> u64 {
        self.full_checks.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, VerifiedTokens> {
        // A panic while holding the lock leaves at worst a missing entry: keep using it.
        self.verified.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, VerifiedTokens> {
        self.verified
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity of a token verified before, if its entry still holds at `now`.
    fn cached(&self, digest: &KeyHash, now: SystemTime) -> Option<Arc<Identity>> {
        let now = seconds(now);
        let entries = self.read();
        let entry = entries.get(digest)?;
        if now > entry.valid_until || !self.settings.tenants.is_version(&entry.tenants) {
            return None;
        }
        if let (Some(verified_by), JwtKeys::Remote(remote)) = (&entry.keys, &self.settings.keys) {
            if !remote
                .keys()
                .is_some_and(|held| Arc::ptr_eq(&held, verified_by))
            {
                return None;
            }
        }
        Some(entry.identity.clone())
    }

    /// Remembers a verified token. A full cache first drops the entries past their time,
    /// then, if still full, everything (simpler than an LRU, and a token dropped costs
    /// only one more full check).
    fn remember(&self, digest: KeyHash, verified: Verified, now: SystemTime) {
        let now = seconds(now);
        let mut entries = self.write();
        if entries.len() >= self.settings.cache_size && !entries.contains_key(&digest) {
            entries.retain(|_, e| e.valid_until >= now);
            if entries.len() >= self.settings.cache_size {
                entries.clear();
            }
        }
        entries.insert(digest, verified);
    }

    /// Every check, with no cache: header, key, signature, claims.
    async fn verify_fully(&self, token: &str, now: SystemTime) -> Result<Verified, JwtRejection> {
        self.full_checks.fetch_add(1, Ordering::Relaxed);
        // Before the check: a tenant change while it runs leaves the result already out of
        // date for the cache, never wrongly current.
        let tenants = self.settings.tenants.version();
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        let alg = header.alg;
        if !self.settings.algorithms.contains(&alg) {
            return Err(JwtRejection::Algorithm);
        }
        let kid = header.kid.as_deref();
        let mut held = None;
        let key = match &self.settings.keys {
            JwtKeys::Secret(_) => match (&self.secret, alg) {
                (Some(secret), Algorithm::HS256) => secret,
                _ => return Err(JwtRejection::Algorithm),
            },
            JwtKeys::Static(set) => found(set.find(kid, alg))?,
            JwtKeys::Remote(remote) => {
                held = remote.keys();
                match held.as_ref().map(|set| set.find(kid, alg)) {
                    Some(Lookup::Found(key)) => key,
                    Some(Lookup::NoKey) => return Err(JwtRejection::UnknownKey),
                    Some(Lookup::UnknownKid) | None => {
                        return self
                            .verify_after_refetch(token, remote, kid, alg, now, tenants)
                            .await;
                    }
                }
            }
        };
        let (identity, valid_until) = self.check(token, key, alg, now)?;
        Ok(Verified {
            identity: Arc::new(identity),
            valid_until,
            keys: held,
            tenants,
        })
    }

    /// The slow path of a key rotation: refetch the set (rate-limited) and try again.
    async fn verify_after_refetch(
        &self,
        token: &str,
        remote: &RemoteJwks,
        kid: Option<&str>,
        alg: Algorithm,
        now: SystemTime,
        tenants: TenantVersion,
    ) -> Result<Verified, JwtRejection> {
        let set = remote
            .refetch_for(kid.unwrap_or_default())
            .await
            .ok_or(JwtRejection::UnknownKey)?;
        let key = found(set.find(kid, alg))?;
        let (identity, valid_until) = self.check(token, key, alg, now)?;
        Ok(Verified {
            identity: Arc::new(identity),
            valid_until,
            keys: Some(set),
            tenants,
        })
    }

    /// Signature and claims: the identity, and until when (`exp` plus the leeway, in
    /// seconds since the epoch) the token holds.
    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
        now: SystemTime,
    ) -> Result<(Identity, f64), JwtRejection> {
        let mut validation = Validation::new(alg);
        // Time, issuer and audience are checked below against the caller's clock, with
        // one leeway and one set of rules; the library checks the signature and `alg`.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => JwtRejection::Algorithm,
                _ => JwtRejection::Signature,
            })?
            .claims;
        let s = &self.settings;
        let now = seconds(now);
        let leeway = s.leeway.as_secs_f64();
        let valid_until = match claims.get("exp").and_then(Value::as_f64) {
            Some(exp) if now <= exp + leeway => exp + leeway,
            _ => return Err(JwtRejection::Expired),
        };
        match claims.get("nbf") {
            None => {}
            Some(nbf) => match nbf.as_f64() {
                Some(nbf) if nbf <= now + leeway => {}
                _ => return Err(JwtRejection::NotYetValid),
            },
        }
        if claims.get("iss").and_then(Value::as_str) != Some(s.issuer.as_str()) {
            return Err(JwtRejection::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == s.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&s.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(JwtRejection::Audience);
        }
        Ok((self.identity(&claims)?, valid_until))
    }

    /// The claims, mapped through config to a tenant the config declares.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, JwtRejection> {
        let names = &self.settings.claims;
        let text = |name: &Option<String>| -> Result<Option<String>, JwtRejection> {
            match name.as_ref().and_then(|n| claims.get(n)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(v)) if plain(v) => Ok(Some(v.clone())),
                Some(_) => Err(JwtRejection::Claim),
            }
        };
        let tenant = |name: &Option<String>| text(name).map_err(|_| JwtRejection::Tenant);
        let organization =
            tenant(&Some(names.organization.clone()))?.ok_or(JwtRejection::Tenant)?;
        let team = tenant(&names.team)?;
        let project = tenant(&names.project)?;
        let inherited = self
            .settings
            .tenants
            .allowance(&organization, team.as_deref(), project.as_deref())
            .ok_or(JwtRejection::Tenant)?;
        let own = match names.allowed_models.as_ref().and_then(|n| claims.get(n)) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|m| m.as_str().map(str::to_owned).ok_or(JwtRejection::Claim))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(JwtRejection::Claim),
        };
        Ok(Identity {
            method: AuthMethod::Jwt,
            credential_id: text(&Some("sub".to_owned()))?,
            organization: Some(organization),
            team,
            project,
            user: text(&names.user)?,
            allowed_models: intersect_models(inherited, own),
            allowed_routes: RouteSet::ALL,
        })
    }
}

/// `now` in seconds since the epoch, as JWT time claims count.
fn seconds(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn found(lookup: Lookup<'_>) -> Result<&DecodingKey, JwtRejection> {
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::UnknownKid | Lookup::NoKey => Err(JwtRejection::UnknownKey),
    }
}

/// Claim values end up in headers, logs and ledger keys: 1–256 visible ASCII characters.
fn plain(value: &str) -> bool {
    (1..=256).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
