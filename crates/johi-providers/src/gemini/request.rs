//! OpenAI Chat Completions request → Gemini `GenerateContentRequest`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, message,
    messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stream_flags, to_body, tool_call, tool_call_id, tools_array,
    unknown_role, PartKind, ToolChoice,
};

/// Top-level request fields the encoder maps (or accepts as a no-op value); any other field
/// is refused, naming it. `top_k` is Gemini's own sampling knob, passed for clients that
/// know their target. The reasons for the refusals are in `docs/providers.md`.
pub const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
];

/// A Gemini request ready to send, with what the relay must know about the client's wishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The JSON body for `:generateContent` or `:streamGenerateContent`.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream (the method differs, not the body).
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates an OpenAI Chat Completions body into a Gemini `GenerateContentRequest`.
///
/// The model is not in the body (it is in the URL, see [`super::method_uri`]). Fields Gemini
/// cannot express are refused with the field's path.
pub fn encode_request(body: &Map<String, Value>) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let mut out = Map::new();
    let (system, contents) = encode_messages(body.get("messages"))?;
    out.insert("contents".into(), Value::Array(contents));
    if let Some(system) = system {
        out.insert("systemInstruction".into(), system);
    }
    if let Some(tools) = present(body, "tools") {
        out.insert("tools".into(), encode_tools(tools)?);
    }
    if let Some(config) = tool_config(body)? {
        out.insert("toolConfig".into(), config);
    }
    let config = generation_config(body)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    let (stream, include_usage) = stream_flags(body)?;
    let body = to_body(&out)?;
    Ok(EncodedRequest {
        body,
        stream,
        include_usage,
    })
}

/// Refuses every field outside [`MAPPED_FIELDS`], and listed fields whose value asks for
/// something Gemini cannot do here (log probabilities, turning parallel calls off).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Gemini's generateContent has no equivalent",
        |key, value| match key {
            "logprobs" if value.as_bool() != Some(false) => {
                Some("log probabilities are not mapped for Gemini")
            }
            "parallel_tool_calls" if value.as_bool() == Some(false) => {
                Some("Gemini cannot be told to call one function at a time")
            }
            _ => None,
        },
    )
}

/// `generationConfig`: sampling, length, stops, candidates and the response format.
fn generation_config(body: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    for (field, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = present(body, field) {
            if !v.is_number() {
                return Err(TranslateError::invalid(field, "must be a number"));
            }
            config.insert(gemini.into(), v.clone());
        }
    }
    for (field, gemini) in [("top_k", "topK"), ("seed", "seed"), ("n", "candidateCount")] {
        if let Some(v) = present(body, field) {
            if !(v.is_i64() || v.is_u64()) {
                return Err(TranslateError::invalid(field, "must be an integer"));
            }
            config.insert(gemini.into(), v.clone());
        }
    }
    for field in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(body, field) {
            let n = v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| TranslateError::invalid(field, "must be a positive integer"))?;
            config.insert("maxOutputTokens".into(), json!(n));
            break;
        }
    }
    match present(body, "stop") {
        None => {}
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            config.insert("stopSequences".into(), Value::Array(items.clone()));
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "stop",
                "must be a string or an array of strings",
            ))
        }
    }
    if let Some(format) = present(body, "response_format") {
        response_format(format, &mut config)?;
    }
    Ok(config)
}

/// `response_format`: `json_object` → JSON mode, `json_schema` → a JSON-Schema-constrained
/// answer (`responseJsonSchema` takes JSON Schema as OpenAI clients write it).
fn response_format(format: &Value, config: &mut Map<String, Value>) -> Result<(), TranslateError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    TranslateError::invalid("response_format.json_schema.schema", "missing")
                })?;
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        Some(other) => {
            return Err(TranslateError::unsupported(
                "response_format.type",
                format!("`{other}` cannot be translated"),
            ))
        }
        None => return Err(TranslateError::invalid("response_format.type", "missing")),
    }
    Ok(())
}

fn encode_tools(tools: &Value) -> Result<Value, TranslateError> {
    let tools = tools_array(tools)?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let f = function_tool(tool, &path)?;
        if f.strict == Some(true) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "Gemini does not enforce strict function schemas",
            ));
        }
        let mut d = Map::new();
        d.insert("name".into(), json!(f.name));
        if let Some(desc) = f.description {
            d.insert("description".into(), desc.clone());
        }
        if let Some(params) = f.parameters {
            d.insert("parametersJsonSchema".into(), params.clone());
        }
        declarations.push(Value::Object(d));
    }
    Ok(json!([{"functionDeclarations": declarations}]))
}

