//! The OpenAI Chat Completions shapes shared by the adapters that translate to and from
//! another protocol (Anthropic, Bedrock, Cohere, Gemini), so each writes only its own wire.
//!
//! Reading the request: the checks and error messages every adapter makes the same way
//! (unknown fields, `stream`, tools, `tool_choice`, messages, tool calls and their JSON
//! arguments, content parts, `image_url` and data URLs). Writing the answer: the
//! `chat.completion` and chunk JSON, tool calls, usage, error bodies and SSE events. Each
//! adapter keeps its own tables (mapped fields, refusal reasons, finish and error kinds).

use std::borrow::Cow;

use johi_core::Usage;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::codec::Decoded;
use crate::TranslateError;

/// A field's value unless absent or `null` (OpenAI SDKs send `null` for "not set").
pub(crate) fn present<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    body.get(field).filter(|v| !v.is_null())
}

/// Refuses every non-null field outside `mapped` (with `no_equivalent` as the reason), and
/// every mapped field for which `refusal` gives a reason (a value the protocol cannot do).
/// Adapters refuse rather than drop, so a client never gets an answer to another question.
pub(crate) fn refuse_unknown_fields(
    body: &Map<String, Value>,
    mapped: &[&str],
    no_equivalent: &str,
    refusal: impl Fn(&str, &Value) -> Option<&'static str>,
) -> Result<(), TranslateError> {
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        if !mapped.contains(&key.as_str()) {
            return Err(TranslateError::unsupported(key.as_str(), no_equivalent));
        }
        if let Some(reason) = refusal(key, value) {
            return Err(TranslateError::unsupported(key.as_str(), reason));
        }
    }
    Ok(())
}

/// The output cap: `max_completion_tokens` (OpenAI's current name) or else `max_tokens`, a
/// positive integer; `None` when the client set neither.
pub(crate) fn max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    for field in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(body, field) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| TranslateError::invalid(field, "must be a positive integer"));
        }
    }
    Ok(None)
}

/// `stream` (a boolean, default false) and `stream_options.include_usage` (only when
/// streaming): whether to stream, and whether the client asked for the usage chunk.
pub(crate) fn stream_flags(body: &Map<String, Value>) -> Result<(bool, bool), TranslateError> {
    let stream = match present(body, "stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TranslateError::invalid("stream", "must be a boolean"))?,
    };
    let include_usage = stream
        && body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    Ok((stream, include_usage))
}

/// `stop` as the stop-sequence list every translated protocol takes: OpenAI's single string
/// becomes a one-element list, a list of strings is passed as it is (borrowed).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum StopSequences<'a> {
    One([&'a str; 1]),
    Many(&'a [Value]),
}

/// Reads `stop` (absent or `null`: none).
pub(crate) fn stop_sequences(
    stop: Option<&Value>,
) -> Result<Option<StopSequences<'_>>, TranslateError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(StopSequences::One([s]))),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(StopSequences::Many(items)))
        }
        Some(_) => Err(TranslateError::invalid(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

/// `messages` as an array, or the error naming it.
pub(crate) fn messages_array(messages: Option<&Value>) -> Result<&Vec<Value>, TranslateError> {
    messages
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "must be an array"))
}

/// Reads `messages[i]` (`path`): an object with a `role`. Non-null keys other than `role`,
/// `content`, an assistant's `assistant_keys` and a tool message's `tool_call_id` are refused
/// with `no_equivalent` as the reason. Returns the message and its role.
pub(crate) fn message<'a>(
    m: &'a Value,
    path: &str,
    assistant_keys: &[&str],
    no_equivalent: &str,
) -> Result<(&'a Map<String, Value>, &'a str), TranslateError> {
    let m = m
        .as_object()
        .ok_or_else(|| TranslateError::invalid(path, "must be an object"))?;
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.role"), "missing"))?;
    for (key, value) in m {
        let known = matches!(key.as_str(), "role" | "content")
            || (role == "assistant" && assistant_keys.contains(&key.as_str()))
            || (role == "tool" && key == "tool_call_id");
        if !known && !value.is_null() {
            return Err(TranslateError::unsupported(
                format!("{path}.{key}"),
                no_equivalent,
            ));
        }
    }
    Ok((m, role))
}

