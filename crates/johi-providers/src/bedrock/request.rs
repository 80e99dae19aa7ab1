//! OpenAI Chat Completions request → Bedrock Converse request.

use serde_json::{json, Map, Value};

use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, message,
    messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stream_flags, to_body, tool_call, tool_call_id, tool_choice,
    tools_array, unknown_role, PartKind, ToolChoice,
};
use crate::TranslateError;

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
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
];

/// Translates an OpenAI Chat Completions body into a Converse body (the model is in the
/// URL, not the body). Fields Converse cannot express are refused with the field's path.
pub fn encode_request(body: &Map<String, Value>) -> Result<Vec<u8>, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let mut out = Map::new();
    let (system, messages) = encode_messages(body.get("messages"))?;
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(body)?;
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = tool_config(body)? {
        out.insert("toolConfig".into(), tools);
    }
    if let Some(meta) = request_metadata(body)? {
        out.insert("requestMetadata".into(), meta);
    }
    // `stream` is only checked here; the body is the same either way.
    stream_flags(body)?;
    to_body(&out)
}

/// Refuses every field outside [`MAPPED_FIELDS`], and the listed fields whose value asks for
/// something Converse cannot do (`n > 1`, `logprobs`, a non-zero penalty, JSON mode).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Bedrock's Converse API has no equivalent",
        |key, value| {
            match key {
            "n" if value.as_u64() != Some(1) => Some("Converse returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Converse does not return log probabilities")
            }
            "presence_penalty" | "frequency_penalty" if value.as_f64() != Some(0.0) => {
                Some("Converse has no sampling penalties")
            }
            "response_format" if value.get("type").and_then(Value::as_str) != Some("text") => {
                Some("JSON mode and JSON schemas are not mapped; describe the format in the prompt or use a tool")
            }
            "parallel_tool_calls" if value.as_bool() != Some(true) => {
                Some("Converse cannot turn parallel tool calls off")
            }
            _ => None,
        }
        },
    )
}

fn inference_config(body: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut out = Map::new();
    for field in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(body, field) {
            let n = v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| TranslateError::invalid(field, "must be a positive integer"))?;
            out.insert("maxTokens".into(), json!(n));
            break;
        }
    }
    for (field, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = present(body, field) {
            v.as_f64()
                .ok_or_else(|| TranslateError::invalid(field, "must be a number"))?;
            out.insert(to.into(), v.clone());
        }
    }
    match present(body, "stop") {
        None => {}
        Some(Value::String(s)) => {
            out.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            out.insert("stopSequences".into(), Value::Array(items.clone()));
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "stop",
                "must be a string or an array of strings",
            ))
        }
    }
    Ok(out)
}

