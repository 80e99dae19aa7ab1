//! Cohere v2 chat response (and error) → OpenAI `chat.completion` (and error).

use serde_json::{json, Value};

use super::{usage_from_cohere, TranslateError};
use crate::openai_shape::{
    assistant_message, body_text_or_status, chat_completion, choice, openai_error,
    openai_tool_call, openai_usage_with_reasoning,
};

/// OpenAI's `finish_reason` for Cohere's, `None` for `ERROR` (the answer failed: the caller
/// reports an upstream error rather than a truncated answer that looks whole).
///
/// `ERROR_TOXIC` (the output was blocked) is OpenAI's `content_filter`; `ERROR_LIMIT` (the
/// context window was reached) is `length`; `USER_CANCEL` and reasons added later end the
/// answer as `stop` rather than failing an answer already paid for.
pub fn finish_reason(reason: &str) -> Option<&'static str> {
    match reason {
        "MAX_TOKENS" | "ERROR_LIMIT" => Some("length"),
        "TOOL_CALL" => Some("tool_calls"),
        "ERROR_TOXIC" => Some("content_filter"),
        "ERROR" => None,
        _ => Some("stop"),
    }
}

/// Translates a complete v2 chat response into an OpenAI `chat.completion`.
///
/// `model` is the name the client asked for; `created` the Unix time to stamp. Text parts are
/// joined into `message.content`; `tool_plan` and `thinking` parts become
/// `message.reasoning_content` (the field DeepSeek and vLLM use; sent back, it becomes the
/// plan again); `tool_calls` keep their shape. Citations have no OpenAI equivalent and are
/// not shown. A `finish_reason` of `ERROR` is an upstream error, not an answer.
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Value, TranslateError> {
    let resp: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    let id = resp
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::upstream("id", "missing"))?;
    let msg = resp
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| TranslateError::upstream("message", "missing"))?;
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    if let Some(plan) = msg.get("tool_plan").and_then(Value::as_str) {
        if !plan.is_empty() {
            reasoning = Some(plan.to_owned());
        }
    }
    for part in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = part.get("text").and_then(Value::as_str).unwrap_or("");
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("thinking") => {
                let t = part.get("thinking").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
            }
            _ => {}
        }
    }
    let calls = tool_calls(msg.get("tool_calls"))?;
    let finish = match resp.get("finish_reason").and_then(Value::as_str) {
        None => Value::Null,
        Some(r) => match finish_reason(r) {
            Some(f) => json!(f),
            None => {
                return Err(TranslateError::upstream(
                    "finish_reason",
                    "Cohere reported an ERROR finishing the answer",
                ))
            }
        },
    };
    let message = assistant_message(text, reasoning, calls);
    let choices = vec![choice(0, message, finish)];
    let usage = resp
        .get("usage")
        .and_then(usage_from_cohere)
        .map(|u| openai_usage_with_reasoning(&u));
    Ok(chat_completion(id, created, model, choices, usage))
}

fn tool_calls(calls: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    for (i, call) in calls
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("message.tool_calls[{i}]");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::upstream(format!("{path}.id"), "missing"))?;
        let f = call.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::upstream(format!("{path}.function.name"), "missing"))?;
        let arguments = match f.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => "{}".to_owned(),
            Some(other) => other.to_string(),
        };
        out.push(openai_tool_call(id, name, &arguments));
    }
    Ok(out)
}

/// Translates a Cohere error body (`{"message": …}`, sometimes with an `id`) into OpenAI's
/// `{"error": {message, type, param, code}}`.
///
/// Cohere names the error only by its status, so the type and code follow the status, as
/// the OpenAI SDKs expect for the same situation: 401 and 498 (invalid token) →
/// `invalid_api_key`, 429 → `rate_limit_exceeded`, 402 → `insufficient_quota`, 5xx →
/// `server_error`. The status itself is the caller's to keep.
pub fn decode_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error").and_then(|e| e.get("message")))
                .or_else(|| v.get("error"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body_text_or_status(body, "Cohere", status));
    let (typ, code) = match status {
        401 | 498 => ("invalid_request_error", json!("invalid_api_key")),
        402 => ("insufficient_quota", json!("insufficient_quota")),
        403 => ("permission_error", json!("permission_denied")),
        404 => ("invalid_request_error", json!("not_found")),
        413 => ("invalid_request_error", json!("request_too_large")),
        429 => ("requests", json!("rate_limit_exceeded")),
        499 => ("invalid_request_error", json!("client_closed_request")),
        503 => ("server_error", json!("overloaded")),
        504 => ("server_error", json!("timeout")),
        400..=499 => ("invalid_request_error", Value::Null),
        500..=599 => ("server_error", Value::Null),
        _ => ("upstream_error", json!("upstream_error")),
    };
    openai_error(&message, typ, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finish_reason_has_a_translation() {
        for (cohere, openai) in [
            ("COMPLETE", Some("stop")),
            ("STOP_SEQUENCE", Some("stop")),
            ("USER_CANCEL", Some("stop")),
            ("MAX_TOKENS", Some("length")),
            ("ERROR_LIMIT", Some("length")),
            ("TOOL_CALL", Some("tool_calls")),
            ("ERROR_TOXIC", Some("content_filter")),
            ("ERROR", None),
            ("SOMETHING_NEW", Some("stop")),
        ] {
            assert_eq!(finish_reason(cohere), openai, "{cohere}");
        }
    }

    #[test]
    fn an_answer_that_failed_is_an_upstream_error() {
        let err = decode_response(
            br#"{"id":"x","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}"#,
            "m",
            0,
        )
        .unwrap_err();
        assert_eq!(err.field(), "finish_reason");
    }

    #[test]
    fn an_empty_error_body_names_the_status() {
        let v = decode_error(503, b"");
        assert_eq!(v["error"]["message"], "the Cohere upstream answered 503");
        assert_eq!(v["error"]["code"], "overloaded");
    }
}
