//! `auth.jwt:` → a [`JwtVerifier`], every setting checked at load with its path.
//!
//! Safe defaults rather than permissive ones: `iss` and `aud` are required; the algorithm
//! list must fit the key source (HS256 with a secret, RS256/ES256 with a JWKS), so a
//! configuration cannot open the door to algorithm confusion; a secret must be long enough
//! to resist guessing.

use std::sync::Arc;
use std::time::Duration;

use johi_auth::jwks::{KeySet, RemoteJwks};
use johi_auth::jwt::{ClaimNames, JwtKeys, ALGORITHMS, DEFAULT_CACHE_SIZE};
use johi_auth::{JwtSettings, JwtVerifier};
use jsonwebtoken::Algorithm;

use crate::auth::Context;
use crate::raw::{RawJwt, RawJwtClaims};

/// Default `auth.jwt.refresh`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Default `auth.jwt.min_refetch_interval`.
const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(30);
/// Default `auth.jwt.leeway`.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway accepted: beyond it an expired token is simply valid.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// HS256 secrets shorter than its output (256 bits) weaken it.
const MIN_SECRET_BYTES: usize = 32;

/// Validates `auth.jwt`: the verifier, and whether its identities may be limited to some
/// models (then `authorize` must run). `None` (with errors) if anything is wrong.
pub(crate) fn jwt(
    raw: RawJwt,
    cx: &Context<'_>,
    errors: &mut Vec<String>,
) -> Option<(JwtVerifier, bool)> {
    let before = errors.len();
    let required = |value: Option<String>, field: &str, errors: &mut Vec<String>| match value
        .filter(|v| !v.is_empty())
    {
        Some(v) => v,
        None => {
            errors.push(format!("auth.jwt.{field}: required"));
            String::new()
        }
    };
    let keys = keys(&raw, cx, errors);
    let issuer = required(raw.issuer, "issuer", errors);
    let audience = required(raw.audience, "audience", errors);
    let algorithms = algorithms(raw.algorithms.as_deref(), keys.as_ref(), errors);
    let leeway = raw.leeway.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        errors.push(format!(
            "auth.jwt.leeway: at most {}",
            humantime::format_duration(MAX_LEEWAY)
        ));
    }
    let claims = claims(raw.claims, errors);
    if errors.len() > before {
        return None;
    }
    let tenants = cx.tenants.index();
    let restricts = claims.allowed_models.is_some()
        || cx.tenants.organizations.values().any(|o| {
            o.allowed_models.is_some()
                || o.teams
                    .values()
                    .any(|t| t.allowed_models.is_some() || t.projects.values().any(Option::is_some))
        });
    let settings = JwtSettings {
        issuer,
        audience,
        algorithms,
        keys: keys?,
        leeway,
        claims,
        tenants,
        cache_size: raw.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
    };
    Some((JwtVerifier::new(settings), restricts))
}

/// The one key source configured.
fn keys(raw: &RawJwt, cx: &Context<'_>, errors: &mut Vec<String>) -> Option<JwtKeys> {
    let set = [
        raw.jwks_file.is_some(),
        raw.jwks_url.is_some(),
        raw.hs256_secret.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        errors.push("auth.jwt: set exactly one of jwks_file, jwks_url and hs256_secret".into());
        return None;
    }
    if raw.jwks_url.is_none() && (raw.refresh.is_some() || raw.min_refetch_interval.is_some()) {
        errors.push("auth.jwt.refresh, min_refetch_interval: only apply to jwks_url".into());
    }
    if let Some(secret) = &raw.hs256_secret {
        if secret.len() < MIN_SECRET_BYTES {
            errors.push(format!(
                "auth.jwt.hs256_secret: at least {MIN_SECRET_BYTES} bytes (set it from the environment: ${{JOHI_JWT_SECRET}})"
            ));
            return None;
        }
        return Some(JwtKeys::Secret(secret.as_bytes().to_vec()));
    }
    if let Some(file) = &raw.jwks_file {
        let path = (cx.resolve)(file);
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| KeySet::parse(&bytes));
        return match parsed {
            Ok(set) => Some(JwtKeys::Static(Arc::new(set))),
            Err(e) => {
                errors.push(format!("auth.jwt.jwks_file: {}: {e}", path.display()));
                None
            }
        };
    }
    let url = raw.jwks_url.as_deref().unwrap_or_default();
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => {
            errors.push(format!("auth.jwt.jwks_url: '{url}' is not a URL ({e})"));
            return None;
        }
    };
    let loopback = matches!(uri.host(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        _ => {
            errors.push(format!(
                "auth.jwt.jwks_url: '{url}' must be https:// (http:// only on loopback), or keys could be swapped in transit"
            ));
            return None;
        }
    }
    let refresh = raw.refresh.unwrap_or(DEFAULT_REFRESH);
    let min_refetch = raw.min_refetch_interval.unwrap_or(DEFAULT_MIN_REFETCH);
    if refresh < Duration::from_secs(1) {
        errors.push("auth.jwt.refresh: at least 1s".into());
    }
    match RemoteJwks::new(uri, refresh, min_refetch) {
        Ok(remote) => Some(JwtKeys::Remote(Arc::new(remote))),
        Err(e) => {
            errors.push(format!("auth.jwt.jwks_url: {e}"));
            None
        }
    }
}

