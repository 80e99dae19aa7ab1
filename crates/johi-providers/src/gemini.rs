//! Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`),
//! spoken by the Gemini API and by Vertex AI, translated both ways from and to OpenAI Chat
//! Completions and Embeddings; and Vertex AI's text-embedding `:predict`, which Vertex serves
//! instead of `batchEmbedContents`.
//!
//! Pure translation, no I/O: [`encode_request`] builds a `GenerateContentRequest`,
//! [`decode_response`] turns a `GenerateContentResponse` into a `chat.completion`,
//! [`StreamTranslator`] turns the `?alt=sse` stream into `chat.completion.chunk` events,
//! [`encode_embeddings`] / [`decode_embeddings`] translate `/v1/embeddings` for the Gemini API,
//! [`encode_predict_embeddings`] / [`decode_predict_embeddings`] for Vertex, and
//! [`decode_error`] turns Google's error body into OpenAI's error shape.
//!
//! Fidelity rule: a request field Gemini cannot express is either mapped or refused with a
//! [`TranslateError`] naming it, never dropped silently. The table of what is mapped and
//! what is refused is in `docs/providers.md`; [`MAPPED_FIELDS`] is the allow-list.
//!
//! Gemini's function calls carry no id (or an optional one): answers get `call_<n>` ids,
//! stable within an answer, and a tool result's function name is looked up from the
//! assistant tool call with the same id earlier in the conversation.

mod embed;
mod predict;
mod request;
mod response;
mod stream;

use johi_core::Usage;
use serde::Deserialize;
use serde_json::Value;

use crate::wire::{Lax, Object};

pub use embed::{decode_embeddings, encode_embeddings, EMBEDDING_FIELDS};
/// The embeddings input helpers Bedrock's `InvokeModel` embeddings share.
pub(crate) use embed::{dimensions, texts_for, vector, wants_base64, Vector};
pub use predict::{decode_predict_embeddings, encode_predict_embeddings, task_type};
pub use request::{encode_request, EncodedRequest, MAPPED_FIELDS};
pub use response::{decode_error, decode_response, finish_reason};
pub use stream::StreamTranslator;

pub use crate::TranslateError;

/// Which Gemini method a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `:generateContent`, one complete answer.
    Generate,
    /// `:streamGenerateContent?alt=sse`, an SSE stream of partial answers.
    Stream,
    /// `:batchEmbedContents`, embeddings for several inputs at once (the Gemini API).
    BatchEmbed,
    /// `:predict`, Vertex AI's embeddings for several inputs at once (Vertex serves no
    /// `batchEmbedContents`).
    Predict,
}

/// The method URL for a model below a provider's base URL
/// (`https://generativelanguage.googleapis.com/v1beta` →
/// `…/v1beta/models/gemini-2.5-flash:generateContent`). A model given as `models/x` is not
/// doubled. A Vertex base already ends in `…/projects/{p}/locations/{l}/publishers/google`, so
/// the same join gives Vertex's method URLs.
pub fn method_uri(base: &http::Uri, model: &str, method: Method) -> Result<http::Uri, http::Error> {
    let path = base.path().trim_end_matches('/');
    let model = model.strip_prefix("models/").unwrap_or(model);
    let suffix = match method {
        Method::Generate => ":generateContent",
        Method::Stream => ":streamGenerateContent?alt=sse",
        Method::BatchEmbed => ":batchEmbedContents",
        Method::Predict => ":predict",
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{path}/models/{model}{suffix}").parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

/// Reads Gemini's `usageMetadata` into Johi's one shape; absent fields count as zero.
///
/// `promptTokenCount` already includes the cached content (`cachedContentTokenCount`, priced
/// apart), and tool-use prompts (`toolUsePromptTokenCount`, e.g. search results) are prompt
/// tokens too, so they are added to the input, as Google's `totalTokenCount` does. Thinking
/// is counted as output, as OpenAI does: output = candidates + thoughts, reasoning =
/// thoughts. Sums saturate: absurd upstream counts must not panic the relay.
pub fn usage_from_gemini(usage: &Value) -> Option<Usage> {
    Lax::<UsageMetadata>::deserialize(usage)
        .ok()
        .and_then(Lax::get)
        .map(|u| u.usage())
}

/// `usageMetadata` as read from an answer (or, through [`usage_from_gemini`], a stream
/// event's `Value`): the counts [`UsageMetadata::usage`] adds up, each zero when absent or
/// not a count.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    prompt_token_count: Lax<u64>,
    tool_use_prompt_token_count: Lax<u64>,
    candidates_token_count: Lax<u64>,
    thoughts_token_count: Lax<u64>,
    cached_content_token_count: Lax<u64>,
}

impl Object for UsageMetadata {}

impl UsageMetadata {
    /// The usage in Johi's shape (see [`usage_from_gemini`] for the sums).
    pub(crate) fn usage(&self) -> Usage {
        let num = |n: &Lax<u64>| n.as_ref().copied().unwrap_or(0);
        let thoughts = num(&self.thoughts_token_count);
        Usage {
            input_tokens: num(&self.prompt_token_count)
                .saturating_add(num(&self.tool_use_prompt_token_count)),
            output_tokens: num(&self.candidates_token_count).saturating_add(thoughts),
            cached_tokens: num(&self.cached_content_token_count),
            reasoning_tokens: thoughts,
        }
    }
}

/// The id of the `n`th function call of an answer that Gemini gave none.
pub(crate) fn call_id(given: Option<&str>, n: usize) -> String {
    match given {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("call_{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_are_appended_to_the_base() {
        let base: http::Uri = "https://generativelanguage.googleapis.com/v1beta/"
            .parse()
            .unwrap();
        let uri = method_uri(&base, "gemini-2.5-flash", Method::Generate).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let uri = method_uri(&base, "models/g", Method::Stream).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/g:streamGenerateContent?alt=sse"
        );
        let uri = method_uri(&base, "e", Method::BatchEmbed).unwrap();
        assert!(uri
            .to_string()
            .ends_with("/v1beta/models/e:batchEmbedContents"));
        let vertex: http::Uri = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google"
            .parse()
            .unwrap();
        let uri = method_uri(&vertex, "text-embedding-005", Method::Predict).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict"
        );
    }

    #[test]
    fn thoughts_are_output_and_reasoning() {
        let u = usage_from_gemini(&serde_json::json!({
            "promptTokenCount": 100, "cachedContentTokenCount": 40,
            "candidatesTokenCount": 7, "thoughtsTokenCount": 5, "toolUsePromptTokenCount": 3
        }))
        .unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 103,
                output_tokens: 12,
                cached_tokens: 40,
                reasoning_tokens: 5
            }
        );
        assert!(usage_from_gemini(&Value::Null).is_none());
    }
}
