#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::*;

const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "johi";
const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
const RSA_DER: &[u8] = include_bytes!("../testdata/rsa-test-key.der");
const RSA_JWK: &str = include_str!("../testdata/rsa-test-key.jwk.json");

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a valid token for acme/search, five minutes left.
fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "exp": unix_now() + 300,
        "org": "acme", "team": "search", "email": "alice@acme.example",
    })
}

fn tenants() -> TenantIndex {
    let mut t = TenantIndex::default();
    t.insert("acme".into(), None);
    t.insert("acme/search".into(), Some(vec!["m".into(), "e".into()]));
    t.insert("acme/search/web".into(), Some(vec!["m".into()]));
    t
}

fn settings(algorithms: Vec<Algorithm>, keys: JwtKeys) -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms,
        keys,
        leeway: Duration::from_secs(30),
        claims: ClaimNames {
            organization: "org".into(),
            team: Some("team".into()),
            project: Some("project".into()),
            user: Some("email".into()),
            allowed_models: Some("models".into()),
        },
        tenants: tenants(),
        cache_size: DEFAULT_CACHE_SIZE,
    }
}

/// A generated P-256 key: its signing key and its public JWK.
struct EcKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    EcKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn rsa_jwk() -> Value {
    serde_json::from_str(RSA_JWK).unwrap()
}

