//! The golden-test harness shared by the adapter tests (`anthropic`, `anthropic_inbound`,
//! `bedrock`, `cohere`, `gemini`): fixture directories and their cases, reading JSON,
//! comparing with an expected file or rewriting it under `BLESS=1`, checking refusals, and
//! feeding a stream in chunks.
//!
//! Each test crate includes this module with `mod common;` and uses only part of it.

// Test helpers fail loudly by design; not every test crate uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
#![allow(unused_macros, unused_imports)]

use std::fs;
use std::path::{Path, PathBuf};

use johi_providers::TranslateError;
use serde_json::{json, Map, Value};

/// The fixtures of one protocol, under `tests/fixtures/<name>/`.
pub struct Fixtures(pub &'static str);

impl Fixtures {
    /// The fixture subdirectory `sub` (`request`, `response`, `stream`, `errors` …).
    pub fn dir(&self, sub: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(self.0)
            .join(sub)
    }

    /// The cases in a fixture directory: file names ending in `suffix`, without it, sorted.
    pub fn cases(&self, sub: &str, suffix: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir(sub))
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

    /// Runs every `<case>.openai.json` of a request directory through `encode`, checking
    /// the refusals against `<case>.error.json` and the rest against `<case><expected>`;
    /// returns the number of refusals.
    pub fn request_cases(
        &self,
        sub: &str,
        expected: &str,
        encode: impl Fn(&Map<String, Value>) -> Result<Value, TranslateError>,
    ) -> usize {
        let dir = self.dir(sub);
        let mut refused = 0;
        for case in self.cases(sub, ".openai.json") {
            let input = read_json(&dir.join(format!("{case}.openai.json")));
            let body: Map<String, Value> = input.as_object().unwrap().clone();
            let result = encode(&body);
            let error_path = dir.join(format!("{case}.error.json"));
            if error_path.exists() {
                refused += 1;
                let err = result.expect_err(&case);
                check_refusal(&case, &err, &read_json(&error_path));
                continue;
            }
            let actual = result.unwrap_or_else(|e| panic!("{case}: {e}"));
            check(&dir.join(format!("{case}{expected}")), &actual);
        }
        refused
    }

    /// Runs the raw bytes of every `<sub>/<case><input>` through `decode(case, bytes)` and
    /// checks the result against `<case><expected>`.
    pub fn decode_cases(
        &self,
        sub: &str,
        input: &str,
        expected: &str,
        decode: impl Fn(&str, &[u8]) -> Value,
    ) {
        let dir = self.dir(sub);
        for case in self.cases(sub, input) {
            let body = fs::read(dir.join(format!("{case}{input}"))).unwrap();
            let actual = decode(&case, &body);
            check(&dir.join(format!("{case}{expected}")), &actual);
        }
    }

    /// Every `errors/<case>.json` fixture (`{"status", "body" | "body_text", "expected"}`).
    pub fn error_cases(&self) -> Vec<ErrorCase> {
        self.cases("errors", ".json")
            .into_iter()
            .map(|case| {
                let fixture = read_json(&self.dir("errors").join(format!("{case}.json")));
                let status = u16::try_from(fixture["status"].as_u64().unwrap()).unwrap();
                let body = match fixture.get("body_text") {
                    Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
                    None => serde_json::to_vec(&fixture["body"]).unwrap(),
                };
                ErrorCase {
                    case,
                    fixture,
                    status,
                    body,
                }
            })
            .collect()
    }

    /// Runs every `stream/<case>.sse` through `translate(input, include_usage, split)`
    /// whole and in 1-, 7- and 64-byte chunks (the events must agree), and checks the whole
    /// run against `<case>.expected.json` (`{"events", "usage"}`). A case whose name
    /// contains `with_usage` asks for the usage chunk.
    pub fn stream_cases(&self, translate: impl Fn(&[u8], bool, usize) -> (Vec<Value>, Value)) {
        for case in self.cases("stream", ".sse") {
            let input = fs::read(self.dir("stream").join(format!("{case}.sse"))).unwrap();
            let include_usage = case.contains("with_usage");
            let (events, usage) = translate(&input, include_usage, input.len());
            for split in [1, 7, 64] {
                assert_eq!(
                    translate(&input, include_usage, split).0,
                    events,
                    "{case} in chunks of {split}"
                );
            }
            check(
                &self.dir("stream").join(format!("{case}.expected.json")),
                &json!({"events": events, "usage": usage}),
            );
        }
    }
}

/// One error fixture: its case name, the whole fixture, and the status and body to decode.
pub struct ErrorCase {
    pub case: String,
    pub fixture: Value,
    pub status: u16,
    pub body: Vec<u8>,
}

/// The JSON in `path`, panicking with the path on any failure.
pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `BLESS` is set: expected files are rewritten instead of compared.
pub fn bless() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// Compares with the expected file, or writes it under `BLESS=1`.
pub fn check(expected_path: &Path, actual: &Value) {
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

/// The kind an `.error.json` fixture names: `unsupported`, `invalid` or `upstream`.
pub fn error_kind(err: &TranslateError) -> &'static str {
    match err {
        TranslateError::Unsupported { .. } => "unsupported",
        TranslateError::Invalid { .. } => "invalid",
        TranslateError::Upstream { .. } => "upstream",
    }
}

/// A refusal matches its `.error.json` (`{"error": kind, "field"}`) and its message names
/// the field.
pub fn check_refusal(case: &str, err: &TranslateError, expected: &Value) {
    assert_eq!(error_kind(err), expected["error"], "{case}: {err}");
    assert_eq!(err.field(), expected["field"], "{case}: {err}");
    assert!(
        err.to_string().contains(err.field()),
        "{case}: the message names the field: {err}"
    );
}

/// Feeds `input` to `feed` in chunks of `split` bytes (at least one), concatenating what
/// it returns.
pub fn feed_in_chunks(
    input: &[u8],
    split: usize,
    mut feed: impl FnMut(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in input.chunks(split.max(1)) {
        out.extend(feed(chunk));
    }
    out
}

/// The data payloads of an OpenAI SSE stream: JSON, or the string (`[DONE]`).
pub fn data_payloads(out: Vec<u8>) -> Vec<Value> {
    let text = String::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap();
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        })
        .collect()
}

/// The properties of an SSE stream translator (the `StreamTranslator` in scope, with
/// `feed`, `event`, `finish` and `is_finished`): it never panics, whatever bytes or events
/// (from `$arb_event()`) it is fed, and stops emitting once it has finished (`$last_event`
/// is a terminal upstream event fed after `finish`).
macro_rules! stream_translator_properties {
    ($last_event:expr, $arb_event:ident) => {
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
                let after = t.feed($last_event);
                prop_assert!(after.is_empty());
            }

            #[test]
            fn the_stream_translator_never_panics_on_events(events in proptest::collection::vec($arb_event(), 0..24)) {
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
    };
}
pub(crate) use stream_translator_properties;