/// The algorithm list: configured or defaulted from the key source, each one a fit for it.
fn algorithms(
    names: Option<&[String]>,
    keys: Option<&JwtKeys>,
    errors: &mut Vec<String>,
) -> Vec<Algorithm> {
    let secret = matches!(keys, Some(JwtKeys::Secret(_)));
    let Some(names) = names else {
        return if secret {
            vec![Algorithm::HS256]
        } else {
            vec![Algorithm::RS256, Algorithm::ES256]
        };
    };
    if names.is_empty() {
        errors.push("auth.jwt.algorithms: must not be empty".into());
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = format!("auth.jwt.algorithms[{i}]");
        let Some((_, alg)) = ALGORITHMS.iter().find(|(n, _)| n == name) else {
            let known: Vec<_> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
            errors.push(format!(
                "{path}: '{name}' is not supported (known: {})",
                known.join(", ")
            ));
            continue;
        };
        let fits = (*alg == Algorithm::HS256) == secret;
        if keys.is_some() && !fits {
            errors.push(if secret {
                format!("{path}: {name} needs a JWKS (jwks_file or jwks_url); hs256_secret verifies only HS256")
            } else {
                format!("{path}: {name} needs hs256_secret; a JWKS never supplies an HMAC key")
            });
        }
        algorithms.push(*alg);
    }
    algorithms
}

