//! Cohere v2 chat response (and error) → OpenAI `chat.completion` (and error).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{CohereUsage, TranslateError};
use crate::codec::Decoded;
use crate::openai_shape::{
    body_text_or_status, openai_error, AssistantMessage, ChatCompletion, Choice, ToolCallOut,
    UsageOut,
};
use crate::wire::{push_text, read_body, Accept, Lax, Object, Str};

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

/// Translates a complete v2 chat response into an OpenAI `chat.completion`, as bytes with
/// the usage Johi meters.
///
/// `model` is the name the client asked for; `created` the Unix time to stamp. Text parts are
/// joined into `message.content`; `tool_plan` and `thinking` parts become
/// `message.reasoning_content` (the field DeepSeek and vLLM use; sent back, it becomes the
/// plan again); `tool_calls` keep their shape. Citations have no OpenAI equivalent and are
/// not shown. A `finish_reason` of `ERROR` is an upstream error, not an answer.
///
/// The answer is read into borrowed, lenient structs ([`crate::wire::Lax`]: a field of an
/// unexpected kind counts as absent, as it did when this read a `Value`) and written
/// straight back out: this runs on every translated request.
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Decoded, TranslateError> {
    let resp = read_body::<ChatIn>(body)?.get().unwrap_or_default();
    let id = resp
        .id
        .get()
        .ok_or_else(|| TranslateError::upstream("id", "missing"))?;
    let msg = resp
        .message
        .get()
        .ok_or_else(|| TranslateError::upstream("message", "missing"))?;
    let mut text = None;
    let mut reasoning = None;
    if let Some(plan) = msg.tool_plan.get().filter(|p| !p.0.is_empty()) {
        reasoning = Some(plan.0);
    }
    for part in msg.content.get().into_iter().flatten() {
        let part = part.get().unwrap_or_default();
        match part.kind.str() {
            Some("text") => push_text(&mut text, part.text.get().unwrap_or_default().0),
            Some("thinking") => {
                push_text(&mut reasoning, part.thinking.get().unwrap_or_default().0)
            }
            _ => {}
        }
    }
    let calls = tool_calls(msg.tool_calls)?;
    let finish = match resp.finish_reason.str() {
        None => None,
        Some(r) => match finish_reason(r) {
            Some(f) => Some(f),
            None => {
                return Err(TranslateError::upstream(
                    "finish_reason",
                    "Cohere reported an ERROR finishing the answer",
                ))
            }
        },
    };
    let choices = vec![Choice {
        index: 0,
        message: AssistantMessage::new(text, reasoning, calls),
        logprobs: (),
        finish_reason: finish,
    }];
    let usage = resp.usage.get().and_then(|u| u.usage());
    let usage_out = usage.as_ref().map(|u| UsageOut::new(u, true));
    ChatCompletion::new(id.as_str(), created, model, choices, usage_out).write(usage)
}

/// The parts of a v2 chat response the translation reads; everything else is ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatIn<'a> {
    #[serde(borrow)]
    id: Lax<Str<'a>>,
    #[serde(borrow)]
    message: Lax<MessageIn<'a>>,
    #[serde(borrow)]
    finish_reason: Lax<Str<'a>>,
    usage: Lax<CohereUsage>,
}

impl Object for ChatIn<'_> {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MessageIn<'a> {
    #[serde(borrow)]
    tool_plan: Lax<Str<'a>>,
    #[serde(borrow)]
    content: Lax<Vec<Lax<ContentIn<'a>>>>,
    #[serde(borrow)]
    tool_calls: Lax<Vec<Lax<ToolCallIn<'a>>>>,
}

impl Object for MessageIn<'_> {}

/// One content part: the fields of every part type the translation shows.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Lax<Str<'a>>,
    #[serde(borrow)]
    text: Lax<Str<'a>>,
    #[serde(borrow)]
    thinking: Lax<Str<'a>>,
}

impl Object for ContentIn<'_> {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolCallIn<'a> {
    #[serde(borrow)]
    id: Lax<Str<'a>>,
    #[serde(borrow)]
    function: Lax<FunctionIn<'a>>,
}

impl Object for ToolCallIn<'_> {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionIn<'a> {
    #[serde(borrow)]
    name: Lax<Str<'a>>,
    #[serde(borrow)]
    arguments: Lax<Arguments<'a>>,
}

impl Object for FunctionIn<'_> {}

/// A call's `arguments`: the JSON text Cohere sends, borrowed, or any other JSON value
/// (written out as its JSON text).
enum Arguments<'a> {
    Text(Str<'a>),
    Json(Value),
}

impl<'de: 'a, 'a> Accept<'de> for Arguments<'a> {
    fn from_str(s: Cow<'de, str>) -> Option<Self> {
        Some(Arguments::Text(Str(s)))
    }
    fn from_u64(n: u64) -> Option<Self> {
        <Value as Accept>::from_u64(n).map(Arguments::Json)
    }
    fn from_i64(n: i64) -> Option<Self> {
        <Value as Accept>::from_i64(n).map(Arguments::Json)
    }
    fn from_f64(x: f64) -> Option<Self> {
        <Value as Accept>::from_f64(x).map(Arguments::Json)
    }
    fn from_bool(b: bool) -> Option<Self> {
        <Value as Accept>::from_bool(b).map(Arguments::Json)
    }
    fn from_map<A: serde::de::MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Ok(<Value as Accept>::from_map(map)?.map(Arguments::Json))
    }
    fn from_seq<A: serde::de::SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Ok(<Value as Accept>::from_seq(seq)?.map(Arguments::Json))
    }
}

/// Cohere's tool calls, which have OpenAI's shape already; an id and a function name are
/// required, absent arguments are an empty object.
fn tool_calls(
    calls: Lax<Vec<Lax<ToolCallIn<'_>>>>,
) -> Result<Vec<ToolCallOut<'_>>, TranslateError> {
    let calls = calls.get().unwrap_or_default();
    let mut out = Vec::with_capacity(calls.len());
    for (i, call) in calls.into_iter().enumerate() {
        let call = call.get().unwrap_or_default();
        let path = format!("message.tool_calls[{i}]");
        let id = call
            .id
            .get()
            .ok_or_else(|| TranslateError::upstream(format!("{path}.id"), "missing"))?;
        let f = call.function.get().unwrap_or_default();
        let name = f
            .name
            .get()
            .ok_or_else(|| TranslateError::upstream(format!("{path}.function.name"), "missing"))?;
        let arguments = match f.arguments {
            Lax::Is(Arguments::Text(s)) => s.0,
            Lax::Absent | Lax::Null | Lax::Other => Cow::Borrowed("{}"),
            Lax::Is(Arguments::Json(v)) => Cow::Owned(v.to_string()),
        };
        out.push(ToolCallOut::function(id.0, name.0, arguments));
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
