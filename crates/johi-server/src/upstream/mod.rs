//! The upstream side: a pool of keep-alive connections per provider, and the call that the
//! pipeline's retry loop makes for each attempt.
//!
//! Egress is done right: the URI's host is used for both TLS SNI and `Host`, and the
//! request carries only the headers the pipeline built for this destination.

mod pool;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use johi_core::exchange::UpstreamRequest;
use johi_core::model::{Provider, Target};
use johi_core::GatewayError;
use johi_pipeline::UpstreamCall;
use johi_providers::codec;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use pool::{DrivenBody, Lease, Pool};

/// Largest upstream error body kept to pass on to the client.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// A successful (2xx) upstream response, head received, body not yet read.
pub struct UpstreamResponse {
    /// The response; reading its body drives the connection it arrives on.
    pub response: Response<DrivenBody>,
    /// The provider that answered.
    pub provider: Arc<Provider>,
    /// When the whole exchange with the upstream must be over (the `total` timeout).
    pub deadline: Instant,
}

/// One connection pool per provider, built at config load.
#[derive(Clone, Default)]
pub struct Upstreams {
    pools: HashMap<String, Arc<Pool>>,
}

impl Upstreams {
    /// Builds a pool for each provider (TLS roots: Mozilla's, plus the provider's `ca_file`).
    pub fn build(providers: &[Arc<Provider>]) -> Result<Upstreams, Vec<String>> {
        let mut pools = HashMap::new();
        let mut errors = Vec::new();
        for provider in providers {
            match connector_for(provider) {
                Ok(connector) => {
                    let host = host_header(&provider.base_url);
                    pools.insert(provider.name.clone(), Arc::new(Pool::new(connector, host)));
                }
                Err(e) => errors.push(format!("providers.{}: {e}", provider.name)),
            }
        }
        if errors.is_empty() {
            Ok(Upstreams { pools })
        } else {
            Err(errors)
        }
    }
}

fn connector_for(
    provider: &Provider,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
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
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
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
        let pool = self
            .pools
            .get(&provider.name)
            .ok_or_else(|| GatewayError::Internal {
                detail: format!("no connection pool for provider '{}'", provider.name),
            })?;
        let uri = request.uri.ok_or_else(|| GatewayError::Internal {
            detail: "the pipeline built no upstream URL".into(),
        })?;
        let mut http_request = Request::post(uri.clone())
            .body(Full::new(request.body))
            .map_err(|e| GatewayError::Internal {
                detail: e.to_string(),
            })?;
        *http_request.headers_mut() = request.headers;

        let first_byte = provider.timeouts.first_byte;
        let exchange = send(pool, &uri, http_request);
        let (response, lease) = match tokio::time::timeout(first_byte, exchange).await {
            Err(_) => {
                return Err(GatewayError::UpstreamTimeout {
                    provider: provider.name.clone(),
                    phase: "first_byte",
                    millis: first_byte.as_millis() as u64,
                })
            }
            Ok(Err(SendError::Connect(e))) => {
                return Err(GatewayError::UpstreamConnect {
                    provider: provider.name.clone(),
                    detail: describe(e.as_ref()),
                })
            }
            Ok(Err(SendError::Exchange(e))) => {
                return Err(GatewayError::UpstreamProtocol {
                    provider: provider.name.clone(),
                    detail: describe(&e),
                })
            }
            Ok(Ok(sent)) => sent,
        };
        let deadline = started + provider.timeouts.total;
        let (parts, body) = response.into_parts();
        let response = Response::from_parts(parts, DrivenBody::new(body, lease));
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

/// Why an exchange produced no response head.
enum SendError {
    /// No connection could be opened (TCP or TLS).
    Connect(pool::ConnectError),
    /// The connection failed during the exchange.
    Exchange(hyper::Error),
}

/// Sends `request` on a pooled connection and waits for the response head. A reused
/// connection that the upstream closed before the request could be written (the race of
/// an idle-timeout close) is not the upstream's answer: the request goes once more, on a
/// new connection.
async fn send(
    pool: &Arc<Pool>,
    uri: &Uri,
    mut request: Request<pool::UpstreamBody>,
) -> Result<(Response<hyper::body::Incoming>, Lease), SendError> {
    let (mut lease, reused) = pool.checkout(uri).await.map_err(SendError::Connect)?;
    fit_request(&lease, pool, uri, &mut request);
    let mut error = match lease.send(request).await {
        Ok(response) => return Ok((response, lease)),
        Err(error) => error,
    };
    let Some(mut request) = error.take_message().filter(|_| reused) else {
        return Err(SendError::Exchange(error.into_error()));
    };
    let mut lease = Box::pin(pool.connect(uri))
        .await
        .map_err(SendError::Connect)?;
    fit_request(&lease, pool, uri, &mut request);
    match lease.send(request).await {
        Ok(response) => Ok((response, lease)),
        Err(error) => Err(SendError::Exchange(error.into_error())),
    }
}

/// Puts the request in the form its connection's protocol wants: HTTP/1.1 takes the path
/// in the request line and the authority in `Host`; HTTP/2 takes the absolute URI, from
/// which hyper makes `:authority`.
fn fit_request(lease: &Lease, pool: &Pool, uri: &Uri, request: &mut Request<pool::UpstreamBody>) {
    match lease {
        Lease::Exclusive(_) => {
            if let Some(path) = uri.path_and_query() {
                *request.uri_mut() = Uri::from(path.clone());
            }
            if let Some(host) = pool.host() {
                request.headers_mut().insert(HOST, host.clone());
            }
        }
        Lease::Shared(_) => {
            *request.uri_mut() = uri.clone();
            request.headers_mut().remove(HOST);
        }
    }
}

/// The `Host` header for `uri`: the host, and the port unless it is the scheme's default.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// Reads an upstream error response so it can be passed on (or retried elsewhere).
async fn read_error(
    response: Response<DrivenBody>,
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
            // A translated protocol's error body is put in OpenAI's shape, its status
            // kept: the client speaks OpenAI whatever the target.
            if let Some(translated) = codec::decode_error(provider.protocol, status.as_u16(), &body)
            {
                return GatewayError::UpstreamStatus {
                    provider: provider.name.clone(),
                    status,
                    body: Bytes::from(translated.to_string()),
                    json: true,
                };
            }
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
