//! Golden tests for the Gemini translation, driven by the fixtures under
//! `tests/fixtures/gemini/` (built from Google's published Gemini API reference examples).
//!
//! * `request/<case>.openai.json` → `<case>.gemini.json` (the expected upstream body), or
//!   `<case>.error.json` (`{"error": "unsupported"|"invalid", "field": …}`) for a refusal;
//! * `response/<case>.gemini.json` → `<case>.openai.json`;
//! * `stream/<case>.sse` → `<case>.expected.json` (`{"events": [data payloads…], "usage"}`);
//!   a case whose name contains `with_usage` asks for `stream_options.include_usage`;
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`;
//! * `embeddings/<case>.openai.json` → `<case>.gemini.json`, and when
//!   `<case>.response.gemini.json` exists, its translation `<case>.response.openai.json`;
//! * `vertex_embeddings/<case>.openai.json` → `<case>.vertex.json` (Vertex's `:predict`
//!   body; a case whose name contains `task_type` is for a model configured with
//!   `input_type: search_query`), or `<case>.error.json` for a refusal; when
//!   `<case>.predict.json` exists (Vertex's answer), its translation `<case>.result.json`.
//!
//! `BLESS=1 cargo test -p johi-providers --test gemini` rewrites the expected files
//! (review the diff before committing).

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::{data_payloads, feed_in_chunks, Fixtures};
use johi_providers::gemini::{
    decode_embeddings, decode_error, decode_predict_embeddings, decode_response, encode_embeddings,
    encode_predict_embeddings, encode_request, usage_from_gemini, StreamTranslator,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIXTURES: Fixtures = Fixtures("gemini");
const UPSTREAM_MODEL: &str = "gemini-embedding-001";
const REQUESTED_MODEL: &str = "gemini-flash";
const CREATED: u64 = 1_700_000_000;

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let refused = FIXTURES.request_cases("request", ".gemini.json", |body| {
        let encoded = encode_request(body)?;
        Ok(json!({
            "body": serde_json::from_slice::<Value>(&encoded.body).unwrap(),
            "stream": encoded.stream,
            "include_usage": encoded.include_usage,
        }))
    });
    assert!(refused >= 10, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    FIXTURES.decode_cases("response", ".gemini.json", ".openai.json", |case, body| {
        let decoded = decode_response(body, REQUESTED_MODEL, CREATED)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
        // The usage Johi meters agrees with the usage the client is shown, and with the
        // reading of Gemini's usage object the stream translator uses.
        let raw: Value = serde_json::from_slice(body).unwrap();
        let usage = usage_from_gemini(&raw["usageMetadata"]).unwrap();
        assert_eq!(decoded.usage, Some(usage), "{case}");
        assert_eq!(
            actual["usage"]["prompt_tokens"], usage.input_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["completion_tokens"], usage.output_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["completion_tokens_details"]["reasoning_tokens"],
            usage.reasoning_tokens,
            "{case}"
        );
        assert_eq!(
            actual["usage"]["prompt_tokens_details"]["cached_tokens"], usage.cached_tokens,
            "{case}"
        );
        actual
    });
}

#[test]
fn unreadable_responses_are_upstream_errors() {
    let err = decode_response(b"<html>", REQUESTED_MODEL, CREATED).unwrap_err();
    assert_eq!(err.field(), "body");
    let err = decode_response(br#"{"usageMetadata":{}}"#, "m", 0).unwrap_err();
    assert_eq!(err.field(), "candidates");
    let err = decode_embeddings(b"{}", &Map::new(), "m").unwrap_err();
    assert_eq!(err.field(), "embeddings");
}

#[test]
fn errors_translate() {
    for e in FIXTURES.error_cases() {
        let actual = decode_error(e.status, &e.body);
        assert_eq!(actual, e.fixture["expected"], "{}", e.case);
    }
}

#[test]
fn embeddings_translate() {
    let dir = FIXTURES.dir("embeddings");
    for case in FIXTURES.cases("embeddings", ".openai.json") {
        if case.ends_with(".response") {
            continue;
        }
        let input = common::read_json(&dir.join(format!("{case}.openai.json")));
        let body: Map<String, Value> = input.as_object().unwrap().clone();
        let encoded =
            encode_embeddings(&body, UPSTREAM_MODEL).unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&encoded).unwrap();
        common::check(&dir.join(format!("{case}.gemini.json")), &actual);
        let response = dir.join(format!("{case}.response.gemini.json"));
        if response.exists() {
            let raw = fs::read(&response).unwrap();
            let decoded = decode_embeddings(&raw, &body, REQUESTED_MODEL)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
            // Gemini reports no embedding usage: the body shows zero, and no usage is
            // metered from it (Johi counts the input itself rather than meter it free).
            assert_eq!(actual["usage"]["prompt_tokens"], 0, "{case}");
            assert_eq!(decoded.usage, None, "{case}");
            common::check(&dir.join(format!("{case}.response.openai.json")), &actual);
        }
    }
}

#[test]
fn vertex_embeddings_translate_or_are_refused() {
    let dir = FIXTURES.dir("vertex_embeddings");
    let mut refused = 0;
    for case in FIXTURES.cases("vertex_embeddings", ".openai.json") {
        let body = common::read_json(&dir.join(format!("{case}.openai.json")));
        let body: Map<String, Value> = body.as_object().unwrap().clone();
        let input_type = case.contains("task_type").then_some("search_query");
        let encoded = encode_predict_embeddings(&body, input_type);
        let error = dir.join(format!("{case}.error.json"));
        if error.exists() {
            refused += 1;
            let err = encoded.expect_err(&case);
            common::check_refusal(&case, &err, &common::read_json(&error));
            continue;
        }
        let encoded = encoded.unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&encoded).unwrap();
        common::check(&dir.join(format!("{case}.vertex.json")), &actual);
        let answer = dir.join(format!("{case}.predict.json"));
        if answer.exists() {
            let raw = fs::read(&answer).unwrap();
            let decoded = decode_predict_embeddings(&raw, &body, REQUESTED_MODEL)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
            // Johi meters the prompt tokens the client is shown.
            let usage = decoded.usage.unwrap();
            assert_eq!(
                actual["usage"]["prompt_tokens"], usage.input_tokens,
                "{case}"
            );
            assert_eq!(usage.output_tokens, 0, "{case}");
            common::check(&dir.join(format!("{case}.result.json")), &actual);
        }
    }
    assert!(refused > 0, "the refusal cases ran");
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

common::stream_translator_properties!(
    b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n",
    arb_event
);

/// Plausible Gemini events with arbitrary candidates, parts and values.
fn arb_event() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        Just(json!({"text": "a"})),
        Just(json!({"text": "t", "thought": true})),
        Just(json!({"functionCall": {"name": "f", "args": {"x": 1}}})),
        Just(json!({"functionCall": {"id": 3}})),
        Just(json!({"inlineData": {}})),
        Just(json!(7)),
    ];
    let finish = prop_oneof![
        Just(Value::Null),
        Just(json!("STOP")),
        Just(json!("SAFETY")),
        Just(json!(5)),
    ];
    let index = prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(Value::Null)
    ];
    let usage = prop_oneof![
        Just(json!({"promptTokenCount": 3, "candidatesTokenCount": 4})),
        Just(json!({"thoughtsTokenCount": u64::MAX, "candidatesTokenCount": u64::MAX})),
        Just(json!({"promptTokenCount": -1})),
        Just(Value::Null),
    ];
    let error = prop_oneof![
        Just(Value::Null),
        Just(Value::Null),
        Just(json!({"code": 500, "message": "boom", "status": "INTERNAL"})),
        Just(json!({"code": 99999})),
    ];
    (part, finish, index, usage, error).prop_map(|(part, finish, index, usage, error)| {
        let mut ev = json!({
            "candidates": [{"content": {"parts": [part]}, "finishReason": finish, "index": index}],
            "usageMetadata": usage,
        });
        if !error.is_null() {
            ev["error"] = error;
        }
        ev
    })
}
