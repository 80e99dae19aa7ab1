//! Authentication and authorisation over real HTTP: virtual keys in every header a client
//! may use, one indistinguishable 401 for every bad key, 403 for what a key may not use,
//! attribution of every request to its tenant, and revocation by reload.

use johi_auth::KeyHash;
use johi_testkit::Harness;
use reqwest::RequestBuilder;
use serde_json::{json, Value};

const WEB: &str = "sk-johi-web-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BATCH: &str = "sk-johi-batch-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const EXPIRED: &str = "sk-johi-expired-ccccccccccccccccccccccccccccccccccccccc";
const REVOKED: &str = "sk-johi-revoked-ddddddddddddddddddddddddddddddddddddddd";
const EMBED_ONLY: &str = "sk-johi-embed-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// Tenants, five keys and (by `{public}`) the public routes; `{revoked}` toggles `web`.
fn config(public: &str, web_revoked: bool) -> String {
    let h = |k: &str| KeyHash::of(k).to_string();
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", reload_poll_interval: 100ms }}
enrich: {{ default_organization: org-from-default }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}] }}
  e: {{ targets: [{{ provider: mock, model: mock-embed }}] }}
tenants:
  acme:
    teams:
      search:
        allowed_models: [m, e]
        projects: {{ web: {{}}, batch: {{ allowed_models: [e] }} }}
  globex: {{}}
auth:
  public_routes: [{public}]
  api_keys:
    - {{ id: web, hash: "{}", owner: acme/search/web, user: alice, revoked: {web_revoked} }}
    - {{ id: batch, hash: "{}", owner: acme/search/batch }}
    - {{ id: expired, hash: "{}", owner: globex, expires_at: "2020-01-01T00:00:00Z" }}
    - {{ id: revoked, hash: "{}", owner: globex, revoked: true }}
    - {{ id: embed-only, hash: "{}", owner: globex, allowed_routes: [/v1/embeddings] }}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
        h(WEB),
        h(BATCH),
        h(EXPIRED),
        h(REVOKED),
        h(EMBED_ONLY)
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn post(h: &Harness, path: &str, body: &Value) -> RequestBuilder {
    h.client.post(h.url(path)).json(body)
}

