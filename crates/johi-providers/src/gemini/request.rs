//! OpenAI Chat Completions request → Gemini `GenerateContentRequest`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, max_tokens,
    message, messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stop_sequences, stream_flags, tool_call, tool_call_id, tools_array,
    unknown_role, PartKind, StopSequences, ToolChoice,
};
use crate::wire::push_text;

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
///
/// The body is written from typed structs that borrow the client's values
/// ([`GenerateContentRequest`]), not built as a `Value` tree: this runs on every translated
/// request.
pub fn encode_request(body: &Map<String, Value>) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let (system_instruction, contents) = encode_messages(body.get("messages"))?;
    let out = GenerateContentRequest {
        contents,
        system_instruction,
        tools: present(body, "tools").map(encode_tools).transpose()?,
        tool_config: tool_config(body)?,
        generation_config: Some(generation_config(body)?).filter(|c| !c.is_empty()),
    };
    let (stream, include_usage) = stream_flags(body)?;
    let body =
        serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))?;
    Ok(EncodedRequest {
        body,
        stream,
        include_usage,
    })
}

/// A `GenerateContentRequest`, borrowing the client's strings and values; field order is
/// the one Google documents.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[Tools<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<GenerationConfig<'a>>,
}

/// One turn of `contents`: `user` or `model`.
#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

/// `systemInstruction`: parts with no role.
#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

/// One part: an object with one key naming its kind.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    Text(&'a str),
    InlineData {
        #[serde(rename = "mimeType")]
        mime_type: &'a str,
        data: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: FunctionResult<'a>,
    },
}

/// A `functionResponse`'s `response`: the result when it is a JSON object, else the result
/// text wrapped as `{"result": …}`.
#[derive(Serialize)]
#[serde(untagged)]
enum FunctionResult<'a> {
    Object(Value),
    Text { result: Cow<'a, str> },
}

/// `tools`: one tool holding every function declaration.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a Value>,
}

/// `toolConfig`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

/// `generationConfig`; the client's values are passed as they are (checked, borrowed).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<StopSequences<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a Value>,
}

impl GenerationConfig<'_> {
    /// Whether no field is set (the whole object is then left out).
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.top_k.is_none()
            && self.seed.is_none()
            && self.candidate_count.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_none()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
    }
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
fn generation_config(body: &Map<String, Value>) -> Result<GenerationConfig<'_>, TranslateError> {
    let number = |field| match present(body, field) {
        Some(v) if !v.is_number() => Err(TranslateError::invalid(field, "must be a number")),
        v => Ok(v),
    };
    let integer = |field| match present(body, field) {
        Some(v) if !(v.is_i64() || v.is_u64()) => {
            Err(TranslateError::invalid(field, "must be an integer"))
        }
        v => Ok(v),
    };
    let mut config = GenerationConfig {
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        presence_penalty: number("presence_penalty")?,
        frequency_penalty: number("frequency_penalty")?,
        top_k: integer("top_k")?,
        seed: integer("seed")?,
        candidate_count: integer("n")?,
        ..GenerationConfig::default()
    };
    config.max_output_tokens = max_tokens(body)?;
    config.stop_sequences = stop_sequences(present(body, "stop"))?;
    if let Some(format) = present(body, "response_format") {
        response_format(format, &mut config)?;
    }
    Ok(config)
}

/// `response_format`: `json_object` → JSON mode, `json_schema` → a JSON-Schema-constrained
/// answer (`responseJsonSchema` takes JSON Schema as OpenAI clients write it).
fn response_format<'a>(
    format: &'a Value,
    config: &mut GenerationConfig<'a>,
) -> Result<(), TranslateError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.response_mime_type = Some("application/json");
        }
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    TranslateError::invalid("response_format.json_schema.schema", "missing")
                })?;
            config.response_mime_type = Some("application/json");
            config.response_json_schema = Some(schema);
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

fn encode_tools(tools: &Value) -> Result<[Tools<'_>; 1], TranslateError> {
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
        declarations.push(FunctionDeclaration {
            name: f.name,
            description: f.description,
            parameters_json_schema: f.parameters,
        });
    }
    Ok([Tools {
        function_declarations: declarations,
    }])
}

