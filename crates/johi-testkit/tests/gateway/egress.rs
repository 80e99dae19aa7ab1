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
fn localhost_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> rustls::ServerConfig {
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

#[derive(Default, Debug, Clone)]
struct Seen {
    sni: Option<String>,
    host: Option<String>,
    authorization: Option<String>,
}

/// A one-route TLS upstream that records the SNI and `Host` it was reached with.
async fn tls_upstream(cert: &std::path::Path, key: &std::path::Path) -> (u16, Arc<Mutex<Seen>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, key)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            record.lock().unwrap().sni = tls.get_ref().1.server_name().map(str::to_owned);
            let record = record.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let record = record.clone();
                async move {
                    let header =
                        |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
                    {
                        let mut seen = record.lock().unwrap();
                        seen.host = header("host");
                        seen.authorization = header("authorization");
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

#[tokio::test]
async fn the_upstream_sees_its_own_name_in_sni_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let (port, seen) = tls_upstream(&cert, &key).await;
    let config = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
providers:
  secure: {{ base_url: "https://localhost:{port}/v1", api_key: sk-secure, ca_file: "{}" }}
models:
  s: {{ targets: [{{ provider: secure, model: tls-model }}] }}
"#,
        cert.display()
    );
    let h = Harness::start(&config).await;
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
async fn an_untrusted_upstream_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let (port, seen) = tls_upstream(&cert, &key).await;
    let config = format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
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
