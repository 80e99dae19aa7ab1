//! The listener: accepts TCP (optionally TLS) connections and serves HTTP/1.1 and HTTP/2 on
//! them, with graceful shutdown that lets in-flight requests and streams finish.
//!
//! With `server.tls.client_ca`, the handshake asks for a client certificate and verifies it
//! against that CA: a certificate from anywhere else fails the handshake, and a verified one
//! is attached to every request of the connection as a [`PeerCertificate`], which
//! authentication maps to an identity. A client without a certificate still connects
//! (unless `client_auth: required`) and authenticates with a key or token.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use futures_util::future::Either;
use futures_util::FutureExt;
use http::{Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use johi_auth::PeerCertificate;
use johi_config::TlsFiles;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;

use crate::handlers;
use crate::Shared;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a TLS acceptor (ALPN: h2, http/1.1) from the configured PEM files.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let (cert_file, key_file) = (&files.cert_file, &files.key_file);
    let certs = pem_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certificates(ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if files.client_auth_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Accepts connections until `stop` flips, then returns the graceful-shutdown handle that
/// tracks the connections still open. With `proxy`, the OpenAI proxy routes skip the router
/// (see [`Front`]); the admin listener passes `None`.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    proxy: Option<Arc<Shared>>,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = Front {
            router: router.clone(),
            proxy: proxy.clone(),
            cert: None,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(
                    TokioIo::new(stream),
                    front,
                    builder,
                    watcher,
                    peer,
                ));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // Present only if the handshake verified it against client_ca.
                            let cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| PeerCertificate::verified(leaf.as_ref()));
                            let service = Front { cert, ..front };
                            serve_connection(TokioIo::new(tls), service, builder, watcher, peer)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    graceful
}

/// A connection's service: the client's verified certificate (if any) attached to each
/// request, then the request answered.
///
/// The three OpenAI proxy routes, which carry nearly all of a gateway's traffic, go straight
/// to their handler; everything else goes through the router. Routing a proxied request
/// through axum (path matching, its parameters, the method router, the catch-panic layer,
/// a boxed handler and its response mapping) cost about 5 000 instructions, a twentieth of
/// the whole request (callgrind, 2026-12-07). A panic on the direct path is answered as the
/// router's catch-panic layer answers it.
#[derive(Clone)]
pub(crate) struct Front {
    router: Router,
    /// The gateway's state for the direct routes; `None` routes everything (admin listener).
    proxy: Option<Arc<Shared>>,
    cert: Option<PeerCertificate>,
}

/// A request answered on the direct path.
type Direct = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// hyper's own service trait, which takes the request by reference: the connection calls
/// the same `Front` for every request. (Through tower's trait, hyper-util's adapter cloned
/// the service for each request and dropped it after: a router handle, the shared state and
/// the certificate; 4 % of a request's CPU, `bench/ab.sh`, 2026-12-08.)
impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Direct, <Router as tower::Service<Request<Incoming>>>::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(cert) = &self.cert {
            request.extensions_mut().insert(cert.clone());
        }
        let direct = match &self.proxy {
            Some(shared) if request.method() == Method::POST => {
                handlers::proxied_api(request.uri().path()).map(|api| (shared.clone(), api))
            }
            _ => None,
        };
        match direct {
            Some((shared, api)) => {
                let answer = handlers::proxy(shared, api, request.map(Body::new));
                Either::Left(Box::pin(AssertUnwindSafe(answer).catch_unwind().map(
                    |answered| Ok(answered.unwrap_or_else(handlers::panic_response)),
                )))
            }
            // The router is always ready (axum's `poll_ready` is `Ready`), and its future
            // owns what it needs: a clone of the router handle (one reference count) answers.
            None => Either::Right(self.router.clone().call(request)),
        }
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    service: Front,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
