//! Golden tests for the Bedrock Converse translation, driven by the fixtures under
//! `tests/fixtures/bedrock/` (built from AWS's published Converse API reference).
//!
//! * `request/<case>.openai.json` → `<case>.bedrock.json` (the expected Converse body), or
//!   `<case>.error.json` (`{"error": "unsupported"|"invalid", "field": …}`) for a refusal;
//! * `response/<case>.bedrock.json` → `<case>.openai.json`;
//! * `stream/<case>.frames.json` → `<case>.expected.json` (`{"events": [data payloads…],
//!   "usage"}`). The frames file lists event-stream messages (`{"event": type, "payload"}`,
//!   `{"exception": type, "payload"}`); they are encoded to binary frames here with the AWS
//!   event-stream encoder, then fed whole and in 1-, 7- and 64-byte chunks. A case whose name
//!   contains `with_usage` asks for `stream_options.include_usage`;
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`.
//!
//! `BLESS=1 cargo test -p johi-providers --test bedrock` rewrites the expected files
//! (review the diff before committing).

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use common::{check, read_json, Fixtures};
use johi_providers::bedrock::{
    decode_error, decode_response, encode_request, usage_from_bedrock, StreamTranslator,
    MAX_FRAME_BYTES,
};
use johi_providers::TranslateError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIXTURES: Fixtures = Fixtures("bedrock");
const REQUESTED_MODEL: &str = "claude-on-bedrock";
const CREATED: u64 = 1_700_000_000;

#[test]
fn requests_translate_or_are_refused_naming_the_field() {
    let refused = FIXTURES.request_cases("request", ".bedrock.json", |body| {
        let encoded = encode_request(body)?;
        Ok(serde_json::from_slice(&encoded).unwrap())
    });
    assert!(refused >= 10, "refusal fixtures are all exercised");
}

#[test]
fn responses_translate() {
    FIXTURES.decode_cases("response", ".bedrock.json", ".openai.json", |case, body| {
        let decoded = decode_response(body, REQUESTED_MODEL, CREATED)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let actual: Value = serde_json::from_slice(&decoded.body).unwrap();
        // The usage Johi meters is the one the stream translator reads, and the client's.
        let raw: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(decoded.usage, usage_from_bedrock(&raw["usage"]), "{case}");
        assert_eq!(actual["model"], REQUESTED_MODEL, "{case}");
        assert_eq!(actual["created"], CREATED, "{case}");
        actual
    });
}

#[test]
fn unreadable_responses_are_upstream_errors() {
    for body in [
        &b"not json"[..],
        br#"{"output": {}}"#,
        br#"{"output":{"message":{"content":[{"toolUse":{"name":"x"}}]}}}"#,
    ] {
        match decode_response(body, REQUESTED_MODEL, CREATED) {
            Err(TranslateError::Upstream { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// One event-stream frame for a fixture entry.
fn frame(entry: &Value) -> Vec<u8> {
    let payload = Vec::from(entry["payload"].to_string());
    let s = |v: &str| HeaderValue::String(v.to_owned().into());
    let message = if let Some(event) = entry["event"].as_str() {
        Message::new(payload)
            .add_header(Header::new(":event-type", s(event)))
            .add_header(Header::new(":content-type", s("application/json")))
            .add_header(Header::new(":message-type", s("event")))
    } else {
        let exception = entry["exception"].as_str().unwrap();
        Message::new(payload)
            .add_header(Header::new(":exception-type", s(exception)))
            .add_header(Header::new(":content-type", s("application/json")))
            .add_header(Header::new(":message-type", s("exception")))
    };
    let mut buf = Vec::new();
    write_message_to(&message, &mut buf).unwrap();
    buf
}

fn stream_bytes(case: &str) -> Vec<u8> {
    let frames = read_json(&FIXTURES.dir("stream").join(format!("{case}.frames.json")));
    frames.as_array().unwrap().iter().flat_map(frame).collect()
}

/// Feeds `bytes` in chunks of `size` (0: all at once) and collects the OpenAI events.
fn translate(bytes: &[u8], size: usize, include_usage: bool) -> (Vec<Value>, Option<Value>) {
    let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, include_usage);
    let mut out = Vec::new();
    if size == 0 {
        out.extend(t.feed(bytes));
    } else {
        for chunk in bytes.chunks(size) {
            out.extend(t.feed(chunk));
        }
    }
    out.extend(t.finish());
    let text = String::from_utf8(out).unwrap();
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e}"));
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect();
    let usage = t.usage().map(|u| {
        json!({"input": u.input_tokens, "output": u.output_tokens,
               "cached": u.cached_tokens, "reasoning": u.reasoning_tokens})
    });
    (events, usage)
}

#[test]
fn streams_translate_whatever_the_chunking() {
    for case in FIXTURES.cases("stream", ".frames.json") {
        let bytes = stream_bytes(&case);
        let include_usage = case.contains("with_usage");
        let (events, usage) = translate(&bytes, 0, include_usage);
        for size in [1, 7, 64] {
            assert_eq!(
                translate(&bytes, size, include_usage),
                (events.clone(), usage.clone()),
                "{case} in {size}-byte chunks"
            );
        }
        let actual = json!({"events": events, "usage": usage});
        check(
            &FIXTURES.dir("stream").join(format!("{case}.expected.json")),
            &actual,
        );
    }
}

#[test]
fn a_corrupted_crc_ends_the_stream_with_an_error_event() {
    let mut bytes = stream_bytes("text_with_usage");
    // The first frame's last byte is its message CRC.
    let first = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[first - 1] ^= 0xff;
    for size in [0, 1, 7, 64] {
        let (events, _) = translate(&bytes, size, true);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["error"]["code"], "upstream_protocol_error");
    }
    // A corrupt payload byte (caught by the message CRC) after a good first frame.
    let mut bytes = stream_bytes("text_with_usage");
    let second = u32::from_be_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
    bytes[first + second - 6] ^= 0x01;
    let (events, _) = translate(&bytes, 7, false);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("corrupt"));
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_buffered() {
    let len = u32::try_from(MAX_FRAME_BYTES + 1).unwrap().to_be_bytes();
    let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, false);
    let out = String::from_utf8(t.feed(&len)).unwrap();
    assert!(out.contains("impossible length"), "{out}");
    assert!(t.is_finished());
}

#[test]
fn errors_keep_their_meaning() {
    for e in FIXTURES.error_cases() {
        let actual = decode_error(e.status, &e.body);
        if common::bless() {
            let mut fixture = e.fixture.clone();
            fixture["expected"] = actual;
            let mut text = serde_json::to_string_pretty(&fixture).unwrap();
            text.push('\n');
            fs::write(
                FIXTURES.dir("errors").join(format!("{}.json", e.case)),
                text,
            )
            .unwrap();
            continue;
        }
        assert_eq!(actual, e.fixture["expected"], "{}", e.case);
    }
}

#[test]
fn usage_is_read_as_reported() {
    let u = usage_from_bedrock(&json!({"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}))
        .unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.cached_tokens),
        (3, 4, 0)
    );
}

proptest! {
    #[test]
    fn the_stream_translator_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..20),
        prefix in any::<bool>(),
    ) {
        let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, true);
        if prefix {
            let _ = t.feed(&stream_bytes("tool_use")[..40]);
        }
        for c in &chunks {
            let _ = t.feed(c);
        }
        let _ = t.finish();
    }

    #[test]
    fn valid_frames_with_junk_payloads_never_panic(payload in "\\PC{0,64}", event in 0usize..7) {
        let names = ["messageStart", "contentBlockStart", "contentBlockDelta",
                     "contentBlockStop", "messageStop", "metadata", "other"];
        let message = Message::new(payload.into_bytes())
            .add_header(Header::new(":event-type", HeaderValue::String(names[event].to_owned().into())))
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
        let mut buf = Vec::new();
        write_message_to(&message, &mut buf).unwrap();
        let mut t = StreamTranslator::new(REQUESTED_MODEL, CREATED, false);
        let _ = t.feed(&buf);
        let _ = t.finish();
    }

    #[test]
    fn request_encoding_never_panics(body in proptest::collection::btree_map("[a-z_]{1,12}", any::<i64>().prop_map(Value::from), 0..6)) {
        let mut map: Map<String, Value> = body.into_iter().collect();
        map.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
        let _ = encode_request(&map);
    }
}
