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

use std::fs;
use std::path::{Path, PathBuf};

use johi_providers::cohere::{
    decode_embed_response, decode_error, decode_response, encode_embed_request, encode_request,
    usage_from_cohere, StreamTranslator, TranslateError,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const UPSTREAM_MODEL: &str = "command-a-03-2025";
const REQUESTED_MODEL: &str = "command";
const CREATED: u64 = 1_700_000_000;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cohere")
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

/// Runs every `<case>.openai.json` of a request directory through `encode`, checking the
/// refusals against `<case>.error.json` and the rest against `<case>.cohere.json`; returns
/// the number of refusals.
fn request_cases(
    sub: &str,
    encode: impl Fn(&Map<String, Value>) -> Result<Value, TranslateError>,
) -> usize {
    let mut refused = 0;
    for case in cases(sub, ".openai.json") {
        let input = read_json(&dir(sub).join(format!("{case}.openai.json")));
        let body: Map<String, Value> = input.as_object().unwrap().clone();
        let result = encode(&body);
        let error_path = dir(sub).join(format!("{case}.error.json"));
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
        let actual = result.unwrap_or_else(|e| panic!("{case}: {e}"));
        check(&dir(sub).join(format!("{case}.cohere.json")), &actual);
    }
    refused
}

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let refused = request_cases("request", |body| {
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
    let refused = request_cases("embed_request", |body| {
        let encoded = encode_embed_request(body, "embed-v4.0", None)?;
        Ok(serde_json::from_slice(&encoded).unwrap())
    });
    assert!(refused >= 3, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    for case in cases("response", ".cohere.json") {
        let body = fs::read(dir("response").join(format!("{case}.cohere.json"))).unwrap();
        let actual = decode_response(&body, REQUESTED_MODEL, CREATED)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        // The usage Johi meters agrees with the usage the client is shown.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let usage = usage_from_cohere(&raw["usage"]).unwrap();
        assert_eq!(
            actual["usage"]["prompt_tokens"], usage.input_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["completion_tokens"], usage.output_tokens,
            "{case}"
        );
        check(
            &dir("response").join(format!("{case}.openai.json")),
            &actual,
        );
    }
}

#[test]
fn embed_responses_translate() {
    for case in cases("embed_response", ".cohere.json") {
        let body = fs::read(dir("embed_response").join(format!("{case}.cohere.json"))).unwrap();
        let actual =
            decode_embed_response(&body, REQUESTED_MODEL).unwrap_or_else(|e| panic!("{case}: {e}"));
        check(
            &dir("embed_response").join(format!("{case}.openai.json")),
            &actual,
        );
    }
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
fn a_streamed_tool_loop_round_trips_its_plan() {
    // The plan Cohere streamed comes back as `reasoning_content`; sent back on the assistant
    // message, it is Cohere's `tool_plan` again.
    let input = fs::read(dir("stream").join("tool_calls_with_usage.sse")).unwrap();
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
        let after = t.feed(b"data: {\"type\":\"message-end\"}\n\n");
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
