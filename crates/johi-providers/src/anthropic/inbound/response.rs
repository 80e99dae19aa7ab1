//! OpenAI `chat.completion` (and error) → inbound Anthropic Messages answer (and error).

use serde_json::{json, Map, Value};

use crate::TranslateError;

/// Anthropic's `stop_reason` for OpenAI's `finish_reason`.
///
/// OpenAI does not say which stop sequence matched, so `stop` is always `end_turn` (never
/// `stop_sequence`); an unknown reason reads as `end_turn` rather than failing an answer
/// already paid for.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's `usage` for an OpenAI `usage` object.
///
/// OpenAI's `prompt_tokens` includes the cached tokens, Anthropic's `input_tokens` does not:
/// cache reads are reported apart as `cache_read_input_tokens`, the rest as `input_tokens`.
/// Reasoning tokens are inside `output_tokens` on both sides.
pub fn usage(openai: Option<&Value>) -> Value {
    let num = |k: &str| {
        openai
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = openai
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": num("prompt_tokens").saturating_sub(cached),
        "output_tokens": num("completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// A message id in Anthropic's style for an OpenAI completion id.
pub(super) fn message_id(id: Option<&str>) -> String {
    match id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => "msg_johi".to_owned(),
    }
}

/// Translates a complete OpenAI `chat.completion` into an Anthropic `message`.
///
/// `model` is the name the client asked for. Reasoning (`reasoning_content`, or `reasoning`
/// as some servers name it) becomes a `thinking` block first, then the text, then one
/// `tool_use` block per tool call with its arguments parsed back into `input`.
pub fn encode_response(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| TranslateError::upstream("choices", "missing"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| TranslateError::upstream("choices[0].message", "missing"))?;
    let mut content = Vec::new();
    let reasoning = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .filter(|r| !r.is_empty());
    if let Some(r) = reasoning {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        content.push(json!({"type": "text", "text": refusal}));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (k, call) in calls.iter().enumerate() {
            content.push(tool_use(call, k)?);
        }
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let mut out = Map::new();
    out.insert(
        "id".into(),
        json!(message_id(v.get("id").and_then(Value::as_str))),
    );
    out.insert("type".into(), json!("message"));
    out.insert("role".into(), json!("assistant"));
    out.insert("model".into(), json!(model));
    out.insert("content".into(), Value::Array(content));
    out.insert(
        "stop_reason".into(),
        finish.map_or(Value::Null, |f| json!(stop_reason(f))),
    );
    out.insert("stop_sequence".into(), Value::Null);
    out.insert("usage".into(), usage(v.get("usage")));
    Ok(Value::Object(out))
}

/// An OpenAI tool call → a `tool_use` block (the arguments string parsed into `input`).
pub(super) fn tool_use(call: &Value, k: usize) -> Result<Value, TranslateError> {
    let path = format!("choices[0].message.tool_calls[{k}]");
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::upstream(format!("{path}.id"), "missing"))?;
    let f = call.get("function");
    let name = f
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::upstream(format!("{path}.function.name"), "missing"))?;
    let args = f
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let input = if args.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(args).map_err(|e| {
            TranslateError::upstream(format!("{path}.function.arguments"), e.to_string())
        })?
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// Anthropic's error `type` for an HTTP status: what its SDKs expect for each.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's `{"type": "error", "error": {"type", "message"}}` for an error answer.
///
/// `body` is the OpenAI-shaped error Johi would have sent (its `message` is kept, and a
/// `param` naming a field is appended to it, since Anthropic's shape has no `param`); a body
/// that is not OpenAI's shape (an upstream's own JSON, plain text) is quoted, shortened.
pub fn encode_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let message = match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => match err.and_then(|e| e.get("param")).and_then(Value::as_str) {
            Some(p) if !m.contains(p) => format!("{p}: {m}"),
            _ => m.to_owned(),
        },
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            if text.trim().is_empty() {
                format!("the request failed with status {status}")
            } else {
                text
            }
        }
    };
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}
