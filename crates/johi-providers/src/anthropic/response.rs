//! Anthropic Messages response (and error) → OpenAI `chat.completion` (and error).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::TranslateError;
use crate::codec::Decoded;
use crate::openai_shape::{
    body_text_or_status, openai_error, AssistantMessage, ChatCompletion, Choice, ToolCallOut,
    UsageOut,
};
use crate::wire::{push_text, CacheBesideInput, Str};

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
///
/// `refusal` (the model declined for safety) is OpenAI's `content_filter`; `pause_turn` (a
/// server tool paused a long turn) ends this answer as `stop`; a context window overflow is
/// `length`. An unknown reason reads as `stop` rather than failing an answer already paid for.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Translates a complete Messages response into an OpenAI `chat.completion`, as bytes with
/// the usage Johi meters.
///
/// `model` is the name the client asked for (what it expects back); `created` is the Unix
/// time to stamp, passed in so that translation stays pure. Text blocks are joined into
/// `message.content`, `tool_use` blocks become `tool_calls` (arguments as a JSON string), and
/// `thinking` blocks are joined into `message.reasoning_content` — the field DeepSeek and
/// vLLM use, since OpenAI has none. Block types with no OpenAI equivalent
/// (`redacted_thinking`, server tool blocks) are not shown: they are opaque to the client.
///
/// The answer is read into borrowed structs and written straight back out (this runs on
/// every translated request; a `Value` tree cost about twice the rest of the translation).
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Decoded, TranslateError> {
    let msg: MessageIn = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    let id = msg
        .id
        .as_ref()
        .ok_or_else(|| TranslateError::upstream("id", "missing"))?;
    let blocks = msg
        .content
        .ok_or_else(|| TranslateError::upstream("content", "missing"))?;
    let mut text = None;
    let mut reasoning = None;
    let mut calls = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        match block.kind.as_ref().map(Str::as_str) {
            Some("text") => push_text(&mut text, block.text.unwrap_or_default().0),
            Some("thinking") => push_text(&mut reasoning, block.thinking.unwrap_or_default().0),
            Some("tool_use") => calls.push(tool_call_out(block, i)?),
            _ => {}
        }
    }
    let finish = msg.stop_reason.as_ref().map(|r| finish_reason(r.as_str()));
    let message = AssistantMessage::new(text, reasoning, calls);
    let choices = vec![Choice {
        index: 0,
        message,
        logprobs: (),
        finish_reason: finish,
    }];
    let usage = msg.usage.map(|u| u.usage());
    let usage_out = usage.as_ref().map(|u| UsageOut::new(u, false));
    ChatCompletion::new(id.as_str(), created, model, choices, usage_out).write(usage)
}

/// The parts of a Messages response the translation reads; everything else is ignored.
#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<Vec<BlockIn<'a>>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    usage: Option<CacheBesideInput>,
}

/// One content block: the fields of every block type the translation shows.
#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    thinking: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    input: Option<Value>,
}

/// A `tool_use` block as an OpenAI tool call of a complete answer.
fn tool_call_out(block: BlockIn<'_>, i: usize) -> Result<ToolCallOut<'_>, TranslateError> {
    let id = block
        .id
        .ok_or_else(|| TranslateError::upstream(format!("content[{i}].id"), "missing"))?;
    let name = block
        .name
        .ok_or_else(|| TranslateError::upstream(format!("content[{i}].name"), "missing"))?;
    let input = block.input.unwrap_or_else(|| json!({}));
    let arguments = serde_json::to_string(&input)
        .map_err(|e| TranslateError::upstream(format!("content[{i}].input"), e.to_string()))?;
    Ok(ToolCallOut::function(id.0, name.0, Cow::Owned(arguments)))
}

/// Translates an Anthropic error body into OpenAI's `{"error": {message, type, param, code}}`.
///
/// The status is the caller's to keep (a 529 stays a 529, so that retry and fallback still
/// see an overloaded upstream); `status` only names the error when the body is not
/// Anthropic's JSON. Types follow what the OpenAI SDKs expect for the same situation:
/// `authentication_error` → `invalid_api_key`, `rate_limit_error` → `rate_limit_exceeded`,
/// `billing_error` → `insufficient_quota`, `overloaded_error` → `server_error`/`overloaded`.
pub fn decode_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body_text_or_status(body, "Anthropic", status));
    let (typ, code) = match kind {
        Some("invalid_request_error") => ("invalid_request_error", Value::Null),
        Some("authentication_error") => ("invalid_request_error", json!("invalid_api_key")),
        Some("permission_error") => ("permission_error", json!("permission_denied")),
        Some("not_found_error") => ("invalid_request_error", json!("not_found")),
        Some("request_too_large") => ("invalid_request_error", json!("request_too_large")),
        Some("rate_limit_error") => ("requests", json!("rate_limit_exceeded")),
        Some("billing_error") => ("insufficient_quota", json!("insufficient_quota")),
        Some("overloaded_error") => ("server_error", json!("overloaded")),
        Some("timeout_error") => ("server_error", json!("timeout")),
        Some("api_error") => ("server_error", Value::Null),
        Some(_) | None => match status {
            400..=499 => ("invalid_request_error", Value::Null),
            _ => ("upstream_error", json!("upstream_error")),
        },
    };
    openai_error(&message, typ, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stop_reason_has_a_finish_reason() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("something_new", "stop"),
        ] {
            assert_eq!(finish_reason(anthropic), openai, "{anthropic}");
        }
    }

    #[test]
    fn an_empty_error_body_names_the_status() {
        let v = decode_error(503, b"");
        assert_eq!(v["error"]["message"], "the Anthropic upstream answered 503");
        assert_eq!(v["error"]["type"], "upstream_error");
        let v = decode_error(
            418,
            br#"{"type":"error","error":{"type":"brand_new","message":"m"}}"#,
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "m");
    }
}