/// The refusal of a message role the adapter does not translate.
pub(crate) fn unknown_role(path: &str, role: &str) -> TranslateError {
    TranslateError::unsupported(
        format!("{path}.role"),
        format!("the role `{role}` cannot be translated"),
    )
}

/// `tools` as an array, or the error naming it.
pub(crate) fn tools_array(tools: &Value) -> Result<&Vec<Value>, TranslateError> {
    tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))
}

/// One OpenAI function tool as read from `tools[i]`; each adapter writes its own shape.
pub(crate) struct FunctionTool<'a> {
    /// `function.name`.
    pub(crate) name: &'a str,
    /// `function.description`, unless absent or null.
    pub(crate) description: Option<&'a Value>,
    /// `function.parameters` (a JSON schema), unless absent or null.
    pub(crate) parameters: Option<&'a Value>,
    /// `function.strict`, when it is a boolean.
    pub(crate) strict: Option<bool>,
}

impl<'a> FunctionTool<'a> {
    /// The parameter schema (borrowed), or an empty object schema for protocols that
    /// require one.
    pub(crate) fn schema_or_empty(&self) -> Cow<'a, Value> {
        self.parameters.map_or_else(
            || Cow::Owned(json!({"type": "object", "properties": {}})),
            Cow::Borrowed,
        )
    }
}

/// Reads `tools[i]` (`path`): only `function` tools, which must name their function.
pub(crate) fn function_tool<'a>(
    tool: &'a Value,
    path: &str,
) -> Result<FunctionTool<'a>, TranslateError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(TranslateError::unsupported(
            format!("{path}.type"),
            "only function tools can be translated",
        ));
    }
    let f = tool
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.function"), "missing"))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.function.name"), "missing"))?;
    Ok(FunctionTool {
        name,
        description: f.get("description").filter(|d| !d.is_null()),
        parameters: f.get("parameters").filter(|p| !p.is_null()),
        strict: f.get("strict").and_then(Value::as_bool),
    })
}

/// OpenAI's `tool_choice`, read; each adapter says what its protocol makes of it.
pub(crate) enum ToolChoice<'a> {
    /// `"auto"`.
    Auto,
    /// `"none"`.
    None,
    /// `"required"`.
    Required,
    /// `{"type": "function", "function": {"name"}}`.
    Function(&'a str),
}

/// Reads a present `tool_choice`: `auto`, `none`, `required` or a named function tool.
pub(crate) fn tool_choice(choice: &Value) -> Result<ToolChoice<'_>, TranslateError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(TranslateError::invalid(
                "tool_choice",
                "must be auto, none, required or a function",
            )),
        },
        v => v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
            .map(ToolChoice::Function)
            .ok_or_else(|| TranslateError::invalid("tool_choice", "must name a function tool")),
    }
}

/// One tool call of an assistant message, as read from `tool_calls[k]`.
pub(crate) struct ToolCall<'a> {
    /// The call's `id`, which the tool result answers.
    pub(crate) id: &'a str,
    /// `function.name`.
    pub(crate) name: &'a str,
    /// `function.arguments`, the JSON text as sent (empty when absent).
    pub(crate) arguments: &'a str,
}

/// Reads `call` (at `call_path`): its id and function name are required.
pub(crate) fn tool_call<'a>(
    call: &'a Value,
    call_path: &str,
) -> Result<ToolCall<'a>, TranslateError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{call_path}.id"), "missing"))?;
    let f = call.get("function");
    let name = f
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{call_path}.function.name"), "missing"))?;
    let arguments = f
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