/// The claim names; `organization` is required.
fn claims(raw: Option<RawJwtClaims>, errors: &mut Vec<String>) -> ClaimNames {
    let Some(raw) = raw else {
        errors.push("auth.jwt.claims: required, with at least organization (e.g. claims: { organization: org, user: sub })".into());
        return ClaimNames {
            organization: String::new(),
            team: None,
            project: None,
            user: None,
            allowed_models: None,
        };
    };
    for (field, value) in [
        ("team", &raw.team),
        ("project", &raw.project),
        ("user", &raw.user),
        ("allowed_models", &raw.allowed_models),
    ] {
        if value.as_deref() == Some("") {
            errors.push(format!("auth.jwt.claims.{field}: must not be empty"));
        }
    }
    if raw.project.is_some() && raw.team.is_none() {
        errors.push("auth.jwt.claims.project: needs claims.team (projects belong to teams)".into());
    }
    let names = ClaimNames {
        organization: raw.organization.unwrap_or_default(),
        team: raw.team,
        project: raw.project,
        user: raw.user,
        allowed_models: raw.allowed_models,
    };
    if names.organization.is_empty() {
        errors.push("auth.jwt.claims.organization: required".into());
    }
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    fn env(name: &str) -> Option<String> {
        match name {
            "JWT_SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
            "SHORT" => Some("too-short".into()),
            _ => None,
        }
    }

    fn config(auth: &str, server: &str) -> Result<crate::Config, String> {
        let text = format!(
            "{server}providers:\n  p: {{ base_url: \"http://127.0.0.1:1/v1\" }}\nmodels:\n  a: {{ targets: [{{ provider: p, model: x }}] }}\ntenants:\n  acme: {{ teams: {{ search: {{ allowed_models: [a] }} }} }}\nauth:\n{auth}"
        );
        crate::parse(&text, Path::new("."), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn a_secret_or_a_jwks_with_safe_defaults() {
        let cfg = config(
            "  jwt: { issuer: https://idp/, audience: johi, hs256_secret: \"${JWT_SECRET}\", claims: { organization: org, team: team, user: sub } }\n",
            "",
        )
        .unwrap();
        assert!(cfg.auth.restricts_models, "the team limits models");
        assert!(cfg.pipeline.iter().any(|e| e.name == "authorize"));
        let jwt = cfg.auth.authenticator.jwt().unwrap();
        assert_eq!(jwt.settings().cache_size, super::DEFAULT_CACHE_SIZE);
        let uncached = config(
            "  jwt: { issuer: https://idp/, audience: johi, hs256_secret: \"${JWT_SECRET}\", cache_size: 0, claims: { organization: org } }\n",
            "",
        )
        .unwrap();
        assert_eq!(
            uncached
                .auth
                .authenticator
                .jwt()
                .unwrap()
                .settings()
                .cache_size,
            0
        );
        assert!(config(
            "  jwt: { issuer: https://idp/, audience: johi, hs256_secret: \"${JWT_SECRET}\", cache_size: -1, claims: { organization: org } }\n",
            "",
        )
        .is_err(), "a negative size is refused at load");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("jwks.json"),
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#,
        )
        .unwrap();
        let text = "providers:\n  p: { base_url: \"http://127.0.0.1:1/v1\" }\nmodels:\n  a: { targets: [{ provider: p, model: x }] }\ntenants: { acme: {} }\nauth:\n  jwt: { issuer: i, audience: a, jwks_file: jwks.json, claims: { organization: org } }\n";
        crate::parse(text, dir.path(), &env).unwrap();
    }

    #[test]
    fn every_jwt_and_mtls_mistake_names_its_field() {
        let err = config(
            "  jwt: { hs256_secret: \"${SHORT}\", algorithms: [RS256, none], leeway: 1h, claims: { project: p } }\n  mtls: { identities: [{ id: a, owner: nope }, { id: a, san: x, cn: y, owner: acme }] }\n",
            "",
        )
        .unwrap_err();
        for expected in [
            "auth.jwt.issuer: required",
            "auth.jwt.audience: required",
            "auth.jwt.hs256_secret: at least 32 bytes",
            "auth.jwt.algorithms[1]: 'none' is not supported",
            "auth.jwt.leeway: at most 5m",
            "auth.jwt.claims.organization: required",
            "auth.jwt.claims.project: needs claims.team",
            "auth.mtls: client certificates are only asked for with server.tls.client_ca",
            "auth.mtls.identities[0]: set exactly one of san and cn",
            "auth.mtls.identities[0].owner: unknown organization 'nope'",
            "auth.mtls.identities[1].id: 'a' is used by another identity",
            "auth.mtls.identities[1]: set exactly one of san and cn",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        let err = config(
            "  jwt: { issuer: i, audience: a, jwks_url: \"http://idp.example.com/jwks\", hs256_secret: x, claims: { organization: o } }\n",
            "server: { tls: { cert_file: c.pem, key_file: k.pem, client_auth: sometimes } }\n",
        )
        .unwrap_err();
        for expected in [
            "auth.jwt: set exactly one of jwks_file, jwks_url and hs256_secret",
            "server.tls.client_auth: 'sometimes' is not optional or required",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        let err = config(
            "  jwt: { issuer: i, audience: a, jwks_url: \"http://idp.example.com/jwks\", algorithms: [HS256], claims: { organization: o } }\n",
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("auth.jwt.jwks_url: 'http://idp.example.com/jwks' must be https://"),
            "{err}"
        );
        let err = config(
            "  jwt: { issuer: i, audience: a, jwks_url: \"https://idp.example.com/jwks\", algorithms: [HS256], claims: { organization: o } }\n",
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("auth.jwt.algorithms[0]: HS256 needs hs256_secret; a JWKS never supplies an HMAC key"),
            "{err}"
        );
        let err = config(
            "  jwt: { issuer: i, audience: a, jwks_file: missing.json, claims: { organization: o } }\n",
            "",
        )
        .unwrap_err();
        assert!(err.contains("auth.jwt.jwks_file: ./missing.json:"), "{err}");
    }
}
