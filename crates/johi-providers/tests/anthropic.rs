//! Golden tests for the Anthropic Messages translation, driven by the fixtures under
//! `tests/fixtures/anthropic/` (built from Anthropic's published API reference examples).
//!
//! * `request/<case>.openai.json` → `<case>.anthropic.json` (the expected upstream body), or
//!   `<case>.error.json` (`{"error": "unsupported"|"invalid", "field": …}`) for a refusal;
//! * `response/<case>.anthropic.json` → `<case>.openai.json`;
//! * `stream/<case>.sse` → `<case>.expected.json` (`{"events": [data payloads…], "usage"}`);
//!   a case whose name contains `with_usage` asks for `stream_options.include_usage`;
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`.
//!
//! `BLESS=1 cargo test -p johi-providers --test anthropic` rewrites the expected files
//! (review the diff before committing).

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{data_payloads, feed_in_chunks, Fixtures};
use johi_providers::anthropic::{
    decode_error, decode_response, encode_request, usage_from_anthropic, StreamTranslator,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIXTURES: Fixtures = Fixtures("anthropic");
const UPSTREAM_MODEL: &str = "claude-sonnet-4-5-20250929";
const REQUESTED_MODEL: &str = "claude-sonnet";
const CREATED: u64 = 1_700_000_000;
const DEFAULT_MAX_TOKENS: u64 = 4096;

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let refused = FIXTURES.request_cases("request", ".anthropic.json", |body| {
        let encoded = encode_request(body, UPSTREAM_MODEL, DEFAULT_MAX_TOKENS)?;
        Ok(json!({
            "body": serde_json::from_slice::<Value>(&encoded.body).unwrap(),
            "stream": encoded.stream,
            "include_usage": encoded.include_usage,
        }))
    });
    assert!(refused >= 8, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    FIXTURES.decode_cases(
        "response",
        ".anthropic.json",
        ".openai.json",
        |case, body| {
            let decoded = decode_response(body, REQUESTED_MODEL, CREATED)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
            // The usage Johi meters agrees with the usage the client is shown, and with the
            // reading of Anthropic's usage object the stream translator uses.
            let raw: Value = serde_json::from_slice(body).unwrap();
            let usage = usage_from_anthropic(&raw["usage"]).unwrap();
            assert_eq!(decoded.usage, Some(usage), "{case}");
            assert_eq!(
                actual["usage"]["prompt_tokens"], usage.input_tokens,
                "{case}"
            );
            assert_eq!(
                actual["usage"]["prompt_tokens_details"]["cached_tokens"], usage.cached_tokens,
                "{case}"
            );
            actual
        },
    );
}

#[test]
fn unreadable_responses_are_upstream_errors() {
    let err = decode_response(b"<html>", REQUESTED_MODEL, CREATED).unwrap_err();
    assert_eq!(err.field(), "body");
    let err = decode_response(
        br#"{"id":"m","content":[{"type":"tool_use","id":"t"}]}"#,
        "m",
        0,
    )
    .unwrap_err();
    assert_eq!(err.field(), "content[0].name");
}

#[test]
fn errors_translate() {
    for e in FIXTURES.error_cases() {
        let actual = decode_error(e.status, &e.body);
        assert_eq!(actual, e.fixture["expected"], "{}", e.case);
    }
}

/// Runs a stream through the translator in chunks of `split` bytes; returns the data
/// payloads of the OpenAI events (JSON, or the string `[DONE]`).
fn translate_stream(input: &[u8], include_usage: bool, split: usize) -> (Vec<Value>, Value) {
    let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, include_usage);
    let mut out = feed_in_chunks(input, split, |chunk| t.feed(chunk));
    out.extend(t.finish());
    let usage = t
        .usage()
        .map_or(Value::Null, |u| serde_json::to_value(u).unwrap());
    (data_payloads(out), usage)
}

#[test]
fn streams_translate_whatever_the_chunking() {
    FIXTURES.stream_cases(translate_stream);
}

#[test]
fn a_request_without_max_tokens_gets_the_default() {
    let body: Map<String, Value> =
        serde_json::from_str(r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
    let encoded = encode_request(&body, "claude", 321).unwrap();
    let v: Value = serde_json::from_slice(&encoded.body).unwrap();
    assert_eq!(v["max_tokens"], 321);
    assert_eq!(v["model"], "claude");
}

common::stream_translator_properties!(b"data: {\"type\":\"message_stop\"}\n\n", arb_event);

/// Plausible Anthropic events with arbitrary indices, kinds and values.
fn arb_event() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("message_start"),
        Just("content_block_start"),
        Just("content_block_delta"),
        Just("content_block_stop"),
        Just("message_delta"),
        Just("message_stop"),
        Just("ping"),
        Just("error"),
        Just("something_new"),
    ];
    let block = prop_oneof![
        Just(json!({"type": "text", "text": "a"})),
        Just(json!({"type": "tool_use", "id": "t", "name": "f", "input": {}})),
        Just(json!({"type": "thinking", "thinking": ""})),
        Just(json!({"type": "tool_use"})),
        Just(json!(7)),
    ];
    let delta = prop_oneof![
        Just(json!({"type": "text_delta", "text": "x"})),
        Just(json!({"type": "input_json_delta", "partial_json": "{\""})),
        Just(json!({"type": "thinking_delta", "thinking": "y"})),
        Just(json!({"stop_reason": "tool_use"})),
        Just(json!({"stop_reason": 3})),
        Just(Value::Null),
    ];
    let usage = prop_oneof![
        Just(json!({"input_tokens": 3, "output_tokens": 4})),
        Just(json!({"output_tokens": u64::MAX})),
        Just(json!({"output_tokens": -1})),
        Just(Value::Null),
    ];
    (kind, 0u64..4, block, delta, usage).prop_map(|(kind, index, block, delta, usage)| {
        json!({
            "type": kind, "index": index, "content_block": block, "delta": delta,
            "usage": usage, "message": {"id": "msg", "usage": usage},
            "error": {"type": "api_error", "message": "boom"},
        })
    })
}
