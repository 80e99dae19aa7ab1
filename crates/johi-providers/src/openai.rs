//! The OpenAI-compatible protocol: OpenAI itself and every server that copies its API.
//!
//! Requests are passed through with only `model` rewritten to the target's upstream name,
//! so fields Johi does not know (`logprobs`, `seed`, `response_format`, `tools`, …) reach
//! the upstream as the client sent them.

use std::sync::LazyLock;

use bytes::Bytes;
use http::Uri;
use johi_core::{Api, Usage};
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::sse::EventSplitter;
use crate::wire::{Lax, Object};

/// The full upstream URL for `api` below a provider's base URL (`…/v1` + `/chat/completions`).
pub fn upstream_uri(base: &Uri, api: Api) -> Result<Uri, http::Error> {
    let path = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    let full = format!("{path}{}", api.upstream_path());
    parts.path_and_query = Some(full.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// The upstream URL for an OpenAI-compatible provider: [`upstream_uri`], or Azure OpenAI's
/// deployment URL when the provider has an Azure `api-version`
/// (`{base}/openai/deployments/{deployment}/chat/completions?api-version=…`, the deployment
/// being the target's upstream model name). Azure's v1 API (a base ending in `/openai/v1`)
/// takes plain OpenAI paths, so its providers carry no version and get [`upstream_uri`].
pub fn provider_uri(
    base: &Uri,
    api: Api,
    azure_api_version: Option<&str>,
    deployment: &str,
) -> Result<Uri, http::Error> {
    let Some(version) = azure_api_version else {
        return upstream_uri(base, api);
    };
    let path = base.path().trim_end_matches('/');
    let path = path.strip_suffix("/openai").unwrap_or(path);
    let mut parts = base.clone().into_parts();
    let full = format!(
        "{path}/openai/deployments/{deployment}{}?api-version={version}",
        api.upstream_path()
    );
    parts.path_and_query = Some(full.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// Serialises the request for a target, with `model` set to the target's upstream name.
///
/// The body map is updated in place (each attempt sets its own target's name), so no copy
/// of the prompt is made per attempt.
pub fn encode_request(
    body: &mut Map<String, Value>,
    upstream_model: &str,
) -> Result<Bytes, serde_json::Error> {
    match body.get_mut("model") {
        Some(Value::String(model)) if model == upstream_model => {}
        Some(slot) => *slot = Value::String(upstream_model.to_owned()),
        None => {
            body.insert("model".into(), Value::String(upstream_model.to_owned()));
        }
    }
    serde_json::to_vec(body).map(Bytes::from)
}

/// The `usage` of a complete (non-streamed) response, if it reports one.
///
/// Only the `usage` object is parsed, not the whole response: OpenAI puts it last, so the
/// last `"usage":` key followed by an object is the top-level one (a `"usage"` inside a
/// string value would be written `\"usage\"` and cannot match).
pub fn response_usage(body: &[u8]) -> Option<Usage> {
    // Searched forwards with a prebuilt SIMD finder (a reverse search has no fast path),
    // keeping the last key whose value is an object: called on every stream event.
    static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
    let object = USAGE_KEY
        .find_iter(body)
        .filter_map(|pos| object_after_key(&body[pos + 7..]))
        .last()?;
    // Typed and lenient (a count of another kind reads as zero, as `Usage::from_openai`
    // reads it), without building a `Value` per answer.
    let mut de = serde_json::Deserializer::from_slice(object);
    match OpenAiUsage::deserialize(&mut de) {
        Ok(usage) => Some(usage.usage()),
        // What the typed read refuses (a duplicate key) is read the general way.
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(object);
            Usage::from_openai(&Value::deserialize(&mut de).ok()?)
        }
    }
}

/// OpenAI's `usage` object as read from an answer or a stream event; other fields are
/// skipped without being stored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenAiUsage {
    prompt_tokens: Lax<u64>,
    completion_tokens: Lax<u64>,
    prompt_tokens_details: Lax<CachedDetails>,
    completion_tokens_details: Lax<ReasoningDetails>,
}

/// `usage.prompt_tokens_details`: the part of the prompt served from the provider's cache.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CachedDetails {
    cached_tokens: Lax<u64>,
}

impl Object for CachedDetails {}

/// `usage.completion_tokens_details`: the part of the output spent reasoning.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReasoningDetails {
    reasoning_tokens: Lax<u64>,
}