fn jwks(keys: &[&Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn static_keys(keys: &[&Value]) -> JwtKeys {
    JwtKeys::Static(Arc::new(KeySet::parse(&jwks(keys)).unwrap()))
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn hs_verifier() -> JwtVerifier {
    JwtVerifier::new(settings(
        vec![Algorithm::HS256],
        JwtKeys::Secret(SECRET.to_vec()),
    ))
}

async fn rejection(v: &JwtVerifier, token: &str) -> JwtRejection {
    v.verify(token, SystemTime::now()).await.unwrap_err()
}

#[tokio::test]
async fn hs256_token_maps_its_claims_to_a_declared_tenant() {
    let v = hs_verifier();
    let token = hs(&claims());
    assert!(looks_like_jwt(&token));
    let id = v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(id.method, AuthMethod::Jwt);
    assert_eq!(id.credential_id.as_deref(), Some("user-42"));
    assert_eq!(id.organization.as_deref(), Some("acme"));
    assert_eq!(id.team.as_deref(), Some("search"));
    assert_eq!(id.project, None);
    assert_eq!(id.user.as_deref(), Some("alice@acme.example"));
    assert_eq!(id.allowed_models, Some(vec!["m".into(), "e".into()]));

    let mut narrowed = claims();
    narrowed["models"] = json!(["e", "not-in-the-team"]);
    narrowed["project"] = json!("web");
    let id = v.verify(&hs(&narrowed), SystemTime::now()).await.unwrap();
    assert_eq!(
        id.allowed_models,
        Some(vec![]),
        "the claim narrows the project's list, never widens it"
    );
    narrowed["project"] = Value::Null;
    let id = v.verify(&hs(&narrowed), SystemTime::now()).await.unwrap();
    assert_eq!(id.allowed_models, Some(vec!["e".into()]));
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_a_jwks() {
    let ec = ec_key("ec-1");
    let v = JwtVerifier::new(settings(
        vec![Algorithm::RS256, Algorithm::ES256],
        static_keys(&[&rsa_jwk(), &ec.jwk]),
    ));
    let rs = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(),
        &EncodingKey::from_rsa_der(RSA_DER),
    );
    let es = sign(Algorithm::ES256, Some("ec-1"), &claims(), &ec.encoding);
    for token in [&rs, &es] {
        let id = v.verify(token, SystemTime::now()).await.unwrap();
        assert_eq!(id.organization.as_deref(), Some("acme"));
    }
    // A key used for the other family's algorithm is refused, even with a known kid.
    let es_naming_rsa = sign(Algorithm::ES256, Some("rsa-1"), &claims(), &ec.encoding);
    assert_eq!(
        rejection(&v, &es_naming_rsa).await,
        JwtRejection::UnknownKey
    );
    // Without a kid, a set with one key per family still picks the right one.
    let es_no_kid = sign(Algorithm::ES256, None, &claims(), &ec.encoding);
    assert!(v.verify(&es_no_kid, SystemTime::now()).await.is_ok());
}

#[tokio::test]
async fn time_claims_are_checked_with_the_leeway() {
    let v = hs_verifier();
    let now = unix_now();
    let mut c = claims();
    c["exp"] = json!(now - 10);
    assert!(
        v.verify(&hs(&c), SystemTime::now()).await.is_ok(),
        "within the 30 s leeway"
    );
    c["exp"] = json!(now - 120);
    assert_eq!(rejection(&v, &hs(&c)).await, JwtRejection::Expired);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        rejection(&v, &hs(&c)).await,
        JwtRejection::Expired,
        "exp is required"
    );
    let mut c = claims();
    c["nbf"] = json!(now + 120);
    assert_eq!(rejection(&v, &hs(&c)).await, JwtRejection::NotYetValid);
    c["nbf"] = json!(now + 10);
    assert!(v.verify(&hs(&c), SystemTime::now()).await.is_ok());
}

#[tokio::test]
async fn issuer_audience_and_tenants_must_match_the_config() {
    let v = hs_verifier();
    let cases: [(&str, Value, JwtRejection); 6] = [
        ("iss", json!("https://evil.example/"), JwtRejection::Issuer),
        ("aud", json!("someone-else"), JwtRejection::Audience),
        ("aud", json!(["a", "b"]), JwtRejection::Audience),
        ("org", json!("globex"), JwtRejection::Tenant),
        ("team", json!("nope"), JwtRejection::Tenant),
        ("org", json!(42), JwtRejection::Tenant),
    ];
    for (claim, value, expected) in cases {
        let mut c = claims();
        c[claim] = value;
        assert_eq!(rejection(&v, &hs(&c)).await, expected, "{claim}");
    }
    let mut c = claims();
    c["aud"] = json!(["other", AUDIENCE]);
    assert!(
        v.verify(&hs(&c), SystemTime::now()).await.is_ok(),
        "aud may be a list"
    );
    c.as_object_mut().unwrap().remove("org");
    assert_eq!(rejection(&v, &hs(&c)).await, JwtRejection::Tenant);
}

#[tokio::test]
async fn tampered_tokens_and_alg_none_are_refused() {
    let v = hs_verifier();
    let token = hs(&claims());
    let (head, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut sig = signature.to_owned();
    let middle = sig.len() / 2;
    let swapped = if &sig[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    sig.replace_range(middle..=middle, swapped);
    assert_eq!(
        rejection(&v, &format!("{head}.{payload}.{sig}")).await,
        JwtRejection::Signature
    );
    let mut c = claims();
    c["org"] = json!("acme");
    c["team"] = json!("search");
    c["sub"] = json!("admin");
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    assert_eq!(
        rejection(&v, &format!("{head}.{forged_payload}.{signature}")).await,
        JwtRejection::Signature
    );
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    for t in [
        format!("{none}.{payload}."),
        format!("{none}.{payload}.{signature}"),
    ] {
        assert!(looks_like_jwt(&t));
        assert_eq!(rejection(&v, &t).await, JwtRejection::Malformed);
    }
    assert!(!looks_like_jwt("sk-johi-abc"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d"));
}

/// The classic confusion: an RS256 deployment, and a token signed with HS256 using the
/// (public) RSA key as the HMAC secret. A JWKS never supplies an HMAC key, whatever the
/// algorithm list says; and a secret-configured verifier refuses RS256.
#[tokio::test]
async fn an_hmac_token_never_verifies_against_a_public_key() {
    let rsa = rsa_jwk();
    let v = JwtVerifier::new(settings(
        vec![Algorithm::RS256, Algorithm::HS256],
        static_keys(&[&rsa]),
    ));
    for public_bytes in [RSA_JWK.as_bytes(), rsa["n"].as_str().unwrap().as_bytes()] {
        let forged = sign(
            Algorithm::HS256,
            Some("rsa-1"),
            &claims(),
            &EncodingKey::from_secret(public_bytes),
        );
        assert_eq!(rejection(&v, &forged).await, JwtRejection::UnknownKey);
    }
    let rs = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(),
        &EncodingKey::from_rsa_der(RSA_DER),
    );
    assert_eq!(
        rejection(&hs_verifier(), &rs).await,
        JwtRejection::Algorithm
    );
    // Not in the configured list: refused before any key is looked at.
    let only_es = JwtVerifier::new(settings(vec![Algorithm::ES256], static_keys(&[&rsa])));
    assert_eq!(rejection(&only_es, &rs).await, JwtRejection::Algorithm);
    // A JWKS holding only a symmetric key is refused at load.
    let oct = json!({"kty": "oct", "kid": "s", "k": URL_SAFE_NO_PAD.encode(SECRET)});
    assert!(KeySet::parse(&jwks(&[&oct])).is_err());
}

/// A JWKS endpoint on loopback whose document and status the test changes, counting GETs.
struct JwksServer {
    url: http::Uri,
    body: Arc<Mutex<(u16, Vec<u8>)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: Vec<u8>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let body = Arc::new(Mutex::new((200, document)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, doc) = b.lock().unwrap().clone();
                        let mut response = http::Response::new(Full::new(Bytes::from(doc)));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        JwksServer { url, body, hits }
    }

    fn serve(&self, status: u16, document: Vec<u8>) {
        *self.body.lock().unwrap() = (status, document);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_per_interval_and_an_outage_keeps_the_old_set() {
    let (old, new, rogue) = (ec_key("k1"), ec_key("k2"), ec_key("k3"));
    let server = JwksServer::start(jwks(&[&old.jwk])).await;
    let min_refetch = Duration::from_millis(600);
    let remote = Arc::new(
        RemoteJwks::new(server.url.clone(), Duration::from_secs(3600), min_refetch).unwrap(),
    );
    let v = JwtVerifier::new(settings(vec![Algorithm::ES256], JwtKeys::Remote(remote)));
    let token =
        |key: &EcKey, kid: &str| sign(Algorithm::ES256, Some(kid), &claims(), &key.encoding);

    v.start().await;
    v.start().await;
    assert_eq!(
        server.hits(),
        1,
        "fetched once at start, however often started"
    );
    assert!(v
        .verify(&token(&old, "k1"), SystemTime::now())
        .await
        .is_ok());
    assert_eq!(server.hits(), 1, "a known kid costs no fetch");

    // The provider rotates: k2 is published, k1 withdrawn.
    server.serve(200, jwks(&[&new.jwk]));
    tokio::time::sleep(min_refetch).await;
    let rotated = token(&new, "k2");
    let (a, b) = tokio::join!(
        v.verify(&rotated, SystemTime::now()),
        v.verify(&rotated, SystemTime::now()),
    );
    assert!(
        a.is_ok() && b.is_ok(),
        "the new key is accepted after one refetch"
    );
    assert_eq!(server.hits(), 2, "concurrent requests share one refetch");
    assert_eq!(
        rejection(&v, &token(&old, "k1")).await,
        JwtRejection::UnknownKey,
        "the withdrawn key is gone"
    );
    assert_eq!(
        server.hits(),
        2,
        "and asking again within the interval does not refetch"
    );
    for _ in 0..5 {
        assert_eq!(
            rejection(&v, &token(&rogue, "k3")).await,
            JwtRejection::UnknownKey
        );
    }
    assert_eq!(
        server.hits(),
        2,
        "unknown kids cannot make Johi hammer the provider"
    );

    // An outage: the refetch fails, the held set keeps serving.
    server.serve(500, b"down".to_vec());
    tokio::time::sleep(min_refetch).await;
    assert_eq!(
        rejection(&v, &token(&rogue, "k3")).await,
        JwtRejection::UnknownKey
    );
    assert_eq!(server.hits(), 3);
    assert!(v
        .verify(&token(&new, "k2"), SystemTime::now())
        .await
        .is_ok());
}

/// A JWKS server holding `key`, and a remote set over it refreshed every 200 ms (refetches
/// for unknown kids: at most hourly).
async fn refreshing_every_200ms(key: &EcKey) -> (JwksServer, Arc<RemoteJwks>) {
    let server = JwksServer::start(jwks(&[&key.jwk])).await;
    let remote = Arc::new(
        RemoteJwks::new(
            server.url.clone(),
            Duration::from_millis(200),
            Duration::from_secs(3600),
        )
        .unwrap(),
    );
    (server, remote)
}

#[tokio::test]
async fn the_background_refresh_picks_up_new_keys_without_a_request_waiting() {
    let (old, new) = (ec_key("k1"), ec_key("k2"));
    let (server, remote) = refreshing_every_200ms(&old).await;
    remote.start().await;
    server.serve(200, jwks(&[&old.jwk, &new.jwk]));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(server.hits() >= 2);
    assert_eq!(remote.keys().unwrap().len(), 2);
    let weak = Arc::downgrade(&remote);
    drop(remote);
    assert!(
        weak.upgrade().is_none(),
        "the refresh task holds no strong reference"
    );
}

#[tokio::test]
async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
    let v = hs_verifier();
    let mut c = claims();
    c["exp"] = json!(unix_now() + 5);
    let token = hs(&c);
    let now = SystemTime::now();
    let first = v.verify(&token, now).await.unwrap();
    assert_eq!((v.full_checks(), v.cached_tokens()), (1, 1));
    let again = v
        .verify(&token, now + Duration::from_secs(20))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the same identity, shared");
    assert_eq!(v.full_checks(), 1, "no second signature check");
    // Past exp plus the 30 s leeway, the entry no longer answers: the full check refuses.
    assert_eq!(
        v.verify(&token, now + Duration::from_secs(40))
            .await
            .unwrap_err(),
        JwtRejection::Expired
    );
    assert_eq!(v.full_checks(), 2);
}

#[tokio::test]
async fn a_token_changed_in_any_byte_is_checked_in_full() {
    let v = hs_verifier();
    let token = hs(&claims());
    v.verify(&token, SystemTime::now()).await.unwrap();
    // The same claims and header under another signature, and the same signature under
    // other claims: neither is the cached token.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    assert_eq!(rejection(&v, &forged).await, JwtRejection::Signature);
    let mut c = claims();
    c["org"] = json!("globex");
    let other_claims = format!("{}.{}", hs(&c).rsplit_once('.').unwrap().0, signature);
    assert_eq!(rejection(&v, &other_claims).await, JwtRejection::Signature);
    assert_eq!((v.full_checks(), v.cached_tokens()), (3, 1));
}

#[tokio::test]
async fn the_cache_is_bounded_and_can_be_turned_off() {
    let mut small = settings(vec![Algorithm::HS256], JwtKeys::Secret(SECRET.to_vec()));
    small.cache_size = 2;
    let v = JwtVerifier::new(small);
    for user in ["a", "b", "c", "d", "e"] {
        let mut c = claims();
        c["email"] = json!(user);
        v.verify(&hs(&c), SystemTime::now()).await.unwrap();
        assert!(v.cached_tokens() <= 2);
    }
    let mut off = settings(vec![Algorithm::HS256], JwtKeys::Secret(SECRET.to_vec()));
    off.cache_size = 0;
    let v = JwtVerifier::new(off);
    let token = hs(&claims());
    for _ in 0..3 {
        v.verify(&token, SystemTime::now()).await.unwrap();
    }
    assert_eq!((v.full_checks(), v.cached_tokens()), (3, 0));
}

/// Waits until the server has answered two more fetches, so at least one whole refresh
/// ran after the call (at most 10 s: a refresh that never comes fails the test).
async fn two_more_fetches(server: &JwksServer) {
    let target = server.hits() + 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.hits() < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JWKS was not refreshed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotation_that_withdraws_a_key_withdraws_the_cached_tokens_it_signed() {
    let (old, new) = (ec_key("k1"), ec_key("k2"));
    let (server, remote) = refreshing_every_200ms(&old).await;
    let v = JwtVerifier::new(settings(vec![Algorithm::ES256], JwtKeys::Remote(remote)));
    v.start().await;
    let token = sign(Algorithm::ES256, Some("k1"), &claims(), &old.encoding);
    v.verify(&token, SystemTime::now()).await.unwrap();
    v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(v.full_checks(), 1, "the second answer came from the cache");

    // Refreshes that bring the same document keep the set, and the cached token with it.
    two_more_fetches(&server).await;
    v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(
        v.full_checks(),
        1,
        "an unchanged JWKS does not empty the cache"
    );

    // The provider withdraws k1; the background refresh picks that up.
    server.serve(200, jwks(&[&new.jwk]));
    two_more_fetches(&server).await;
    assert_eq!(
        rejection(&v, &token).await,
        JwtRejection::UnknownKey,
        "a cached token whose key is gone is refused"
    );
    let fresh = sign(Algorithm::ES256, Some("k2"), &claims(), &new.encoding);
    assert!(v.verify(&fresh, SystemTime::now()).await.is_ok());
}

#[test]
fn the_token_shape_check_accepts_exactly_base64url_and_dots() {
    for b in 0..=u8::MAX {
        let expected = b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        assert_eq!(base64url_and_dots(&[b]), expected, "byte {b:#04x}");
        // Also deep inside a long run, where the vector code handles it.
        let mut long = vec![b'a'; 300];
        long[257] = b;
        assert_eq!(base64url_and_dots(&long), expected, "byte {b:#04x} at 257");
    }
}

#[tokio::test]
async fn a_tenant_change_sends_cached_tokens_through_the_full_check() {
    let v = hs_verifier();
    let token = hs(&claims());
    let identity = v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(identity.allowed_models, Some(vec!["m".into(), "e".into()]));
    v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(v.full_checks(), 1);

    // The team is narrowed at run time (the admin API replaces the index every clone sees).
    let mut next = TenantIndex::default();
    next.insert("acme".into(), None);
    next.insert("acme/search".into(), Some(vec!["e".into()]));
    v.settings().tenants.replace(&next);
    let identity = v.verify(&token, SystemTime::now()).await.unwrap();
    assert_eq!(identity.allowed_models, Some(vec!["e".into()]));
    assert_eq!(v.full_checks(), 2);

    // And deleted: the same token is refused.
    let mut without = TenantIndex::default();
    without.insert("acme".into(), None);
    v.settings().tenants.replace(&without);
    assert_eq!(rejection(&v, &token).await, JwtRejection::Tenant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_the_cache() {
    let v = Arc::new(hs_verifier());
    let token = Arc::new(hs(&claims()));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let identity = v.verify(&token, SystemTime::now()).await.unwrap();
                    assert_eq!(identity.organization.as_deref(), Some("acme"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(v.cached_tokens(), 1);
    // Requests that missed at the same moment each check in full; the other 1 280 − n hit.
    assert!((1..=64).contains(&v.full_checks()), "{}", v.full_checks());
}