/// `tool_choice` → `toolConfig.functionCallingConfig`: auto → AUTO, none → NONE, required →
/// ANY, a named function → ANY limited to that name.
fn tool_config(body: &Map<String, Value>) -> Result<Option<ToolConfig<'_>>, TranslateError> {
    let Some(choice) = present(body, "tool_choice") else {
        return Ok(None);
    };
    let (mode, allowed_function_names) = match crate::openai_shape::tool_choice(choice)? {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::Function(name) => ("ANY", Some([name])),
    };
    Ok(Some(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names,
        },
    }))
}

/// Splits OpenAI's messages into Gemini's `systemInstruction` and its `contents`.
///
/// System and developer messages are hoisted wherever they stand; consecutive `tool`
/// messages become one user turn of `functionResponse` parts (parallel results answer
/// parallel calls), each named after the call with the same id.
fn encode_messages(
    messages: Option<&Value>,
) -> Result<(Option<SystemInstruction<'_>>, Vec<Content<'_>>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system = Vec::new();
    let mut contents = Vec::with_capacity(messages.len());
    let mut responses = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let user = |parts| Content {
        role: "user",
        parts,
    };
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Gemini's contents have no equivalent",
        )?;
        if role != "tool" && !responses.is_empty() {
            contents.push(user(std::mem::take(&mut responses)));
        }
        match role {
            "system" | "developer" => system.extend(text_parts(m.get("content"), &path)?),
            "user" => contents.push(user(encode_content(m.get("content"), &path)?)),
            "assistant" => contents.push(encode_assistant(m, &path, &mut call_names)?),
            "tool" => responses.push(encode_tool_result(m, &path, &call_names)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !responses.is_empty() {
        contents.push(user(responses));
    }
    let system = (!system.is_empty()).then_some(SystemInstruction { parts: system });
    Ok((system, contents))
}

/// Content that may only be text (system, developer, tool results) as text parts.
fn text_parts<'a>(content: Option<&'a Value>, path: &str) -> Result<Vec<Part<'a>>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![Part::Text(s)]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, encode_part),
        _ => Err(not_text_content(path)),
    }
}

fn encode_content<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<Part<'a>>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![Part::Text(s)]),
        Some(Value::Array(parts)) => map_parts(parts, path, encode_part),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// One content part → one Gemini part.
fn encode_part<'a>(part: &'a Value, path: &str) -> Result<Part<'a>, TranslateError> {
    match part_kind(part, path)? {
        PartKind::Text => Ok(Part::Text(part_text(part, path)?)),
        PartKind::ImageUrl => encode_image(part, path),
    }
}

/// `image_url` → `inlineData` for a `data:` URL. An http(s) URL is refused: Gemini's
/// `fileData` takes only URIs of its own file service, and fetching the image would make the
/// gateway a downloader.
fn encode_image<'a>(part: &'a Value, path: &str) -> Result<Part<'a>, TranslateError> {
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Gemini has no image detail setting")?;
    if url.starts_with("data:") {
        let (mime_type, data) = base64_data_url(url).ok_or_else(|| {
            TranslateError::invalid(format!("{path}.image_url.url"), "a data URL must be base64")
        })?;
        return Ok(Part::InlineData { mime_type, data });
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
fn encode_assistant<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Content<'a>, TranslateError> {
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
        call_names.insert(call.id, call.name);
        parts.push(Part::FunctionCall {
            name: call.name,
            args,
        });
    }
    if parts.is_empty() {
        return Err(TranslateError::invalid(
            format!("{path}.content"),
            "an assistant message needs content or tool calls",
        ));
    }
    Ok(Content {
        role: "model",
        parts,
    })
}

/// A tool result → a `functionResponse` part. Gemini wants an object: a result that is a
/// JSON object is passed as it is, anything else as `{"result": <text>}`.
fn encode_tool_result<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    call_names: &HashMap<&'a str, &'a str>,
) -> Result<Part<'a>, TranslateError> {
    let id = tool_call_id(m, path)?;
    let name = call_names.get(id).copied().ok_or_else(|| {
        TranslateError::invalid(
            format!("{path}.tool_call_id"),
            "names no earlier assistant tool call",
        )
    })?;
    let text: Cow<'a, str> = match m.get("content") {
        Some(Value::String(s)) => Cow::Borrowed(s),
        other => {
            let mut text = None;
            for part in text_parts(other, path)? {
                if let Part::Text(t) = part {
                    push_text(&mut text, Cow::Borrowed(t));
                }
            }
            text.unwrap_or_default()
        }
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(obj @ Value::Object(_)) => FunctionResult::Object(obj),
        _ => FunctionResult::Text { result: text },
    };
    Ok(Part::FunctionResponse { name, response })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
