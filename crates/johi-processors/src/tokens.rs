//! Counting a request's prompt tokens before the call, to reserve them against budgets.
//!
//! With the model's real tokenizer where one is known (OpenAI's `o200k_base` and
//! `cl100k_base` BPE encodings, shipped as crate data by `tiktoken-rs`), and a documented
//! estimate otherwise. Chat messages are framed as OpenAI counts them: 3 tokens per message,
//! the role's and the content's tokens, and 3 to prime the reply. Non-text content parts
//! (images, audio) are not counted here; the provider's `usage` charges them after the call.
//!
//! Only the `limit` processor counts, and only when a limit applies, so a gateway without
//! limits never pays for tokenization. Each encoding is built once per process, on first use.
//!
//! BPE is the expensive part of a request (about 50 µs for a 1 KB prompt with `o200k_base`,
//! more than the rest of the gateway's work), and most prompt text repeats: system prompts,
//! and every earlier turn of a conversation, which a chat client sends again each time. So
//! the count of each text of at least [`CACHE_MIN_BYTES`] is remembered by a keyed hash of
//! the text (random per process, so nobody can craft a collision offline); the cache holds
//! [`CACHE_ENTRIES`] counts and starts afresh when full. A collision could only misjudge one
//! reservation's estimate: what is charged is always the provider's usage.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock, PoisonError};

use johi_core::exchange::PromptSpans;
use johi_core::model::Tokenizer;
use johi_core::Api;
use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

/// Tokens OpenAI adds per chat message, and to prime the reply.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// A BPE encoding, built on first use; `None` if it could not be built (then the estimate
/// is used, and the failure logged once).
fn encoding(tokenizer: Tokenizer) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    let cell = match tokenizer {
        Tokenizer::O200kBase => &O200K,
        Tokenizer::Cl100kBase => &CL100K,
        Tokenizer::Estimate => return None,
    };
    cell.get_or_init(|| {
        let built = match tokenizer {
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base(),
            Tokenizer::O200kBase | Tokenizer::Estimate => tiktoken_rs::o200k_base(),
        };
        built
            .map_err(|error| {
                tracing::error!(tokenizer = tokenizer.as_str(), %error, "could not build the tokenizer; estimating instead");
            })
            .ok()
    })
    .as_ref()
}

/// Builds the encoding now (at config load), so the first request does not pay for it.
pub fn prepare(tokenizer: Tokenizer) {
    let _ = encoding(tokenizer);
}

/// Texts shorter than this are counted every time (it is cheaper than remembering them).
pub const CACHE_MIN_BYTES: usize = 256;
/// Counts remembered before the cache starts afresh.
pub const CACHE_ENTRIES: usize = 16_384;

/// Counts of long texts already seen, keyed by (tokenizer, keyed hash, length).
struct CountCache {
    hasher: RandomState,
    counts: Mutex<HashMap<(Tokenizer, u64, usize), u64>>,
}

fn cache() -> &'static CountCache {
    static CACHE: OnceLock<CountCache> = OnceLock::new();
    CACHE.get_or_init(|| CountCache {
        hasher: RandomState::new(),
        counts: Mutex::new(HashMap::new()),
    })
}

/// The documented estimate for a model without a known tokenizer: a token per four
/// characters, rounded up.
fn estimate_from_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Tokens in `text` under `tokenizer`.
pub fn count_text(tokenizer: Tokenizer, text: &str) -> u64 {
    let Some(bpe) = encoding(tokenizer) else {
        return estimate_from_chars(text.chars().count());
    };
    if text.len() < CACHE_MIN_BYTES {
        return bpe.encode_ordinary(text).len() as u64;
    }
    let cache = cache();
    let key = (tokenizer, cache.hasher.hash_one(text), text.len());
    // A panic while holding the lock leaves at worst a missing entry: keep using it.
    let lock = || cache.counts.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&count) = lock().get(&key) {
        return count;
    }
    let count = bpe.encode_ordinary(text).len() as u64;
    let mut counts = lock();
    if counts.len() >= CACHE_ENTRIES {
        counts.clear();
    }
    counts.insert(key, count);
    count
}