/// `user` and string `metadata` values → Converse's `requestMetadata` (kept with the
/// invocation log, which is where OpenAI's `user` ends up too).
fn request_metadata(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut out = Map::new();
    if let Some(meta) = present(body, "metadata") {
        let meta = meta
            .as_object()
            .ok_or_else(|| TranslateError::invalid("metadata", "must be an object"))?;
        for (k, v) in meta {
            let s = v.as_str().ok_or_else(|| {
                TranslateError::invalid(format!("metadata.{k}"), "must be a string")
            })?;
            out.insert(k.clone(), json!(s));
        }
    }
    if let Some(user) = present(body, "user") {
        let s = user
            .as_str()
            .ok_or_else(|| TranslateError::invalid("user", "must be a string"))?;
        out.insert("user".into(), json!(s));
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn tool_config(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = present(body, "tools") else {
        if present(body, "tool_choice").is_some_and(|c| c.as_str() != Some("none")) {
            return Err(TranslateError::invalid(
                "tool_choice",
                "needs `tools` to choose from",
            ));
        }
        return Ok(None);
    };
    let tools = tools_array(tools)?;
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        specs.push(tool_spec(tool, &format!("tools[{i}]"))?);
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(specs));
    let choice =
        match present(body, "tool_choice") {
            None => None,
            Some(v) => match tool_choice(v)? {
                ToolChoice::Auto => Some(json!({"auto": {}})),
                ToolChoice::Required => Some(json!({"any": {}})),
                ToolChoice::None => return Err(TranslateError::unsupported(
                    "tool_choice",
                    "Converse cannot forbid tool use while tools are declared; leave the tools out",
                )),
                ToolChoice::Function(name) => Some(json!({"tool": {"name": name}})),
            },
        };
    if let Some(choice) = choice {
        config.insert("toolChoice".into(), choice);
    }
    Ok(Some(Value::Object(config)))
}

fn tool_spec(tool: &Value, path: &str) -> Result<Value, TranslateError> {
    let f = function_tool(tool, path)?;
    if f.strict == Some(true) {
        return Err(TranslateError::unsupported(
            format!("{path}.function.strict"),
            "Converse has no strict schema mode",
        ));
    }
    let mut spec = Map::new();
    spec.insert("name".into(), json!(f.name));
    if let Some(d) = f.description {
        spec.insert("description".into(), d.clone());
    }
    spec.insert("inputSchema".into(), json!({ "json": f.schema_or_empty() }));
    Ok(json!({ "toolSpec": spec }))
}

/// Splits OpenAI's messages into Converse's top-level `system` and its turns.
///
/// System and developer messages are hoisted into `system` wherever they stand (Converse has
/// no system turn); consecutive `tool` messages become one user turn of `toolResult` blocks,
/// and a user message right after them joins that turn, as do consecutive messages of one role.
fn encode_messages(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system = Vec::new();
    let mut turns = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Converse's messages have no equivalent",
        )?;
        if role != "tool" && role != "user" && !results.is_empty() {
            push_turn(&mut turns, "user", std::mem::take(&mut results));
        }
        match role {
            "system" | "developer" => system.extend(text_blocks(m.get("content"), &path)?),
            "user" => {
                let mut blocks = std::mem::take(&mut results);
                blocks.extend(user_blocks(m.get("content"), &path)?);
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => push_turn(&mut turns, "assistant", encode_assistant(m, &path)?),
            "tool" => results.push(encode_tool_result(m, &path)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !results.is_empty() {
        push_turn(&mut turns, "user", results);
    }
    Ok((system, turns))
}

/// Appends a turn, or joins the previous one when it has the same role: Converse requires
/// user and assistant turns to alternate, OpenAI does not (two user messages in a row, a
/// user message after another one that only carried tool results).
fn push_turn(turns: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = turns.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(content) = last.get_mut("content").and_then(Value::as_array_mut) {
                content.extend(blocks);
                return;
            }
        }
    }
    turns.push(json!({"role": role, "content": blocks}));
}

/// Content that may only be text (system, developer, tool results) as `{text}` blocks.
fn text_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, text_part),
        _ => Err(not_text_content(path)),
    }
}

fn text_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    Ok(json!({ "text": part_text(part, path)? }))
}

fn user_blocks(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content, path);
    };
    map_parts(parts, path, |p, part_path| match part_kind(p, part_path)? {
        PartKind::Text => text_part(p, part_path),
        PartKind::ImageUrl => encode_image(p, part_path),
    })
}

/// `image_url` with a base64 `data:` URL → an `image` block. Converse takes image bytes
/// (or S3 locations), never a web URL, so http(s) URLs are refused rather than fetched.
fn encode_image(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let url_path = format!("{path}.image_url.url");
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Converse has no image detail setting")?;
    if is_web_url(url) {
        return Err(TranslateError::unsupported(
            url_path,
            "Converse takes image bytes, not URLs; send a base64 data: URL",
        ));
    }
    let (media_type, data) = base64_data_url(url)
        .ok_or_else(|| TranslateError::invalid(url_path.as_str(), "must be a base64 data: URL"))?;
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(TranslateError::unsupported(
                url_path,
                format!("Converse takes png, jpeg, gif or webp images, not {other}"),
            ))
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// An assistant turn's blocks: its text (if any) then one `toolUse` block per tool call, with the
/// arguments string parsed back into the JSON object Converse expects.
fn encode_assistant(m: &Map<String, Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let content = m.get("content").filter(|c| !c.is_null());
    let mut blocks = match content {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(c) => text_blocks(Some(c), path)?,
    };
    let calls = m.get("tool_calls").and_then(Value::as_array);
    for (k, call) in calls.into_iter().flatten().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let input = call.input(&call_path)?;
        blocks.push(json!({"toolUse": {"toolUseId": call.id, "name": call.name, "input": input}}));
    }
    if blocks.is_empty() {
        return Err(TranslateError::invalid(
            format!("{path}.content"),
            "an assistant message needs content or tool calls",
        ));
    }
    Ok(blocks)
}

fn encode_tool_result(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let id = tool_call_id(m, path)?;
    let content = text_blocks(m.get("content"), path)?;
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}
