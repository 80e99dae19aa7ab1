//! Gemini `GenerateContentResponse` (and Google's error body) → OpenAI `chat.completion`
//! (and OpenAI's error shape).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{call_id, TranslateError, UsageMetadata};
use crate::codec::Decoded;
use crate::openai_shape::{
    body_text_or_status, openai_error, AssistantMessage, ChatCompletion, Choice, ToolCallOut,
    UsageOut,
};
use crate::wire::{push_text, read_body, Accept, Lax, Object, Str};

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

/// Translates a complete `GenerateContentResponse` into an OpenAI `chat.completion`, as
/// bytes with the usage Johi meters.
///
/// `model` is the name the client asked for; `created` the Unix time to stamp. Each candidate
/// is a choice. A prompt blocked before any candidate (`promptFeedback.blockReason`) is one
/// empty choice finished by `content_filter`, as OpenAI reports a filtered prompt.
///
/// The answer is read into borrowed, lenient structs ([`crate::wire::Lax`]: a field of an
/// unexpected kind counts as absent, as it did when this read a `Value`) and written
/// straight back out: this runs on every translated request.
pub fn decode_response(body: &[u8], model: &str, created: u64) -> Result<Decoded, TranslateError> {
    let Lax::Is(msg) = read_body::<ResponseIn>(body)? else {
        return Err(TranslateError::upstream("body", "not an object"));
    };
    let candidates = match msg.candidates {
        Lax::Absent | Lax::Null => Vec::new(),
        Lax::Is(c) => c,
        Lax::Other => return Err(TranslateError::upstream("candidates", "not an array")),
    };
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    for (i, cand) in candidates.into_iter().enumerate() {
        let cand = cand.get().unwrap_or_default();
        let index = cand.index.get().unwrap_or(i as u64);
        let parts = read_parts(cand.content.get().unwrap_or_default());
        let finish = cand
            .finish_reason
            .str()
            .map(|r| choice_finish(r, !parts.calls.is_empty()));
        choices.push(choice(index, parts, finish));
    }
    if choices.is_empty() {
        let blocked = msg
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_present());
        if !blocked {
            return Err(TranslateError::upstream("candidates", "missing"));
        }
        choices.push(choice(0, Parts::default(), Some("content_filter")));
    }
    let usage = msg.usage_metadata.get().map(|u| u.usage());
    let usage_out = usage.as_ref().map(|u| UsageOut::new(u, true));
    let id = response_id(msg.response_id.str(), created);
    ChatCompletion::new(&id, created, model, choices, usage_out).write(usage)
}

/// The parts of a `GenerateContentResponse` the translation reads; everything else is
/// ignored.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ResponseIn<'a> {
    #[serde(borrow)]
    candidates: Lax<Vec<Lax<CandidateIn<'a>>>>,
    prompt_feedback: Lax<PromptFeedbackIn>,
    usage_metadata: Lax<UsageMetadata>,
    #[serde(borrow)]
    response_id: Lax<Str<'a>>,
}

impl Object for ResponseIn<'_> {}

/// One candidate: one OpenAI choice.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CandidateIn<'a> {
    index: Lax<u64>,
    #[serde(borrow)]
    content: Lax<ContentIn<'a>>,
    #[serde(borrow)]
    finish_reason: Lax<Str<'a>>,
}

impl Object for CandidateIn<'_> {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentIn<'a> {
    #[serde(borrow)]
    parts: Lax<Vec<Lax<PartIn<'a>>>>,
}

impl Object for ContentIn<'_> {}

/// A part: text (a thought summary when `thought`), or a function call.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PartIn<'a> {
    #[serde(borrow)]
    text: Lax<Str<'a>>,
    thought: Lax<bool>,
    #[serde(borrow)]
    function_call: Lax<FunctionCallIn<'a>>,
}

impl Object for PartIn<'_> {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionCallIn<'a> {
    #[serde(borrow)]
    id: Lax<Str<'a>>,
    #[serde(borrow)]
    name: Lax<Str<'a>>,
    args: Lax<Value>,
}

impl Object for FunctionCallIn<'_> {}

/// `promptFeedback`: only whether a `blockReason` is there (whatever its value) matters.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedbackIn {
    block_reason: Lax<IgnoredValue>,
}

impl Object for PromptFeedbackIn {}

/// A value read only for its presence.
struct IgnoredValue;

impl Accept<'_> for IgnoredValue {}

/// One candidate's content, read into OpenAI's message fields.
#[derive(Default)]
struct Parts<'a> {
    text: Option<Cow<'a, str>>,
    reasoning: Option<Cow<'a, str>>,
    calls: Vec<ToolCallOut<'a>>,
}

/// Reads a candidate's parts. Text parts marked `thought` are thought summaries, shown as
/// `reasoning_content` (the field DeepSeek and vLLM use; OpenAI has none); function calls
/// with no id are numbered `call_<n>` in order. The stream reads its events' parts by the
/// same rules (`stream::read_parts`).
fn read_parts(content: ContentIn<'_>) -> Parts<'_> {
    let mut out = Parts::default();
    for part in content.parts.get().into_iter().flatten() {
        let part = part.get().unwrap_or_default();
        if let Lax::Is(t) = part.text {
            let slot = if part.thought.get() == Some(true) {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            push_text(slot, t.0);
        } else if part.function_call.is_present() {
            let fc = part.function_call.get().unwrap_or_default();
            let n = out.calls.len();
            out.calls.push(tool_call(fc, n));
        }
    }
    out
}

/// A `functionCall` as an OpenAI tool call, arguments as a JSON string (an absent `args` is
/// an empty object; `null` stays `null`, as Gemini wrote it).
fn tool_call(fc: FunctionCallIn<'_>, n: usize) -> ToolCallOut<'_> {
    let id = match fc.id.get() {
        Some(Str(id)) if !id.is_empty() => id,
        _ => Cow::Owned(call_id(None, n)),
    };
    let arguments = match fc.args {
        Lax::Absent => Cow::Borrowed("{}"),
        // `Other` cannot happen: a `Value` takes every kind.
        Lax::Null | Lax::Other => Cow::Borrowed("null"),
        Lax::Is(args) => Cow::Owned(args.to_string()),
    };
    let name = fc.name.get().map_or(Cow::Borrowed(""), |n| n.0);
    ToolCallOut::function(id, name, arguments)
}

fn choice<'a>(index: u64, parts: Parts<'a>, finish: Option<&'static str>) -> Choice<'a> {
    Choice {
        index,
        message: AssistantMessage::new(parts.text, parts.reasoning, parts.calls),
        logprobs: (),
        finish_reason: finish,
    }
}

/// Gemini's `responseId` as the completion id, or one made from the time when it sent none.
pub(crate) fn response_id(id: Option<&str>, created: u64) -> String {
    match id {
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
