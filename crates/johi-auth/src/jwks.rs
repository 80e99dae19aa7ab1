//! JSON Web Key Sets: the public keys a JWT's signature is checked with, from a file read at
//! load or from an identity provider's URL, fetched in the background and refreshed.
//!
//! Only asymmetric keys are taken from a set (RSA, and EC on P-256): a symmetric `oct` key in
//! a published set would let anyone who can read the set sign tokens, and is the root of
//! the classic HS/RS algorithm confusion. A key is used only for the algorithm family it
//! belongs to, and only for the algorithm it declares (`alg`), when it declares one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::key::KeyHash;

/// Largest JWKS document accepted from a URL; real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one JWKS fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of key an algorithm needs; a key of another kind is never tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    EcP256,
}

/// The family a JWKS key must belong to for `alg`; `None` for algorithms no JWKS key serves
/// (HMAC above all).
fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256 => Some(Family::Rsa),
        Algorithm::ES256 => Some(Family::EcP256),
        Algorithm::HS256
        | Algorithm::HS384
        | Algorithm::HS512
        | Algorithm::ES384
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512
        | Algorithm::EdDSA => None,
    }
}

/// One verification key of a set.
struct SetKey {
    kid: Option<String>,
    /// The algorithm the key declares (`alg`), if any: then it verifies only that one.
    alg: Option<KeyAlgorithm>,
    family: Family,
    key: DecodingKey,
}

/// The usable keys of one JWKS document.
pub struct KeySet {
    keys: Vec<SetKey>,
    /// The SHA-256 of the document: a refetch that brings the same document keeps the set
    /// held (and the tokens it verified stay in the verifier's cache).
    document: KeyHash,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("(no kid)")),
            )
            .finish()
    }
}

/// What a key lookup found.
pub(crate) enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a DecodingKey),
    /// The token names a key the set does not hold: a refresh may bring it (rotation).
    UnknownKid,
    /// No key of the set can verify this token.
    NoKey,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys Johi can verify with (RSA, EC P-256, not
    /// marked for encryption). A document with none is an error: a set that verifies nothing
    /// is a mistake, not a configuration.
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: Vec<SetKey> = set.keys.iter().filter_map(set_key).collect();
        if keys.is_empty() {
            return Err(
                "the JWKS holds no usable key (RSA or EC P-256 signing keys are used; symmetric keys never)"
                    .into(),
            );
        }
        Ok(KeySet {
            keys,
            document: KeyHash::of_bytes(json),
        })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key (never true of a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn holds(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key for a token signed with `alg` naming `kid`. Without a `kid`, the set's one
    /// key of the right family is used, and none if there are several (guessing would try
    /// keys the issuer did not mean).
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let Some(family) = family_of(alg) else {
            return Lookup::NoKey;
        };
        let fits = |k: &&SetKey| {
            k.family == family && k.alg.is_none_or(|declared| declares(declared, alg))
        };
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) if fits(&key) => Lookup::Found(&key.key),
                Some(_) => Lookup::NoKey,
                None => Lookup::UnknownKid,
            },
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Lookup::Found(&key.key),
                    _ => Lookup::NoKey,
                }
            }
        }
    }
}

/// Whether a key declaring `declared` may verify `alg`.
fn declares(declared: KeyAlgorithm, alg: Algorithm) -> bool {
    matches!(
        (declared, alg),
        (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)
    )
}

fn set_key(jwk: &Jwk) -> Option<SetKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Family::EcP256,
        AlgorithmParameters::EllipticCurve(_)
        | AlgorithmParameters::OctetKey(_)
        | AlgorithmParameters::OctetKeyPair(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(SetKey {
        kid: jwk.common.key_id.clone(),
        alg: jwk.common.key_algorithm,
        family,
        key,
    })
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A JWKS served by an identity provider: fetched when the gateway starts, refreshed every
/// `refresh`, and refetched early when a token names a key the set does not hold (a key
/// rotation), at most once per `min_refetch`.
///
/// A failed fetch keeps the set already held, so an identity provider's outage does not
/// log everyone out. Fetches are single-flight: requests that need one wait for the one in
/// progress instead of starting their own.
pub struct RemoteJwks {
    url: http::Uri,
    refresh: Duration,
    min_refetch: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch started; held while fetching, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    client: HttpsClient,
    started: AtomicBool,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.url)
            .field("refresh", &self.refresh)
            .field("min_refetch", &self.min_refetch)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// A set to be fetched from `url` (`https://`, or `http://` for a local provider). No
    /// I/O happens until [`RemoteJwks::start`].
    pub fn new(url: http::Uri, refresh: Duration, min_refetch: Duration) -> Result<Self, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(FETCH_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(RemoteJwks {
            url,
            refresh,
            min_refetch,
            current: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
            client: Client::builder(TokioExecutor::new()).build(connector),
            started: AtomicBool::new(false),
        })
    }

    /// Fetches the set once (awaited, so the first requests find keys) and starts the
    /// periodic refresh. Idempotent. The refresh task holds only a weak reference and ends
    /// when the set is dropped (a reload replaced it), so nothing needs to wait for it.
    pub async fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.fetch().await;
        let weak: Weak<RemoteJwks> = Arc::downgrade(self);
        let refresh = self.refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(refresh).await;
                let Some(jwks) = weak.upgrade() else { break };
                jwks.fetch().await;
            }
        });
    }

    /// The set held now, if any fetch has succeeded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|guard| guard.clone())
    }

    /// The set after a refetch for a token naming `kid`, which the held set lacks. Refetches
    /// at most once per `min_refetch`; a request arriving while one is in flight waits for
    /// it and then looks again, so a burst of tokens signed with a new key costs one fetch.
    pub(crate) async fn refetch_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let mut last = self.last_fetch.lock().await;
        if let Some(keys) = self.keys().filter(|k| k.holds(kid)) {
            return Some(keys);
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return self.keys();
        }
        *last = Some(Instant::now());
        self.fetch_locked().await;
        self.keys()
    }

    /// One fetch, initial or periodic (never rate-limited: it is the schedule).
    async fn fetch(&self) {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_locked().await;
    }

    /// Fetches and installs the set; on failure logs and keeps the one held. The caller
    /// holds `last_fetch`.
    async fn fetch_locked(&self) {
        match tokio::time::timeout(FETCH_TIMEOUT, self.download()).await {
            Ok(Ok(set)) => {
                tracing::debug!(url = %self.url, keys = set.len(), "JWKS fetched");
                if let Ok(mut current) = self.current.write() {
                    // The same document again (most refreshes) keeps the set held, so the
                    // tokens it verified need no new check.
                    if current
                        .as_ref()
                        .is_none_or(|held| held.document != set.document)
                    {
                        *current = Some(Arc::new(set));
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed; the keys held are kept")
            }
            Err(_) => {
                tracing::warn!(url = %self.url, "JWKS fetch timed out; the keys held are kept")
            }
        }
    }

    async fn download(&self) -> Result<KeySet, String> {
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        KeySet::parse(&body)
    }
}
