//! Gemini `GenerateContentResponse` (and Google's error body) → OpenAI `chat.completion`
//! (and OpenAI's error shape).

use serde_json::{json, Value};

use super::{call_id, usage_from_gemini, TranslateError};
use crate::openai_shape::{
    assistant_message, body_text_or_status, chat_completion, choice, openai_error,
    openai_tool_call, openai_usage_with_reasoning,
};

/// OpenAI's `finish_reason` for Gemini's `finishReason`.
///
/// `STOP` is `stop` (or `tool_calls` when the candidate called functions: the caller decides,
/// see [`choice_finish`]); `MAX_TOKENS` is `length`; every reason for which Google blocked or
/// cut the answer (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
/// `IMAGE_SAFETY`, …) is `content_filter`. A malformed or unexpected function call ends as
/// `stop`, as does an unknown reason, rather than failing an answer already paid for.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "LANGUAGE" => "content_filter",
        _ => "stop",
    }
}

/// A candidate's finish reason, given whether it called functions (OpenAI says
/// `tool_calls` where Gemini says `STOP`).
pub(crate) fn choice_finish(reason: &str, called: bool) -> &'static str {
    match finish_reason(reason) {
        "stop" if called => "tool_calls",
        other => other,
    }
}

/// One candidate's content, read into OpenAI's message fields.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub text: Option<String>,
    pub reasoning: Option<String>,
    pub calls: Vec<Value>,
}

/// Reads a candidate's parts; `first_call` numbers the function calls that have no id (a
/// stream keeps counting across events). Text parts marked `thought` are thought summaries,
/// shown as `reasoning_content` (the field DeepSeek and vLLM use; OpenAI has none).
pub(crate) fn read_parts(content: Option<&Value>, first_call: usize) -> Parts {
    let mut out = Parts::default();
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for part in parts.into_iter().flatten() {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            let slot = if thought {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            slot.get_or_insert_with(String::new).push_str(t);
        } else if let Some(fc) = part.get("functionCall") {
            let n = first_call.saturating_add(out.calls.len());
            out.calls.push(tool_call(fc, n));
        }
    }
    out
}

/// A `functionCall` as an OpenAI tool call, arguments as a JSON string.
fn tool_call(fc: &Value, n: usize) -> Value {
    let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
    let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
    openai_tool_call(
        &call_id(fc.get("id").and_then(Value::as_str), n),
        name,
        &args.to_string(),
    )
}

/// Translates a complete `GenerateContentResponse` into an OpenAI `chat.completion`.
///
/// `model` is the name the client asked for; `created` the Unix time to stamp. Each candidate
/// is a choice. A prompt blocked before any candidate (`promptFeedback.blockReason`) is one
/// empty choice finished by `content_filter`, as OpenAI reports a filtered prompt.
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Value, TranslateError> {
    let msg: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    if !msg.is_object() {
        return Err(TranslateError::upstream("body", "not an object"));
    }
    let candidates = match msg.get("candidates") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(c)) => c.as_slice(),
        Some(_) => return Err(TranslateError::upstream("candidates", "not an array")),
    };
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (i, cand) in candidates.iter().enumerate() {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(i as u64);
        let parts = read_parts(cand.get("content"), 0);
        let finish = cand
            .get("finishReason")
            .and_then(Value::as_str)
            .map_or(Value::Null, |r| {
                json!(choice_finish(r, !parts.calls.is_empty()))
            });
        choices.push(choice(index, message(parts), finish));
    }
    if choices.is_empty() {
        if msg.pointer("/promptFeedback/blockReason").is_none() {
            return Err(TranslateError::upstream("candidates", "missing"));
        }
        choices.push(choice(
            0,
            message(Parts::default()),
            json!("content_filter"),
        ));
    }
    let usage = msg
        .get("usageMetadata")
        .and_then(usage_from_gemini)
        .map(|u| openai_usage_with_reasoning(&u));
    Ok(chat_completion(
        &response_id(&msg, created),
        created,
        model,
        choices,
        usage,
    ))
}

fn message(parts: Parts) -> Value {
    assistant_message(parts.text, parts.reasoning, parts.calls)
}

/// Gemini's `responseId` as the completion id, or one made from the time when it sent none.
pub(crate) fn response_id(msg: &Value, created: u64) -> String {
    match msg.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-gemini-{created}"),
    }
}

/// Translates Google's error body (`{"error": {"code", "message", "status"}}`) into OpenAI's
/// `{"error": {message, type, param, code}}`.
///
/// The HTTP status is the caller's to keep; `status` only names the error when the body is
/// not Google's JSON. Types follow what the OpenAI SDKs expect for the same situation:
/// `UNAUTHENTICATED` → `invalid_api_key`, `RESOURCE_EXHAUSTED` → `rate_limit_exceeded`,
/// `UNAVAILABLE` → `server_error`/`overloaded`. A stream error event has the same shape.
pub fn decode_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // Google answers some errors as a one-element array of the error object.
    let root = match &parsed {
        Some(Value::Array(items)) => items.first(),
        other => other.as_ref(),
    };
    let err = root.and_then(|v| v.get("error"));
    let kind = err.and_then(|e| e.get("status")).and_then(Value::as_str);
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body_text_or_status(body, "Gemini", status));
    let (typ, code) = match kind {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            ("invalid_request_error", Value::Null)
        }
        Some("UNAUTHENTICATED") => ("invalid_request_error", json!("invalid_api_key")),
        Some("PERMISSION_DENIED") => ("permission_error", json!("permission_denied")),
        Some("NOT_FOUND") => ("invalid_request_error", json!("not_found")),
        Some("RESOURCE_EXHAUSTED") => ("requests", json!("rate_limit_exceeded")),
        Some("UNAVAILABLE") => ("server_error", json!("overloaded")),
        Some("DEADLINE_EXCEEDED") => ("server_error", json!("timeout")),
        Some("INTERNAL" | "UNKNOWN" | "ABORTED" | "DATA_LOSS") => ("server_error", Value::Null),
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
    fn every_finish_reason_has_an_openai_one() {
        for (gemini, called, openai) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, "stop"),
            ("SOMETHING_NEW", false, "stop"),
        ] {
            assert_eq!(choice_finish(gemini, called), openai, "{gemini}");
        }
    }

    #[test]
    fn an_empty_error_body_names_the_status() {
        let v = decode_error(503, b"");
        assert_eq!(v["error"]["message"], "the Gemini upstream answered 503");
        assert_eq!(v["error"]["type"], "upstream_error");
        let v = decode_error(
            400,
            br#"[{"error":{"code":400,"message":"m","status":"INVALID_ARGUMENT"}}]"#,
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "m");
    }
}
