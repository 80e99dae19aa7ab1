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

use std::fs;
use std::path::{Path, PathBuf};

use johi_providers::anthropic::{
    decode_error, decode_response, encode_request, usage_from_anthropic, StreamTranslator,
    TranslateError,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const UPSTREAM_MODEL: &str = "claude-sonnet-4-5-20250929";
const REQUESTED_MODEL: &str = "claude-sonnet";
const CREATED: u64 = 1_700_000_000;
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/anthropic")
        .join(sub)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// Compares with the expected file, or writes it under `BLESS=1`.
fn check(expected_path: &Path, actual: &Value) {
    if bless() {
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        fs::write(expected_path, text).unwrap();
        return;
    }
    let expected = read_json(expected_path);
    assert_eq!(
        actual,
        &expected,
        "{}: actual\n{}",
        expected_path.display(),
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// The cases in a fixture directory: file names ending in `suffix`, without it, sorted.
fn cases(sub: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir(sub))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(suffix).map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {sub}");
    names
}

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let mut refused = 0;
    for case in cases("request", ".openai.json") {
        let input = read_json(&dir("request").join(format!("{case}.openai.json")));
        let body: Map<String, Value> = input.as_object().unwrap().clone();
        let result = encode_request(&body, UPSTREAM_MODEL, DEFAULT_MAX_TOKENS);
        let error_path = dir("request").join(format!("{case}.error.json"));
        if error_path.exists() {
            refused += 1;
            let expected = read_json(&error_path);
            let err = result.expect_err(&case);
            let kind = match &err {
                TranslateError::Unsupported { .. } => "unsupported",
                TranslateError::Invalid { .. } => "invalid",
                TranslateError::Upstream { .. } => "upstream",
            };
            assert_eq!(kind, expected["error"], "{case}: {err}");
            assert_eq!(err.field(), expected["field"], "{case}: {err}");
            assert!(
                err.to_string().contains(err.field()),
                "{case}: the message names the field: {err}"
            );
            continue;
        }
        let encoded = result.unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&encoded.body).unwrap();
        let actual = json!({
            "body": actual,
            "stream": encoded.stream,
            "include_usage": encoded.include_usage,
        });
        check(
            &dir("request").join(format!("{case}.anthropic.json")),
            &actual,
        );
    }
    assert!(refused >= 8, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    for case in cases("response", ".anthropic.json") {
        let body = fs::read(dir("response").join(format!("{case}.anthropic.json"))).unwrap();
        let actual = decode_response(&body, REQUESTED_MODEL, CREATED)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        // The usage Johi meters agrees with the usage the client is shown.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let usage = usage_from_anthropic(&raw["usage"]).unwrap();
        assert_eq!(
            actual["usage"]["prompt_tokens"], usage.input_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["prompt_tokens_details"]["cached_tokens"], usage.cached_tokens,
            "{case}"
        );
        check(
            &dir("response").join(format!("{case}.openai.json")),
            &actual,
        );
    }
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
    for case in cases("errors", ".json") {
        let fixture = read_json(&dir("errors").join(format!("{case}.json")));
        let status = u16::try_from(fixture["status"].as_u64().unwrap()).unwrap();
        let body = match fixture.get("body_text") {
            Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(&fixture["body"]).unwrap(),
        };
        let actual = decode_error(status, &body);
        assert_eq!(actual, fixture["expected"], "{case}");
    }
}

/// Runs a stream through the translator in chunks of `split` bytes; returns the data
/// payloads of the OpenAI events (JSON, or the string `[DONE]`).
fn translate_stream(input: &[u8], include_usage: bool, split: usize) -> (Vec<Value>, Value) {
    let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, include_usage);
    let mut out = Vec::new();
    for chunk in input.chunks(split.max(1)) {
        out.extend(t.feed(chunk));
    }
    out.extend(t.finish());
    let text = String::from_utf8(out).unwrap();
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap();
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        })
        .collect();
    let usage = t
        .usage()
        .map_or(Value::Null, |u| serde_json::to_value(u).unwrap());
    (events, usage)
}

#[test]
fn streams_translate_whatever_the_chunking() {
    for case in cases("stream", ".sse") {
        let input = fs::read(dir("stream").join(format!("{case}.sse"))).unwrap();
        let include_usage = case.contains("with_usage");
        let (events, usage) = translate_stream(&input, include_usage, input.len());
        for split in [1, 7, 64] {
            assert_eq!(
                translate_stream(&input, include_usage, split).0,
                events,
                "{case} in chunks of {split}"
            );
        }
        check(
            &dir("stream").join(format!("{case}.expected.json")),
            &json!({"events": events, "usage": usage}),
        );
    }
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

proptest! {
    /// The translator never panics, whatever bytes or events it is fed, and stops emitting
    /// once it has finished.
    #[test]
    fn the_stream_translator_never_panics_on_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut t = StreamTranslator::new("m", 0, true);
        for c in &chunks {
            let _ = t.feed(c);
        }
        let _ = t.finish();
        prop_assert!(t.is_finished());
        let after = t.feed(b"data: {\"type\":\"message_stop\"}\n\n");
        prop_assert!(after.is_empty());
    }

    #[test]
    fn the_stream_translator_never_panics_on_events(events in proptest::collection::vec(arb_event(), 0..24)) {
        let mut t = StreamTranslator::new("m", 0, true);
        let mut out = Vec::new();
        for e in &events {
            t.event(serde_json::to_string(e).unwrap().as_bytes(), &mut out);
        }
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap();
        for event in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = event.strip_prefix("data: ").unwrap();
            prop_assert!(data == "[DONE]" || serde_json::from_str::<Value>(data).is_ok());
        }
    }
}

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
