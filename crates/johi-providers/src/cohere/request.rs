//! OpenAI Chat Completions request → Cohere v2 chat request.

use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    function_tool, image_url, is_web_url, map_parts, map_text_parts, message, messages_array,
    not_text_content, part_kind, part_text, present, refuse_unknown_fields, stream_flags, to_body,
    tool_call, tool_call_id, tools_array, unknown_role, PartKind,
};

/// Top-level request fields the encoder maps (or accepts as a no-op value); any other field
/// is refused, naming it. The reasons for the refusals are in `docs/providers.md`.
pub const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "logprobs",
];

/// A Cohere chat request ready to send, with what the stream translator must know about the
/// client's wishes (Cohere has no `stream_options`, so `include_usage` is kept here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The JSON body for `POST /v2/chat`.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates an OpenAI Chat Completions body into a Cohere v2 chat body for
/// `upstream_model`. Fields Cohere cannot express are refused with the field's path.
pub fn encode_request(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), encode_messages(body.get("messages"))?);
    if let Some(n) = max_tokens(body)? {
        out.insert("max_tokens".into(), json!(n));
    }
    if let Some(stop) = stop_sequences(present(body, "stop"))? {
        out.insert("stop_sequences".into(), stop);
    }
    for field in [
        "temperature",
        "frequency_penalty",
        "presence_penalty",
        "seed",
    ] {
        if let Some(v) = present(body, field) {
            if !v.is_number() {
                return Err(TranslateError::invalid(field, "must be a number"));
            }
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(v) = present(body, "top_p") {
        let p = v
            .as_f64()
            .ok_or_else(|| TranslateError::invalid("top_p", "must be a number"))?;
        if !(0.01..=0.99).contains(&p) {
            return Err(TranslateError::unsupported(
                "top_p",
                "Cohere's `p` accepts values from 0.01 to 0.99 only",
            ));
        }
        out.insert("p".into(), v.clone());
    }
    if let Some(format) = response_format(present(body, "response_format"))? {
        out.insert("response_format".into(), format);
    }
    if let Some(tools) = present(body, "tools") {
        let (tools, strict) = encode_tools(tools)?;
        out.insert("tools".into(), tools);
        if strict {
            out.insert("strict_tools".into(), Value::Bool(true));
        }
    }
    if let Some(choice) = tool_choice(body)? {
        out.insert("tool_choice".into(), choice);
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
/// something Cohere's chat cannot do (`n > 1`, `logprobs: true`).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Cohere's v2 chat API has no equivalent",
        |key, value| match key {
            "n" if value.as_u64() != Some(1) => Some("Cohere returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Cohere's log probabilities are per token id and are not translated")
            }
            _ => None,
        },
    )
}

fn max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
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

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    match stop {
        None => Ok(None),
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

/// `text` is Cohere's default; `json_object` is the same; a `json_schema` becomes a
/// `json_object` constrained by the schema (Cohere's way of writing it).
fn response_format(format: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    TranslateError::invalid("response_format.json_schema.schema", "missing")
                })?;
            Ok(Some(json!({"type": "json_object", "json_schema": schema})))
        }
        Some(other) => Err(TranslateError::unsupported(
            "response_format.type",
            format!("`{other}` has no Cohere equivalent"),
        )),
        None => Err(TranslateError::invalid("response_format.type", "missing")),
    }
}

/// OpenAI's function tools have Cohere's shape already; `strict` becomes the request-wide
/// `strict_tools`, so it must be the same on every tool.
fn encode_tools(tools: &Value) -> Result<(Value, bool), TranslateError> {
    let tools = tools_array(tools)?;
    let mut out = Vec::with_capacity(tools.len());
    let mut strict: Option<bool> = None;
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let f = function_tool(tool, &path)?;
        let this_strict = f.strict.unwrap_or(false);
        if strict.is_some_and(|s| s != this_strict) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "Cohere's strict_tools applies to every tool: set strict on all or none",
            ));
        }
        strict = Some(this_strict);
        let mut function = Map::new();
        function.insert("name".into(), json!(f.name));
        if let Some(d) = f.description {
            function.insert("description".into(), d.clone());
        }
        if let Some(p) = f.parameters {
            function.insert("parameters".into(), p.clone());
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok((Value::Array(out), strict.unwrap_or(false)))
}

/// `auto` is Cohere's default; `none` and `required` are `NONE` and `REQUIRED`. Naming one
/// function, or turning parallel calls off, cannot be expressed.
fn tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    if let Some(v) = present(body, "parallel_tool_calls") {
        match v.as_bool() {
            Some(true) => {}
            Some(false) => {
                return Err(TranslateError::unsupported(
                    "parallel_tool_calls",
                    "Cohere cannot turn parallel tool calls off",
                ))
            }
            None => {
                return Err(TranslateError::invalid(
                    "parallel_tool_calls",
                    "must be a boolean",
                ))
            }
        }
    }
    match present(body, "tool_choice") {
        None => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(None),
            "none" => Ok(Some(json!("NONE"))),
            "required" => Ok(Some(json!("REQUIRED"))),
            _ => Err(TranslateError::invalid(
                "tool_choice",
                "must be auto, none, required or a function",
            )),
        },
        Some(_) => Err(TranslateError::unsupported(
            "tool_choice",
            "Cohere cannot be made to call one named function (only REQUIRED or NONE)",
        )),
    }
}

