//! OpenAI Chat Completions request → Anthropic Messages request.

use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, message,
    messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stream_flags, to_body, tool_call, tool_call_id, tools_array,
    unknown_role, PartKind, ToolChoice,
};

/// Top-level request fields the encoder maps (or accepts as a no-op value); any other field
/// is refused, naming it. Anthropic-only extensions (`top_k`, `thinking`) are passed through
/// for clients that know their target. The reasons for the refusals are in `docs/providers.md`.
pub const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "response_format",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "thinking",
];

/// An Anthropic request ready to send, with what the stream translator must know about the
/// client's wishes (Anthropic has no `stream_options`, so `include_usage` is kept here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The JSON body for `POST /v1/messages`.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates an OpenAI Chat Completions body into an Anthropic Messages body for
/// `upstream_model`.
///
/// `default_max_tokens` is used when the client sent neither `max_completion_tokens` nor
/// `max_tokens`: Anthropic requires the field, OpenAI does not, so the configured target
/// decides. Fields Anthropic cannot express are refused with the field's path.
pub fn encode_request(
    body: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    let (system, messages) = encode_messages(body.get("messages"))?;
    out.insert(
        "max_tokens".into(),
        json!(max_tokens(body, default_max_tokens)?),
    );
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(stop) = stop_sequences(body.get("stop"))? {
        out.insert("stop_sequences".into(), stop);
    }
    for (field, range) in [("temperature", 1.0), ("top_p", 1.0)] {
        if let Some(v) = present(body, field) {
            let x = v
                .as_f64()
                .ok_or_else(|| TranslateError::invalid(field, "must be a number"))?;
            if !(0.0..=range).contains(&x) {
                return Err(TranslateError::unsupported(
                    field,
                    "Anthropic accepts values from 0 to 1 only",
                ));
            }
            out.insert(field.into(), v.clone());
        }
    }
    for field in ["top_k", "thinking"] {
        if let Some(v) = present(body, field) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(tools) = present(body, "tools") {
        out.insert("tools".into(), encode_tools(tools)?);
    }
    if let Some(choice) = tool_choice(body)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = user_id(body)? {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let (stream, include_usage) = stream_flags(body)?;
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    let body = to_body(&out)?;
    Ok(EncodedRequest {
        body,
        stream,
        include_usage,
    })
}

/// Refuses every field outside [`MAPPED_FIELDS`], and the listed fields whose value asks for
/// something Anthropic cannot do (`n > 1`, `logprobs: true`, a non-zero penalty, JSON mode).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Anthropic's Messages API has no equivalent",
        |key, value| {
            match key {
            "n" if value.as_u64() != Some(1) => Some("Anthropic returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Anthropic does not return log probabilities")
            }
            "presence_penalty" | "frequency_penalty" if value.as_f64() != Some(0.0) => {
                Some("Anthropic has no sampling penalties")
            }
            "response_format" if value.get("type").and_then(Value::as_str) != Some("text") => {
                Some("JSON mode and JSON schemas are not mapped yet; describe the format in the prompt or use a tool")
            }
            _ => None,
        }
        },
    )
}

fn max_tokens(body: &Map<String, Value>, default: u64) -> Result<u64, TranslateError> {
    for field in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(body, field) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| TranslateError::invalid(field, "must be a positive integer"));
        }
    }
    Ok(default)
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items.clone())))
        }
        Some(_) => Err(TranslateError::invalid(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

fn user_id(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut user = present(body, "user").cloned();
    if let Some(meta) = present(body, "metadata") {
        let meta = meta
            .as_object()
            .ok_or_else(|| TranslateError::invalid("metadata", "must be an object"))?;
        for (k, v) in meta {
            if k == "user" || k == "user_id" {
                user = Some(v.clone());
            } else {
                return Err(TranslateError::unsupported(
                    format!("metadata.{k}"),
                    "Anthropic's metadata carries only a user id",
                ));
            }
        }
    }
    match user {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Value::String(s))),
        Some(_) => Err(TranslateError::invalid("user", "must be a string")),
    }
}

fn encode_tools(tools: &Value) -> Result<Value, TranslateError> {
    let tools = tools_array(tools)?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let f = function_tool(tool, &path)?;
        if f.strict == Some(true) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "strict schemas are not mapped yet",
            ));
        }
        let mut t = Map::new();
        t.insert("name".into(), json!(f.name));
        if let Some(d) = f.description {
            t.insert("description".into(), d.clone());
        }
        t.insert("input_schema".into(), f.schema_or_empty());
        if let Some(cc) = tool.get("cache_control") {
            t.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(t));
    }
    Ok(Value::Array(out))
}

fn tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let parallel = match present(body, "parallel_tool_calls") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TranslateError::invalid("parallel_tool_calls", "must be a boolean"))?,
    };
    let mut choice = match present(body, "tool_choice") {
        None if parallel => return Ok(None),
        None => json!({"type": "auto"}),
        Some(v) => match crate::openai_shape::tool_choice(v)? {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => return Ok(Some(json!({"type": "none"}))),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        },
    };
    if !parallel {
        if let Some(obj) = choice.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Ok(Some(choice))
}

