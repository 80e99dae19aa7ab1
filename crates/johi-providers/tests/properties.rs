//! Property tests for the hand-written parsers on the request path: the body splice scanner
//! and the SSE splitter. Whatever the input, they must not panic, and where they answer they
//! must agree with serde_json / with reading the stream whole.

use johi_providers::openai::StreamScanner;
use johi_providers::splice::{splice, top_level_value};
use johi_providers::sse::EventSplitter;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["model", "\"", "\\", "{}", "[]", "\u{e9}", "\n"])
            .prop_map(|s| Value::String(s.into())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("(model|[a-z]{1,6})", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Splicing `model` into any object gives exactly what re-serialising would, in meaning.
    #[test]
    fn splice_agrees_with_serde(
        fields in prop::collection::vec(("[a-l]{1,6}", json_value()), 0..6),
        position in 0usize..7,
        model in "(?s).{0,16}",
        pretty in any::<bool>(),
    ) {
        let mut object = Map::new();
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i == position {
                object.insert("model".into(), Value::String("logical".into()));
            }
            object.insert(k, v);
        }
        if !object.contains_key("model") {
            object.insert("model".into(), Value::String("logical".into()));
        }
        let body = if pretty {
            serde_json::to_vec_pretty(&Value::Object(object.clone())).unwrap()
        } else {
            serde_json::to_vec(&Value::Object(object.clone())).unwrap()
        };
        let range = top_level_value(&body, "model").expect("a single top-level model is found");
        let spliced = splice(&body, range, &serde_json::to_vec(&model).unwrap());
        let mut expected = object;
        expected.insert("model".into(), Value::String(model));
        let got: Value = serde_json::from_slice(&spliced).expect("the result is JSON");
        // Compare with what re-serialising gives when read back (serde_json's default float
        // parsing is not exact for every f64, on either side).
        let reserialised = serde_json::to_vec(&Value::Object(expected)).unwrap();
        let expected: Value = serde_json::from_slice(&reserialised).unwrap();
        prop_assert_eq!(got, expected);
    }

    /// Arbitrary bytes never make the scanner panic, and a found range is inside the body.
    #[test]
    fn scanner_survives_garbage(body in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Some(range) = top_level_value(&body, "model") {
            prop_assert!(range.start <= range.end && range.end <= body.len());
        }
    }

    /// However a stream is cut into chunks, the same events come out, and usage is found.
    #[test]
    fn sse_chunking_does_not_matter(
        words in prop::collection::vec("[a-z \"\\\\]{0,8}", 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        crlf in any::<bool>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut stream = String::new();
        for w in &words {
            let event = serde_json::json!({"choices": [{"delta": {"content": w}}], "usage": null});
            stream.push_str(&format!("data: {event}{nl}{nl}"));
        }
        stream.push_str(&format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":{}}}}}{nl}{nl}", words.len()));
        stream.push_str(&format!("data: [DONE]{nl}{nl}"));
        let bytes = stream.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut scanner = StreamScanner::default();
        let mut splitter = EventSplitter::default();
        let mut events = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            scanner.feed(&bytes[last..p]);
            splitter.feed(&bytes[last..p], |d| events.push(d.to_vec()));
            last = p;
        }
        prop_assert_eq!(events.len(), words.len() + 2);
        prop_assert!(scanner.done());
        prop_assert_eq!(scanner.events() as usize, words.len() + 2);
        let usage = scanner.usage().expect("usage found");
        prop_assert_eq!(usage.input_tokens, 7);
        prop_assert_eq!(usage.output_tokens, words.len() as u64);
    }

    /// Arbitrary bytes never make the splitter or scanner panic.
    #[test]
    fn sse_survives_garbage(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut scanner = StreamScanner::default();
        for c in &chunks {
            scanner.feed(c);
        }
        let _ = scanner.usage();
    }
}