impl ToolCall<'_> {
    /// The arguments parsed back into JSON (an empty object when blank), for protocols that
    /// take the object rather than the text.
    pub(crate) fn input(&self, call_path: &str) -> Result<Value, TranslateError> {
        if self.arguments.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(self.arguments).map_err(|e| {
            TranslateError::invalid(format!("{call_path}.function.arguments"), e.to_string())
        })
    }
}

/// A tool message's `tool_call_id`, which every protocol needs to pair result and call.
pub(crate) fn tool_call_id<'a>(
    m: &'a Map<String, Value>,
    path: &str,
) -> Result<&'a str, TranslateError> {
    m.get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.tool_call_id"), "missing"))
}

/// The kinds of content part the adapters translate.
pub(crate) enum PartKind {
    /// `{"type": "text", "text"}`.
    Text,
    /// `{"type": "image_url", "image_url"}`.
    ImageUrl,
}

/// A content part's kind; any other type is refused, a missing one is invalid.
pub(crate) fn part_kind(part: &Value, path: &str) -> Result<PartKind, TranslateError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => Ok(PartKind::Text),
        Some("image_url") => Ok(PartKind::ImageUrl),
        Some(other) => Err(TranslateError::unsupported(
            format!("{path}.type"),
            format!("`{other}` parts cannot be translated"),
        )),
        None => Err(TranslateError::invalid(format!("{path}.type"), "missing")),
    }
}

/// A text part's `text`.
pub(crate) fn part_text<'a>(part: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    part.get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.text"), "missing"))
}

/// Maps each part of a message's content array with its path (`<path>.content[j]`).
pub(crate) fn map_parts<'a, T>(
    parts: &'a [Value],
    path: &str,
    mut f: impl FnMut(&'a Value, &str) -> Result<T, TranslateError>,
) -> Result<Vec<T>, TranslateError> {
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| f(p, &format!("{path}.content[{j}]")))
        .collect()
}

/// Maps the parts of content where only text parts are allowed (system, assistant and tool
/// messages); `text_part` translates one text part.
pub(crate) fn map_text_parts<'a, T>(
    parts: &'a [Value],
    path: &str,
    text_part: impl Fn(&'a Value, &str) -> Result<T, TranslateError>,
) -> Result<Vec<T>, TranslateError> {
    map_parts(parts, path, |p, part_path| {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => text_part(p, part_path),
            _ => Err(TranslateError::unsupported(
                format!("{part_path}.type"),
                "only text parts are allowed here",
            )),
        }
    })
}

/// The error for text-only content that is neither a string nor an array of parts.
pub(crate) fn not_text_content(path: &str) -> TranslateError {
    TranslateError::invalid(
        format!("{path}.content"),
        "must be a string or an array of text parts",
    )
}

/// An `image_url` part's URL (`image_url.url`, or `image_url` itself as a string).
pub(crate) fn image_url<'a>(part: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    part.get("image_url")
        .and_then(|i| i.get("url").or(Some(i)))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.image_url.url"), "missing"))
}

/// Refuses an `image_url.detail` other than `auto`, for protocols with no such setting.
pub(crate) fn refuse_image_detail(
    part: &Value,
    path: &str,
    reason: &str,
) -> Result<(), TranslateError> {
    let detail = part
        .get("image_url")
        .and_then(|i| i.get("detail"))
        .and_then(Value::as_str);
    match detail {
        Some(detail) if detail != "auto" => Err(TranslateError::unsupported(
            format!("{path}.image_url.detail"),
            reason,
        )),
        _ => Ok(()),
    }
}

/// A base64 `data:` URL's media type and data.
pub(crate) fn base64_data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
}

/// Whether `url` is an http(s) URL.
pub(crate) fn is_web_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// A translated `chat.completion`, written straight to bytes from the adapter's typed read
/// of the upstream answer: no `Value` tree between the two (see [`crate::wire`]). Field
/// order is OpenAI's.
#[derive(Debug, Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageOut>,
}