/// Splits OpenAI's messages into Anthropic's top-level `system` and its turns.
///
/// System and developer messages are hoisted into `system` wherever they stand (Anthropic has
/// no system turn); consecutive `tool` messages become one user turn of `tool_result` blocks.
fn encode_messages(
    messages: Option<&Value>,
) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    let mut tool_results: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Anthropic's messages have no equivalent",
        )?;
        if role == "user" && !tool_results.is_empty() {
            // A user message right after tool results joins their turn (results first, as
            // Anthropic requires), rather than making two user turns in a row.
            let mut blocks = std::mem::take(&mut tool_results);
            match encode_content(m.get("content"), &path)? {
                Value::String(s) => blocks.push(json!({"type": "text", "text": s})),
                Value::Array(parts) => blocks.extend(parts),
                _ => {}
            }
            turns.push(json!({"role": "user", "content": blocks}));
            continue;
        }
        if role != "tool" && !tool_results.is_empty() {
            turns.push(json!({"role": "user", "content": std::mem::take(&mut tool_results)}));
        }
        match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content"), &path)?);
            }
            "user" => turns.push(json!({
                "role": "user",
                "content": encode_content(m.get("content"), &path)?,
            })),
            "assistant" => turns.push(encode_assistant(m, &path)?),
            "tool" => tool_results.push(encode_tool_result(m, &path)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !tool_results.is_empty() {
        turns.push(json!({"role": "user", "content": tool_results}));
    }
    let system = match system.as_slice() {
        [] => None,
        [only] if only.get("cache_control").is_none() => only.get("text").cloned(),
        _ => Some(Value::Array(system)),
    };
    Ok((system, turns))
}

/// Content that may only be text (system, developer, tool results) as text blocks.
fn text_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, encode_part),
        _ => Err(not_text_content(path)),
    }
}

/// User content: a string stays a string, parts become blocks.
fn encode_content(content: Option<&Value>, path: &str) -> Result<Value, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => map_parts(parts, path, encode_part).map(Value::Array),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// One content part → one block; `cache_control` is carried over as it is.
fn encode_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let mut block = match part_kind(part, path)? {
        PartKind::Text => json!({"type": "text", "text": part_text(part, path)?}),
        PartKind::ImageUrl => encode_image(part, path)?,
    };
    if let (Some(cc), Some(obj)) = (part.get("cache_control"), block.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    Ok(block)
}

/// `image_url` → an `image` block: a `data:` URL becomes a base64 source, an http(s) URL a
/// url source. OpenAI's `detail` has no equivalent and is refused unless `auto`.
fn encode_image(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Anthropic has no image detail setting")?;
    if url.starts_with("data:") {
        let (media_type, data) = base64_data_url(url).ok_or_else(|| {
            TranslateError::invalid(format!("{path}.image_url.url"), "a data URL must be base64")
        })?;
        return Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }));
    }
    if is_web_url(url) {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid(
        format!("{path}.image_url.url"),
        "must be a data: or http(s) URL",
    ))
}

/// An assistant turn: its text (if any) then one `tool_use` block per tool call, with the
/// arguments string parsed back into the JSON object Anthropic expects.
fn encode_assistant(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let calls = m.get("tool_calls").and_then(Value::as_array);
    let content = m.get("content").filter(|c| !c.is_null());
    let Some(calls) = calls.filter(|c| !c.is_empty()) else {
        return Ok(json!({"role": "assistant", "content": encode_content(content, path)?}));
    };
    let mut blocks = match content {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(c) => text_blocks(Some(c), path)?,
    };
    for (k, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let input = call.input(&call_path)?;
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(json!({"role": "assistant", "content": blocks}))
}

fn encode_tool_result(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let id = tool_call_id(m, path)?;
    let content = match m.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        other => Value::Array(text_blocks(other, path)?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(body: Value) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_request(&map, "claude", 100)?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn tool_choice_none_and_parallel_off_without_a_choice() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let v =
            encode(json!({"messages": msgs, "tool_choice": "none", "parallel_tool_calls": false}))
                .unwrap();
        assert_eq!(v["tool_choice"], json!({"type": "none"}));
        let v = encode(json!({"messages": msgs, "parallel_tool_calls": false})).unwrap();
        assert_eq!(
            v["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let err = encode(json!({"messages": msgs, "tool_choice": "sometimes"})).unwrap_err();
        assert_eq!(err.field(), "tool_choice");
    }

    #[test]
    fn nulls_are_absent_and_no_op_values_are_accepted() {
        let v = encode(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "seed": null, "n": 1, "logprobs": false, "frequency_penalty": 0.0,
            "max_tokens": null, "stop": null,
        }))
        .unwrap();
        assert_eq!(v["max_tokens"], 100);
        assert!(v.get("stop_sequences").is_none());
    }

    #[test]
    fn malformed_values_are_invalid_not_unsupported() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (body, field) in [
            (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs, "stop": 5}), "stop"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
            (
                json!({"messages": msgs, "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
        ] {
            match encode(body) {
                Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