/// Prompt tokens of a request body for `api`.
pub fn count_input_tokens(tokenizer: Tokenizer, api: Api, body: &Map<String, Value>) -> u64 {
    let texts = |v: &Value| {
        let mut total = 0;
        visit_text(v, &mut |t| total += count_text(tokenizer, t));
        total
    };
    match api {
        Api::ChatCompletions => {
            let messages = body.get("messages").and_then(Value::as_array);
            let framing = messages.map_or(0, |m| m.len() as u64) * PER_MESSAGE + REPLY_PRIMING;
            framing + messages.map_or(0, |m| m.iter().map(texts).sum())
        }
        Api::Completions => body.get("prompt").map_or(0, texts),
        Api::Embeddings => body.get("input").map_or(0, texts),
    }
}

/// What [`estimate_from_bytes`] reads of a request body in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEstimate {
    /// Prompt tokens, as [`count_input_tokens`] counts them.
    pub input_tokens: u64,
    /// `max_completion_tokens`, when it is a non-negative integer.
    pub max_completion_tokens: Option<u64>,
    /// `max_tokens`, when it is a non-negative integer.
    pub max_tokens: Option<u64>,
}

/// [`count_input_tokens`] and the output caps, read straight from the body's bytes without
/// building its tree: the limiter's estimate for a body no processor has parsed. `None` if
/// the bytes are not a JSON object (validation refuses those first).
///
/// The counts equal the tree's, except that a key repeated inside a message is counted each
/// time it appears (the tree keeps only the last), which can only raise the estimate.
pub fn estimate_from_bytes(tokenizer: Tokenizer, api: Api, body: &[u8]) -> Option<BodyEstimate> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let estimate =
        serde::de::DeserializeSeed::deserialize(raw::Top { tokenizer, api }, &mut de).ok()?;
    de.end().ok()?;
    Some(estimate)
}

/// [`count_input_tokens`] for a chat body whose texts validation located
/// ([`PromptSpans`]): no second reading of the body. `None` if a range does not hold text
/// (the spans do not belong to these bytes). As with [`estimate_from_bytes`], a key
/// repeated inside a message is counted each time, which can only raise the estimate.
pub fn estimate_from_spans(tokenizer: Tokenizer, body: &[u8], spans: &PromptSpans) -> Option<u64> {
    let mut total = spans.messages * PER_MESSAGE + REPLY_PRIMING;
    for range in &spans.texts {
        let text = body.get(range.clone())?;
        if !text.starts_with(b"data:") {
            total += count_utf8(tokenizer, text)?;
        }
    }
    for text in &spans.unescaped {
        if !text.starts_with("data:") {
            total += count_text(tokenizer, text);
        }
    }
    Some(total)
}

/// [`count_text`] for bytes validation already found to be UTF-8. The estimate counts
/// characters straight from the bytes (every byte that is not a continuation byte starts
/// one) rather than validating them a second time; a tokenizer needs the text. `None` if it
/// does and the bytes are not UTF-8.
fn count_utf8(tokenizer: Tokenizer, text: &[u8]) -> Option<u64> {
    if tokenizer == Tokenizer::Estimate {
        // 0x80..=0xBF, the continuation bytes, are the bytes below -0x40 as i8. Counted in
        // `u8`s (no overflow: a run is under 256 bytes), which the compiler turns into
        // vector code 32 bytes a step; 224 = 7 × 32 leaves no byte-by-byte tail in a run.
        let chars: usize = text
            .chunks(224)
            .map(|run| {
                let starts = run
                    .iter()
                    .fold(0u8, |n, &b| n + u8::from((b as i8) >= -0x40));
                usize::from(starts)
            })
            .sum();
        return Some(estimate_from_chars(chars));
    }
    Some(count_text(tokenizer, std::str::from_utf8(text).ok()?))
}

/// The one-pass readers behind [`estimate_from_bytes`].
mod raw {
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    use super::{count_text, Api, BodyEstimate, Tokenizer, PER_MESSAGE, REPLY_PRIMING};
    use johi_providers::Str;

    /// The top-level object.
    pub(super) struct Top {
        pub tokenizer: Tokenizer,
        pub api: Api,
    }

