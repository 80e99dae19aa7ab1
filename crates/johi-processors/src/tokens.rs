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

/// Tokens in `text` under `tokenizer`.
pub fn count_text(tokenizer: Tokenizer, text: &str) -> u64 {
    let Some(bpe) = encoding(tokenizer) else {
        return (text.chars().count() as u64).div_ceil(4);
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
