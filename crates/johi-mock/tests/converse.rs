//! The Bedrock routes: SigV4 is checked (unsigned, tampered and wrong-key requests get
//! Bedrock's 403), answers and event-stream frames are well-formed.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_runtime_api::client::identity::Identity;
use common::{client, mock};
use johi_mock::{MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY};
use serde_json::{json, Value};

/// Sends `body` to `path`, signed with `secret` (or unsigned), the body possibly swapped
/// after signing.
async fn send(
    base: &str,
    path: &str,
    body: &Value,
    secret: Option<&str>,
    tamper: bool,
) -> reqwest::Response {
    let url = format!("{base}{path}");
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = client()
        .post(&url)
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        let identity: Identity =
            Credentials::new(MOCK_AWS_ACCESS_KEY_ID, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("bedrock")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            std::iter::once(("content-type", "application/json")),
            SignableBody::Bytes(&bytes),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
    }
    let bytes = if tamper {
        b"{\"messages\":[]}".to_vec()
    } else {
        bytes
    };
    req.body(bytes).send().await.unwrap()
}

fn base(mock: &johi_mock::MockUpstream) -> String {
    format!("http://{}", mock.addr())
}

fn converse() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hello there"}]}],
           "inferenceConfig": {"maxTokens": 3}})
}

#[tokio::test]
async fn unsigned_tampered_and_wrongly_signed_requests_get_bedrocks_403() {
    let mock = mock().await;
    let base = base(&mock);
    for (secret, tamper, exception) in [
        (None, false, "MissingAuthenticationTokenException"),
        (Some("wrong"), false, "InvalidSignatureException"),
        (
            Some(MOCK_AWS_SECRET_ACCESS_KEY),
            true,
            "InvalidSignatureException",
        ),
    ] {
        let r = send(&base, "/model/m/converse", &converse(), secret, tamper).await;
        assert_eq!(r.status(), 403, "{exception}");
        let kind = r.headers()["x-amzn-errortype"].to_str().unwrap().to_owned();
        assert!(kind.starts_with(exception), "{kind}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn a_signed_converse_request_gets_a_converse_answer() {
    let mock = mock().await;
    let r = send(
        &base(&mock),
        "/model/a%3A0/converse",
        &converse(),
        Some(MOCK_AWS_SECRET_ACCESS_KEY),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-amzn-requestid"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["stopReason"], "max_tokens");
    assert_eq!(body["output"]["message"]["content"][0]["text"], "This is a");
    assert_eq!(
        body["usage"],
        json!({"inputTokens": 2, "outputTokens": 3, "totalTokens": 5})
    );
    assert_eq!(mock.stats().converse, 1);
}

#[tokio::test]
async fn a_signed_stream_request_gets_event_stream_frames() {
    let mock = mock().await;
    let r = send(
        &base(&mock),
        "/model/m/converse-stream",
        &converse(),
        Some(MOCK_AWS_SECRET_ACCESS_KEY),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let bytes = r.bytes().await.unwrap();
    let mut rest = &bytes[..];
    let mut types = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let message = read_message_from(&rest[..len]).unwrap();
        let header = message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type");
        types.push(
            header
                .unwrap()
                .value()
                .as_string()
                .unwrap()
                .as_str()
                .to_owned(),
        );
        rest = &rest[len..];
    }
    assert_eq!(
        types,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
}

#[tokio::test]
async fn invoke_embeds_titan_and_cohere_and_checks_the_signature() {
    let mock = mock().await;
    let base = base(&mock);
    let key = Some(MOCK_AWS_SECRET_ACCESS_KEY);
    let titan = json!({"inputText": "hello there", "dimensions": 4});
    let r = send(&base, "/model/m/invoke", &titan, None, false).await;
    assert_eq!(r.status(), 403);

    let path = "/model/amazon.titan-embed-text-v2%3A0/invoke";
    let r = send(&base, path, &titan, key, false).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["inputTextTokenCount"], 2);
    assert_eq!(t["embedding"].as_array().unwrap().len(), 4);

    let cohere = json!({"texts": ["hello there", "x"], "input_type": "search_document",
                        "embedding_types": ["float"], "output_dimension": 4});
    let r = send(
        &base,
        "/model/cohere.embed-v4%3A0/invoke",
        &cohere,
        key,
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["response_type"], "embeddings_by_type");
    // The same text gets the same vector whichever family embeds it.
    assert_eq!(c["embeddings"]["float"][0], t["embedding"]);
    assert!(
        c.get("meta").is_none(),
        "Bedrock's Cohere answer has no usage"
    );

    let r = send(&base, "/model/meta.llama3/invoke", &titan, key, false).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .starts_with("ValidationException"));
    // Counted on arrival, the unsigned one too.
    assert_eq!(mock.stats().embeddings, 4);
    assert_eq!(mock.stats().converse, 0);
}