/// Sends a prepared request; its status and JSON body.
async fn answer(request: RequestBuilder) -> (u16, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` to `path` with `key` as a bearer token; status and JSON body.
async fn call(h: &Harness, path: &str, body: &Value, key: &str) -> (u16, Value) {
    answer(post(h, path, body).bearer_auth(key)).await
}

/// GETs `path` with `key` as a bearer token; status and JSON body.
async fn get(h: &Harness, path: &str, key: &str) -> (u16, Value) {
    answer(h.client.get(h.url(path)).bearer_auth(key)).await
}

#[tokio::test]
async fn a_key_in_any_client_header_is_served_and_charged_to_its_tenant() {
    let h = Harness::start(&config("", false)).await;
    let sends = [
        post(&h, "/v1/chat/completions", &chat("m")).bearer_auth(WEB),
        post(&h, "/v1/chat/completions", &chat("m")).header("api-key", WEB),
        post(&h, "/v1/chat/completions", &chat("m")).header("x-api-key", WEB),
    ];
    for send in sends {
        let r = send.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-johi-organization"],
            "acme",
            "the key's organisation, not the configured default"
        );
    }
    for seen in h.mock.requests() {
        assert_eq!(seen.headers["authorization"], "Bearer sk-mock-key");
        assert_eq!(seen.headers["x-johi-organization"], "acme");
        for name in ["api-key", "x-api-key"] {
            assert!(
                !seen.headers.contains_key(name),
                "{name} never goes upstream"
            );
        }
    }
    let records = h.finish().await;
    assert_eq!(records.len(), 3);
    for r in records {
        assert_eq!(r["organization"], "acme");
        assert_eq!(r["team"], "search");
        assert_eq!(r["project"], "web");
        assert_eq!(r["user"], "alice");
        assert_eq!(r["auth"], "api_key");
        assert_eq!(r["credential_id"], "web");
    }
}

#[tokio::test]
async fn every_bad_key_gets_the_same_401_and_nothing_reaches_the_provider() {
    let h = Harness::start(&config("", false)).await;
    let mut tampered = WEB.to_owned();
    tampered.pop();
    tampered.push('b');
    let mut bodies = Vec::new();
    for key in [EXPIRED, REVOKED, tampered.as_str(), "sk-johi-unknown", "x"] {
        let r = post(&h, "/v1/chat/completions", &chat("m"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{key}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.headers().contains_key("x-request-id"));
        bodies.push(r.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "unknown, expired, revoked and tampered keys are indistinguishable: {bodies:?}"
    );
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "Incorrect API key provided.");

    let (status, body) = answer(post(&h, "/v1/chat/completions", &chat("m"))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_api_key");
    let (status, _) = answer(h.client.get(h.url("/v1/models"))).await;
    assert_eq!(status, 401, "listing models needs a key unless made public");

    assert!(
        h.mock.requests().is_empty(),
        "no refused request went upstream"
    );
    let records = h.finish().await;
    assert_eq!(records.len(), 6, "refusals are audited too");
    assert!(records
        .iter()
        .all(|r| r["status"] == 401 && r["error"] == "unauthenticated"));
}

#[tokio::test]
async fn models_outside_a_keys_allowance_are_refused_with_403_and_not_listed() {
    let h = Harness::start(&config("", false)).await;
    let (status, body) = call(&h, "/v1/chat/completions", &chat("m"), BATCH).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("`m`"));

    let embed = json!({"model": "e", "input": "the batch project may embed"});
    assert_eq!(call(&h, "/v1/embeddings", &embed, BATCH).await.0, 200);
    let (status, _) = call(&h, "/v1/chat/completions", &chat("nope"), BATCH).await;
    assert_eq!(status, 404, "an unknown model is a 404 for everyone");

    let (_, list) = get(&h, "/v1/models", BATCH).await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e"], "only the models the key may use are listed");
    assert_eq!(get(&h, "/v1/models/m", BATCH).await.0, 404);
    assert_eq!(get(&h, "/v1/models/e", BATCH).await.0, 200);
    assert_eq!(
        h.mock.requests().len(),
        1,
        "only the allowed call went upstream"
    );
}

#[tokio::test]
async fn routes_outside_a_keys_allowance_are_refused_with_403() {
    let h = Harness::start(&config("", false)).await;
    let (status, body) = call(&h, "/v1/chat/completions", &chat("m"), EMBED_ONLY).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "route_not_allowed");
    assert_eq!(get(&h, "/v1/models", EMBED_ONLY).await.0, 403);
    let embed = json!({"model": "e", "input": "ok"});
    assert_eq!(call(&h, "/v1/embeddings", &embed, EMBED_ONLY).await.0, 200);
}

#[tokio::test]
async fn an_organization_header_that_contradicts_the_key_is_401() {
    let h = Harness::start(&config("", false)).await;
    let request = |org: &str| {
        post(&h, "/v1/chat/completions", &chat("m"))
            .bearer_auth(WEB)
            .header("openai-organization", org)
    };
    let (status, body) = answer(request("globex")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "mismatched_organization");
    assert_eq!(answer(request("acme")).await.0, 200);
}

#[tokio::test]
async fn public_routes_serve_without_a_key_and_others_still_need_one() {
    let h = Harness::start(&config("/v1/models", false)).await;
    assert_eq!(
        h.model_ids().await,
        ["m", "e"],
        "anonymous sees every model"
    );
    let (status, _) = get(&h, "/v1/models", "sk-placeholder-an-sdk-insists-on").await;
    assert_eq!(
        status, 200,
        "a placeholder key is tolerated on a public route"
    );
    let (status, _) = answer(post(&h, "/v1/chat/completions", &chat("m"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn revoking_a_key_in_the_config_takes_effect_on_reload() {
    let h = Harness::start(&config("", false)).await;
    let status = || async { call(&h, "/v1/chat/completions", &chat("m"), WEB).await.0 };
    assert_eq!(status().await, 200);
    h.write_config(&config("", true));
    h.gateway.reload().await.unwrap();
    assert_eq!(status().await, 401);
    h.write_config(&config("", false));
    h.gateway.reload().await.unwrap();
    assert_eq!(status().await, 200);
}

/// JWTs and TLS client certificates, end to end.
mod identity_providers {
    use std::path::Path;
    use std::sync::Arc;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioExecutor;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use serde_json::{json, Value};

    use super::{answer, chat, post, KeyHash};
    use johi_testkit::Harness;

    const ISSUER: &str = "https://idp.example.com/";

    /// A P-256 signing key, with its JWKS written to `dir/jwks.json`.
    fn es256_key(dir: &Path) -> EncodingKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "idp-1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
        EncodingKey::from_ec_der(pkcs8.as_ref())
    }

    fn token(key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("idp-1".into());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn claims(team: &str) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({"iss": ISSUER, "aud": "johi", "sub": "u-7", "email": "bob@acme.example",
               "org": "acme", "team": team, "exp": now + 300})
    }

    const JWT_CONFIG: &str = r#"
server: { listen: "127.0.0.1:0" }
providers:
  mock: { base_url: "{mock}", api_key: sk-mock-key }
models:
  m: { targets: [{ provider: mock, model: mock-small }] }
  e: { targets: [{ provider: mock, model: mock-embed }] }
tenants:
  acme: { teams: { search: { allowed_models: [m] } } }
auth:
  jwt:
    issuer: https://idp.example.com/
    audience: johi
    algorithms: [ES256]
    jwks_file: "{dir}/jwks.json"
    leeway: 5s
    claims: { organization: org, team: team, user: email }
audit: { path: "{dir}/audit.jsonl" }
"#;

    /// Starts a gateway whose JWKS (in a directory made first, kept as long as the
    /// gateway) holds a fresh key.
    async fn jwt_gateway() -> (Harness, EncodingKey, tempfile::TempDir) {
        // The JWKS must exist when the config loads; the harness's own directory is made
        // at start, so the key goes in a directory of its own, named in the config.
        let dir = tempfile::tempdir().unwrap();
        let key = es256_key(dir.path());
        let config = JWT_CONFIG.replace(
            "{dir}/jwks.json",
            &dir.path().join("jwks.json").display().to_string(),
        );
        let h = Harness::start(&config).await;
        (h, key, dir)
    }

    /// A team created through the admin API is a tenant JWTs may name from the next request,
    /// through a reload too, and no longer once it is deleted.
    #[tokio::test]
    async fn a_jwt_may_name_a_team_created_at_run_time() {
        const ADMIN_TOKEN: &str = "jwt-admin-token-0123456789";
        let dir = tempfile::tempdir().unwrap();
        let key = es256_key(dir.path());
        let config = JWT_CONFIG
            .replace(
                "{dir}/jwks.json",
                &dir.path().join("jwks.json").display().to_string(),
            )
            .replace(
                "providers:",
                &format!(
                    "admin: {{ listen: \"127.0.0.1:0\", token: \"{ADMIN_TOKEN}\", key_store: \"{{dir}}/keys.db\" }}\nproviders:"
                ),
            );
        let h = Harness::start(&config).await;
        // One token throughout, as a client would send it: the verifier remembers it once
        // it passes, and a tenant change must still apply to it.
        let labs = token(&key, &claims("labs"));
        let ask = |h: &Harness| post(h, "/v1/chat/completions", &chat("m")).bearer_auth(&labs);
        assert_eq!(ask(&h).send().await.unwrap().status(), 401);

        let created = h
            .client
            .post(h.admin_url("/admin/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"path": "acme/labs", "allowed_models": ["e"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        // Accepted at once; the team's allowance holds (`m` is not in it).
        assert_eq!(ask(&h).send().await.unwrap().status(), 403);
        let embed = post(
            &h,
            "/v1/embeddings",
            &json!({"model": "e", "input": "hello"}),
        )
        .bearer_auth(&labs)
        .send()
        .await
        .unwrap();
        assert_eq!(embed.status(), 200);

        // A reload builds a new verifier: the run-time team is merged into it too.
        h.gateway.reload().await.unwrap();
        assert_eq!(ask(&h).send().await.unwrap().status(), 403);

        let deleted = h
            .client
            .delete(h.admin_url("/admin/v1/tenants/acme%2Flabs"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
        assert_eq!(ask(&h).send().await.unwrap().status(), 401);
    }

    #[tokio::test]
    async fn a_jwt_is_served_and_charged_to_the_tenant_its_claims_name() {
        let (h, key, _dir) = jwt_gateway().await;
        let r = post(&h, "/v1/chat/completions", &chat("m"))
            .bearer_auth(token(&key, &claims("search")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-johi-organization"], "acme");
        let (status, body) = answer(
            post(&h, "/v1/embeddings", &json!({"model": "e", "input": "x"}))
                .bearer_auth(token(&key, &claims("search"))),
        )
        .await;
        assert_eq!(status, 403, "the team's model list applies to its tokens");
        assert_eq!(body["error"]["code"], "model_not_allowed");
        let seen = h.mock.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].headers["authorization"], "Bearer sk-mock-key",
            "the token never goes upstream"
        );
        let records = h.finish().await;
        let r = &records[0];
        assert_eq!(r["auth"], "jwt");
        assert_eq!(r["credential_id"], "u-7");
        assert_eq!(r["organization"], "acme");
        assert_eq!(r["team"], "search");
        assert_eq!(r["user"], "bob@acme.example");
    }

    #[tokio::test]
    async fn every_bad_jwt_gets_the_same_401_in_openais_shape() {
        let (h, key, _dir) = jwt_gateway().await;
        let mut expired = claims("search");
        expired["exp"] = json!(1_600_000_000);
        let mut unknown_team = claims("search");
        unknown_team["team"] = json!("payments");
        let mut wrong_audience = claims("search");
        wrong_audience["aud"] = json!("another-service");
        let good = token(&key, &claims("search"));
        let cut = good.rfind('.').unwrap() + 10;
        let swapped = if &good[cut..=cut] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &good[..cut], &good[cut + 1..]);
        let foreign = {
            let dir = tempfile::tempdir().unwrap();
            token(&es256_key(dir.path()), &claims("search"))
        };
        let mut bodies = Vec::new();
        for bad in [
            token(&key, &expired),
            token(&key, &unknown_team),
            token(&key, &wrong_audience),
            tampered,
            foreign,
        ] {
            let r = post(&h, "/v1/chat/completions", &chat("m"))
                .bearer_auth(bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            bodies.push(r.text().await.unwrap());
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
        let body: Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(body["error"].get("param").is_some());
        assert!(h.mock.requests().is_empty());
    }

    /// A CA and its certificate (PEM), able to sign client certificates.
    struct Ca {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = rcgen::CertificateParams::default();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().unwrap();
            Ca {
                cert: params.self_signed(&key).unwrap(),
                key,
            }
        }

        /// A client certificate with this CN and SANs, as (chain, key) for rustls.
        fn client(
            &self,
            cn: &str,
            sans: &[&str],
        ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
            let mut params = rcgen::CertificateParams::new(
                sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            (vec![cert.der().clone()], der)
        }
    }

    const SERVICE_KEY: &str = "sk-johi-svc-ffffffffffffffffffffffffffffffffffffffffff";

    /// A TLS gateway that verifies client certificates against `ca`; its listener cert.
    async fn mtls_gateway(ca: &Ca) -> (Harness, CertificateDer<'static>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = crate::egress::localhost_cert(dir.path());
        let ca_path = dir.path().join("client-ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let config = format!(
            r#"
server: {{ listen: "127.0.0.1:0", tls: {{ cert_file: "{}", key_file: "{}", client_ca: "{}" }} }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}] }}
tenants:
  acme: {{ teams: {{ payments: {{}}, search: {{}} }} }}
auth:
  api_keys:
    - {{ id: svc-key, hash: "{}", owner: acme/search }}
  mtls:
    identities:
      - {{ id: billing, cn: billing-svc, owner: acme/payments, user: billing-bot }}
      - {{ id: search-spiffe, san: "spiffe://acme/search", owner: acme/search }}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
            cert.display(),
            key.display(),
            ca_path.display(),
            KeyHash::of(SERVICE_KEY),
        );
        let h = Harness::start(&config).await;
        let server_cert = CertificateDer::from_pem_file(&cert).unwrap();
        (h, server_cert, dir)
    }

    /// POSTs a chat request over TLS, presenting `client` if given. `Err` if the
    /// connection failed (a refused handshake).
    async fn tls_chat(
        h: &Harness,
        server_cert: &CertificateDer<'static>,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server_cert.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let tls = match client {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
        let mut request = hyper::Request::post(format!(
            "https://localhost:{}/v1/chat/completions",
            h.gateway.addr().port()
        ))
        .header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(chat("m").to_string())))
            .unwrap();
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    #[tokio::test]
    async fn a_client_certificate_from_the_ca_is_served_as_its_mapped_identity() {
        let ca = Ca::new("Acme internal CA");
        let (h, server_cert, _dir) = mtls_gateway(&ca).await;
        let (status, body) = tls_chat(&h, &server_cert, Some(ca.client("billing-svc", &[])), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let spiffe = ca.client("not-mapped-by-cn", &["spiffe://acme/search"]);
        assert_eq!(
            tls_chat(&h, &server_cert, Some(spiffe), None)
                .await
                .unwrap()
                .0,
            200
        );
        // A client with no certificate may still connect and use a key.
        let (status, _) = tls_chat(&h, &server_cert, None, Some(SERVICE_KEY))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let records = h.finish().await;
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["auth"], "mtls");
        assert_eq!(records[0]["credential_id"], "billing");
        assert_eq!(records[0]["organization"], "acme");
        assert_eq!(records[0]["team"], "payments");
        assert_eq!(records[0]["user"], "billing-bot");
        assert_eq!(records[1]["credential_id"], "search-spiffe");
        assert_eq!(records[1]["team"], "search");
        assert_eq!(records[2]["auth"], "api_key");
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_fails_the_handshake_and_no_credential_is_401() {
        let ca = Ca::new("Acme internal CA");
        let (h, server_cert, _dir) = mtls_gateway(&ca).await;
        let rogue = Ca::new("Acme internal CA");
        let result = tls_chat(
            &h,
            &server_cert,
            Some(rogue.client("billing-svc", &[])),
            None,
        )
        .await;
        assert!(result.is_err(), "the handshake must fail: {result:?}");

        let (status, body) = tls_chat(&h, &server_cert, None, None).await.unwrap();
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "missing_api_key");
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let stranger = ca.client("stranger", &["stranger.internal"]);
        let (status, body) = tls_chat(&h, &server_cert, Some(stranger), None)
            .await
            .unwrap();
        assert_eq!(status, 401, "verified, but mapped to no identity");
        assert_eq!(body["error"]["code"], "invalid_api_key");

        let billing = ca.client("billing-svc", &[]);
        let (status, _) = tls_chat(&h, &server_cert, Some(billing), Some("sk-johi-wrong"))
            .await
            .unwrap();
        assert_eq!(
            status, 401,
            "a bad key is not excused by a good certificate"
        );
        assert!(h.mock.requests().is_empty());
    }
}