/// `tool_choice` → `toolConfig.functionCallingConfig`: auto → AUTO, none → NONE, required →
/// ANY, a named function → ANY limited to that name.
fn tool_config(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let config = match present(body, "tool_choice") {
        None => return Ok(None),
        Some(v) => match crate::openai_shape::tool_choice(v)? {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        },
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// Splits OpenAI's messages into Gemini's `systemInstruction` and its `contents`.
///
/// System and developer messages are hoisted wherever they stand; consecutive `tool`
/// messages become one user turn of `functionResponse` parts (parallel results answer
/// parallel calls), each named after the call with the same id.
fn encode_messages(
    messages: Option<&Value>,
) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut responses: Vec<Value> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Gemini's contents have no equivalent",
        )?;
        if role != "tool" && !responses.is_empty() {
            contents.push(json!({"role": "user", "parts": std::mem::take(&mut responses)}));
        }
        match role {
            "system" | "developer" => system.extend(text_parts(m.get("content"), &path)?),
            "user" => contents.push(json!({
                "role": "user",
                "parts": encode_content(m.get("content"), &path)?,
            })),
            "assistant" => contents.push(encode_assistant(m, &path, &mut call_names)?),
            "tool" => responses.push(encode_tool_result(m, &path, &call_names)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !responses.is_empty() {
        contents.push(json!({"role": "user", "parts": responses}));
    }
    let system = (!system.is_empty()).then(|| json!({ "parts": system }));
    Ok((system, contents))
}

/// Content that may only be text (system, developer, tool results) as text parts.
fn text_parts(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, encode_part),
        _ => Err(not_text_content(path)),
    }
}

fn encode_content(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => map_parts(parts, path, encode_part),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// One content part → one Gemini part.
fn encode_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    match part_kind(part, path)? {
        PartKind::Text => Ok(json!({ "text": part_text(part, path)? })),
        PartKind::ImageUrl => encode_image(part, path),
    }
}

/// `image_url` → `inlineData` for a `data:` URL. An http(s) URL is refused: Gemini's
/// `fileData` takes only URIs of its own file service, and fetching the image would make the
/// gateway a downloader.
fn encode_image(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Gemini has no image detail setting")?;
    if url.starts_with("data:") {
        let (mime, data) = base64_data_url(url).ok_or_else(|| {
            TranslateError::invalid(format!("{path}.image_url.url"), "a data URL must be base64")
        })?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if is_web_url(url) {
        return Err(TranslateError::unsupported(
            format!("{path}.image_url.url"),
            "Gemini takes images inline: send a base64 data: URL",
        ));
    }
    Err(TranslateError::invalid(
        format!("{path}.image_url.url"),
        "must be a data: or http(s) URL",
    ))
}

/// An assistant turn (`role: model`): its text (if any) then one `functionCall` part per
/// tool call, arguments parsed back into the object Gemini expects. Call ids are remembered
/// so that later tool results can name their function.
fn encode_assistant(
    m: &Map<String, Value>,
    path: &str,
    call_names: &mut HashMap<String, String>,
) -> Result<Value, TranslateError> {
    let calls = m.get("tool_calls").and_then(Value::as_array);
    let mut parts = match m.get("content") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(c) => text_parts(Some(c), path)?,
    };
    for (k, call) in calls.into_iter().flatten().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let args = call.input(&call_path)?;
        call_names.insert(call.id.to_owned(), call.name.to_owned());
        parts.push(json!({"functionCall": {"name": call.name, "args": args}}));
    }
    if parts.is_empty() {
        return Err(TranslateError::invalid(
            format!("{path}.content"),
            "an assistant message needs content or tool calls",
        ));
    }
    Ok(json!({"role": "model", "parts": parts}))
}

/// A tool result → a `functionResponse` part. Gemini wants an object: a result that is a
/// JSON object is passed as it is, anything else as `{"result": <text>}`.
fn encode_tool_result(
    m: &Map<String, Value>,
    path: &str,
    call_names: &HashMap<String, String>,
) -> Result<Value, TranslateError> {
    let id = tool_call_id(m, path)?;
    let name = call_names.get(id).ok_or_else(|| {
        TranslateError::invalid(
            format!("{path}.tool_call_id"),
            "names no earlier assistant tool call",
        )
    })?;
    let text = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        other => text_parts(other, path)?
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(obj @ Value::Object(_)) => obj,
        _ => json!({ "result": text }),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(body: Value) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_request(&map)?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn nulls_are_absent_and_no_op_values_are_accepted() {
        let v = encode(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "seed": null, "logprobs": false, "parallel_tool_calls": true,
            "max_tokens": null, "stop": null,
        }))
        .unwrap();
        assert!(v.get("generationConfig").is_none());
    }

    #[test]
    fn malformed_values_are_invalid_not_unsupported() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (body, field) in [
            (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs, "stop": 5}), "stop"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": msgs, "n": 1.5}), "n"),
            (json!({"messages": msgs, "tool_choice": "x"}), "tool_choice"),
            (
                json!({"messages": [{"role": "tool", "tool_call_id": "c", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
        ] {
            match encode(body) {
                Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
