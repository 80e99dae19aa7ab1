//! Inbound Anthropic Messages request → OpenAI Chat Completions request.

use serde_json::{json, Map, Value};

use crate::openai_shape::present;
use crate::TranslateError;

/// Top-level Messages fields the decoder maps; any other field is refused, naming it.
pub const INBOUND_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
];

/// A Messages request read into the OpenAI chat body the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The chat-completions body (`top_k`, `thinking` and `cache_control` ride along as
    /// extra fields; see the module docs).
    pub body: Map<String, Value>,
    /// The model the client asked for, which every answer carries back.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
}

/// Reads a Messages body into an OpenAI chat body.
///
/// Fields with no OpenAI equivalent that the Anthropic adapter understands (`top_k`,
/// `thinking`, `cache_control` on content, system and tool blocks) are passed through as
/// extra fields, so that an Anthropic-protocol target receives them and another target's
/// adapter (or upstream) refuses them by name: never dropped. A stream always asks for
/// usage (`stream_options.include_usage`), because Anthropic's stream reports it.
pub fn decode_request(body: &[u8]) -> Result<DecodedRequest, TranslateError> {
    decode(body, true)
}

/// Reads a `count_tokens` body (a Messages body without `max_tokens`) into the chat body
/// whose prompt Johi counts; `max_tokens` is not required, and ignored if present.
pub fn decode_count_tokens(body: &[u8]) -> Result<DecodedRequest, TranslateError> {
    decode(body, false)
}

fn decode(body: &[u8], generating: bool) -> Result<DecodedRequest, TranslateError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| TranslateError::invalid("body", e.to_string()))?;
    let Value::Object(req) = value else {
        return Err(TranslateError::invalid("body", "must be a JSON object"));
    };
    for (key, value) in &req {
        if !INBOUND_FIELDS.contains(&key.as_str()) && !value.is_null() {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "the OpenAI chat shape Johi routes through has no equivalent",
            ));
        }
    }
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(TranslateError::invalid("model", "a model name is required")),
    };
    let max_tokens = present(&req, "max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0);
    if generating && max_tokens.is_none() {
        return Err(TranslateError::invalid(
            "max_tokens",
            "a positive integer is required",
        ));
    }
    let stream = match present(&req, "stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TranslateError::invalid("stream", "must be a boolean"))?,
    };

    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.clone()));
    let mut messages = Vec::new();
    if let Some(system) = present(&req, "system") {
        messages.push(decode_system(system)?);
    }
    decode_messages(req.get("messages"), &mut messages)?;
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max_tokens) = max_tokens.filter(|_| generating) {
        out.insert("max_tokens".into(), json!(max_tokens));
    }
    decode_sampling(&req, &mut out)?;
    if let Some(thinking) = present(&req, "thinking") {
        out.insert("thinking".into(), thinking.clone());
    }
    if let Some(tools) = present(&req, "tools") {
        out.insert("tools".into(), decode_tools(tools)?);
    }
    if let Some(choice) = present(&req, "tool_choice") {
        decode_tool_choice(choice, &mut out)?;
    }
    if let Some(meta) = present(&req, "metadata") {
        decode_metadata(meta, &mut out)?;
    }
    if stream && generating {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(DecodedRequest {
        body: out,
        model,
        stream,
    })
}

