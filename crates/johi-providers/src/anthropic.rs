//! Anthropic's Messages API (`POST /v1/messages`), translated both ways from and to OpenAI
//! Chat Completions, which is what Johi's clients speak.
//!
//! Pure translation, no I/O: [`encode_request`] builds the upstream body, [`decode_response`]
//! turns a complete Messages response into a `chat.completion`, [`StreamTranslator`] turns
//! the Messages event stream into `chat.completion.chunk` events, [`decode_error`] turns an
//! Anthropic error body into OpenAI's error shape and [`usage_from_anthropic`] reads usage
//! into Johi's one [`Usage`] shape.
//!
//! Fidelity rule: a request field Anthropic cannot express is either mapped or refused with
//! a [`TranslateError`] naming it (a 400 for the client), never dropped silently. The table of
//! what is mapped and what is refused is in `docs/providers.md`, and [`MAPPED_FIELDS`] is the
//! allow-list the encoder enforces.

pub mod inbound;
mod request;
mod response;
mod stream;

use johi_core::Usage;
use serde_json::Value;

pub use request::{encode_request, EncodedRequest, MAPPED_FIELDS};
pub use response::{decode_error, decode_response, finish_reason};
pub use stream::StreamTranslator;

/// Kept here too: the Anthropic module was the first to use it.
pub use crate::TranslateError;

/// The Messages API version every request is written for (the `anthropic-version` header a
/// later change sends with the body): the wire format this module translates.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Messages endpoint for a provider's base URL (`https://api.anthropic.com` →
/// `https://api.anthropic.com/v1/messages`): Anthropic's base URL conventionally has no
/// `/v1`, unlike OpenAI's, so the whole path is appended here. A base that already ends in
/// `/v1` is not doubled.
pub fn messages_uri(base: &http::Uri) -> Result<http::Uri, http::Error> {
    let path = base.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path);
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{path}/v1/messages").parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

/// Reads Anthropic's `usage` object into Johi's one shape; absent fields count as zero.
///
/// Anthropic reports cache writes and cache reads *beside* `input_tokens`, OpenAI inside
/// `prompt_tokens`: the input here is the sum of all three, so that prices and limits see
/// the whole prompt, and `cached_tokens` is the cache reads (priced apart). Anthropic does
/// not report thinking tokens apart from output, so `reasoning_tokens` is zero. Sums
/// saturate: an upstream's absurd counts must not panic the relay.
pub fn usage_from_anthropic(usage: &Value) -> Option<Usage> {
    let obj = usage.as_object()?;
    let num = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = num("cache_read_input_tokens");
    Some(Usage {
        input_tokens: num("input_tokens")
            .saturating_add(num("cache_creation_input_tokens"))
            .saturating_add(cache_read),
        output_tokens: num("output_tokens"),
        cached_tokens: cache_read,
        reasoning_tokens: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_path_is_appended_once() {
        for (base, want) in [
            (
                "https://api.anthropic.com",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "https://api.anthropic.com/",
                "https://api.anthropic.com/v1/messages",
            ),
            ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/messages"),
            (
                "https://gw.example/anthropic",
                "https://gw.example/anthropic/v1/messages",
            ),
        ] {
            let uri = messages_uri(&base.parse().unwrap()).unwrap();
            assert_eq!(uri.to_string(), want, "{base}");
        }
    }

    #[test]
    fn usage_sums_cache_writes_and_reads_into_the_prompt() {
        let u = usage_from_anthropic(&serde_json::json!({
            "input_tokens": 10, "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000, "output_tokens": 7
        }))
        .unwrap();
        assert_eq!(u.input_tokens, 1110);
        assert_eq!(u.cached_tokens, 1000);
        assert_eq!(u.output_tokens, 7);
        assert!(usage_from_anthropic(&Value::Null).is_none());
    }
}
