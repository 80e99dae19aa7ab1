//! The upstream side: one pooled keep-alive client per provider, and the call that the
//! pipeline's retry loop makes for each attempt.
//!
//! Egress is done right: the URI's host is used for both TLS SNI and `Host` (hyper sets
//! `Host`/`:authority` from the URI), and the request carries only the headers the
//! pipeline built for this destination.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use johi_core::exchange::UpstreamRequest;
use johi_core::model::{Provider, Target};
use johi_core::GatewayError;
use johi_pipeline::UpstreamCall;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The HTTP client type used for every provider.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Largest upstream error body kept to pass on to the client.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// A successful (2xx) upstream response, head received, body not yet read.
pub struct UpstreamResponse {
    /// The response, body streaming.
    pub response: Response<Incoming>,
    /// The provider that answered.
    pub provider: Arc<Provider>,
    /// When the whole exchange with the upstream must be over (the `total` timeout).
    pub deadline: Instant,
}

/// One client per provider, built at config load.
#[derive(Clone, Default)]
pub struct Upstreams {
    clients: HashMap<String, HttpClient>,
}

impl Upstreams {
    /// Builds a client for each provider (TLS roots: Mozilla's, plus the provider's `ca_file`).
    pub fn build(providers: &[Arc<Provider>]) -> Result<Upstreams, Vec<String>> {
        let mut clients = HashMap::new();
        let mut errors = Vec::new();
        for provider in providers {
            match client_for(provider) {
                Ok(client) => {
                    clients.insert(provider.name.clone(), client);
                }
                Err(e) => errors.push(format!("providers.{}: {e}", provider.name)),
            }
        }
        if errors.is_empty() {
            Ok(Upstreams { clients })
        } else {
            Err(errors)
        }
    }
}

fn client_for(provider: &Provider) -> Result<HttpClient, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &provider.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(provider.timeouts.connect));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// Describes a client error with its causes, which hyper nests several levels deep.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl UpstreamCall for Upstreams {
    type Response = UpstreamResponse;

    async fn call(
        &self,
        target: &Target,
        request: UpstreamRequest,
    ) -> Result<UpstreamResponse, GatewayError> {
        let provider = &target.provider;
        let started = Instant::now();
        let client = self
            .clients
            .get(&provider.name)
            .ok_or_else(|| GatewayError::Internal {
                detail: format!("no client for provider '{}'", provider.name),
            })?;
        let uri = request.uri.ok_or_else(|| GatewayError::Internal {
            detail: "the pipeline built no upstream URL".into(),
        })?;
        let mut http_request = Request::post(uri)
            .body(Full::new(request.body))
            .map_err(|e| GatewayError::Internal {
                detail: e.to_string(),
            })?;
        *http_request.headers_mut() = request.headers;

        let first_byte = provider.timeouts.first_byte;
        let response = match tokio::time::timeout(first_byte, client.request(http_request)).await {
            Err(_) => {
                return Err(GatewayError::UpstreamTimeout {
                    provider: provider.name.clone(),
                    phase: "first_byte",
                    millis: first_byte.as_millis() as u64,
                })
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(GatewayError::UpstreamConnect {
                    provider: provider.name.clone(),
                    detail: describe(&e),
                })
            }
            Ok(Err(e)) => {
                return Err(GatewayError::UpstreamProtocol {
                    provider: provider.name.clone(),
                    detail: describe(&e),
                })
            }
            Ok(Ok(response)) => response,
        };
        let deadline = started + provider.timeouts.total;
        if response.status().is_success() {
            return Ok(UpstreamResponse {
                response,
                provider: provider.clone(),
                deadline,
            });
        }
        Err(read_error(response, provider, deadline).await)
    }
}

/// Reads an upstream error response so it can be passed on (or retried elsewhere).
async fn read_error(
    response: Response<Incoming>,
    provider: &Provider,
    deadline: Instant,
) -> GatewayError {
    let status = response.status();
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let read = Limited::new(response.into_body(), MAX_ERROR_BODY).collect();
    match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(Ok(body)) => {
            let body = body.to_bytes();
            let json = json && serde_json::from_slice::<serde_json::Value>(&body).is_ok();
            GatewayError::UpstreamStatus {
                provider: provider.name.clone(),
                status,
                body,
                json,
            }
        }
        Ok(Err(e)) => GatewayError::UpstreamProtocol {
            provider: provider.name.clone(),
            detail: format!("error response {} could not be read: {e}", status.as_u16()),
        },
        Err(_) => GatewayError::UpstreamStatus {
            provider: provider.name.clone(),
            status: if status == StatusCode::OK {
                StatusCode::BAD_GATEWAY
            } else {
                status
            },
            body: Bytes::new(),
            json: false,
        },
    }
}