/// `temperature`, `top_p`, `top_k` (passed on as an extra field) and `stop_sequences`.
fn decode_sampling(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    for field in ["temperature", "top_p", "top_k"] {
        if let Some(v) = present(req, field) {
            if !v.is_number() {
                return Err(TranslateError::invalid(field, "must be a number"));
            }
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(stops) = present(req, "stop_sequences") {
        match stops {
            Value::Array(items) if items.iter().all(Value::is_string) => {
                if !items.is_empty() {
                    out.insert("stop".into(), stops.clone());
                }
            }
            _ => {
                return Err(TranslateError::invalid(
                    "stop_sequences",
                    "must be an array of strings",
                ))
            }
        }
    }
    Ok(())
}

/// `system` (a string, or text blocks that may carry `cache_control`) → one system message.
fn decode_system(system: &Value) -> Result<Value, TranslateError> {
    match system {
        Value::String(s) => Ok(json!({"role": "system", "content": s})),
        Value::Array(blocks) => {
            let parts = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| match block_type(b) {
                    Some("text") => text_part(b, &format!("system[{i}]")),
                    _ => Err(TranslateError::unsupported(
                        format!("system[{i}].type"),
                        "only text blocks are allowed in system",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({"role": "system", "content": parts}))
        }
        _ => Err(TranslateError::invalid(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// Carries a block's `cache_control` over to the part made from it.
fn with_cache_control(block: &Value, mut part: Value) -> Value {
    if let (Some(cc), Some(obj)) = (
        block.get("cache_control").filter(|c| !c.is_null()),
        part.as_object_mut(),
    ) {
        obj.insert("cache_control".into(), cc.clone());
    }
    part
}

/// Refuses `cache_control` on a block whose OpenAI form has nowhere to carry it.
fn no_cache_control(block: &Value, path: &str) -> Result<(), TranslateError> {
    if block.get("cache_control").is_some_and(|c| !c.is_null()) {
        return Err(TranslateError::unsupported(
            format!("{path}.cache_control"),
            "cache breakpoints on tool_use and tool_result blocks cannot be carried",
        ));
    }
    Ok(())
}

fn text_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let text = block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.text"), "missing"))?;
    Ok(with_cache_control(
        block,
        json!({"type": "text", "text": text}),
    ))
}

/// An `image` block (base64 or URL source) → an `image_url` part.
fn image_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let source = block
        .get("source")
        .ok_or_else(|| TranslateError::invalid(format!("{path}.source"), "missing"))?;
    let field = |k: &str| {
        source
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("{path}.source.{k}"), "missing"))
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!("data:{};base64,{}", field("media_type")?, field("data")?),
        Some("url") => field("url")?.to_owned(),
        _ => {
            return Err(TranslateError::unsupported(
                format!("{path}.source.type"),
                "only base64 and url image sources can be translated",
            ))
        }
    };
    Ok(with_cache_control(
        block,
        json!({"type": "image_url", "image_url": {"url": url}}),
    ))
}

/// Anthropic's turns → OpenAI messages. A user turn's `tool_result` blocks become `tool`
/// messages placed first (Anthropic requires results before any other content), the rest
/// of the turn one user message; an assistant turn's `tool_use` blocks become `tool_calls`.
fn decode_messages(messages: Option<&Value>, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let messages = messages
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| TranslateError::invalid("messages", "must be a non-empty array"))?;
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| TranslateError::invalid(path.as_str(), "must be an object"))?;
        for key in m.keys() {
            if key != "role" && key != "content" {
                return Err(TranslateError::unsupported(
                    format!("{path}.{key}"),
                    "Messages turns carry only role and content",
                ));
            }
        }
        let content = m
            .get("content")
            .ok_or_else(|| TranslateError::invalid(format!("{path}.content"), "missing"))?;
        match m.get("role").and_then(Value::as_str) {
            Some("user") => decode_user(content, &path, out)?,
            Some("assistant") => out.push(decode_assistant(content, &path)?),
            _ => {
                return Err(TranslateError::invalid(
                    format!("{path}.role"),
                    "must be user or assistant",
                ))
            }
        }
    }
    Ok(())
}

fn content_blocks<'a>(content: &'a Value, path: &str) -> Result<&'a [Value], TranslateError> {
    content.as_array().map(Vec::as_slice).ok_or_else(|| {
        TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of blocks",
        )
    })
}