impl Object for ReasoningDetails {}

impl OpenAiUsage {
    /// Johi's usage, absent counts as zero (as [`Usage::from_openai`]).
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.get().unwrap_or(0),
            output_tokens: self.completion_tokens.get().unwrap_or(0),
            cached_tokens: self
                .prompt_tokens_details
                .get()
                .and_then(|d| d.cached_tokens.get())
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .get()
                .and_then(|d| d.reasoning_tokens.get())
                .unwrap_or(0),
        }
    }
}

/// Given the bytes after a key's closing quote, the bytes starting at its value if the value
/// is an object (`: {...`), else `None` (e.g. `"usage": null`).
fn object_after_key(rest: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while rest.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while rest.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    (rest.get(i) == Some(&b'{')).then(|| &rest[i..])
}

/// Watches an OpenAI SSE stream as it is relayed: counts events, notes `[DONE]`, and picks
/// up the usage the provider reports (with `stream_options.include_usage`).
#[derive(Debug, Default)]
pub struct StreamScanner {
    splitter: EventSplitter,
    events: u64,
    done: bool,
    usage: Option<Usage>,
    error_seen: bool,
    text_bytes: u64,
}

impl StreamScanner {
    /// Feeds the next chunk as it passes to the client.
    pub fn feed(&mut self, chunk: &[u8]) {
        let (events, done, usage, error_seen, text_bytes) = (
            &mut self.events,
            &mut self.done,
            &mut self.usage,
            &mut self.error_seen,
            &mut self.text_bytes,
        );
        self.splitter.feed(chunk, |data| {
            *events += 1;
            *text_bytes += generated_text_bytes(data);
            if data == b"[DONE]" {
                *done = true;
                return;
            }
            // Only the usage object of the event that carries one is parsed; the other
            // events (`"usage":null` with include_usage) are just counted.
            if let Some(u) = event_usage(data) {
                *usage = Some(u);
            }
            if data.starts_with(b"{\"error\"") {
                *error_seen = true;
            }
        });
    }

    /// Data events seen so far (`[DONE]` included).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Whether the provider ended the stream properly with `[DONE]`.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The usage the provider reported, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the provider sent an error event inside the stream.
    pub fn error_seen(&self) -> bool {
        self.error_seen
    }

    /// Generated tokens estimated from the text relayed so far (four bytes of text a token):
    /// what a stream that ended without a usage report is charged for its output.
    pub fn estimated_output_tokens(&self) -> u64 {
        self.text_bytes.div_ceil(4)
    }
}

/// The usage one stream event reports, if any.
///
/// With `include_usage` every event but the last carries `"usage":null` as its last member
/// (OpenAI's order): an event whose final bytes are `,"usage":null}` is answered from them,
/// since that `}` can only close the event itself. Any other event is searched as a whole
/// response is ([`response_usage`]).
fn event_usage(data: &[u8]) -> Option<Usage> {
    if data.trim_ascii_end().ends_with(b",\"usage\":null}") {
        return None;
    }
    response_usage(data)
}

/// Bytes of generated text in one stream event: the string values of its `"content"`,
/// `"text"`, `"reasoning_content"` and `"arguments"` keys (chat deltas, completions, tool
/// calls), found by scanning, not parsing, so that watching a stream stays cheap.
///
/// Generated text lives in `choices`, so the scan starts at the event's first `"choices"`
/// key (the whole event when it has none): the envelope before it (`id`, `object`, `model`,
/// `system_fingerprint`) is most of an event's string values and none of its text.
fn generated_text_bytes(data: &[u8]) -> u64 {
    // One pass over every string-valued key (`":"`), rather than one search per key name:
    // this runs on every event of every stream. (A plain byte loop over the colons, or a
    // `memchr` iterator over them, measured slower: colons are dense in an event.)
    static STRING_VALUE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\":\""));
    static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));
    let data = &data[CHOICES.find(data).unwrap_or(0)..];
    const KEYS: [&[u8]; 4] = [
        b"\"content",
        b"\"text",
        b"\"reasoning_content",
        b"\"arguments",
    ];
    let mut total = 0;
    for at in STRING_VALUE.find_iter(data) {
        if KEYS.iter().any(|k| data[..at].ends_with(k)) {
            total += string_len(&data[at + 3..]);
        }
    }
    total
}

