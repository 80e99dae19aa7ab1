//! Authentication: who is calling, proved by a credential.
//!
//! * [`key`] — Johi's virtual API keys: generated from 256 random bits, shown once, stored
//!   only as a SHA-256 hash.
//! * [`jwt`] — JSON Web Tokens from an identity provider, verified with a secret or a JWKS
//!   ([`jwks`]: a file, or a URL fetched and refreshed in the background).
//! * [`mtls`] — TLS client certificates the listener verified, mapped to identities by name.
//! * [`Authenticator`] — the credentials of one config load, checked against a request's
//!   headers and peer certificate. It answers with the caller's [`Identity`] or an
//!   [`AuthFailure`] that says as little as possible (an unknown, expired and revoked key
//!   all look the same; so do every kind of bad token).
//!
//! * [`google`] — the other direction: OAuth2 tokens Johi presents to Vertex AI, minted
//!   from a service-account key file.
//! * [`KeyStore`] — keys issued at run time (the admin API), consulted by the same lookup.
//!
//! The only I/O is a JWKS fetch, in the background or, when a token names a key the set
//! lacks, once per rate-limit interval on behalf of the requests that wait for it.

pub mod google;
pub mod jwks;
pub mod jwt;
pub mod key;
pub mod mtls;
mod store;
pub mod tenants;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName};
use johi_core::{AuthFailure, Identity, Route, RouteSet};
use subtle::ConstantTimeEq;

pub use jwt::{JwtSettings, JwtVerifier};
pub use key::{GeneratedKey, KeyHash, KEY_PREFIX};
pub use mtls::{CertificateName, MtlsIdentities, PeerCertificate};
pub use store::KeyStore;
pub use tenants::TenantIndex;

/// One virtual API key as configured: its hash, never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    /// Stable ID, recorded in audit and usage records in place of the secret.
    pub id: String,
    /// SHA-256 of the key.
    pub hash: KeyHash,
    /// Who the key speaks for (its `credential_id` is `id`).
    pub identity: Arc<Identity>,
    /// After this instant the key is refused.
    pub expires_at: Option<SystemTime>,
    /// A revoked key is refused, and kept in config so the refusal is deliberate.
    pub revoked: bool,
    /// Free-form labels for operators (owner, ticket); never used for decisions.
    pub metadata: Vec<(String, String)>,
}

/// The credentials of one config load and the routes that need none.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: HashMap<KeyHash, Arc<ApiKeyEntry>>,
    jwt: Option<Arc<JwtVerifier>>,
    mtls: MtlsIdentities,
    public: RouteSet,
    anonymous: Arc<Identity>,
    /// Keys issued at run time, looked up after the config's own.
    runtime: Option<KeyStore>,
}

impl Default for Authenticator {
    /// No keys and no public route: every request is refused.
    fn default() -> Self {
        Authenticator::new(Vec::new(), RouteSet::NONE)
    }
}

/// Headers a client may carry its key in, in the order they are looked at: OpenAI's SDKs
/// send `Authorization: Bearer`, Azure's `api-key`, Anthropic's `x-api-key`.
const KEY_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
];
/// The OpenAI SDKs' organisation header.
const ORGANIZATION_HEADER: HeaderName = HeaderName::from_static("openai-organization");

impl Authenticator {
    /// An authenticator over `keys`, with `public` the routes that accept requests without
    /// a credential. Keys must have distinct hashes (config validation guarantees it).
    pub fn new(keys: Vec<ApiKeyEntry>, public: RouteSet) -> Self {
        Authenticator {
            keys: keys
                .into_iter()
                .map(|k| (k.hash.clone(), Arc::new(k)))
                .collect(),
            jwt: None,
            mtls: MtlsIdentities::default(),
            public,
            anonymous: Arc::new(Identity::anonymous()),
            runtime: None,
        }
    }

    /// Also accepts the keys in `store` (issued through the admin API). The store is shared,
    /// so keys added to or removed from it later count from the next request on.
    pub fn with_key_store(mut self, store: KeyStore) -> Self {
        self.runtime = Some(store);
        self
    }

    /// Whether a config key already uses this ID (the admin API refuses to issue it again).
    pub fn has_key_id(&self, id: &str) -> bool {
        self.keys.values().any(|k| k.id == id)
    }

