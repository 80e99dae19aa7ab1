//! OAuth2 access tokens for Google Cloud (Vertex AI) from a service-account key file: the
//! credential Johi presents *to* a provider, kept here because this crate already holds the
//! signing (ring) and the outbound HTTP client (see [`crate::jwks`]).
//!
//! The flow is Google's "JWT bearer" grant: an RS256-signed assertion (issuer = the service
//! account, audience = the key file's `token_uri`, scope = `cloud-platform`) is posted to
//! `token_uri`, which answers an access token valid `expires_in` seconds. [`TokenSource`]
//! caches it until a minute before it expires, and fetches single-flight: requests that
//! need a token while one is being fetched wait for that fetch.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

/// The OAuth2 scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The grant type of a JWT-bearer token request (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long before its expiry a cached token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long one token fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response accepted; real ones are about a kilobyte.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Lifetime asked for the assertion (Google's maximum).
const ASSERTION_SECS: u64 = 3600;

/// A parsed service-account key file (`"type": "service_account"`): who signs, with what,
/// and where tokens are obtained.
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: http::Uri,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: String,
}

impl ServiceAccountKey {
    /// Reads and checks a key file: JSON with `client_email`, `private_key` (a PKCS#8 PEM RSA
    /// key, as Google issues them) and an http(s) `token_uri`. Errors never quote the key.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// Parses a key file's contents (see [`ServiceAccountKey::from_file`]).
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_slice(json)
            .map_err(|e| format!("not a service-account key file: {e}"))?;
        let token_uri: http::Uri = file
            .token_uri
            .parse()
            .ok()
            .filter(|u: &http::Uri| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| format!("token_uri '{}' is not an http(s) URL", file.token_uri))?;
        let body: String = file
            .private_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "private_key is not a PEM key".to_owned())?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not a PKCS#8 RSA key: {e}"))?;
        Ok(ServiceAccountKey {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            token_uri,
            key,
        })
    }

    /// Where tokens are obtained.
    pub fn token_uri(&self) -> &http::Uri {
        &self.token_uri
    }

    /// The signed JWT assertion for a token request at `now` (Unix seconds).
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let (Some(kid), Some(obj)) = (&self.private_key_id, header.as_object_mut()) {
            obj.insert("kid".into(), serde_json::json!(kid));
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri.to_string(),
            "iat": now,
            "exp": now + ASSERTION_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "could not sign the assertion".to_owned())?;
        Ok(format!("{signing_input}.{}", b64.encode(signature)))
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A cached token and when it stops being used.
#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

/// Access tokens for one service account, fetched on demand and cached.
pub struct TokenSource {
    key: ServiceAccountKey,
    client: HttpsClient,
    cached: RwLock<Option<Cached>>,
    /// Held while a fetch is in progress, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `key`. No I/O happens until the first [`TokenSource::token`].
    pub fn new(key: ServiceAccountKey) -> Result<Self, String> {
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
        Ok(TokenSource {
            key,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cached: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// A valid access token: the cached one, or a fresh one (one fetch however many requests
    /// ask at once). An error says what failed, never with the key or a token in it.
    pub async fn token(&self) -> Result<Arc<str>, String> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _fetching = self.fetching.lock().await;
        // A fetch that finished while this request waited serves it too.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let (token, expires_in) = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| format!("the token endpoint {} timed out", self.key.token_uri))??;
        let lifetime = Duration::from_secs(expires_in).saturating_sub(REFRESH_MARGIN);
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(Cached {
                token: token.clone(),
                refresh_at: Instant::now() + lifetime,
            });
        }
        Ok(token)
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let cached = self.cached.read().ok()?;
        cached
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    async fn fetch(&self) -> Result<(Arc<str>, u64), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = self.key.assertion(now)?;
        let form = format!(
            "grant_type={}&assertion={assertion}",
            JWT_BEARER_GRANT.replace(':', "%3A")
        );
        let uri = &self.key.token_uri;
        let request = http::Request::post(uri.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("the token endpoint {uri} could not be reached: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_TOKEN_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the token endpoint {uri} broke off: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the token endpoint {uri} answered {status}"));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| format!("the token endpoint {uri} answered no JSON"))?;
        let token = parsed
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("the token endpoint {uri} answered no access_token"))?;
        let expires_in = parsed
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(3600);
        Ok((Arc::from(token), expires_in))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service-account key file around a throwaway RSA key made for these tests only.
    fn key_file(token_uri: &str) -> String {
        let pem = include_str!("../tests/fixtures/test-only-service-account.pem");
        serde_json::json!({
            "type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
            "private_key_id": "k1", "private_key": pem, "token_uri": token_uri,
        })
        .to_string()
    }

    #[test]
    fn an_assertion_is_a_signed_three_part_jwt_for_the_token_uri() {
        let file = key_file("https://oauth2.googleapis.com/token");
        let key = ServiceAccountKey::parse(file.as_bytes()).unwrap();
        let jwt = key.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["exp"], 1_700_003_600);
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        // The signature verifies with the key's public half.
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.key.public().as_ref(),
        );
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).unwrap();
    }

    #[test]
    fn bad_key_files_are_refused_without_quoting_the_key() {
        let err = ServiceAccountKey::parse(
            br#"{"client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n","token_uri":"https://x/token"}"#,
        )
        .unwrap_err();
        assert!(err.contains("PKCS#8"), "{err}");
        assert!(!err.contains("c2VjcmV0"));
        let err = ServiceAccountKey::parse(br#"{"client_email":"a"}"#).unwrap_err();
        assert!(err.contains("not a service-account key file"), "{err}");
    }
}