    impl<'de> DeserializeSeed<'de> for Top {
        type Value = BodyEstimate;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BodyEstimate, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Top {
        type Value = BodyEstimate;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyEstimate, A::Error> {
            let texts = Texts(self.tokenizer);
            // (messages, tokens in them) of the last `messages` (a repeated key's last value
            // is the one the tree keeps); for the other APIs, the tokens of the prompt field.
            let mut messages = (0, 0);
            let mut prompt = 0;
            let mut max_completion_tokens = None;
            let mut max_tokens = None;
            let prompt_field = match self.api {
                Api::ChatCompletions => "messages",
                Api::Completions => "prompt",
                Api::Embeddings => "input",
            };
            while let Some(key) = map.next_key::<Str<'de>>()? {
                match key.0.as_ref() {
                    "messages" if self.api == Api::ChatCompletions => {
                        messages = map.next_value_seed(Messages(texts))?;
                    }
                    k if k == prompt_field => prompt = map.next_value_seed(texts)?,
                    "max_completion_tokens" => max_completion_tokens = map.next_value::<Count>()?.0,
                    "max_tokens" => max_tokens = map.next_value::<Count>()?.0,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let input_tokens = match self.api {
                Api::ChatCompletions => messages.0 * PER_MESSAGE + REPLY_PRIMING + messages.1,
                Api::Completions | Api::Embeddings => prompt,
            };
            Ok(BodyEstimate {
                input_tokens,
                max_completion_tokens,
                max_tokens,
            })
        }
    }

    /// A count field, as `Value::as_u64` reads it (anything else is `None`).
    struct Count(Option<u64>);

    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Count;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                    Ok(Count(Some(v)))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                    Ok(Count(u64::try_from(v).ok()))
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
                    Ok(Count(None))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                    Ok(Count(None))
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
                    Ok(Count(None))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                    Ok(Count(None))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Count(None))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Count(None))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// `messages`: how many there are and the tokens of their texts (0, 0 when it is not an
    /// array, as the tree reads it).
    #[derive(Clone, Copy)]
    struct Messages(Texts);

