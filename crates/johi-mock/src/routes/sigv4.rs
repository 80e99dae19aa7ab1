//! The SigV4 check of the Bedrock routes: the signature is computed again with the mock's
//! key pair and must match, so a signing bug in the gateway (wrong secret, wrong service,
//! a header or the body changed after signing) fails the tests with Bedrock's 403.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::request::Parts;
use http::StatusCode;

use super::converse::error_named;
use super::Resp;
use crate::{MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY};

/// The 403 message AWS gives for a signature computed with the wrong secret.
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// `None` when the request is signed with the mock's key pair for service `bedrock`; else
/// the 403 Bedrock would answer.
pub(crate) fn check(parts: &Parts, body: &[u8]) -> Option<Resp> {
    let deny = |exception: &str, message: &str| {
        Some(error_named(StatusCode::FORBIDDEN, exception, message))
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(auth) = header("authorization") else {
        return deny(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    };
    let Some(parsed) = Authorization::parse(auth) else {
        return deny(
            "IncompleteSignatureException",
            "Malformed Authorization header",
        );
    };
    if parsed.access_key_id != MOCK_AWS_ACCESS_KEY_ID {
        return deny(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    if parsed.service != "bedrock" {
        return deny(
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
        );
    }
    let (Some(date), Some(host)) = (
        header("x-amz-date").and_then(parse_amz_date),
        header("host"),
    ) else {
        return deny("IncompleteSignatureException", "Missing x-amz-date or host");
    };
    let expected = signature(parts, body, &parsed, date, host);
    if expected.as_deref() != Some(parsed.signature) {
        return deny("InvalidSignatureException", MISMATCH);
    }
    None
}

/// The parts of `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key_id: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for item in rest.split(',') {
            let (k, v) = item.trim().split_once('=')?;
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => signature = Some(v),
                _ => return None,
            }
        }
        let mut scope = credential?.split('/');
        let access_key_id = scope.next()?;
        let _date = scope.next()?;
        let region = scope.next()?;
        let service = scope.next()?;
        Some(Authorization {
            access_key_id,
            region,
            service,
            signed_headers: signed?.split(';').collect(),
            signature: signature?,
        })
    }
}

/// The signature the request should carry, from the headers it says it signed.
fn signature(
    parts: &Parts,
    body: &[u8],
    auth: &Authorization<'_>,
    time: SystemTime,
    host: &str,
) -> Option<String> {
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity: Identity = Credentials::new(
        MOCK_AWS_ACCESS_KEY_ID,
        MOCK_AWS_SECRET_ACCESS_KEY,
        token,
        None,
        "mock",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    // `host`, `x-amz-date` and `x-amz-security-token` are added by the signer itself.
    let mut headers = Vec::new();
    for name in &auth.signed_headers {
        if matches!(*name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let value = parts.headers.get(*name)?.to_str().ok()?;
        headers.push((*name, value));
    }
    let uri = format!("http://{host}{}", parts.uri.path_and_query()?.as_str());
    let request = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .ok()?;
    let (_, signature) = sign(request, &params).ok()?.into_parts();
    Some(signature)
}

/// `20231114T221320Z` → a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let secs = num(9..11)? * 3600 + num(11..13)? * 60 + num(13..15)?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = u64::try_from(days * 86_400 + secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse() {
        let t = parse_amz_date("20231114T221320Z").unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(parse_amz_date("2023-11-14").is_none());
    }
}
