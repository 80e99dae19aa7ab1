//! AWS Signature Version 4 for Bedrock providers, with the official `aws-sigv4` signer.
//!
//! Called by the credentials processor on every attempt, after translation has written the
//! final URL and body: the signature covers both, and a retry or a fallback is signed afresh
//! (with a fresh `x-amz-date`). Static keys come from the provider's config
//! ([`static_credentials`]); without them the credentials processor gets them from the AWS
//! credential chain ([`crate::aws_chain`]).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use johi_core::model::AwsAuth;

/// The headers a signature adds; any left by an earlier attempt are removed first.
const SIGNING_HEADERS: [&str; 3] = ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// Signs a `POST` of `body` to `uri`, adding `authorization`, `x-amz-date` (and
/// `x-amz-security-token` for temporary keys) to `headers`. The signed headers are `host`
/// and `content-type` only: the others (trace context, enrichment) may be changed by a
/// proxy on the way without breaking the signature.
pub(crate) fn sign_request(
    aws: &AwsAuth,
    credentials: Credentials,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), String> {
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&aws.region)
        .name(&aws.service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?
        .into();
    headers.remove(AUTHORIZATION);
    for name in SIGNING_HEADERS {
        headers.remove(name);
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    if uri.authority().is_none() {
        return Err("the upstream URL has no host to sign".into());
    }
    let uri_text = uri.to_string();
    let signable = SignableRequest::new(
        "POST",
        uri_text.as_str(),
        std::iter::once(("content-type", content_type.as_str())),
        SignableBody::Precomputed(payload_hash(body)),
    )
    .map_err(|e| format!("SigV4: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("SigV4: {e}"))?
        .into_parts();
    let (signed, _query) = instructions.into_parts();
    for header in signed {
        let name = HeaderName::from_static(header.name());
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("SigV4 produced an invalid {} header", header.name()))?;
        value.set_sensitive(header.sensitive() || name == AUTHORIZATION);
        headers.insert(name, value);
    }
    Ok(())
}

/// The static keys from config, when both are set: used as they are, with no aws-config call.
/// The payload's SHA-256 as lowercase hex, which SigV4 puts in the canonical request.
///
/// Hashed with ring rather than left to `aws-sigv4` (which uses the `sha2` crate): ring's
/// assembly is several times faster on the 1 KB+ bodies a chat request carries, and the
/// signature is the same (the signing test below checks the value against `Bytes`).
fn payload_hash(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

pub(crate) fn static_credentials(aws: &AwsAuth) -> Option<Credentials> {
    match (&aws.access_key_id, &aws.secret_access_key) {
        (Some(id), Some(secret)) => Some(Credentials::new(
            id.expose(),
            secret.expose(),
            aws.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "johi-config",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use johi_core::model::Secret;

    use super::*;

    #[test]
    fn signs_with_the_documented_header_shape() {
        let aws = AwsAuth {
            region: "us-east-1".into(),
            service: "bedrock".into(),
            access_key_id: Some(Secret::new("AKIDEXAMPLE")),
            secret_access_key: Some(Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")),
            session_token: Some(Secret::new("token")),
            profile: None,
            credentials_file: None,
        };
        let credentials = static_credentials(&aws).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let uri: Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse"
            .parse()
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&aws, credentials.clone(), &uri, &mut headers, b"{}", now).unwrap();
        let auth = headers[AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{auth}"
        );
        assert_eq!(headers["x-amz-date"], "20231114T221320Z");
        assert_eq!(headers["x-amz-security-token"], "token");
        // Signing again (a retry) replaces, never duplicates.
        sign_request(&aws, credentials.clone(), &uri, &mut headers, b"{}", now).unwrap();
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
    }

    #[test]
    fn the_precomputed_payload_hash_signs_as_the_body_itself_would() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        assert_eq!(
            payload_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let identity: Identity = Credentials::new("AKIDEXAMPLE", "secret", None, None, "t").into();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("bedrock")
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signature = |signable_body| {
            let request = SignableRequest::new(
                "POST",
                "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
                std::iter::once(("content-type", "application/json")),
                signable_body,
            )
            .unwrap();
            sign(request, &params).unwrap().signature().to_owned()
        };
        assert_eq!(
            signature(SignableBody::Precomputed(payload_hash(body))),
            signature(SignableBody::Bytes(body))
        );
    }
}
