//! Golden tests for the inbound Anthropic Messages translation (clients speaking Messages to
//! Johi), driven by the fixtures under `tests/fixtures/anthropic_inbound/` (built from
//! Anthropic's and OpenAI's published API reference examples).
//!
//! * `request/<case>.anthropic.json` → `<case>.openai.json` (`{"body"}`: the chat body the
//!   pipeline runs, with the decoded `model` and `stream`), or `<case>.error.json` (`{"error": "unsupported"|"invalid", "field": …}`);
//! * `response/<case>.openai.json` → `<case>.anthropic.json`;
//! * `stream/<case>.sse` (an OpenAI chunk stream) → `<case>.expected.json`
//!   (`{"events": [{"event", "data"}…]}`), re-run in 1-, 7- and 64-byte chunks;
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`.
//!
//! `BLESS=1 cargo test -p johi-providers --test anthropic_inbound` rewrites the expected
//! files (review the diff before committing).

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::{check, feed_in_chunks, Fixtures};
use johi_providers::anthropic::inbound::{
    decode_count_tokens, decode_request, encode_error, encode_response, StreamEncoder,
};
use johi_providers::anthropic::{encode_request, TranslateError};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIXTURES: Fixtures = Fixtures("anthropic_inbound");
const MODEL: &str = "claude-sonnet";

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let dir = FIXTURES.dir("request");
    for case in FIXTURES.cases("request", ".anthropic.json") {
        let input = fs::read(dir.join(format!("{case}.anthropic.json"))).unwrap();
        let error_path = dir.join(format!("{case}.error.json"));
        match decode_request(&input) {
            Ok(decoded) => {
                assert!(!error_path.exists(), "{case}: expected a refusal");
                let out = json!({
                    "body": decoded.body, "model": decoded.model, "stream": decoded.stream,
                });
                check(&dir.join(format!("{case}.openai.json")), &out);
            }
            Err(e) => {
                let expected = common::read_json(&error_path);
                assert_eq!(
                    json!({"error": common::error_kind(&e), "field": e.field()}),
                    expected,
                    "{case}: {e}"
                );
            }
        }
    }
}

/// Both ends agree: every request the inbound side accepts without a thinking history is
/// accepted by the Anthropic-protocol adapter, `top_k`, `thinking` and `cache_control`
/// included, and arrives with them.
#[test]
fn decoded_requests_are_accepted_by_the_anthropic_adapter() {
    for case in FIXTURES.cases("request", ".anthropic.json") {
        let input = fs::read(
            FIXTURES
                .dir("request")
                .join(format!("{case}.anthropic.json")),
        )
        .unwrap();
        let Ok(decoded) = decode_request(&input) else {
            continue;
        };
        let original: Value = serde_json::from_slice(&input).unwrap();
        let has_thinking_history = original.to_string().contains("\"signature\"");
        let encoded = encode_request(&decoded.body, "claude-upstream", 1024);
        if has_thinking_history {
            // Thinking history is carried as `reasoning_content`, which the adapter refuses
            // by name rather than drop the signature (see docs/providers.md).
            let err = encoded.unwrap_err();
            assert!(err.field().ends_with("reasoning_content"), "{case}: {err}");
            continue;
        }
        let encoded = encoded.unwrap_or_else(|e| panic!("{case}: {e}"));
        let body: Value = serde_json::from_slice(&encoded.body).unwrap();
        for field in ["top_k", "thinking", "temperature", "top_p"] {
            assert_eq!(body.get(field), original.get(field), "{case}: {field}");
        }
        assert_eq!(body["max_tokens"], original["max_tokens"], "{case}");
        assert_eq!(
            original.to_string().matches("cache_control").count(),
            body.to_string().matches("cache_control").count(),
            "{case}: cache_control"
        );
    }
}

#[test]
fn count_tokens_bodies_need_no_max_tokens() {
    let body = br#"{"model":"m","system":"s","messages":[{"role":"user","content":"hi"}]}"#;
    let decoded = decode_count_tokens(body).unwrap();
    assert_eq!(decoded.body["messages"].as_array().unwrap().len(), 2);
    assert!(decoded.body.get("max_tokens").is_none());
    assert_eq!(
        decode_request(body).unwrap_err().field(),
        "max_tokens",
        "a Messages request needs max_tokens"
    );
}

#[test]
fn responses_translate() {
    FIXTURES.decode_cases(
        "response",
        ".openai.json",
        ".anthropic.json",
        |case, input| encode_response(input, MODEL).unwrap_or_else(|e| panic!("{case}: {e}")),
    );
}

#[test]
fn unreadable_answers_are_upstream_errors() {
    for body in [&b"not json"[..], b"{}", br#"{"choices":[{}]}"#] {
        let err = encode_response(body, MODEL).unwrap_err();
        assert!(matches!(err, TranslateError::Upstream { .. }), "{err}");
    }
    let bad_args = br#"{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{"}}]}}]}"#;
    assert!(encode_response(bad_args, MODEL).is_err());
}

#[test]
fn errors_translate() {
    for e in FIXTURES.error_cases() {
        assert_eq!(
            encode_error(e.status, &e.body),
            e.fixture["expected"],
            "{}",
            e.case
        );
    }
}

/// Runs `input` through a fresh encoder in `split`-byte chunks; the events as
/// `{"event", "data"}` objects.
fn encode_stream(input: &[u8], split: usize) -> Vec<Value> {
    let mut encoder = StreamEncoder::new(MODEL);
    let mut out = feed_in_chunks(input, split, |chunk| encoder.feed(chunk));
    out.extend(encoder.finish());
    assert!(encoder.is_finished());
    let text = String::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("malformed event {e:?}"));
            json!({"event": name, "data": serde_json::from_str::<Value>(data).unwrap()})
        })
        .collect()
}

#[test]
fn streams_translate_whatever_the_chunking() {
    let dir = FIXTURES.dir("stream");
    for case in FIXTURES.cases("stream", ".sse") {
        let input = fs::read(dir.join(format!("{case}.sse"))).unwrap();
        let whole = encode_stream(&input, input.len().max(1));
        check(
            &dir.join(format!("{case}.expected.json")),
            &json!({ "events": whole }),
        );
        for split in [1, 7, 64] {
            assert_eq!(
                encode_stream(&input, split),
                whole,
                "{case} in {split}-byte chunks"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_stream_encoder_never_panics_on_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut encoder = StreamEncoder::new(MODEL);
        for chunk in &chunks {
            let _ = encoder.feed(chunk);
        }
        let _ = encoder.finish();
        prop_assert!(encoder.is_finished());
    }

    #[test]
    fn the_stream_encoder_never_panics_on_chunks(events in proptest::collection::vec(arb_chunk(), 0..24)) {
        let mut encoder = StreamEncoder::new(MODEL);
        for ev in &events {
            let _ = encoder.feed(format!("data: {ev}\n\n").as_bytes());
        }
        let _ = encoder.feed(b"data: [DONE]\n\n");
        let _ = encoder.finish();
    }

    #[test]
    fn the_request_decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(&body);
        let _ = decode_count_tokens(&body);
        let _ = encode_response(&body, MODEL);
        let _ = encode_error(500, &body);
    }
}

/// OpenAI chunks with plausible and implausible deltas.
fn arb_chunk() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        Just(Value::Null),
        "[a-z ]{0,8}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from)
    ];
    let index = prop_oneof![
        Just(Value::Null),
        (0u64..3).prop_map(Value::from),
        Just(json!(-1))
    ];
    (text.clone(), text.clone(), text, index, prop_oneof![Just(Value::Null), Just(json!("stop")), Just(json!("tool_calls")), Just(json!(7))])
        .prop_map(|(content, reasoning, args, index, finish)| {
            json!({"id": "c", "choices": [{"index": 0, "finish_reason": finish, "delta": {
                "content": content, "reasoning_content": reasoning,
                "tool_calls": [{"index": index, "id": "t", "function": {"name": "f", "arguments": args}}]}}],
                "usage": {"prompt_tokens": 1}})
        })
}