/// OpenAI's messages as Cohere's: the same roles (developer is system), in place.
fn encode_messages(messages: Option<&Value>) -> Result<Value, TranslateError> {
    let messages = messages_array(messages)?;
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls", "reasoning_content", "refusal"],
            "Cohere's messages have no equivalent",
        )?;
        let encoded = match role {
            "system" | "developer" => json!({
                "role": "system",
                "content": text_content(m.get("content"), &path)?,
            }),
            "user" => json!({"role": "user", "content": user_content(m.get("content"), &path)?}),
            "assistant" => encode_assistant(m, &path)?,
            "tool" => {
                let id = tool_call_id(m, &path)?;
                json!({
                    "role": "tool",
                    "tool_call_id": id,
                    "content": text_content(m.get("content"), &path)?,
                })
            }
            _ => return Err(unknown_role(&path, role)),
        };
        out.push(encoded);
    }
    Ok(Value::Array(out))
}

/// Content that may only be text: a string stays a string, text parts become text parts.
fn text_content(content: Option<&Value>, path: &str) -> Result<Value, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => map_text_parts(parts, path, text_part).map(Value::Array),
        _ => Err(not_text_content(path)),
    }
}

fn text_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    Ok(json!({"type": "text", "text": part_text(part, path)?}))
}

/// User content: text and `image_url` parts, which Cohere writes as OpenAI does.
fn user_content(content: Option<&Value>, path: &str) -> Result<Value, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return text_content(content, path);
    };
    map_parts(parts, path, |p, part_path| match part_kind(p, part_path)? {
        PartKind::Text => text_part(p, part_path),
        PartKind::ImageUrl => image_part(p, part_path),
    })
    .map(Value::Array)
}

fn image_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let image = part.get("image_url");
    let url = image_url(part, path)?;
    if !(url.starts_with("data:") || is_web_url(url)) {
        return Err(TranslateError::invalid(
            format!("{path}.image_url.url"),
            "must be a data: or http(s) URL",
        ));
    }
    let mut out = Map::new();
    out.insert("url".into(), json!(url));
    match image.and_then(|i| i.get("detail")).filter(|d| !d.is_null()) {
        None => {}
        Some(Value::String(d)) if matches!(d.as_str(), "auto" | "low" | "high") => {
            out.insert("detail".into(), json!(d));
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.image_url.detail"),
                "must be auto, low or high",
            ))
        }
    }
    Ok(json!({"type": "image_url", "image_url": out}))
}

/// An assistant turn. Its `reasoning_content` is Cohere's `tool_plan` beside tool calls (the
/// plan Cohere wrote before calling them, so a tool loop round-trips), or a `thinking` part
/// before the text otherwise (a reasoning model's thoughts).
fn encode_assistant(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("role".into(), json!("assistant"));
    let calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let reasoning = match m.get("reasoning_content").filter(|r| !r.is_null()) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.reasoning_content"),
                "must be a string",
            ))
        }
    };
    let content = match m.get("content").filter(|c| !c.is_null()) {
        None => None,
        Some(Value::String(s)) if s.is_empty() && calls.is_some() => None,
        Some(c) => Some(text_content(Some(c), path)?),
    };
    match (calls, reasoning) {
        (Some(_), Some(plan)) => {
            out.insert("tool_plan".into(), json!(plan));
            if let Some(c) = content {
                out.insert("content".into(), c);
            }
        }
        (None, Some(thought)) => {
            let mut parts = vec![json!({"type": "thinking", "thinking": thought})];
            match content {
                Some(Value::String(s)) => parts.push(json!({"type": "text", "text": s})),
                Some(Value::Array(more)) => parts.extend(more),
                _ => {}
            }
            out.insert("content".into(), Value::Array(parts));
        }
        (_, None) => {
            if let Some(c) = content {
                out.insert("content".into(), c);
            }
        }
    }
    if let Some(calls) = calls {
        out.insert("tool_calls".into(), encode_tool_calls(calls, path)?);
    }
    Ok(Value::Object(out))
}

/// OpenAI's tool calls have Cohere's shape; the arguments string is checked to be JSON.
fn encode_tool_calls(calls: &[Value], path: &str) -> Result<Value, TranslateError> {
    let mut out = Vec::with_capacity(calls.len());
    for (k, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let (id, name) = (call.id, call.name);
        let args = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(args) {
            return Err(TranslateError::invalid(
                format!("{call_path}.function.arguments"),
                e.to_string(),
            ));
        }
        out.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": args},
        }));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(body: Value) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_request(&map, "command-a")?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn nulls_are_absent_and_no_op_values_are_accepted() {
        let v = encode(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "user": null, "n": 1, "logprobs": false, "tool_choice": "auto",
            "parallel_tool_calls": true, "max_tokens": null, "stop": null,
            "response_format": {"type": "text"},
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"model": "command-a", "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn malformed_values_are_invalid_not_unsupported() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (body, field) in [
            (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs, "stop": 5}), "stop"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
            (json!({"messages": msgs, "seed": "s"}), "seed"),
            (json!({"messages": msgs, "top_p": "x"}), "top_p"),
            (
                json!({"messages": msgs, "tool_choice": "maybe"}),
                "tool_choice",
            ),
            (
                json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
                "response_format.json_schema.schema",
            ),
        ] {
            match encode(body) {
                Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn top_p_bounds_are_cohere_s() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for ok in [0.01, 0.5, 0.99] {
            assert_eq!(
                encode(json!({"messages": msgs, "top_p": ok})).unwrap()["p"],
                ok
            );
        }
        for bad in [0.0, 0.001, 1.0] {
            let err = encode(json!({"messages": msgs, "top_p": bad})).unwrap_err();
            assert!(matches!(err, TranslateError::Unsupported { .. }), "{bad}");
            assert_eq!(err.field(), "top_p");
        }
    }
}
