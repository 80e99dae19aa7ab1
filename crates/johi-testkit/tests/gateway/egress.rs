//! Egress and ingress TLS: the upstream sees its own hostname in SNI and `Host`; Johi's
//! own listener serves TLS with ALPN.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use johi_testkit::Harness;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost`, written as PEM into `dir`.
pub(crate) fn localhost_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&[u8]],
) -> rustls::ServerConfig {
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[derive(Default, Debug, Clone)]
struct Seen {
    sni: Option<String>,
    host: Option<String>,
    /// `Host`, or for HTTP/2 the request's `:authority`.
    authority: Option<String>,
    authorization: Option<String>,
    version: Option<http::Version>,
    connections: u32,
    requests: u32,
}

/// A one-route TLS upstream that records the SNI and `Host` it was reached with; `alpn`
/// is what it offers (empty: no ALPN, so HTTP/1.1).
async fn tls_upstream(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&[u8]],
) -> (u16, Arc<Mutex<Seen>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, key, alpn)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            {
                let mut seen = record.lock().unwrap();
                seen.sni = tls.get_ref().1.server_name().map(str::to_owned);
                seen.connections += 1;
            }
            let record = record.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let record = record.clone();
                async move {
                    let header =
                        |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
                    {
                        let mut seen = record.lock().unwrap();
                        seen.host = header("host");
                        seen.authority = seen
                            .host
                            .clone()
                            .or_else(|| req.uri().authority().map(|a| a.to_string()));
                        seen.authorization = header("authorization");
                        seen.version = Some(req.version());
                        seen.requests += 1;
                    }
                    let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "tls-model",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "secure"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
                    let response = hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .into_owned(),
            );
        }
    });
    (port, seen)
}

/// A gateway config with model `s` on the TLS upstream at `port`, trusting `cert`.
fn trusting_config(port: u16, cert: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
auth: {{ public_routes: ["*"] }}
providers:
  secure: {{ base_url: "https://localhost:{port}/v1", api_key: sk-secure, ca_file: "{}" }}
models:
  s: {{ targets: [{{ provider: secure, model: tls-model }}] }}
"#,
        cert.display()
    )
}

#[tokio::test]
async fn the_upstream_sees_its_own_name_in_sni_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let (port, seen) = tls_upstream(&cert, &key, &[]).await;
    let h = Harness::start(&trusting_config(port, &cert)).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "s", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(
        seen.host.as_deref(),
        Some(format!("localhost:{port}").as_str())
    );
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-secure"));
}

#[tokio::test]
async fn an_upstream_that_negotiates_http2_is_reached_over_one_shared_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let (port, seen) = tls_upstream(&cert, &key, &[b"h2", b"http/1.1"]).await;
    let h = Harness::start(&trusting_config(port, &cert)).await;
    let body = json!({"model": "s", "messages": [{"role": "user", "content": "x"}]});
    let first = h.post("/v1/chat/completions", &body).await;
    assert_eq!(first.status(), 200);
    let answers =
        futures_util::future::join_all((0..4).map(|_| h.post("/v1/chat/completions", &body))).await;
    for r in answers {
        assert_eq!(r.status(), 200);
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "secure");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.version, Some(http::Version::HTTP_2));
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(
        seen.authority.as_deref(),
        Some(format!("localhost:{port}").as_str())
    );
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-secure"));
    assert_eq!(seen.requests, 5);
    assert_eq!(seen.connections, 1, "one multiplexed connection");
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let (port, seen) = tls_upstream(&cert, &key, &[]).await;
    let config = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
auth: {{ public_routes: ["*"] }}
providers:
  secure: {{ base_url: "https://localhost:{port}/v1", api_key: sk-secure }}
models:
  s: {{ targets: [{{ provider: secure, model: tls-model }}] }}
"#
    );
    let h = Harness::start(&config).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "s", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 502);
    assert!(
        seen.lock().unwrap().authorization.is_none(),
        "the key never left over an unverified connection"
    );
}

#[tokio::test]
async fn johi_serves_tls_with_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let config = format!(
        "{}\nserver: {{ listen: \"127.0.0.1:0\", tls: {{ cert_file: \"{}\", key_file: \"{}\" }} }}\n",
        johi_testkit::BASIC.replace("server: { listen: \"127.0.0.1:0\", reload_poll_interval: 100ms, drain_timeout: 10s }", ""),
        cert.display(),
        key.display()
    );
    let h = Harness::start(&config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string();
    let request = hyper::Request::post(format!(
        "https://localhost:{}/v1/chat/completions",
        h.gateway.addr().port()
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(body)))
    .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
}