    /// Also accepts JWTs checked by `verifier` (bearer tokens of a JWT's shape).
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        self.jwt = Some(Arc::new(verifier));
        self
    }

    /// Also identifies callers by a verified TLS client certificate.
    pub fn with_mtls(mut self, identities: MtlsIdentities) -> Self {
        self.mtls = identities;
        self
    }

    /// Starts what the credentials need in the background: the JWKS fetch and refresh.
    /// Called once per config load by the server, before the load serves requests.
    pub async fn start(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.start().await;
        }
    }

    /// The configured keys, for listings (`johi check`, the admin API).
    pub fn keys(&self) -> impl Iterator<Item = &ApiKeyEntry> {
        self.keys.values().map(Arc::as_ref)
    }

    /// The JWT settings, if JWTs are accepted (for `johi check`).
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_deref()
    }

    /// The certificate identities (for `johi check`).
    pub fn mtls(&self) -> &MtlsIdentities {
        &self.mtls
    }

    /// Whether `route` accepts requests without a credential.
    pub fn is_public(&self, route: Route) -> bool {
        self.public.contains(route)
    }

    /// The caller of a request to `route` with these headers and, on a TLS connection whose
    /// client presented one, this verified certificate, as of `now`.
    ///
    /// A credential in a header (a key, or a token of a JWT's shape in `Authorization:
    /// Bearer`) decides alone: if it is invalid the request is refused even when the
    /// connection carries a certificate, so a client never silently runs as someone other
    /// than the credential it sent. Without one, the certificate's mapped identity is used;
    /// a verified certificate that maps to none is an invalid credential.
    ///
    /// On a public route a valid key still identifies its holder (for attribution), and a
    /// missing or invalid one makes the caller anonymous: the OpenAI SDKs refuse to run
    /// without *some* key, so a public route has to tolerate a placeholder. Anonymous may do
    /// everything a public route allows, so this grants nothing a key holder lacks.
    ///
    /// The check hashes the presented key first and looks the digest up, so its time does
    /// not depend on how much of the key matches a real one: an attacker who varies the key
    /// varies the digest unpredictably. The final comparison is constant-time as well.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
        route: Route,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let identity = match self.credential_identity_now(headers, peer, now) {
            Some(identity) => identity,
            None => self.jwt_identity(headers, now).await,
        };
        self.admit(headers, route, identity)
    }

    /// [`Authenticator::authenticate`] when it needs no wait, which is every time but for a
    /// JWT (its keys may have to be fetched): `None` for a JWT, to be checked by
    /// `authenticate`. Keys, certificates and missing credentials are decided here, without a
    /// future to allocate.
    pub fn authenticate_now(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
        route: Route,
        now: SystemTime,
    ) -> Option<Result<Arc<Identity>, AuthFailure>> {
        let identity = self.credential_identity_now(headers, peer, now)?;
        Some(self.admit(headers, route, identity))
    }

    /// The caller, given what the credential proved: anonymous on a public route for a
    /// missing or invalid one, and refused if it claims another organisation than its own.
    fn admit(
        &self,
        headers: &HeaderMap,
        route: Route,
        identity: Result<Arc<Identity>, AuthFailure>,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let identity = match identity {
            Ok(identity) => identity,
            Err(_) if self.is_public(route) => return Ok(self.anonymous.clone()),
            Err(failure) => return Err(failure),
        };
        if let (Some(claimed), Some(own)) = (
            headers
                .get(&ORGANIZATION_HEADER)
                .and_then(|v| v.to_str().ok()),
            identity.organization.as_deref(),
        ) {
            if claimed != own {
                return Err(AuthFailure::MismatchedOrganization);
            }
        }
        Ok(identity)
    }

    /// The identity the request's credential speaks for, in the order of precedence the
    /// [`Authenticator::authenticate`] docs give; `None` for a JWT, which
    /// [`Authenticator::jwt_identity`] verifies.
    fn credential_identity_now(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
        now: SystemTime,
    ) -> Option<Result<Arc<Identity>, AuthFailure>> {
        let token = match presented_key(headers) {
            Ok(token) => token,
            Err(failure) => return Some(Err(failure)),
        };
        Some(match token {
            Some(token) => match &self.jwt {
                Some(_) if jwt::looks_like_jwt(token) => return None,
                _ => self.key_identity(token, now),
            },
            None => match peer {
                Some(cert) => self.mtls.identify(cert).ok_or(AuthFailure::Invalid),
                None => Err(AuthFailure::Missing),
            },
        })
    }

    /// The identity of the JWT presented (the credential [`Authenticator::credential_identity_now`]
    /// leaves to it).
    async fn jwt_identity(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let (Some(token), Some(jwt)) = (presented_key(headers)?, &self.jwt) else {
            return Err(AuthFailure::Invalid);
        };
        jwt.verify(token, now).await.map_err(|rejection| {
            tracing::debug!(reason = rejection.as_str(), "JWT refused");
            AuthFailure::Invalid
        })
    }

    /// The identity of the key presented, if it is one of ours and in force.
    fn key_identity(&self, presented: &str, now: SystemTime) -> Result<Arc<Identity>, AuthFailure> {
        let hash = KeyHash::of(presented);
        // Config keys first, then run-time keys: both are a lookup by digest.
        let entry = self
            .keys
            .get(&hash)
            .cloned()
            .or_else(|| self.runtime.as_ref().and_then(|store| store.get(&hash)))
            .filter(|e| bool::from(e.hash.as_bytes().ct_eq(hash.as_bytes())))
            .ok_or(AuthFailure::Invalid)?;
        if entry.revoked || entry.expires_at.is_some_and(|at| now >= at) {
            return Err(AuthFailure::Invalid);
        }
        Ok(entry.identity.clone())
    }
}

/// The key a request presents, if any. A header that is present but unusable (not text,
/// `Authorization` in a scheme other than Bearer, empty) counts as an invalid credential
/// rather than none, so a client's mistake is not mistaken for an anonymous request.
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, AuthFailure> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthFailure::Invalid)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Invalid)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthFailure::Invalid);
        }
        return Ok(Some(token));
    }
    for name in &KEY_HEADERS {
        if let Some(value) = headers.get(name) {
            let token = value.to_str().map_err(|_| AuthFailure::Invalid)?.trim();
            if token.is_empty() {
                return Err(AuthFailure::Invalid);
            }
            return Ok(Some(token));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