/// Length of a JSON string body up to its closing quote (escapes count as written).
fn string_len(rest: &[u8]) -> u64 {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => return i as u64,
            _ => i += 1,
        }
    }
    rest.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_uris_name_the_deployment_and_the_version() {
        let base = Uri::from_static("https://res.openai.azure.com");
        for (api, want) in [
            (Api::ChatCompletions, "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"),
            (Api::Completions, "https://res.openai.azure.com/openai/deployments/gpt4o/completions?api-version=2024-10-21"),
            (Api::Embeddings, "https://res.openai.azure.com/openai/deployments/gpt4o/embeddings?api-version=2024-10-21"),
        ] {
            let uri = provider_uri(&base, api, Some("2024-10-21"), "gpt4o").unwrap();
            assert_eq!(uri.to_string(), want);
        }
        let base = Uri::from_static("https://res.openai.azure.com/openai/");
        let uri = provider_uri(&base, Api::ChatCompletions, Some("v"), "d").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=v"
        );
        // Azure's v1 API and every other provider: plain OpenAI paths.
        let base = Uri::from_static("https://res.openai.azure.com/openai/v1");
        let uri = provider_uri(&base, Api::ChatCompletions, None, "d").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://res.openai.azure.com/openai/v1/chat/completions"
        );
    }

    #[test]
    fn uri_is_base_plus_operation() {
        let base = Uri::from_static("https://api.openai.com/v1");
        assert_eq!(
            upstream_uri(&base, Api::ChatCompletions).unwrap(),
            "https://api.openai.com/v1/chat/completions"
        );
        let base = Uri::from_static("http://127.0.0.1:8000/openai/v1/");
        assert_eq!(
            upstream_uri(&base, Api::Embeddings).unwrap(),
            "http://127.0.0.1:8000/openai/v1/embeddings"
        );
    }

    #[test]
    fn only_the_model_is_rewritten_and_unknown_fields_survive_in_order() {
        let mut body: Map<String, Value> = serde_json::from_str(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":7,"logprobs":true,"response_format":{"type":"json_object"},"x_vendor":{"a":[1,2]}}"#,
        )
        .unwrap();
        let out = encode_request(&mut body, "gpt-4o-2024-08-06").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"gpt-4o-2024-08-06","messages":[{"role":"user","content":"hi"}],"seed":7,"logprobs":true,"response_format":{"type":"json_object"},"x_vendor":{"a":[1,2]}}"#
        );
    }

    #[test]
    fn scanner_finds_usage_and_done_across_chunk_boundaries() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in 1..stream.len() {
            let mut s = StreamScanner::default();
            s.feed(&stream.as_bytes()[..split]);
            s.feed(&stream.as_bytes()[split..]);
            assert!(s.done(), "split at {split}");
            assert_eq!(s.events(), 3);
            assert_eq!(s.usage().unwrap().input_tokens, 9);
            assert_eq!(s.usage().unwrap().output_tokens, 2);
        }
    }

    #[test]
    fn usage_of_a_plain_response() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        assert_eq!(response_usage(body).unwrap().output_tokens, 4);
        assert!(response_usage(b"{\"id\":1}").is_none());
        assert!(response_usage(b"not json").is_none());
        assert!(response_usage(br#"{"usage": null}"#).is_none());
        let spaced = br#"{"choices":[{"message":{"content":"the \"usage\": {} key"}}], "usage" : {"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(response_usage(spaced).unwrap().output_tokens, 2);
        let nested_last =
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":6},"x":{"usage":null}}"#;
        assert_eq!(response_usage(nested_last).unwrap().input_tokens, 5);
    }

    /// The one-pass text count agrees with scanning for each key on its own, from the
    /// first `"choices"` key on.
    #[test]
    fn generated_text_is_counted_in_one_pass_as_key_by_key() {
        fn key_by_key(data: &[u8]) -> u64 {
            let data = &data[memchr::memmem::find(data, b"\"choices\"").unwrap_or(0)..];
            let keys: [&[u8]; 4] = [
                b"\"content\":\"",
                b"\"text\":\"",
                b"\"reasoning_content\":\"",
                b"\"arguments\":\"",
            ];
            keys.iter()
                .map(|k| {
                    memchr::memmem::find_iter(data, k)
                        .map(|start| string_len(&data[start + k.len()..]))
                        .sum::<u64>()
                })
                .sum()
        }
        let events: [&[u8]; 9] = [
            br#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello \"there\""},"finish_reason":null}],"usage":null}"#,
            br#"{"id":"\"choices\"","content":"envelope","choices":[{"delta":{"content":"ab"}}]}"#,
            br#"{"choices":[{"delta":{"content":"\"choices\":"}}],"text":"after"}"#,
            br#"{"choices":[{"delta":{"reasoning_content":"hmm","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            br#"{"choices":[{"text":"done","index":0}],"model":"content"}"#,
            br#"{"content_filter":"x","mycontent":"not counted","subtext":"no","content":""}"#,
            br#"{"a":"\"content\":\"inside"}"#,
            br#"{"content":"unterminated"#,
            b"[DONE]",
        ];
        for event in events {
            assert_eq!(
                generated_text_bytes(event),
                key_by_key(event),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }

    /// An event ending in `,"usage":null}` is answered from its last bytes; every event
    /// gets what the whole-response search gives.
    #[test]
    fn event_usage_agrees_with_the_whole_response_search() {
        let events: [&[u8]; 7] = [
            br#"{"id":"c","choices":[{"delta":{"content":"x"}}],"usage":null}"#,
            b"{\"choices\":[],\"usage\":null}  \r\n",
            br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":6},"x":{"usage":null}}"#,
            br#"{"choices":[{"delta":{"content":",\"usage\":null}"}}],"usage":{"prompt_tokens":1}}"#,
            br#"{"choices":[{"delta":{"content":"no usage key"}}]}"#,
            b"[DONE]",
        ];
        for event in events {
            assert_eq!(
                event_usage(event),
                response_usage(event),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
        assert_eq!(event_usage(events[2]).map(|u| u.input_tokens), Some(9));
        assert_eq!(event_usage(events[4]).map(|u| u.input_tokens), Some(1));
    }

    #[test]
    fn the_typed_usage_read_agrees_with_the_value_read() {
        let objects = [
            r#"{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2}}"#,
            r#"{"prompt_tokens":"12","completion_tokens":-5,"prompt_tokens_details":null,"completion_tokens_details":[1]}"#,
            r#"{"prompt_tokens":1.5,"completion_tokens":null,"prompt_tokens_details":{"cached_tokens":"4"},"extra":{"a":[1,{"b":2}]}}"#,
            r#"{"prompt_tokens":3,"prompt_tokens":7}"#,
            r#"{}"#,
        ];
        for object in objects {
            let body = format!(r#"{{"choices":[],"usage":{object}}}"#);
            let value: Value = serde_json::from_str(object).unwrap();
            assert_eq!(
                response_usage(body.as_bytes()),
                Usage::from_openai(&value),
                "{object}"
            );
        }
    }

    #[test]
    fn generated_text_is_counted_from_content_text_and_tool_arguments() {
        assert_eq!(
            generated_text_bytes(br#"{"choices":[{"delta":{"content":"Hello"}}]}"#),
            5
        );
        assert_eq!(
            generated_text_bytes(br#"{"choices":[{"delta":{"content":"a\"b"}}]}"#),
            4
        );
        assert_eq!(
            generated_text_bytes(br#"{"choices":[{"text":"abc","index":0}]}"#),
            3
        );
        assert_eq!(
            generated_text_bytes(br#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"x\":1}"}}]}}]}"#),
            9
        );
        assert_eq!(
            generated_text_bytes(br#"{"choices":[{"delta":{"role":"assistant"}}]}"#),
            0
        );
        let mut scanner = StreamScanner::default();
        scanner.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"12345678\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"9\"}}]}\n\n");
        assert_eq!(
            scanner.estimated_output_tokens(),
            3,
            "9 bytes of text, four to a token"
        );
    }
}
