//! Authentication: who is calling, proved by a credential.
//!
//! * [`key`] — Johi's virtual API keys: generated from 256 random bits, shown once, stored
//!   only as a SHA-256 hash.
//! * [`Authenticator`] — the credentials of one config load, checked against a request's
//!   headers. It answers with the caller's [`Identity`] or an [`AuthFailure`] that says as
//!   little as possible (an unknown, expired and revoked key all look the same).
//!
//! * [`KeyStore`] — keys issued at run time (the admin API), consulted by the same lookup.
//!
//! No I/O: the server and the `authenticate` processor call it with headers in hand.

pub mod key;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use johi_core::{AuthFailure, Identity, Route, RouteSet};
use subtle::ConstantTimeEq;

pub use key::{GeneratedKey, KeyHash, KEY_PREFIX};
pub use store::KeyStore;

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
const KEY_HEADERS: [&str; 2] = ["api-key", "x-api-key"];
/// The OpenAI SDKs' organisation header.
const ORGANIZATION_HEADER: &str = "openai-organization";

impl Authenticator {
    /// An authenticator over `keys`, with `public` the routes that accept requests without
    /// a credential. Keys must have distinct hashes (config validation guarantees it).
    pub fn new(keys: Vec<ApiKeyEntry>, public: RouteSet) -> Self {
        Authenticator {
            keys: keys
                .into_iter()
                .map(|k| (k.hash.clone(), Arc::new(k)))
                .collect(),
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

    /// The configured keys, for listings (`johi check`, the admin API).
    pub fn keys(&self) -> impl Iterator<Item = &ApiKeyEntry> {
        self.keys.values().map(Arc::as_ref)
    }

    /// Whether `route` accepts requests without a credential.
    pub fn is_public(&self, route: Route) -> bool {
        self.public.contains(route)
    }

    /// The caller of a request to `route` with these headers, as of `now`.
    ///
    /// On a public route a valid key still identifies its holder (for attribution), and a
    /// missing or invalid one makes the caller anonymous: the OpenAI SDKs refuse to run
    /// without *some* key, so a public route has to tolerate a placeholder. Anonymous may do
    /// everything a public route allows, so this grants nothing a key holder lacks.
    ///
    /// The check hashes the presented key first and looks the digest up, so its time does
    /// not depend on how much of the key matches a real one: an attacker who varies the key
    /// varies the digest unpredictably. The final comparison is constant-time as well.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        route: Route,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let identity = match self.key_identity(headers, now) {
            Ok(identity) => identity,
            Err(_) if self.is_public(route) => return Ok(self.anonymous.clone()),
            Err(failure) => return Err(failure),
        };
        if let (Some(claimed), Some(own)) = (
            headers
                .get(ORGANIZATION_HEADER)
                .and_then(|v| v.to_str().ok()),
            identity.organization.as_deref(),
        ) {
            if claimed != own {
                return Err(AuthFailure::MismatchedOrganization);
            }
        }
        Ok(identity)
    }

    /// The identity of the key the headers present, if it is one of ours and in force.
    fn key_identity(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let presented = presented_key(headers)?.ok_or(AuthFailure::Missing)?;
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
    for name in KEY_HEADERS {
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
