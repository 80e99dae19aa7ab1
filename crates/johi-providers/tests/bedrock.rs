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
//! * `errors/<case>.json`: `{"status", "body" | "body_text", "expected"}`;
//! * `embeddings/<case>.openai.json` → `<case>.bedrock.json` (the `InvokeModel` body), or
//!   `<case>.error.json` for a refusal; when `<case>.invoke.json` exists (Bedrock's answer),
//!   its translation `<case>.result.json`. The case's name picks the model id
//!   ([`embed_model_id`]); a name containing `input_type` is for a model configured with
//!   `input_type: classification`. Encoding and decoding go through `codec`, so the routing
//!   (URL, `accept`) is checked too.
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

/// The Bedrock model id an embeddings fixture is for, by its name's prefix.
fn embed_model_id(case: &str) -> &'static str {
    if case.starts_with("titan") {
        "amazon.titan-embed-text-v2:0"
    } else if case.starts_with("cohere_v4") {
        "us.cohere.embed-v4:0"
    } else if case.starts_with("cohere") {
        "cohere.embed-english-v3"
    } else {
        "amazon.titan-embed-image-v1"
    }
}

#[test]
fn embeddings_translate_or_are_refused() {
    use johi_core::model::Protocol;
    use johi_core::Api;
    use johi_providers::codec::{self, EncodeInput};

    let dir = FIXTURES.dir("embeddings");
    let base: http::Uri = "https://bedrock-runtime.us-east-1.amazonaws.com"
        .parse()
        .unwrap();
    let (mut refused, mut decoded) = (0, 0);
    for case in FIXTURES.cases("embeddings", ".openai.json") {
        let body: Map<String, Value> = read_json(&dir.join(format!("{case}.openai.json")))
            .as_object()
            .unwrap()
            .clone();
        let model_id = embed_model_id(&case);
        let input = EncodeInput {
            api: Api::Embeddings,
            body: &body,
            upstream_model: model_id,
            base_url: &base,
            stream: false,
            default_max_tokens: 1024,
            embed_input_type: case.contains("input_type").then_some("classification"),
        };
        let encoded = codec::encode(Protocol::Bedrock, &input).unwrap();
        let error = dir.join(format!("{case}.error.json"));
        if error.exists() {
            refused += 1;
            let err = encoded.expect_err(&case);
            common::check_refusal(&case, &err, &read_json(&error));
            continue;
        }
        let encoded = encoded.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            encoded.uri.path().ends_with("/invoke"),
            "{case}: {}",
            encoded.uri
        );
        assert_eq!(
            encoded.headers,
            vec![(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json")
            )]
        );
        let actual: Value = serde_json::from_slice(&encoded.body).unwrap();
        check(&dir.join(format!("{case}.bedrock.json")), &actual);
        let answer = dir.join(format!("{case}.invoke.json"));
        if answer.exists() {
            decoded += 1;
            let raw = fs::read(&answer).unwrap();
            let out = codec::decode_response(
                Protocol::Bedrock,
                Api::Embeddings,
                &body,
                &raw,
                "embed",
                CREATED,
            )
            .unwrap()
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            let actual: Value = serde_json::from_slice(&out.body).unwrap();
            // Johi meters the prompt tokens the client is shown; a Cohere answer reports
            // none (the body shows zero), so Johi counts the input itself.
            match out.usage {
                Some(usage) => assert_eq!(
                    actual["usage"]["prompt_tokens"], usage.input_tokens,
                    "{case}"
                ),
                None => assert_eq!(actual["usage"]["prompt_tokens"], 0, "{case}"),
            }
            check(&dir.join(format!("{case}.result.json")), &actual);
        }
    }
    assert!(refused >= 6 && decoded >= 4, "every kind of case ran");
}

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
