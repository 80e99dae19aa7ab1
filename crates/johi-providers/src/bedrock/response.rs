//! Bedrock Converse response (and error) → OpenAI `chat.completion` (and error).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::response_id;
use crate::codec::Decoded;
use crate::openai_shape::{
    body_text_or_status, openai_error, AssistantMessage, ChatCompletion, Choice, ToolCallOut,
    UsageOut,
};
use crate::wire::{push_text, CacheBesideInput, Str};
use crate::TranslateError;

/// OpenAI's `finish_reason` for Converse's `stopReason`.
///
/// A guardrail intervention or a content filter is OpenAI's `content_filter`; a context
/// window overflow is `length`. An unknown reason reads as `stop` rather than failing an
/// answer already paid for.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Translates a complete Converse response into an OpenAI `chat.completion`, as bytes with
/// the usage Johi meters.
///
/// `model` is the name the client asked for; `created` the Unix time to stamp. Converse
/// answers carry no id, so one is derived from the answer itself (stable for a fixture).
/// `text` blocks are joined into `message.content`, `toolUse` blocks become `tool_calls`, and
/// `reasoningContent` text is joined into `message.reasoning_content` (DeepSeek's and vLLM's
/// field; OpenAI has none). Other blocks (redacted reasoning, citations) are opaque to an
/// OpenAI client and not shown. Read into borrowed structs and written straight back out,
/// as every translated answer is.
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Decoded, TranslateError> {
    let msg: ConverseOut = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    let blocks = msg
        .output
        .and_then(|o| o.message)
        .and_then(|m| m.content)
        .ok_or_else(|| TranslateError::upstream("output.message.content", "missing"))?;
    let mut text = None;
    let mut reasoning = None;
    let mut calls = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        if let Some(t) = block.text {
            push_text(&mut text, t.0);
        } else if let Some(tool) = block.tool_use {
            calls.push(tool_call(tool, i)?);
        } else if let Some(t) = block
            .reasoning_content
            .and_then(|r| r.reasoning_text)
            .and_then(|r| r.text)
        {
            push_text(&mut reasoning, t.0);
        }
    }
    let choices = vec![Choice {
        index: 0,
        message: AssistantMessage::new(text, reasoning, calls),
        logprobs: (),
        finish_reason: msg.stop_reason.as_ref().map(|r| finish_reason(r.as_str())),
    }];
    let usage = msg.usage.map(|u| u.usage());
    let usage_out = usage.as_ref().map(|u| UsageOut::new(u, false));
    let id = response_id(body, created);
    ChatCompletion::new(&id, created, model, choices, usage_out).write(usage)
}

/// The parts of a Converse response the translation reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseOut<'a> {
    #[serde(borrow)]
    output: Option<OutputIn<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    usage: Option<CacheBesideInput>,
}

#[derive(Deserialize)]
struct OutputIn<'a> {
    #[serde(borrow)]
    message: Option<MessageIn<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    content: Option<Vec<BlockIn<'a>>>,
}

/// One content block; Converse names its kind by its one key.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockIn<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    tool_use: Option<ToolUseIn<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ReasoningIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseIn<'a> {
    #[serde(borrow)]
    tool_use_id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningIn<'a> {
    #[serde(borrow)]
    reasoning_text: Option<ReasoningTextIn<'a>>,
}

#[derive(Deserialize)]
struct ReasoningTextIn<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

/// A `toolUse` block as an OpenAI tool call.
fn tool_call(tool: ToolUseIn<'_>, i: usize) -> Result<ToolCallOut<'_>, TranslateError> {
    let path = || format!("output.message.content[{i}].toolUse");
    let id = tool
        .tool_use_id
        .ok_or_else(|| TranslateError::upstream(format!("{}.toolUseId", path()), "missing"))?;
    let name = tool
        .name
        .ok_or_else(|| TranslateError::upstream(format!("{}.name", path()), "missing"))?;
    let input = tool.input.unwrap_or_else(|| json!({}));
    let arguments = serde_json::to_string(&input)
        .map_err(|e| TranslateError::upstream(format!("{}.input", path()), e.to_string()))?;
    Ok(ToolCallOut::function(id.0, name.0, Cow::Owned(arguments)))
}

/// OpenAI's error `type` and `code` for a Bedrock exception name (the `x-amzn-errortype`
/// header, the `__type` body field or a stream exception's `:exception-type`), falling back
/// on the HTTP status, which Bedrock sets per exception.
pub(crate) fn error_kind(exception: Option<&str>, status: u16) -> (&'static str, Value) {
    // Names arrive as `ThrottlingException`, `throttlingException` or with a namespace
    // (`com.amazon…#ThrottlingException`, `ThrottlingException:http://…`).
    let name = exception
        .map(|e| e.rsplit('#').next().unwrap_or(e))
        .map(|e| e.split(':').next().unwrap_or(e).to_ascii_lowercase());
    let by_name = match name.as_deref() {
        Some("validationexception") => Some(400),
        Some("accessdeniedexception" | "invalidsignatureexception") => Some(403),
        Some("unrecognizedclientexception") => Some(401),
        Some("resourcenotfoundexception") => Some(404),
        Some("modeltimeoutexception") => Some(408),
        Some("throttlingexception") => Some(429),
        Some("servicequotaexceededexception") => Some(402),
        Some("serviceunavailableexception") => Some(503),
        Some("modelnotreadyexception") => Some(529),
        Some("internalserverexception" | "modelstreamerrorexception" | "modelerrorexception") => {
            Some(500)
        }
        _ => None,
    };
    match by_name.unwrap_or(status) {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        402 => ("insufficient_quota", json!("insufficient_quota")),
        403 => ("permission_error", json!("permission_denied")),
        404 => ("invalid_request_error", json!("not_found")),
        408 => ("server_error", json!("timeout")),
        429 => ("requests", json!("rate_limit_exceeded")),
        529 => ("server_error", json!("overloaded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    }
}

/// Translates a Bedrock error body (`{"message": …}`, status kept by the caller) into OpenAI's
/// `{"error": {message, type, param, code}}`. The type follows the exception named in the
/// body's `__type` when present, else the status (Bedrock gives each exception its own).
pub fn decode_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
    };
    let message = field("message")
        .or_else(|| field("Message"))
        .map(str::to_owned)
        .unwrap_or_else(|| body_text_or_status(body, "Bedrock", status));
    let (typ, code) = error_kind(field("__type"), status);
    openai_error(&message, typ, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stop_reason_has_a_finish_reason() {
        for (bedrock, openai) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("something_new", "stop"),
        ] {
            assert_eq!(finish_reason(bedrock), openai, "{bedrock}");
        }
    }

    #[test]
    fn exception_names_win_over_the_status() {
        assert_eq!(error_kind(Some("throttlingException"), 400).0, "requests");
        assert_eq!(
            error_kind(Some("com.amazon.coral#ValidationException"), 500).0,
            "invalid_request_error"
        );
        assert_eq!(error_kind(None, 503).0, "server_error");
        let v = decode_error(503, b"");
        assert_eq!(v["error"]["message"], "the Bedrock upstream answered 503");
    }
}
