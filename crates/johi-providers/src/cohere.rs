//! Cohere's v2 API (`POST /v2/chat`, `POST /v2/embed`), translated both ways from and to
//! OpenAI Chat Completions and Embeddings, which is what Johi's clients speak.
//!
//! Pure translation, no I/O: [`encode_request`] builds the chat body, [`decode_response`]
//! turns a complete chat answer into a `chat.completion`, [`StreamTranslator`] turns the
//! chat event stream into `chat.completion.chunk` events, [`encode_embed_request`] and
//! [`decode_embed_response`] do the same for embeddings, and [`decode_error`] turns a Cohere
//! error body (`{"message"}`) into OpenAI's error shape.
//!
//! Fidelity rule: a request field Cohere cannot express is either mapped or refused with a
//! [`TranslateError`] naming it, never dropped silently. The table is in `docs/providers.md`.

mod embed;
mod request;
mod response;
mod stream;

use http::Uri;
use johi_core::Usage;
use serde::Deserialize;
use serde_json::Value;

use crate::wire::{Lax, Object};

pub use embed::{decode_embed_response, encode_embed_request, DEFAULT_INPUT_TYPE};
pub use request::{encode_request, EncodedRequest, MAPPED_FIELDS};
pub use response::{decode_error, decode_response, finish_reason};
pub use stream::StreamTranslator;

pub use crate::TranslateError;

/// The response header in which Cohere names its request (its trace id).
pub const REQUEST_ID_HEADER: &str = "x-debug-trace-id";

/// The chat endpoint for a provider's base URL (`https://api.cohere.com` →
/// `https://api.cohere.com/v2/chat`). Cohere's base URL conventionally has no version, so the
/// whole path is appended; a base that already ends in `/v2` (or `/v1`) is not doubled.
pub fn chat_uri(base: &Uri) -> Result<Uri, http::Error> {
    v2_uri(base, "chat")
}

/// The embed endpoint for a provider's base URL (`…/v2/embed`), as [`chat_uri`].
pub fn embed_uri(base: &Uri) -> Result<Uri, http::Error> {
    v2_uri(base, "embed")
}

fn v2_uri(base: &Uri, operation: &str) -> Result<Uri, http::Error> {
    let path = base.path().trim_end_matches('/');
    let path = path
        .strip_suffix("/v2")
        .or_else(|| path.strip_suffix("/v1"))
        .unwrap_or(path);
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{path}/v2/{operation}").parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// Reads Cohere's chat `usage` (or embed `meta`) object into Johi's one shape.
///
/// The figures are `billed_units`, what Cohere charges: its `tokens` also count the prompt
/// template Cohere wraps around the conversation, which the client neither sent nor pays for,
/// so budgets and prices follow the bill. When `billed_units` is absent, `tokens` is read
/// instead. Cohere's `cached_tokens` counts against `tokens`, not the bill, so it is not
/// reported as a subset of the billed input (it would not be one). Cohere reports no
/// reasoning tokens apart from output.
pub fn usage_from_cohere(usage: &Value) -> Option<Usage> {
    Lax::<CohereUsage>::deserialize(usage)
        .ok()
        .and_then(Lax::get)
        .and_then(|u| u.usage())
}

/// Cohere's chat `usage` (or embed `meta`) as read from an answer (or, through
/// [`usage_from_cohere`], from a stream event's `Value`); other fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CohereUsage {
    billed_units: Lax<Counts>,
    tokens: Lax<Counts>,
}

impl Object for CohereUsage {}

/// `billed_units` or `tokens`: counts Cohere writes as numbers (possibly with a fraction).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Counts {
    input_tokens: Lax<f64>,
    output_tokens: Lax<f64>,
}

impl Object for Counts {}

impl CohereUsage {
    /// The usage in Johi's shape (see [`usage_from_cohere`]); `None` when neither count
    /// object is there.
    pub(crate) fn usage(&self) -> Option<Usage> {
        let counts = self.billed_units.as_ref().or(self.tokens.as_ref())?;
        // A count is a number of tokens: the cast saturates (and reads NaN as 0).
        let num = |n: &Lax<f64>| n.as_ref().map_or(0, |n| *n as u64);
        Some(Usage {
            input_tokens: num(&counts.input_tokens),
            output_tokens: num(&counts.output_tokens),
            cached_tokens: 0,
            reasoning_tokens: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_paths_are_appended_once() {
        for (base, want) in [
            ("https://api.cohere.com", "https://api.cohere.com/v2/chat"),
            ("https://api.cohere.com/", "https://api.cohere.com/v2/chat"),
            ("http://127.0.0.1:9/v2", "http://127.0.0.1:9/v2/chat"),
            ("http://127.0.0.1:9/v1/", "http://127.0.0.1:9/v2/chat"),
            (
                "https://gw.example/cohere",
                "https://gw.example/cohere/v2/chat",
            ),
        ] {
            let uri = chat_uri(&base.parse().unwrap()).unwrap();
            assert_eq!(uri.to_string(), want, "{base}");
        }
        let uri = embed_uri(&"https://api.cohere.com".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "https://api.cohere.com/v2/embed");
    }

    #[test]
    fn usage_is_the_bill_with_tokens_as_a_fallback() {
        let u = usage_from_cohere(&serde_json::json!({
            "billed_units": {"input_tokens": 17, "output_tokens": 12},
            "tokens": {"input_tokens": 215, "output_tokens": 12},
            "cached_tokens": 100,
        }))
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_tokens),
            (17, 12, 0)
        );
        let u = usage_from_cohere(&serde_json::json!({
            "tokens": {"input_tokens": 5, "output_tokens": 2}
        }))
        .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (5, 2));
        assert!(usage_from_cohere(&serde_json::json!({})).is_none());
        assert!(usage_from_cohere(&Value::Null).is_none());
    }
}
