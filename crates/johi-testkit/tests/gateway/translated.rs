//! Helpers shared by the tests of the translated protocols (`anthropic`, `bedrock`, `cohere`,
//! `gemini`): the checks that read the same whichever protocol the gateway speaks upstream.

use johi_testkit::{sse_data, Harness};
use serde_json::Value;

/// The JSON chunks of a translated stream, after checking it ends with `[DONE]`.
pub fn chunks(text: &str) -> Vec<Value> {
    let events = sse_data(text);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// For each `(status, type, code)`, plain and streamed (`chat(stream)`), an upstream error
/// with that status comes back with it, in OpenAI's shape with that type and message, and
/// with that code unless `code` is `None`.
pub async fn errors_come_back_in_openais_shape(
    h: &Harness,
    chat: impl Fn(bool) -> Value,
    cases: &[(u16, &str, Option<Value>)],
) {
    for (status, kind, code) in cases {
        for stream in [false, true] {
            let r = h
                .client
                .post(h.url("/v1/chat/completions"))
                .header("x-mock-status", status.to_string())
                .json(&chat(stream))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), *status);
            let error: Value = r.json().await.unwrap();
            assert_eq!(error["error"]["type"], *kind, "{error}");
            if let Some(code) = code {
                assert_eq!(error["error"]["code"], *code, "{error}");
            }
            assert_eq!(error["error"]["message"], format!("mock error {status}"));
        }
    }
}

/// A stream the upstream cuts after three events ends with an error event (and no `[DONE]`)
/// in a stream that still closes cleanly.
pub async fn a_cut_stream_ends_with_an_error_event(h: &Harness, streamed_chat: &Value) {
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-mock-stream-cut-after", "3")
        .json(streamed_chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = sse_data(&r.text().await.expect("the stream closes cleanly"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}