    impl<'de> DeserializeSeed<'de> for Messages {
        type Value = (u64, u64);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(u64, u64), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Messages {
        type Value = (u64, u64);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(u64, u64), A::Error> {
            let (mut count, mut tokens) = (0, 0);
            while let Some(t) = seq.next_element_seed(self.0)? {
                count += 1;
                tokens += t;
            }
            Ok((count, tokens))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(u64, u64), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok((0, 0))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
        fn visit_unit<E: de::Error>(self) -> Result<(u64, u64), E> {
            Ok((0, 0))
        }
    }

    /// The tokens of every string in a value, skipping what `visit_text` skips (data URLs,
    /// and the payloads under `image_url`, `input_audio` and `file`).
    #[derive(Clone, Copy)]
    struct Texts(Tokenizer);

    impl<'de> DeserializeSeed<'de> for Texts {
        type Value = u64;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Texts {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            Ok(if v.starts_with("data:") {
                0
            } else {
                count_text(self.0, v)
            })
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut total = 0;
            while let Some(t) = seq.next_element_seed(self)? {
                total += t;
            }
            Ok(total)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
            let mut total = 0;
            while let Some(key) = map.next_key::<Str<'de>>()? {
                if matches!(key.0.as_ref(), "image_url" | "input_audio" | "file") {
                    map.next_value::<IgnoredAny>()?;
                } else {
                    total += map.next_value_seed(self)?;
                }
            }
            Ok(total)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
            Ok(0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
    }
}

/// Calls `f` with every string in `v`, except data URLs and base64 payloads of non-text
/// parts (an image's bytes are not prompt text).
fn visit_text(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) if !s.starts_with("data:") => f(s),
        Value::Array(items) => items.iter().for_each(|i| visit_text(i, f)),
        Value::Object(o) => {
            for (key, value) in o {
                if !matches!(key.as_str(), "image_url" | "input_audio" | "file") {
                    visit_text(value, f);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The estimate counted from bytes equals the one counted from the text, for ASCII and
    /// for 2-, 3- and 4-byte characters at every length and offset.
    #[test]
    fn the_estimate_from_bytes_counts_characters_as_the_text_does() {
        let alphabet = ["a", "é", "ж", "€", "中", "𝄞", "😀", " ", "\n"];
        let mut text = String::new();
        for i in 0..400 {
            text.push_str(alphabet[(i * 7 + i / 3) % alphabet.len()]);
            assert_eq!(
                count_utf8(Tokenizer::Estimate, text.as_bytes()),
                Some(count_text(Tokenizer::Estimate, &text)),
                "{text:?}"
            );
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn openai_encodings_count_real_tokens() {
        assert_eq!(count_text(Tokenizer::O200kBase, "hello world"), 2);
        assert_eq!(count_text(Tokenizer::Cl100kBase, "hello world"), 2);
        assert_eq!(
            count_text(Tokenizer::Estimate, "hello world"),
            3,
            "11 chars / 4, rounded up"
        );
        let long = "tokenization ".repeat(50);
        assert!(count_text(Tokenizer::O200kBase, &long) < count_text(Tokenizer::Estimate, &long));
    }

    #[test]
    fn long_texts_are_counted_once_and_remembered_exactly() {
        let long = "a system prompt that every request repeats, word for word. ".repeat(20);
        assert!(long.len() >= CACHE_MIN_BYTES);
        let first = count_text(Tokenizer::O200kBase, &long);
        let bpe = encoding(Tokenizer::O200kBase).unwrap();
        assert_eq!(first, bpe.encode_ordinary(&long).len() as u64);
        assert_eq!(count_text(Tokenizer::O200kBase, &long), first);
        // Another encoding of the same text is its own entry.
        assert_eq!(
            count_text(Tokenizer::Cl100kBase, &long),
            encoding(Tokenizer::Cl100kBase)
                .unwrap()
                .encode_ordinary(&long)
                .len() as u64
        );
        // A different text of the same length is not mistaken for it.
        let other = long.replace('a', "b");
        assert_eq!(other.len(), long.len());
        assert_eq!(
            count_text(Tokenizer::O200kBase, &other),
            bpe.encode_ordinary(&other).len() as u64
        );
    }

    #[test]
    fn the_one_pass_estimate_equals_the_trees() {
        let bodies = [
            (
                Api::ChatCompletions,
                json!({"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 7}),
            ),
            (
                Api::ChatCompletions,
                json!({"model": "m", "max_completion_tokens": 9, "max_tokens": -1, "messages": [
                    {"role": "system", "content": "You are terse. ".repeat(40)},
                    {"role": "user", "name": "ann", "content": [
                        {"type": "text", "text": "Hello \u{e9}\u{1F600} \"quoted\"\n"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high text"}},
                        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                        {"type": "file", "file": {"file_data": "AAAA"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "data:not counted"},
                    7, null, [1, "two"]
                ]}),
            ),
            (
                Api::ChatCompletions,
                json!({"model": "m", "messages": {"role": "user"}, "max_tokens": 2.5}),
            ),
            (
                Api::ChatCompletions,
                json!({"model": "m", "max_tokens": "7"}),
            ),
            (
                Api::Completions,
                json!({"model": "m", "prompt": ["one", "two three"], "max_tokens": 3}),
            ),
            (
                Api::Embeddings,
                json!({"model": "e", "input": [[1, 2], [3]]}),
            ),
            (
                Api::Embeddings,
                json!({"model": "e", "input": "text to embed", "messages": ["not read"]}),
            ),
        ];
        for tokenizer in [Tokenizer::Estimate, Tokenizer::O200kBase] {
            for (api, v) in &bodies {
                let raw = serde_json::to_vec(v).unwrap();
                let tree = body(v.clone());
                let got = estimate_from_bytes(tokenizer, *api, &raw).unwrap();
                assert_eq!(
                    got.input_tokens,
                    count_input_tokens(tokenizer, *api, &tree),
                    "{v}"
                );
                assert_eq!(
                    got.max_tokens,
                    tree.get("max_tokens").and_then(Value::as_u64),
                    "{v}"
                );
                assert_eq!(
                    got.max_completion_tokens,
                    tree.get("max_completion_tokens").and_then(Value::as_u64),
                    "{v}"
                );
            }
        }
        assert_eq!(
            estimate_from_bytes(Tokenizer::Estimate, Api::ChatCompletions, b"[1]"),
            None
        );
        assert_eq!(
            estimate_from_bytes(Tokenizer::Estimate, Api::ChatCompletions, b"{} x"),
            None
        );
    }

    #[test]
    fn chat_messages_are_framed_as_openai_counts_them() {
        let b = body(json!({"model": "m", "messages": [{"role": "user", "content": "Hello"}]}));
        // 3 per message + "user" (1) + "Hello" (1) + 3 to prime the reply
        assert_eq!(
            count_input_tokens(Tokenizer::O200kBase, Api::ChatCompletions, &b),
            8
        );
        let parts = body(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hello"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}]}),
        );
        // "text" and "image_url" type names are strings too: 3 + user + text + Hello + image_url + 3
        let n = count_input_tokens(Tokenizer::O200kBase, Api::ChatCompletions, &parts);
        assert!((9..=12).contains(&n), "{n}");
        let e = body(json!({"model": "e", "input": ["one", "two"]}));
        assert_eq!(
            count_input_tokens(Tokenizer::Cl100kBase, Api::Embeddings, &e),
            2
        );
    }
}
