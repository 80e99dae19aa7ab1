//! AWS Bedrock's Converse API (`POST {base}/model/{modelId}/converse` and
//! `/converse-stream`), translated both ways from and to OpenAI Chat Completions.
//!
//! Pure translation, no I/O: [`encode_request`] builds the upstream body, [`converse_uri`]
//! its URL, [`decode_response`] turns a Converse response into a `chat.completion`,
//! [`StreamTranslator`] turns ConverseStream's binary event-stream frames into
//! `chat.completion.chunk` events, [`encode_embeddings`] / [`decode_embeddings`] speak
//! `InvokeModel` (`/model/{modelId}/invoke`, [`invoke_uri`]) for embedding models, [`decode_error`] turns a Bedrock error body into OpenAI's
//! error shape and [`usage_from_bedrock`] reads usage into Johi's one [`Usage`] shape. The
//! request is signed (SigV4) by the credentials processor, not here: signing is per attempt.
//!
//! Fidelity rule: a request field Converse cannot express is either mapped or refused with a
//! [`TranslateError`] naming it (a 400 for the client), never dropped silently. The table is
//! in `docs/providers.md`; [`MAPPED_FIELDS`] is the allow-list the encoder enforces.

mod embed;
mod request;
mod response;
mod stream;

use johi_core::Usage;
use serde_json::Value;

pub use embed::{decode_embeddings, encode_embeddings, EmbedFamily};
pub use request::{encode_request, MAPPED_FIELDS};
pub use response::{decode_error, decode_response, finish_reason};
pub use stream::{StreamTranslator, MAX_FRAME_BYTES};

/// The content type of ConverseStream's answer (AWS's binary event-stream framing).
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The Converse (or ConverseStream) URL for `model_id` under a provider's base URL
/// (`https://bedrock-runtime.us-east-1.amazonaws.com` by default). The model id is one path
/// segment, percent-encoded: ids carry `:` (`…-v1:0`) and ARNs carry `/`.
pub fn converse_uri(
    base: &http::Uri,
    model_id: &str,
    stream: bool,
) -> Result<http::Uri, http::Error> {
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    model_op_uri(base, model_id, op)
}

/// The `InvokeModel` URL for `model_id` (`{base}/model/{id}/invoke`), through which Bedrock
/// serves embeddings; the id is encoded as for [`converse_uri`].
pub fn invoke_uri(base: &http::Uri, model_id: &str) -> Result<http::Uri, http::Error> {
    model_op_uri(base, model_id, "invoke")
}

fn model_op_uri(base: &http::Uri, model_id: &str, op: &str) -> Result<http::Uri, http::Error> {
    let path = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{path}/model/{}/{op}", encode_segment(model_id)).parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads Converse's `usage` object into Johi's one shape; absent fields count as zero.
///
/// Converse reports cache reads and writes *beside* `inputTokens` (its `totalTokens` adds all
/// four), OpenAI inside `prompt_tokens`: the input here is the sum of the three, so prices and
/// limits see the whole prompt, and `cached_tokens` is the cache reads. Converse reports no
/// reasoning tokens apart from output, so `reasoning_tokens` is zero. Sums saturate.
pub fn usage_from_bedrock(usage: &Value) -> Option<Usage> {
    let obj = usage.as_object()?;
    let num = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = num("cacheReadInputTokens");
    Some(Usage {
        input_tokens: num("inputTokens")
            .saturating_add(num("cacheWriteInputTokens"))
            .saturating_add(cache_read),
        output_tokens: num("outputTokens"),
        cached_tokens: cache_read,
        reasoning_tokens: 0,
    })
}

/// A `chatcmpl-…` id for an answer that carries none (Converse has no response id): an
/// FNV-1a hash of the answer's bytes and the time, so it is stable for the same bytes.
fn response_id(bytes: &[u8], created: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(created.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("chatcmpl-bedrock-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_id_is_one_encoded_segment() {
        let base: http::Uri = "https://bedrock-runtime.us-east-1.amazonaws.com"
            .parse()
            .unwrap();
        let uri = converse_uri(&base, "anthropic.claude-3-haiku-20240307-v1:0", false).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        let base: http::Uri = "http://127.0.0.1:9/".parse().unwrap();
        let uri = converse_uri(&base, "arn:aws:x/y", true).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9/model/arn%3Aaws%3Ax%2Fy/converse-stream"
        );
    }

    #[test]
    fn usage_sums_cache_reads_and_writes_into_the_prompt() {
        let u = usage_from_bedrock(&serde_json::json!({
            "inputTokens": 10, "cacheWriteInputTokens": 100,
            "cacheReadInputTokens": 1000, "outputTokens": 7, "totalTokens": 1117
        }))
        .unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_tokens, u.output_tokens),
            (1110, 1000, 7)
        );
        assert!(usage_from_bedrock(&Value::Null).is_none());
    }
}