impl<'a> ChatCompletion<'a> {
    /// A `chat.completion` (its `object`), `usage` filled from what the provider reported.
    pub(crate) fn new(
        id: &'a str,
        created: u64,
        model: &'a str,
        choices: Vec<Choice<'a>>,
        usage: Option<UsageOut>,
    ) -> Self {
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices,
            usage,
        }
    }

    /// The answer's bytes and the usage Johi meters: the same numbers the client is shown.
    pub(crate) fn write(&self, usage: Option<Usage>) -> Result<Decoded, TranslateError> {
        let body = serde_json::to_vec(self)
            .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
        Ok(Decoded { body, usage })
    }
}

/// One `choices[]` entry of a translated `chat.completion`.
#[derive(Debug, Serialize)]
pub(crate) struct Choice<'a> {
    pub index: u64,
    pub message: AssistantMessage<'a>,
    /// Always `null`: no translated protocol returns OpenAI's log probabilities.
    pub logprobs: (),
    pub finish_reason: Option<&'static str>,
}

/// The assistant `message` of a translated answer: text, reasoning (`reasoning_content`, the
/// field DeepSeek and vLLM use) and tool calls, in the order OpenAI clients see them.
#[derive(Debug, Serialize)]
pub(crate) struct AssistantMessage<'a> {
    pub role: &'static str,
    pub content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut<'a>>,
    /// Always `null` (OpenAI's field for a refusal message; a refusal here finishes as
    /// `content_filter`).
    pub refusal: (),
}

impl<'a> AssistantMessage<'a> {
    /// An assistant message of `content`, `reasoning` and `tool_calls`.
    pub(crate) fn new(
        content: Option<Cow<'a, str>>,
        reasoning_content: Option<Cow<'a, str>>,
        tool_calls: Vec<ToolCallOut<'a>>,
    ) -> Self {
        AssistantMessage {
            role: "assistant",
            content,
            reasoning_content,
            tool_calls,
            refusal: (),
        }
    }
}

/// An OpenAI tool call of a translated answer (`arguments` is the JSON text).
#[derive(Debug, Serialize)]
pub(crate) struct ToolCallOut<'a> {
    pub id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut<'a>,
}

/// The `function` of a [`ToolCallOut`].
#[derive(Debug, Serialize)]
pub(crate) struct FunctionCallOut<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

impl<'a> ToolCallOut<'a> {
    /// A `function` tool call.
    pub(crate) fn function(id: Cow<'a, str>, name: Cow<'a, str>, arguments: Cow<'a, str>) -> Self {
        ToolCallOut {
            id,
            kind: "function",
            function: FunctionCallOut { name, arguments },
        }
    }
}

/// OpenAI's `usage` object, typed; `completion_tokens_details` only for protocols that
/// report reasoning tokens apart.
#[derive(Debug, Serialize)]
pub(crate) struct UsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: CachedTokens,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<ReasoningTokens>,
}

/// `prompt_tokens_details` of [`UsageOut`].
#[derive(Debug, Serialize)]
pub(crate) struct CachedTokens {
    pub cached_tokens: u64,
}

/// `completion_tokens_details` of [`UsageOut`].
#[derive(Debug, Serialize)]
pub(crate) struct ReasoningTokens {
    pub reasoning_tokens: u64,
}

impl UsageOut {
    /// The usage object for `u`; `with_reasoning` adds `completion_tokens_details`.
    pub(crate) fn new(u: &Usage, with_reasoning: bool) -> Self {
        UsageOut {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens.saturating_add(u.output_tokens),
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_tokens,
            },
            completion_tokens_details: with_reasoning.then_some(ReasoningTokens {
                reasoning_tokens: u.reasoning_tokens,
            }),
        }
    }
}

/// A translated embeddings list (`object: list`), written straight to bytes like
/// [`ChatCompletion`]; `V` is how the adapter holds a vector.
#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingList<'a, V> {
    pub object: &'static str,
    pub data: Vec<EmbeddingOut<V>>,
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
}

