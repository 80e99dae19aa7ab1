#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use johi_core::{AuthFailure, AuthMethod, Identity, Route, RouteSet};

use crate::key::{generate, redacted, KeyHash, KEY_PREFIX};
use crate::{ApiKeyEntry, Authenticator};

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
        let id = auth.authenticate(&h, Route::ChatCompletions, now).unwrap();
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
            auth.authenticate(&h, Route::ChatCompletions, now)
                .unwrap_err(),
            AuthFailure::Invalid,
            "{key}"
        );
        // A public route tolerates a placeholder key (SDKs insist on sending one).
        let id = auth.authenticate(&h, Route::Models, now).unwrap();
        assert_eq!(id.method, AuthMethod::Anonymous, "{key}");
    }
    for h in [
        headers(&[("authorization", &format!("Basic {LIVE}"))]),
        headers(&[("authorization", "Bearer ")]),
        headers(&[("x-api-key", " ")]),
    ] {
        assert_eq!(
            auth.authenticate(&h, Route::Embeddings, now).unwrap_err(),
            AuthFailure::Invalid
        );
    }
    let live = headers(&[("x-api-key", LIVE)]);
    let id = auth.authenticate(&live, Route::Models, now).unwrap();
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
        .authenticate(&h, Route::Embeddings, at - Duration::from_millis(1))
        .is_ok());
    assert_eq!(
        auth.authenticate(&h, Route::Embeddings, at).unwrap_err(),
        AuthFailure::Invalid
    );
}

#[test]
fn no_credential_is_anonymous_only_on_public_routes() {
    let auth = authenticator(RouteSet::NONE.with(Route::Models));
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let id = auth.authenticate(&none, Route::Models, now).unwrap();
    assert_eq!(id.method, AuthMethod::Anonymous);
    assert_eq!(
        auth.authenticate(&none, Route::ChatCompletions, now)
            .unwrap_err(),
        AuthFailure::Missing
    );
    assert_eq!(
        Authenticator::default()
            .authenticate(&none, Route::Models, now)
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
    assert!(auth.authenticate(&ok, Route::ChatCompletions, now).is_ok());
    let other = headers(&[
        ("authorization", &bearer),
        ("openai-organization", "globex"),
    ]);
    assert_eq!(
        auth.authenticate(&other, Route::ChatCompletions, now)
            .unwrap_err(),
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
                let r = auth.authenticate(h, Route::ChatCompletions, now);
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
        auth.authenticate(&h, Route::ChatCompletions, now)
            .unwrap_err(),
        AuthFailure::Invalid
    );
    store.insert(entry("issued", ISSUED));
    let who = auth.authenticate(&h, Route::ChatCompletions, now).unwrap();
    assert_eq!(who.credential_id.as_deref(), Some("issued"));
    // Config keys still work next to the store.
    let live = headers(&[("authorization", &format!("Bearer {LIVE}"))]);
    assert!(auth
        .authenticate(&live, Route::ChatCompletions, now)
        .is_ok());
    store.remove(&KeyHash::of(ISSUED));
    assert_eq!(
        auth.authenticate(&h, Route::ChatCompletions, now)
            .unwrap_err(),
        AuthFailure::Invalid
    );
    assert!(auth.has_key_id("live") && !auth.has_key_id("issued"));
}