fn decode_user(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    if let Value::String(s) = content {
        out.push(json!({"role": "user", "content": s}));
        return Ok(());
    }
    let mut parts = Vec::new();
    for (j, block) in content_blocks(content, path)?.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        match block_type(block) {
            Some("text") => parts.push(text_part(block, &bpath)?),
            Some("image") => parts.push(image_part(block, &bpath)?),
            Some("tool_result") => out.push(tool_message(block, &bpath)?),
            Some(other) => {
                return Err(TranslateError::unsupported(
                    format!("{bpath}.type"),
                    format!("`{other}` blocks cannot be translated"),
                ))
            }
            None => return Err(TranslateError::invalid(format!("{bpath}.type"), "missing")),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// A `tool_result` block → a `tool` message. OpenAI has no error flag: a result with
/// `is_error: true` is marked in its text (`Error: …`), which is how the model reads it.
fn tool_message(block: &Value, path: &str) -> Result<Value, TranslateError> {
    no_cache_control(block, path)?;
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.tool_use_id"), "missing"))?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut joined = String::new();
            for (k, p) in parts.iter().enumerate() {
                let ppath = format!("{path}.content[{k}]");
                if block_type(p) != Some("text") {
                    return Err(TranslateError::unsupported(
                        format!("{ppath}.type"),
                        "only text can be returned from a tool through OpenAI's tool messages",
                    ));
                }
                no_cache_control(p, &ppath)?;
                let t = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid(format!("{ppath}.text"), "missing"))?;
                joined.push_str(t);
            }
            joined
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.content"),
                "must be a string or an array of text blocks",
            ))
        }
    };
    match block.get("is_error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => text = format!("Error: {text}"),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.is_error"),
                "must be a boolean",
            ))
        }
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// An assistant turn: text → content, `tool_use` → `tool_calls`, `thinking` →
/// `reasoning_content` (the field the Anthropic adapter and DeepSeek-style servers use).
fn decode_assistant(content: &Value, path: &str) -> Result<Value, TranslateError> {
    if let Value::String(s) = content {
        return Ok(json!({"role": "assistant", "content": s}));
    }
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning: Option<String> = None;
    for (j, block) in content_blocks(content, path)?.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        match block_type(block) {
            Some("text") => parts.push(text_part(block, &bpath)?),
            Some("tool_use") => {
                no_cache_control(block, &bpath)?;
                calls.push(tool_call(block, &bpath)?);
            }
            Some("thinking") => {
                let t = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
            }
            Some(other) => {
                return Err(TranslateError::unsupported(
                    format!("{bpath}.type"),
                    format!("`{other}` blocks cannot be translated"),
                ))
            }
            None => return Err(TranslateError::invalid(format!("{bpath}.type"), "missing")),
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    let plain = parts.iter().all(|p| p.get("cache_control").is_none());
    let content = match parts.len() {
        0 => Value::Null,
        // One plain text block reads best as a string, as OpenAI clients send it.
        1 if plain => parts[0].get("text").cloned().unwrap_or(Value::Null),
        _ => Value::Array(parts),
    };
    msg.insert("content".into(), content);
    if let Some(r) = reasoning {
        msg.insert("reasoning_content".into(), Value::String(r));
    }
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(msg))
}

fn tool_call(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let field = |k: &str| {
        block
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("{path}.{k}"), "missing"))
    };
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": field("id")?,
        "type": "function",
        "function": {"name": field("name")?, "arguments": input.to_string()},
    }))
}

/// Client tools → OpenAI function tools. Anthropic's server tools (web search, code
/// execution, computer use …) run at Anthropic and have no OpenAI form: refused.
fn decode_tools(tools: &Value) -> Result<Value, TranslateError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(TranslateError::unsupported(
                    format!("{path}.type"),
                    format!("the server tool `{other}` runs only at Anthropic"),
                ))
            }
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("{path}.name"), "missing"))?;
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(d) = tool.get("description").filter(|d| !d.is_null()) {
            function.insert("description".into(), d.clone());
        }
        let schema = tool
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| TranslateError::invalid(format!("{path}.input_schema"), "missing"))?;
        function.insert("parameters".into(), schema.clone());
        let t = json!({"type": "function", "function": function});
        out.push(with_cache_control(tool, t));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` → OpenAI's, and `disable_parallel_tool_use` → `parallel_tool_calls: false`.
fn decode_tool_choice(choice: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice.name", "missing"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice.type",
                "must be auto, any, tool or none",
            ))
        }
    };
    out.insert("tool_choice".into(), mapped);
    match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "tool_choice.disable_parallel_tool_use",
                "must be a boolean",
            ))
        }
    }
    Ok(())
}

fn decode_metadata(meta: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let meta = meta
        .as_object()
        .ok_or_else(|| TranslateError::invalid("metadata", "must be an object"))?;
    for (k, v) in meta {
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("user_id", Value::String(s)) => {
                out.insert("user".into(), Value::String(s.clone()));
            }
            ("user_id", _) => {
                return Err(TranslateError::invalid(
                    "metadata.user_id",
                    "must be a string",
                ))
            }
            _ => {
                return Err(TranslateError::unsupported(
                    format!("metadata.{k}"),
                    "Anthropic's metadata carries only a user id",
                ))
            }
        }
    }
    Ok(())
}
