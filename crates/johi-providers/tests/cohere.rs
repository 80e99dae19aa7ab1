//! Golden tests for the Cohere v2 translation, driven by the fixtures under
//! `tests/fixtures/cohere/` (built from Cohere's published API reference examples).
//!
//! * `request/<case>.openai.json` → `<case>.cohere.json` (the expected upstream body), or
//!   `<case>.error.json` (`{"error": "unsupported"|"invalid", "field": …}`) for a refusal;
//! * `response/<case>.cohere.json` → `<case>.openai.json`;
//! * `stream/<case>.sse` → `<case>.expected.json` (`{"events": [data payloads…], "usage"}`);
//!   a case whose name contains `with_usage` asks for `stream_options.include_usage`;
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`;
//! * `embed_request/<case>.openai.json` → `<case>.cohere.json` or `<case>.error.json`, and
//!   `embed_response/<case>.cohere.json` → `<case>.openai.json`.
//!
//! `BLESS=1 cargo test -p johi-providers --test cohere` rewrites the expected files
//! (review the diff before committing).

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::{data_payloads, feed_in_chunks, Fixtures};
use johi_providers::cohere::{
    decode_embed_response, decode_error, decode_response, encode_embed_request, encode_request,
    usage_from_cohere, StreamTranslator,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIXTURES: Fixtures = Fixtures("cohere");
const UPSTREAM_MODEL: &str = "command-a-03-2025";
const REQUESTED_MODEL: &str = "command";
const CREATED: u64 = 1_700_000_000;

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let refused = FIXTURES.request_cases("request", ".cohere.json", |body| {
        let encoded = encode_request(body, UPSTREAM_MODEL)?;
        Ok(json!({
            "body": serde_json::from_slice::<Value>(&encoded.body).unwrap(),
            "stream": encoded.stream,
            "include_usage": encoded.include_usage,
        }))
    });
    assert!(refused >= 10, "refusal fixtures are all exercised");
}

#[test]
fn embed_requests_translate_or_are_refused_naming_the_field() {
    let refused = FIXTURES.request_cases("embed_request", ".cohere.json", |body| {
        let encoded = encode_embed_request(body, "embed-v4.0", None)?;
        Ok(serde_json::from_slice(&encoded).unwrap())
    });
    assert!(refused >= 3, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    FIXTURES.decode_cases("response", ".cohere.json", ".openai.json", |case, body| {
        let decoded = decode_response(body, REQUESTED_MODEL, CREATED)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
        // The usage Johi meters agrees with the usage the client is shown, and with the
        // reading of Cohere's usage object the stream translator uses.
        let raw: Value = serde_json::from_slice(body).unwrap();
        let usage = usage_from_cohere(&raw["usage"]).unwrap();
        assert_eq!(decoded.usage, Some(usage), "{case}");
        assert_eq!(
            actual["usage"]["prompt_tokens"], usage.input_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["completion_tokens"], usage.output_tokens,
            "{case}"
        );
        actual
    });
}

#[test]
fn embed_responses_translate() {
    FIXTURES.decode_cases(
        "embed_response",
        ".cohere.json",
        ".openai.json",
        |case, body| {
            let decoded = decode_embed_response(body, REQUESTED_MODEL)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
            // Johi meters the input tokens the client is shown (an embedding has no output).
            let metered = decoded.usage.unwrap();
            assert_eq!(
                actual["usage"]["prompt_tokens"], metered.input_tokens,
                "{case}"
            );
            assert_eq!(metered.output_tokens, 0, "{case}");
            actual
        },
    );
}

#[test]
fn unreadable_responses_are_upstream_errors() {
    let err = decode_response(b"<html>", REQUESTED_MODEL, CREATED).unwrap_err();
    assert_eq!(err.field(), "body");
    let err = decode_response(
        br#"{"id":"m","message":{"tool_calls":[{"id":"t","function":{}}]}}"#,
        "m",
        0,
    )
    .unwrap_err();
    assert_eq!(err.field(), "message.tool_calls[0].function.name");
    let err = decode_embed_response(br#"{"embeddings":{"int8":[[1]]}}"#, "m").unwrap_err();
    assert_eq!(err.field(), "embeddings");
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
fn a_streamed_tool_loop_round_trips_its_plan() {
    // The plan Cohere streamed comes back as `reasoning_content`; sent back on the assistant
    // message, it is Cohere's `tool_plan` again.
    let input = fs::read(FIXTURES.dir("stream").join("tool_calls_with_usage.sse")).unwrap();
    let (events, _) = translate_stream(&input, false, 64);
    let plan: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let body: Map<String, Value> = serde_json::from_value(json!({
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "reasoning_content": plan, "tool_calls": [
                {"id": "get_weather_nsz5zm3w56q3", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\": \"Toronto\"}"}}]},
            {"role": "tool", "tool_call_id": "get_weather_nsz5zm3w56q3", "content": "20C"},
        ]
    }))
    .unwrap();
    let encoded = encode_request(&body, UPSTREAM_MODEL).unwrap();
    let v: Value = serde_json::from_slice(&encoded.body).unwrap();
    assert_eq!(v["messages"][1]["tool_plan"], "I will check the weather.");
}

common::stream_translator_properties!(b"data: {\"type\":\"message-end\"}\n\n", arb_event);

/// Plausible Cohere events with arbitrary indices, kinds and values.
fn arb_event() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("message-start"),
        Just("content-start"),
        Just("content-delta"),
        Just("content-end"),
        Just("tool-plan-delta"),
        Just("tool-call-start"),
        Just("tool-call-delta"),
        Just("tool-call-end"),
        Just("citation-start"),
        Just("message-end"),
        Just("error"),
        Just("something-new"),
    ];
    let message = prop_oneof![
        Just(json!({"content": {"type": "text", "text": "a"}})),
        Just(json!({"content": {"thinking": "t"}})),
        Just(json!({"content": 7})),
        Just(json!({"tool_plan": "p"})),
        Just(
            json!({"tool_calls": {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{"}}})
        ),
        Just(json!({"tool_calls": {"function": {"arguments": 3}}})),
        Just(Value::Null),
    ];
    let finish = prop_oneof![
        Just(json!("COMPLETE")),
        Just(json!("TOOL_CALL")),
        Just(json!("ERROR")),
        Just(json!(5)),
        Just(Value::Null),
    ];
    let usage = prop_oneof![
        Just(json!({"billed_units": {"input_tokens": 3, "output_tokens": 4}})),
        Just(json!({"billed_units": {"output_tokens": u64::MAX}})),
        Just(json!({"tokens": {"input_tokens": -1.5}})),
        Just(json!({"billed_units": 1})),
        Just(Value::Null),
    ];
    let index = prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(u64::MAX)),
        Just(Value::Null)
    ];
    (kind, index, message, finish, usage).prop_map(|(kind, index, message, finish, usage)| {
        json!({
            "type": kind, "index": index, "id": "msg",
            "delta": {"message": message, "finish_reason": finish, "usage": usage},
        })
    })
}
