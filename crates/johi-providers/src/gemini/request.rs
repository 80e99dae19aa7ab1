//! OpenAI Chat Completions request → Gemini `GenerateContentRequest`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::TranslateError;

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
    let body =
        serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))?;
    Ok(EncodedRequest {
        body,
        stream,
        include_usage,
    })
}

/// A field's value unless absent or `null` (OpenAI SDKs send `null` for "not set").
pub(crate) fn present<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    body.get(field).filter(|v| !v.is_null())
}

/// Refuses every field outside [`MAPPED_FIELDS`], and listed fields whose value asks for
/// something Gemini cannot do here (log probabilities, turning parallel calls off).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        if !MAPPED_FIELDS.contains(&key.as_str()) {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "Gemini's generateContent has no equivalent",
            ));
        }
        let reason = match key.as_str() {
            "logprobs" if value.as_bool() != Some(false) => {
                "log probabilities are not mapped for Gemini"
            }
            "parallel_tool_calls" if value.as_bool() == Some(false) => {
                "Gemini cannot be told to call one function at a time"
            }
            _ => continue,
        };
        return Err(TranslateError::unsupported(key.as_str(), reason));
    }
    Ok(())
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
    let tools = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
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
        if f.get("strict").and_then(Value::as_bool) == Some(true) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "Gemini does not enforce strict function schemas",
            ));
        }
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if let Some(desc) = f.get("description").filter(|d| !d.is_null()) {
            d.insert("description".into(), desc.clone());
        }
        if let Some(params) = f.get("parameters").filter(|p| !p.is_null()) {
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
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    "must be auto, none, required or a function",
                ))
            }
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    TranslateError::invalid("tool_choice", "must name a function tool")
                })?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
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
    let messages = messages
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut responses: Vec<Value> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| TranslateError::invalid(path.as_str(), "must be an object"))?;
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("{path}.role"), "missing"))?;
        refuse_unknown_message_keys(m, role, &path)?;
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
            _ => {
                return Err(TranslateError::unsupported(
                    format!("{path}.role"),
                    format!("the role `{role}` cannot be translated"),
                ))
            }
        }
    }
    if !responses.is_empty() {
        contents.push(json!({"role": "user", "parts": responses}));
    }
    let system = (!system.is_empty()).then(|| json!({ "parts": system }));
    Ok((system, contents))
}

fn refuse_unknown_message_keys(
    m: &Map<String, Value>,
    role: &str,
    path: &str,
) -> Result<(), TranslateError> {
    for (key, value) in m {
        let known = matches!(key.as_str(), "role" | "content")
            || (role == "assistant" && key == "tool_calls")
            || (role == "tool" && key == "tool_call_id");
        if !known && !value.is_null() {
            return Err(TranslateError::unsupported(
                format!("{path}.{key}"),
                "Gemini's contents have no equivalent",
            ));
        }
    }
    Ok(())
}

/// Content that may only be text (system, developer, tool results) as text parts.
fn text_parts(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let part_path = format!("{path}.content[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => encode_part(p, &part_path),
                    _ => Err(TranslateError::unsupported(
                        format!("{part_path}.type"),
                        "only text parts are allowed here",
                    )),
                }
            })
            .collect(),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of text parts",
        )),
    }
}

fn encode_content(content: Option<&Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| encode_part(p, &format!("{path}.content[{j}]")))
            .collect(),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// One content part → one Gemini part.
fn encode_part(part: &Value, path: &str) -> Result<Value, TranslateError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = part
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid(format!("{path}.text"), "missing"))?;
            Ok(json!({ "text": text }))
        }
        Some("image_url") => encode_image(part, path),
        Some(other) => Err(TranslateError::unsupported(
            format!("{path}.type"),
            format!("`{other}` parts cannot be translated"),
        )),
        None => Err(TranslateError::invalid(format!("{path}.type"), "missing")),
    }
}

/// `image_url` → `inlineData` for a `data:` URL. An http(s) URL is refused: Gemini's
/// `fileData` takes only URIs of its own file service, and fetching the image would make the
/// gateway a downloader.
fn encode_image(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let image = part.get("image_url");
    let url = image
        .and_then(|i| i.get("url").or(Some(i)))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.image_url.url"), "missing"))?;
    if let Some(detail) = image.and_then(|i| i.get("detail")).and_then(Value::as_str) {
        if detail != "auto" {
            return Err(TranslateError::unsupported(
                format!("{path}.image_url.detail"),
                "Gemini has no image detail setting",
            ));
        }
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) = rest.split_once(";base64,").ok_or_else(|| {
            TranslateError::invalid(format!("{path}.image_url.url"), "a data URL must be base64")
        })?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
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
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("{call_path}.id"), "missing"))?;
        let f = call.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TranslateError::invalid(format!("{call_path}.function.name"), "missing")
            })?;
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let args: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|e| {
                TranslateError::invalid(format!("{call_path}.function.arguments"), e.to_string())
            })?
        };
        call_names.insert(id.to_owned(), name.to_owned());
        parts.push(json!({"functionCall": {"name": name, "args": args}}));
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
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("{path}.tool_call_id"), "missing"))?;
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
