#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use johi_core::{AuthFailure, AuthMethod, Identity, Route, RouteSet};

use crate::key::{generate, redacted, KeyHash, KEY_PREFIX};
use crate::{ApiKeyEntry, Authenticator};

/// Runs a future that must not wait: the key check never does (only a JWKS fetch would).
pub(crate) fn now_or_never<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the key check waited"),
    }
}

/// The synchronous key check these tests were written against: no peer certificate.
trait Check {
    fn check(
        &self,
        h: &HeaderMap,
        route: Route,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure>;
}

impl Check for Authenticator {
    fn check(
        &self,
        h: &HeaderMap,
        route: Route,
        now: SystemTime,
    ) -> Result<Arc<Identity>, AuthFailure> {
        now_or_never(self.authenticate(h, None, route, now))
    }
}

fn identity(id: &str, org: &str) -> Arc<Identity> {
    Arc::new(Identity {
        method: AuthMethod::ApiKey,
        credential_id: Some(id.into()),
        organization: Some(org.into()),
        team: Some("search".into()),
        project: None,
        user: None,
        allowed_models: None,
        allowed_routes: RouteSet::ALL,
    })
}

fn entry(id: &str, secret: &str) -> ApiKeyEntry {
    ApiKeyEntry {
        id: id.into(),
        hash: KeyHash::of(secret),
        identity: identity(id, "acme"),
        expires_at: None,
        revoked: false,
        metadata: Vec::new(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const LIVE: &str = "sk-johi-live-0123456789abcdefghijklmnopqrstuvwxyzABCD";
const EXPIRED: &str = "sk-johi-expired-0123456789abcdefghijklmnopqrstuvwxyz";
const REVOKED: &str = "sk-johi-revoked-0123456789abcdefghijklmnopqrstuvwxyz";

fn authenticator(public: RouteSet) -> Authenticator {
    let now = SystemTime::now();
    let mut expired = entry("expired", EXPIRED);
    expired.expires_at = Some(now - Duration::from_secs(1));
    let mut revoked = entry("revoked", REVOKED);
    revoked.revoked = true;
    Authenticator::new(vec![entry("live", LIVE), expired, revoked], public)
}

#[test]
fn generated_keys_are_distinct_prefixed_and_hash_round_trips() {
    let a = generate().unwrap();
    let b = generate().unwrap();
    assert_ne!(a.secret, b.secret);
    assert!(a.secret.starts_with(KEY_PREFIX));
    assert_eq!(
        a.secret.len(),
        KEY_PREFIX.len() + 43,
        "256 bits in base64url"
    );
    assert_eq!(KeyHash::of(&a.secret), a.hash);
    let text = a.hash.to_string();
    assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
    assert_eq!(KeyHash::parse(&text).unwrap(), a.hash);
    assert_eq!(
        KeyHash::parse(&text.to_uppercase().replace("SHA256:", "sha256:")).unwrap(),
        a.hash
    );
    assert!(
        !format!("{a:?}").contains(&a.secret),
        "Debug never shows the secret"
    );
    let shown = redacted(&a.secret);
    assert!(shown.starts_with(KEY_PREFIX) && shown.contains('…') && shown.len() < 20);
}

#[test]
fn malformed_hashes_are_refused_with_a_reason() {
    assert!(KeyHash::parse("md5:abcd").unwrap_err().contains("sha256:"));
    assert!(KeyHash::parse("sha256:abcd")
        .unwrap_err()
        .contains("64 hex"));
    let bad = format!("sha256:{}", "g".repeat(64));
    assert!(KeyHash::parse(&bad).unwrap_err().contains("hexadecimal"));
}

#[test]
fn every_header_a_client_may_use_is_accepted() {
    let auth = authenticator(RouteSet::NONE);
    let now = SystemTime::now();
    for h in [
        headers(&[("authorization", &format!("Bearer {LIVE}"))]),
        headers(&[("authorization", &format!("bearer  {LIVE} "))]),
        headers(&[("api-key", LIVE)]),
        headers(&[("x-api-key", LIVE)]),
    ] {
        let id = auth.check(&h, Route::ChatCompletions, now).unwrap();
        assert_eq!(id.credential_id.as_deref(), Some("live"));
    }
}

#[test]
fn unknown_expired_revoked_and_tampered_keys_look_the_same() {
    let auth = authenticator(RouteSet::NONE.with(Route::Models));
    let now = SystemTime::now();
    let mut tampered = LIVE.to_owned();
    tampered.pop();
    tampered.push('X');
    for key in [EXPIRED, REVOKED, tampered.as_str(), "sk-johi-nope", "x"] {
        let h = headers(&[("authorization", &format!("Bearer {key}"))]);
        assert_eq!(
            auth.check(&h, Route::ChatCompletions, now).unwrap_err(),
            AuthFailure::Invalid,
            "{key}"
        );
        // A public route tolerates a placeholder key (SDKs insist on sending one).
        let id = auth.check(&h, Route::Models, now).unwrap();
        assert_eq!(id.method, AuthMethod::Anonymous, "{key}");
    }
    for h in [
        headers(&[("authorization", &format!("Basic {LIVE}"))]),
        headers(&[("authorization", "Bearer ")]),
        headers(&[("x-api-key", " ")]),
    ] {
        assert_eq!(
            auth.check(&h, Route::Embeddings, now).unwrap_err(),
            AuthFailure::Invalid
        );
    }
    let live = headers(&[("x-api-key", LIVE)]);
    let id = auth.check(&live, Route::Models, now).unwrap();
    assert_eq!(
        id.credential_id.as_deref(),
        Some("live"),
        "a valid key on a public route still identifies its holder"
    );
}

#[test]
fn a_key_expires_at_its_instant() {
    let at = SystemTime::now() + Duration::from_secs(60);
    let mut e = entry("soon", LIVE);
    e.expires_at = Some(at);
    let auth = Authenticator::new(vec![e], RouteSet::NONE);
    let h = headers(&[("x-api-key", LIVE)]);
    assert!(auth
        .check(&h, Route::Embeddings, at - Duration::from_millis(1))
        .is_ok());
    assert_eq!(
        auth.check(&h, Route::Embeddings, at).unwrap_err(),
        AuthFailure::Invalid
    );
}

#[test]
fn no_credential_is_anonymous_only_on_public_routes() {
    let auth = authenticator(RouteSet::NONE.with(Route::Models));
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let id = auth.check(&none, Route::Models, now).unwrap();
    assert_eq!(id.method, AuthMethod::Anonymous);
    assert_eq!(
        auth.check(&none, Route::ChatCompletions, now).unwrap_err(),
        AuthFailure::Missing
    );
    assert_eq!(
        Authenticator::default()
            .check(&none, Route::Models, now)
            .unwrap_err(),
        AuthFailure::Missing,
        "an authenticator without settings makes nothing public"
    );
}

#[test]
fn the_organization_header_must_match_the_keys() {
    let auth = authenticator(RouteSet::NONE);
    let now = SystemTime::now();
    let bearer = format!("Bearer {LIVE}");
    let ok = headers(&[("authorization", &bearer), ("openai-organization", "acme")]);
    assert!(auth.check(&ok, Route::ChatCompletions, now).is_ok());
    let other = headers(&[
        ("authorization", &bearer),
        ("openai-organization", "globex"),
    ]);
    assert_eq!(
        auth.check(&other, Route::ChatCompletions, now).unwrap_err(),
        AuthFailure::MismatchedOrganization
    );
}

/// The check's time must not depend on how much of a presented key matches a real one.
/// Measured, interleaved, over many rounds: a key that differs from a real one only in its
/// last character and a key that differs in its first take the same time (medians within
/// 25 %; the best of five batches, so a noisy neighbour cannot fail it alone). Because the
/// key is hashed before anything is compared, a real difference would be the hash's.
/// (Checked: replacing the lookup with a byte-by-byte comparison of the raw key fails this
/// test in the test profile, with a ratio of about 2.)
#[test]
fn the_key_check_takes_as_long_whatever_part_of_the_key_matches() {
    let auth = authenticator(RouteSet::NONE);
    let now = SystemTime::now();
    let mut near = LIVE.to_owned();
    near.pop();
    near.push('#');
    let far = format!("#{}", &LIVE[1..]);
    let near = headers(&[("x-api-key", &near)]);
    let far = headers(&[("x-api-key", &far)]);
    let median = |mut v: Vec<u128>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut best_ratio = f64::MAX;
    for _ in 0..5 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            for (h, out) in [(&near, &mut a), (&far, &mut b)] {
                let t = Instant::now();
                let r = auth.check(h, Route::ChatCompletions, now);
                out.push(t.elapsed().as_nanos());
                assert!(r.is_err());
            }
        }
        let (a, b) = (median(a) as f64, median(b) as f64);
        best_ratio = best_ratio.min(a.max(b) / a.min(b).max(1.0));
    }
    assert!(best_ratio < 1.25, "near/far median ratio {best_ratio:.2}");
}

#[test]
fn run_time_keys_count_from_the_next_lookup_and_stop_when_removed() {
    const ISSUED: &str = "sk-johi-issued-0123456789abcdefghijklmnopqrstuvwxyzAB";
    let store = crate::KeyStore::new();
    let auth = authenticator(RouteSet::NONE).with_key_store(store.clone());
    let h = headers(&[("authorization", &format!("Bearer {ISSUED}"))]);
    let now = SystemTime::now();
    assert_eq!(
        now_or_never(auth.authenticate(&h, None, Route::ChatCompletions, now)).unwrap_err(),
        AuthFailure::Invalid
    );
    store.insert(entry("issued", ISSUED));
    let who = now_or_never(auth.authenticate(&h, None, Route::ChatCompletions, now)).unwrap();
    assert_eq!(who.credential_id.as_deref(), Some("issued"));
    // Config keys still work next to the store.
    let live = headers(&[("authorization", &format!("Bearer {LIVE}"))]);
    assert!(now_or_never(auth.authenticate(&live, None, Route::ChatCompletions, now)).is_ok());
    store.remove(&KeyHash::of(ISSUED));
    assert_eq!(
        now_or_never(auth.authenticate(&h, None, Route::ChatCompletions, now)).unwrap_err(),
        AuthFailure::Invalid
    );
    assert!(auth.has_key_id("live") && !auth.has_key_id("issued"));
}

fn certificate(sans: &[rcgen::SanType], cn: &str) -> crate::PeerCertificate {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans.to_vec();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    crate::PeerCertificate::verified(cert.der())
}

fn dns(name: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(name.try_into().unwrap())
}

#[test]
fn certificates_map_by_san_first_then_common_name() {
    use crate::{CertificateName, MtlsIdentities};
    let mut ids = MtlsIdentities::default();
    assert!(ids.insert(
        CertificateName::San("billing.internal".into()),
        identity("billing", "acme")
    ));
    assert!(ids.insert(
        CertificateName::San("spiffe://acme/search".into()),
        identity("search", "acme")
    ));
    assert!(ids.insert(
        CertificateName::CommonName("legacy-svc".into()),
        identity("legacy", "globex")
    ));
    assert!(!ids.insert(
        CertificateName::CommonName("legacy-svc".into()),
        identity("x", "acme")
    ));

    let spiffe = rcgen::SanType::URI("spiffe://acme/search".try_into().unwrap());
    let cases = [
        (
            certificate(&[dns("billing.internal")], "legacy-svc"),
            Some("billing"),
        ),
        (certificate(&[dns("other"), spiffe], "x"), Some("search")),
        (
            certificate(&[dns("unmapped.internal")], "legacy-svc"),
            Some("legacy"),
        ),
        (certificate(&[dns("unmapped.internal")], "unmapped"), None),
    ];
    for (cert, expected) in cases {
        let got = ids.identify(&cert).and_then(|i| i.credential_id.clone());
        assert_eq!(got.as_deref(), expected);
    }
    assert!(ids
        .identify(&crate::PeerCertificate::verified(b"not der"))
        .is_none());
}

#[test]
fn a_header_credential_wins_over_a_certificate_and_a_bad_one_is_not_excused_by_it() {
    use crate::{CertificateName, MtlsIdentities};
    let mut ids = MtlsIdentities::default();
    ids.insert(
        CertificateName::CommonName("svc".into()),
        identity("cert", "acme"),
    );
    let auth = authenticator(RouteSet::NONE).with_mtls(ids);
    let now = SystemTime::now();
    let cert = certificate(&[], "svc");
    let stranger = certificate(&[], "stranger");
    let check =
        |h: &HeaderMap, peer| now_or_never(auth.authenticate(h, peer, Route::ChatCompletions, now));
    let key = headers(&[("x-api-key", LIVE)]);
    let id = check(&key, Some(&cert)).unwrap();
    assert_eq!(id.credential_id.as_deref(), Some("live"));
    let bad = headers(&[("x-api-key", "sk-johi-nope")]);
    assert_eq!(check(&bad, Some(&cert)).unwrap_err(), AuthFailure::Invalid);
    let none = HeaderMap::new();
    let id = check(&none, Some(&cert)).unwrap();
    assert_eq!(id.credential_id.as_deref(), Some("cert"));
    assert_eq!(
        check(&none, Some(&stranger)).unwrap_err(),
        AuthFailure::Invalid
    );
    assert_eq!(check(&none, None).unwrap_err(), AuthFailure::Missing);
}

#[tokio::test]
async fn a_bearer_token_of_a_jwts_shape_is_checked_as_a_jwt_and_any_other_as_a_key() {
    use crate::jwt::{ClaimNames, JwtKeys};
    use crate::{JwtSettings, JwtVerifier, TenantIndex};
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    let mut tenants = TenantIndex::default();
    tenants.insert("acme".into(), None);
    let verifier = JwtVerifier::new(JwtSettings {
        issuer: "iss".into(),
        audience: "aud".into(),
        algorithms: vec![jsonwebtoken::Algorithm::HS256],
        keys: JwtKeys::Secret(SECRET.to_vec()),
        leeway: Duration::from_secs(0),
        claims: ClaimNames {
            organization: "org".into(),
            team: None,
            project: None,
            user: None,
            allowed_models: None,
        },
        tenants,
        cache_size: crate::jwt::DEFAULT_CACHE_SIZE,
    });
    let auth = authenticator(RouteSet::NONE.with(Route::Models)).with_jwt(verifier);
    let exp = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let claims =
        serde_json::json!({"iss": "iss", "aud": "aud", "org": "acme", "sub": "s", "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let now = SystemTime::now();
    let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
    let id = auth
        .authenticate(&bearer(&token), None, Route::ChatCompletions, now)
        .await
        .unwrap();
    assert_eq!(id.method, AuthMethod::Jwt);
    let id = auth
        .authenticate(&bearer(LIVE), None, Route::ChatCompletions, now)
        .await
        .unwrap();
    assert_eq!(
        id.method,
        AuthMethod::ApiKey,
        "keys keep working beside JWTs"
    );
    let forged = tamper(&token);
    assert_eq!(
        auth.authenticate(&bearer(&forged), None, Route::ChatCompletions, now)
            .await
            .unwrap_err(),
        AuthFailure::Invalid
    );
    let id = auth
        .authenticate(&bearer(&forged), None, Route::Models, now)
        .await
        .unwrap();
    assert_eq!(
        id.method,
        AuthMethod::Anonymous,
        "a public route tolerates it"
    );
    let org = headers(&[
        ("authorization", &format!("Bearer {token}")),
        ("openai-organization", "globex"),
    ]);
    assert_eq!(
        auth.authenticate(&org, None, Route::ChatCompletions, now)
            .await
            .unwrap_err(),
        AuthFailure::MismatchedOrganization
    );
}

/// `token` with one character in the middle of its signature changed (a middle character
/// carries only signature bits, unlike the last one, whose low bits are padding).
fn tamper(token: &str) -> String {
    let cut = token.rfind('.').unwrap() + (token.len() - token.rfind('.').unwrap()) / 2;
    let swapped = if &token[cut..=cut] == "A" { "B" } else { "A" };
    format!("{}{swapped}{}", &token[..cut], &token[cut + 1..])
}