/// One `data[]` entry of an [`EmbeddingList`].
#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingOut<V> {
    pub object: &'static str,
    pub index: usize,
    pub embedding: V,
}

impl<V> EmbeddingOut<V> {
    /// The `index`th embedding.
    pub(crate) fn new(index: usize, embedding: V) -> Self {
        EmbeddingOut {
            object: "embedding",
            index,
            embedding,
        }
    }
}

/// An embeddings `usage`: prompt tokens only (an embedding generates none).
#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

impl<'a, V: Serialize> EmbeddingList<'a, V> {
    /// The list of `data` for `model`, with `usage` (its input tokens) when the provider
    /// reported one; Johi meters the same input tokens and nothing else.
    pub(crate) fn new(data: Vec<EmbeddingOut<V>>, model: &'a str, usage: Option<Usage>) -> Self {
        EmbeddingList {
            object: "list",
            data,
            model,
            usage: usage.map(|u| EmbeddingUsage {
                prompt_tokens: u.input_tokens,
                total_tokens: u.input_tokens,
            }),
        }
    }

    /// The list's bytes and no metered usage, for providers whose answer carries no token
    /// count (the body shows zero): Johi counts the input itself (see the `meter` and `limit`
    /// processors) rather than meter a served request as free.
    pub(crate) fn write_unmetered(&self) -> Result<Decoded, TranslateError> {
        let mut decoded = self.write()?;
        decoded.usage = None;
        Ok(decoded)
    }

    /// The list's bytes and the usage Johi meters (its input tokens: what the client is
    /// shown).
    pub(crate) fn write(&self) -> Result<Decoded, TranslateError> {
        let body = serde_json::to_vec(self)
            .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
        let usage = self.usage.as_ref().map(|u| Usage {
            input_tokens: u.prompt_tokens,
            ..Usage::default()
        });
        Ok(Decoded { body, usage })
    }
}

/// An OpenAI tool call (`arguments` is the JSON text).
pub(crate) fn openai_tool_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    })
}

/// OpenAI's `usage` object for a [`Usage`], for protocols that do not report reasoning
/// tokens apart.
pub(crate) fn openai_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// OpenAI's `usage` object for a [`Usage`], with `completion_tokens_details` for protocols
/// that report reasoning tokens.
pub(crate) fn openai_usage_with_reasoning(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// A `chat.completion.chunk` with one choice; `usage: null` on every chunk when the client
/// asked for the final usage chunk (as OpenAI sends it).
pub(crate) fn chunk(
    id: &str,
    created: u64,
    model: &str,
    include_usage: bool,
    index: u64,
    delta: Value,
    finish: Value,
) -> Value {
    let mut chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if include_usage {
        if let Some(obj) = chunk.as_object_mut() {
            obj.insert("usage".into(), Value::Null);
        }
    }
    chunk
}

/// OpenAI's error body, `{"error": {message, type, param, code}}`.
pub(crate) fn openai_error(message: &str, typ: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": typ, "param": null, "code": code}})
}

/// The message of an error body the upstream did not explain: its first 500 characters, or
/// "the <upstream> upstream answered <status>" when it is empty.
pub(crate) fn body_text_or_status(body: &[u8], upstream: &str, status: u16) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(500).collect();
    if text.trim().is_empty() {
        format!("the {upstream} upstream answered {status}")
    } else {
        text
    }
}

/// Writes one OpenAI SSE event.
pub(crate) fn write_event(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing a `Value` into a Vec cannot fail (no I/O, keys are strings).
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Writes the error event that ends a stream the upstream broke (unreadable, cut short).
pub(crate) fn write_protocol_error(out: &mut Vec<u8>, message: &str) {
    write_event(
        out,
        &json!({"error": {
            "message": message, "type": "upstream_error", "param": null,
            "code": "upstream_protocol_error",
        }}),
    );
}
